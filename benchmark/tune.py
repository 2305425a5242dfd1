"""Tune every method with the same budget: Optuna's Sobol configurations, successive halving, tuning seeds.

Protocol v2 (issue #35), the same for every method and task:
- a search space per method (`space`): the actors' and the critics' learning rates, tau, the update ratio
  (`--train-frequency`), the batch size, the action penalty; the networks' widths (the policies' and the
  critics' apart) and TD3's changes with the schedule (twin critics, target smoothing, the actors' delay, the
  learning rates' final fraction); the exploration (MADDPG's noise std; CTEDD's target sigma, as
  `--target-entropy`);
- `CONFIGS` configurations, the same on every task: 0 the scripts' defaults (the paper's form: the setting
  Benchmark v3 ran on the controls and most channel tasks), 1 the defaults with issue #34's setting (TD3, width
  128, learning rates decaying to 0.1), then points of a scrambled Sobol sequence drawn by Optuna's QMCSampler
  (seeded: the same configurations on every machine, and the same points for every method in the shared
  dimensions);
- synchronous successive halving (`RUNGS`): every configuration runs a quarter of the task's budget on the first
  tuning seed; the best quarter runs the whole budget (`BUDGET`: 1M env steps, 2M on tag), from scratch, on
  every tuning seed; the best there is chosen. Synchronous, unlike Optuna's asynchronous pruners, so that every
  method gets exactly the same env steps, and the last rung is the whole run: a run that peaks and declines is
  scored on its decline;
- the tuning seeds (101-103) are disjoint from the evaluation seeds (1-5);
- the score punishes collapse: the mean normalised return (0 random, 1 the full-information controller)
  over the last 30% of the learning curve, averaged over the seeds.

`PLAN` says which methods are tuned on which task; the others share a tuned setting (`SHARED`, written into
tuned.json with where it came from). The runs go through the grid (`benchmark.run`'s local pool, or Ray with
--backend ray); each finished run's result.json is kept under benchmark/results/tuning/v2/{task}/, so a tuning
stopped halfway continues where it stopped. The outcome, with every configuration's scores, the budget and the
CPU time, goes to benchmark/results/tuning/v2/{task}/{method}.json; --report writes a table and a figure per
task. Protocol v1's trials (issue #21: 200k then 500k env steps, two seeds) are in benchmark/results/tuning/v1/.

    python -m benchmark.tune --plan --workers 2   # PLAN's (task, method) in order, each channel task's distillation
    python -m benchmark.tune --task simple_speaker_listener --method maddpg_k3_differentiable
    python -m benchmark.tune --task simple_speaker_listener --report docs/tuning_simple_speaker_listener.png
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from benchmark import report, run
from benchmark.grid import Job, drop_buffer, read_json, read_result
from common.envs import parse_task
from common.utils import UsageError, atomic_write

ROOT = Path(__file__).resolve().parents[1]

TUNING = ROOT / "benchmark" / "results" / "tuning" / "v2"
OUTCOME = "tuning outcome (python -m benchmark.tune, benchmark/results/tuning/v2/{task}/{method}.json)"
METHODS = {  # name: (script, fixed arguments)
    "ctedd_global": ("ctedd_global.py", []),
    "maddpg_k3_differentiable": ("maddpg.py", ["--message-bits", "3", "--channel", "differentiable"]),
    "maddpg_k3_reinforced": ("maddpg.py", ["--message-bits", "3", "--channel", "reinforced"]),
    "maddpg_k0": ("maddpg.py", ["--message-bits", "0"]),
}
CHANNEL_TASKS = ("simple_speaker_listener", "simple_reference", "simple_spread-an1")
CONTROL_TASKS = ("simple_spread", "simple_push-scripted", "simple_tag-scripted")
# what is tuned where: on the channel tasks each channel of MADDPG-3, on the fully observed controls (where the
# bits carry nothing: CTEDD-1 = CTEDD-3 = MADDPG-k within noise) MADDPG-0
PLAN = {task: ("ctedd_global", "maddpg_k3_differentiable", "maddpg_k3_reinforced") for task in CHANNEL_TASKS}
PLAN |= {task: ("ctedd_global", "maddpg_k0") for task in CONTROL_TASKS}
# the grid's MADDPG arms that are not tuned themselves take a tuned method's setting: the same learner and
# networks, only the message's width differs
SHARED = {
    "channel": {
        "maddpg_k0": "maddpg_k3_differentiable",
        "maddpg_k1_differentiable": "maddpg_k3_differentiable",
        "maddpg_k1_reinforced": "maddpg_k3_reinforced",
    },
    "control": {
        "maddpg_k1_differentiable": "maddpg_k0",
        "maddpg_k1_reinforced": "maddpg_k0",
        "maddpg_k3_differentiable": "maddpg_k0",
        "maddpg_k3_reinforced": "maddpg_k0",
    },
}
BUDGET = {"simple_tag-scripted": 2_000_000}  # env steps of the whole run (default 1M): tag still rises at 1M
CONFIGS = 16
RUNGS = ((CONFIGS, 0.25, (101,)), (CONFIGS // 4, 1.0, (101, 102, 103)))  # (configurations, share of the budget, seeds)
EVAL_FREQUENCY = 25_000  # a point of the learning curve every 25k env steps
CHECKPOINT_FREQUENCY = 200_000  # runs of the whole budget write a resumable checkpoint this often
TAIL = 0.3  # the score: the last 30% of the learning curve
FLOOR = 0.0  # the tuning figure's lowest score: random forces
GAUSSIAN_ENTROPY = 0.5 * math.log(2 * math.pi * math.e)  # entropy of N(0, 1) per dimension, nats
# the scripts' defaults (the paper's form; the learning settings are protocol v1's best single setting)
DEFAULTS = {
    "learning_rate": 6.278e-4,
    "critic_learning_rate": 7.61e-3,
    "tau": 6.085e-3,
    "train_frequency": 84,
    "batch_size": 711,
    "actor_reg": 1.059e-4,
    "hidden_dim": 64,
    "critic_hidden_dim": 64,
    "twin_critics": 0,
    "target_noise": 0.0,
    "policy_delay": 1,
    "lr_final_fraction": 1.0,
}
DEFAULT_EXPLORATION = {"ctedd_global": {"target_sigma": 0.101}, "maddpg": {"exploration_noise": 0.3548}}
# issue #34's setting: TD3's three changes, width 128, every learning rate decaying to a tenth
STRONGER = {
    "hidden_dim": 128,
    "critic_hidden_dim": 128,
    "twin_critics": 1,
    "target_noise": 0.2,
    "policy_delay": 2,
    "lr_final_fraction": 0.1,
}


def space(trial, method: str) -> dict:
    """The search space of `method`, sampled through an Optuna trial: {parameter: value}."""
    params = {
        "learning_rate": trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True),
        "critic_learning_rate": trial.suggest_float("critic_learning_rate", 1e-4, 1e-2, log=True),
        "tau": trial.suggest_float("tau", 1e-3, 3e-2, log=True),
        "train_frequency": trial.suggest_int("train_frequency", 50, 200, log=True),
        "batch_size": trial.suggest_int("batch_size", 256, 2048, log=True),
        "actor_reg": trial.suggest_float("actor_reg", 1e-4, 1e-2, log=True),
        "hidden_dim": trial.suggest_int("hidden_dim", 64, 256, log=True),
        "critic_hidden_dim": trial.suggest_int("critic_hidden_dim", 64, 256, log=True),
        "twin_critics": trial.suggest_int("twin_critics", 0, 1),
        "target_noise": trial.suggest_float("target_noise", 0.1, 0.3),
        "policy_delay": trial.suggest_int("policy_delay", 1, 3),
        "lr_final_fraction": trial.suggest_float("lr_final_fraction", 0.1, 1.0),
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
        if name == "twin_critics":  # a switch
            out += ["--twin-critics" if value else "--no-twin-critics"]
            continue
        out += [f"--{name.replace('_', '-')}", str(value)]
    return out


def sobol_study():
    """An Optuna study whose trials are the points of a scrambled Sobol sequence (seed 0): the same everywhere."""
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", message="Fixed parameter target_noise")  # the defaults' 0: no smoothing
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    sampler = optuna.samplers.QMCSampler(scramble=True, seed=0, warn_independent_sampling=False)
    return optuna.create_study(direction="maximize", sampler=sampler)


def configurations(method: str, count: int = CONFIGS) -> list[dict]:
    """The defaults, the defaults with issue #34's setting, then count - 2 points of Optuna's scrambled Sobol
    sequence (seed 0), rounded to 4 digits."""
    study = sobol_study()
    exploration = DEFAULT_EXPLORATION["ctedd_global" if method == "ctedd_global" else "maddpg"]
    study.enqueue_trial({**DEFAULTS, **exploration})
    study.enqueue_trial({**DEFAULTS, **STRONGER, **exploration})
    found = []
    for _ in range(count):
        params = space(study.ask(), method)
        found.append({k: v if isinstance(v, int) else float(f"{v:.4g}") for k, v in params.items()})
    return found


V3_TUNED = ROOT / "benchmark" / "results" / "tuning" / "v1" / "tuned.json"  # what Benchmark v3 ran
V3_AS = {"maddpg_k0": "maddpg_k3_differentiable"}  # Benchmark v3's MADDPG-0 ran MADDPG-3's setting


def previous_setting(task: str, method: str) -> dict | None:
    """Benchmark v3's setting of (task, method) as a configuration, where it differs from the defaults (the
    controls and most channel tasks ran those): a guard at the last rung, so that the tuning never replaces a
    setting that scores better on the tuning seeds."""
    v3 = read_json(str(V3_TUNED), "protocol v1's tuned.json", ("settings",))["settings"]
    given = v3.get(task, {}).get(V3_AS.get(method, method))
    if given is None:
        return None
    defaults = configurations(method)[0]
    params = dict(defaults)
    for name, value in zip(given[::2], given[1::2]):
        name = name.removeprefix("--").replace("-", "_")
        if name == "target_entropy":  # the sigma of that entropy per dimension
            name, value = "target_sigma", math.exp(float(value) - GAUSSIAN_ENTROPY)
        params[name] = type(defaults[name])(float(value))
    same = all(math.isclose(params[k], defaults[k], rel_tol=1e-4) for k in params)
    return None if same else params


def budget_of(task: str) -> int:
    return BUDGET.get(task, 1_000_000)


def score(curve: list, task: str, references: dict) -> float:
    """The mean normalised return over the last TAIL of the learning curve [(env step, return), ...]."""
    last = curve[-1][0]
    tail = [value for step, value in curve if step >= (1 - TAIL) * last]
    return float(report.normalise(tail, task, references).mean())


def jobs_for(task: str, method: str, indices: list[int], configs: list[dict], budget: int, seeds) -> list[Job]:
    jobs = []
    for index in indices:
        jobs += trial_jobs(task, method, trial_name(method, index, budget), configs[index], budget, seeds)
    return jobs


def trial_jobs(task: str, method: str, name: str, params: dict, budget: int, seeds) -> list[Job]:
    script, fixed = METHODS[method]
    args = ["--total-timesteps", str(budget), "--eval-frequency", str(EVAL_FREQUENCY), *fixed]
    if budget >= CHECKPOINT_FREQUENCY * 5:  # a long run cut short goes on from its last checkpoint
        args += ["--checkpoint-frequency", str(CHECKPOINT_FREQUENCY)]
    return [Job(name, script, task, seed, [*args, *flags(params)]) for seed in seeds]


def run_jobs(jobs: list[Job], workers: int, runs_dir: str, backend: str, poll: float, keep_buffers: bool = False):
    """Run the jobs on the grid's backend (kept results are skipped), their results kept under TUNING."""
    if backend == "ray":
        from benchmark import ray_grid

        failed = ray_grid.run_grid(jobs, runs_dir, "benchmark/logs", str(TUNING), keep_buffers)
    else:
        failed = run.run_grid(jobs, workers, runs_dir, "benchmark/logs", str(TUNING), keep_buffers, poll)
    if failed:
        raise UsageError(f"{failed} tuning runs failed (logs in benchmark/logs/)")


