"""Tune every method with the same budget: Optuna's Sobol configurations, successive halving, tuning seeds.

The protocol, the same for every method and task:
- a search space per method (`space`), over the settings that matter: the actors' and the critics'
  learning rates, tau, the update ratio (`--train-frequency`), the batch size, the action penalty and
  the exploration (MADDPG's noise std; CTEDD's target sigma, as `--target-entropy`);
- `CONFIGS` configurations: the scripts' defaults (the v2 setting) and the first points of a scrambled
  Sobol sequence drawn by Optuna's QMCSampler (seeded: the same configurations on every machine);
- synchronous successive halving (`RUNGS`): every configuration runs `RUNGS[0]` env steps on each tuning
  seed, the best quarter again from scratch for `RUNGS[1]` steps; the best at the last rung is chosen.
  Synchronous, unlike Optuna's asynchronous pruners, so that every method gets exactly the same env steps;
- the tuning seeds (101, 102) are disjoint from the evaluation seeds (1-5);
- the score punishes collapse: the mean normalised return (0 random, 1 the full-information controller)
  over the last 30% of the learning curve, averaged over the tuning seeds.

The runs go through the grid (`benchmark/run.py`'s local pool, or Ray with --backend ray); each finished
run's result.json is kept under benchmark/results/tuning/{task}/, so a tuning stopped halfway
continues where it stopped. The outcome, with every configuration's scores, the budget and the CPU time,
goes to benchmark/results/tuning/{task}/{method}.json; --report writes a table and a figure per task.

    python benchmark/tune.py --task simple_speaker_listener --method maddpg_k3_differentiable --workers 2
    python benchmark/tune.py --task simple_speaker_listener --report docs/tuning_simple_speaker_listener.png
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import run  # noqa: E402

from common.envs import parse_task  # noqa: E402
from common.utils import UsageError, atomic_write  # noqa: E402

TUNING = ROOT / "benchmark" / "results" / "tuning"
REFERENCES = ROOT / "benchmark" / "results" / "references.json"
METHODS = {  # name: (script, fixed arguments)
    "ctedd_global": ("ctedd_global.py", []),
    "maddpg_k3_differentiable": ("maddpg.py", ["--message-bits", "3", "--channel", "differentiable"]),
    "maddpg_k3_reinforced": ("maddpg.py", ["--message-bits", "3", "--channel", "reinforced"]),
}
CONFIGS = 16
RUNGS = ((CONFIGS, 200_000), (CONFIGS // 4, 500_000))  # (configurations, env steps per run)
SEEDS = (101, 102)
EVAL_FREQUENCY = 25_000  # a point of the learning curve every 25k env steps
TAIL = 0.3  # the score: the last 30% of the learning curve
GAUSSIAN_ENTROPY = 0.5 * math.log(2 * math.pi * math.e)  # entropy of N(0, 1) per dimension, nats
# the scripts' defaults, the setting Benchmark v2 ran (its sigma: ctedd_global.py's target entropy 0.2149)
DEFAULTS = {
    "learning_rate": 1e-2,
    "critic_learning_rate": 1e-2,
    "tau": 0.01,
    "train_frequency": 100,
    "batch_size": 1024,
    "actor_reg": 1e-3,
}
DEFAULT_EXPLORATION = {"ctedd_global": {"target_sigma": 0.3}, "maddpg": {"exploration_noise": 1.0}}


def space(trial, method: str) -> dict:
    """The search space of `method`, sampled through an Optuna trial: {parameter: value}."""
    params = {
        "learning_rate": trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True),
        "critic_learning_rate": trial.suggest_float("critic_learning_rate", 1e-4, 1e-2, log=True),
        "tau": trial.suggest_float("tau", 1e-3, 3e-2, log=True),
        "train_frequency": trial.suggest_int("train_frequency", 50, 200, log=True),
        "batch_size": trial.suggest_int("batch_size", 256, 2048, log=True),
        "actor_reg": trial.suggest_float("actor_reg", 1e-4, 1e-2, log=True),
    }
    if method == "ctedd_global":
        params["target_sigma"] = trial.suggest_float("target_sigma", 0.05, 0.6, log=True)
    else:
        params["exploration_noise"] = trial.suggest_float("exploration_noise", 0.1, 1.0)
    return params


def flags(params: dict) -> list[str]:
    """The command-line flags of a configuration; CTEDD's target sigma becomes its target entropy."""
    out = []
    for name, value in params.items():
        if name == "target_sigma":  # the entropy per action dimension of N(., sigma^2), to 6 digits
            name, value = "target_entropy", float(f"{math.log(value) + GAUSSIAN_ENTROPY:.6g}")
        out += [f"--{name.replace('_', '-')}", str(value)]
    return out


