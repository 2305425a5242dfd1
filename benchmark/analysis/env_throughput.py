"""Env steps per second with random forces: the batched engine at several B next to mpe2.

mpe2 steps one world at a time (its parallel_env, silenced as in common.envs); the engine
(common.engine.BatchedMPE) steps B worlds at once. Auto-resets every 25 steps are included.

    python -m benchmark.analysis.env_throughput --steps 200000
"""

import argparse
import time

import numpy as np

from common.engine import make_envs
from common.envs import EPISODE_LENGTH, force_to_mpe_action, parse_task, silenced_parallel_env

TASKS = [
    "simple_spread",
    "simple_spread-an1",
    "simple_tag",
    "simple_tag-scripted",
    "simple_push",
    "simple_push-scripted",
    "simple_adversary",
    "simple_speaker_listener",
    "simple_reference",
]
NUM_ENVS = (1, 16, 64, 1024)


def mpe2_sps(env_id: str, steps: int) -> float:
    """mpe2's own parallel_env, every learning and scripted agent acting at random."""
    env = silenced_parallel_env(env_id)
    sizes = {name: env.action_space(name).shape[0] for name in env.possible_agents}
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    start = time.perf_counter()
    for step in range(steps):
        forces = force_to_mpe_action(rng.uniform(-1, 1, (len(sizes), 2)))
        env.step({name: f[: sizes[name]] for name, f in zip(sizes, forces)})
        if (step + 1) % EPISODE_LENGTH == 0:
            env.reset()
    return steps / (time.perf_counter() - start)


def engine_sps(task: str, num_envs: int, steps: int) -> float:
    envs = make_envs(parse_task(task), num_envs, seed=0)
    forces = np.random.default_rng(0).uniform(-1, 1, (num_envs, envs.num_agents, 2))
    envs.reset()
    batches = max(steps // num_envs, 4 * EPISODE_LENGTH)
    start = time.perf_counter()
    for _ in range(batches):
        *_, info = envs.step(forces)
        if "episode" in info:
            envs.reset_done()
    return batches * num_envs / (time.perf_counter() - start)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200_000, help="env steps per measurement (mpe2: a tenth)")
    parser.add_argument("--tasks", nargs="+", default=TASKS)
    cli = parser.parse_args()
    print("| task | mpe2 | " + " | ".join(f"engine B={b}" for b in NUM_ENVS) + " |")
    print("|---|---|" + "---|" * len(NUM_ENVS))
    for task in cli.tasks:
        env_id = parse_task(task)["env_id"]
        cells = [mpe2_sps(env_id, cli.steps // 10)] + [engine_sps(task, b, cli.steps) for b in NUM_ENVS]
        print(f"| {task} | " + " | ".join(f"{c / 1000:.0f}k" for c in cells) + " |")
