"""Reference returns of the communication tasks, from hand-written controllers.

The range a learner must cover: random forces; no message (the mover heads for the landmarks'
centroid); 1 bit (a fixed 2-way split of the goals: landmark 0 or the midpoint of 1 and 2);
full information (straight to the goal). Every controller steers with the same PD law on what
the agents observe; "full information" reads the goal from the agent that knows it.

    python benchmark/reference_returns.py --episodes 1000
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common.envs import MPEEnv  # noqa: E402

TASKS = ("simple_speaker_listener", "simple_reference")
CONTROLLERS = ("random", "no message", "1 bit", "full information")
GAIN, DAMPING = 8.0, 2.0  # PD steering: force = clip(GAIN * (target - position) - DAMPING * velocity)


def steer(relative_target: np.ndarray, velocity: np.ndarray) -> np.ndarray:
    return np.clip(GAIN * relative_target - DAMPING * velocity, -1.0, 1.0)


def target(landmarks: np.ndarray, goal: int, controller: str) -> np.ndarray:
    """Where a mover heads, from the landmarks' relative positions (3, 2) and what it was told."""
    if controller == "no message":
        return landmarks.mean(0)
    if controller == "1 bit" and goal != 0:
        return landmarks[1:].mean(0)  # the bit only says "landmark 0" or "one of 1 and 2"
    return landmarks[goal]


def forces(env_id: str, obs: np.ndarray, controller: str, rng) -> np.ndarray:
    if controller == "random":
        return rng.uniform(-1.0, 1.0, (len(obs), 2))
    if env_id == "simple_speaker_listener":
        # speaker obs: the goal colour (3); listener obs: velocity (2), landmarks relative (3 x 2)
        goal = int(np.argmax(obs[0, :3]))
        listener = steer(target(obs[1, 2:8].reshape(3, 2), goal, controller), obs[1, :2])
        return np.stack([np.zeros(2), listener])
    # reference, agent i: velocity (2), landmarks relative (3 x 2), the colour of the *other's* goal (3)
    goals = [int(np.argmax(obs[1, 8:11])), int(np.argmax(obs[0, 8:11]))]  # agent i's goal, told by the other
    return np.stack([steer(target(obs[i, 2:8].reshape(3, 2), goals[i], controller), obs[i, :2]) for i in range(2)])


def episode_returns(env_id: str, controller: str, episodes: int, seed: int = 0) -> np.ndarray:
    """Summed-over-agents return of each episode, on the seeds seed, seed + 1, ..."""
    env, rng = MPEEnv(env_id), np.random.default_rng(seed)
    returns = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        done = False
        while not done:
            obs, _, _, terminated, truncated, info = env.step(forces(env_id, obs, controller, rng))
            done = terminated or truncated
        returns.append(info["episode"]["sum"])
    return np.array(returns)


def reference_table(episodes: int) -> dict[str, dict[str, float]]:
    """task -> controller -> mean summed return."""
    return {task: {c: float(episode_returns(task, c, episodes).mean()) for c in CONTROLLERS} for task in TASKS}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=1000)
    cli = parser.parse_args()
    if cli.episodes <= 0:
        raise SystemExit("error: --episodes must be positive")
    print(f"{cli.episodes} episodes of 25 steps, seeds 0..{cli.episodes - 1}; return summed over both agents")
    print("(per agent: half of it; the two agents of both tasks share their reward)\n")
    print("| task | " + " | ".join(CONTROLLERS) + " |")
    print("|---|" + "---|" * len(CONTROLLERS))
    for task in TASKS:
        cells = []
        for controller in CONTROLLERS:
            returns = episode_returns(task, controller, cli.episodes)
            cells.append(f"{returns.mean():.1f} ± {returns.std(ddof=1) / np.sqrt(len(returns)):.1f}")
        print(f"| {task} | " + " | ".join(cells) + " |")
