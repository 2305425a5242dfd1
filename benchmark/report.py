"""The benchmark report: the paper's claims tested with rliable statistics, from a results tree.

Reads each run's result.json kept by the grid, python -m benchmark.run ({results_dir}/{task}/{name}__{seed}.json;
the benchmark versions' trees are benchmark/results/v2/, v3/, see benchmark/results/README.md), and the
reference controllers' returns ({results_dir}/references.json if there is one, else the canonical
benchmark/results/references.json). Scores are normalised per task: 0 = random forces, 1 = the
full-information controller. With rliable (Agarwal et al. 2021): the interquartile mean (IQM) of
the normalised final score with stratified-bootstrap 95% intervals, per task and across the tasks
of a group, the probability of improvement P(X > Y) for each claim, and the IQM against env steps
(sample efficiency). Prints markdown tables; writes the figures.

Every arm with results appears: the predefined ones (the paper's methods and issue #14's variants)
under their labels, in their colours, the others (`python -m benchmark.run --arm NAME=...`) under
their name and message bits. The claims are the paper's, those whose arms have results, and any
added with --claim X>Y (does arm X beat arm Y at the end of the budget) or --claim X>Y:curve (over
the whole learning curve).

    python -m benchmark.report --figures docs
    python -m benchmark.report --claim "my_arm>ctedd_global" --claim "my_arm>maddpg_k3_differentiable:curve"
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import defaultdict
from fractions import Fraction
from pathlib import Path

import numpy as np

from benchmark.grid import comparable, read_json, read_result
from common.utils import UsageError

RESULTS_DIR = Path(__file__).resolve().parent / "results" / "local"  # benchmark.run's default; versions: --results-dir
BOOTSTRAP_SEED = 0  # the same resamples every time: the report regenerates exactly
CHANNEL_TASKS = ("simple_speaker_listener", "simple_reference", "simple_spread-an1")
CONTROL_TASKS = ("simple_tag-scripted", "simple_push-scripted", "simple_spread")
TASKS = (*CHANNEL_TASKS, *CONTROL_TASKS)
GROUPS = {"channel tasks": CHANNEL_TASKS, "controls": CONTROL_TASKS}
SCOPES = {**GROUPS, **{task: (task,) for task in TASKS}}  # where a claim is tested: each group pooled, each task
# predefined arm -> (label, colour, line style): CTEDD in blues, MADDPG in reds (differentiable), oranges (reinforced)
METHODS = {
    "ctedd_global": ("CTEDD-G", "#08306b", "-"),  # today's default: sigma_i(s) learned, alpha tuned (v2's: alpha 1)
    # issue #14 (docs/omega.md): alpha tuned to a target entropy, with --omega-reg 1e-3 (today's default) or 0
    "ctedd_global_learned_reg": ("CTEDD-G, learned σ (default)", "#006d2c", "-."),
    "ctedd_global_learned": ("CTEDD-G, learned σ, no omega-reg", "#41ab5d", "--"),
    "ctedd_global_fixed": ("CTEDD-G, fixed σ 0.6", "#a1d99b", "-."),
    "ctedd_distill_k3": ("CTEDD-3", "#2171b5", "-"),
    "ctedd_distill_k1": ("CTEDD-1", "#6baed6", "-"),
    "ctedd_distill_k0": ("CTEDD-0", "#9ecae1", "-"),
    # issue #22 (docs/hedge.md): counterfactual relabelling with the stage-1 critic as a second target; DAgger
    "ctedd_distill_cf_k3": ("CTEDD-3, counterfactual", "#3f007d", ":"),
    "ctedd_distill_cf_k1": ("CTEDD-1, counterfactual", "#6a51a3", ":"),
    "ctedd_distill_cf_k0": ("CTEDD-0, counterfactual", "#9e9ac8", ":"),
    "ctedd_distill_cf_critic_k3": ("CTEDD-3, cf + critic", "#54278f", "-"),
    "ctedd_distill_cf_critic_k1": ("CTEDD-1, cf + critic", "#807dba", "-"),
    "ctedd_distill_cf_critic_k0": ("CTEDD-0, cf + critic", "#bcbddc", "-"),
    "ctedd_distill_dagger_k3": ("CTEDD-3, DAgger", "#00441b", "-"),
    "ctedd_distill_dagger_k1": ("CTEDD-1, DAgger", "#238b45", "-"),
    "ctedd_distill_dagger_k0": ("CTEDD-0, DAgger", "#74c476", "-"),
    # issue #25: per task the best relabelling of issue #22 (cf + critic where goals are drawn, DAgger on spread-an1)
    "ctedd_distill_best_k3": ("CTEDD-3, best relabelling", "#3f007d", "-"),
    "ctedd_distill_best_k1": ("CTEDD-1, best relabelling", "#6a51a3", "-"),
    "ctedd_distill_best_k0": ("CTEDD-0, best relabelling", "#9e9ac8", "-"),
    "maddpg_k3_differentiable": ("MADDPG-3 (diff.)", "#a50f15", "-"),
    "maddpg_k1_differentiable": ("MADDPG-1 (diff.)", "#ef3b2c", "-"),
    "maddpg_k3_reinforced": ("MADDPG-3 (reinf.)", "#d94801", "--"),
    "maddpg_k1_reinforced": ("MADDPG-1 (reinf.)", "#fd8d3c", "--"),
    "maddpg_k0": ("MADDPG-0", "#737373", "-"),
}
OTHER_COLOURS = ("#6a51a3", "#8c510a", "#c51b7d", "#01665e", "#b8860b", "#000000")  # the other arms', in turn
# the paper's claims as (X, Y, measure): does X beat Y? "final": the score at the end of the budget;
# "curve": the score averaged over the learning curve's evaluations (the area under it), the paper's
# sample efficiency. Distilled policies learn from the final teacher, so they have no curve of their own.
# A claim whose arms have no results is left out.
CLAIMS = [
    ("ctedd_global", "ctedd_distill_k3", "final"),
    ("ctedd_distill_k3", "ctedd_distill_k1", "final"),
    ("ctedd_distill_k1", "ctedd_distill_k0", "final"),
    ("ctedd_distill_k0", "maddpg_k0", "final"),
    ("ctedd_distill_k1", "maddpg_k1_differentiable", "final"),
    ("ctedd_distill_k1", "maddpg_k1_reinforced", "final"),
    ("ctedd_distill_k3", "maddpg_k3_differentiable", "final"),
    ("ctedd_distill_k3", "maddpg_k3_reinforced", "final"),
    ("ctedd_global", "maddpg_k0", "curve"),
    ("ctedd_global", "maddpg_k3_differentiable", "curve"),
    ("ctedd_global", "maddpg_k3_reinforced", "curve"),
    # issue #22: the distillation that hedges, against eq. (2) and against MADDPG-k
    ("ctedd_distill_cf_critic_k0", "ctedd_distill_k0", "final"),
    ("ctedd_distill_cf_critic_k1", "ctedd_distill_k1", "final"),
    ("ctedd_distill_cf_critic_k3", "ctedd_distill_k3", "final"),
    ("ctedd_distill_cf_critic_k0", "maddpg_k0", "final"),
    ("ctedd_distill_cf_critic_k1", "maddpg_k1_differentiable", "final"),
    ("ctedd_distill_cf_critic_k1", "maddpg_k1_reinforced", "final"),
    ("ctedd_distill_cf_critic_k3", "maddpg_k3_differentiable", "final"),
    ("ctedd_distill_cf_critic_k3", "maddpg_k3_reinforced", "final"),
    ("ctedd_distill_dagger_k0", "ctedd_distill_k0", "final"),
    ("ctedd_distill_dagger_k3", "ctedd_distill_k3", "final"),
    ("ctedd_distill_dagger_k0", "maddpg_k0", "final"),
    ("ctedd_distill_dagger_k3", "maddpg_k3_differentiable", "final"),
    ("ctedd_distill_dagger_k3", "maddpg_k3_reinforced", "final"),
    # issue #25: the paper's ordering with the best relabelling of issue #22
    ("ctedd_global", "ctedd_distill_cf_critic_k3", "final"),
    ("ctedd_distill_cf_critic_k3", "ctedd_distill_cf_critic_k1", "final"),
    ("ctedd_distill_cf_critic_k1", "ctedd_distill_cf_critic_k0", "final"),
    ("ctedd_global", "ctedd_distill_dagger_k3", "final"),
    ("ctedd_distill_dagger_k3", "ctedd_distill_dagger_k0", "final"),
    # issue #14: what omega_i's learned exploration is worth against the best fixed sigma (same tuning budget)
    ("ctedd_global_learned_reg", "ctedd_global_fixed", "final"),
    ("ctedd_global_learned_reg", "ctedd_global_fixed", "curve"),
    ("ctedd_global_learned", "ctedd_global_fixed", "final"),
    ("ctedd_global_learned_reg", "ctedd_global_learned", "final"),
    ("ctedd_global_learned_reg", "ctedd_global", "final"),
    ("ctedd_global_learned_reg", "maddpg_k3_differentiable", "curve"),
    ("ctedd_global_fixed", "maddpg_k3_differentiable", "curve"),
]


# arms pooled from others, for the across-task statistics only: on each task the one of its parts that ran there
COMBINED = {
    f"ctedd_distill_best_k{k}": (f"ctedd_distill_cf_critic_k{k}", f"ctedd_distill_dagger_k{k}") for k in (0, 1, 3)
}
COMBINED_CLAIMS = [
    ("ctedd_global", "ctedd_distill_best_k3", "final"),
    ("ctedd_distill_best_k3", "ctedd_distill_best_k1", "final"),
    ("ctedd_distill_best_k1", "ctedd_distill_best_k0", "final"),
    ("ctedd_distill_best_k0", "maddpg_k0", "final"),
    ("ctedd_distill_best_k1", "maddpg_k1_differentiable", "final"),
    ("ctedd_distill_best_k1", "maddpg_k1_reinforced", "final"),
    ("ctedd_distill_best_k3", "maddpg_k3_differentiable", "final"),
    ("ctedd_distill_best_k3", "maddpg_k3_reinforced", "final"),
]


def with_combined(results, combined=COMBINED) -> dict:
    """The results with each combined arm added: on every task, the runs of the one part that has results
    there (a task where two parts ran is refused)."""
    pooled = {task: dict(methods) for task, methods in results.items()}
    for name, parts in combined.items():
        for task, methods in results.items():
            present = [p for p in parts if p in methods]
            if len(present) > 1:
                raise UsageError(f"combined arm {name}: both {present[0]} and {present[1]} have results on {task}")
            if present:
                pooled[task][name] = methods[present[0]]
    return pooled


def load_results(results_dir: Path = RESULTS_DIR) -> dict[str, dict[str, dict[int, dict]]]:
    """task -> arm -> seed -> result, for every arm with results on the report's tasks; a file that is not a
    result.json of this project is refused in one line that names it."""
    results: dict = defaultdict(lambda: defaultdict(dict))
    for path in sorted(Path(results_dir).glob("*/*__*.json")):
        method, seed = path.stem.rsplit("__", 1)
        if path.parent.name in TASKS:
            if not seed.isdigit():
                raise UsageError(f"{path}: not a kept result's name ({{arm}}__{{seed}}.json)")
            results[path.parent.name][method][int(seed)] = read_result(str(path))
    return {task: dict(methods) for task, methods in results.items()}


def with_baseline(results: dict, baseline: dict) -> tuple[dict, list[str]]:
    """The results with, on each of their tasks, the arms that only `baseline` has (e.g. Benchmark v3's, to compare
    a fork with); and the names of the arms taken from it."""
    merged, taken = {task: dict(methods) for task, methods in results.items()}, set()
    for task in results:
        for arm, runs in baseline.get(task, {}).items():
            if arm not in merged[task]:
                merged[task][arm] = runs
                taken.add(arm)
    return merged, sorted(taken)


def warnings(results) -> list[str]:
    """One line for each thing that makes a comparison of these results unfair: on a task, training arms run for
    different budgets; an arm whose seeds were made with different settings or code; arms made by different
    versions of common/ (or of unknown version: results kept before the code was recorded)."""
    lines, versions = [], defaultdict(set)
    for task, methods in results.items():
        budgets = defaultdict(set)
        for arm, runs in methods.items():
            made = {}
            for seed, result in sorted(runs.items()):
                settings = {k: v for k, v in comparable(result["args"]).items() if k != "seed"}
                code = result.get("code") or {}
                made.setdefault(json.dumps([settings, code], sort_keys=True), (seed, settings, code))
                versions[code.get("common_sha256", "unknown")].add(arm)
                if "global_run" not in result["args"] and "total_timesteps" in result["args"]:
                    budgets[result["args"]["total_timesteps"]].add(arm)
            if len(made) > 1:
                (seed_a, settings_a, code_a), (seed_b, settings_b, code_b) = list(made.values())[:2]
                keys = sorted(k for k in {*settings_a, *settings_b} if settings_a.get(k, "-") != settings_b.get(k, "-"))
                what = ", ".join(
                    f"--{k.replace('_', '-')} {settings_a.get(k, '-')} / {settings_b.get(k, '-')}" for k in keys
                )
                what = what or f"code {code_a or 'unknown'} / {code_b or 'unknown'}"
                lines.append(
                    f"{arm} on {task} mixes results made otherwise: seeds {seed_a} / {seed_b} differ in {what}"
                )
        if len(budgets) > 1:
            parts = "; ".join(f"{b} env steps: {', '.join(sorted(arms))}" for b, arms in sorted(budgets.items()))
            lines.append(f"on {task} the training arms ran different budgets ({parts})")
    if len(versions) > 1:
        parts = "; ".join(f"{v}: {', '.join(sorted(arms))}" for v, arms in sorted(versions.items()))
        lines.append(f"the results were made by different versions of common/ ({parts})")
    return lines


def arms_of(results) -> list[str]:
    """The arms with results: the predefined ones in their order, then the others by name."""
    found = {method for methods in results.values() for method in methods}
    return [m for m in METHODS if m in found] + sorted(found - set(METHODS))


def settings_of(results, arm: str) -> dict:
    """The arguments an arm's runs were started with (those of its first result)."""
    return next(r.get("args", {}) for methods in results.values() for r in methods.get(arm, {}).values())


