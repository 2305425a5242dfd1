"""Env steps per second with random actions: this project's MPEEnv vs mpe2's parallel_env.

python benchmark/env_throughput.py --steps 20000
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common.envs import ENV_MODULES, EPISODE_LENGTH, MPEEnv  # noqa: E402


def raw_parallel_env_sps(env_id: str, steps: int) -> float:
    env = ENV_MODULES[env_id].parallel_env(continuous_actions=True, max_cycles=EPISODE_LENGTH)
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    start = time.perf_counter()
    for _ in range(steps):
        actions = {agent: rng.random(5, dtype=np.float32) for agent in env.agents}
        _, _, terminations, truncations, _ = env.step(actions)
        if any(terminations.values()) or any(truncations.values()):
            env.reset()
    return steps / (time.perf_counter() - start)


def layer_sps(env_id: str, steps: int) -> float:
    env = MPEEnv(env_id)
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    start = time.perf_counter()
    for _ in range(steps):
        *_, terminated, truncated, _ = env.step(rng.uniform(-1, 1, (env.num_agents, 2)))
        if terminated or truncated:
            env.reset()
    return steps / (time.perf_counter() - start)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--env-ids", nargs="+", default=["simple_push", "simple_tag", "simple_spread"])
    cli = parser.parse_args()
    print("| env | mpe2 parallel_env steps/s | MPEEnv steps/s | ratio |")
    print("|---|---|---|---|")
    for env_id in cli.env_ids:
        raw, ours = raw_parallel_env_sps(env_id, cli.steps), layer_sps(env_id, cli.steps)
        print(f"| {env_id} | {raw:.0f} | {ours:.0f} | {ours / raw:.2f}x |")