def configurations(method: str, count: int = CONFIGS) -> list[dict]:
    """The defaults, then count - 1 points of Optuna's scrambled Sobol sequence (seed 0), rounded to 4 digits."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize", sampler=optuna.samplers.QMCSampler(scramble=True, seed=0, warn_independent_sampling=False)
    )
    exploration = DEFAULT_EXPLORATION["ctedd_global" if method == "ctedd_global" else "maddpg"]
    study.enqueue_trial({**DEFAULTS, **exploration})
    found = []
    for _ in range(count):
        params = space(study.ask(), method)
        found.append({k: v if isinstance(v, int) else float(f"{v:.4g}") for k, v in params.items()})
    return found


def score(curve: list, task: str, references: dict) -> float:
    """The mean normalised return over the last TAIL of the learning curve [(env step, return), ...]."""
    low, high = references[task]["random"], references[task]["full information"]
    last = curve[-1][0]
    tail = [value for step, value in curve if step >= (1 - TAIL) * last]
    return float(np.mean([(value - low) / (high - low) for value in tail]))


def jobs_for(task: str, method: str, indices: list[int], configs: list[dict], budget: int) -> list[run.Job]:
    script, fixed = METHODS[method]
    jobs = []
    for index in indices:
        args = ["--total-timesteps", str(budget), "--eval-frequency", str(EVAL_FREQUENCY), *fixed]
        args += flags(configs[index])
        jobs += [run.Job(trial_name(method, index, budget), script, task, seed, args) for seed in SEEDS]
    for job in jobs:
        job.scripts_dir = run.SCRIPTS_DIR
    return jobs


def trial_name(method: str, index: int, budget: int) -> str:
    return f"{method}_t{index:02d}_{budget // 1000}k"


def tune(task: str, method: str, workers: int, runs_dir: str, backend: str = "local", poll: float = 2.0) -> dict:
    """Run the successive halving of `method` on `task` (finished runs are skipped); returns the outcome."""
    references = json.loads(REFERENCES.read_text())["returns"]
    if task not in references:
        raise UsageError(f"no reference returns for task {task!r} (benchmark/reference_returns.py)")
    configs = configurations(method)
    results_dir = TUNING  # each run's result.json: TUNING/{task}/{method}_t{index}_{budget}k__{seed}.json
    survivors = list(range(len(configs)))
    rungs = []
    for keep, budget in RUNGS:
        survivors = survivors[:keep]
        jobs = jobs_for(task, method, survivors, configs, budget)
        if backend == "ray":
            import ray_grid

            failed = ray_grid.run_grid(jobs, runs_dir, "benchmark/logs", str(results_dir))
        else:
            failed = run.run_grid(jobs, workers, runs_dir, "benchmark/logs", str(results_dir), poll_seconds=poll)
        if failed:
            raise UsageError(f"{failed} tuning runs failed (logs in benchmark/logs/)")
        kept = [json.loads(Path(job.result_path(str(results_dir))).read_text()) for job in jobs]
        runs = {i: kept[n * len(SEEDS) : (n + 1) * len(SEEDS)] for n, i in enumerate(survivors)}
        scores = {i: [score(r["curve"], task, references) for r in runs[i]] for i in survivors}
        minutes = sum(r["minutes"] for rs in runs.values() for r in rs)
        rungs.append({"budget": budget, "scores": {str(i): s for i, s in scores.items()}, "cpu_minutes": minutes})
        survivors = sorted(survivors, key=lambda i: -np.mean(scores[i]))
    chosen = survivors[0]
    outcome = {
        "task": task,
        "method": method,
        "protocol": {"configurations": len(configs), "rungs": RUNGS, "seeds": SEEDS, "tail": TAIL},
        "env_steps": sum(len(r["scores"]) * len(SEEDS) * r["budget"] for r in rungs),
        "cpu_minutes": sum(r["cpu_minutes"] for r in rungs),
        "configurations": configs,
        "rungs": rungs,
        "chosen": chosen,
        "chosen_flags": flags(configs[chosen]),
    }
    path = TUNING / task / f"{method}.json"
    atomic_write(str(path), lambda f: f.write(json.dumps(outcome, indent=1).encode()))
    print(f"{task} {method}: configuration {chosen}, score {np.mean(scores[chosen]):.3f}")
    return outcome


def write_tuned(path: str) -> dict:
    """benchmark/tuned.json, which the grid reads (`run.py --tuned`): each tuned (task, method)'s chosen flags."""
    settings = {}
    for outcome_path in sorted(TUNING.glob("*/*.json")):
        outcome = json.loads(outcome_path.read_text())
        if "chosen_flags" in outcome:
            settings.setdefault(outcome["task"], {})[outcome["method"]] = outcome["chosen_flags"]
    tuned = {"written_by": "benchmark/tune.py --write-tuned", "settings": settings}
    atomic_write(path, lambda f: f.write(json.dumps(tuned, indent=1).encode()))
    return tuned


