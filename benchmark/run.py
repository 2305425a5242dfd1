"""Run the comparison as a grid of (arm, task, seed), `--workers` at a time.

A task is an env id with its setting, named as in the run directories: simple_spread,
simple_spread-an1 (each agent sees its nearest other agent only), simple_tag-scripted (learning
predators, scripted prey), simple_push-scripted, ... (see `common.envs.task_name`).

An arm is a script with its flags, run on every task and seed. The predefined arms are the paper's
methods (--methods picks them): CTEDD-G (ctedd_global: ctedd_global.py), CTEDD-k (ctedd_distill_k{k}:
ctedd_distill.py on that CTEDD-G run, k in --bits; one stage-1 run feeds every k), MADDPG-k
(maddpg_k{k}_{channel}: maddpg.py, k in --bits, each channel of --channels for k > 0; maddpg_k0).
`--arm NAME=SCRIPT[@STAGE1][:ARGS]` (repeatable) adds one: SCRIPT a script given relative to the
repository root (a fork sits beside the script it copies, so that it imports `common`), ARGS its extra
flags as one shell-quoted string; the grid sets the task's flags, --exp-name NAME, --seed and the
budget. An arm with @STAGE1 is a distillation: it runs after, and reads (--global-run), the finished
run of arm STAGE1 (a training arm of the grid) on the same task and seed; ctedd_distill.py without
@ reads ctedd_global. NAME names the results: benchmark/results/{task}/{NAME}__{seed}.json, where
`python -m benchmark.report` finds them. With --tuned benchmark/tuned.json each arm runs the setting tuned for it
on each task; `--tuned-as NAME=METHOD` gives a fork the setting of the method it copies (its own ARGS win).

Each run is single-threaded and logs under runs/; its console output goes to benchmark/logs/. Each
finished run's result.json (learning curve, final evaluation per episode, time) is copied to
benchmark/results/{task}/, which the repository keeps: a run whose result is there is skipped, so
rerunning the grid, on this machine or a fresh one, only does what is missing. A stage-1 run's
buffer (stage 2's data, 0.3-0.7 GB) is deleted once its distillations are done (--keep-buffers
keeps it). A failed run is reported with its log path and does not stop the others (only the
distillations that need it).

    python -m benchmark.run --tasks simple_speaker_listener simple_spread-an1 --seeds 1 2 3 --workers 2
    python -m benchmark.run --tasks simple_tag --budget 500000    # self-play: the prey learns too
    python -m benchmark.run --workers 0    # print the commands only
    python -m benchmark.run --tasks simple_speaker_listener --methods --arm "no_reg=ctedd_global.py:--omega-reg 0"
    python -m benchmark.run --bits 1 --arm "cf1=ctedd_distill.py@ctedd_global:--message-bits 1 --relabel counterfactual"
    python -m benchmark.run --methods --arm mine=my_ctedd.py --tuned benchmark/tuned.json --tuned-as mine=ctedd_global
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import time
from dataclasses import replace

from benchmark.grid import (
    RESULTS_DIR,
    Arm,
    Job,
    build_grid,
    dependents_of,
    drop_buffer,
    keep_result,
    log_path,
    parse_arm,
    predefined_arms,
    read_tuned,
    skip_finished,
    workdir,
)
from common.utils import UsageError

# the channel-matters tasks first, then the paper's predator-prey and push, then the fully observed control
DEFAULT_TASKS = [
    "simple_speaker_listener",
    "simple_reference",
    "simple_spread-an1",
    "simple_tag-scripted",
    "simple_push-scripted",
    "simple_spread",
]


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
    stale: str = "rerun",
    accept_code_changes: bool = False,
) -> int:
    """Run the jobs on this machine, `workers` at a time, distillations after their stage-1 run.
    Returns the failures. Each finished run's result.json is copied to `results_dir`."""
    os.makedirs(logs_dir, exist_ok=True)
    skip_finished(jobs, runs_dir, results_dir, stale, accept_code_changes)
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