def style(results, arm: str) -> tuple[str, str, str]:
    """(label, colour, line style): a predefined arm's, or its name and message bits and a colour of its own."""
    if arm in METHODS:
        return METHODS[arm]
    others = [m for m in arms_of(results) if m not in METHODS]
    bits = settings_of(results, arm).get("message_bits")
    label = arm if bits is None else f"{arm} (k = {bits})"
    return label, OTHER_COLOURS[others.index(arm) % len(OTHER_COLOURS)], "-"


def distillations(results) -> list[str]:
    """The arms whose runs distil a stage-1 run (they read one: --global-run), by message bits."""
    found = [m for m in arms_of(results) if "global_run" in settings_of(results, m)]
    return sorted(found, key=lambda m: settings_of(results, m).get("message_bits", 0))


def parse_claim(text: str, results) -> tuple[str, str, str]:
    """--claim X>Y (the final score) or X>Y:curve (the whole learning curve), X and Y arms with results."""
    pair, _, measure = text.partition(":")
    x, greater, y = pair.partition(">")
    if not greater or measure not in ("", "curve"):
        raise UsageError(f"--claim {text!r}: expected X>Y or X>Y:curve, X and Y the names of arms")
    for arm in (x, y):
        if arm not in arms_of(results):
            raise UsageError(f"--claim {text!r}: no results for arm {arm!r}")
    return x, y, measure or "final"


