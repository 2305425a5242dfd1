"""Reference returns from hand-written controllers: the range a learner must cover.

Every task: random forces, and a full-information controller that reads the world (spread: each
agent to its landmark under the assignment of least total distance; push against the scripted
adversary: the good agent straight to the goal; the communication tasks: each mover straight to its
goal; tag against the scripted prey: the predators plan with the world's model, see `planned_tag`,
since learned predators beat the plain chase, kept as "chase", two- to three-fold). The communication
tasks also get the controllers between: no message (the mover heads for the landmarks' centroid) and
1 bit (a fixed 2-way split of the goals: landmark 0, or the midpoint of 1 and 2). All steer with one
PD law. These anchor the benchmark's normalised score: 0 = random forces, 1 = full information.

    python -m benchmark.reference_returns --episodes 1000 --write benchmark/results/references.json
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np

from common.engine import BatchedMPE
from common.envs import EPISODE_LENGTH, MPEEnv, parse_task

COMMUNICATION_TASKS = ("simple_speaker_listener", "simple_reference")
TASKS = (*COMMUNICATION_TASKS, "simple_spread-an1", "simple_tag-scripted", "simple_push-scripted", "simple_spread")
CONTROLLERS = ("random", "no message", "1 bit", "chase", "full information")
GAIN, DAMPING = 8.0, 2.0  # PD steering: force = clip(GAIN * (target - position) - DAMPING * velocity)
PLAN_HORIZON, PLAN_DIRECTIONS = 5, 8  # tag's planner: steps looked ahead; full-force moves besides the chase
PLAN_EPISODES = 50  # tag's planner: episodes planned at once (each simulates 9^3 choices: 36k engine worlds)


def steer(relative_target: np.ndarray, velocity: np.ndarray) -> np.ndarray:
    return np.clip(GAIN * relative_target - DAMPING * velocity, -1.0, 1.0)


def target(landmarks: np.ndarray, goal: int, controller: str) -> np.ndarray:
    """Where a mover heads, from the landmarks' relative positions (3, 2) and what it was told."""
    if controller == "no message":
        return landmarks.mean(0)
    if controller == "1 bit" and goal != 0:
        return landmarks[1:].mean(0)  # the bit only says "landmark 0" or "one of 1 and 2"
    return landmarks[goal]


def communication_forces(env_id: str, obs: np.ndarray, controller: str) -> np.ndarray:
    if env_id == "simple_speaker_listener":
        # speaker obs: the goal colour (3); listener obs: velocity (2), landmarks relative (3 x 2)
        goal = int(np.argmax(obs[0, :3]))
        listener = steer(target(obs[1, 2:8].reshape(3, 2), goal, controller), obs[1, :2])
        return np.stack([np.zeros(2), listener])
    # reference, agent i: velocity (2), landmarks relative (3 x 2), the colour of the *other's* goal (3)
    goals = [int(np.argmax(obs[1, 8:11])), int(np.argmax(obs[0, 8:11]))]  # agent i's goal, told by the other
    return np.stack([steer(target(obs[i, 2:8].reshape(3, 2), goals[i], controller), obs[i, :2]) for i in range(2)])


def full_information_forces(env: MPEEnv, assignment: tuple[int, ...]) -> np.ndarray:
    world = env.world
    learners = [world.agents[i] for i in env._learner_index]
    if env.env_id == "simple_spread":
        goals = [world.landmarks[j].state.p_pos for j in assignment]
    elif env.env_id == "simple_tag":  # "chase": every predator chases the (scripted) prey
        goals = [next(a for a in world.agents if not a.adversary).state.p_pos] * len(learners)
    else:  # simple_push: the good agent straight to the goal
        goals = [learners[0].goal_a.state.p_pos]
    return np.stack([steer(g - a.state.p_pos, a.state.p_vel) for a, g in zip(learners, goals)])


def chase_forces(envs: BatchedMPE) -> np.ndarray:
    """Every predator steered to the prey: forces (B, predators, 2)."""
    predators, prey = envs.scenario.adversary, ~envs.scenario.adversary
    forces = steer(envs.pos[prey][:1] - envs.pos[predators], envs.vel[predators])
    return forces.transpose(2, 0, 1)


def tiled(saved: dict, copies: int) -> dict:
    """`BatchedMPE.get_state()` with each world repeated `copies` times in a row."""
    batch_first = ("steps", "returns")
    return {
        name: value if name == "rng" else np.repeat(value, copies, axis=0 if name in batch_first else -1)
        for name, value in saved.items()
    }


