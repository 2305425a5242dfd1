"""Issue #35's targets, read on a benchmark's runs (evaluation seeds 1-5 at the tuned settings: Benchmark v4).

One row per target and learner: the measured value (mean over seeds), the threshold, and met / missed; rows with
fewer than 5 seeds are marked interim. The stage-1 learners are CTEDD-G and MADDPG-0, -1, -3 (each channel).
- Falls: on each channel task, every stage-1 learner's fall from its best point, normalised (0 random forces,
  1 full information): the mean over seeds of each seed's best evaluation minus its last, at most 0.03; the largest
  seed's fall is shown beside it.
- Returns: the mean final return over seeds (speaker-listener: CTEDD-G, and MADDPG-3 with its better channel, whose
  listener must also reach its goal in 90% of the evaluation episodes; reference: CTEDD-G and MADDPG-3's better
  channel; spread and spread-an1: every stage-1 learner).
- Against the previous benchmark: no arm's mean final return below its own there, on any task (P(now > before)
  beside it, rliable's probability of improvement over the seeds).

    python -m benchmark.analysis.targets --results-dir benchmark/results/v4 --previous benchmark/results/v3
"""

from __future__ import annotations

import argparse

import numpy as np

from benchmark.report import (
    CHANNEL_TASKS,
    MIN_SEEDS,
    TASKS,
    arms_of,
    fall_from_best,
    improvement,
    load_references,
    load_results,
    normalise,
    style,
)
from common.utils import UsageError

STAGE1 = (
    "ctedd_global",
    "maddpg_k0",
    "maddpg_k1_differentiable",
    "maddpg_k1_reinforced",
    "maddpg_k3_differentiable",
    "maddpg_k3_reinforced",
)
MAX_FALL = 0.03
RETURNS = {  # task -> (learners, at least); "maddpg_k3": MADDPG-3 with its better channel on that task
    "simple_speaker_listener": ((("ctedd_global",), -13.5), (("maddpg_k3",), -14.5)),
    "simple_reference": ((("ctedd_global",), -14.0), (("maddpg_k3",), -20.0)),
    "simple_spread": ((STAGE1, -30.0),),
    "simple_spread-an1": ((STAGE1, -32.0),),
}
MIN_REACH = 0.9  # speaker-listener: the listener reaches its goal in this share of evaluation episodes


def finals(runs: dict) -> np.ndarray:
    return np.array([runs[seed]["final"]["sum"] for seed in sorted(runs)])


def row(target: str, task: str, label: str, seeds: int, value: str, threshold: str, met: bool) -> str:
    verdict = ("met" if met else "missed") + ("" if seeds >= MIN_SEEDS else f" (interim, {seeds} seeds)")
    return f"| {target} | {task} | {label} | {seeds} | {value} | {threshold} | {verdict} |"


def better_channel(task_runs: dict) -> str | None:
    """MADDPG-3's arm with the higher mean final return on a task."""
    arms = [a for a in ("maddpg_k3_differentiable", "maddpg_k3_reinforced") if a in task_runs]
    return max(arms, key=lambda a: finals(task_runs[a]).mean(), default=None)


def targets(results: dict, references: dict, previous: dict | None = None, reps: int = 2000) -> str:
    lines = ["| target | task | learner | seeds | measured | threshold | verdict |", "|---|---|---|---|---|---|---|"]
    for task in CHANNEL_TASKS:
        for arm in [a for a in STAGE1 if a in results.get(task, {})]:
            falls = [fall_from_best(r["curve"], task, references) for r in results[task][arm].values()]
            value = f"{np.mean(falls):.3f} (largest {max(falls):.3f})"
            label = style(results, arm)[0]
            lines.append(
                row("fall from best", task, label, len(falls), value, f"≤ {MAX_FALL}", np.mean(falls) <= MAX_FALL)
            )
    for task, goals in RETURNS.items():
        runs = results.get(task, {})
        for learners, least in goals:
            arms = [better_channel(runs)] if learners == ("maddpg_k3",) else list(learners)
            for arm in [a for a in arms if a in runs]:
                scores = finals(runs[arm])
                label = style(results, arm)[0] + (", the better channel" if learners == ("maddpg_k3",) else "")
                met = scores.mean() >= least
                lines.append(row("final return", task, label, len(scores), f"{scores.mean():.2f}", f"≥ {least}", met))
                if task == "simple_speaker_listener" and learners == ("maddpg_k3",):
                    reach = np.mean([r["final"]["goal_reached"]["listener_0"] for r in runs[arm].values()])
                    met = reach >= MIN_REACH
                    lines.append(
                        row("goal reached", task, label, len(scores), f"{reach:.0%}", f"≥ {MIN_REACH:.0%}", met)
                    )
    for task in [t for t in TASKS if previous and t in previous]:
        for arm in [a for a in arms_of(results) if a in results.get(task, {}) and a in previous[task]]:
            now, before = finals(results[task][arm]), finals(previous[task][arm])
            p, interval = improvement(
                normalise(now, task, references)[:, None], normalise(before, task, references)[:, None], reps
            )
            value = f"{now.mean():.2f} (P(now > before) {p:.2f} [{interval[0]:.2f}, {interval[1]:.2f}])"
            label = style(results, arm)[0]
            lines.append(
                row(
                    "not below before",
                    task,
                    label,
                    len(now),
                    value,
                    f"≥ {before.mean():.2f}",
                    now.mean() >= before.mean(),
                )
            )
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results-dir", required=True, help="the benchmark's results tree (benchmark/results/v4)")
    parser.add_argument("--previous", default=None, help="the benchmark it must not fall below (benchmark/results/v3)")
    parser.add_argument("--reps", type=int, default=2000, help="bootstrap resamples of P(now > before)")
    cli = parser.parse_args()
    try:
        results = load_results(cli.results_dir)
        if not results:
            raise UsageError(f"no results in {cli.results_dir}")
        previous = load_results(cli.previous) if cli.previous else None
        print(targets(results, load_references(cli.results_dir), previous, cli.reps))
    except UsageError as err:
        raise SystemExit(f"error: {err}") from None
