"""Which numerical code path this process runs on, and the settings that pin it (docs/reproducibility.md).

A seed repeats its numbers only where the float arithmetic takes the same path, which depends on the CPU through
MKL's matrix products (MKL_CBWR: on a non-Intel CPU only COMPATIBLE and AUTO act), ATen's vectorised kernels
(ATEN_CPU_CAPABILITY, lower case: torch.randn, exp, tanh, reductions, fused Adam), numpy's SIMD dispatch and glibc's
libm variants (the last two change single ulps, no run measured so far). Each is read once, when its library starts:
set them in the shell before python. PINS holds the two recipes, numerics() the path of this process.
"""

import os
import platform
import re
import shlex

import numpy as np
import torch

VARIABLES = ("MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS", "ATEN_CPU_CAPABILITY", "NPY_DISABLE_CPU_FEATURES", "GLIBC_TUNABLES")
PINS = {  # same numbers as any machine with AVX2 (Intel or AMD); same numbers on any x86-64 (slower)
    "avx2": {
        "MKL_CBWR": "COMPATIBLE",
        "ATEN_CPU_CAPABILITY": "avx2",
        "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",
    },
    "x86": {
        "MKL_CBWR": "COMPATIBLE",
        "ATEN_CPU_CAPABILITY": "default",
        "NPY_DISABLE_CPU_FEATURES": "X86_V3 X86_V4 AVX512_ICL AVX512_SPR",
        "GLIBC_TUNABLES": "glibc.cpu.hwcaps=-FMA,-FMA4",
    },
}


def recipe(name: str) -> str:
    """The pin as shell assignments to put before the command: recipe('x86') + ' python ctedd_global.py ...'."""
    return " ".join(f"{key}={shlex.quote(value)}" for key, value in PINS[name].items())


def _guarded(read, fallback=None):
    try:
        return read()
    except Exception:  # a record of the path, never a reason for a run to fail
        return fallback


def _numpy_simd() -> list[str]:
    from numpy._core._multiarray_umath import __cpu_baseline__, __cpu_dispatch__, __cpu_features__

    return [*__cpu_baseline__, *(target for target in __cpu_dispatch__ if __cpu_features__.get(target))]


def _cpu_model() -> str | None:
    with open("/proc/cpuinfo") as f:
        return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), None)


def numerics() -> dict:
    """The numerical path of this process: the pinning variables as set (None: unset), ATen's CPU capability in use,
    numpy's SIMD targets in use, the library versions, torch's threads and the CPU. Never raises."""
    return {
        "env": {name: os.environ.get(name) for name in VARIABLES},
        "aten_capability": _guarded(torch.backends.cpu.get_cpu_capability),
        "numpy_simd": _guarded(_numpy_simd),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "mkl": _guarded(lambda: re.search(r"Math Kernel Library Version ([\d.]+)", torch.__config__.show())[1]),
        "libc": _guarded(lambda: " ".join(platform.libc_ver())),
        "threads": _guarded(torch.get_num_threads),
        "cpu": _guarded(_cpu_model),
    }