def load_references(results_dir: Path = RESULTS_DIR) -> dict[str, dict[str, float]]:
    """The reference controllers' returns per task (benchmark.reference_returns writes them): the results tree's own
    copy if it keeps one, else the canonical benchmark/results/references.json."""
    own = Path(results_dir) / "references.json"
    canonical = Path(__file__).resolve().parent / "results" / "references.json"
    path = own if own.is_file() else canonical
    if not path.is_file():
        raise UsageError(f"neither {own} nor {canonical} exists: write it with python -m benchmark.reference_returns")
    return read_json(str(path), "reference returns file (python -m benchmark.reference_returns)", ("returns",))[
        "returns"
    ]


def bootstrap_state() -> np.random.RandomState:
    """The same resamples at every call. rliable's StratifiedBootstrap draws its indices from numpy's
    global generator and ignores the random_state it is given (rliable 1.x): seed both."""
    np.random.seed(BOOTSTRAP_SEED)
    return np.random.RandomState(BOOTSTRAP_SEED)


def normalise(returns, task: str, references: dict) -> np.ndarray:
    """0 = random forces, 1 = the full-information controller."""
    low, high = references[task]["random"], references[task]["full information"]
    return (np.asarray(returns, dtype=float) - low) / (high - low)


def common_seeds(results: dict, tasks, methods) -> list[int]:
    """The seeds every (task, method) has: rliable's score matrices need the same runs per task."""
    sets = [set(results.get(task, {}).get(m, {})) for task in tasks for m in methods]
    return sorted(set.intersection(*sets)) if sets and all(sets) else []