def trial_name(method: str, index: int, budget: int) -> str:
    return f"{method}_t{index:02d}_{budget // 1000}k"


def tune(task: str, method: str, workers: int, runs_dir: str, backend: str = "local", poll: float = 2.0) -> dict:
    """Run the successive halving of `method` on `task` (finished runs are skipped); returns the outcome."""
    references = report.load_references()
    if task not in references:
        raise UsageError(f"no reference returns for task {task!r} (python -m benchmark.reference_returns)")
    configs = configurations(method)
    survivors = list(range(len(configs)))
    rungs = []
    for keep, share, seeds in RUNGS:
        survivors, budget = survivors[:keep], int(share * budget_of(task))
        jobs = jobs_for(task, method, survivors, configs, budget, seeds)
        teachers = method == "ctedd_global" and seeds == RUNGS[-1][2]  # the chosen one's buffers: the distillation's
        run_jobs(jobs, workers, runs_dir, backend, poll, teachers)
        kept = [read_result(job.result_path(str(TUNING))) for job in jobs]  # TUNING/{task}/{name}__{seed}.json
        runs = {i: kept[n * len(seeds) : (n + 1) * len(seeds)] for n, i in enumerate(survivors)}
        scores = {i: [score(r["curve"], task, references) for r in runs[i]] for i in survivors}
        minutes = sum(r["minutes"] for rs in runs.values() for r in rs)
        rung = {"budget": budget, "seeds": list(seeds), "scores": {str(i): s for i, s in scores.items()}}
        rungs.append({**rung, "cpu_minutes": minutes})
        survivors = sorted(survivors, key=lambda i: -np.mean(scores[i]))
    guard = previous_setting(task, method)
    if guard is not None:  # Benchmark v3's own setting, the whole run on the last rung's seeds
        configs.append(guard)
        guard_jobs = jobs_for(task, method, [len(configs) - 1], configs, budget, seeds)
        run_jobs(guard_jobs, workers, runs_dir, backend, poll)
        kept = [read_result(job.result_path(str(TUNING))) for job in guard_jobs]
        rungs[-1]["scores"][str(len(configs) - 1)] = [score(r["curve"], task, references) for r in kept]
        rungs[-1]["cpu_minutes"] += sum(r["minutes"] for r in kept)
        survivors = sorted(map(int, rungs[-1]["scores"]), key=lambda i: -np.mean(rungs[-1]["scores"][str(i)]))
        jobs += guard_jobs
    chosen = survivors[0]
    for job in jobs if teachers else []:
        if job.name != trial_name(method, chosen, budget):
            drop_buffer(job.finished_run(runs_dir))
    outcome = {
        "task": task,
        "method": method,
        "protocol": {"configurations": len(configs), "rungs": RUNGS, "budget": budget_of(task), "tail": TAIL},
        "env_steps": sum(len(r["scores"]) * len(r["seeds"]) * r["budget"] for r in rungs),
        "cpu_minutes": sum(r["cpu_minutes"] for r in rungs),
        "configurations": configs,
        "rungs": rungs,
        "chosen": chosen,
        "chosen_flags": flags(configs[chosen]),
    }
    path = TUNING / task / f"{method}.json"
    atomic_write(str(path), lambda f: f.write(json.dumps(outcome, indent=1).encode()))
    print(f"{task} {method}: configuration {chosen}, score {np.mean(rungs[-1]['scores'][str(chosen)]):.3f}")
    return outcome


