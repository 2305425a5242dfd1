"""A numpy engine that steps B MPE worlds at once, equal to mpe2 step for step.

`BatchedMPE` is `MPEEnv` (common/envs.py) for B environments: the same tasks, action convention,
silenced communication, observations, full state s, rewards and scripted opponents, but every
operation is vectorised over the environments and over entity pairs (no Python loop over either
inside a step). It reimplements, in float64 like mpe2:

- the physics of mpe2's `World.step` (mpe2/_mpe_utils/core.py): the force a_x * accel from the
  action, soft contact forces between colliding entities summed in mpe2's order, then position
  moved with the *old* velocity, damping, the force, and the speed limit;
- each scenario's reset draws (the same distributions, in the same order), rewards and
  observations (mpe2's nearest-first, zero-filled neighbour limits included).

Entity properties (size, mass, accel, max speed, who collides and moves) and the world's
constants (dt, damping, contact force and margin) are read from an mpe2 world of the task, not
copied. `tests/test_engine.py` drives the engine and mpe2 in lockstep and compares observations,
state and rewards. A reset with seed `s` draws what mpe2's `reset(seed=s)` draws (a list of
seeds seeds each environment on its own); episodes end by truncation after 25 steps (no
scenario here terminates), and `reset_done()` starts new ones where episodes ended.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from common.envs import (
    ACTION_DIM,
    EPISODE_LENGTH,
    TASK_SETTINGS,
    TEAMS,
    MPEEnv,
    scripted_prey_forces,
    scripted_push_adversary_forces,
)
from common.utils import UsageError

MPE_SENSITIVITY = 5.0  # mpe2's SimpleEnv._set_action: the force is the action times accel, 5 by default


def norm(v: np.ndarray) -> np.ndarray:
    """Euclidean norm over the coordinate axis (-2), as mpe2 computes it: sqrt(sum(square(v)))."""
    square = np.square(v)
    return np.sqrt(square[..., 0, :] + square[..., 1, :])


def nearest(relative: np.ndarray, distance: np.ndarray, count: int | None, *others: np.ndarray) -> list[np.ndarray]:
    """mpe2's neighbour limit: of the candidates (axis 1 of `relative`, (n, m, 2, B), at `distance`
    (n, m, B)), keep the `count` nearest, nearest first, and zero-fill missing slots; `others` are
    reordered alike."""
    if count is None:
        return [relative, *others]
    order = np.argsort(distance, axis=1)[:, :count, None]
    picked = [np.take_along_axis(x, order, axis=1) for x in (relative, *others)]
    n, found, _, batch = picked[0].shape
    if found < count:
        picked = [np.concatenate([x, np.zeros((n, count - found, 2, batch))], axis=1) for x in picked]
    return picked


def flat(*parts: np.ndarray) -> np.ndarray:
    """Concatenate per-agent pieces (n, ..., B) into observations (n, d, B), in mpe2's order."""
    return np.concatenate([p.reshape(len(p), -1, p.shape[-1]) for p in parts], axis=1)


