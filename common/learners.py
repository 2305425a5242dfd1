"""Not in the paper: the candidate changes to the learners that maddpg.py and ctedd_global.py share (issue 34),
each behind one flag and off by default, so that the default is the paper's form: their arguments, TD3's target
policy smoothing and the learning-rate schedule. The lines that use them are in the scripts' training loops and
critics; docs/scripts.md says what each does."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.optim as optim

from common.envs import ACTION_DIM
from common.runs import TrainArgs


@dataclass
class LearnerArgs(TrainArgs):
    """The arguments of the candidate changes, the same in maddpg.py and ctedd_global.py; their Args extend it."""

    critic_hidden_dim: int | None = None
    """width of the critics' two hidden layers (CTEDD-G: of its Q-network); None: --hidden-dim"""
    layer_norm: bool = False
    """LayerNorm in the critics' hidden layers, after each Linear, before its ReLU"""
    twin_critics: bool = False
    """TD3 (Fujimoto et al. 2018): twin critics; the TD target takes the smaller of the two target critics' values
    per agent, both critics regress to it, the actors (and eq. (1)) read the first"""
    target_noise: float = 0.0
    """TD3's target policy smoothing (CleanRL's policy_noise): the std of Gaussian noise on the target actions'
    forces (0: none)"""
    target_noise_clip: float = 0.5
    """TD3 (CleanRL's noise_clip): the target noise is clipped to [-c, c], then the forces to [-1, 1]"""
    policy_delay: int = 1
    """TD3 (CleanRL's policy_frequency): the actors and the target networks are updated every D-th learning
    iteration (the first included), the critics (and eq. (1)'s omega_i and alpha_i) every one"""
    lr_final_fraction: float = 1.0
    """every optimizer's learning rate decays linearly over the run's env steps from its value to this fraction of
    it, reached at the last step (1: constant)"""


def target_policy_smoothing(actions: torch.Tensor, noise_std: float, noise_clip: float) -> torch.Tensor:
    """TD3 (Fujimoto et al. 2018), --target-noise: the target actions' forces plus Gaussian noise of std `noise_std`
    clipped to [-noise_clip, noise_clip], then clamped to [-1, 1]; what follows the forces (maddpg.py's reinforced
    bits) stays as it is. noise_std 0: the actions themselves, no noise drawn. (N, B, A) -> (N, B, A)."""
    if not noise_std:
        return actions
    forces = actions[..., :ACTION_DIM]
    clipped_noise = (torch.randn_like(forces) * noise_std).clamp(-noise_clip, noise_clip)
    return torch.cat([(forces + clipped_noise).clamp(-1.0, 1.0), actions[..., ACTION_DIM:]], dim=-1)


def anneal_lr(modules: Iterable, final_fraction: float, progress: float) -> None:
    """--lr-final-fraction: the learning rate of every optimizer among `modules` at `progress` (env steps taken over
    the budget; from 1 on, the floor) of a linear decay from its initial value to final_fraction of it. The initial
    value is kept in the optimizer's param group, as torch's schedulers keep it, so a resumed run goes on."""
    optimizers = [module for module in modules if isinstance(module, optim.Optimizer)]
    for group in (group for optimizer in optimizers for group in optimizer.param_groups):
        group["lr"] = group.setdefault("initial_lr", group["lr"]) * (1 - (1 - final_fraction) * min(progress, 1.0))
