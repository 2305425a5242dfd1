"""Per-agent layers: N agents' networks evaluated together, in one batched matmul per layer; and the joint action
the critics read, from per-agent actions."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


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


class AgentLayerNorm(nn.Module):
    """LayerNorm over each agent's features, with the agent's own gain and bias: (N, B, F) -> (N, B, F).
    Equals, for each agent i, nn.LayerNorm(F) applied to x[i] (a test checks it)."""

    def __init__(self, num_agents: int, features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_agents, 1, features))
        self.bias = nn.Parameter(torch.zeros(num_agents, 1, features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.bias, F.layer_norm(x, x.shape[-1:]), self.weight)


def agent_mlp(num_agents: int, in_features: int, hidden: int, out_features: int, layer_norm: bool = False):
    """Per agent, two hidden ReLU layers of width `hidden`: (N, B, in) -> (N, B, out) (an nn.Sequential). With
    `layer_norm` (maddpg.py --layer-norm, not in the paper) each hidden AgentLinear is followed by an AgentLayerNorm,
    before its ReLU."""

    def hidden_layer(width: int) -> list[nn.Module]:
        norm = [AgentLayerNorm(num_agents, hidden)] if layer_norm else []
        return [AgentLinear(num_agents, width, hidden), *norm, nn.ReLU(inplace=True)]

    return nn.Sequential(
        *hidden_layer(in_features), *hidden_layer(hidden), AgentLinear(num_agents, hidden, out_features)
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
