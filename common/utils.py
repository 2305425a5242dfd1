"""Small helpers every script needs: one-line usage errors and crash-safe file writes."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch


class UsageError(Exception):
    """Bad input from the user: the scripts print the message on one line and exit non-zero."""


def check_counts(args, positive: tuple[str, ...], non_negative: tuple[str, ...]) -> None:
    """Refuse, with a one-line reason, an argument that must be positive or must not be negative."""
    for name in positive:
        if getattr(args, name) <= 0:
            raise UsageError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    for name in non_negative:
        if getattr(args, name) < 0:
            raise UsageError(f"--{name.replace('_', '-')} must not be negative, got {getattr(args, name)}")


def atomic_write(path: str | os.PathLike, write: Callable) -> None:
    """Call write(file) on a temporary file beside `path`, then rename it over `path`.

    A crash while writing leaves the previous file intact, never a half-written one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(path: str | os.PathLike, checkpoint: dict) -> None:
    atomic_write(path, lambda f: torch.save(checkpoint, f))


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Load a checkpoint written by `save_checkpoint` (weights and plain values only)."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise UsageError(f"checkpoint {path} is not readable: {type(err).__name__}") from err
    if not isinstance(checkpoint, dict) or "args" not in checkpoint:
        raise UsageError(f"checkpoint {path} is not a checkpoint of this project")
    return checkpoint


def multiples_in(start: int, stop: int, every: int, first: int = 0) -> int:
    """How many multiples of `every` lie in [max(start, first), stop): e.g. the learning iterations due
    (one per `every` env steps from env step `first` on) while env steps start .. stop - 1 were taken."""
    start = max(start, first)
    return max(0, -(-stop // every) - -(-start // every))


def progress_line(
    step: int, total: int, start_step: int, start_time: float, recent_returns: list, seconds: dict
) -> str:
    """One progress line: step, mean return of the recent episodes, SPS (of this process: a resumed
    run counts from its start step), where time goes, time left."""
    elapsed = time.time() - start_time
    sps = (step - start_step) / max(elapsed, 1e-9)
    spent = sum(seconds.values()) or 1.0
    shares = " ".join(f"{name} {100 * value / spent:.0f}%" for name, value in seconds.items())
    recent = f"{np.mean(recent_returns):.2f}" if recent_returns else "n/a"
    left = (total - step) / max(sps, 1e-9)
    return (
        f"step {step}/{total} | return (last {len(recent_returns)} ep) {recent} | SPS {sps:.0f} | {shares} "
        f"| left {left / 60:.1f} min"
    )


def timing_line(steps: int, start_time: float, seconds: dict) -> str:
    """The end-of-run summary: seconds spent per part of the loop, and SPS over the whole run."""
    parts = ", ".join(f"{name} {value:.0f} s" for name, value in seconds.items())
    return f"time: {parts}, SPS {steps / max(time.time() - start_time, 1e-9):.0f}"