# the distillation (CTEDD-3, eq. (2)) of each channel task as Benchmark v3 ran it; tuned on the chosen CTEDD-G
# configuration's runs on the tuning seeds (the teachers), with the student as wide as the tuned MADDPG-3's policy
DISTILL_FIXED = {
    "simple_speaker_listener": ["--relabel", "counterfactual"],
    "simple_reference": ["--relabel", "counterfactual"],
    "simple_spread-an1": ["--dagger-rounds", "4", "--dagger-steps", "10000", "--dagger-updates", "1000"],
}
# the arms that run the tuned distillation in the grid (benchmark/run_v4.sh; the report pools them as the best
# relabelling); CTEDD-k by eq. (2) takes the student's width and ctedd_distill.py's defaults
DISTILL_ARMS = {
    "simple_speaker_listener": "ctedd_distill_cf_critic",
    "simple_reference": "ctedd_distill_cf_critic",
    "simple_spread-an1": "ctedd_distill_dagger",
}
DISTILL_DEFAULTS = {"learning_rate": 1e-3, "iters_per_batch": 10, "passes": 1}  # ctedd_distill.py's
V3_CRITIC_WEIGHT = 20.0  # Benchmark v3's w of the relabelling (picked on evaluation seed 2)
DISTILL_RUNGS = ((CONFIGS, (101,)), (CONFIGS // 4, (102, 103)))  # the best four on the other teachers
# the first rung runs the configurations of at most v3's 10 updates per batch of the buffer (iterations per batch x
# passes): on speaker-listener, where all 16 ran, the 6 above it took 13-34 min a run against 2-7, and none scored
# above the others (0.973-0.978 against 0.976-0.978); on reference a relabelled batch costs 2.7x as much
DISTILL_MAX_UPDATES = 10


def distill_configurations(task: str, count: int = CONFIGS) -> list[dict]:
    """Benchmark v3's distillation, then count - 1 points of the Sobol sequence (seed 0), rounded to 4 digits:
    the learning rate, iterations per batch, passes and, for the relabelling, w. The points are the same on every
    task (w is drawn everywhere, and dropped where nothing is relabelled), so a configuration is one setting."""
    study = sobol_study()
    relabel = "--relabel" in DISTILL_FIXED.get(task, [])
    study.enqueue_trial({**DISTILL_DEFAULTS, "critic_weight": V3_CRITIC_WEIGHT})
    found = []
    for _ in range(count):
        trial = study.ask()
        params = {
            "learning_rate": trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True),
            "iters_per_batch": trial.suggest_int("iters_per_batch", 2, 20, log=True),
            "passes": trial.suggest_int("passes", 1, 3),
            "critic_weight": trial.suggest_float("critic_weight", 1.0, 100.0, log=True),
        }
        if not relabel:
            del params["critic_weight"]
        found.append({k: v if isinstance(v, int) else float(f"{v:.4g}") for k, v in params.items()})
    return found


def read_outcome(task: str, method: str) -> dict:
    path = TUNING / task / f"{method}.json"
    if not path.is_file():
        raise UsageError(
            f"{method} is not tuned on {task} yet (python -m benchmark.tune --task {task} --method {method})"
        )
    return read_json(str(path), OUTCOME, ("chosen", "configurations", "rungs"))


def distill_fixed(task: str) -> list[str]:
    """The distillation's flags that are not tuned: k = 3, the tuned MADDPG-3's policy width, the task's variant."""
    student = read_outcome(task, "maddpg_k3_differentiable")
    width = student["configurations"][student["chosen"]]["hidden_dim"]
    return ["--message-bits", "3", "--hidden-dim", str(width), *DISTILL_FIXED.get(task, [])]


def distill_jobs(task: str, named: dict[str, dict], seeds) -> tuple[list[Job], dict]:
    """CTEDD-3's distillation of `task` with each of the settings {label: params}: the jobs (each teacher, the
    chosen CTEDD-G configuration's run on a tuning seed, then its students) and {(label, seed): student job}."""
    teacher, fixed = read_outcome(task, "ctedd_global"), distill_fixed(task)
    budget, jobs, students = teacher["rungs"][-1]["budget"], [], {}
    for seed in seeds:
        (stage1,) = jobs_for(task, "ctedd_global", [teacher["chosen"]], teacher["configurations"], budget, [seed])
        jobs.append(stage1)
        for label, params in named.items():
            students[label, seed] = Job(
                f"ctedd_distill_{label}", "ctedd_distill.py", task, seed, [*fixed, *flags(params)], after=stage1
            )  # its own run names
            jobs.append(students[label, seed])
    return jobs, students


def distill_scores(task: str, students: dict, references: dict) -> tuple[dict, float]:
    """{label: [normalised final evaluation return per teacher]} of the students' kept results, and their minutes."""
    scores, minutes = {}, 0.0
    for (label, _), job in students.items():
        result = read_result(job.result_path(str(TUNING)))
        scores.setdefault(label, []).append(float(report.normalise(result["final"]["sum"], task, references)))
        minutes += result["minutes"]
    return scores, minutes


def tune_distillation(task: str, workers: int, runs_dir: str, backend: str = "local", poll: float = 2.0) -> dict:
    """Tune CTEDD-3's distillation on `task`: every configuration within DISTILL_MAX_UPDATES distils the chosen
    CTEDD-G configuration's run on the first tuning seed, the best four also those on the others; the score is the
    students' final evaluation return (normalised), averaged over the teachers. A teacher without its buffer is run
    again (the same seed gives the same run)."""
    references, configs = report.load_references(), distill_configurations(task)
    survivors = [i for i, c in enumerate(configs) if c["iters_per_batch"] * c["passes"] <= DISTILL_MAX_UPDATES]
    rungs, scores = [], {}
    for keep, seeds in DISTILL_RUNGS:
        survivors = survivors[:keep]
        jobs, students = distill_jobs(task, {f"t{i:02d}": configs[i] for i in survivors}, seeds)
        run_jobs(jobs, workers, runs_dir, backend, poll, keep_buffers=True)  # the teachers' buffers: until --single
        found, minutes = distill_scores(task, students, references)
        for label, values in found.items():
            scores.setdefault(int(label[1:]), []).extend(values)
        rung = {"seeds": list(seeds), "scores": {str(i): list(scores[i]) for i in survivors}}  # the scores so far
        rungs.append({**rung, "cpu_minutes": minutes})
        survivors = sorted(survivors, key=lambda i: -np.mean(scores[i]))
    chosen, fixed = survivors[0], distill_fixed(task)
    outcome = {
        "task": task,
        "method": "ctedd_distill",
        "protocol": {
            "configurations": len(configs),
            "max_updates_per_batch": DISTILL_MAX_UPDATES,
            "rungs": DISTILL_RUNGS,
            "teacher": read_outcome(task, "ctedd_global")["chosen"],
        },
        "fixed": fixed,
        "cpu_minutes": sum(r["cpu_minutes"] for r in rungs),
        "configurations": configs,
        "rungs": rungs,
        "chosen": chosen,
        "chosen_flags": [*fixed[2:], *flags(configs[chosen])],  # k is the arm's
    }
    path = TUNING / task / "ctedd_distill.json"
    atomic_write(str(path), lambda f: f.write(json.dumps(outcome, indent=1).encode()))
    print(f"{task} ctedd_distill: configuration {chosen}, score {np.mean(scores[chosen]):.3f}")
    return outcome


DISTILL_DEFAULT_KEYS = ("learning_rate", "iters_per_batch", "passes")  # every distillation's; w is the relabelling's


def single_distillation(workers: int, runs_dir: str, backend: str = "local", poll: float = 2.0) -> dict:
    """The distillation's one configuration best across the channel tasks, its learning rate, iterations per batch
    and passes to become ctedd_distill.py's defaults (w stays off there: the relabelling's own flag). As
    `single_setting`: each task's chosen configuration and those that reached the last rung on every channel task,
    each with each task's variant (DISTILL_FIXED) on the teachers of every tuning seed (what the tuning did not
    run is run now), the best mean score (of those that score the same, the cheapest: `cheapest_of_the_best`);
    then rounded to two significant digits, kept if it scores the same."""
    outcomes = {task: read_outcome(task, "ctedd_distill") for task in CHANNEL_TASKS}
    last = [set(map(int, outcome["rungs"][-1]["scores"])) for outcome in outcomes.values()]
    chosen = {outcome["chosen"] for outcome in outcomes.values()}
    candidates, references = sorted(chosen | set.intersection(*last)), report.load_references()
    seeds = sorted({seed for _, rung_seeds in DISTILL_RUNGS for seed in rung_seeds})  # every tuning seed's teacher

    def scored(settings: dict) -> tuple[dict, dict]:
        """{label: {task: params}} distilled on every channel task: {label: {task: [score per teacher]}}, and
        {label: mean minutes of its students}."""
        jobs, students = [], {}
        for task in CHANNEL_TASKS:
            named = {label: by_task[task] for label, by_task in settings.items()}
            task_jobs, students[task] = distill_jobs(task, named, seeds)
            jobs += task_jobs
        run_jobs(jobs, workers, runs_dir, backend, poll, keep_buffers=True)
        teachers.update(job.finished_run(runs_dir) for job in jobs if job.after is None)
        found, results = {}, {}
        for task in CHANNEL_TASKS:
            for label, values in distill_scores(task, students[task], references)[0].items():
                found.setdefault(label, {})[task] = values
            for (label, _), job in students[task].items():
                results.setdefault(label, []).append(read_result(job.result_path(str(TUNING))))
        return found, {label: run_minutes(kept) for label, kept in results.items()}

    configs, teachers = {task: distill_configurations(task) for task in CHANNEL_TASKS}, set()
    named = {f"t{i:02d}": {task: configs[task][i] for task in CHANNEL_TASKS} for i in candidates}
    candidate_scores, minutes = scored(named)
    best = int(cheapest_of_the_best(candidate_scores, minutes)[1:])
    two_digits = {task: rounded(configs[task][best]) for task in CHANNEL_TASKS}
    rounded_scores = scored({"rounded": two_digits})[0]["rounded"]
    kept = "rounded" if task_mean(rounded_scores) >= task_mean(candidate_scores[f"t{best:02d}"]) - 0.01 else "unrounded"
    setting = two_digits[CHANNEL_TASKS[0]] if kept == "rounded" else configs[CHANNEL_TASKS[0]][best]
    defaults = {key: setting[key] for key in DISTILL_DEFAULT_KEYS}
    outcome = {
        "method": "ctedd_distill",
        "candidates": candidate_scores,
        "minutes": minutes,
        "best": best,
        "rounded": rounded_scores,
        "kept": kept,
        "setting": setting,
        "flags": flags(defaults),
    }
    path = TUNING / "single" / "ctedd_distill.json"
    atomic_write(str(path), lambda f: f.write(json.dumps(outcome, indent=1).encode()))
    for run_dir in teachers:  # the tuning is over: nothing distils them again
        drop_buffer(run_dir)
    print(f"ctedd_distill: the single setting is configuration {best} ({kept}): {' '.join(flags(defaults))}")
    return outcome


def write_tuned(path: str) -> dict:
    """benchmark/tuned.json, which the grid reads (`run.py --tuned`): per task, each tuned method's chosen flags,
    and for each arm that shares a tuned setting (`SHARED`) that setting, with where it came from in "shared"."""
    settings, shared = {}, {}
    for outcome_path in sorted(p for task in PLAN for p in (TUNING / task).glob("*.json") if "__" not in p.stem):
        outcome = read_json(str(outcome_path), OUTCOME, ("task", "method"))
        if "chosen_flags" in outcome:
            settings.setdefault(outcome["task"], {})[outcome["method"]] = outcome["chosen_flags"]
    for task, chosen in settings.items():
        for arm, source in SHARED["control" if task in CONTROL_TASKS else "channel"].items():
            if source in chosen and arm not in chosen:
                chosen[arm] = chosen[source]
                shared.setdefault(task, {})[arm] = source
        if task in DISTILL_ARMS and "ctedd_distill" in chosen:  # the tuned distillation is the relabelling arms'
            tuned_flags = chosen.pop("ctedd_distill")
            for k in (0, 1, 3):
                chosen[f"{DISTILL_ARMS[task]}_k{k}"] = tuned_flags
                shared.setdefault(task, {})[f"{DISTILL_ARMS[task]}_k{k}"] = "ctedd_distill (tuned at k = 3)"
            chosen["ctedd_distill"] = tuned_flags[:2]  # eq. (2): the student's width; the distillation's defaults
            shared[task]["ctedd_distill"] = "the tuned distillation's --hidden-dim; the distillation's defaults"
        if "maddpg_k0" in PLAN.get(task, ()) and "maddpg_k0" in chosen and "ctedd_distill" not in chosen:
            width = chosen["maddpg_k0"][chosen["maddpg_k0"].index("--hidden-dim") + 1]  # the same local policy
            chosen["ctedd_distill"] = ["--hidden-dim", width]
            shared.setdefault(task, {})["ctedd_distill"] = "maddpg_k0's --hidden-dim; the distillation's defaults"
    tuned = {"written_by": "benchmark/tune.py --write-tuned", "settings": settings, "shared": shared}
    atomic_write(path, lambda f: f.write(json.dumps(tuned, indent=1).encode()))
    return tuned


def task_mean(by_task: dict) -> float:
    """{task: [score per seed]} -> the mean over the tasks of the mean over the seeds."""
    return float(np.mean([np.mean(values) for values in by_task.values()]))


def cheapest_of_the_best(scores: dict, minutes: dict, tolerance: float = 0.01) -> str:
    """Among the labelled candidates {label: {task: [score per seed]}} whose mean over the tasks scores the same
    as the best (at most `tolerance` lower), the one whose runs took the fewest minutes {label: mean minutes}:
    the defaults are what `python ctedd_global.py` runs, and a setting that costs four times as much for the
    same score is not the better default."""
    best = max(task_mean(by_task) for by_task in scores.values())
    level = [label for label, by_task in scores.items() if task_mean(by_task) >= best - tolerance]
    return min(level, key=lambda label: (minutes[label], -task_mean(scores[label])))


def run_minutes(results: list[dict]) -> float:
    """The mean wall-clock minutes of finished runs, those resumed from a checkpoint left out (they count only
    the minutes since the resumption)."""
    whole = [result["minutes"] for result in results if not result["args"].get("resume")]
    return float(np.mean(whole)) if whole else math.inf


def rounded(params: dict) -> dict:
    """A configuration to two significant digits (the scripts' defaults)."""
    return {k: type(v)(float(f"{v:.2g}")) for k, v in params.items()}


def single_setting(method: str, workers: int, runs_dir: str, backend: str = "local", poll: float = 2.0) -> dict:
    """The one configuration of `method` best across the channel tasks, to become its script's defaults: among each
    task's chosen configuration and those that reached the last rung on every channel task, each run the whole
    budget on the tuning seeds on every channel task (what the tuning did not run is run now), the best mean
    score (of those that score the same, the cheapest: `cheapest_of_the_best`). Rounded to two significant
    digits it runs again: the rounded setting is kept where it scores the same (its mean over the tasks at most
    0.01 below), else the unrounded one."""
    outcomes = {task: read_outcome(task, method) for task in CHANNEL_TASKS}
    configs, seeds, references = configurations(method), RUNGS[-1][2], report.load_references()
    last = [set(map(int, outcome["rungs"][-1]["scores"])) for outcome in outcomes.values()]
    chosen = {outcome["chosen"] for outcome in outcomes.values()}
    candidates = sorted((chosen | set.intersection(*last)) - {CONFIGS})  # not a task's own Benchmark v3 setting

    def scored(named: dict) -> tuple[dict, dict]:
        """Each setting {label: params} run on every channel task: {label: {task: [score per seed]}}, and
        {label: mean minutes of its runs}."""
        jobs = {}
        for label, params in named.items():
            for task in CHANNEL_TASKS:
                name = f"{method}_{label}_{budget_of(task) // 1000}k"
                jobs[label, task] = trial_jobs(task, method, name, params, budget_of(task), seeds)
        run_jobs([job for task_jobs in jobs.values() for job in task_jobs], workers, runs_dir, backend, poll)
        found, results = {}, {}
        for (label, task), task_jobs in jobs.items():
            kept = [read_result(job.result_path(str(TUNING))) for job in task_jobs]
            found.setdefault(label, {})[task] = [score(result["curve"], task, references) for result in kept]
            results.setdefault(label, []).extend(kept)
        return found, {label: run_minutes(kept) for label, kept in results.items()}

    candidate_scores, minutes = scored({f"t{i:02d}": configs[i] for i in candidates})
    best = int(cheapest_of_the_best(candidate_scores, minutes)[1:])
    two_digits = rounded(configs[best])
    rounded_scores = scored({"rounded": two_digits})[0]["rounded"]
    kept = "rounded" if task_mean(rounded_scores) >= task_mean(candidate_scores[f"t{best:02d}"]) - 0.01 else "unrounded"
    setting = two_digits if kept == "rounded" else configs[best]
    outcome = {
        "method": method,
        "candidates": candidate_scores,
        "minutes": minutes,
        "best": best,
        "rounded": rounded_scores,
        "kept": kept,
        "setting": setting,
        "flags": flags(setting),
    }
    path = TUNING / "single" / f"{method}.json"
    atomic_write(str(path), lambda f: f.write(json.dumps(outcome, indent=1).encode()))
    print(f"{method}: the single setting is configuration {best} ({kept}): {' '.join(flags(setting))}")
    return outcome


def summary() -> str:
    """Every outcome of protocol v2 in one table: the budget (runs, env steps, CPU hours) and the choice per method
    and task, with the score of the defaults (configuration 0) and of issue #34's setting (1) where they ran the
    last rung."""
    references = report.load_references()
    columns = (
        "| task | method | runs | env steps | CPU hours | chosen | its score | its fall from best | defaults (0) |"
    )
    lines = [columns + " #34's (1) |", "|---" * 10 + "|"]
    for task in PLAN:
        for method in (*PLAN[task], "ctedd_distill"):
            path = TUNING / task / f"{method}.json"
            if not path.is_file():
                continue
            outcome = read_json(str(path), OUTCOME, ("rungs", "chosen"))
            last = outcome["rungs"][-1]["scores"]
            runs = sum(len(r["scores"]) * len(r["seeds"]) for r in outcome["rungs"])
            steps = f"{outcome['env_steps'] / 1e6:.0f}M" if "env_steps" in outcome else "0 (distils)"
            own = np.mean(last[str(outcome["chosen"])])
            others = [f"{np.mean(last[i]):.3f}" if i in last else "" for i in ("0", "1")]
            fall = ""  # the largest over the tuning seeds, of the chosen configuration's whole runs
            if "budget" in outcome["rungs"][-1]:
                name = trial_name(method, outcome["chosen"], outcome["rungs"][-1]["budget"])
                kept = [
                    read_result(str(TUNING / task / f"{name}__{seed}.json")) for seed in outcome["rungs"][-1]["seeds"]
                ]
                fall = f"{max(report.fall_from_best(r['curve'], task, references) for r in kept):.3f}"
            row = f"| {task} | {method} | {runs} | {steps} | {outcome['cpu_minutes'] / 60:.1f} | {outcome['chosen']} |"
            lines += [row + f" {own:.3f} | {fall} | {others[0]} | {others[1]} |"]
    return "\n".join(lines)


def rung_label(rung: dict, outcome: dict) -> str:
    seeds = ", ".join(str(seed) for seed in rung.get("seeds", outcome["protocol"].get("seeds", [])))  # v1: all
    plural = "s" if "," in seeds else ""
    if "budget" not in rung:  # a distillation's rung: its score is the mean over every teacher so far
        earlier = [r["seeds"] for r in outcome["rungs"][: outcome["rungs"].index(rung)]]
        return f"teacher{plural} {', '.join(str(s) for s in [*sum(earlier, []), *rung['seeds']])}"
    return f"{rung['budget'] // 1000}k, seed{plural} {seeds}"


def table(outcome: dict) -> str:
    """One method's configurations, best first: the settings, the score at each rung (mean of the seeds so far)."""
    first, last = outcome["rungs"][0], outcome["rungs"][-1]
    names = list(outcome["configurations"][0])
    hours = outcome["cpu_minutes"] / 60
    steps = f"{outcome['env_steps'] / 1e6:.1f}M env steps" if "env_steps" in outcome else "no new env steps"
    lines = [f"**{outcome['method']}**: {steps}, {hours:.2f} CPU hours", ""]
    lines += ["| config | " + " | ".join(names) + f" | {rung_label(first, outcome)} | {rung_label(last, outcome)} |"]
    lines += ["|---" * (len(names) + 3) + "|"]

    def rank(i: str) -> tuple:
        return (-np.mean(last["scores"].get(i, [-np.inf])), -np.mean(first["scores"].get(i, [-np.inf])))

    def mean(scores: dict, i: str) -> str:
        return f"{np.mean(scores[i]):.3f}" if i in scores else ""

    for i in sorted(set(first["scores"]) | set(last["scores"]), key=rank):
        settings = " | ".join(f"{outcome['configurations'][int(i)][n]:g}" for n in names)
        mark = " (chosen)" if int(i) == outcome["chosen"] else " (defaults)" if i == "0" else ""
        mark += " (Benchmark v3's)" if int(i) == CONFIGS and "budget" in last else ""
        lines += [f"| {i}{mark} | {settings} | {mean(first['scores'], i)} | {mean(last['scores'], i)} |"]
    return "\n".join(lines)


def tuning_report(task: str, figure: str | None) -> str:
    """The table of every configuration's scores per method (and the distillation), and the figure (one panel
    each)."""
    outcomes = [
        read_json(str(TUNING / task / f"{m}.json"), OUTCOME, ("rungs",))
        for m in (*METHODS, "ctedd_distill")
        if (TUNING / task / f"{m}.json").is_file()
    ]
    lines = [f"### Tuning on {task}", ""]
    for outcome in outcomes:
        lines += [table(outcome), ""]
    if figure and outcomes:
        references = report.load_references()
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(
            1, len(outcomes), figsize=(max(4.5 * len(outcomes), 6.5), 4.2), sharey=True, squeeze=False
        )
        top = max(1.05, *(v + 0.05 for o in outcomes for r in o["rungs"] for s in r["scores"].values() for v in s))
        for ax, outcome in zip(axes[0], outcomes):
            for rung, color in zip(outcome["rungs"], ("tab:gray", "tab:blue")):
                for i, seeds in rung["scores"].items():
                    shown = np.maximum(seeds, FLOOR)  # a collapse below the floor is drawn on it, as a triangle
                    markers = ["v" if v < FLOOR else "o" for v in seeds]
                    for value, marker in zip(shown, markers):
                        ax.scatter([int(i)], [value], s=14, color=color, alpha=0.6, marker=marker)
                    ax.scatter([int(i)], [max(np.mean(seeds), FLOOR)], s=60, marker="_", color=color)
                ax.scatter([], [], color=color, label=rung_label(rung, outcome))
            ax.axvline(outcome["chosen"], color="tab:green", linewidth=0.8, linestyle="--", label="chosen")
            for name, value in references[task].items():
                if name not in ("random", "full information"):  # the controllers between, e.g. "no message"
                    level = float(report.normalise(value, task, references))
                    ax.axhline(level, color="black", linestyle=":", linewidth=0.8)
                    ax.annotate(name, (-0.4, level), fontsize=7, va="bottom")
            ax.set_ylim(FLOOR - 0.05, top)
            distill = outcome["method"] == "ctedd_distill"
            ax.set_title("CTEDD-3's distillation: final return" if distill else outcome["method"], fontsize=10)
            if distill:
                capped = ", ".join(
                    str(i) for i in range(len(outcome["configurations"])) if str(i) not in outcome["rungs"][0]["scores"]
                )
                ax.set_xlabel(f"configuration (0: Benchmark v3's; not run, above the cap: {capped})", fontsize=8)
            elif "budget" in outcome["protocol"]:
                guard = "; 16: v3's" if len(outcome["configurations"]) > CONFIGS else ""
                ax.set_xlabel(f"configuration (0: the defaults; 1: #34's setting{guard})")
            else:  # protocol v1
                ax.set_xlabel("configuration (0: the defaults before the tuning; 11: the defaults since)")
            ax.set_xticks(range(len(outcome["configurations"])))
            ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3, frameon=False)
        axes[0][0].set_ylabel("score: normalised return\n(stage 1: mean of the last 30% of the curve)")
        title = f"Tuning on {task}\neach dot one tuning seed, a dash their mean (a triangle: below {FLOOR})"
        fig.suptitle(title, fontsize=10)
        fig.tight_layout()
        report.save(fig, figure)
    return "\n".join(lines)