def score_matrix(results, references, tasks, method, seeds) -> np.ndarray:
    """Normalised final scores, (runs, tasks)."""
    columns = [[results[task][method][s]["final"]["sum"] for s in seeds] for task in tasks]
    return np.stack([normalise(c, task, references) for c, task in zip(columns, tasks)], axis=1)


def iqm_intervals(scores: dict[str, np.ndarray], reps: int) -> tuple[dict, dict]:
    """IQM of each method's (runs, tasks) scores and its stratified-bootstrap 95% interval."""
    from rliable import library as rly
    from rliable import metrics

    return rly.get_interval_estimates(
        scores,
        lambda s: np.array([metrics.aggregate_iqm(s)]),
        reps=reps,
        random_state=bootstrap_state(),
    )


def improvement(x: np.ndarray, y: np.ndarray, reps: int) -> tuple[float, np.ndarray]:
    """P(X > Y) over (runs, tasks) scores, averaged over tasks, with its 95% interval."""
    from rliable import library as rly
    from rliable import metrics

    point, interval = rly.get_interval_estimates(
        {"x,y": (x, y)},
        metrics.probability_of_improvement,
        reps=reps,
        random_state=bootstrap_state(),
    )
    return float(point["x,y"]), interval["x,y"].ravel()


REACH_LEVEL = 0.9  # sample efficiency as env steps to this share of the full-information controller
MIN_SEEDS = 5  # a verdict needs at least this many seeds common to both arms; fewer get the P and no verdict


def verdict(interval, seeds: int = MIN_SEEDS) -> str:
    low, high = interval
    if seeds < MIN_SEEDS:
        return f"too few seeds ({seeds})"
    return "holds" if low > 0.5 else "does not hold" if high < 0.5 else "cannot tell"


def budgets(results, tasks, method, seeds) -> list[int]:
    """Each task's budget in env steps: its runs' last evaluation (tag runs 2M, the others 1M)."""
    return [max(results[t][method][s]["curve"][-1][0] for s in seeds) for t in tasks]


def curves(results, references, tasks, method, seeds) -> tuple[np.ndarray, np.ndarray]:
    """Normalised learning curves at the evaluations all runs share: progress (T,), the share of each task's budget,
    and scores (runs, tasks, T). Tasks of different budgets pool at the same share of their own: tag's 2M env steps
    are not cut at the others' 1M."""
    per_task = [[dict(results[t][method][s]["curve"]) for s in seeds] for t in tasks]
    budget = budgets(results, tasks, method, seeds)
    shares = [{Fraction(step, b) for step in c} for runs, b in zip(per_task, budget) for c in runs]
    progress = sorted(set.intersection(*shares))
    scores = [
        [normalise([c[int(share * b)] for share in progress], t, references) for c in runs]
        for runs, t, b in zip(per_task, tasks, budget)
    ]
    return np.array(progress, dtype=float), np.stack([np.stack(task_scores) for task_scores in scores], axis=1)


def methods_of(results, tasks) -> list[str]:
    return [m for m in arms_of(results) if all(results.get(t, {}).get(m) for t in tasks)]


def final_table(results, references, reps: int) -> str:
    lines = [
        "| task | method | seeds | final return, mean ± std | normalised IQM [95% CI] |",
        "|---|---|---|---|---|",
    ]
    for task in TASKS:
        methods = methods_of(results, [task])
        if not methods:
            continue
        seeds = {m: sorted(results[task][m]) for m in methods}
        scores = {m: score_matrix(results, references, [task], m, seeds[m]) for m in methods}
        point, interval = iqm_intervals(scores, reps)
        for m in methods:
            finals = np.array([results[task][m][s]["final"]["sum"] for s in seeds[m]])
            low, high = interval[m].ravel()
            lines.append(
                f"| {task} | {style(results, m)[0]} | {len(finals)} | {finals.mean():.2f} ± {finals.std():.2f} "
                f"| {point[m][0]:.2f} [{low:.2f}, {high:.2f}] |"
            )
    return "\n".join(lines)


def fall_from_best(curve: list, task: str, references: dict) -> float:
    """How far (normalised) the end of a learning curve lies below its best point."""
    values = normalise([value for _, value in curve], task, references)
    return float(values.max() - values[-1])


def steps_to(curve: list, task: str, references: dict, level: float = REACH_LEVEL) -> int | None:
    """The first evaluation's env steps at which a curve's normalised score reaches `level`; None if it never does."""
    return next((step for step, value in curve if normalise(value, task, references) >= level), None)


