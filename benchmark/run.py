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
import json
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
    scripts_dir: str = SCRIPTS_DIR  # where the training scripts are (the same path on every node of a cluster)
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

    def unfinished_run(self, runs_dir: str) -> str | None:
        """The newest run directory of this job with a resumable checkpoint and no final model yet."""
        dirs = [d for d in glob.glob(self.run_glob(runs_dir)) if os.path.isfile(os.path.join(d, "checkpoint.pt"))]
        dirs = [d for d in dirs if not os.path.isfile(os.path.join(d, f"{self.name}.cleanrl_model"))]
        return max(dirs, key=os.path.getmtime) if dirs else None

    def command(self, runs_dir: str, stage1_dir: str | None = None) -> list[str]:
        """The command that runs this job: a distillation reads `stage1_dir` (default: its stage-1 job's
        finished run); a training run with an unfinished checkpoint (a crash, a killed worker) resumes it."""
        script = [sys.executable, os.path.join(self.scripts_dir, self.script)]
        if self.after is not None:
            stage1 = stage1_dir or self.after.finished_run(runs_dir) or f"<{self.after.name} run of seed {self.seed}>"
            return script + ["--exp-name", self.name, "--seed", str(self.seed), "--global-run", stage1, *self.args]
        unfinished = self.unfinished_run(runs_dir)
        if unfinished:
            budget = self.args[self.args.index("--total-timesteps") + 1]
            return script + ["--resume", unfinished, "--total-timesteps", budget]
        flags = [*task_flags(parse_task(self.task)).split(), "--save-model"]
        return script + ["--exp-name", self.name, "--seed", str(self.seed), *flags, *self.args]


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
    tuned: dict | None = None,
) -> list[Job]:
    """`tuned` (benchmark/tuned.json): per task, the settings benchmark/tune.py chose for ctedd_global and
    maddpg_k3_{channel}; MADDPG-0 and -1 take their channel's MADDPG-3 setting (-0: the differentiable one's)."""
    for task in tasks:
        parse_task(task)  # refuse an unknown task before anything runs
        if tuned is not None and task not in tuned:
            raise UsageError(f"no tuned settings for task {task} in the tuned file (benchmark/tune.py --write-tuned)")
    settings = tuned or {}
    jobs = []
    for seed in seeds:  # seed by seed: a grid cut short still has every task and method at the same seeds
        for task in tasks:
            budget_args = ["--total-timesteps", str(budget)]
            if "ctedd" in methods:
                ctedd_tuned = settings.get(task, {}).get("ctedd_global", [])
                stage1 = Job(
                    "ctedd_global", "ctedd_global.py", task, seed, budget_args + list(ctedd_args) + ctedd_tuned
                )
                distill = [["--message-bits", str(k), *distill_args] for k in bits]
                jobs += [stage1] + [
                    Job("ctedd_distill", "ctedd_distill.py", task, seed, args, after=stage1) for args in distill
                ]
            if "maddpg" in methods:
                for k in bits:
                    for channel in channels if k > 0 else ["differentiable"]:
                        name = f"maddpg_k{k}" + (f"_{channel}" if k > 0 else "")
                        args = budget_args + ["--message-bits", str(k), "--channel", channel, *maddpg_args]
                        args += settings.get(task, {}).get(f"maddpg_k3_{channel}", [])
                        jobs.append(Job(name, "maddpg.py", task, seed, args))
    for job in jobs:
        job.scripts_dir = SCRIPTS_DIR
    return jobs


def skip_finished(jobs: list[Job], runs_dir: str, results_dir: str) -> None:
    """Mark the jobs whose result is kept as skipped, unless a missing distillation needs the stage-1 buffer."""
    for job in jobs:
        needed = any(not os.path.isfile(d.result_path(results_dir)) for d in dependents_of(job, jobs))
        stage1 = job.finished_run(runs_dir)
        if os.path.isfile(job.result_path(results_dir)) and (not needed or stage1 and has_buffer(stage1)):
            job.state = "skipped"
            print(f"skip (finished): {job.task} {job.name} seed {job.seed}")


def dependents_of(job: Job, jobs: list[Job]) -> list[Job]:
    return [d for d in jobs if d.after is job]


def tidy(jobs: list[Job], runs_dir: str, keep_buffers: bool) -> None:
    """Delete the buffers no job needs any more: a stage-1 run's once its distillations are over, a
    MADDPG run's (written with its checkpoints) at once. A buffer of 1M transitions takes 0.3-0.7 GB."""
    for job in jobs:
        over = all(d.state in ("done", "skipped", "failed") for d in dependents_of(job, jobs))
        if job.state in ("done", "skipped") and over and not keep_buffers:
            drop_buffer(job.finished_run(runs_dir))


