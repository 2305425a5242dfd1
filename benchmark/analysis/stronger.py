"""The stronger-learners study (issue #34): each candidate change against today's defaults, per task and method.

Reads the kept runs of benchmark/results/stronger/{task}/{method}[_{change}]__{seed}.json (python -m benchmark.run
with one --arm per method and change, tuning seeds 101-103; commands in docs/stronger.md) and prints, per task, one
row per (method, change): the mean over seeds of the final return, the best point on the curve, the mean of the
last 30% of the curve, the fall from the best point to the end (normalised: 0 random forces, 1 the
full-information controller), the goal reached at the end (speaker-listener, reference) and the minutes per run,
with every seed's last-30% mean; then one summary table, a row per change and a column per (task, method): the
mean of the last 30% and the largest fall from best over the seeds. --figure draws the curves, one panel per task
and method.

    python -m benchmark.analysis.stronger --figure docs/stronger_curves.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from benchmark.report import TASKS, load_references, load_results, normalise
from common.utils import UsageError

RESULTS = Path(__file__).resolve().parents[1] / "results" / "stronger"
METHODS = ("ctedd_global", "maddpg_k3_differentiable", "maddpg_k0")  # the arm names start with one of these
LAST = 0.3  # the score's part of the curve, as the tuner's


def split(arm: str) -> tuple[str, str]:
    """An arm's method and change: ctedd_global_td3 -> (ctedd_global, td3); ctedd_global -> (ctedd_global, none)."""
    method = max((m for m in METHODS if arm == m or arm.startswith(f"{m}_")), key=len, default=None)
    if method is None:
        raise UsageError(f"arm {arm}: its name does not start with one of {', '.join(METHODS)}")
    return method, arm[len(method) + 1 :] or "none"


def run_numbers(result: dict, task: str, references: dict) -> dict:
    """One run's final, best, mean of the last 30%, normalised fall from best, goal reached (%), minutes."""
    steps, returns = np.array(result["curve"], dtype=float).T
    scores = normalise(returns, task, references)
    reached = result["final"].get("goal_reached")
    return {
        "final": returns[-1],
        "best": returns.max(),
        "last": returns[steps >= (1 - LAST) * steps[-1]].mean(),
        "fall": scores.max() - scores[-1],
        "reached": 100 * np.mean(list(reached.values())) if reached else np.nan,
        "minutes": result.get("minutes", np.nan),
    }


def table(results: dict, references: dict, task: str) -> str:
    rows = [
        "| method | change | seeds | final | best | last 30% (per seed) | fall from best (max) | reached | minutes |"
    ]
    rows.append("|---|---|---|---|---|---|---|---|---|")
    arms = sorted(results.get(task, {}), key=lambda arm: (split(arm)[0], split(arm)[1] != "none", arm))
    for arm in arms:
        runs = results[task][arm]
        numbers = {seed: run_numbers(result, task, references) for seed, result in sorted(runs.items())}
        mean = {key: np.mean([n[key] for n in numbers.values()]) for key in next(iter(numbers.values()))}
        per_seed = " / ".join(f"{n['last']:.1f}" for n in numbers.values())
        falls = max(n["fall"] for n in numbers.values())
        reached = "" if np.isnan(mean["reached"]) else f"{mean['reached']:.0f}%"
        method, change = split(arm)
        rows.append(
            f"| {method} | {change} | {len(numbers)} | {mean['final']:.1f} | {mean['best']:.1f} | {mean['last']:.1f}"
            f" ({per_seed}) | {mean['fall']:.3f} ({falls:.3f}) | {reached} | {mean['minutes']:.1f} |"
        )
    return "\n".join(rows)


def summary(results: dict, references: dict) -> str:
    """One row per change, one column per (task, method): last-30% mean over the seeds (largest fall from best)."""
    columns = [(t, m) for t in TASKS if t in results for m in METHODS if any(split(a)[0] == m for a in results[t])]
    changes = sorted({split(arm)[1] for runs in results.values() for arm in runs}, key=lambda c: (c != "none", c))
    short = {"ctedd_global": "CTEDD-G", "maddpg_k3_differentiable": "MADDPG-3", "maddpg_k0": "MADDPG-0"}
    names = [f"{task.removeprefix('simple_')} {short[method]}" for task, method in columns]
    rows = ["| change | " + " | ".join(names) + " |", "|---|" + "---|" * len(columns)]
    for change in changes:
        cells = []
        for task, method in columns:
            runs = results[task].get(method if change == "none" else f"{method}_{change}", {})
            numbers = [run_numbers(result, task, references) for result in runs.values()]
            if not numbers:
                cells.append("")
                continue
            last, fall = np.mean([n["last"] for n in numbers]), max(n["fall"] for n in numbers)
            cells.append(f"{last:.1f} ({fall:.3f})" + ("" if len(numbers) == 3 else f" n={len(numbers)}"))
        rows.append(f"| {change} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def plot(results: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        (task, method)
        for task in TASKS
        if task in results
        for method in METHODS
        if any(split(arm)[0] == method for arm in results[task])
    ]
    fig, axes = plt.subplots(-(-len(panels) // 2), 2, figsize=(13, 3.6 * -(-len(panels) // 2)), squeeze=False)
    changes = sorted({split(arm)[1] for runs in results.values() for arm in runs} - {"none"})
    colours = dict(zip(changes, plt.get_cmap("tab20").colors))  # a change has one colour in every panel
    for ax, (task, method) in zip(axes.ravel(), panels):
        late = []  # the y range of the part this study is about: from a fifth of the run on
        for arm in sorted(a for a in results[task] if split(a)[0] == method):
            curves = np.array([np.array(r["curve"], dtype=float) for r in results[task][arm].values()])
            steps, mean, change = curves[0, :, 0], curves[:, :, 1].mean(0), split(arm)[1]
            late += list(mean[steps >= 0.2 * steps[-1]])
            width, colour = (2.2, "black") if change == "none" else (1.3, colours[change])
            ax.plot(steps, mean, lw=width, color=colour, label=f"{change} (n={len(curves)})")
        ax.set_ylim(min(late) - 1.5, max(late) + 1.0)
        ax.set_title(f"{task}: {method}", fontsize=10)
        ax.set_xlabel("env steps")
        ax.set_ylabel("return, mean over seeds")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    for ax in axes.ravel()[len(panels) :]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results-dir", default=str(RESULTS))
    parser.add_argument("--figure", default=None, help="write the curves here")
    cli = parser.parse_args()
    try:
        found, references = load_results(cli.results_dir), load_references(cli.results_dir)
        for task in [t for t in TASKS if t in found]:
            print(f"## {task}\n\n{table(found, references, task)}\n")
        print(f"## Summary: last 30% (largest fall from best)\n\n{summary(found, references)}")
    except UsageError as err:
        raise SystemExit(f"error: {err}") from None
    if cli.figure:
        plot(found, cli.figure)
