"""Small helpers every script needs: one-line usage errors and crash-safe file writes."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch


class UsageError(Exception):
    """Bad input from the user: the scripts print the message on one line and exit non-zero."""


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
