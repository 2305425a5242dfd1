import subprocess
import sys
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


def assert_one_line_error(result: subprocess.CompletedProcess, reason: str) -> None:
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1 and reason in result.stderr and "Traceback" not in result.stderr


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path
