"""What the grid's two backends share: the arms, a job per (arm, task, seed), finished runs, kept results.

`benchmark.run` (the command line and the local backend) and `benchmark.ray_grid` (the Ray backend) both
import this module and not each other.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import importlib.util
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field

import tyro

from common.envs import parse_task, task_flags
from common.runs import code_version
from common.utils import UsageError, load_checkpoint

SCRIPTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# your own runs (not a benchmark version: those are benchmark/results/v2, v3, ..., named with --results-dir)
RESULTS_DIR = os.path.join(SCRIPTS_DIR, "benchmark", "results", "local")
# an arm's name is part of file and directory names, {task}__{name}__{seed}: no "__", nothing a shell or glob reads
ARM_NAME = re.compile(r"[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*")
GRID_FLAGS = ("--exp-name", "--seed", "--global-run", "--resume", "--total-timesteps")  # the grid sets these
# the arguments that say how a run is executed, named and logged, not what it computes: a kept result made with
# other values of these is as good as one made with today's (on a GPU the numbers differ, as on another CPU)
HOW_RUN = (
    "exp_name",
    "global_run",
    "resume",
    "checkpoint_frequency",
    "save_model",
    "cuda",
    "torch_deterministic",
    "threads",
    "track",
    "wandb_project_name",
    "wandb_entity",
    "capture_video",
    "eval_checkpoint",
)


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
            name = f"ctedd_distill_k{k}"
            arms.append(Arm(name, "ctedd_distill.py", args, "ctedd_global", "ctedd_distill", "ctedd_distill"))
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
    stale_runs: tuple[str, ...] = ()  # unfinished run directories made with other settings: never resumed

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
        dirs = [d for d in dirs if d not in self.stale_runs]
        return max(dirs, key=os.path.getmtime) if dirs else None

    def flags(self, stage1_dir: str) -> list[str]:
        """The flags of a new run of this job (a distillation reads `stage1_dir`)."""
        named = ["--exp-name", self.exp_name, "--seed", str(self.seed)]
        if self.after is not None:
            return named + ["--global-run", stage1_dir, *self.args]
        return named + [*task_flags(parse_task(self.task)).split(), "--save-model", *self.args]

    def planned(self) -> tuple[dict, dict]:
        """What a new run of this job would be made with today: its settings (the script's Args with these flags,
        the script's defaults for the rest, without HOW_RUN) and its code (common.runs.code_version)."""
        path = os.path.join(self.scripts_dir, self.script)
        code, flags = code_version(path), self.flags("runs/<stage-1 run>")
        with contextlib.redirect_stderr(io.StringIO()) as usage:
            try:
                settings = vars(tyro.cli(script_args(path, code["script_sha256"]), args=flags))
            except SystemExit:
                reason = [line for line in usage.getvalue().splitlines() if line.strip(" │╭╰─")][-1:]
                raise UsageError(f"{self.script} refuses the flags {shlex.join(self.args)}: {reason}") from None
        if self.after is not None:  # a distillation's result holds the task of the run it distils
            settings.update(parse_task(self.task))
        return comparable(settings), code

    def command(self, runs_dir: str, stage1_dir: str | None = None) -> list[str]:
        """The command that runs this job: a distillation reads `stage1_dir` (default: its stage-1 job's
        finished run); a training run with an unfinished checkpoint (a crash, a killed worker) resumes it."""
        script = [sys.executable, os.path.join(self.scripts_dir, self.script)]
        if self.after is not None:
            stage1 = stage1_dir or self.after.finished_run(runs_dir) or f"<{self.after.name} run of seed {self.seed}>"
            return script + self.flags(stage1)
        unfinished = self.unfinished_run(runs_dir)
        if unfinished:
            budget = self.args[self.args.index("--total-timesteps") + 1]
            return script + ["--resume", unfinished, "--total-timesteps", budget]
        return script + self.flags("")


@functools.cache
def script_args(path: str, version: str) -> type:
    """The `Args` dataclass of a training script (or a fork) in the `version` of its file (its fingerprint),
    imported without running the script."""
    spec = importlib.util.spec_from_file_location(f"_grid_script_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        return module.Args
    except Exception as err:
        raise UsageError(f"cannot read the Args of {path}: {type(err).__name__}: {err}") from None


def comparable(settings: dict) -> dict:
    """A run's settings as result.json keeps them (JSON values), without HOW_RUN."""
    return {key: json.loads(json.dumps(value)) for key, value in settings.items() if key not in HOW_RUN}


def read_json(path: str, what: str, keys: tuple[str, ...] = ()) -> dict:
    """A JSON file the benchmark keeps (`what` it should be), with `keys`; anything else is refused in one line
    that names the file and what it should have been."""
    try:
        with open(path) as f:
            data = json.load(f)
    except ValueError as err:
        raise UsageError(f"{path} is not valid JSON ({err}): a corrupt {what}; restore or delete it") from None
    except OSError as err:
        raise UsageError(f"cannot read {path} ({what}): {err.strerror}") from None
    if not isinstance(data, dict) or not set(keys) <= set(data):
        raise UsageError(f"{path} is not a {what} (it lacks {', '.join(k for k in keys if k not in data) or keys})")
    return data


def read_result(path: str) -> dict:
    """A kept result.json, checked to be one a script of this project wrote."""
    return read_json(path, "result.json of this project's scripts", ("curve", "final", "args"))


def difference(planned: dict, kept: dict, limit: int = 3) -> str:
    """The settings in which `kept` differs from `planned`, in one line ("" if none)."""
    missing = object()
    changed = []
    for key in sorted(set(planned) | set(kept)):
        now, then = planned.get(key, missing), kept.get(key, missing)
        if now is missing:
            changed.append(f"--{key.replace('_', '-')} {then} (no longer a flag)")
        elif then is missing:
            changed.append(f"--{key.replace('_', '-')} (not a flag then)")
        elif now != then:
            changed.append(f"--{key.replace('_', '-')} {then} (now {now})")
    more = f" and {len(changed) - limit} more" if len(changed) > limit else ""
    return ", ".join(changed[:limit]) + more


def staleness(job: Job, kept: dict, accept_code_changes: bool = False) -> str:
    """Why a kept result (or a checkpoint's arguments, `kept["args"]`) is not what this job would make today, in
    one line; "" when it is. Settings always count; the code (the script's and common/'s fingerprints) unless
    accepted (a change that leaves the numbers as they were, flags it added at their defaults included)."""
    settings, code = job.planned()
    kept_settings = comparable(kept.get("args", {}))
    if accept_code_changes:  # a flag added since, at its default, belongs to the accepted change of the code
        path = os.path.join(job.scripts_dir, job.script)
        defaults = comparable(vars(script_args(path, code["script_sha256"])()))
        settings = {k: v for k, v in settings.items() if k in kept_settings or k not in defaults or v != defaults[k]}
    changed = difference(settings, kept_settings)
    if changed:
        return f"made with {changed}"
    made_by = kept.get("code")
    if made_by is not None and made_by.get("script") != code["script"]:
        return f"made by {made_by.get('script')}, the arm runs {code['script']}"
    if not accept_code_changes and made_by != code:
        then = "code of unknown version" if made_by is None else f"other code ({fingerprint(made_by)})"
        return f"made by {then}, now {fingerprint(code)} (--accept-code-changes if the numbers stay as they were)"
    return ""


def fingerprint(code: dict) -> str:
    return f"{code.get('script')} {code.get('script_sha256')}, common/ {code.get('common_sha256')}"


def build_grid(tasks, seeds, arms: list[Arm], budget: int, tuned: dict | None = None) -> list[Job]:
    """A job per (seed, task, arm); a training arm runs `budget` env steps. `tuned` (benchmark/tuned.json): per
    task, the settings benchmark.tune chose for each method: an arm takes those under its own name, or else those
    of its `tuned_as` (in protocol v1's tuned.json the predefined MADDPG-0 and -1 take their channel's MADDPG-3
    setting, MADDPG-0 the differentiable one's), less the flags the arm sets itself: its own win."""
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
                chosen = settings.get(task, {})
                args = [*arm.args, *without_flags(chosen.get(arm.name, chosen.get(arm.tuned_as, [])), arm.args)]
                if arm.stage1 is None:
                    args = ["--total-timesteps", str(budget), *args]
                made[arm.name] = Job(arm.name, arm.script, task, seed, args, exp_name=arm.exp_name)
            for arm in arms:
                made[arm.name].after = made.get(arm.stage1)
            jobs += made.values()
    return jobs


def without_flags(flags: list[str], taken) -> list[str]:
    """`flags` (each --flag with the values after it) less those `taken` sets too, a --no-flag counting as its
    --flag: the flags an arm gives itself win over its tuned ones."""

    def name(flag):
        return flag.split("=")[0].removeprefix("--").removeprefix("no-")

    taken = {name(flag) for flag in taken if flag.startswith("--")}
    kept, dropping = [], False
    for flag in flags:
        if flag.startswith("--"):
            dropping = name(flag) in taken
        if not dropping:
            kept.append(flag)
    return kept


def skip_finished(
    jobs: list[Job], runs_dir: str, results_dir: str, stale: str = "rerun", accept_code_changes: bool = False
) -> None:
    """Mark as skipped the jobs whose kept result is what they would make today (same script and code, same
    settings, the script's defaults and the budget included), unless a missing distillation needs the stage-1
    buffer. A stale result (made otherwise) is named in one line and run again, or with stale="refuse" the grid
    stops; a distillation of a stale stage-1 result is stale too. An unfinished run made with other settings is
    not resumed."""
    stale_jobs = []
    for job in sorted(jobs, key=lambda j: j.after is not None):  # training runs first, then their distillations
        unfinished = job.unfinished_run(runs_dir) if job.after is None else None
        why = unfinished and staleness(job, load_checkpoint(os.path.join(unfinished, "checkpoint.pt")), True)
        if why:
            job.stale_runs += (unfinished,)
            print(f"not resumed: {unfinished}: {why}")
        path = job.result_path(results_dir)
        if not os.path.isfile(path):
            continue
        why = staleness(job, read_result(path), accept_code_changes)
        if not why and job.after in stale_jobs:
            why = f"it distils a stale {job.after.name} result"
        if why:
            stale_jobs.append(job)
            print(f"stale: {path}: {why}" + ("" if stale == "refuse" else "; run again"))
            continue
        needed = any(runs_again(d, results_dir, accept_code_changes) for d in dependents_of(job, jobs))
        if not needed or has_fresh_buffer(job, runs_dir, accept_code_changes):
            job.state = "skipped"
            print(f"skip (finished): {job.task} {job.name} seed {job.seed}")
    if stale_jobs and stale == "refuse":
        raise UsageError(
            f"{len(stale_jobs)} kept results are stale (listed above): without --stale refuse they run again"
        )


def runs_again(job: Job, results_dir: str, accept_code_changes: bool) -> bool:
    """Whether a distillation has no kept result, or one made otherwise than it would be today."""
    path = job.result_path(results_dir)
    return not os.path.isfile(path) or bool(staleness(job, read_result(path), accept_code_changes))


def has_fresh_buffer(job: Job, runs_dir: str, accept_code_changes: bool) -> bool:
    """Whether the newest finished run of `job` (what its distillations read) still has its buffer and was made
    as the job would make it today."""
    run_dir = job.finished_run(runs_dir)
    if not run_dir or not has_buffer(run_dir):
        return False
    return not staleness(job, read_result(os.path.join(run_dir, "result.json")), accept_code_changes)


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
    return read_json(path, "tuned-settings file (python -m benchmark.tune --write-tuned)", ("settings",))["settings"]


def log_path(job: Job, logs_dir: str) -> str:
    return os.path.join(logs_dir, f"{job.task}__{job.name}__{job.seed}.log")
