"""The MPE environment layer: 25-step multi-agent particle environments from `mpe2`.

Every algorithm script talks to the environments through `MPEEnv`:

- a 2-D force in [-1, 1]^2 per learning agent goes in; it is mapped to mpe2's continuous
  action Box(0, 1, (5,)) as float32 `[0, relu(-fx), relu(fx), relu(-fy), relu(fy)]`
  (mpe2 moves an agent by u_x = a[2] - a[1], u_y = a[4] - a[3]); an agent that cannot move
  (the speaker of simple_speaker_listener) ignores its force;
- mpe2's built-in communication is silenced (`agent.silent = True` for every agent): the k-bit
  channel of the algorithms is the only one. The always-zero comm slots are dropped from the
  observations (spread: 14 instead of 18 values, reference: 11 instead of 21, listener: 8);
- observations come out zero-padded to one width, as a float32 array (num_agents, obs_width),
  so per-agent networks can be evaluated in one batched call; `obs_dims[i]` is agent i's
  true observation size. With `agent_neighbors` / `landmark_neighbors` (spread, tag,
  adversary) an agent sees only its nearest other agents / landmarks (mpe2's own partial
  observability: nearest first, zero-filled);
- the full state s is every agent's *full* observation concatenated in `possible_agents` order
  (no neighbour limit, comm slots dropped, scripted opponents included), whatever the agents
  observe: mpe2's `state()` concatenates the partial observations, so a landmark could vanish
  from it;
- termination and truncation are reported separately; MPE episodes end by truncation only.

The layer drives the scenario's world directly instead of going through PettingZoo's parallel
wrapper: the same mpe2 code moves the world and computes rewards, at about twice the speed.
`tests/test_envs.py` checks step-for-step equality with `mpe2.<env>.parallel_env`.
"""

from __future__ import annotations

import numpy as np
from mpe2 import (
    simple_adversary_v3,
    simple_push_v3,
    simple_reference_v3,
    simple_speaker_listener_v4,
    simple_spread_v3,
    simple_tag_v3,
)

from common.utils import UsageError, atomic_write

ENV_MODULES = {
    "simple_push": simple_push_v3,
    "simple_tag": simple_tag_v3,
    "simple_spread": simple_spread_v3,
    "simple_adversary": simple_adversary_v3,
    "simple_speaker_listener": simple_speaker_listener_v4,
    "simple_reference": simple_reference_v3,
}
SUPPORTED_ENV_IDS = tuple(ENV_MODULES)
# the scenarios with mpe2's nearest-neighbour partial observability
NEIGHBOR_ENV_IDS = ("simple_spread", "simple_tag", "simple_adversary")
OPPONENT_MODES = ("learn", "scripted")
EPISODE_LENGTH = 25
ACTION_DIM = 2
TEAMS = ("adversaries", "good")
# what defines a task, with its defaults: every script has these arguments, every checkpoint stores them
TASK_SETTINGS = {"env_id": None, "opponents": "learn", "agent_neighbors": None, "landmark_neighbors": None}


def check_env_id(env_id: str) -> None:
    if env_id not in ENV_MODULES:
        raise UsageError(f"unknown env id {env_id!r}; supported: {', '.join(SUPPORTED_ENV_IDS)}")


def check_task(
    env_id: str, opponents: str = "learn", agent_neighbors: int | None = None, landmark_neighbors: int | None = None
) -> None:
    """Refuse, with a one-line reason, any combination the environment layer cannot build."""
    check_env_id(env_id)
    if opponents not in OPPONENT_MODES:
        raise UsageError(f"unknown opponents {opponents!r}; choose from {', '.join(OPPONENT_MODES)}")
    if opponents == "scripted" and env_id not in SCRIPTED_OPPONENTS:
        raise UsageError(
            f"--opponents scripted needs one of {', '.join(SCRIPTED_OPPONENTS)}; {env_id} has no scripted team"
        )
    for flag, count in (("--agent-neighbors", agent_neighbors), ("--landmark-neighbors", landmark_neighbors)):
        if count is None:
            continue
        if env_id not in NEIGHBOR_ENV_IDS:
            raise UsageError(f"{flag} needs one of {', '.join(NEIGHBOR_ENV_IDS)}; {env_id} has no neighbour limit")
        if count <= 0:
            raise UsageError(f"{flag} must be positive, got {count}")


def task_name(
    env_id: str, opponents: str = "learn", agent_neighbors: int | None = None, landmark_neighbors: int | None = None
) -> str:
    """The task in run names, group names and buffers: e.g. simple_tag-scripted, simple_spread-an1-ln2."""
    name = env_id + ("-scripted" if opponents == "scripted" else "")
    name += f"-an{agent_neighbors}" if agent_neighbors is not None else ""
    return name + (f"-ln{landmark_neighbors}" if landmark_neighbors is not None else "")