def run_grid(
    jobs: list[Job],
    workers: int,
    runs_dir: str,
    logs_dir: str,
    results_dir: str = RESULTS_DIR,
    keep_buffers: bool = False,
    poll_seconds: float = 2.0,
) -> int:
    """Run the jobs on this machine, `workers` at a time, distillations after their stage-1 run.
    Returns the failures. Each finished run's result.json is copied to `results_dir`."""
    os.makedirs(logs_dir, exist_ok=True)
    skip_finished(jobs, runs_dir, results_dir)
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
        tidy(jobs, runs_dir, keep_buffers)
        running = sum(job.state == "running" for job in jobs)
        for job in jobs:
            ready = job.after is None or job.after.state in ("done", "skipped")
            if job.state == "waiting" and ready and running < workers:
                command = job.command(runs_dir)
                with open(log_path(job, logs_dir), "w") as log:
                    job.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=workdir(runs_dir))
                job.state, running = "running", running + 1
                print(f"start: {shlex.join(command)}")
        time.sleep(poll_seconds)
    return failures


def workdir(runs_dir: str) -> str:
    """The scripts write into runs/ of their working directory: run them in the one above `runs_dir`."""
    if os.path.basename(os.path.abspath(runs_dir)) != "runs":
        raise UsageError(f"--runs-dir must be a directory named runs (the scripts write there), got {runs_dir}")
    return os.path.dirname(os.path.abspath(runs_dir))


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


def read_tuned(path: str) -> dict:
    """benchmark/tuned.json: {task: {method: [flags]}}, written by benchmark/tune.py --write-tuned."""
    try:
        with open(path) as f:
            return json.load(f)["settings"]
    except (OSError, ValueError, KeyError) as err:
        raise UsageError(f"cannot read the tuned settings {path}: {err}") from None


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
    parser.add_argument("--tuned", default=None, help="each method's tuned settings per task (benchmark/tuned.json)")
    parser.add_argument("--workers", type=int, default=2, help="parallel runs; 0 prints the commands only")
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--logs-dir", default="benchmark/logs")
    parser.add_argument("--results-dir", default=RESULTS_DIR, help="where finished runs' result.json are kept")
    parser.add_argument("--keep-buffers", action="store_true", help="keep stage-1 buffers after their distillations")
    parser.add_argument("--backend", choices=["local", "ray"], default="local", help="local: a process pool here")
    parser.add_argument("--address", default=None, help="ray: an existing cluster (default: start Ray here)")
    parser.add_argument("--cpus-per-run", type=float, default=1.0, help="ray: CPUs reserved for each run")
    parser.add_argument("--cuda", action="store_true", help="train with --cuda, one GPU reserved per training run")
    parser.add_argument(
        "--checkpoint-frequency",
        type=int,
        default=None,
        help="training runs write resumable checkpoints this often (default: 0 locally, 100000 with ray)",
    )
    cli = parser.parse_args()
    if cli.budget <= 0 or cli.workers < 0:
        raise SystemExit("error: --budget must be positive and --workers not negative")
    try:
        workdir(cli.runs_dir)
    except UsageError as err:
        raise SystemExit(f"error: {err}") from None
    checkpoints = cli.checkpoint_frequency if cli.checkpoint_frequency is not None else 100_000 * (cli.backend == "ray")
    training = ["--checkpoint-frequency", str(checkpoints)] + ["--cuda"] * cli.cuda
    try:
        grid = build_grid(
            cli.tasks,
            cli.seeds,
            cli.bits,
            cli.budget,
            training + shlex.split(cli.ctedd_args),
            training + shlex.split(cli.maddpg_args),
            ["--cuda"] * cli.cuda + shlex.split(cli.distill_args),
            cli.methods,
            cli.channels,
            read_tuned(cli.tuned) if cli.tuned else None,
        )
    except UsageError as err:
        raise SystemExit(f"error: {err}") from None
    if cli.workers == 0:
        for job in grid:
            print(shlex.join(job.command(cli.runs_dir)))
        raise SystemExit(0)
    if cli.backend == "ray":
        import ray_grid

        gpus = 1.0 if cli.cuda else 0.0
        failed = ray_grid.run_grid(
            grid, cli.runs_dir, cli.logs_dir, cli.results_dir, cli.keep_buffers, cli.address, cli.cpus_per_run, gpus
        )
    else:
        failed = run_grid(grid, cli.workers, cli.runs_dir, cli.logs_dir, cli.results_dir, cli.keep_buffers)
    print(f"{len(grid)} runs, {failed} failed")
    raise SystemExit(1 if failed else 0)