def curve_table(results, references) -> str:
    """Per stage-1 learner (distilled policies have no curve): its best point and its end, normalised, the fall
    from the one to the other per seed (mean and largest) and of the mean curve, and the env steps to reach
    REACH_LEVEL of the full-information controller (median over the seeds that reach it)."""
    lines = [
        "| task | method | seeds | best point | final | fall from best, mean (largest) | fall of the mean curve"
        f" | seeds reaching {REACH_LEVEL:.0%} | env steps to {REACH_LEVEL:.0%}, median |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    distilled = distillations(results)
    for task in TASKS:
        for m in [m for m in methods_of(results, [task]) if m not in distilled]:
            runs = list(results[task][m].values())
            best = [normalise([v for _, v in r["curve"]], task, references).max() for r in runs]
            final = [normalise(r["curve"][-1][1], task, references) for r in runs]
            falls = [fall_from_best(r["curve"], task, references) for r in runs]
            steps = [s for s in (steps_to(r["curve"], task, references) for r in runs) if s is not None]
            _, mean_curve = curves(results, references, [task], m, sorted(results[task][m]))
            mean_curve = mean_curve.mean(axis=(0, 1))
            lines.append(
                f"| {task} | {style(results, m)[0]} | {len(runs)} | {np.mean(best):.3f} | {np.mean(final):.3f}"
                f" | {np.mean(falls):.3f} ({max(falls):.3f}) | {mean_curve.max() - mean_curve[-1]:.3f}"
                f" | {len(steps)}/{len(runs)} | {f'{np.median(steps) / 1e3:.0f}k' if steps else '-'} |"
            )
    return "\n".join(lines)


def aggregate_table(results, references, reps: int) -> tuple[str, dict]:
    """IQM across the tasks of each group; returns the table and {group: (methods, point, interval)}."""
    lines = ["| group | method | runs x tasks | normalised IQM [95% CI] |", "|---|---|---|---|"]
    found = {}
    for group, tasks in GROUPS.items():
        methods = methods_of(results, tasks)
        seeds = common_seeds(results, tasks, methods)
        if not seeds:
            continue
        scores = {m: score_matrix(results, references, tasks, m, seeds) for m in methods}
        point, interval = iqm_intervals(scores, reps)
        found[group] = (methods, point, interval)
        for m in methods:
            low, high = interval[m].ravel()
            runs = f"{len(seeds)} x {len(tasks)}"
            lines.append(f"| {group} | {style(results, m)[0]} | {runs} | {point[m][0]:.2f} [{low:.2f}, {high:.2f}] |")
    return "\n".join(lines), found


def claim_label(results, x: str, y: str, measure: str) -> str:
    return f"{style(results, x)[0]} > {style(results, y)[0]}" + (", whole curve" if measure == "curve" else "")


def claims_table(results, references, reps: int, claims=CLAIMS, groups_only: bool = False) -> tuple[str, dict]:
    """P(X > Y) for every claim, across each group's tasks and (unless groups_only) on each task alone."""
    lines = ["| claim | tasks | runs x tasks | P(X > Y) [95% CI] | verdict |", "|---|---|---|---|---|"]
    found = {}
    scopes = GROUPS if groups_only else SCOPES
    for scope, tasks in scopes.items():
        for x, y, measure in claims:
            seeds = common_seeds(results, tasks, [x, y])
            if not seeds:
                continue
            if measure == "final":
                x_scores, y_scores = (score_matrix(results, references, tasks, m, seeds) for m in (x, y))
            else:
                x_scores, y_scores = (curves(results, references, tasks, m, seeds)[1].mean(-1) for m in (x, y))
            p, interval = improvement(x_scores, y_scores, reps)
            found[scope, x, y, measure] = (p, interval)
            lines.append(
                f"| {claim_label(results, x, y, measure)} | {scope} | {len(seeds)} x {len(tasks)} "
                f"| {p:.2f} [{interval[0]:.2f}, {interval[1]:.2f}] | {verdict(interval, len(seeds))} |"
            )
    return "\n".join(lines), found


def claims_summary(results, found: dict, claims=CLAIMS) -> str:
    """One row per claim with results, one column per group and task: P(X > Y) [95% CI] and the verdict's sign."""
    mark = {"holds": "✓", "does not hold": "✗", "cannot tell": "?"}
    scopes = [s for s in [*GROUPS, *TASKS] if any(key[0] == s for key in found)]
    lines = ["| claim | " + " | ".join(scopes) + " |", "|---" * (len(scopes) + 1) + "|"]
    for claim in [c for c in claims if any((scope, *c) in found for scope in scopes)]:
        cells = []
        for scope in scopes:
            if (scope, *claim) in found:
                p, (low, high) = found[(scope, *claim)]
                seeds = len(common_seeds(results, SCOPES[scope], claim[:2]))
                sign = mark.get(verdict((low, high), seeds), f"· ({seeds} seeds)")
                cells.append(f"{sign} {p:.2f} [{low:.2f}, {high:.2f}]")
            else:
                cells.append("")
        lines.append(f"| {claim_label(results, *claim)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def moved_table(results, found: dict, previous, previous_found: dict) -> str:
    """The claims whose verdict differs between two benchmarks (say v3 and v4), in every scope both tested: each
    side's P(X > Y) [95% CI] and verdict."""
    lines = ["| claim | tasks | before: P(X > Y) [95% CI] | verdict | now: P(X > Y) [95% CI] | verdict |"]
    lines.append("|---|---|---|---|---|---|")
    for key in [k for k in found if k in previous_found]:
        scope, x, y, _ = key
        cells = []
        for res, claims in ((previous, previous_found), (results, found)):
            p, (low, high) = claims[key]
            cells += [
                f"{p:.2f} [{low:.2f}, {high:.2f}]",
                verdict((low, high), len(common_seeds(res, SCOPES[scope], [x, y]))),
            ]
        if cells[1] != cells[3]:
            lines.append(f"| {claim_label(results, *key[1:])} | {scope} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def distillation_table(results) -> str:
    """eq. (2)'s loss over the last tenth of the pass, per task and distillation: what the student cannot
    imitate, either for want of capacity or because it cannot know what the teacher knows."""
    arms = distillations(results)
    lines = ["| task | " + " | ".join(style(results, m)[0] for m in arms) + " |", "|---" * (len(arms) + 1) + "|"]
    for task in TASKS:
        cells = []
        for arm in arms:
            runs = results.get(task, {}).get(arm, {})
            tails = [
                np.mean([loss for _, loss in r["losses"][-max(1, len(r["losses"]) // 10) :]]) for r in runs.values()
            ]
            cells.append(f"{np.mean(tails):.3f} ± {np.std(tails):.3f}" if tails else "")
        if any(cells):
            lines.append(f"| {task} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def goal_table(results) -> str:
    """Where a task has goals (speaker-listener, reference): per arm, how often each goal-seeking agent ends
    its evaluation episode nearest its own landmark, and its final distance to it (mean ± std over seeds)."""
    lines = ["| task | method | seeds | goal reached | final distance to the goal |", "|---|---|---|---|---|"]
    for task in TASKS:
        for arm in arms_of(results):
            runs = [r["final"] for r in results.get(task, {}).get(arm, {}).values() if "goal_reached" in r["final"]]
            if not runs:
                continue
            reached = [100 * np.mean(list(f["goal_reached"].values())) for f in runs]
            distance = [np.mean(list(f["goal_distance"].values())) for f in runs]
            lines.append(
                f"| {task} | {style(results, arm)[0]} | {len(runs)} | {np.mean(reached):.0f}% ± {np.std(reached):.0f}"
                f" | {np.mean(distance):.3f} ± {np.std(distance):.3f} |"
            )
    return "\n".join(lines)


def messages_table(report: dict) -> str:
    """What the bits say (benchmark.analysis.messages): I(goal; message) per seed and the usual message per goal."""
    lines = [
        "| task | method | k | I(goal; message), bits, per seed | mean | most frequent message per goal (first seed) |",
        "|---|---|---|---|---|---|",
    ]
    for task, methods in report.items():
        for label, entry in methods.items():
            if not entry["seeds"]:
                continue
            values = [s["mutual_information"] for s in entry["seeds"].values()]
            first = entry["seeds"][min(entry["seeds"], key=int)]["messages"]
            usual = ", ".join(f"goal {g}: {max(c, key=c.get)}" for g, c in first.items())
            cells = ", ".join(f"{v:.2f}" for v in values)
            lines.append(f"| {task} | {label} | {entry['k']} | {cells} | {np.mean(values):.2f} | {usual} |")
    return "\n".join(lines)


def run_time_table(results) -> str:
    """The kept runs and their run time (each run's own minutes, one thread) per task and in all."""
    lines = ["| task | runs | run time, hours |", "|---|---|---|"]
    total_runs, total_minutes = 0, 0.0
    for task in [t for t in TASKS if t in results]:
        minutes = [r.get("minutes", 0.0) for runs in results[task].values() for r in runs.values()]
        total_runs, total_minutes = total_runs + len(minutes), total_minutes + sum(minutes)
        lines.append(f"| {task} | {len(minutes)} | {sum(minutes) / 60:.1f} |")
    lines.append(f"| all | {total_runs} | {total_minutes / 60:.1f} |")
    return "\n".join(lines)


def plot_curves(results, references, path: str) -> None:
    """One panel per task, the paper's Figure 3: return against env steps, mean over seeds with a
    95% bootstrap band; distilled policies (CTEDD-k, from the final teacher) as points at the end."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = [t for t in TASKS if t in results]
    distilled = distillations(results)
    rows = -(-len(tasks) // 3)
    fig, axes = plt.subplots(rows, 3, figsize=(16, 4.5 * rows + 0.6), squeeze=False)
    rng = np.random.default_rng(0)
    for ax, task in zip(axes.ravel(), tasks):
        trained = [r for m, runs in results[task].items() if m not in distilled for r in runs.values()]
        budget = max((r["curve"][-1][0] for r in trained if r.get("curve")), default=0)  # the stage-1 env steps
        for method in arms_of(results):
            runs = results[task].get(method)
            if not runs:
                continue
            label, colour, line = style(results, method)
            if method in distilled:
                finals = np.array([r["final"]["sum"] for r in runs.values()])
                end = max(r["curve"][-1][0] if r.get("curve") else 0 for r in runs.values())  # with stage 2's steps
                ax.errorbar(
                    max(end, budget) + 0.015 * budget * (1 + distilled.index(method)),
                    finals.mean(),
                    yerr=finals.std(),
                    fmt="o",
                    color=colour,
                    label=f"{label} (n={len(finals)})",
                    capsize=3,
                    ms=5,
                )
                continue
            steps = sorted(set.intersection(*(set(dict(r["curve"])) for r in runs.values())))
            values = np.array([[dict(r["curve"])[s] for s in steps] for r in runs.values()])
            boot = values[rng.integers(0, len(values), (1000, len(values)))].mean(1)
            ax.plot(steps, values.mean(0), line, color=colour, label=f"{label} (n={len(values)})", lw=1.6)
            ax.fill_between(steps, *np.percentile(boot, [2.5, 97.5], axis=0), color=colour, alpha=0.15, lw=0)
        for name, value in references[task].items():
            ref_style = {"random": ("gray", "--"), "full information": ("green", ":")}.get(name, ("silver", ":"))
            ax.axhline(value, color=ref_style[0], ls=ref_style[1], lw=1)
            ax.annotate(
                name,
                (0, value),
                xycoords=("axes fraction", "data"),
                xytext=(3, 2),
                textcoords="offset points",
                fontsize=7,
                color=ref_style[0],
            )
        task_refs = references[task]
        if {"random", "full information"} <= set(task_refs):  # start just below random: the end is readable
            ax.set_ylim(bottom=task_refs["random"] - 0.15 * abs(task_refs["full information"] - task_refs["random"]))
        ax.set_title(task)
        ax.set_xlabel("env steps")
        ax.set_ylabel("evaluation return (summed over learners)")
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(tasks) :]:
        ax.set_axis_off()
    handles = {h.get_label().split(" (n=")[0]: h for ax in axes.ravel() for h in ax.get_legend_handles_labels()[0]}
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=6, fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0.16 / rows, 1, 1))
    save(fig, path)


def plot_aggregate(results, found: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(found), figsize=(7 * len(found), 4.5), squeeze=False)
    for ax, (group, (methods, point, interval)) in zip(axes[0], found.items()):
        for row, m in enumerate(methods):
            low, high = interval[m].ravel()
            ax.barh(row, high - low, left=low, color=style(results, m)[1], alpha=0.75, height=0.6)
            ax.plot([point[m][0]] * 2, [row - 0.3, row + 0.3], color="black", lw=1.5)
        ax.set_yticks(range(len(methods)), [style(results, m)[0] for m in methods])
        ax.invert_yaxis()
        ax.axvline(0, color="gray", ls="--", lw=1)
        ax.axvline(1, color="green", ls=":", lw=1)
        ax.set_xlabel("normalised final score, IQM (0: random, 1: full information)", fontsize=9)
        tasks = GROUPS[group]
        ax.set_title(f"{group}: {len(common_seeds(results, tasks, methods))} seeds x {len(tasks)} tasks")
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    save(fig, path)


TASK_MARKS = dict(zip(TASKS, zip(("#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#a6761d"), "osD^vP")))


def plot_improvement(results, found: dict, path: str, claims=CLAIMS) -> None:
    """P(X > Y) with its 95% interval for every claim with results: pooled over each group's tasks (left;
    a claim needs its arms on every task of the group) and on each task alone (right); hollow where fewer
    than MIN_SEEDS seeds are common to both arms (no verdict)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    claims = [c for c in claims if any(key[1:] == c for key in found)]
    panels = {"pooled over the group's tasks": dict(zip(GROUPS, (("#08519c", "o"), ("#969696", "s"))))}
    panels["on each task"] = {task: TASK_MARKS[task] for task in TASKS if any(key[0] == task for key in found)}
    fig, axes = plt.subplots(1, 2, figsize=(14, 0.45 * len(claims) + 1.8), sharey=True, squeeze=False)
    for ax, (title, scopes) in zip(axes[0], panels.items()):
        shifts = np.linspace(-0.3, 0.3, len(scopes)) if len(scopes) > 1 else [0.0]
        for shift, (scope, (colour, marker)) in zip(shifts, scopes.items()):
            rows = [(row, claim) for row, claim in enumerate(claims) if (scope, *claim) in found]
            for row, claim in rows:
                p, (low, high) = found[(scope, *claim)]
                few = len(common_seeds(results, SCOPES[scope], claim[:2])) < MIN_SEEDS  # no verdict: hollow
                ax.errorbar(
                    p,
                    row + shift,
                    xerr=[[p - low], [high - p]],
                    fmt=marker,
                    color=colour,
                    mfc="white" if few else colour,
                    capsize=2,
                    ms=4,
                    label=scope if row == rows[0][0] else None,
                )
        ax.axvline(0.5, color="black", lw=1)
        ax.set_xlim(-0.03, 1.03)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("P(X > Y), probability of improvement, 95% CI")
        ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.04), ncol=3, fontsize=8, frameon=False)
        ax.grid(axis="x", alpha=0.3)
        for row in range(1, len(claims)):
            ax.axhline(row - 0.5, color="#dddddd", lw=0.5)
    axes[0, 0].set_yticks(range(len(claims)), [claim_label(results, *claim) for claim in claims])
    axes[0, 0].set_ylim(len(claims) - 0.5, -0.5)
    fig.tight_layout()
    save(fig, path)


def plot_efficiency(results, references, path: str, reps: int) -> None:
    """IQM normalised score against env steps (the share of each task's budget where they differ), 95% bands, per
    group: who learns with fewer samples."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from rliable import library as rly
    from rliable import metrics

    distilled = distillations(results)  # no curve of their own
    fig, axes = plt.subplots(1, len(GROUPS), figsize=(7 * len(GROUPS), 4.5), squeeze=False)
    for ax, (group, tasks) in zip(axes[0], GROUPS.items()):
        methods = [m for m in methods_of(results, tasks) if m not in distilled]
        seeds = common_seeds(results, tasks, methods)
        if not seeds:
            ax.set_axis_off()
            ax.text(0.5, 0.5, f"{group}: no seed has results\non all of {', '.join(tasks)}", ha="center", va="center")
            continue
        budget = budgets(results, tasks, methods[0], seeds)
        scale = budget[0] if len(set(budget)) == 1 else 1  # env steps; else the share of each task's budget
        for m in methods:
            progress, scores = curves(results, references, tasks, m, seeds)
            iqm = lambda s: np.array([metrics.aggregate_iqm(s[..., t]) for t in range(s.shape[-1])])  # noqa: E731
            point, interval = rly.get_interval_estimates({m: scores}, iqm, reps=reps, random_state=bootstrap_state())
            label, colour, line = style(results, m)
            steps = progress * scale
            ax.plot(steps, point[m], line, color=colour, label=label, lw=1.6)
            ax.fill_between(steps, interval[m][0], interval[m][1], color=colour, alpha=0.15, lw=0)
        ax.axhline(0, color="gray", ls="--", lw=1)
        ax.axhline(1, color="green", ls=":", lw=1)
        ax.set_title(f"{group}: {len(seeds)} seeds x {len(tasks)} tasks")
        if scale > 1:
            ax.set_xlabel("env steps")
        else:
            by_budget = defaultdict(list)
            for task, b in zip(tasks, budget):
                by_budget[b].append(task.removeprefix("simple_"))
            each = "; ".join(f"{', '.join(names)} {b / 1e6:g}M" for b, names in sorted(by_budget.items()))
            ax.set_xlabel(f"share of the run's env steps ({each})")
        ax.set_ylabel("IQM normalised score")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    save(fig, path)


def save(fig, path: str) -> None:
    import matplotlib.pyplot as plt

    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results-dir", default=str(RESULTS_DIR))
    parser.add_argument("--figures", default=None, help="write the figures into this directory")
    parser.add_argument("--prefix", default="benchmark", help="the figures' file names: {prefix}_curves.png, ...")
    parser.add_argument("--reps", type=int, default=2000, help="bootstrap resamples")
    parser.add_argument("--title", default=None, help="the report's first line, a Markdown heading")
    parser.add_argument("--previous", default=None, help="a results tree (e.g. benchmark/results/v3): verdicts moved")
    parser.add_argument("--claim", action="append", default=[], help="X>Y or X>Y:curve, X and Y arms (repeatable)")
    parser.add_argument(
        "--baseline", default=None, help="a results tree (e.g. benchmark/results/v3) for the arms --results-dir lacks"
    )
    cli = parser.parse_args()
    try:
        found_results = load_results(cli.results_dir)
        if cli.baseline:
            found_results, from_baseline = with_baseline(found_results, load_results(cli.baseline))
            print(f"from {cli.baseline}: {', '.join(from_baseline) or 'no arm'}", file=sys.stderr)
        if not found_results:
            raise UsageError(f"no results in {cli.results_dir}")
        refs = load_references(cli.results_dir)
        messages_file = Path(cli.results_dir) / "messages.json"
        messages = (
            read_json(str(messages_file), "messages file (benchmark.analysis.messages)")
            if messages_file.is_file()
            else None
        )
        added = [parse_claim(text, found_results) for text in cli.claim]
        previous = None
        if cli.previous:  # its claims as they stood, with its own references
            before = with_combined(load_results(cli.previous))
            before_refs = load_references(cli.previous)
            before_claims = {
                **claims_table(before, before_refs, cli.reps, CLAIMS + added)[1],
                **claims_table(before, before_refs, cli.reps, COMBINED_CLAIMS, groups_only=True)[1],
            }
            previous = (before, before_claims)
        pooled = with_combined(found_results)  # the combined arms, for the across-task statistics
    except UsageError as err:
        raise SystemExit(f"error: {err}") from None
    claims = CLAIMS + [claim for claim in added if claim not in CLAIMS]
    if cli.title:
        print(f"# {cli.title}\n")
    for line in warnings(found_results):
        print(f"warning: {line}", file=sys.stderr)
        print(f"> warning: {line}\n")
    print("## Final scores per task\n\n" + final_table(found_results, refs, cli.reps))
    print(
        "\n## The learning curves' best point and end (normalised: 0 random forces, 1 full information; per seed)\n\n"
        + curve_table(found_results, refs)
    )
    text, aggregates = aggregate_table(pooled, refs, cli.reps)
    print("\n## Across tasks\n\n" + text)
    text, improvements = claims_table(found_results, refs, cli.reps, claims)
    print("\n## The claims\n\n" + text)
    text, pooled_improvements = claims_table(pooled, refs, cli.reps, COMBINED_CLAIMS, groups_only=True)
    if pooled_improvements:
        print(
            "\n## The claims with the best relabelling, pooled over a group's tasks (on each task, cf + critic"
            " where goals are drawn at reset, DAgger on spread-an1; per task: the tables above)\n\n" + text
        )
    improvements, claims = {**improvements, **pooled_improvements}, claims + COMBINED_CLAIMS
    if previous is not None:
        print(
            f"\n## Verdicts that moved since {cli.previous} (each benchmark normalised by its own references)\n\n"
            + moved_table(pooled, improvements, *previous)
        )
    summary = claims_summary(pooled, improvements, claims)
    print(
        "\n## The claims at a glance (✓ holds, ✗ does not hold, ? cannot tell, · no verdict: fewer than 5 seeds)\n\n"
        + summary
    )
    print(
        "\n## eq. (2)'s loss at the end of the distillation (mean ± std over seeds)\n\n"
        + distillation_table(found_results)
    )
    print(
        "\n## Reaching the goal, final evaluation (Lowe et al. 2017, Table 1, as commonly cited: 84.0% for MADDPG,"
        " 32.0% for DDPG on cooperative communication)\n\n" + goal_table(found_results)
    )
    if messages is not None:
        print(
            "\n## What the bits say: I(goal; message) of each sender, 1000 evaluation episodes per run"
            " (at most log2 3 = 1.58 bits and at most k; python -m benchmark.analysis.messages)\n\n"
            + messages_table(messages)
        )
    print("\n## Run time\n\n" + run_time_table(found_results))
    if cli.figures:
        drawn = [("learning curves", "curves")]
        plot_curves(found_results, refs, f"{cli.figures}/{cli.prefix}_curves.png")
        if aggregates:  # a grid in progress may have no group whose every task has runs yet
            plot_aggregate(pooled, aggregates, f"{cli.figures}/{cli.prefix}_aggregate.png")
            drawn.append(("aggregate", "aggregate"))
        if improvements:
            plot_improvement(pooled, improvements, f"{cli.figures}/{cli.prefix}_improvement.png", claims)
            drawn.append(("probability of improvement", "improvement"))
        plot_efficiency(found_results, refs, f"{cli.figures}/{cli.prefix}_efficiency.png", cli.reps)
        drawn.append(("sample efficiency", "efficiency"))
        links = "".join(f"![{title}]({cli.prefix}_{name}.png)\n\n" for title, name in drawn)
        print(
            f"\n## Figures\n\nLearning curves, mean over seeds with a 95% bootstrap band; distilled policies as points"
            " (mean ± std over seeds) past the end of the budget, each at its stage-1 budget plus the env steps of its"
            " own stage 2 (eq. (2): none; DAgger: its rounds' steps). Their labels come from the final"
            f" teacher, so the whole-curve claims compare stage-1 learners only.\n\n{links}"
            f"(figures written to {cli.figures}/{cli.prefix}_*.png)"
        )