TUNED_RESULTS = ROOT / "benchmark" / "results" / "tuned"  # the grid's runs at the tuned settings, seeds 1-5
V2_RESULTS = ROOT / "benchmark" / "results" / "v2"  # Benchmark v2's runs, at the settings before tuning
COMPARED = ("ctedd_global", "ctedd_distill_k3", "maddpg_k3_differentiable", "maddpg_k3_reinforced")
PAPER_REACH = {"MADDPG (Lowe et al. 2017, Table 1)": 0.84, "DDPG (same table)": 0.32}  # as commonly cited


def compare(
    task: str,
    figure: str | None = None,
    results: Path = TUNED_RESULTS,
    baseline: Path | None = None,
    reps: int = 2000,
    every_arm: bool = False,
) -> str:
    """Each method's runs in `results` (default: at the tuned settings) against those in `baseline` (default: Benchmark
    v2, benchmark/results/v2), seeds 1-5: final return, normalised IQM, P(results > baseline), the largest fall from the
    best point of the curve, and the goal measures; with `figure`, both learning curves, one panel per method. The
    methods: CTEDD-G, CTEDD-3 and MADDPG-3 with each channel, or with `every_arm` every predefined arm `results` has."""
    references = report.load_references()
    baseline = baseline or V2_RESULTS
    new, old_name = Path(results).name, Path(baseline).name
    v2, tuned = report.load_results(baseline).get(task, {}), report.load_results(results).get(task, {})
    lines = [f"### {task}: {new} against {old_name}, evaluation seeds 1-5", ""]
    columns = f"{old_name} final | {new} final | {new} IQM [95% CI] | P({new} > {old_name}) [95% CI]"
    columns += " | fall from best (largest) | reached | distance"
    lines += [f"| method | {columns} |"]
    lines += ["|---|---|---|---|---|---|---|---|"]
    methods = [m for m in report.METHODS if m in tuned] if every_arm else [m for m in COMPARED if m in tuned]
    for method in methods:
        seeds = sorted(tuned[method])
        finals = np.array([tuned[method][s]["final"]["sum"] for s in seeds])
        scores = report.normalise(finals, task, references)[:, None]
        (iqm, interval), label = report.iqm_intervals({"m": scores}, reps), report.METHODS[method][0]
        row = f"| {label} | "
        if method in v2 and len(v2[method]) >= len(seeds):
            old = np.array([v2[method][s]["final"]["sum"] for s in sorted(v2[method])])
            p, p_interval = report.improvement(scores, report.normalise(old, task, references)[:, None], reps)
            row += f"{old.mean():.1f} ± {old.std():.1f} (n={len(old)}) | "
        else:
            p, p_interval, row = None, None, row + "| "
        row += f"{finals.mean():.1f} ± {finals.std():.1f} (n={len(seeds)}) | {iqm['m'][0]:.3f} "
        row += f"[{interval['m'][0, 0]:.3f}, {interval['m'][1, 0]:.3f}] | "
        row += f"{p:.2f} [{p_interval[0]:.2f}, {p_interval[1]:.2f}] | " if p is not None else "| "
        falls = [report.fall_from_best(tuned[method][s]["curve"], task, references) for s in seeds]
        row += f"{max(falls):.3f} | " if not method.startswith("ctedd_distill") else "| "
        reach = [tuned[method][s]["final"].get("goal_reached") for s in seeds]
        if all(reach):
            agents = list(reach[0])
            row += ", ".join(f"{np.mean([r[a] for r in reach]):.0%}" for a in agents) + " | "
            distances = [tuned[method][s]["final"]["goal_distance"] for s in seeds]
            row += ", ".join(f"{np.mean([d[a] for d in distances]):.3f}" for a in agents) + " |"
        else:
            row += "| |"
        lines += [row]
    if task == "simple_speaker_listener":  # Lowe et al.'s reach rates are speaker-listener's
        lines += [f"| {name}, their MPE | | | | | | {share:.1%} | |" for name, share in PAPER_REACH.items()]
    if figure:
        curves_figure(task, v2, tuned, references, figure, (old_name, new), methods)
    return "\n".join(lines)


