import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "--total-timesteps",
    "600",
    "--learning-starts",
    "200",
    "--train-frequency",
    "50",
    "--batch-size",
    "64",
    "--eval-frequency",
    "300",
    "--eval-episodes",
    "2",
    "--num-envs",
    "4",
]


def run_script(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def run_module(module: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """python -m MODULE ARGS in `cwd`, with the repository on the path as when run from its root."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", module, *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def assert_one_line_error(result: subprocess.CompletedProcess, reason: str) -> None:
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1 and reason in result.stderr and "Traceback" not in result.stderr


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


FAKE_SCRIPT = textwrap.dedent(
    """
    import dataclasses, glob, json, os, sys, time
    import tyro
    from common.runs import code_version
    @dataclasses.dataclass
    class Args:  # the flags the grid passes, with defaults as a script has them
        exp_name: str = "fake"
        seed: int = 1
        env_id: str = "simple_spread"
        opponents: str = "learn"
        agent_neighbors: int | None = None
        landmark_neighbors: int | None = None
        total_timesteps: int = 1000
        save_model: bool = False
        checkpoint_frequency: int = 0
        message_bits: int = 0
        channel: str = "differentiable"
        global_run: str | None = None
        learning_rate: float = 0.001
        alpha: float = 1.0
    if __name__ == "__main__":
        args = tyro.cli(Args)
        script = os.path.basename(__file__)
        exp, seed = args.exp_name, args.seed
        with open("events.txt", "a") as f:
            f.write(f"start {script} {exp} {seed} {args.global_run or ''} {time.time()}\\n")
        if os.environ.get("FAIL") == f"{script}:{seed}":
            sys.exit(1)
        time.sleep(0.3)
        if args.global_run:
            assert glob.glob(os.path.join(args.global_run, "*.cleanrl_model"))  # a finished stage-1 run
            task = os.path.basename(args.global_run).split("__")[0]
            args.env_id, args.opponents = task.split("-")[0], "scripted" if "-scripted" in task else "learn"
            run_dir = f"runs/{task}__{exp}__k{args.message_bits}__{seed}__{time.time_ns()}"
        else:
            task = args.env_id + ("-scripted" if args.opponents == "scripted" else "")
            run_dir = f"runs/{task}__{exp}__{seed}__{time.time_ns()}"
        os.makedirs(run_dir)
        open(os.path.join(run_dir, f"{exp}.cleanrl_model"), "w").close()
        result = {"run": run_dir, "curve": [], "final": {}, "args": vars(args), "code": code_version(__file__)}
        with open(os.path.join(run_dir, "result.json"), "w") as f:
            json.dump(result, f)
        if script == "ctedd_global.py":
            open(os.path.join(run_dir, "buffer.npz"), "w").close()
        with open("events.txt", "a") as f:
            f.write(f"end {script} {exp} {seed} {run_dir} {time.time()}\\n")
    """
)


@pytest.fixture
def fake_scripts(tmp_path, monkeypatch):
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    for name in ("ctedd_global.py", "ctedd_distill.py", "maddpg.py"):
        (scripts / name).write_text(FAKE_SCRIPT)
    from benchmark import grid

    monkeypatch.setattr(grid, "SCRIPTS_DIR", str(scripts))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the fakes import common, as the scripts beside it do
    monkeypatch.chdir(tmp_path)
    return tmp_path
