"""Results from tensorboard event files: a markdown table and learning-curve plots.

Runs are grouped by their name without seed and start time (`{env}__{exp_name}__{seed}__{time}`,
or `{env}__{exp_name}__k{bits}__{seed}__{time}` for distillations), so seeds of one setting
form one group.

    python benchmark/report.py --runs-dir runs --plot docs/curves.png --threshold simple_spread=-39
"""

from __future__ import annotations

import argparse
import glob
import os
import re
from dataclasses import dataclass

import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

DEFAULT_METRIC = "eval/episodic_return"
EPISODE_LENGTH = 25
# two-sided 95% Student-t quantiles by degrees of freedom; the normal 1.96 beyond
T_95 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26}


@dataclass
class Run:
    name: str
    group: str
    task: str
    seed: int
    curve: dict[int, float]  # env step -> metric
    minutes: float
    sps: float | None


def read_run(run_dir: str, metric: str) -> Run | None:
    events = EventAccumulator(run_dir, size_guidance={"scalars": 0})
    events.Reload()
    tags = events.Tags()["scalars"]
    if metric not in tags:
        return None
    scalars = events.Scalars(metric)
    name = os.path.basename(os.path.normpath(run_dir))
    parts = name.split("__")
    wall = [e.wall_time for tag in tags for e in events.Scalars(tag)]
    sps = events.Scalars("charts/SPS")[-1].value if "charts/SPS" in tags else None
    if "charts/distill_minutes" in tags:
        minutes = events.Scalars("charts/distill_minutes")[-1].value
    else:
        minutes = (max(wall) - min(wall)) / 60
    return Run(
        name=name,
        group="__".join(parts[:-2]),
        task=parts[0],
        seed=int(parts[-2]),
        curve={e.step: e.value for e in scalars},
        minutes=minutes,
        sps=sps,
    )


def read_runs(runs_dir: str, metric: str, min_step: int = 0) -> dict[str, list[Run]]:
    """Runs grouped by setting; runs whose metric stops before `min_step` (unfinished) are left out."""
    groups: dict[str, list[Run]] = {}
    for run_dir in sorted(glob.glob(os.path.join(runs_dir, "*"))):
        run = read_run(run_dir, metric) if os.path.isdir(run_dir) else None
        if run is not None and max(run.curve) >= min_step:
            groups.setdefault(run.group, []).append(run)
    return groups


def confidence_95(values: np.ndarray) -> float:
    n = len(values)
    if n < 2:
        return float("nan")
    return T_95.get(n - 1, 1.96) * values.std(ddof=1) / np.sqrt(n)


def steps_to_reach(curve: dict[int, float], threshold: float) -> int | None:
    return next((step for step, value in sorted(curve.items()) if value >= threshold), None)


def table(groups: dict[str, list[Run]], thresholds: dict[str, float], at: int | None, random=None) -> str:
    """One row per setting; `random` (env id -> return) adds a random-actions row per env."""
    header = "| setting | seeds | final return (mean ± std) | per seed |"
    rule = "|---|---|---|---|"
    if at:
        header += f" at {at // 1000}k steps |"
        rule += "---|"
    header += " steps to threshold (per seed) | minutes per run | SPS |"
    rule += "---|---|---|"
    lines = [header, rule]
    for group, runs in sorted(groups.items()):
        finals = np.array([run.curve[max(run.curve)] for run in runs])
        row = f"| {runs[0].task} {label(group)} | {len(runs)} | {finals.mean():.2f} ± {finals.std():.2f} | "
        row += ", ".join(f"{v:.2f}" for v in finals) + " |"
        if at:
            values = [run.curve.get(at) for run in runs]
            known = [v for v in values if v is not None]
            row += f" {np.mean(known):.2f} |" if known else " n/a |"
        threshold = thresholds.get(runs[0].task)
        if threshold is None:
            row += " n/a |"
        else:
            reached = [steps_to_reach(run.curve, threshold) for run in runs]
            row += " " + ", ".join("never" if s is None else f"{s // 1000}k" for s in reached) + f" (>= {threshold}) |"
        minutes = np.mean([run.minutes for run in runs])
        sps = [run.sps for run in runs if run.sps is not None]
        row += f" {minutes:.1f} | {np.mean(sps):.0f} |" if sps else f" {minutes:.1f} | n/a |"
        lines.append(row)
    for task, value in sorted((random or {}).items()):
        lines.append(f"| {task} random actions | | {value:.2f} |" + " |" * (lines[1].count("|") - 4))
    return "\n".join(lines)


