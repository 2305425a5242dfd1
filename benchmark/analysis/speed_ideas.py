"""Two of issue #20's candidates, timed against what the scripts do, before rewriting anything for them.

1. The buffer's sample from one row-major array: today `ReplayBuffer.sample` gathers each of its seven
   fields on its own from a field-major layout; the alternative stores a transition as one row and
   gathers 1024 rows at once, then cuts the row into the Batch's fields (per-agent fields made
   contiguous, (N, B, ...), as the networks read them). Timed on a full buffer at MADDPG-0's sizes.
2. One flat parameter vector per network: today the clip, Adam's step and the soft update each walk
   the network's tensors; the alternative keeps the parameters and their gradients as views of one
   vector each, so that the three become one operator each. Timed on maddpg.py's critics and policies.

Both alternatives return the same numbers as what they replace (tests/test_benchmark.py checks it), so
the timings compare like with like. One thread, best and median of `--timings` timings.

    python -m benchmark.analysis.speed_ideas                 # spread, 1M transitions
    python -m benchmark.analysis.speed_ideas --capacity 200000
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from torch import nn, optim

import maddpg
from common.buffer import PER_AGENT, ReplayBuffer
from common.engine import BatchedMPE
from common.envs import ACTION_DIM

FIELDS = ("states", "obs", "actions", "rewards", "terminations", "next_states", "next_obs")


def filled_buffer(capacity: int, num_agents: int, obs_width: int, state_dim: int, action_dim: int, seed: int = 0):
    """A full ReplayBuffer of random transitions, added as the scripts add them."""
    rb = ReplayBuffer(capacity, num_agents, obs_width, state_dim, action_dim, seed=seed)
    rng = np.random.default_rng(seed)
    for start in range(0, capacity, 100_000):
        count = min(100_000, capacity - start)
        states, next_states = (rng.random((count, state_dim), dtype=np.float32) for _ in range(2))
        obs, next_obs = (rng.random((count, num_agents, obs_width), dtype=np.float32) for _ in range(2))
        actions = rng.random((count, num_agents, action_dim), dtype=np.float32)
        rewards, terminations = rng.random((count, num_agents), dtype=np.float32), np.zeros(count, np.float32)
        rb.add(states, obs, actions, rewards, terminations, next_states, next_obs)
    return rb


class RowMajorBuffer:
    """The same content as `rb`, one row per transition; `get(idx)` returns the fields `rb.get(idx)` does."""

    def __init__(self, rb: ReplayBuffer):
        columns, self.shapes = [], {}  # per-agent fields: their (N, ...) shape
        for name in FIELDS:
            array = rb.data[name]
            if name in PER_AGENT:  # (N, C, ...) -> (C, N * ...)
                array = np.moveaxis(array, 0, 1)
                self.shapes[name] = array.shape[1:]
            columns.append(array.reshape(len(array), -1))
        self.widths = [column.shape[1] for column in columns]
        self.rows = np.ascontiguousarray(np.concatenate(columns, axis=1))

    def get(self, idx: np.ndarray) -> dict:
        fields = dict(zip(FIELDS, torch.from_numpy(self.rows[idx]).split(self.widths, dim=1)))
        fields["terminations"] = fields["terminations"].squeeze(1)
        for name, shape in self.shapes.items():  # (B, N * ...) -> (N, B, ...), contiguous as the layers read it
            fields[name] = fields[name].reshape(len(idx), *shape).movedim(1, 0).contiguous()
        return fields


class FlatParameters:
    """A network's parameters and gradients as views of one vector each: clip, Adam and lerp in one operator."""

    def __init__(self, net: nn.Module):
        params = list(net.parameters())
        self.vector = nn.Parameter(torch.cat([p.detach().reshape(-1) for p in params]))
        self.vector.grad = torch.zeros_like(self.vector)
        offset = 0
        for p in params:
            p.data = self.vector.data[offset : offset + p.numel()].view_as(p)
            p.grad = self.vector.grad[offset : offset + p.numel()].view_as(p)
            offset += p.numel()


def per_tensor_step(net, target, optimizer, max_norm, tau):
    """What maddpg.py does after a backward pass."""
    nn.utils.clip_grad_norm_(net.parameters(), max_norm)
    optimizer.step()
    maddpg.soft_update(net, target, tau)


def flat_step(flat, target_flat, optimizer, max_norm, tau):
    nn.utils.clip_grad_norm_([flat.vector], max_norm)
    optimizer.step()
    with torch.no_grad():
        target_flat.vector.lerp_(flat.vector, tau)


def time_per_tensor(make, timings: int) -> tuple[float, float]:
    net, target = make(), make()
    for p in net.parameters():
        p.grad = torch.randn_like(p)
    optimizer = optim.Adam(net.parameters(), lr=1e-3, fused=True)
    return timed(lambda: per_tensor_step(net, target, optimizer, 0.5, 0.01), 500, timings)


def time_flat(make, timings: int) -> tuple[float, float]:
    flat, target_flat = FlatParameters(make()), FlatParameters(make())
    flat.vector.grad.normal_()
    optimizer = optim.Adam([flat.vector], lr=1e-3, fused=True)
    return timed(lambda: flat_step(flat, target_flat, optimizer, 0.5, 0.01), 500, timings)


def timed(fn, repeats: int, timings: int) -> tuple[float, float]:
    """(best, median) microseconds per call."""
    for _ in range(max(1, repeats // 10)):
        fn()
    times = []
    for _ in range(timings):
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        times.append((time.perf_counter() - start) / repeats * 1e6)
    return min(times), statistics.median(times)


def networks(env_id: str, hidden: int):
    envs = BatchedMPE(env_id, num_envs=1)
    dims = envs.num_agents, envs.obs_width, envs.state_dim, ACTION_DIM
    made = {
        "critics": lambda: maddpg.Critics(dims[0], dims[2], dims[3], hidden),
        "policies": lambda: maddpg.LocalPolicies(dims[0], dims[1], hidden, 0, "binary"),
    }
    return dims, made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env-id", default="simple_spread")
    parser.add_argument("--capacity", type=int, default=1_000_000, help="transitions in the full buffer")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--timings", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    (num_agents, obs_width, state_dim, action_dim), made = networks(args.env_id, 64)

    rb = filled_buffer(args.capacity, num_agents, obs_width, state_dim, action_dim)
    rows = RowMajorBuffer(rb)
    rng = np.random.default_rng(1)
    print(f"| {args.env_id}, batch {args.batch_size} | what the scripts do: best / median us | alternative | gain |")
    print("|---|---|---|---|")
    now = timed(lambda: rb.sample(args.batch_size), 200, args.timings)
    alt = timed(lambda: rows.get(rng.integers(0, args.capacity, args.batch_size)), 200, args.timings)
    print(
        f"| sample, {args.capacity:,} transitions | {now[0]:.0f} / {now[1]:.0f} | {alt[0]:.0f} / {alt[1]:.0f} | "
        f"{now[0] - alt[0]:.0f} us |"
    )
    for name, make in made.items():
        now, alt = time_per_tensor(make, args.timings), time_flat(make, args.timings)
        count = len(list(make().parameters()))
        print(
            f"| clip + Adam + soft update, MADDPG's {name} ({count} tensors) | {now[0]:.0f} / {now[1]:.0f} | "
            f"{alt[0]:.0f} / {alt[1]:.0f} | {now[0] - alt[0]:.0f} us |"
        )


if __name__ == "__main__":
    main()
