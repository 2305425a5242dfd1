"""One joint replay buffer for all agents (the same index is the same time step for everyone).

Stores per transition: the full state s and s', every agent's (padded) observation o_i and o'_i,
actions a_i, rewards r_i, the termination flag (never truncation: the TD target bootstraps
through a time limit) and, optionally, the acting policy's means mu(s) at collection time (CTEDD's
stage 1). RecentBatch, at the end, is eq. (1)'s on-policy batch: the transitions since the last update.
`add` takes the transitions of one step of B environments at once, batch-major as the engine
returns them; what comes out is what the networks consume: per-agent fields agent-major
(N, B, ...), the rest (B, ...). Besides uniform sampling it gives the whole content in
chronological order, oldest first, also after the ring has wrapped around.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from common.utils import UsageError

FORMAT_VERSION = 3  # 3: per-agent fields agent-major; 2: the task (env id, opponents, neighbour limits)
PER_AGENT = ("obs", "actions", "rewards", "next_obs", "policy_means")  # stored (N, capacity, ...)


class Batch(NamedTuple):
    states: torch.Tensor  # (B, state_dim)
    obs: torch.Tensor  # (N, B, obs_width)
    actions: torch.Tensor  # (N, B, action_dim)
    rewards: torch.Tensor  # (N, B)
    terminations: torch.Tensor  # (B,)
    next_states: torch.Tensor  # (B, state_dim)
    next_obs: torch.Tensor  # (N, B, obs_width)
    policy_means: torch.Tensor | None  # (N, B, 2), mu(s) at collection time
    env_steps: torch.Tensor  # (B,) global env step at which each transition was collected


class ReplayBuffer:
    def __init__(
        self,
        capacity: int,
        num_agents: int,
        obs_width: int,
        state_dim: int,
        action_dim: int = 2,
        with_means: bool = False,
        device: str | torch.device = "cpu",
        seed: int | None = None,
    ):
        if capacity <= 0:
            raise UsageError(f"buffer capacity must be positive, got {capacity}")
        self.capacity = capacity
        self.device = torch.device(device)
        self.rng = np.random.default_rng(seed)
        n = num_agents
        self.data = {
            "states": np.zeros((capacity, state_dim), dtype=np.float32),
            "obs": np.zeros((n, capacity, obs_width), dtype=np.float32),
            "actions": np.zeros((n, capacity, action_dim), dtype=np.float32),
            "rewards": np.zeros((n, capacity), dtype=np.float32),
            "terminations": np.zeros(capacity, dtype=np.float32),
            "next_states": np.zeros((capacity, state_dim), dtype=np.float32),
            "next_obs": np.zeros((n, capacity, obs_width), dtype=np.float32),
        }
        if with_means:
            self.data["policy_means"] = np.zeros((n, capacity, action_dim), dtype=np.float32)
        self.pos = 0  # where the next transition goes
        self.size = 0
        self.num_added = 0  # transitions ever added; the newest was collected at env step num_added - 1

    @property
    def with_means(self) -> bool:
        return "policy_means" in self.data

    def add(self, states, obs, actions, rewards, terminations, next_states, next_obs, policy_means=None):
        """Append the transitions of B environments, batch-major: states (B, S), obs (B, N, W),
        actions (B, N, A), rewards (B, N), terminations (B,), ..., policy_means (B, N, 2)."""
        fields = dict(
            states=states,
            obs=obs,
            actions=actions,
            rewards=rewards,
            terminations=terminations,
            next_states=next_states,
            next_obs=next_obs,
        )
        if self.with_means:
            if policy_means is None:
                raise ValueError("this buffer stores the policy means: pass policy_means")
            fields["policy_means"] = policy_means
        count = len(states)
        if count > self.capacity:
            raise ValueError(f"cannot add {count} transitions to a buffer of capacity {self.capacity}")
        index = (self.pos + np.arange(count)) % self.capacity
        for name, values in fields.items():
            values = np.asarray(values)
            if name in PER_AGENT:
                self.data[name][:, index] = values.swapaxes(0, 1)
            else:
                self.data[name][index] = values
        self.pos = (self.pos + count) % self.capacity
        self.size = min(self.size + count, self.capacity)
        self.num_added += count

    def __len__(self) -> int:
        return self.size

    def chronological_indices(self) -> np.ndarray:
        """Storage indices of every stored transition, oldest first."""
        oldest = self.pos if self.size == self.capacity else 0
        return (oldest + np.arange(self.size)) % self.capacity

    def _env_steps(self, idx: np.ndarray) -> np.ndarray:
        # the transition at storage index i was the (num_added - age)-th added
        age = (self.pos - idx - 1) % self.capacity + 1
        return self.num_added - age

    def get(self, idx: np.ndarray) -> Batch:
        def tensor(name):
            return torch.from_numpy(np.take(self.data[name], idx, axis=1 if name in PER_AGENT else 0)).to(self.device)

        return Batch(
            states=tensor("states"),
            obs=tensor("obs"),
            actions=tensor("actions"),
            rewards=tensor("rewards"),
            terminations=tensor("terminations"),
            next_states=tensor("next_states"),
            next_obs=tensor("next_obs"),
            policy_means=tensor("policy_means") if self.with_means else None,
            env_steps=torch.from_numpy(self._env_steps(idx)).to(self.device),
        )

    def restore_ring(self, pos: int) -> None:
        """Put a loaded buffer (stored oldest first) back in the ring layout it had when saved, the next
        transition going to `pos`, so that uniform sampling draws the transitions it would have drawn."""
        if self.size == self.capacity:
            for name, array in self.data.items():
                array[:] = np.roll(array, pos, axis=1 if name in PER_AGENT else 0)
        self.pos = pos

    def sample(self, batch_size: int) -> Batch:
        """Uniform sample with replacement."""
        return self.get(self.rng.integers(0, self.size, size=batch_size))

    def iter_chronological(self, batch_size: int) -> Iterator[Batch]:
        """Every stored transition once, in consecutive batches, oldest first."""
        order = self.chronological_indices()
        for start in range(0, len(order), batch_size):
            yield self.get(order[start : start + batch_size])

    def writer(self, task: str) -> Callable:
        """write(file): the content, oldest first, as an .npz file (for common.utils.atomic_write)."""
        order = self.chronological_indices()
        arrays = {name: array[:, order] if name in PER_AGENT else array[order] for name, array in self.data.items()}
        arrays["meta_version"] = np.array(FORMAT_VERSION)
        arrays["meta_task"] = np.array(task)
        arrays["meta_num_added"] = np.array(self.num_added)
        return lambda f: np.savez(f, **arrays)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        task: str,
        num_agents: int,
        obs_width: int,
        state_dim: int,
        action_dim: int = 2,
        capacity: int | None = None,
        device: str | torch.device = "cpu",
        seed: int | None = None,
    ) -> ReplayBuffer:
        """Read a buffer written by `writer`; refuses files that do not fit the environment."""
        path = Path(path)
        if not path.is_file():
            raise UsageError(f"replay buffer {path} does not exist")
        try:
            with np.load(path, allow_pickle=False) as f:
                arrays = {name: f[name] for name in f.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
            raise UsageError(f"replay buffer {path} is not readable: {err}") from err
        if int(arrays.get("meta_version", -1)) != FORMAT_VERSION:
            raise UsageError(f"replay buffer {path} is not a buffer of this version of the project (format version)")
        saved_task = str(arrays["meta_task"])
        if saved_task != task:
            raise UsageError(f"replay buffer {path} was collected on {saved_task}, not {task}")
        size = len(arrays.get("states", ()))
        n = num_agents
        expected = {
            "states": (size, state_dim),
            "obs": (n, size, obs_width),
            "next_states": (size, state_dim),
            "next_obs": (n, size, obs_width),
            "actions": (n, size, action_dim),
            "rewards": (n, size),
            "terminations": (size,),
        }
        for name, shape in expected.items():
            if name not in arrays or arrays[name].shape != shape:
                got = arrays[name].shape if name in arrays else "missing"
                raise UsageError(f"replay buffer {path}: {name} has shape {got}, expected {shape}")
        with_means = "policy_means" in arrays
        buffer = cls(capacity or max(size, 1), num_agents, obs_width, state_dim, action_dim, with_means, device, seed)
        if size > buffer.capacity:
            raise UsageError(f"replay buffer {path} holds {size} transitions, more than capacity {buffer.capacity}")
        for name, array in buffer.data.items():
            if name in PER_AGENT:
                array[:, :size] = arrays[name]
            else:
                array[:size] = arrays[name]
        buffer.size = size
        buffer.pos = size % buffer.capacity
        buffer.num_added = int(arrays["meta_num_added"])
        return buffer


class RecentBatch:
    """eq. (1)'s batch B: the transitions collected since the last learning iteration, as the policy sampled
    them: states (B, S), the Gaussian samples as drawn and the means they were drawn around (N, B, 2)."""

    def __init__(self):
        self.parts = []

    def add(self, states: torch.Tensor, samples: torch.Tensor, means: torch.Tensor) -> None:
        self.parts.append((states, samples, means))

    def take(self, chunks: int) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """The batch split into `chunks` consecutive parts, one per learning iteration due now, then emptied. With
        chunks 0 (no iteration due) it returns [] and keeps the batch, which grows until an iteration takes it: before
        learning starts it gathers every transition added, so the first iteration's B holds all of them (in
        ctedd_global.py every transition since env step 0: about 25,600 at the defaults; docs/stronger.md measured
        leaving them out, which changed nothing)."""
        if not chunks:
            return []
        states, samples, means = (torch.cat(field, dim) for field, dim in zip(zip(*self.parts), (0, 1, 1)))
        self.parts = []
        return [(states[i], samples[:, i], means[:, i]) for i in np.array_split(np.arange(len(states)), chunks)]
