"""Why omega_i's sigma goes where it goes: eq. (1) replayed on a trained, frozen critic.

Loads a saved ctedd_global.py run (trunk, mean heads and critics fixed) and the states its final policy
visits, then asks three questions, each with numbers:

1. Oracle: is there a graded, state-dependent sigma for eq. (1) to find? For each probe state and agent,
   the sigma maximising eq. (1)'s objective under this critic,
   E_eps[Q_i(s, clip(mu + sigma * eps)) - Q_i(s, mu)] + alpha * H(pi_i),
   on a grid of sigma (the same eps for every sigma; isotropic: one sigma for both dimensions).
2. Estimator: eq. (1)'s score gradient at log sigma per dimension, q * ((a - mu)^2 / sigma^2 - 1), against
   the entropy term's gradient alpha, and its signal-to-noise ratio for a batch B of 100 (train_frequency),
   1000 and 10000 transitions; with Q at the clipped (executed) action and at the unclipped sample.
3. Optimiser: omega_i retrained from a fresh initialisation by eq. (1), one change at a time: the
   training defaults (B = 100, Adam at lr 1e-2, tanh-squashed log sigma, Q at the clipped action,
   baseline Q_i(s, mu)); B = 1000; Adam lr 1e-3; Q at the unclipped sample; log sigma clamped instead of
   squashed; no baseline (eq. (1) as written). Where each puts sigma: its mean, its spread across states,
   the share at a bound, and the correlation of log sigma(s) with the oracle's across states.

    python -m benchmark.analysis.omega_probe --run runs/simple_speaker_listener__diag_target0.3__0__* --write out.json
    python -m benchmark.analysis.omega_probe --read benchmark/results/omega/probe.json   # the kept numbers, as tables
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn, optim

from common.engine import make_envs
from common.envs import EPISODE_LENGTH
from common.layers import AgentLinear
from common.utils import load_checkpoint
from ctedd_global import (
    LOG_STD_MAX,
    LOG_STD_MIN,
    CentralizedQ,
    GlobalPolicy,
    omega_loss,
    squash_log_std,
)

LOG_SIGMA_GRID = np.linspace(LOG_STD_MIN, LOG_STD_MAX, 21)
VARIANTS = {  # name -> changes to the training defaults
    "as trained": {},
    "B = 1000": {"batch": 1000},
    "Adam lr 1e-3": {"lr": 1e-3},
    "Q at the unclipped sample": {"clip_q": False},
    "log sigma clamped, not squashed": {"squash": False},
    "no baseline (eq. (1) as written)": {"baseline": False},
}
DEFAULTS = {"batch": 100, "lr": 1e-2, "clip_q": True, "squash": True, "baseline": True}


def load_run(run_dir: str) -> tuple[dict, GlobalPolicy, CentralizedQ, float]:
    """The saved model's args, policy and critics, and alpha at the end of training (result.json)."""
    models = glob.glob(os.path.join(run_dir, "*.cleanrl_model"))
    if len(models) != 1:
        raise SystemExit(f"error: {run_dir} holds no saved model (train with --save-model)")
    checkpoint = load_checkpoint(models[0])
    args = checkpoint["args"]
    result_path = Path(run_dir, "result.json")
    result = json.loads(result_path.read_text()) if result_path.is_file() else {}
    if not result.get("omega"):
        raise SystemExit(f"error: {run_dir} is not a finished ctedd_global.py run with a learned sigma")
    envs = make_envs(args, 1)
    policy = GlobalPolicy(envs.num_agents, envs.state_dim, args["hidden_dim"])
    policy.load_state_dict(checkpoint["policy"])
    critics = CentralizedQ(envs.num_agents, envs.state_dim, args["hidden_dim"])
    critics.load_state_dict(checkpoint["critics"])
    policy.requires_grad_(False)
    critics.requires_grad_(False)
    return args, policy, critics, float(np.mean(result["omega"][-1]["alpha"]))


def visited_states(args: dict, policy: GlobalPolicy, episodes: int, seed: int) -> torch.Tensor:
    """States of `episodes` episodes of the final policy, sampling its own Gaussian: eq. (1)'s data."""
    envs = make_envs(args, episodes, seed=seed)
    _, state = envs.reset(seed=seed)
    states = []
    with torch.no_grad():
        for _ in range(EPISODE_LENGTH):
            state_t = torch.from_numpy(state)
            states.append(state_t)
            preactivation, log_std = policy(state_t)
            samples = torch.tanh(preactivation) + log_std.exp() * torch.randn_like(log_std)
            _, state, *_ = envs.step(samples.clamp(-1, 1).transpose(0, 1).numpy())
    return torch.cat(states)


def q_gain(critics, states, means, actions) -> torch.Tensor:
    """Q_i(s, a_i, mu_-i) - Q_i(s, mu): agent i's own action varied, the others' at their means. (N, B)."""
    return critics.own_action(states, means, actions) - critics(states, means)


