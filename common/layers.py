"""Per-agent layers: N agents' networks evaluated together, in one batched matmul per layer; and the joint action
the critics read, from per-agent actions."""

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


def joint_action(actions: torch.Tensor) -> torch.Tensor:
    """Every agent's action side by side, in agent order: (N, B, A) -> (B, N * A)."""
    return actions.transpose(0, 1).reshape(actions.shape[1], -1)


def own_action_joint(actions: torch.Tensor, own_actions: torch.Tensor) -> torch.Tensor:
    """Agent i's joint action has its own slot from own_actions and the others' from actions:
    both (N, B, A) -> (N, B, N * A); row i equals joint_action(actions with row i replaced)."""
    n, batch, action_dim = own_actions.shape
    own = torch.eye(n, device=own_actions.device).view(n, 1, n, 1)  # own[i, :, j] = [i == j]
    joint = own * own_actions.transpose(0, 1) + (1 - own) * actions.transpose(0, 1)
    return joint.reshape(n, batch, n * action_dim)
