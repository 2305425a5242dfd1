"""Issue #22: CTEDD-k when the student cannot know what the teacher knew (docs/hedge.md).

Distils each tuned CTEDD-G teacher (seeds 1-5, 1M env steps, the tuned settings of benchmark/tuned.json)
five ways, at every k of --bits:
- eq. (2), the paper's: the stored states, in chronological order (ctedd_distill.py's default);
- counterfactual relabelling: each stored state once per value of the goals drawn at reset (no new samples);
- DAgger: after eq. (2)'s pass, rounds in which the student acts and the teacher labels what it visits
  (new env samples, counted and reported);
- both;
- counterfactual relabelling with the stage-1 critic as a second target (--critic-weight);
and runs the tuned MADDPG-0 and MADDPG-1 (differentiable channel: the better one on these tasks) on the
same seeds; MADDPG-3 is taken from benchmark/results/tuned/. Every finished run's result.json is kept under
benchmark/results/hedge/{task}/, so the study continues where it stopped. --report prints the tables
(mean ± std over seeds, P(X > Y) with 95% stratified-bootstrap intervals) and draws the figure.

    python -m benchmark.analysis.hedge --tasks simple_speaker_listener simple_reference --workers 2
    python -m benchmark.analysis.hedge --report docs/hedge.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from benchmark import grid, report, run
from common.utils import UsageError

ROOT = Path(__file__).resolve().parents[2]

RESULTS = ROOT / "benchmark" / "results" / "hedge"
TUNED = ROOT / "benchmark" / "results" / "tuned"
TASKS = ("simple_speaker_listener", "simple_reference", "simple_spread-an1")
BUDGET = 1_000_000
DAGGER = ["--dagger-rounds", "4", "--dagger-steps", "10000", "--dagger-updates", "1000"]
COUNTERFACTUAL = ["--relabel", "counterfactual"]
CRITIC = ["--critic-weight", "20"]  # of 1, 5 and 20 the best at k = 0, a pilot on seed 2's teacher (docs/hedge.md)
VARIANTS = {  # run name: (label, flags of ctedd_distill.py, needs goals drawn at reset)
    "ctedd_distill": ("eq. (2)", [], False),
    "ctedd_distill_cf": ("counterfactual", COUNTERFACTUAL, True),
    "ctedd_distill_dagger": ("DAgger", DAGGER, False),
    "ctedd_distill_cf_dagger": ("counterfactual + DAgger", COUNTERFACTUAL + DAGGER, True),
    "ctedd_distill_cf_critic": ("counterfactual + critic", COUNTERFACTUAL + CRITIC, True),
}
GOAL_TASKS = ("simple_speaker_listener", "simple_reference")  # where counterfactual goals exist
BASELINE = {0: "maddpg_k0", 1: "maddpg_k1_differentiable", 3: "maddpg_k3_differentiable"}


def jobs_for(tasks, seeds, bits, tuned: dict, variants=tuple(VARIANTS), dagger_bits=(0, 1, 3)) -> list[grid.Job]:
    jobs = []
    for seed in seeds:
        for task in tasks:
            teacher_flags = ["--total-timesteps", str(BUDGET), *tuned[task]["ctedd_global"]]
            stage1 = grid.Job("ctedd_global", "ctedd_global.py", task, seed, teacher_flags)
            jobs.append(stage1)
            for name in variants:
                _, flags, needs_goals = VARIANTS[name]
                if needs_goals and task not in GOAL_TASKS:
                    continue
                for k in [k for k in bits if "dagger" not in name or k in dagger_bits]:
                    args = ["--message-bits", str(k), *flags]
                    job = grid.Job(f"{name}_k{k}", "ctedd_distill.py", task, seed, args, after=stage1, exp_name=name)
                    jobs.append(job)
            low_bits = [k for k in bits if k < 3]  # MADDPG-3 was run for the tuned comparison (results/tuned)
            jobs += grid.build_grid([task], [seed], grid.predefined_arms(low_bits, ["maddpg"]), BUDGET, tuned)
    return jobs


def load(task: str) -> dict[str, dict[int, dict]]:
    """run name (with _k{bits} for a distillation) -> seed -> result, from hedge/ and MADDPG-3 from tuned/."""
    found: dict = {}
    for directory in (TUNED, RESULTS):
        for path in sorted((directory / task).glob("*__*.json")):
            name, seed = path.stem.rsplit("__", 1)
            if directory == TUNED and not name.startswith("maddpg_k3"):
                continue
            found.setdefault(name, {})[int(seed)] = json.loads(path.read_text())
    return found


def finals(runs: dict[int, dict]) -> np.ndarray:
    return np.array([runs[s]["final"]["sum"] for s in sorted(runs)])


def mean_std(runs: dict[int, dict]) -> str:
    return f"{finals(runs).mean():.1f} ± {finals(runs).std():.1f} (n={len(runs)})" if runs else ""


def p_better(x: dict, y: dict, task: str, references: dict, reps: int) -> str:
    seeds = sorted(set(x) & set(y))
    if len(seeds) < 2:
        return ""
    xs, ys = (report.normalise([r[s]["final"]["sum"] for s in seeds], task, references)[:, None] for r in (x, y))
    p, (low, high) = report.improvement(xs, ys, reps)
    return f"{p:.2f} [{low:.2f}, {high:.2f}]"


def table(task: str, bits, reps: int) -> str:
    references, found = report.load_references(), load(task)
    variants = [n for n, (_, _, goals) in VARIANTS.items() if not goals or task in GOAL_TASKS]
    lines = [f"### {task}", ""]
    header = [VARIANTS[n][0] for n in variants] + ["tuned MADDPG-k (diff.)", "best of most seeds", "P(best > MADDPG-k)"]
    lines += ["| k | " + " | ".join(header) + " |", "|---" * (len(header) + 1) + "|"]
    for k in bits:
        row, means = [str(k)], {}
        most = max((len(found.get(f"{name}_k{k}", {})) for name in variants), default=0)
        for name in variants:
            runs = found.get(f"{name}_k{k}", {})
            if runs and len(runs) == most:  # the best among the variants run on every seed
                means[name] = finals(runs).mean()
            row.append(mean_std(runs))
        baseline = found.get(BASELINE[k], {})
        row.append(mean_std(baseline))
        best = max(means, key=means.get) if means else None
        row.append(VARIANTS[best][0] if best else "")
        row.append(p_better(found[f"{best}_k{k}"], baseline, task, references, reps) if best and baseline else "")
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "P(X > Y) [95% CI] of each relabelling against eq. (2), same teachers:", ""]
    others = [n for n in variants if n != "ctedd_distill"]
    lines += ["| k | " + " | ".join(VARIANTS[n][0] for n in others) + " |", "|---" * (len(others) + 1) + "|"]
    for k in bits:
        plain = found.get(f"ctedd_distill_k{k}", {})
        cells = [p_better(found.get(f"{n}_k{k}", {}), plain, task, references, reps) for n in others]
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    lines += ["", "Cost per run (mean over seeds and k): stage-2 env samples and minutes", ""]
    lines += ["| variant | new env samples | minutes |", "|---|---|---|"]
    for name in variants:
        runs = [r for k in bits for r in found.get(f"{name}_k{k}", {}).values()]
        if runs:
            samples = np.mean([r.get("stage2_env_steps", 0) for r in runs])
            lines.append(f"| {VARIANTS[name][0]} | {samples:.0f} | {np.mean([r['minutes'] for r in runs]):.2f} |")
    if found.get("ctedd_global"):
        lines += ["", f"Teacher (CTEDD-G): {mean_std(found['ctedd_global'])}"]
    return "\n".join(lines)


def figure(tasks, bits, path: str) -> None:
    """Per task, the final return of every seed (dots) and the mean (bar) for each k and method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    references = report.load_references()
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 4.2), squeeze=False)
    colours = ["#9ecae1", "#4292c6", "#41ab5d", "#006d2c", "#6a51a3", "#a50f15"]
    for ax, task in zip(axes[0], tasks):
        found = load(task)
        names = [n for n, (_, _, goals) in VARIANTS.items() if not goals or task in GOAL_TASKS]
        columns = [(VARIANTS[n][0], lambda k, n=n: f"{n}_k{k}") for n in names]
        columns.append(("tuned MADDPG-k (diff.)", lambda k: BASELINE[k]))
        width = 0.8 / len(columns)
        lowest = references[task]["random"] * 0.75  # the axis reaches below every seed's return
        for c, (label, key) in enumerate(columns):
            for position, k in enumerate(bits):
                runs = found.get(key(k), {})
                if not runs:
                    continue
                x = position + (c - (len(columns) - 1) / 2) * width
                values = finals(runs)
                lowest = min(lowest, values.min() - 2)
                ax.bar(x, values.mean(), width * 0.9, color=colours[c], label=label if position == 0 else None)
                ax.scatter(np.full(len(values), x), values, s=8, color="black", zorder=3)
        for name, style in (("no message", ":"), ("full information", "--")):
            if name in references[task]:
                ax.axhline(references[task][name], color="grey", linestyle=style, linewidth=1, label=name)
        teacher = found.get("ctedd_global", {})
        if teacher:
            ax.axhline(finals(teacher).mean(), color="#08306b", linewidth=1, label="teacher CTEDD-G (mean)")
        ax.set_xticks(range(len(bits)), [f"k = {k}" for k in bits])
        ax.set_title(task)
        ax.set_ylabel("final return (100 episodes), seeds 1-5")
        ax.set_ylim(lowest, references[task]["full information"] * 0.5)
    axes[0][0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    report.save(fig, path)


def listener_paths(path: str, runs_dir: str, seed: int = 1) -> None:
    """messages.py's listener-path figure: eq. (2), the relabellings and MADDPG-k at k = 0 and 1, one teacher."""
    from benchmark.analysis import messages

    panels = {}
    for k, baseline in ((0, "maddpg_k0"), (1, "maddpg_k1_differentiable")):
        for name in ("ctedd_distill", "ctedd_distill_cf", "ctedd_distill_cf_critic"):
            panels[f"{name}__k{k}"] = f"CTEDD-{k}, {VARIANTS[name][0]}"
        panels[baseline] = f"tuned MADDPG-{k}" + (" (diff.)" if k else "")
    messages.plot_listener_paths(runs_dir, seed, messages.SEED, path, panels, columns=4)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3, 4, 5])
    parser.add_argument("--bits", nargs="+", type=int, default=[0, 1, 3])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--dagger-bits", nargs="+", type=int, default=[0, 1, 3], help="the k DAgger variants run at")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--tuned", default=str(ROOT / "benchmark" / "tuned.json"))
    parser.add_argument("--report", nargs="?", const="", default=None, help="print the tables (and draw the figure)")
    parser.add_argument("--reps", type=int, default=2000, help="bootstrap resamples")
    parser.add_argument("--paths", default=None, help="--report: draw the listener paths too (the models in runs/)")
    cli = parser.parse_args()
    if cli.report is not None:
        print("\n\n".join(table(task, cli.bits, cli.reps) for task in cli.tasks))
        if cli.report:
            figure(cli.tasks, cli.bits, cli.report)
        if cli.paths:
            listener_paths(cli.paths, cli.runs_dir)
        raise SystemExit(0)
    try:
        tuned = grid.read_tuned(cli.tuned)
        missing = [task for task in cli.tasks if task not in tuned]
        if missing:
            raise UsageError(f"no tuned settings for {', '.join(missing)} in {cli.tuned} (python -m benchmark.tune)")
        jobs = jobs_for(cli.tasks, cli.seeds, cli.bits, tuned, cli.variants, cli.dagger_bits)
        failed = run.run_grid(jobs, cli.workers, cli.runs_dir, "benchmark/logs", str(RESULTS))
    except UsageError as err:
        raise SystemExit(f"error: {err}") from None
    print(f"{len(jobs)} runs, {failed} failed")
    raise SystemExit(1 if failed else 0)
