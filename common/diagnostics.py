"""Research instrumentation of ctedd_global.py, not part of CTEDD: what moves omega_i under eq. (1).

ctedd_global.py logs one entry every 100 learning iterations (tensorboard `omega/*`, result.json
"omega"); benchmark/analysis/sigma.py and docs/omega.md read them.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def omega_diagnostics(step: int, alpha, log_std, sampled_actions, means, q) -> dict:
    """Per agent and action dimension, at log sigma (before the squash): the batch mean of the score term's
    gradient q * ((a - mu)^2 / sigma^2 - 1) and its signal-to-noise ratio (mean over standard error); sigma's
    mean, the spread (std) of log sigma across the batch's states, the share of clipped samples; alpha_i.
    log_std, sampled_actions, means: (N, B, 2); q: (N, B)."""
    with torch.no_grad():
        per_sample = q[..., None] * (((sampled_actions - means) / log_std.exp()) ** 2 - 1)  # (N, B, 2)
        mean, error = per_sample.mean(1), per_sample.std(1) / math.sqrt(per_sample.shape[1])
        return {
            "step": step,
            "alpha": alpha.tolist(),
            "pg_gradient": mean.tolist(),
            "pg_snr": (mean.abs() / error.clamp(min=1e-12)).tolist(),
            "sigma": log_std.exp().mean(1).tolist(),
            "log_sigma_spread": log_std.std(1).tolist(),
            "clipped": (sampled_actions.abs() > 1).float().mean(1).tolist(),
        }


def log_omega(writer, entry: dict, agents: list[str], pg: torch.Tensor, entropy: torch.Tensor) -> dict:
    """An entry of `omega_diagnostics` to tensorboard, and back: each agent's exploration std, and the agents'
    means of alpha, the spread of log sigma and the gradient's signal-to-noise ratio; with them eq. (1)'s terms,
    the policy-gradient term `pg` and the entropy (per agent), as losses/omega_pg and losses/entropy."""
    step = entry["step"]
    writer.add_scalar("losses/omega_pg", pg.mean().item(), step)
    writer.add_scalar("losses/entropy", entropy.mean().item(), step)
    for i, agent in enumerate(agents):
        writer.add_scalar(f"charts/exploration_std/{agent}", float(np.mean(entry["sigma"][i])), step)
    for name in ("alpha", "log_sigma_spread", "pg_snr"):
        writer.add_scalar(f"omega/{name}", float(np.mean(entry[name])), step)
    return entry
