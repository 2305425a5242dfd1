"""Run the paper's comparison as a grid of (method, task, seed), `--workers` at a time.

A task is an env id with its setting, named as in the run directories: simple_spread,
simple_spread-an1 (each agent sees its nearest other agent only), simple_tag-scripted (learning
predators, scripted prey), simple_push-scripted, ... (see `common.envs.task_name`).
Methods: CTEDD-G (ctedd_global.py), CTEDD-k (ctedd_distill.py on that CTEDD-G run, k in
--bits; it starts only once its stage-1 run has finished, and one stage-1 run feeds every k),
MADDPG-k (maddpg.py, k in --bits, each channel of --channels for k > 0). Each run is
single-threaded and logs under runs/; its console output goes to benchmark/logs/. Each finished
run's result.json (learning curve, final evaluation per episode, time) is copied to
benchmark/results/{task}/, which the repository keeps: a run whose result is there is skipped, so
rerunning the grid, on this machine or a fresh one, only does what is missing. A stage-1 run's
buffer (stage 2's data, 0.3-0.7 GB) is deleted once its distillations are done (--keep-buffers
keeps it). A failed run is reported with its log path and does not stop the others (only the
distillations that need it).

    python benchmark/run.py --tasks simple_speaker_listener simple_spread-an1 --seeds 1 2 3 --workers 2
    python benchmark/run.py --tasks simple_tag --budget 500000    # self-play: the prey learns too
    python benchmark/run.py --workers 0    # print the commands only
"""

from __future__ import annotations

import argparse
import glob
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field

SCRIPTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS_DIR = os.path.join(SCRIPTS_DIR, "benchmark", "results")
sys.path.insert(0, SCRIPTS_DIR)
from common.envs import parse_task, task_flags  # noqa: E402
from common.utils import UsageError  # noqa: E402

# the channel-matters tasks first, then the paper's predator-prey and push, then the fully observed control
DEFAULT_TASKS = [
    "simple_speaker_listener",
    "simple_reference",
    "simple_spread-an1",
    "simple_tag-scripted",
    "simple_push-scripted",
    "simple_spread",
]


@dataclass
class Job:
    name: str  # also the exp_name, so the run directory is runs/{task}__{name}__{seed}__{time}
    script: str
    task: str
    seed: int
    args: list[str]
    after: Job | None = None  # the stage-1 job this distillation reads
    state: str = "waiting"  # waiting, running, done, failed, skipped
    process: subprocess.Popen | None = field(default=None, repr=False)

    def run_glob(self, runs_dir: str) -> str:
        if self.script == "ctedd_distill.py":  # its run names carry k: {task}__{exp}__k{bits}__{seed}__{time}
            bits = self.args[self.args.index("--message-bits") + 1]
            return os.path.join(runs_dir, f"{self.task}__{self.name}__k{bits}__{self.seed}__*")
        return os.path.join(runs_dir, f"{self.task}__{self.name}__{self.seed}__*")

    def finished_run(self, runs_dir: str) -> str | None:
        """The newest run directory of this job that holds its final model file."""
        done = glob.glob(os.path.join(self.run_glob(runs_dir), f"{self.name}.cleanrl_model"))
        return os.path.dirname(max(done, key=os.path.getmtime)) if done else None

    def result_path(self, results_dir: str) -> str:
        """benchmark/results/{task}/{name}__{seed}.json, or {name}_k{bits}__{seed}.json for a distillation."""
        bits = f"_k{self.args[self.args.index('--message-bits') + 1]}" if self.script == "ctedd_distill.py" else ""
        return os.path.join(results_dir, self.task, f"{self.name}{bits}__{self.seed}.json")

    def command(self, runs_dir: str) -> list[str]:
        cmd = [
            sys.executable,
            os.path.join(SCRIPTS_DIR, self.script),
            "--exp-name",
            self.name,
            "--seed",
            str(self.seed),
        ]
        if self.after is not None:
            stage1 = self.after.finished_run(runs_dir) or f"<{self.after.name} run of seed {self.seed}>"
            return cmd + ["--global-run", stage1, *self.args]
        return cmd + [*task_flags(parse_task(self.task)).split(), "--save-model", *self.args]


def build_grid(
    tasks,
    seeds,
    bits,
    budget,
    ctedd_args=(),
    maddpg_args=(),
    distill_args=(),
    methods=("ctedd", "maddpg"),
    channels=("differentiable",),
) -> list[Job]:
    for task in tasks:
        parse_task(task)  # refuse an unknown task before anything runs
    jobs = []
    for seed in seeds:  # seed by seed: a grid cut short still has every task and method at the same seeds
        for task in tasks:
            budget_args = ["--total-timesteps", str(budget)]
            if "ctedd" in methods:
                stage1 = Job("ctedd_global", "ctedd_global.py", task, seed, budget_args + list(ctedd_args))
                distill = [["--message-bits", str(k), *distill_args] for k in bits]
                jobs += [stage1] + [
                    Job("ctedd_distill", "ctedd_distill.py", task, seed, args, after=stage1) for args in distill
                ]
            if "maddpg" in methods:
                for k in bits:
                    for channel in channels if k > 0 else ["differentiable"]:
                        name = f"maddpg_k{k}" + (f"_{channel}" if k > 0 else "")
                        args = budget_args + ["--message-bits", str(k), "--channel", channel, *maddpg_args]
                        jobs.append(Job(name, "maddpg.py", task, seed, args))
    return jobs


