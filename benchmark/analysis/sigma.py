"""What omega_i learns: sigma_i(s) over training and along one episode, and what moves it (eq. (1)).

From ctedd_global.py runs (their result.json "omega" entries, logged every 100 learning iterations):
sigma's mean and its spread across a batch's states against env steps; eq. (1)'s score-term gradient
at log sigma per dimension, its signal-to-noise ratio, alpha, the share of clipped samples, and the
curvature of Q_i in a_i it implies (for Q_i(mu + sigma eps) - Q_i(mu) ~ -c sigma^2 eps^2 the score term's
mean is -2 c sigma^2; eq. (1) then balances at sigma^2 = alpha / (2 c)). With saved models, one evaluation
episode: sigma per agent against the time step, next to the distance to the goal.

    python -m benchmark.analysis.sigma --runs-dir runs --episode-figure docs/sigma_episode.png
    python -m benchmark.analysis.sigma --results-dir benchmark/results/v2 --figure docs/sigma_training.png \
        --names ctedd_global_learned_reg ctedd_global_learned
"""

from __future__ import annotations

import argparse
import glob
import json
import os
from pathlib import Path

import numpy as np
import torch

from benchmark.report import save  # one way to write a figure, the report's
from common.engine import make_envs
from common.envs import EPISODE_LENGTH
from common.utils import load_checkpoint
from ctedd_global import GlobalPolicy

SEED = 10_000


def load_runs(runs_dir: str) -> dict[tuple[str, str], dict]:
    """(task, exp_name) -> result of every ctedd_global.py run with omega diagnostics."""
    runs = {}
    for path in sorted(glob.glob(os.path.join(runs_dir, "*", "result.json"))):
        result = json.loads(Path(path).read_text())
        if result.get("omega"):
            runs[result["task"], result["exp_name"]] = {**result, "run_dir": os.path.dirname(path)}
    return runs


def load_results(results_dir: str, names: list[str]) -> dict[tuple[str, str], dict]:
    """(task, name__seed) -> the kept result ({results_dir}/{task}/{name}__{seed}.json) of every run
    named in `names` that holds omega diagnostics."""
    runs = {}
    for name in names:
        for path in sorted(glob.glob(os.path.join(results_dir, "*", f"{name}__*.json"))):
            result = json.loads(Path(path).read_text())
            if result.get("omega"):
                runs[result["task"], Path(path).stem] = {**result, "run_dir": None}
    return runs


def summary(entries: list[dict], at: int) -> dict:
    """The diagnostics of the entry nearest env step `at`, averaged over agents and dimensions."""
    entry = min(entries, key=lambda e: abs(e["step"] - at))
    sigma = np.array(entry["sigma"])
    found = {"step": entry["step"], "alpha": np.mean(entry["alpha"]), "sigma": sigma.mean()}
    found["log_sigma_spread"] = np.mean(entry["log_sigma_spread"])
    if "pg_gradient" in entry:
        gradient = np.array(entry["pg_gradient"])
        found.update(pg_gradient=np.abs(gradient).mean(), pg_snr=np.mean(entry["pg_snr"]))
        found["clipped"] = np.mean(entry["clipped"])
        found["curvature"] = np.median(np.maximum(-gradient, 0) / (2 * sigma**2))  # c in Q ~ -c sigma^2 eps^2
    return found


def setting(result: dict) -> str:
    """A run's exploration setting in words, from its args: how eq. (1) was run."""
    args = result["args"]
    if args.get("target_entropy") is not None:
        target_sigma = np.exp(args["target_entropy"] - 0.5 * np.log(2 * np.pi * np.e))
        words = f"alpha tuned to target sigma {target_sigma:.2g}"
    else:
        words = f"alpha {args['alpha']:g}"
    if args.get("omega_reg"):
        words += f", --omega-reg {args['omega_reg']:g}"
    return words + ("" if args.get("pg_baseline", True) else ", no baseline: eq. (1) as written")