def parse_task(name: str) -> dict:
    """The inverse of `task_name`: "simple_tag-scripted-an2" -> {env_id, opponents, agent_neighbors, ...}."""
    env_id, *parts = name.split("-")
    settings = {**TASK_SETTINGS, "env_id": env_id}
    for part in parts:
        if part == "scripted":
            settings["opponents"] = "scripted"
        elif part[:2] in ("an", "ln") and part[2:].isdigit():
            settings["agent_neighbors" if part[:2] == "an" else "landmark_neighbors"] = int(part[2:])
        else:
            raise UsageError(f"task {name!r}: unknown part {part!r} (expected scripted, an<N> or ln<N>)")
    check_task(*settings.values())
    return settings


def task_of(settings: dict) -> str:
    """The task of a script's arguments or a checkpoint's saved arguments (`vars(args)`)."""
    return task_name(*(settings.get(key, default) for key, default in TASK_SETTINGS.items()))


def task_flags(settings: dict) -> str:
    """The command-line flags of a task, for the commands the scripts print."""
    return " ".join(
        f"--{key.replace('_', '-')} {settings[key]}"
        for key, default in TASK_SETTINGS.items()
        if settings.get(key, default) != default
    )


def make_env(settings: dict, render: bool = False) -> MPEEnv:
    """The environment that a script's arguments (or a checkpoint's saved ones) describe."""
    return MPEEnv(
        *(settings.get(key, default) for key, default in TASK_SETTINGS.items()),
        render_mode="rgb_array" if render else None,
    )


def force_to_mpe_action(forces: np.ndarray) -> np.ndarray:
    """Map forces (n, 2) in [-1, 1] to mpe2 actions (n, 5) in [0, 1], float32."""
    f = np.clip(forces, -1.0, 1.0).astype(np.float32)
    actions = np.zeros((len(f), 5), dtype=np.float32)
    actions[:, 1] = np.maximum(-f[:, 0], 0.0)
    actions[:, 2] = np.maximum(f[:, 0], 0.0)
    actions[:, 3] = np.maximum(-f[:, 1], 0.0)
    actions[:, 4] = np.maximum(f[:, 1], 0.0)
    return actions


def norm(v: np.ndarray) -> np.ndarray:
    """Euclidean norm over the last axis, keeping it: (..., 2) -> (..., 1)."""
    return np.sqrt(np.sum(np.square(v), axis=-1, keepdims=True))


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(norm(v), 1e-8)


def scripted_prey_forces(prey_pos: np.ndarray, predator_pos: np.ndarray) -> np.ndarray:
    """simple_tag prey: run from the nearest predator, turning back before the arena's edge.
    prey_pos (B, G, 2), predator_pos (B, P, 2) -> forces (B, G, 2)."""
    away = prey_pos[:, :, None] - predator_pos[:, None]  # (B, G, P, 2)
    nearest = np.argmin(norm(away)[..., 0], axis=-1)[..., None, None]
    flee = unit(np.take_along_axis(away, nearest, axis=2)[:, :, 0])
    # the bound penalty starts at |x| = 0.9; pull back to the centre from 0.6 on
    home = -unit(prey_pos) * np.clip((norm(prey_pos) - 0.6) / 0.3, 0.0, 2.0)
    return np.clip(flee + home, -1.0, 1.0)


def scripted_push_adversary_forces(adversary_pos: np.ndarray, good_pos: np.ndarray, goal: np.ndarray) -> np.ndarray:
    """simple_push adversary: stand between the goal landmark and the good agent, near the goal,
    so the good agent has to go through it (and is pushed away) to reach the goal. Each (B, 2)."""
    offset = good_pos - goal
    guard_point = goal + unit(offset) * np.minimum(norm(offset), 0.15)
    return np.clip(3.0 * (guard_point - adversary_pos), -1.0, 1.0)


SCRIPTED_OPPONENTS = ("simple_tag", "simple_push")


def silence(world) -> None:
    """Switch off mpe2's built-in communication: every agent's utterance stays zero."""
    for agent in world.agents:
        agent.silent = True
        agent.state.c = np.zeros(world.dim_c)


