import json
import os
import shlex
import subprocess
import sys

import torch
from conftest import ROOT, TINY

from common import numerics as numerics_module
from common.numerics import PINS, VARIABLES, numerics, recipe

# train with the tests' tiny settings in a fresh process, then print that process's numerics()
TRAIN = (
    "import json, sys, tyro, ctedd_global; from common.numerics import numerics; "
    "ctedd_global.main(tyro.cli(ctedd_global.Args, args=sys.argv[1:])); print(json.dumps(numerics()))"
)


def train(tmp_path, name: str, pins: dict) -> tuple[dict, list]:
    """A tiny ctedd_global run in a new process under `pins` (and no other pinning variable): its numerics()
    and its curve, read back from result.json at full precision."""
    env = {key: value for key, value in os.environ.items() if key not in VARIABLES}
    env.update(pins, PYTHONPATH=str(ROOT))
    cwd = tmp_path / name
    cwd.mkdir()
    args = [*TINY, "--env-id", "simple_speaker_listener", "--seed", "101", "--no-save-model"]
    done = subprocess.run(
        [sys.executable, "-c", TRAIN, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads(done.stdout.splitlines()[-1])
    (result_file,) = cwd.glob("runs/*/result.json")
    return record, json.loads(result_file.read_text())["curve"]


def test_numerics_reports_the_variables_as_set_at_call_time(monkeypatch):
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert numerics()["env"] == dict.fromkeys(VARIABLES)
    monkeypatch.setenv("MKL_CBWR", "COMPATIBLE")
    monkeypatch.setenv("NPY_DISABLE_CPU_FEATURES", "X86_V4 AVX512_ICL AVX512_SPR")
    env = numerics()["env"]
    assert env["MKL_CBWR"] == "COMPATIBLE" and env["NPY_DISABLE_CPU_FEATURES"] == "X86_V4 AVX512_ICL AVX512_SPR"
    assert env["ATEN_CPU_CAPABILITY"] is None


def test_numerics_is_a_json_record_of_this_process():
    record = json.loads(json.dumps(numerics()))
    assert record["aten_capability"] == torch.backends.cpu.get_cpu_capability()
    assert record["torch"] == torch.__version__ and record["threads"] == torch.get_num_threads()
    assert record["numpy_simd"] and all(isinstance(target, str) for target in record["numpy_simd"])


def test_numerics_never_raises(monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("unavailable")

    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", fail)
    monkeypatch.setattr(numerics_module, "_cpu_model", fail)
    record = numerics()
    assert record["aten_capability"] is None and record["cpu"] is None


def test_the_recipes_are_the_pins_as_shell_assignments():
    for name, pins in PINS.items():
        assert dict(word.split("=", 1) for word in shlex.split(recipe(name))) == pins
        assert set(pins) <= set(VARIABLES)  # what is pinned is recorded


def test_the_x86_pin_reaches_every_library_and_gives_the_same_numbers_twice(tmp_path):
    """Under the universal pin a fresh process runs ATen's default kernels, numpy's baseline and MKL's
    COMPATIBLE branch, says so, and repeats its numbers to the last bit; and the pin does change the
    arithmetic (torch.randn's vectorised path) wherever the unpinned process has a vectorised capability."""
    from numpy._core._multiarray_umath import __cpu_baseline__

    record, curve = train(tmp_path, "pinned", PINS["x86"])
    assert record["aten_capability"] == "DEFAULT"
    assert record["numpy_simd"] == list(__cpu_baseline__)
    assert {name: record["env"][name] for name in PINS["x86"]} == PINS["x86"]
    assert train(tmp_path, "again", PINS["x86"])[1] == curve
    unpinned, unpinned_curve = train(tmp_path, "unpinned", {})
    if unpinned["aten_capability"] != "DEFAULT":
        assert unpinned_curve != curve