def diagnosis_table(runs: dict, steps=(100_000, 500_000, 1_000_000)) -> str:
    lines = [
        "| task | run | env step | alpha | sigma | log-sigma spread | score gradient | SNR | clipped | curvature c |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (task, name), result in sorted(runs.items()):
        for step in steps:
            s = summary(result["omega"], step)
            extra = (
                f"{s['pg_gradient']:.4f} | {s['pg_snr']:.2f} | {s['clipped']:.2f} | {s['curvature']:.4f}"
                if "pg_gradient" in s
                else " | | | "
            )
            lines.append(
                f"| {task} | {name} | {s['step'] // 1000}k | {s['alpha']:.4f} | {s['sigma']:.3f} "
                f"| {s['log_sigma_spread']:.3f} | {extra} |"
            )
    return "\n".join(lines)


def plot_over_training(runs: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({task for task, _ in runs})
    settings = sorted({setting(result) for result in runs.values()})
    colours = dict(zip(settings, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    fig, axes = plt.subplots(3, len(tasks), figsize=(6 * len(tasks), 10), squeeze=False)
    for column, task in enumerate(tasks):
        labelled = set()
        for (t, _), result in sorted(runs.items()):
            if t != task:
                continue
            steps = [e["step"] for e in result["omega"]]
            label = setting(result)  # one colour per setting, one line per seed
            for row, key in enumerate(("sigma", "log_sigma_spread", "alpha")):
                values = [np.mean(e[key]) for e in result["omega"]]
                axes[row, column].plot(steps, values, color=colours[label], lw=0.9, alpha=0.8)
            if label not in labelled:
                axes[0, column].plot([], [], color=colours[label], label=label)
                labelled.add(label)
        axes[0, column].set_title(f"{task}\nsigma, mean over states, agents and dimensions", fontsize=10)
        axes[1, column].set_title("std of log sigma across a batch's states (per agent and dimension)", fontsize=10)
        axes[2, column].set_title("alpha, mean over agents", fontsize=10)
        axes[2, column].set_yscale("log")
        for row in axes[:, column]:
            row.set_xlabel("env steps")
            row.grid(alpha=0.3)
        axes[0, column].set_ylim(0, 1.05)
        axes[0, column].legend(fontsize=7)
    fig.tight_layout()
    save(fig, path)


def episode(run_dir: str, task: str) -> tuple[np.ndarray, np.ndarray]:
    """One evaluation episode (mpe2's reset(seed=10000)) of a saved global policy, its means executed:
    sigma per agent (T, N), averaged over the 2 dimensions, and each agent's distance to its goal (T, N)
    (speaker-listener: the listener's to the goal, for both; spread: each agent's to its nearest landmark)."""
    (model,) = glob.glob(os.path.join(run_dir, "*.cleanrl_model"))
    checkpoint = load_checkpoint(model)
    envs = make_envs(checkpoint["args"], 1)
    policy = GlobalPolicy(envs.num_agents, envs.state_dim, checkpoint["args"]["hidden_dim"])
    policy.load_state_dict(checkpoint["policy"])
    obs, state = envs.reset(seed=[SEED])
    sigmas, distances = [], []
    with torch.no_grad():
        for _ in range(EPISODE_LENGTH):
            means, log_std = policy(torch.from_numpy(state))
            sigmas.append(log_std.exp().mean(-1)[:, 0].numpy())
            view = envs.view()
            if task == "simple_speaker_listener":
                distances.append(np.repeat(envs.scenario.goal_distance(view)[1, 0], envs.num_agents))
            else:
                distances.append(view.landmark_distance[:, :, 0].min(1))
            obs, state, *_ = envs.step(means.transpose(0, 1).numpy())
    return np.array(sigmas), np.array(distances)


def plot_episodes(runs: dict, names: list[str], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        (task, name)
        for (task, name), r in sorted(runs.items())
        if name in names and glob.glob(os.path.join(r["run_dir"], "*.cleanrl_model"))
    ]
    if not panels:
        raise SystemExit("error: no saved model among the runs named")
    columns = min(2, len(panels))
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(7 * columns, 4 * rows), squeeze=False)
    for ax, (task, name) in zip(axes.ravel(), panels):
        sigmas, distances = episode(runs[task, name]["run_dir"], task)
        for i in range(sigmas.shape[1]):
            (line,) = ax.plot(sigmas[:, i], "-", label=f"sigma, agent {i}")
            ax.plot(distances[:, i], ":", color=line.get_color(), label=f"distance to goal, agent {i}")
        ax.set_title(f"{task}: {setting(runs[task, name])}", fontsize=9)
        ax.set_xlabel("time step")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    save(fig, path)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--results-dir", default=None, help="read kept results instead of --runs-dir (no episodes)")
    parser.add_argument("--names", nargs="*", default=["ctedd_global_learned_reg"], help="with --results-dir")
    parser.add_argument("--figure", default=None, help="sigma and its spread across states over training")
    parser.add_argument(
        "--episode-figure", default=None, help="sigma along one episode, for the runs of --episode-runs"
    )
    parser.add_argument("--episode-runs", nargs="*", default=["diag_eq1", "diag_default"])
    parser.add_argument("--write", default=None, help="also write the diagnostics of every run to this JSON")
    cli = parser.parse_args()
    if cli.results_dir and cli.episode_figure:
        parser.error("--episode-figure replays saved models: use --runs-dir, not --results-dir")
    found = load_results(cli.results_dir, cli.names) if cli.results_dir else load_runs(cli.runs_dir)
    if not found:
        raise SystemExit(f"error: no run with omega diagnostics under {cli.results_dir or cli.runs_dir}")
    print(diagnosis_table(found))
    if cli.write:
        compact = {f"{t}/{n}": {"final": r["final"]["sum"], "omega": r["omega"]} for (t, n), r in found.items()}
        Path(cli.write).write_text(json.dumps(compact) + "\n")
    if cli.figure:
        plot_over_training(found, cli.figure)
    if cli.episode_figure:
        plot_episodes(found, cli.episode_runs, cli.episode_figure)