def silenced_parallel_env(env_id: str, **limits):
    """mpe2's own parallel_env as it would be built with every agent silent: zero utterances, and an
    action of 5 values for an agent that moves (none for one that cannot). The ground truth of tests
    and throughput measurements."""
    from gymnasium.spaces import Box

    env = ENV_MODULES[env_id].parallel_env(continuous_actions=True, max_cycles=EPISODE_LENGTH, **limits)
    raw = env.unwrapped
    silence(raw.world)
    for agent in raw.world.agents:
        raw.action_spaces[agent.name] = Box(0.0, 1.0, (5 if agent.movable else 0,))
    return env


def comm_free_columns(scenario, world) -> list[np.ndarray]:
    """Per agent, the indices of its observation that are not comm slots. Found by probing:
    with every utterance set to NaN, exactly the comm slots read NaN."""
    saved = [agent.state.c for agent in world.agents]
    for agent in world.agents:
        agent.state.c = np.full(world.dim_c, np.nan)
    columns = [np.flatnonzero(~np.isnan(scenario.observation(agent, world))) for agent in world.agents]
    for agent, c in zip(world.agents, saved):
        agent.state.c = c
    return columns


class MPEEnv:
    """One MPE environment with the action convention and bookkeeping all scripts share."""

    def __init__(
        self,
        env_id: str,
        opponents: str = "learn",
        agent_neighbors: int | None = None,
        landmark_neighbors: int | None = None,
        render_mode: str | None = None,
    ):
        check_task(env_id, opponents, agent_neighbors, landmark_neighbors)
        self.env_id, self.opponents = env_id, opponents
        self.agent_neighbors, self.landmark_neighbors = agent_neighbors, landmark_neighbors
        self.task = task_name(env_id, opponents, agent_neighbors, landmark_neighbors)
        limits = {}
        if agent_neighbors is not None:
            limits["num_agent_neighbors"] = agent_neighbors
        if landmark_neighbors is not None:
            limits["num_landmark_neighbors"] = landmark_neighbors
        self._raw = ENV_MODULES[env_id].raw_env(
            continuous_actions=True, max_cycles=EPISODE_LENGTH, render_mode=render_mode, **limits
        )
        world, scenario = self._raw.world, self._raw.scenario
        for flag, count, present, what in (
            ("--agent-neighbors", agent_neighbors, len(world.agents) - 1, "other agents"),
            ("--landmark-neighbors", landmark_neighbors, len(world.landmarks), "landmarks"),
        ):
            if count is not None and count > present:
                raise UsageError(f"{flag} {count}: each agent of {env_id} has only {present} {what}")
        silence(world)
        # the full state reads the same world through the scenario without neighbour limits
        self._full_scenario = type(scenario)() if limits else scenario
        self._obs_columns = comm_free_columns(scenario, world)
        self._state_columns = comm_free_columns(self._full_scenario, world)
        self.possible_agents = list(self._raw.possible_agents)
        is_adversary = [bool(getattr(a, "adversary", False)) for a in world.agents]
        # the scripted team: simple_tag's prey (good agents), simple_push's adversary
        scripted_team = {"simple_tag": False, "simple_push": True}.get(env_id)
        self._scripted = [opponents == "scripted" and adv == scripted_team for adv in is_adversary]
        self._learner_index = [i for i, s in enumerate(self._scripted) if not s]
        self._scripted_index = [i for i, s in enumerate(self._scripted) if s]
        self.agents = [self.possible_agents[i] for i in self._learner_index]
        self.num_agents = len(self.agents)
        self.teams = ["adversaries" if is_adversary[i] else "good" for i in self._learner_index]
        self.obs_dims = [len(self._obs_columns[i]) for i in self._learner_index]
        self.obs_width = max(self.obs_dims)
        self.state_dim = sum(len(columns) for columns in self._state_columns)
        self._steps = 0
        self._returns = np.zeros(self.num_agents)

    def observe(self) -> tuple[np.ndarray, np.ndarray]:
        """The current (obs (num_agents, obs_width), state (state_dim,)) of the world."""
        world = self._raw.world
        obs = np.zeros((self.num_agents, self.obs_width), dtype=np.float32)
        for row, i in enumerate(self._learner_index):
            agent = world.agents[i]
            obs[row, : self.obs_dims[row]] = self._raw.scenario.observation(agent, world)[self._obs_columns[i]]
        full = [self._full_scenario.observation(a, world)[c] for a, c in zip(world.agents, self._state_columns)]
        return obs, np.concatenate(full).astype(np.float32)

    def reset(self, seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Start an episode; returns (obs (num_agents, obs_width), state (state_dim,))."""
        self._raw.reset(seed=seed)
        self._steps = 0
        self._returns[:] = 0.0
        return self.observe()

    def step(self, forces: np.ndarray):
        """Apply one force per learning agent, shape (num_agents, 2), in [-1, 1].

        Returns (obs, state, rewards (num_agents,), terminated, truncated, info). When the
        episode ends, info["episode"] holds the returns per agent, per team and summed over
        agents, and the length. The caller resets.
        """
        forces = np.asarray(forces)
        if forces.shape != (self.num_agents, ACTION_DIM):
            raise ValueError(f"expected forces of shape {(self.num_agents, ACTION_DIM)}, got {forces.shape}")
        world = self.world
        all_forces = np.zeros((len(self.possible_agents), ACTION_DIM))
        all_forces[self._learner_index] = forces
        if self._scripted_index:
            all_forces[self._scripted_index] = self._scripted_forces()
        # mpe2's own world step: its action handling, physics and rewards
        self._raw.current_actions = list(force_to_mpe_action(all_forces))
        self._raw._execute_world_step()
        self._steps += 1
        obs, state = self.observe()
        rewards = np.array([self._raw.rewards[a] for a in self.agents])
        self._returns += rewards
        truncated = self._steps >= EPISODE_LENGTH
        terminated = not truncated and bool(self._raw.scenario.is_terminal(world))
        info = {}
        if terminated or truncated:
            info["episode"] = self.episode_summary()
        return obs, state, rewards, terminated, truncated, info

    def _scripted_forces(self) -> np.ndarray:
        agents = self._raw.world.agents
        positions = np.array([a.state.p_pos for a in agents])[None]
        if self.env_id == "simple_tag":
            adversary = np.array([a.adversary for a in agents])
            return scripted_prey_forces(positions[:, ~adversary], positions[:, adversary])[0]
        goal = agents[0].goal_a.state.p_pos[None]
        return scripted_push_adversary_forces(positions[:, 0], positions[:, 1], goal)

    def episode_summary(self) -> dict:
        team_returns = {
            team: float(sum(r for r, t in zip(self._returns, self.teams) if t == team))
            for team in TEAMS
            if team in self.teams
        }
        return {
            "returns": dict(zip(self.agents, self._returns.tolist())),
            "team_returns": team_returns,
            "sum": float(self._returns.sum()),
            "length": self._steps,
        }

    @property
    def world(self):
        """The mpe2 world (positions, velocities): for scripted policies, tests and rendering."""
        return self._raw.world

    def render(self) -> np.ndarray:
        return self._raw.render()

    def close(self) -> None:
        self._raw.close()


def record_video(settings: dict, act, seed: int, path: str) -> None:
    """Render one episode of mpe2 itself, started with reset(seed=seed), to an animated GIF.
    act(obs (1, N, W), state (1, S)) -> forces (1, N, 2), as for the batched engine; with the
    evaluation's seed this is the evaluation's first episode (the engine equals mpe2)."""
    env = make_env(settings, render=True)
    obs, state = env.reset(seed=seed)
    frames = []
    while True:
        frames.append(env.render())
        obs, state, _, terminated, truncated, _ = env.step(act(obs[None], state[None])[0])
        if terminated or truncated:
            break
    env.close()
    save_gif(frames, path)


def save_gif(frames: list[np.ndarray], path: str) -> None:
    from PIL import Image

    images = [Image.fromarray(frame) for frame in frames]
    atomic_write(path, lambda f: images[0].save(f, format="GIF", save_all=True, append_images=images[1:], duration=100))


def log_episode(writer, prefix: str, summary: dict, step: int) -> None:
    """`{prefix}/episodic_return`: summed over agents (the original MADDPG convention);
    `{prefix}/episodic_return/<team>` and `{prefix}/episodic_return/<agent>`: the breakdown."""
    writer.add_scalar(f"{prefix}/episodic_return", summary["sum"], step)
    for name, value in {**summary["team_returns"], **summary["returns"]}.items():
        writer.add_scalar(f"{prefix}/episodic_return/{name}", value, step)
    writer.add_scalar(f"{prefix}/episodic_length", summary["length"], step)
    for measure in ("goal_distance", "goal_reached"):  # speaker-listener, reference: docs/scripts.md, "What is logged"
        for name, value in summary.get(measure, {}).items():
            writer.add_scalar(f"{prefix}/{measure}/{name}", value, step)


def describe_episode(summary: dict) -> str:
    """`episodic_return=<sum> (<team> <return>, ...)` for the console."""
    teams = ", ".join(f"{team} {value:.2f}" for team, value in summary["team_returns"].items())
    reach = summary.get("goal_reached", {})  # speaker-listener, reference
    reached = "".join(f", {agent} reached its goal {share:.0%}" for agent, share in reach.items())
    return f"episodic_return={summary['sum']:.2f} ({teams}){reached}"