def curves_figure(
    task: str, v2: dict, tuned: dict, references: dict, path: str, names=("v2", "tuned"), methods=COMPARED
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trained = [m for m in methods if m in tuned and not m.startswith("ctedd_distill")]
    fig, axes = plt.subplots(1, len(trained), figsize=(5 * len(trained), 3.8), sharey=True, squeeze=False)
    for ax, method in zip(axes[0], trained):
        for runs, colour, name in ((v2.get(method, {}), "tab:gray", names[0]), (tuned[method], "tab:blue", names[1])):
            if not runs:
                continue
            steps = sorted(set.intersection(*(set(dict(r["curve"])) for r in runs.values())))
            values = np.array([[dict(r["curve"])[s] for s in steps] for r in runs.values()])
            for seed_curve in values:
                ax.plot(np.array(steps) / 1e3, seed_curve, color=colour, alpha=0.25, lw=0.8)
            ax.plot(np.array(steps) / 1e3, values.mean(0), color=colour, lw=2, label=f"{name}, mean of {len(values)}")
        if method == "ctedd_global" and "ctedd_distill_k3" in tuned:
            finals = [r["final"]["sum"] for r in tuned["ctedd_distill_k3"].values()]
            ax.errorbar([1020], [np.mean(finals)], yerr=[np.std(finals)], fmt="o", color="tab:green", capsize=3)
            ax.plot([], [], "o", color="tab:green", label=f"CTEDD-3 from the {names[1]} teacher")
        for name in ("no message", "1 bit", "full information"):
            if name in references[task]:
                ax.axhline(references[task][name], color="black", ls=":", lw=0.8)
                ax.annotate(name, (2, references[task][name]), fontsize=7, va="bottom")
        ax.set_title(report.METHODS[method][0], fontsize=10)
        ax.set_xlabel("env steps (thousands)")
        floor = references[task].get("no message", references[task]["random"]) - 15  # the range where methods differ
        ax.set_ylim(floor, references[task]["full information"] + 3)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3, frameon=False)
    axes[0][0].set_ylabel("evaluation return (thin: each seed)")
    fig.suptitle(f"{task}: {names[1]} against {names[0]}, evaluation seeds 1-5", fontsize=10)
    fig.tight_layout()
    report.save(fig, path)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default=None, help="the task to tune on (or to report)")
    parser.add_argument("--method", nargs="+", choices=list(METHODS), default=[])
    parser.add_argument("--plan", action="store_true", help="tune every (task, method) of PLAN, in order")
    parser.add_argument("--summary", action="store_true", help="every outcome's budget and choice, in one table")
    parser.add_argument("--distill", action="store_true", help="tune CTEDD-3's distillation on --task")
    parser.add_argument("--trials", default=str(TUNING), help="where the trials are kept (v1's: tuning/v1)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--backend", choices=["local", "ray"], default="local")
    parser.add_argument("--report", nargs="?", const="", default=None, help="print the table (and draw the figure)")
    parser.add_argument("--list", action="store_true", help="print each method's configurations only")
    parser.add_argument("--write-tuned", default=None, help="write every tuned task's chosen flags here (tuned.json)")
    parser.add_argument("--single", action="store_true", help="each script's best single setting")
    parser.add_argument("--compare", nargs="?", const="", default=None, help="tuned against v2 (and draw the curves)")
    parser.add_argument("--results", default=str(TUNED_RESULTS), help="--compare: these runs (default: the tuned)")
    parser.add_argument("--baseline", default=None, help="--compare: against these (default: Benchmark v2)")
    parser.add_argument("--every-arm", action="store_true", help="--compare: every arm, not only the four compared")
    cli = parser.parse_args()
    TUNING = Path(cli.trials)
    try:
        if (cli.method or cli.distill or cli.report is not None or cli.compare is not None) and not cli.task:
            raise UsageError("--method, --distill, --report and --compare need a --task")
        if cli.task:
            parse_task(cli.task)
        if cli.workers <= 0:
            raise UsageError("--workers must be positive")
        if cli.plan:
            for task, methods in PLAN.items():
                for name in methods:
                    tune(task, name, cli.workers, cli.runs_dir, cli.backend)
                if task in DISTILL_FIXED:  # while the teachers' buffers are here
                    tune_distillation(task, cli.workers, cli.runs_dir, cli.backend)
        if cli.distill:
            tune_distillation(cli.task, cli.workers, cli.runs_dir, cli.backend)
        for name in cli.method:
            if cli.list:
                for index, params in enumerate(configurations(name)):
                    print(name, index, " ".join(flags(params)))
            else:
                tune(cli.task, name, cli.workers, cli.runs_dir, cli.backend)
        if cli.summary:
            print(summary())
        if cli.write_tuned:
            write_tuned(cli.write_tuned)
        if cli.single:
            for name in ("ctedd_global", "maddpg_k3_differentiable"):  # the defaults of the two training scripts
                single_setting(name, cli.workers, cli.runs_dir, cli.backend)
            single_distillation(cli.workers, cli.runs_dir, cli.backend)  # and of the distillation
        if cli.compare is not None:
            baseline = Path(cli.baseline) if cli.baseline else None
            print(compare(cli.task, cli.compare or None, Path(cli.results), baseline, every_arm=cli.every_arm))
        if cli.report is not None:
            print(tuning_report(cli.task, cli.report or None))
    except UsageError as err:
        raise SystemExit(f"error: {err}") from None
