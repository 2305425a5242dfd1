"""python -m benchmark.run --backend ray, on a real local Ray started by each test; and --track offline."""

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from conftest import TINY, run_module, run_script

from benchmark import grid, ray_grid, run

TRAIN = TINY[TINY.index("--learning-starts") :]  # TINY without its budget: the grid sets it
DISTILL = ["--batch-size", "64", "--iters-per-batch", "2", "--eval-episodes", "2", "--eval-frequency", "300"]


@pytest.fixture(autouse=True)
def workers_at_normal_priority(monkeypatch):
    """Ray runs its workers at nice 15: beside other work on the machine (a grid, CI's neighbours) the tests' runs
    would wait minutes for a core. The Ray each test starts reads this from the environment."""
    monkeypatch.setenv("RAY_worker_niceness", "0")


def tiny_grid(seeds=(1, 2)):
    """Two methods (CTEDD: stage 1 and CTEDD-1; MADDPG-1), a few hundred steps each."""
    return grid.build_grid(
        ["simple_spread"],
        list(seeds),
        grid.predefined_arms([1], ctedd_args=TRAIN, maddpg_args=TRAIN, distill_args=DISTILL),
        600,
    )


def test_the_ray_backend_runs_the_grid_the_local_backend_runs(tmp_path, monkeypatch):
    finals = {}
    for backend in ("local", "ray"):
        root = tmp_path / backend
        root.mkdir()
        monkeypatch.chdir(root)
        if backend == "local":
            failures = run.run_grid(tiny_grid(), 2, "runs", "logs", "results", poll_seconds=0.2)
        else:
            failures = ray_grid.run_grid(tiny_grid(), "runs", "logs", "results")
        assert failures == 0
        runs = sorted(d.name.rsplit("__", 1)[0] for d in (root / "runs").iterdir())  # without the start time
        results = {
            p.relative_to(root / "results"): json.loads(p.read_text()) for p in (root / "results").rglob("*.json")
        }
        finals[backend] = runs, {name: r["final"]["sum"] for name, r in results.items()}
    assert finals["ray"] == finals["local"]  # the same run directories and the same final results
    runs, results = finals["ray"]
    assert len(runs) == 6 and len(results) == 6


def test_a_distillation_waits_for_its_stage1_task_and_a_failed_stage1_skips_only_its_own(fake_scripts, monkeypatch):
    monkeypatch.setenv("FAIL", "ctedd_global.py:2")
    jobs = grid.build_grid(["simple_tag-scripted"], [1, 2], grid.predefined_arms([1, 3]), 5000)
    assert ray_grid.run_grid(jobs, "runs", "logs", "results") == 3  # seed 2's stage 1 and its two distillations
    events = [line.split() for line in (fake_scripts / "events.txt").read_text().splitlines()]
    ends = {e[3]: float(e[5]) for e in events if e[0] == "end" and e[1] == "ctedd_global.py"}
    distillations = [e for e in events if e[0] == "start" and e[1] == "ctedd_distill.py"]
    assert [e[3] for e in distillations] == ["1", "1"]  # seed 2's never started
    assert all(float(e[5]) >= ends["1"] for e in distillations)  # after their stage-1 run ended
    finished = sorted(e[1] + ":" + e[3] for e in events if e[0] == "end")
    assert finished.count("maddpg.py:2") == 2  # the other runs of seed 2 went on


def kill_once_checkpointed(workdir: Path, killed: list, stop: threading.Event) -> None:
    """Kill (SIGKILL) the stage-1 process running in `workdir` once it has written a checkpoint. No deadline:
    on a loaded machine Ray and the script may take minutes to get there; `stop` ends the watch."""
    while not stop.is_set() and not killed:
        if list(workdir.glob("runs/*/checkpoint.pt")):
            for pid in os.listdir("/proc"):
                try:
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                    here = os.readlink(f"/proc/{pid}/cwd") == str(workdir)
                except (OSError, ValueError):
                    continue
                if here and b"ctedd_global.py" in cmdline:
                    os.kill(int(pid), signal.SIGKILL)
                    killed.append(int(pid))
        time.sleep(0.05)


def test_a_killed_run_is_retried_and_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    arms = grid.predefined_arms([], ["ctedd"], ctedd_args=["--checkpoint-frequency", "2000", *TRAIN])
    jobs = grid.build_grid(["simple_push"], [1], arms, 40_000)
    killed, stop = [], threading.Event()
    killer = threading.Thread(target=kill_once_checkpointed, args=(tmp_path, killed, stop))
    killer.start()
    try:
        assert ray_grid.run_grid(jobs, "runs", "logs", "results") == 0
    finally:
        stop.set()
        killer.join()
    assert killed, "the run ended before it could be killed"
    log = (tmp_path / "logs" / "simple_push__ctedd_global__1.log").read_text()
    assert "resumed runs/simple_push__ctedd_global__1__" in log  # the retry went on from the checkpoint
    (run_dir,) = (tmp_path / "runs").iterdir()  # in the same run directory
    result = json.loads((tmp_path / "results" / "simple_push" / "ctedd_global__1.json").read_text())
    steps = [step for step, _ in result["curve"]]
    assert steps[0] == 300 and steps[-1] == 40_000  # the curve holds the evaluations of both attempts
    assert not (run_dir / "buffer.npz").exists()  # no distillation needs it: dropped


def test_track_logs_to_weights_and_biases_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    result = run_script("maddpg.py", "--env-id", "simple_spread", *TINY, "--track", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (run_file,) = tmp_path.glob("wandb/offline-run-*/run-*.wandb")
    content = run_file.read_bytes()
    assert b"eval/episodic_return" in content and b"charts/episodic_return" in content  # tensorboard's scalars
    assert b"hyperparameters" in content or b"learning_rate" in content  # and the run's configuration


@pytest.mark.parametrize("runs_dir", ["elsewhere", "runs/inner"])
def test_the_runs_directory_must_be_named_runs(runs_dir, tmp_path):
    result = run_module("benchmark.run", "--runs-dir", runs_dir, "--workers", "1", cwd=tmp_path)
    assert result.returncode != 0 and "--runs-dir must be a directory named runs" in result.stderr
