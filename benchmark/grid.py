"""What the grid's two backends share: the arms, a job per (arm, task, seed), finished runs, kept results.

`benchmark.run` (the command line and the local backend) and `benchmark.ray_grid` (the Ray backend) both
import this module and not each other.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field

from common.envs import parse_task, task_flags
from common.utils import UsageError

SCRIPTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS_DIR = os.path.join(SCRIPTS_DIR, "benchmark", "results")
# an arm's name is part of file and directory names, {task}__{name}__{seed}: no "__", nothing a shell or glob reads
ARM_NAME = re.compile(r"[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*")
GRID_FLAGS = ("--exp-name", "--seed", "--global-run", "--resume", "--total-timesteps")  # the grid sets these


@dataclass(frozen=True)
class Arm:
    """A method of the grid: a script and its flags, run on every task and seed. A distillation (`stage1`
    set) runs after, and reads, the finished run of arm `stage1` on the same task and seed."""

    name: str  # its results: benchmark/results/{task}/{name}__{seed}.json
    script: str  # relative to the repository root
    args: tuple[str, ...] = ()
    stage1: str | None = None
    exp_name: str = ""  # the runs' --exp-name (default: the name); the predefined distillations share ctedd_distill
    tuned_as: str | None = None  # the method of benchmark/tuned.json whose settings it takes


def parse_arm(spec: str) -> Arm:
    """An arm named on the command line: NAME=SCRIPT[@STAGE1][:ARGS] (see benchmark.run)."""
    name, equals, rest = spec.partition("=")
    script, _, flags = rest.partition(":")
    script, at, stage1 = script.partition("@")
    if not equals or not script:
        raise UsageError(f"--arm {spec!r}: expected NAME=SCRIPT[@STAGE1][:ARGS]")
    for part in (name, stage1) if at else (name,):
        if not ARM_NAME.fullmatch(part):
            raise UsageError(f"--arm {spec!r}: {part!r} is not an arm name (letters and digits, single . _ - between)")
    if os.path.isabs(script) or not os.path.isfile(os.path.join(SCRIPTS_DIR, script)):
        raise UsageError(f"--arm {spec!r}: no script {script} in the repository ({SCRIPTS_DIR})")
    try:
        args = tuple(shlex.split(flags))
    except ValueError as err:
        raise UsageError(f"--arm {spec!r}: cannot split its ARGS: {err}") from None
    taken = [flag.split("=")[0] for flag in args if flag.split("=")[0] in GRID_FLAGS]
    if taken:
        hint = " (from --budget)" if taken[0] == "--total-timesteps" else ""
        raise UsageError(f"--arm {spec!r}: the grid sets {taken[0]} itself{hint}")
    if not at and os.path.basename(script) == "ctedd_distill.py":
        stage1 = "ctedd_global"
    return Arm(name, script, args, stage1 or None)


def predefined_arms(
    bits, methods=("ctedd", "maddpg"), channels=("differentiable",), ctedd_args=(), maddpg_args=(), distill_args=()
) -> list[Arm]:
    """The paper's methods: CTEDD-G (ctedd_global), CTEDD-k (ctedd_distill_k{k}, reading CTEDD-G's run) and
    MADDPG-k (maddpg_k{k}_{channel}, maddpg_k0), k in `bits`; with the extra flags given for each script."""
    arms = []
    if "ctedd" in methods:
        arms.append(Arm("ctedd_global", "ctedd_global.py", tuple(ctedd_args), tuned_as="ctedd_global"))
        for k in bits:
            args = ("--message-bits", str(k), *distill_args)
            arms.append(Arm(f"ctedd_distill_k{k}", "ctedd_distill.py", args, "ctedd_global", "ctedd_distill"))
    if "maddpg" in methods:
        for k in bits:
            for channel in channels if k > 0 else ["differentiable"]:
                name = f"maddpg_k{k}" + (f"_{channel}" if k > 0 else "")
                args = ("--message-bits", str(k), "--channel", channel, *maddpg_args)
                arms.append(Arm(name, "maddpg.py", args, tuned_as=f"maddpg_k3_{channel}"))
    return arms


def check_arms(arms: list[Arm]) -> None:
    """Names unique; every distillation reads an arm of the grid that is not a distillation itself."""
    names = [arm.name for arm in arms]
    for arm in arms:
        if names.count(arm.name) > 1:
            raise UsageError(f"two arms are named {arm.name}")
        if arm.stage1 is not None and arm.stage1 not in names:
            raise UsageError(f"arm {arm.name} reads the runs of arm {arm.stage1}, which is not in the grid")
        if arm.stage1 is not None and arms[names.index(arm.stage1)].stage1 is not None:
            raise UsageError(f"arm {arm.name} reads arm {arm.stage1}, a distillation: it needs a training run")


@dataclass
class Job:
    name: str  # the result's name: benchmark/results/{task}/{name}__{seed}.json, and the log's
    script: str
    task: str
    seed: int
    args: list[str]
    after: Job | None = None  # a distillation: the stage-1 job whose run it reads
    exp_name: str = ""  # the run's --exp-name (default: the name): runs/{task}__{exp_name}__{seed}__{time}
    # where the training scripts are (the same path on every node of a cluster); read when the job is made
    scripts_dir: str = field(default_factory=lambda: SCRIPTS_DIR)
    state: str = "waiting"  # waiting, running, done, failed, skipped
    process: subprocess.Popen | None = field(default=None, repr=False)

    def __post_init__(self):
        self.exp_name = self.exp_name or self.name

    def run_glob(self, runs_dir: str) -> str:
        if self.after is not None:  # a distillation's run names carry k: {task}__{exp}__k{bits}__{seed}__{time}
            flags = self.args
            bits = flags[flags.index("--message-bits") + 1] if "--message-bits" in flags else "*"
            return os.path.join(runs_dir, f"{self.task}__{self.exp_name}__k{bits}__{self.seed}__*")
        return os.path.join(runs_dir, f"{self.task}__{self.exp_name}__{self.seed}__*")

    def finished_run(self, runs_dir: str) -> str | None:
        """The newest run directory of this job that holds its final model file."""
        done = glob.glob(os.path.join(self.run_glob(runs_dir), f"{self.exp_name}.cleanrl_model"))
        return os.path.dirname(max(done, key=os.path.getmtime)) if done else None

    def result_path(self, results_dir: str) -> str:
        return os.path.join(results_dir, self.task, f"{self.name}__{self.seed}.json")

    def unfinished_run(self, runs_dir: str) -> str | None:
        """The newest run directory of this job with a resumable checkpoint and no final model yet."""
        dirs = [d for d in glob.glob(self.run_glob(runs_dir)) if os.path.isfile(os.path.join(d, "checkpoint.pt"))]
        dirs = [d for d in dirs if not os.path.isfile(os.path.join(d, f"{self.exp_name}.cleanrl_model"))]
        return max(dirs, key=os.path.getmtime) if dirs else None

    def command(self, runs_dir: str, stage1_dir: str | None = None) -> list[str]:
        """The command that runs this job: a distillation reads `stage1_dir` (default: its stage-1 job's
        finished run); a training run with an unfinished checkpoint (a crash, a killed worker) resumes it."""
        script = [sys.executable, os.path.join(self.scripts_dir, self.script)]
        named = ["--exp-name", self.exp_name, "--seed", str(self.seed)]
        if self.after is not None:
            stage1 = stage1_dir or self.after.finished_run(runs_dir) or f"<{self.after.name} run of seed {self.seed}>"
            return script + named + ["--global-run", stage1, *self.args]
        unfinished = self.unfinished_run(runs_dir)
        if unfinished:
            budget = self.args[self.args.index("--total-timesteps") + 1]
            return script + ["--resume", unfinished, "--total-timesteps", budget]
        return script + named + [*task_flags(parse_task(self.task)).split(), "--save-model", *self.args]


def build_grid(tasks, seeds, arms: list[Arm], budget: int, tuned: dict | None = None) -> list[Job]:
    """A job per (seed, task, arm); a training arm runs `budget` env steps. `tuned` (benchmark/tuned.json): per
    task, the settings benchmark.tune chose for each method; an arm takes those of its `tuned_as` (the predefined
    MADDPG-0 and -1 take their channel's MADDPG-3 setting, MADDPG-0 the differentiable one's)."""
    check_arms(arms)
    for task in tasks:
        parse_task(task)  # refuse an unknown task before anything runs
        if tuned is not None and task not in tuned:
            raise UsageError(f"no tuned settings for task {task} in the tuned file (benchmark.tune --write-tuned)")
    settings = tuned or {}
    jobs = []
    for seed in seeds:  # seed by seed: a grid cut short still has every task and arm at the same seeds
        for task in tasks:
            made = {}
            for arm in arms:
                args = [*arm.args, *settings.get(task, {}).get(arm.tuned_as, [])]
                if arm.stage1 is None:
                    args = ["--total-timesteps", str(budget), *args]
                made[arm.name] = Job(arm.name, arm.script, task, seed, args, exp_name=arm.exp_name)
            for arm in arms:
                made[arm.name].after = made.get(arm.stage1)
            jobs += made.values()
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
    return os.path.join(logs_dir, f"{job.task}__{job.name}__{job.seed}.log")