def run_grid(
    jobs: list[Job],
    workers: int,
    runs_dir: str,
    logs_dir: str,
    results_dir: str = RESULTS_DIR,
    keep_buffers: bool = False,
    poll_seconds: float = 2.0,
) -> int:
    """Run the jobs, `workers` at a time, distillations after their stage-1 run. Returns the failures.

    A finished run's result.json is copied to `results_dir`; a job whose result is there is skipped,
    unless it is a stage-1 run whose buffer a missing distillation still needs. Once a stage-1 run's
    distillations are over, its buffer and checkpoint are deleted (0.3-0.7 GB each) unless `keep_buffers`."""
    os.makedirs(logs_dir, exist_ok=True)
    dependents = {id(job): [d for d in jobs if d.after is job] for job in jobs}
    for job in jobs:
        needed = any(not os.path.isfile(d.result_path(results_dir)) for d in dependents[id(job)])
        stage1 = job.finished_run(runs_dir)
        if os.path.isfile(job.result_path(results_dir)) and (not needed or stage1 and has_buffer(stage1)):
            job.state = "skipped"
            print(f"skip (finished): {job.task} {job.name} seed {job.seed}")
    failures = 0
    while any(job.state in ("waiting", "running") for job in jobs):
        for job in jobs:
            if job.state == "running" and job.process.poll() is not None:
                job.state = "done" if job.process.returncode == 0 else "failed"
                if job.state == "failed":
                    failures += 1
                    print(f"FAILED: {shlex.join(job.process.args)}\n  log: {log_path(job, logs_dir)}")
                else:
                    keep_result(job, runs_dir, results_dir)
        for job in jobs:
            if job.state == "waiting" and job.after is not None and job.after.state == "failed":
                job.state = "failed"
                failures += 1
                print(f"not run: {job.task} {job.name} seed {job.seed} (its stage-1 run failed)")
        for job in jobs:
            over = all(d.state in ("done", "skipped", "failed") for d in dependents[id(job)])
            if job.state in ("done", "skipped") and dependents[id(job)] and over and not keep_buffers:
                drop_buffer(job.finished_run(runs_dir))
        running = sum(job.state == "running" for job in jobs)
        for job in jobs:
            ready = job.after is None or job.after.state in ("done", "skipped")
            if job.state == "waiting" and ready and running < workers:
                with open(log_path(job, logs_dir), "w") as log:
                    job.process = subprocess.Popen(
                        job.command(runs_dir), stdout=log, stderr=subprocess.STDOUT, cwd=os.getcwd()
                    )
                job.state, running = "running", running + 1
                print(f"start: {shlex.join(job.command(runs_dir))}")
        time.sleep(poll_seconds)
    return failures


def has_buffer(run_dir: str) -> bool:
    return os.path.isfile(os.path.join(run_dir, "buffer.npz"))


def keep_result(job: Job, runs_dir: str, results_dir: str) -> None:
    """Copy the finished run's result.json into the results tree (the repository keeps those)."""
    run_dir = job.finished_run(runs_dir)
    source = os.path.join(run_dir, "result.json") if run_dir else ""
    if os.path.isfile(source):
        os.makedirs(os.path.dirname(job.result_path(results_dir)), exist_ok=True)
        shutil.copyfile(source, job.result_path(results_dir))


def drop_buffer(run_dir: str | None) -> None:
    for name in ("buffer.npz", "checkpoint.pt"):
        if run_dir and os.path.isfile(os.path.join(run_dir, name)):
            os.remove(os.path.join(run_dir, name))


def log_path(job: Job, logs_dir: str) -> str:
    extra = "_k" + job.args[job.args.index("--message-bits") + 1] if job.script == "ctedd_distill.py" else ""
    return os.path.join(logs_dir, f"{job.task}__{job.name}{extra}__{job.seed}.log")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=DEFAULT_TASKS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3, 4, 5])
    parser.add_argument("--bits", nargs="+", type=int, default=[0, 1, 3], help="channel widths k")
    parser.add_argument("--budget", type=int, default=1_000_000, help="env steps per training run")
    parser.add_argument("--ctedd-args", default="", help="extra arguments for ctedd_global.py")
    parser.add_argument("--maddpg-args", default="", help="extra arguments for maddpg.py")
    parser.add_argument("--distill-args", default="", help="extra arguments for ctedd_distill.py")
    parser.add_argument("--methods", nargs="+", choices=["ctedd", "maddpg"], default=["ctedd", "maddpg"])
    parser.add_argument(
        "--channels", nargs="+", choices=["differentiable", "reinforced"], default=["differentiable", "reinforced"]
    )
    parser.add_argument("--workers", type=int, default=2, help="parallel runs; 0 prints the commands only")
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--logs-dir", default="benchmark/logs")
    parser.add_argument("--results-dir", default=RESULTS_DIR, help="where finished runs' result.json are kept")
    parser.add_argument("--keep-buffers", action="store_true", help="keep stage-1 buffers after their distillations")
    cli = parser.parse_args()
    if cli.budget <= 0 or cli.workers < 0:
        raise SystemExit("error: --budget must be positive and --workers not negative")
    try:
        grid = build_grid(
            cli.tasks,
            cli.seeds,
            cli.bits,
            cli.budget,
            shlex.split(cli.ctedd_args),
            shlex.split(cli.maddpg_args),
            shlex.split(cli.distill_args),
            cli.methods,
            cli.channels,
        )
    except UsageError as err:
        raise SystemExit(f"error: {err}") from None
    if cli.workers == 0:
        for job in grid:
            print(shlex.join(job.command(cli.runs_dir)))
        raise SystemExit(0)
    failed = run_grid(grid, cli.workers, cli.runs_dir, cli.logs_dir, cli.results_dir, cli.keep_buffers)
    print(f"{len(grid)} runs, {failed} failed")
    raise SystemExit(1 if failed else 0)