def colors(table: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Rows of a colour table (C, 3) picked per environment: index (n, B) -> (n, 3, B)."""
    return table[index].transpose(0, 2, 1)


class View(NamedTuple):
    """The world after a step, as the agents see it; rewards and observations both read it.
    The environments are the last axis, coordinates the one before."""

    pos: np.ndarray  # (A, 2, B) agents
    vel: np.ndarray  # (A, 2, B)
    landmarks: np.ndarray  # (L, 2, B)
    goals: np.ndarray  # (G, B) landmark indices drawn at reset
    to_landmarks: np.ndarray  # (A, L, 2, B) landmark minus agent
    landmark_distance: np.ndarray  # (A, L, B)
    to_others: np.ndarray  # (A, A-1, 2, B) other agent minus agent, others in agent order
    other_distance: np.ndarray  # (A, A-1, B)


class Scenario:
    """The parts of an mpe2 scenario the engine needs, for B worlds at once."""

    num_goals = 0  # landmark indices drawn at reset, before any position
    # where each goal is seen, as its landmark's colour: goal column -> [(agent, first column of the colour
    # in that agent's observation)]; the full state holds every agent's observation, so it is there too
    goal_slots: dict[int, list[tuple[int, int]]] = {}
    landmark_range = 1.0  # landmarks start uniform in [-range, range]^2

    def __init__(self, world, agent_neighbors: int | None, landmark_neighbors: int | None):
        self.agent_neighbors, self.landmark_neighbors = agent_neighbors, landmark_neighbors
        self.num_agents, self.num_landmarks = len(world.agents), len(world.landmarks)
        self.adversary = np.array([bool(getattr(a, "adversary", False)) for a in world.agents])
        self.size = np.array([a.size for a in world.agents])
        self.landmark_colors = np.array([lm.color for lm in world.landmarks])
        n = self.num_agents
        # others[i] = every agent but i, in agent order (the order of mpe2's observations)
        self.others = np.array([[j for j in range(n) if j != i] for i in range(n)], dtype=int).reshape(n, n - 1)

    def draw(self, rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """mpe2's reset_world for `count` worlds, in its order: goals (G, count), agents (A, 2, count),
        landmarks (L, 2, count)."""
        goals = rng.integers(self.num_landmarks, size=(count, self.num_goals))
        agents = rng.uniform(-1.0, 1.0, (count, self.num_agents, 2))
        landmarks = rng.uniform(-self.landmark_range, self.landmark_range, (count, self.num_landmarks, 2))
        return goals.T.copy(), agents.transpose(1, 2, 0).copy(), landmarks.transpose(1, 2, 0).copy()

    def view(self, pos, vel, landmarks, goals) -> View:
        to_landmarks = landmarks[None] - pos[:, None]
        to_others = pos[self.others] - pos[:, None]
        return View(pos, vel, landmarks, goals, to_landmarks, norm(to_landmarks), to_others, norm(to_others))

    def goal_distance(self, view: View, column: int = 0) -> np.ndarray:
        """(A, B): every agent's distance to the landmark goals[column]."""
        return np.take_along_axis(view.landmark_distance, view.goals[None, column : column + 1], axis=1)[:, 0]

    def to_goal(self, view: View, agents: slice, column: int = 0) -> np.ndarray:
        """(n, 1, 2, B): the landmark goals[column] relative to each of `agents`."""
        index = view.goals[None, column : column + 1, None]
        return np.take_along_axis(view.to_landmarks[agents], index, axis=1)

    def observe(self, view: View) -> list[tuple[slice, np.ndarray, np.ndarray]]:
        """Per group of consecutive agents: (agents, full observations, partial observations),
        each (n, d, B) float64, comm slots left out."""
        raise NotImplementedError

    def rewards(self, view: View) -> np.ndarray:
        """(A, B) float64."""
        raise NotImplementedError

    def targets(self, view: View) -> dict[int, np.ndarray]:
        """The agents that must reach a landmark of their own (the MADDPG paper's measure of communication):
        agent index -> that landmark's index per environment, (B,). None here."""
        return {}


class Spread(Scenario):
    def __init__(self, world, agent_neighbors, landmark_neighbors):
        super().__init__(world, agent_neighbors, landmark_neighbors)
        self.contact_distance = (self.size[self.others] + self.size[:, None])[..., None]

    def observe(self, v):
        full = flat(v.vel, v.pos, v.to_landmarks, v.to_others)
        if self.agent_neighbors is None and self.landmark_neighbors is None:
            return [(slice(None), full, full)]
        (seen_landmarks,) = nearest(v.to_landmarks, v.landmark_distance, self.landmark_neighbors)
        (seen_agents,) = nearest(v.to_others, v.other_distance, self.agent_neighbors)
        return [(slice(None), full, flat(v.vel, v.pos, seen_landmarks, seen_agents))]

    def rewards(self, v):
        # local: -1 per other agent in contact; global: -sum over landmarks of the nearest agent's distance
        collisions = np.sum(v.other_distance < self.contact_distance, axis=1)
        coverage = -np.sum(np.min(v.landmark_distance, axis=0), axis=0)
        return coverage * 0.5 - collisions * 0.5  # mpe2's local_ratio 0.5


class Tag(Scenario):
    landmark_range = 0.9

    def __init__(self, world, agent_neighbors, landmark_neighbors):
        super().__init__(world, agent_neighbors, landmark_neighbors)
        good = ~self.adversary
        self.groups = [contiguous(np.flatnonzero(self.adversary).tolist()), contiguous(np.flatnonzero(good).tolist())]
        # per group, the good agents each member sees (their velocities are in the full observation)
        self.good_others = [
            np.array([[j for j in self.others[i] if good[j]] for i in range(self.num_agents)[rows]], dtype=int)
            for rows in self.groups
        ]
        self.other_is_good = good[self.others][:, :, None, None]
        adversaries, prey = self.groups
        self.catch_distance = (self.size[adversaries, None] + self.size[None, prey])[..., None]

    def observe(self, v):
        (seen_landmarks,) = nearest(v.to_landmarks, v.landmark_distance, self.landmark_neighbors)
        # under a neighbour limit, the velocity slot of a seen adversary is zero-filled
        good_vel = v.vel[self.others] * self.other_is_good
        seen_agents, seen_vel = nearest(v.to_others, v.other_distance, self.agent_neighbors, good_vel)
        groups = []
        for rows, good_others in zip(self.groups, self.good_others):
            own, good_vel_full = [v.vel[rows], v.pos[rows]], v.vel[good_others.reshape(-1)]
            good_vel_full = good_vel_full.reshape(len(good_others), -1, v.vel.shape[-1])
            full = flat(*own, v.to_landmarks[rows], v.to_others[rows], good_vel_full)
            seen_vel_mine = good_vel_full if self.agent_neighbors is None else seen_vel[rows]
            partial = flat(*own, seen_landmarks[rows], seen_agents[rows], seen_vel_mine)
            groups.append((rows, full, partial))
        return groups

    def rewards(self, v):
        adversaries, prey = self.groups
        caught = norm(v.pos[adversaries, None] - v.pos[None, prey]) < self.catch_distance  # (advs, prey, B)
        x = np.abs(v.pos[prey])  # the prey pays for leaving the arena, per coordinate
        bound = np.where(x < 0.9, 0.0, np.where(x < 1.0, (x - 0.9) * 10, np.minimum(np.exp(2 * x - 2), 10)))
        rewards = np.empty(v.pos[:, 0].shape)
        rewards[adversaries] = 10.0 * caught.sum((0, 1))
        rewards[prey] = -10.0 * caught.sum(0) - bound[:, 0] - bound[:, 1]
        return rewards


class Push(Scenario):
    num_goals = 1  # one landmark is the goal of both agents (agent 0 the adversary, agent 1 the good agent)

    def observe(self, v):
        batch = v.pos.shape[-1]
        color = np.full((1, 3, batch), 0.25)
        color[0, v.goals[0] + 1, np.arange(batch)] += 0.5  # the good agent's colour tells the goal
        landmark_colors = np.broadcast_to(
            self.landmark_colors[None, :, :, None], (1, *self.landmark_colors.shape, batch)
        )
        adversary, good = slice(0, 1), slice(1, 2)
        adversary_obs = flat(v.vel[adversary], v.to_landmarks[adversary], v.to_others[adversary])
        good_obs = flat(
            v.vel[good], self.to_goal(v, good), color, v.to_landmarks[good], landmark_colors, v.to_others[good]
        )
        return [(adversary, adversary_obs, adversary_obs), (good, good_obs, good_obs)]

    def rewards(self, v):
        to_goal = self.goal_distance(v)
        return np.stack([to_goal[1] - to_goal[0], -to_goal[1]])


class Adversary(Scenario):
    num_goals = 1  # the good agents know the goal landmark, the adversary (agent 0) does not

    def observe(self, v):
        (seen_landmarks,) = nearest(v.to_landmarks, v.landmark_distance, self.landmark_neighbors)
        (seen_agents,) = nearest(v.to_others, v.other_distance, self.agent_neighbors)
        adversary, good = slice(0, 1), slice(1, None)
        to_goal = self.to_goal(v, good)
        return [
            (
                adversary,
                flat(v.to_landmarks[adversary], v.to_others[adversary]),
                flat(seen_landmarks[adversary], seen_agents[adversary]),
            ),
            (
                good,
                flat(to_goal, v.to_landmarks[good], v.to_others[good]),
                flat(to_goal, seen_landmarks[good], seen_agents[good]),
            ),
        ]

    def rewards(self, v):
        to_goal = self.goal_distance(v)
        good = -np.min(to_goal[1:], axis=0) + to_goal[0]
        return np.concatenate([-to_goal[:1], np.repeat(good[None], self.num_agents - 1, axis=0)])


class SpeakerListener(Scenario):
    num_goals = 1  # the landmark the listener (agent 1) must reach; the speaker (agent 0) sees its colour
    goal_slots = {0: [(0, 0)]}

    def observe(self, v):
        speaker = colors(self.landmark_colors, v.goals)
        listener = flat(v.vel[1:], v.to_landmarks[1:])
        return [(slice(0, 1), speaker, speaker), (slice(1, 2), listener, listener)]

    def rewards(self, v):
        square = np.square(self.to_goal(v, slice(1, 2))[0, 0])
        reward = -(square[0] + square[1])  # mpe2: minus the listener's squared distance, for both agents
        return np.stack([reward, reward])

    def targets(self, v):
        return {1: v.goals[0]}  # the listener's goal


class Reference(Scenario):
    num_goals = 2  # goals[i]: the landmark agent i knows, which the *other* agent must reach
    goal_slots = {0: [(0, 8)], 1: [(1, 8)]}  # after its velocity (2) and the three landmarks (6)

    def observe(self, v):
        full = flat(v.vel, v.to_landmarks, colors(self.landmark_colors, v.goals))
        return [(slice(None), full, full)]

    def rewards(self, v):
        # agent i is paid for the other agent's distance to the landmark agent i knows
        local = -np.take_along_axis(v.landmark_distance[::-1], v.goals[:, None], axis=1)[:, 0]
        shared = (local[0] + local[1]) / 2
        return shared * 0.5 + local * 0.5  # mpe2's local_ratio 0.5

    def targets(self, v):
        return {0: v.goals[1], 1: v.goals[0]}  # each agent must reach the landmark the other one knows


SCENARIOS = {
    "simple_spread": Spread,
    "simple_tag": Tag,
    "simple_push": Push,
    "simple_adversary": Adversary,
    "simple_speaker_listener": SpeakerListener,
    "simple_reference": Reference,
}


class BatchedMPE:
    """B environments of one task, stepped together. In and out, arrays are batch-major: obs
    (B, N, obs_width) float32, state (B, state_dim) float32, forces (B, N, 2), rewards (B, N) for
    the N learning agents. Inside, the environments are the last axis, so every numpy loop runs
    over them: positions (A, 2, B)."""

    def __init__(
        self,
        env_id: str,
        opponents: str = "learn",
        agent_neighbors: int | None = None,
        landmark_neighbors: int | None = None,
        num_envs: int = 1,
        seed: int | None = None,
    ):
        if num_envs <= 0:
            raise ValueError(f"num_envs must be positive, got {num_envs}")
        # an mpe2-backed environment of the task: its names, teams and widths, and its world's properties
        reference = MPEEnv(env_id, opponents, agent_neighbors, landmark_neighbors)
        for name in ("env_id", "opponents", "task", "agents", "num_agents", "teams", "obs_dims", "obs_width"):
            setattr(self, name, getattr(reference, name))
        self.state_dim, self.num_envs = reference.state_dim, num_envs
        world = reference.world
        self.scenario = SCENARIOS[env_id](world, agent_neighbors, landmark_neighbors)
        self.learners, self.scripted = reference._learner_index, reference._scripted_index
        self.learner_row = {agent: row for row, agent in enumerate(self.learners)}
        reference.close()

        agents, landmarks = world.agents, world.landmarks
        self.moving = contiguous([i for i, a in enumerate(agents) if a.movable])
        accel = [a.accel if a.accel is not None else MPE_SENSITIVITY for a in agents]
        self.accel = np.array(accel)[:, None, None]
        self.mass = np.array([a.mass for a in agents])[self.moving, None, None]
        max_speed = np.array([a.max_speed if a.max_speed is not None else np.inf for a in agents])[self.moving]
        self.max_speed = max_speed[:, None, None] if np.isfinite(max_speed).any() else None
        self.dt, self.damping = world.dt, world.damping
        self.contact_force, self.contact_margin = world.contact_force, world.contact_margin
        # the colliding entities, in mpe2's entity order (agents, then landmarks)
        self.colliding_agents = contiguous([i for i, a in enumerate(agents) if a.collide])
        self.colliding_landmarks = [i for i, lm in enumerate(landmarks) if lm.collide]
        sizes = np.array([e.size for e in agents + landmarks if e.collide])
        self.contact_distance = (sizes[:, None] + sizes[None, :])[..., None]
        self.no_self_contact = np.where(np.eye(len(sizes), dtype=bool), np.inf, 0.0)[..., None]  # added to distances

        self.rng = np.random.default_rng(seed)
        self.steps = np.zeros(num_envs, dtype=int)
        self.returns = np.zeros((num_envs, self.num_agents))
        self.pos = self.vel = self.landmarks = self.goals = None

    def reset(self, seed: int | Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Start an episode in every environment. seed: an int reseeds the engine (at B = 1 the draw is
        mpe2's reset(seed=seed)); a list of B ints draws environment i as mpe2's reset(seed=seed[i])."""
        if isinstance(seed, Sequence):
            if len(seed) != self.num_envs:
                raise ValueError(f"expected {self.num_envs} seeds, got {len(seed)}")
            draws = [self.scenario.draw(np.random.default_rng(s), 1) for s in seed]
            self.goals, self.pos, self.landmarks = (np.concatenate(parts, axis=-1) for parts in zip(*draws))
        else:
            if seed is not None:
                self.rng = np.random.default_rng(seed)
            self.goals, self.pos, self.landmarks = self.scenario.draw(self.rng, self.num_envs)
        self.vel = np.zeros_like(self.pos)
        self.steps[:] = 0
        self.returns[:] = 0.0
        return self.observe(self.view())

    def reset_done(self) -> tuple[np.ndarray, np.ndarray]:
        """New episodes where the last step ended one; returns every environment's (obs, state)."""
        done = self.steps >= EPISODE_LENGTH
        if done.any():
            goals, pos, landmarks = self.scenario.draw(self.rng, int(done.sum()))
            self.goals[:, done], self.pos[..., done], self.landmarks[..., done] = goals, pos, landmarks
            self.vel[..., done] = 0.0
            self.steps[done] = 0
            self.returns[done] = 0.0
        return self.observe(self.view())

    def view(self) -> View:
        return self.scenario.view(self.pos, self.vel, self.landmarks, self.goals)

    WORLD = ("pos", "vel", "landmarks", "goals", "steps", "returns")  # what a step and an episode's end read

    def get_state(self) -> dict:
        """Everything the next steps depend on: the worlds mid-episode (copies) and the generator of new episodes."""
        return {**{name: getattr(self, name).copy() for name in self.WORLD}, "rng": self.rng.bit_generator.state}

    def set_state(self, saved: dict) -> tuple[np.ndarray, np.ndarray]:
        """Continue from `get_state()`'s worlds; returns their (obs, state), as the step before returned them."""
        for name in self.WORLD:
            setattr(self, name, np.array(saved[name]))
        self.rng.bit_generator.state = saved["rng"]
        return self.observe(self.view())

    def observe(self, view: View) -> tuple[np.ndarray, np.ndarray]:
        """(obs (B, N, obs_width), state (B, state_dim)), float32, batch-major."""
        groups = self.scenario.observe(view)
        if len(groups) == 1 and len(self.learners) == self.scenario.num_agents:  # one kind of agent, all learning
            _, full, partial = groups[0]
            obs = np.ascontiguousarray(partial.transpose(2, 0, 1), dtype=np.float32)
            state = obs if full is partial else np.ascontiguousarray(full.transpose(2, 0, 1), dtype=np.float32)
            return obs, state.reshape(self.num_envs, -1)
        state = np.concatenate([full.reshape(-1, self.num_envs) for _, full, _ in groups])
        obs = np.zeros((self.num_envs, self.num_agents, self.obs_width), dtype=np.float32)
        for rows, _, partial in groups:
            members = range(self.scenario.num_agents)[rows]
            if members[0] in self.learner_row:  # a scripted team is a whole group, observed by no learner
                first = self.learner_row[members[0]]
                obs[:, first : first + len(members), : partial.shape[1]] = partial.transpose(2, 0, 1)
        return obs, np.ascontiguousarray(state.T, dtype=np.float32)

    def step(self, forces: np.ndarray):
        """Apply one force per learning agent, (B, N, 2) in [-1, 1]. Returns (obs, state, rewards,
        terminated, truncated, info) of the step, before any reset; info["episode"] holds the mean
        returns (per agent, per team, summed) of the episodes that ended, with their count."""
        if forces.shape != (self.num_envs, self.num_agents, ACTION_DIM):
            expected = (self.num_envs, self.num_agents, ACTION_DIM)
            raise ValueError(f"expected forces of shape {expected}, got {forces.shape}")
        # the action as mpe2 reads it: a float32 force in [-1, 1]
        forces = np.ascontiguousarray(forces.transpose(1, 2, 0), dtype=np.float32).clip(-1.0, 1.0)
        if self.scripted:
            all_forces = np.empty((self.scenario.num_agents, ACTION_DIM, self.num_envs), dtype=np.float32)
            all_forces[self.learners] = forces
            all_forces[self.scripted] = self.scripted_forces()
            forces = all_forces
        self.physics(forces)
        self.steps += 1
        view = self.view()
        rewards = self.scenario.rewards(view)
        rewards = (rewards[self.learners] if self.scripted else rewards).T
        self.returns += rewards
        truncated = self.steps >= EPISODE_LENGTH
        terminated = np.zeros(self.num_envs, dtype=bool)  # no scenario here ends an episode early
        info = {"episode": self.episode_summary(truncated, view)} if truncated.any() else {}
        return *self.observe(view), rewards, terminated, truncated, info

    def check_goals(self) -> None:
        """Refuse, in one line, a task without goals drawn at reset."""
        if not self.scenario.goal_slots:
            raise UsageError(
                f"{self.task} has no goal drawn at reset to relabel"
                f" (counterfactual goals: {', '.join(n for n, s in SCENARIOS.items() if s.goal_slots)})"
            )

    def goal_assignments(self) -> list[tuple[int, ...]]:
        """Every value the goals drawn at reset can take: (goals[0], goals[1], ...) landmark indices."""
        self.check_goals()
        return list(itertools.product(range(self.scenario.num_landmarks), repeat=self.scenario.num_goals))

    def with_goals(self, obs, state, goals: tuple[int, ...]):
        """Counterfactual copies of stored steps: obs (N, B, W), agent-major as the replay buffer returns
        them, and state (B, S), numpy or torch, with goal column g replaced by landmark goals[g] (its
        colour, wherever an agent or the full state holds it); everything else as stored."""
        self.check_goals()
        obs, state = (x.clone() if hasattr(x, "clone") else x.copy() for x in (obs, state))
        state_offset = np.cumsum([0, *self.obs_dims])  # the state: each agent's observation in turn
        for column, landmark in enumerate(goals):
            for agent, first in self.scenario.goal_slots[column]:
                for c, value in enumerate(self.scenario.landmark_colors[landmark].tolist()):
                    obs[agent, :, first + c] = value
                    state[:, state_offset[agent] + first + c] = value
        return obs, state

    def scripted_forces(self) -> np.ndarray:
        """The scripted team's forces (n, 2, B), from the policies MPEEnv uses (batch-major)."""
        pos = self.pos.transpose(2, 0, 1)
        adversary = self.scenario.adversary
        if self.env_id == "simple_tag":
            forces = scripted_prey_forces(pos[:, ~adversary], pos[:, adversary])
        else:
            goal = np.take_along_axis(self.landmarks, self.goals[None], axis=0)[0].T
            forces = scripted_push_adversary_forces(pos[:, 0], pos[:, 1], goal)[:, None]
        return forces.transpose(1, 2, 0)

    def physics(self, forces: np.ndarray) -> None:
        """mpe2's World.step for B worlds: action force, contact forces, integration, speed limit.
        forces (A, 2, B) float32."""
        force = forces.astype(np.float64) * self.accel
        colliding = self.colliding_agents
        if colliding != slice(0, 0):
            positions = self.pos[colliding]
            if self.colliding_landmarks:
                positions = np.concatenate([positions, self.landmarks[self.colliding_landmarks]])
            delta = positions[:, None] - positions[None]  # (C, C, 2, B): entity i minus entity j
            dist = (norm(delta) + self.no_self_contact)[:, :, None]
            k = self.contact_margin
            # mpe2's softplus penetration log(1 + exp(x)) * k. Entities apart (x < -37) get exp(x), equal to
            # it in float64 and 20x cheaper; the resulting forces, below 1e-18, vanish next to any action
            x = -(dist - self.contact_distance[:, :, None]) / k
            penetration = np.exp(x)
            np.logaddexp(0, x, out=penetration, where=x > -37.0)
            penetration *= k
            contact = self.contact_force * delta / dist * penetration  # on entity i from entity j
            # each agent adds its contact forces to its action force in the order of the other entity,
            # as mpe2's double loop does
            agents = force[colliding, None]
            terms = np.concatenate([agents, contact[: agents.shape[0]]], axis=1)
            force[colliding] = np.add.reduce(terms, axis=1)
        moving = self.moving
        self.pos[moving] += self.vel[moving] * self.dt
        vel = self.vel[moving] * (1 - self.damping) + (force[moving] / self.mass) * self.dt
        if self.max_speed is not None:
            speed = norm(vel)[:, None]
            with np.errstate(divide="ignore", invalid="ignore"):  # at rest: 0 / 0, not selected by the limit
                vel = np.where(speed > self.max_speed, vel / speed * self.max_speed, vel)
        self.vel[moving] = vel

    def episode_summary(self, done: np.ndarray, view: View) -> dict:
        """The episodes that end here (`done`), from the returns so far and the world after the last step."""
        returns = self.returns[done]
        teams = np.array(self.teams)
        team_returns = {team: float(returns[:, teams == team].sum(1).mean()) for team in TEAMS if team in self.teams}
        summary = {
            "returns": dict(zip(self.agents, returns.mean(0).tolist())),
            "team_returns": team_returns,
            "sum": float(returns.sum(1).mean()),
            "length": float(self.steps[done].mean()),
            "count": int(done.sum()),
            "sums": returns.sum(1).tolist(),
        }
        targets = self.scenario.targets(view)
        if targets:  # at the episode's last step: the distance to the agent's landmark, and whether it is the nearest
            distances = view.landmark_distance[..., done]  # (A, L, episodes)
            summary["goal_distance"], summary["goal_reached"] = {}, {}
            for agent, goal in targets.items():
                own = np.take_along_axis(distances[agent], goal[None, done], axis=0)[0]
                name = self.agents[self.learner_row[agent]]
                summary["goal_distance"][name] = float(own.mean())
                summary["goal_reached"][name] = float((distances[agent].argmin(0) == goal[done]).mean())
        return summary


def contiguous(indices: list[int]) -> slice:
    """The slice of consecutive indices (the engine indexes by slices: views, not copies)."""
    if not indices:
        return slice(0, 0)
    if indices != list(range(indices[0], indices[-1] + 1)):
        raise ValueError(f"expected consecutive indices, got {indices}")
    return slice(indices[0], indices[-1] + 1)


def make_envs(settings: dict, num_envs: int, seed: int | None = None) -> BatchedMPE:
    """B environments of the task that a script's arguments (or a checkpoint's saved ones) describe."""
    return BatchedMPE(*(settings.get(key, default) for key, default in TASK_SETTINGS.items()), num_envs, seed)


def evaluate(envs: BatchedMPE, act, seed: int) -> dict:
    """One episode in each of the B environments, all at once, with act(obs, state) -> forces
    (deterministic policies; a local policy reads only obs, a global one the state). Environment i
    starts as mpe2's reset(seed=seed + i). Returns the mean returns per agent, per team and summed
    over agents, and "sums": each episode's summed return."""
    obs, state = envs.reset(seed=[seed + i for i in range(envs.num_envs)])
    while True:
        obs, state, _, terminations, truncations, infos = envs.step(act(obs, state))
        if "episode" in infos:
            assert (terminations | truncations).all(), "episodes of one evaluation end together"
            return infos["episode"]


def random_actor(seed: int):
    """Uniformly random forces in [-1, 1]^2 for every agent: the floor of a task's returns."""
    rng = np.random.default_rng(seed)
    return lambda obs, state: rng.uniform(-1.0, 1.0, (*obs.shape[:2], ACTION_DIM))