def label(group: str) -> str:
    """The paper's names for the runner's runs: ctedd_global -> CTEDD-G, ctedd_distill__k1 -> CTEDD-1,
    maddpg_k0 -> MADDPG-0, maddpg_k3_reinforced -> MADDPG-3 (reinforced)."""
    name = group.split("__", 1)[1]
    match = re.fullmatch(
        r"(ctedd_global|ctedd_distill|maddpg)(?:_k(\d+))?(?:_(differentiable|reinforced))?(?:__k(\d+))?", name
    )
    if match is None:
        return name
    bits = match[2] or match[4] or ""
    method = {"ctedd_global": "CTEDD-G", "ctedd_distill": f"CTEDD-{bits}", "maddpg": f"MADDPG-{bits}"}[match[1]]
    return method + (f" ({match[3]})" if match[3] else "")


def plot(curves: dict[str, dict[str, list[Run]]], path: str, random: dict[str, float]) -> None:
    """One row of panels per metric (e.g. the sum and each team), one column per environment."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({runs[0].task for groups in curves.values() for runs in groups.values()})
    fig, axes = plt.subplots(len(curves), len(tasks), figsize=(5.5 * len(tasks), 4 * len(curves)), squeeze=False)
    for row, (metric, groups) in zip(axes, curves.items()):
        for ax, task in zip(row, tasks):
            env_groups = {group: runs for group, runs in sorted(groups.items()) if runs[0].task == task}
            if not env_groups:
                ax.set_axis_off()
                continue
            for group, runs in env_groups.items():
                steps = sorted(set.intersection(*(set(run.curve) for run in runs)))
                values = np.array([[run.curve[s] for s in steps] for run in runs])
                mean = values.mean(0)
                band = np.array([confidence_95(values[:, j]) for j in range(len(steps))])
                episodes = np.array(steps) / EPISODE_LENGTH
                (line,) = ax.plot(episodes, mean, label=f"{label(group)} (n={len(runs)})")
                if len(runs) > 1:
                    ax.fill_between(episodes, mean - band, mean + band, alpha=0.2, color=line.get_color())
            if task in random and metric == DEFAULT_METRIC:
                ax.axhline(random[task], color="gray", linestyle="--", label="random actions")
            ax.set_title(task)
            ax.set_xlabel(f"env episodes ({EPISODE_LENGTH} steps each)")
            ax.set_ylabel(metric)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def parse_env_values(items: list[str]) -> dict[str, float]:
    return {task: float(value) for task, value in (item.split("=") for item in items)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument(
        "--metric", nargs="+", default=[DEFAULT_METRIC], help="the first makes the table; each a row of panels"
    )
    parser.add_argument("--filter", nargs="*", default=[], help="only groups whose name contains one of these")
    parser.add_argument("--min-step", type=int, default=0, help="leave out runs that stop before this env step")
    parser.add_argument("--at", type=int, default=None, help="also report the metric at this env step")
    parser.add_argument("--threshold", nargs="*", default=[], help="ENV=VALUE: env steps to reach VALUE")
    parser.add_argument("--random", nargs="*", default=[], help="ENV=VALUE: the random-action return, as a reference")
    parser.add_argument("--plot", default=None, help="write the learning curves to this PNG")
    cli = parser.parse_args()
    curves = {}
    for metric in cli.metric:
        found = read_runs(cli.runs_dir, metric, cli.min_step)
        curves[metric] = {g: runs for g, runs in found.items() if not cli.filter or any(f in g for f in cli.filter)}
    if not curves[cli.metric[0]]:
        raise SystemExit(f"error: no run in {cli.runs_dir} logs {cli.metric[0]}")
    random = parse_env_values(cli.random)
    print(table(curves[cli.metric[0]], parse_env_values(cli.threshold), cli.at, random))
    if cli.plot:
        plot(curves, cli.plot, random)
        print(f"\nplot written to {cli.plot}")
