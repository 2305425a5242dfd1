"""python -m benchmark.run --backend ray: the same grid as Ray tasks, on this machine or a Ray cluster.

Each run is a Ray task reserving `--cpus-per-run` CPUs (and a GPU with --cuda) that runs the script
in a subprocess. A distillation takes its stage-1 task's result as an argument, so Ray starts it
only once that run has finished; a failed stage-1 run skips its distillations only. A task whose
process is killed (a signal, a lost worker) is retried by Ray, and a retried training run resumes
from its last checkpoint (`--checkpoint-frequency`). Results come back as the tasks' return values
(the run's result.json), so the driver keeps them under benchmark/results/ whatever node ran them;
the run directories themselves (models, buffers, tensorboard) stay in `--runs-dir`, which every
node must see at the same path (README, "A Ray cluster").
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess

import ray

from benchmark.grid import SCRIPTS_DIR, Job, dependents_of, drop_buffer, log_path, skip_finished, workdir


class RunKilled(Exception):
    """The run's process died from a signal: Ray retries the task (and the run resumes)."""


@ray.remote(max_retries=2, retry_exceptions=[RunKilled])
def run_task(job: Job, runs_dir: str, logs_dir: str, stage1: dict | None = None) -> dict:
    """One run in a subprocess. Returns its command, return code, run directory and result.json."""
    if stage1 is not None and stage1["returncode"] != 0:
        return {"returncode": None, "command": [], "run_dir": None, "result": None}  # its stage-1 run failed
    command = job.command(runs_dir, stage1["run_dir"] if stage1 else None)
    os.makedirs(logs_dir, exist_ok=True)
    with open(log_path(job, logs_dir), "a") as log:
        returncode = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, cwd=workdir(runs_dir)).returncode
    if returncode < 0:
        raise RunKilled(f"{shlex.join(command)} was killed by signal {-returncode}")
    run_dir = job.finished_run(runs_dir)
    result_file = os.path.join(run_dir, "result.json") if run_dir and returncode == 0 else ""
    result = json.loads(open(result_file).read()) if os.path.isfile(result_file) else None
    return {"returncode": returncode, "command": command, "run_dir": run_dir, "result": result}


def run_grid(
    jobs: list[Job],
    runs_dir: str,
    logs_dir: str,
    results_dir: str,
    keep_buffers: bool = False,
    address: str | None = None,
    cpus_per_run: float = 1.0,
    gpus_per_run: float = 0.0,
    stale: str = "rerun",
    accept_code_changes: bool = False,
) -> int:
    """Submit every job as a Ray task, distillations depending on their stage-1 task; returns the failures."""
    runs_dir, logs_dir = os.path.abspath(runs_dir), os.path.abspath(logs_dir)
    skip_finished(jobs, runs_dir, results_dir, stale, accept_code_changes)
    # the workers import this module and benchmark.grid from the repository, at the same path on every node
    runtime_env = {"env_vars": {"PYTHONPATH": SCRIPTS_DIR}}
    if address:
        ray.init(address=address, runtime_env=runtime_env, log_to_driver=False)
    else:
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, runtime_env=runtime_env, log_to_driver=False)
    refs = {}
    for job in jobs:
        if job.state == "skipped":
            continue
        task = run_task.options(num_cpus=cpus_per_run, num_gpus=gpus_per_run)
        stage1 = job.after and (
            refs.get(id(job.after)) or {"returncode": 0, "run_dir": job.after.finished_run(runs_dir)}
        )
        refs[id(job)] = task.remote(job, runs_dir, logs_dir, stage1 or None)
        job.state = "running"
        print(f"submitted: {job.task} {job.name} {' '.join(job.args)} seed {job.seed}")
    failures = 0
    pending = {ref: job for job in jobs if (ref := refs.get(id(job)))}
    while pending:
        (ready,), _ = ray.wait(list(pending), num_returns=1)
        job = pending.pop(ready)
        try:
            outcome = ray.get(ready)
        except ray.exceptions.RayError as err:
            outcome = {"returncode": -1, "command": [], "error": str(err).splitlines()[0]}
        if outcome["returncode"] is None:
            job.state = "failed"
            print(f"not run: {job.task} {job.name} seed {job.seed} (its stage-1 run failed)")
        elif outcome["returncode"] != 0:
            job.state = "failed"
            print(f"FAILED: {shlex.join(outcome['command']) or outcome.get('error')}\n  log: {log_path(job, logs_dir)}")
        else:
            job.state = "done"
            if outcome["result"] is not None:
                path = job.result_path(results_dir)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "w") as f:
                    json.dump(outcome["result"], f, indent=1)
            print(f"done: {job.task} {job.name} seed {job.seed}")
        failures += job.state == "failed"
        for stage1 in [job, job.after]:
            over = stage1 and all(d.state in ("done", "skipped", "failed") for d in dependents_of(stage1, jobs))
            if stage1 and stage1.state in ("done", "skipped") and over and not keep_buffers:
                drop_buffer(stage1.finished_run(runs_dir))
    ray.shutdown()
    return failures