def table(outcome: dict) -> str:
    """One method's configurations, best first: the settings, the score at each rung (mean of the seeds)."""
    first, last = outcome["rungs"][0], outcome["rungs"][-1]
    names = list(outcome["configurations"][0])
    hours = outcome["cpu_minutes"] / 60
    lines = [f"**{outcome['method']}**: {outcome['env_steps'] / 1e6:.1f}M env steps, {hours:.2f} CPU hours", ""]
    lines += ["| config | " + " | ".join(names) + f" | score {first['budget'] // 1000}k | {last['budget'] // 1000}k |"]
    lines += ["|---" * (len(names) + 3) + "|"]

    def rank(i: str) -> tuple:
        return (-np.mean(last["scores"].get(i, [-np.inf])), -np.mean(first["scores"][i]))

    for i in sorted(first["scores"], key=rank):
        settings = " | ".join(f"{outcome['configurations'][int(i)][n]:g}" for n in names)
        later = f"{np.mean(last['scores'][i]):.3f}" if i in last["scores"] else ""
        mark = " (chosen)" if int(i) == outcome["chosen"] else " (v2 defaults)" if i == "0" else ""
        lines += [f"| {i}{mark} | {settings} | {np.mean(first['scores'][i]):.3f} | {later} |"]
    return "\n".join(lines)


def report(task: str, figure: str | None) -> str:
    """The table of every configuration's scores per method, and the figure (one panel per method)."""
    outcomes = [
        json.loads((TUNING / task / f"{m}.json").read_text())
        for m in METHODS
        if (TUNING / task / f"{m}.json").is_file()
    ]
    lines = [f"### Tuning on {task}", ""]
    for outcome in outcomes:
        lines += [table(outcome), ""]
    if figure and outcomes:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(outcomes), figsize=(4.5 * len(outcomes), 3.6), sharey=True, squeeze=False)
        for ax, outcome in zip(axes[0], outcomes):
            for rung, color in zip(outcome["rungs"], ("tab:gray", "tab:blue")):
                for i, seeds in rung["scores"].items():
                    ax.scatter([int(i)] * len(seeds), seeds, s=12, color=color, alpha=0.6)
                    ax.scatter([int(i)], [np.mean(seeds)], s=40, marker="_", color=color)
                ax.scatter([], [], color=color, label=f"{rung['budget'] // 1000}k env steps")
            ax.axvline(outcome["chosen"], color="tab:green", linewidth=0.8, linestyle="--", label="chosen")
            ax.set_title(outcome["method"], fontsize=10)
            ax.set_xlabel("configuration (0: the v2 defaults)")
            ax.set_xticks(range(len(outcome["configurations"])))
        axes[0][0].set_ylabel("score: normalised return, last 30% of the curve")
        axes[0][0].legend(fontsize=8)
        fig.suptitle(f"Tuning on {task}: each dot one tuning seed, a dash their mean", fontsize=10)
        fig.tight_layout()
        os.makedirs(os.path.dirname(figure) or ".", exist_ok=True)
        fig.savefig(figure, dpi=90)
        plt.close(fig)
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default=None, help="the task to tune on (or to report)")
    parser.add_argument("--method", nargs="+", choices=list(METHODS), default=[])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--backend", choices=["local", "ray"], default="local")
    parser.add_argument("--report", nargs="?", const="", default=None, help="print the table (and draw the figure)")
    parser.add_argument("--list", action="store_true", help="print each method's configurations only")
    parser.add_argument("--write-tuned", default=None, help="write every tuned task's chosen flags here (tuned.json)")
    cli = parser.parse_args()
    try:
        if (cli.method or cli.report is not None) and not cli.task:
            raise UsageError("--method and --report need a --task")
        if cli.task:
            parse_task(cli.task)
        if cli.workers <= 0:
            raise UsageError("--workers must be positive")
        for name in cli.method:
            if cli.list:
                for index, params in enumerate(configurations(name)):
                    print(name, index, " ".join(flags(params)))
            else:
                tune(cli.task, name, cli.workers, cli.runs_dir, cli.backend)
        if cli.write_tuned:
            write_tuned(cli.write_tuned)
        if cli.report is not None:
            print(report(cli.task, cli.report or None))
    except UsageError as err:
        raise SystemExit(f"error: {err}") from None