def oracle(critics, states, means, alpha: float, samples: int, generator) -> torch.Tensor:
    """log sigma*(s) per agent, (N, B): the grid point maximising E_eps[q_gain] + alpha * 2 log sigma."""
    n, batch, dims = means.shape
    eps = torch.randn(n, 1, samples, dims, generator=generator)
    rows = states.repeat_interleave(samples, 0)
    wide = means.repeat_interleave(samples, 1)
    objective = []
    with torch.no_grad():
        for log_sigma in LOG_SIGMA_GRID:
            actions = (means[:, :, None] + math.exp(log_sigma) * eps).clamp(-1, 1).reshape(n, -1, dims)
            gain = q_gain(critics, rows, wide, actions).view(n, batch, samples).mean(-1)
            objective.append(gain + alpha * dims * log_sigma)
    return torch.as_tensor(LOG_SIGMA_GRID, dtype=torch.float32)[torch.stack(objective).argmax(0)]


def score_gradient(critics, states, means, log_std, clip_q: bool, generator) -> torch.Tensor:
    """eq. (1)'s score term's gradient at log sigma, one sample per state: q * (z^2 - 1), (N, B, 2)."""
    z = torch.randn(means.shape, generator=generator)
    actions = means + log_std.exp() * z
    with torch.no_grad():
        gain = q_gain(critics, states, means, actions.clamp(-1, 1) if clip_q else actions)
    return gain[..., None] * (z**2 - 1)


def estimator_table(critics, states, means, log_std, alpha, generator) -> list[dict]:
    rows = []
    for clip_q in (True, False):
        gradient = score_gradient(critics, states, means, log_std, clip_q, generator)
        mean, spread = gradient.mean(1), gradient.std(1)
        row = {"Q at": "clipped action" if clip_q else "unclipped sample", "alpha": alpha}
        row["score gradient"] = mean.abs().mean().item()
        row["score gradient (signed)"] = mean.mean().item()
        row.update({f"SNR B={b}": (mean.abs() / spread * math.sqrt(b)).mean().item() for b in (100, 1000, 10000)})
        rows.append(row)
    return rows


class Omega(nn.Module):
    """omega_i on the frozen trunk's features: log sigma tanh-squashed into [LOG_STD_MIN, LOG_STD_MAX]
    as in ctedd_global.py, or the same affine map clamped (no saturation of the gradient inside)."""

    def __init__(self, num_agents: int, hidden: int, squash: bool):
        super().__init__()
        self.linear = AgentLinear(num_agents, hidden, 2)
        self.squash = squash

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.linear(features)
        if self.squash:
            return squash_log_std(x)
        return LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (x.clamp(-1, 1) + 1)


def retrain(policy, critics, states, alpha, iterations: int, seed: int, **changes) -> torch.Tensor:
    """omega_i trained from scratch by eq. (1) on fresh on-policy samples; returns log sigma on `states`."""
    setting = {**DEFAULTS, **changes}
    torch.manual_seed(seed)
    with torch.no_grad():
        features = policy.features(states)
        means = torch.tanh(policy.mean_heads(features))
    omega = Omega(policy.num_agents, features.shape[-1], setting["squash"])
    optimizer = optim.Adam(omega.parameters(), lr=setting["lr"])
    for _ in range(iterations):
        index = torch.randint(len(states), (setting["batch"],))
        log_std = omega(features[:, index])
        with torch.no_grad():
            samples = means[:, index] + log_std.exp() * torch.randn_like(log_std)
            executed = samples.clamp(-1, 1) if setting["clip_q"] else samples
            q = critics.own_action(states[index], means[:, index], executed)
            if setting["baseline"]:  # as in training: Q_i(s, a) - Q_i(s, mu(s))
                q = q - critics(states[index], means[:, index])
        loss, _, _ = omega_loss(log_std, samples, means[:, index], q, alpha)
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(omega.parameters(), 0.5)
        optimizer.step()
    with torch.no_grad():
        return omega(features)


def describe(log_std: torch.Tensor, best: torch.Tensor) -> dict:
    """log_std (N, B, 2) against the oracle's log sigma* (N, B)."""
    at_bound = ((log_std - LOG_STD_MIN).abs() < 0.1) | ((log_std - LOG_STD_MAX).abs() < 0.1)
    per_agent = log_std.mean(-1)
    correlations = [np.corrcoef(a, b)[0, 1] for a, b in zip(per_agent.numpy(), best.numpy()) if a.std() and b.std()]
    return {
        "sigma": log_std.exp().mean().item(),
        "log sigma spread": log_std.std(1).mean().item(),
        "at a bound": at_bound.float().mean().item(),
        "corr with oracle": float(np.mean(correlations)) if correlations else None,
        "|log sigma - oracle|": (per_agent - best).abs().mean().item(),
    }


