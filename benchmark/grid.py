"""What the grid's two backends share: a job per (method, task, seed), which runs are finished, where results go.

`benchmark.run` (the command line and the local backend) and `benchmark.ray_grid` (the Ray backend) both
import this module and not each other.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field

from common.envs import parse_task, task_flags
from common.utils import UsageError

SCRIPTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS_DIR = os.path.join(SCRIPTS_DIR, "benchmark", "results")


@dataclass
class Job:
    name: str  # also the exp_name, so the run directory is runs/{task}__{name}__{seed}__{time}
    script: str
    task: str
    seed: int
    args: list[str]
    after: Job | None = None  # the stage-1 job this distillation reads
    # where the training scripts are (the same path on every node of a cluster); read when the job is made
    scripts_dir: str = field(default_factory=lambda: SCRIPTS_DIR)
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
    """`tuned` (benchmark/tuned.json): per task, the settings benchmark.tune chose for ctedd_global and
    maddpg_k3_{channel}; MADDPG-0 and -1 take their channel's MADDPG-3 setting (-0: the differentiable one's)."""
    for task in tasks:
        parse_task(task)  # refuse an unknown task before anything runs
        if tuned is not None and task not in tuned:
            raise UsageError(f"no tuned settings for task {task} in the tuned file (benchmark.tune --write-tuned)")
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
    """benchmark/tuned.json: {task: {method: [flags]}}, written by python -m benchmark.tune --write-tuned."""
    try:
        with open(path) as f:
            return json.load(f)["settings"]
    except (OSError, ValueError, KeyError) as err:
        raise UsageError(f"cannot read the tuned settings {path}: {err}") from None


def log_path(job: Job, logs_dir: str) -> str:
    extra = "_k" + job.args[job.args.index("--message-bits") + 1] if job.script == "ctedd_distill.py" else ""
    return os.path.join(logs_dir, f"{job.task}__{job.name}{extra}__{job.seed}.log")