def planned_tag(episodes: int, seed: int) -> np.ndarray:
    """Tag's full-information controller: the predators plan with the world's own model. Before each step, every
    joint choice of the three predators among 9 moves (chase the prey, or full force in one of 8 directions) is
    simulated PLAN_HORIZON steps ahead in the batched engine, every predator chasing after it; the choice with the
    most reward is taken (ties, when no choice catches the prey in time: the predators nearest it at the end;
    then the all-chase, the first choice). Returns each episode's summed return, episode i on seed + i."""
    returns = []
    for first in range(0, episodes, PLAN_EPISODES):
        count = min(PLAN_EPISODES, episodes - first)
        envs = BatchedMPE("simple_tag", "scripted", num_envs=count)
        envs.reset(seed=[seed + first + i for i in range(count)])
        angles = np.arange(PLAN_DIRECTIONS) * 2 * np.pi / PLAN_DIRECTIONS
        moves = np.concatenate([[[np.nan, np.nan]], np.stack([np.cos(angles), np.sin(angles)], 1)])  # nan: chase
        choices = moves[list(itertools.product(range(len(moves)), repeat=envs.num_agents))]  # (C, predators, 2)
        model = BatchedMPE("simple_tag", "scripted", num_envs=count * len(choices))
        total = np.zeros(count)
        for step in range(EPISODE_LENGTH):
            model.set_state(tiled(envs.get_state(), len(choices)))
            chase = chase_forces(model).reshape(count, len(choices), envs.num_agents, 2)
            candidates = np.where(np.isnan(choices), chase, choices)  # (episodes, C, predators, 2)
            forces, score = candidates.reshape(model.num_envs, envs.num_agents, 2), 0.0
            for _ in range(min(PLAN_HORIZON, EPISODE_LENGTH - step)):
                score = score + model.step(forces)[2].sum(1)
                forces = chase_forces(model)
            predators, prey = model.scenario.adversary, ~model.scenario.adversary
            gap = np.sqrt(np.square(model.pos[predators] - model.pos[prey][:1]).sum(1)).sum(0)
            best = (score - 1e-3 * gap).reshape(count, len(choices)).argmax(1)
            total += envs.step(candidates[np.arange(count), best])[2].sum(1)
        returns.append(total)
    return np.concatenate(returns)


def closest_assignment(env: MPEEnv) -> tuple[int, ...]:
    """Spread: the landmark each agent heads for, least total distance over all assignments."""
    agents, landmarks = env.world.agents, env.world.landmarks
    return min(
        itertools.permutations(range(len(landmarks))),
        key=lambda order: sum(np.linalg.norm(a.state.p_pos - landmarks[j].state.p_pos) for a, j in zip(agents, order)),
    )


def episode_returns(task: str, controller: str, episodes: int, seed: int = 0) -> np.ndarray:
    """Summed-over-agents return of each episode, on the seeds seed, seed + 1, ..."""
    if task == "simple_tag-scripted" and controller == "full information":
        return planned_tag(episodes, seed)
    env, rng = MPEEnv(**parse_task(task)), np.random.default_rng(seed)
    returns = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        assignment = closest_assignment(env) if env.env_id == "simple_spread" else ()
        done = False
        while not done:
            if controller == "random":
                forces = rng.uniform(-1.0, 1.0, (env.num_agents, 2))
            elif env.env_id in COMMUNICATION_TASKS:
                forces = communication_forces(env.env_id, obs, controller)
            else:
                forces = full_information_forces(env, assignment)
            obs, _, _, terminated, truncated, info = env.step(forces)
            done = terminated or truncated
        returns.append(info["episode"]["sum"])
    return np.array(returns)


def controllers_of(task: str) -> tuple[str, ...]:
    if task in COMMUNICATION_TASKS:
        return ("random", "no message", "1 bit", "full information")
    return ("random", "chase", "full information") if task == "simple_tag-scripted" else ("random", "full information")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=1000)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--write", default=None, help="also write {task: {controller: mean return}} to this JSON")
    cli = parser.parse_args()
    if cli.episodes <= 0:
        raise SystemExit("error: --episodes must be positive")
    print(f"{cli.episodes} episodes of 25 steps, seeds 0..{cli.episodes - 1}; return summed over the learning agents\n")
    print("| task | " + " | ".join(CONTROLLERS) + " |")
    print("|---|" + "---|" * len(CONTROLLERS))
    table = {}
    for task in cli.tasks:
        cells, table[task] = [], {}
        for controller in CONTROLLERS:
            if controller not in controllers_of(task):
                cells.append("")
                continue
            returns = episode_returns(task, controller, cli.episodes)
            table[task][controller] = float(returns.mean())
            cells.append(f"{returns.mean():.1f} ± {returns.std(ddof=1) / np.sqrt(len(returns)):.1f}")
        print(f"| {task} | " + " | ".join(cells) + " |")
    if cli.write:
        Path(cli.write).parent.mkdir(parents=True, exist_ok=True)
        Path(cli.write).write_text(json.dumps({"episodes": cli.episodes, "returns": table}, indent=1) + "\n")
