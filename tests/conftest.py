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
    import glob, os, sys, time
    argv = sys.argv[1:]
    def arg(name, default=None):
        return argv[argv.index(name) + 1] if name in argv else default
    script = os.path.basename(__file__)
    exp, seed = arg("--exp-name"), arg("--seed")
    with open("events.txt", "a") as f:
        f.write(f"start {script} {exp} {seed} {arg('--global-run', '')} {time.time()}\\n")
    if os.environ.get("FAIL") == f"{script}:{seed}":
        sys.exit(1)
    time.sleep(0.3)
    if arg("--global-run"):
        assert glob.glob(os.path.join(arg("--global-run"), "*.cleanrl_model"))  # a finished stage-1 run
        env = os.path.basename(arg("--global-run")).split("__")[0]
        run_dir = f"runs/{env}__{exp}__k{arg('--message-bits')}__{seed}__{time.time_ns()}"
    else:
        task = arg("--env-id") + ("-scripted" if arg("--opponents") == "scripted" else "")
        run_dir = f"runs/{task}__{exp}__{seed}__{time.time_ns()}"
    os.makedirs(run_dir)
    open(os.path.join(run_dir, f"{exp}.cleanrl_model"), "w").close()
    with open(os.path.join(run_dir, "result.json"), "w") as f:
        f.write('{"run": "%s"}' % run_dir)
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
    monkeypatch.chdir(tmp_path)
    return tmp_path