def probe(
    run_dir: str,
    alphas: list[float],
    retrain_alphas: list[float],
    iterations: int,
    seed: int,
    episodes: int = 64,
    probe_size: int = 512,
    samples: int = 256,
) -> dict:
    """All three questions on one saved run: `episodes` episodes of its states, of which `probe_size`
    for the oracle (with `samples` draws of eps per sigma) and the retrainings."""
    args, policy, critics, final_alpha = load_run(run_dir)
    generator = torch.Generator().manual_seed(seed)
    states = visited_states(args, policy, episodes, seed)
    probe_states = states[torch.randperm(len(states), generator=generator)[:probe_size]]
    with torch.no_grad():
        preactivation, log_std = policy(states)
        means = torch.tanh(preactivation)
        probe_means = torch.tanh(policy(probe_states)[0])
    found = {"run": os.path.basename(os.path.normpath(run_dir)), "final alpha": final_alpha, "oracle": {}}
    found["estimator"] = estimator_table(critics, states, means, log_std, final_alpha, generator)
    for alpha in sorted({final_alpha, *alphas}):
        best = oracle(critics, probe_states, probe_means, alpha, samples, generator)
        found["oracle"][f"{alpha:g}"] = {
            "sigma*": best.exp().mean().item(),
            "log sigma* spread": best.std(1).mean().item(),
            "at a bound": ((best == LOG_STD_MIN) | (best == LOG_STD_MAX)).float().mean().item(),
        }
    best = oracle(critics, probe_states, probe_means, final_alpha, samples, generator)
    found["as learned"] = describe(policy(probe_states)[1], best)
    found["retrained"], found["oracle repeatability"] = {}, {}
    for alpha in retrain_alphas:
        best = oracle(critics, probe_states, probe_means, alpha, samples, generator)
        again = oracle(critics, probe_states, probe_means, alpha, samples, generator)  # new eps: the oracle's own noise
        found["oracle repeatability"][f"{alpha:g}"] = describe(again[..., None].expand(-1, -1, 2), best)
        found["retrained"][f"{alpha:g}"] = {
            name: describe(retrain(policy, critics, probe_states, alpha, iterations, seed, **changes), best)
            for name, changes in VARIANTS.items()
        }
    return found


def markdown(found: dict) -> str:
    lines = [f"### {found['run']} (final alpha {found['final alpha']:.4g})", ""]
    lines += ["| Q at | score gradient | (signed) | alpha | SNR B=100 | B=1000 | B=10000 |", "|---" * 7 + "|"]
    for r in found["estimator"]:
        lines.append(
            f"| {r['Q at']} | {r['score gradient']:.4f} | {r['score gradient (signed)']:.4f} | {r['alpha']:.4g} "
            f"| {r['SNR B=100']:.2f} | {r['SNR B=1000']:.2f} | {r['SNR B=10000']:.2f} |"
        )
    lines += ["", "| alpha | oracle sigma* | log sigma* spread | at a bound |", "|---|---|---|---|"]
    for alpha, r in found["oracle"].items():
        lines.append(f"| {alpha} | {r['sigma*']:.3f} | {r['log sigma* spread']:.3f} | {r['at a bound']:.2f} |")
    if found["oracle repeatability"]:
        lines += ["", "| alpha | oracle against itself (new eps): corr | mean abs log error |", "|---|---|---|"]
    for alpha, r in found["oracle repeatability"].items():
        lines.append(f"| {alpha} | {r['corr with oracle']:.2f} | {r['|log sigma - oracle|']:.2f} |")
    lines += ["", "| alpha | omega_i | sigma | log sigma spread | at a bound | corr with oracle | mean abs log error |"]
    lines.append("|---|---|---|---|---|---|---|")
    rows = [(f"{found['final alpha']:.4g}", "as learned in training", found["as learned"])]
    rows += [(alpha, name, r) for alpha, variants in found["retrained"].items() for name, r in variants.items()]
    for alpha, name, r in rows:
        corr = "n/a" if r["corr with oracle"] is None else f"{r['corr with oracle']:.2f}"
        lines.append(
            f"| {alpha} | {name} | {r['sigma']:.3f} | {r['log sigma spread']:.3f} | {r['at a bound']:.2f} | {corr} "
            f"| {r['|log sigma - oracle|']:.2f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", nargs="+", default=[], help="saved ctedd_global.py run directories")
    parser.add_argument("--read", default=None, help="print the tables of a JSON written by --write instead")
    parser.add_argument("--alphas", nargs="*", type=float, default=[1.0, 0.1, 0.01, 0.001])
    parser.add_argument("--retrain-alphas", nargs="*", type=float, default=[0.01, 0.001])
    parser.add_argument("--iterations", type=int, default=3000, help="eq. (1) steps of each retraining")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write", default=None, help="also write the numbers to this JSON")
    cli = parser.parse_args()
    if not cli.run and not cli.read:
        raise SystemExit("error: give --run (saved runs to probe) or --read (a probe's JSON)")
    torch.set_num_threads(1)
    if cli.read:
        results = json.loads(Path(cli.read).read_text())
    else:
        results = [probe(run, cli.alphas, cli.retrain_alphas, cli.iterations, cli.seed) for run in cli.run]
    print("\n\n".join(markdown(r) for r in results))
    if cli.write:
        Path(cli.write).write_text(json.dumps(results, indent=1) + "\n")
