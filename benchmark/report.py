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
from dataclasses import dataclass

import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

# two-sided 95% Student-t quantiles by degrees of freedom; the normal 1.96 beyond
T_95 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26}


@dataclass
class Run:
    name: str
    group: str
    env_id: str
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
        env_id=parts[0],
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


def table(groups: dict[str, list[Run]], thresholds: dict[str, float], at: int | None) -> str:
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
        row = f"| {group} | {len(runs)} | {finals.mean():.2f} ± {finals.std():.2f} | "
        row += ", ".join(f"{v:.2f}" for v in finals) + " |"
        if at:
            values = [run.curve.get(at) for run in runs]
            known = [v for v in values if v is not None]
            row += f" {np.mean(known):.2f} |" if known else " n/a |"
        threshold = thresholds.get(runs[0].env_id)
        if threshold is None:
            row += " n/a |"
        else:
            reached = [steps_to_reach(run.curve, threshold) for run in runs]
            row += " " + ", ".join("never" if s is None else f"{s // 1000}k" for s in reached) + f" (>= {threshold}) |"
        minutes = np.mean([run.minutes for run in runs])
        sps = [run.sps for run in runs if run.sps is not None]
        row += f" {minutes:.1f} | {np.mean(sps):.0f} |" if sps else f" {minutes:.1f} | n/a |"
        lines.append(row)
    return "\n".join(lines)


def plot(groups: dict[str, list[Run]], path: str, ylabel: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs = sorted({runs[0].env_id for runs in groups.values()})
    fig, axes = plt.subplots(1, len(envs), figsize=(5.5 * len(envs), 4), squeeze=False)
    for ax, env_id in zip(axes[0], envs):
        for group, runs in sorted(groups.items()):
            if runs[0].env_id != env_id:
                continue
            steps = sorted(set.intersection(*(set(run.curve) for run in runs)))
            values = np.array([[run.curve[s] for s in steps] for run in runs])
            mean = values.mean(0)
            band = np.array([confidence_95(values[:, j]) for j in range(len(steps))])
            label = f"{group.split('__', 1)[1]} (n={len(runs)})"
            (line,) = ax.plot(np.array(steps) / 25, mean, label=label)
            if len(runs) > 1:
                ax.fill_between(np.array(steps) / 25, mean - band, mean + band, alpha=0.2, color=line.get_color())
        ax.set_title(env_id)
        ax.set_xlabel("env episodes (25 steps each)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def parse_thresholds(items: list[str]) -> dict[str, float]:
    return {env_id: float(value) for env_id, value in (item.split("=") for item in items)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--metric", default="eval/episodic_return")
    parser.add_argument("--filter", nargs="*", default=[], help="only groups whose name contains one of these")
    parser.add_argument("--min-step", type=int, default=0, help="leave out runs that stop before this env step")
    parser.add_argument("--at", type=int, default=None, help="also report the metric at this env step")
    parser.add_argument("--threshold", nargs="*", default=[], help="ENV=VALUE: env steps to reach VALUE")
    parser.add_argument("--plot", default=None, help="write the learning curves to this PNG")
    cli = parser.parse_args()
    found = read_runs(cli.runs_dir, cli.metric, cli.min_step)
    found = {group: runs for group, runs in found.items() if not cli.filter or any(f in group for f in cli.filter)}
    if not found:
        raise SystemExit(f"error: no run in {cli.runs_dir} logs {cli.metric}")
    print(table(found, parse_thresholds(cli.threshold), cli.at))
    if cli.plot:
        plot(found, cli.plot, cli.metric)
        print(f"\nplot written to {cli.plot}")
