"""Small helpers every script needs: one-line usage errors and crash-safe file writes."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import tempfile
import time
import typing
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch


class UsageError(Exception):
    """Bad input from the user: the scripts print the message on one line and exit non-zero."""


INF = float("inf")
# every number any script takes, by its meaning: (lowest, highest, lowest allowed, highest allowed); every number
# must also be finite. check_numbers refuses a numeric argument missing here, so a new flag cannot skip it.
RANGES = {
    "seed": (0, 2**32 - 1, True, True),  # numpy's seeds
    "threads": (1, 1024, True, True),
    "total_timesteps": (1, INF, True, False),
    "num_envs": (1, INF, True, False),
    "buffer_size": (1, INF, True, False),
    "batch_size": (1, INF, True, False),
    "learning_starts": (0, INF, True, False),
    "train_frequency": (1, INF, True, False),
    "checkpoint_frequency": (0, INF, True, False),
    "eval_frequency": (1, INF, True, False),
    "eval_episodes": (1, INF, True, False),
    "agent_neighbors": (1, INF, True, False),  # at most what the task has: checked where the task is built
    "landmark_neighbors": (1, INF, True, False),
    "learning_rate": (0, 1, False, True),
    "critic_learning_rate": (0, 1, False, True),
    "tau": (0, 1, False, True),
    "gamma": (0, 1, True, True),
    "max_grad_norm": (0, INF, False, False),
    "actor_reg": (0, INF, True, False),
    "hidden_dim": (1, 65536, True, True),
    "message_bits": (0, 64, True, True),
    "exploration_noise": (0, INF, True, False),
    "alpha": (0, INF, True, False),
    "target_entropy": (-INF, INF, False, False),
    "omega_reg": (0, INF, True, False),
    "fixed_sigma": (0, INF, False, False),
    "iters_per_batch": (1, INF, True, False),
    "passes": (1, INF, True, False),
    "dagger_rounds": (0, INF, True, False),
    "dagger_steps": (25, INF, True, False),  # one episode in at least one environment
    "dagger_updates": (1, INF, True, False),
    "critic_weight": (0, INF, True, False),
    # not in the paper: TD3's fixes, the critics' width, the learning-rate schedule
    "critic_hidden_dim": (1, 65536, True, True),
    "target_noise": (0, INF, True, False),  # 0: no target policy smoothing
    "policy_delay": (1, INF, True, False),
    "lr_final_fraction": (0, 1, True, True),  # 0: down to no step at all; above 1 it would grow
}


def numeric_fields(args) -> list[str]:
    """The names of the dataclass `args`' int and float fields (None-able ones included, bools not)."""
    names = []
    for field in dataclasses.fields(args):
        kinds = field.type.split(" | ") if isinstance(field.type, str) else typing.get_args(field.type) or [field.type]
        if any(kind in (int, float, "int", "float") for kind in kinds):
            names.append(field.name)
    return names


def check_numbers(args) -> None:
    """Refuse, with a one-line reason naming the flag and its range, any numeric argument out of RANGES."""
    for name in numeric_fields(args):
        if name not in RANGES:
            raise TypeError(f"numeric argument {name} has no range in common.utils.RANGES")
        value, (low, high, low_in, high_in) = getattr(args, name), RANGES[name]
        if value is None:
            continue
        inside = math.isfinite(value) and (low < value or low_in and value == low)
        inside = inside and (value < high or high_in and value == high)
        if not inside:
            interval = f"{'[' if low_in else '('}{low!s:.12}, {high!s:.12}{']' if high_in else ')'}"
            raise UsageError(f"--{name.replace('_', '-')} must be a finite number in {interval}, got {value}")


def atomic_write(path: str | os.PathLike, write: Callable) -> None:
    """Call write(file) on a temporary file beside `path`, then rename it over `path`.

    A crash while writing leaves the previous file intact, never a half-written one.
    """
    atomic_write_all([(path, write)])


def atomic_write_all(files: list[tuple[str | os.PathLike, Callable]]) -> None:
    """Write every (path, write) to a temporary file beside its path, then rename them over the paths in
    order. Where a write fails (a full disk, a read-only directory) no path is touched, the temporary files
    are removed and the error names the path, in one line."""
    written = []
    try:
        for path, write in files:
            path = Path(path)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
                written.append((tmp, path))
                with os.fdopen(fd, "wb") as f:
                    write(f)
                    f.flush()
                    os.fsync(f.fileno())
            except (OSError, RuntimeError) as err:  # torch.save reports a full disk as a RuntimeError
                reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err).splitlines()[0]
                raise UsageError(f"cannot write {path}: {reason}; the previous file is intact") from err
        for tmp, path in written:
            os.replace(tmp, path)
    finally:
        for tmp, _ in written:
            Path(tmp).unlink(missing_ok=True)


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


def due(global_step: int, num_envs: int, every: int, offset: int = 0, start: int = 0) -> int:
    """How many times an event scheduled every `every` env steps falls in the env steps the training loop
    just took, global_step .. global_step + num_envs - 1 (env step t, counted from 0, is the (t + 1)-th).

    One convention for every event: it falls on the env steps t >= start with t % every == offset % every
    (every 0: never). The learning iterations, offset 0: env steps 0, every, 2 * every, ... from `start` on.
    "After every `every` env steps" (evaluations, checkpoints), offset -1: the env step whose count t + 1
    reaches a multiple of `every`. The loop stepping B environments at once does what a one-environment
    loop does, batch by batch: each event falls in the batch that holds its env step."""
    if not every:
        return 0
    first, stop = max(global_step, start) - offset, global_step + num_envs - offset
    return max(0, -(-stop // every) - -(-first // every))


def iterations_due(global_step: int, num_envs: int, every: int, start: int = 0) -> range:
    """The learning iterations due in the env steps the training loop just took (`due`, offset 0), numbered from
    the run's first one: range(k, k + due(global_step, num_envs, every, start=start)), k of them before global_step.
    The number follows from the env step alone, so a resumed run numbers them as the uninterrupted one."""
    before = due(0, global_step, every, start=start)  # the env steps 0 .. global_step - 1
    return range(before, before + due(global_step, num_envs, every, start=start))


def anneal_learning_rates(modules, final_fraction: float, progress: float) -> None:
    """A linear learning-rate schedule (the scripts' --lr-final-fraction): every optimizer among `modules` gets, at
    `progress` (env steps taken over the budget; from 1 on, the floor), its initial rate times
    1 - (1 - final_fraction) progress. The initial rate is kept in the optimizer's state (`initial_lr`, as torch's
    schedulers keep it), so a resumed run goes on with the schedule. final_fraction 1: the rate itself, exactly."""
    for group in (module.param_groups[0] for module in modules if isinstance(module, torch.optim.Optimizer)):
        group["lr"] = group.setdefault("initial_lr", group["lr"]) * (1 - (1 - final_fraction) * min(progress, 1.0))


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


class Stopwatch:
    """Where a run's time goes: `with stopwatch("env"): ...` adds the block's seconds to `seconds["env"]`."""

    def __init__(self, *parts: str):
        self.seconds = dict.fromkeys(parts, 0.0)

    @contextlib.contextmanager
    def __call__(self, part: str):
        tick = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[part] += time.perf_counter() - tick


def timing_line(steps: int, start_time: float, seconds: dict) -> str:
    """The end-of-run summary: seconds spent per part of the loop, and SPS over the whole run."""
    parts = ", ".join(f"{name} {value:.0f} s" for name, value in seconds.items())
    return f"time: {parts}, SPS {steps / max(time.time() - start_time, 1e-9):.0f}"