def arms_of(cli: argparse.Namespace) -> list[Arm]:
    """The predefined arms --methods picks, then the --arm ones; training arms get the grid's checkpoints and
    --cuda, distillations --cuda."""
    checkpoints = cli.checkpoint_frequency if cli.checkpoint_frequency is not None else 100_000 * (cli.backend == "ray")
    cuda = ["--cuda"] * cli.cuda
    training = ["--checkpoint-frequency", str(checkpoints), *cuda]
    arms = predefined_arms(
        cli.bits,
        cli.methods,
        cli.channels,
        training + shlex.split(cli.ctedd_args),
        training + shlex.split(cli.maddpg_args),
        cuda + shlex.split(cli.distill_args),
    )
    tuned_as = {}
    for pair in cli.tuned_as:
        name, equals, method = pair.partition("=")
        if not equals or not method or name not in [parse_arm(spec).name for spec in cli.arm]:
            raise UsageError(f"--tuned-as {pair!r}: expected ARM=METHOD, ARM an --arm of this grid")
        tuned_as[name] = method
    if tuned_as and not cli.tuned:
        raise UsageError("--tuned-as takes a method's settings from the --tuned file: give one")
    for spec in cli.arm:
        arm = parse_arm(spec)
        arm = replace(arm, tuned_as=tuned_as.get(arm.name, arm.tuned_as))
        arms.append(replace(arm, args=(*(cuda if arm.stage1 else training), *arm.args)))
    return arms


def check_tuned_as(cli: argparse.Namespace, tuned: dict) -> None:
    """Each method --tuned-as names has settings in the tuned file on every task of the grid."""
    for pair in cli.tuned_as:
        method = pair.partition("=")[2]
        missing = [task for task in cli.tasks if method not in tuned.get(task, {})]
        if missing:
            raise UsageError(f"--tuned-as {pair!r}: the tuned file has no settings of {method} on {missing[0]}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=DEFAULT_TASKS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3, 4, 5])
    parser.add_argument("--bits", nargs="+", type=int, default=[0, 1, 3], help="channel widths k")
    parser.add_argument("--budget", type=int, default=1_000_000, help="env steps per training run")
    parser.add_argument("--ctedd-args", default="", help="extra arguments for ctedd_global.py")
    parser.add_argument("--maddpg-args", default="", help="extra arguments for maddpg.py")
    parser.add_argument("--distill-args", default="", help="extra arguments for ctedd_distill.py")
    parser.add_argument(
        "--methods",
        nargs="*",
        choices=["ctedd", "maddpg"],
        default=["ctedd", "maddpg"],
        help="the predefined arms (none: only the --arm ones)",
    )
    parser.add_argument(
        "--channels", nargs="+", choices=["differentiable", "reinforced"], default=["differentiable", "reinforced"]
    )
    parser.add_argument(
        "--arm",
        action="append",
        default=[],
        metavar="NAME=SCRIPT[@STAGE1][:ARGS]",
        help="one more arm (repeatable), e.g. 'no_reg=ctedd_global.py:--omega-reg 0'",
    )
    parser.add_argument("--tuned", default=None, help="each method's tuned settings per task (benchmark/tuned.json)")
    parser.add_argument(
        "--tuned-as",
        action="append",
        default=[],
        metavar="ARM=METHOD",
        help="an --arm runs METHOD's --tuned settings on each task (its own flags win), e.g. my_ctedd=ctedd_global",
    )
    parser.add_argument("--workers", type=int, default=2, help="parallel runs; 0 prints the commands only")
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--logs-dir", default="benchmark/logs")
    parser.add_argument("--results-dir", default=RESULTS_DIR, help="where finished runs' result.json are kept")
    parser.add_argument(
        "--stale",
        choices=["rerun", "refuse"],
        default="rerun",
        help="a kept result made otherwise than the arm's command would run today: run it again, or stop",
    )
    parser.add_argument(
        "--accept-code-changes",
        action="store_true",
        help="count kept results made by other code but the same settings as finished (a change known to leave the"
        " numbers as they were)",
    )
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
        arms = arms_of(cli)
        tuned = read_tuned(cli.tuned) if cli.tuned else None
        check_tuned_as(cli, tuned or {})
        grid = build_grid(cli.tasks, cli.seeds, arms, cli.budget, tuned)
    except UsageError as err:
        raise SystemExit(f"error: {err}") from None
    if cli.workers == 0:
        for job in grid:
            print(shlex.join(job.command(cli.runs_dir)))
        raise SystemExit(0)
    try:
        if cli.backend == "ray":
            from benchmark import ray_grid

            gpus = 1.0 if cli.cuda else 0.0
            failed = ray_grid.run_grid(
                grid,
                cli.runs_dir,
                cli.logs_dir,
                cli.results_dir,
                cli.keep_buffers,
                cli.address,
                cli.cpus_per_run,
                gpus,
                cli.stale,
                cli.accept_code_changes,
            )
        else:
            failed = run_grid(
                grid,
                cli.workers,
                cli.runs_dir,
                cli.logs_dir,
                cli.results_dir,
                cli.keep_buffers,
                stale=cli.stale,
                accept_code_changes=cli.accept_code_changes,
            )
    except UsageError as err:
        raise SystemExit(f"error: {err}") from None
    print(f"{len(grid)} runs, {failed} failed")
    raise SystemExit(1 if failed else 0)
