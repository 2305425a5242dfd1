"""Per-agent layers: N agents' networks evaluated together, in one batched matmul per layer."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn


class AgentLinear(nn.Module):
    """One linear layer per agent, all evaluated in one batched matmul: (N, B, in) -> (N, B, out).
    Equals, for each agent i, nn.Linear(in, out) applied to x[i] (a test checks it)."""

    def __init__(self, num_agents: int, in_features: int, out_features: int):
        super().__init__()
        bound = 1 / np.sqrt(in_features)  # nn.Linear's default initialisation
        # drawn (in, out), stored (out, in) as nn.Linear's: MKL multiplies by a narrow layer's transposed
        # weight (actions, Q) 4-5x faster (docs/speed.md)
        weight = torch.empty(num_agents, in_features, out_features).uniform_(-bound, bound)
        self.weight = nn.Parameter(weight.transpose(1, 2).contiguous())
        self.bias = nn.Parameter(torch.empty(num_agents, 1, out_features).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight.transpose(1, 2))


def agent_mlp(num_agents: int, in_features: int, hidden: int, out_features: int) -> nn.Sequential:
    """Per agent, two hidden ReLU layers of width `hidden`: (N, B, in) -> (N, B, out)."""
    return nn.Sequential(
        AgentLinear(num_agents, in_features, hidden),
        nn.ReLU(inplace=True),
        AgentLinear(num_agents, hidden, hidden),
        nn.ReLU(inplace=True),
        AgentLinear(num_agents, hidden, out_features),
    )
