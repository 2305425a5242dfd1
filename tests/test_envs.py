import numpy as np
import pytest
from mpe2 import simple_push_v3

from common.envs import (
    EPISODE_LENGTH,
    NEIGHBOR_ENV_IDS,
    SUPPORTED_ENV_IDS,
    MPEEnv,
    check_task,
    force_to_mpe_action,
    silenced_parallel_env,
    task_name,
)
from common.utils import UsageError


@pytest.mark.parametrize("env_id", SUPPORTED_ENV_IDS)
def test_positive_x_force_moves_right_and_positive_y_moves_up(env_id):
    env = MPEEnv(env_id)
    for i in range(env.num_agents):
        for axis in (0, 1):
            env.reset(seed=3)
            start = env.world.agents[i].state.p_pos.copy()
            forces = np.zeros((env.num_agents, 2))
            forces[i, axis] = 1.0
            env.step(forces)
            velocity = env.world.agents[i].state.p_vel.copy()
            env.step(forces)  # mpe2 moves the position with the previous step's velocity
            moved = env.world.agents[i].state.p_pos - start
            if not env.world.agents[i].movable:  # the speaker ignores its force
                assert env.agents[i] == "speaker_0" and not moved.any() and not velocity.any()
                continue
            assert velocity[axis] > 0 and moved[axis] > 0, (env.agents[i], axis)
            assert abs(velocity[1 - axis]) < 1e-9


def test_mpe_actions_are_float32_inside_the_action_space():
    forces = np.array([[1.0, -1.0], [-0.3, 0.7], [2.0, -5.0]])
    actions = force_to_mpe_action(forces)
    assert actions.dtype == np.float32
    np.testing.assert_allclose(actions[:, 2] - actions[:, 1], np.clip(forces[:, 0], -1, 1), rtol=1e-6)
    np.testing.assert_allclose(actions[:, 4] - actions[:, 3], np.clip(forces[:, 1], -1, 1), rtol=1e-6)
    space = simple_push_v3.parallel_env(continuous_actions=True).action_space("agent_0")
    assert all(space.contains(a) for a in actions)
    assert not space.contains(actions[0].astype(np.float64))  # what mpe2 would warn about


@pytest.mark.parametrize("env_id", SUPPORTED_ENV_IDS)
def test_stepping_prints_nothing(env_id, capfd):
    env = MPEEnv(env_id)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(30):
        env.step(rng.uniform(-1, 1, (env.num_agents, 2)))
    out, err = capfd.readouterr()
    assert out == "" and err == ""


# comm slots mpe2 appends to an observation (utterance width x agents heard); our layer drops them
COMM_SLOTS = {"simple_spread": 2 * 2, "simple_reference": 10, "simple_speaker_listener": 3}
LOCKSTEP = [
    ("simple_push", {}),
    ("simple_tag", {}),
    ("simple_spread", {}),
    ("simple_adversary", {}),
    ("simple_speaker_listener", {}),
    ("simple_reference", {}),
    ("simple_spread", {"num_agent_neighbors": 1}),
    ("simple_spread", {"num_landmark_neighbors": 1}),
    ("simple_tag", {"num_agent_neighbors": 2, "num_landmark_neighbors": 1}),
    ("simple_adversary", {"num_agent_neighbors": 1, "num_landmark_neighbors": 1}),
]


def without_comm(env_id, agent, observation, comm_slots):
    """mpe2's observation minus its trailing comm slots, which must be zero (everyone is silent)."""
    slots = comm_slots if env_id != "simple_speaker_listener" or agent == "listener_0" else 0
    assert not observation[len(observation) - slots :].any()
    return observation[: len(observation) - slots]


@pytest.mark.parametrize("env_id, limits", LOCKSTEP)
def test_matches_silenced_mpe2_parallel_env_step_for_step(env_id, limits):
    """Observations, full state, rewards and episode ends equal mpe2's; the full state equals the
    observations of an mpe2 env without neighbour limits, driven in lockstep."""
    env = MPEEnv(
        env_id,
        agent_neighbors=limits.get("num_agent_neighbors"),
        landmark_neighbors=limits.get("num_landmark_neighbors"),
    )
    reference, full = silenced_parallel_env(env_id, **limits), silenced_parallel_env(env_id)
    comm = COMM_SLOTS.get(env_id, 0)
    if env_id == "simple_spread" and "num_agent_neighbors" in limits:
        comm = 2 * limits["num_agent_neighbors"]
    rng = np.random.default_rng(1)
    for episode in range(2):
        obs, state = env.reset(seed=10 + episode)
        ref_obs, _ = reference.reset(seed=10 + episode)
        full_obs, _ = full.reset(seed=10 + episode)
        for _ in range(EPISODE_LENGTH):
            for i, agent in enumerate(env.agents):
                np.testing.assert_array_equal(
                    obs[i, : env.obs_dims[i]], without_comm(env_id, agent, ref_obs[agent], comm)
                )
            full_state = [without_comm(env_id, a, full_obs[a], COMM_SLOTS.get(env_id, 0)) for a in env.agents]
            np.testing.assert_array_equal(state, np.concatenate(full_state))
            forces = rng.uniform(-1, 1, (env.num_agents, 2))
            obs, state, rewards, terminated, truncated, _ = env.step(forces)
            mpe_actions = {
                a: f[: full.action_space(a).shape[0]] for a, f in zip(env.agents, force_to_mpe_action(forces))
            }
            ref_obs, ref_rewards, ref_term, ref_trunc, _ = reference.step(mpe_actions)
            full_obs, *_ = full.step(mpe_actions)
            np.testing.assert_array_equal(rewards, [ref_rewards[a] for a in env.agents])
            assert terminated == any(ref_term.values()) and truncated == any(ref_trunc.values())
        assert truncated


@pytest.mark.parametrize(
    "env_id, obs_dims, state_dim",
    [
        ("simple_push", [8, 19], 27),
        ("simple_tag", [16, 16, 16, 14], 62),
        ("simple_spread", [14, 14, 14], 42),
        ("simple_adversary", [8, 10, 10], 28),
        ("simple_speaker_listener", [3, 8], 11),
        ("simple_reference", [11, 11], 22),
    ],
)
def test_state_is_full_observations_concatenated_in_agent_order(env_id, obs_dims, state_dim):
    env = MPEEnv(env_id)
    assert env.obs_dims == obs_dims and env.state_dim == state_dim
    obs, state = env.reset(seed=0)
    for _ in range(3):
        pieces = [obs[i, :d] for i, d in enumerate(env.obs_dims)]
        np.testing.assert_array_equal(state, np.concatenate(pieces))
        for i, d in enumerate(env.obs_dims):
            assert not obs[i, d:].any()  # padding stays zero
        obs, state, *_ = env.step(np.full((env.num_agents, 2), 0.5))


@pytest.mark.parametrize("env_id", SUPPORTED_ENV_IDS)
def test_no_comm_slot_leaks_into_observations_or_state(env_id):
    """Whatever mpe2's agents would utter, nothing of it reaches the observations or the state:
    the k-bit channel of the algorithms is the only one."""
    env = MPEEnv(env_id)
    env.reset(seed=4)
    obs, state = env.observe()
    for agent in env.world.agents:
        agent.state.c = np.full(env.world.dim_c, 0.7)
    loud_obs, loud_state = env.observe()
    np.testing.assert_array_equal(obs, loud_obs)
    np.testing.assert_array_equal(state, loud_state)
    assert all(agent.silent for agent in env.world.agents)


def set_goal(env, sender, landmark):
    """Make `sender` know (and the other agent need) the goal `landmark`."""
    world = env.world
    world.agents[sender].goal_b = world.landmarks[landmark]


def test_speaker_sees_only_the_goal_and_listener_sees_no_goal():
    env = MPEEnv("simple_speaker_listener")
    seen = {}
    for seed in (1, 2):
        env.reset(seed=seed)
        for goal in range(3):
            set_goal(env, 0, goal)
            obs, state = env.observe()
            speaker, listener = obs[0, :3], obs[1]
            np.testing.assert_array_equal(speaker, env.world.landmarks[goal].color.astype(np.float32))
            seen.setdefault(goal, []).append(speaker)
            if goal > 0:
                np.testing.assert_array_equal(listener, previous_listener)  # noqa: F821
                assert not np.array_equal(state, previous_state)  # noqa: F821
            previous_listener, previous_state = listener, state  # noqa: F841
    for goal in range(3):  # the speaker's observation depends on the goal alone, not on the positions
        np.testing.assert_array_equal(*seen[goal])
    assert len({tuple(v[0]) for v in seen.values()}) == 3


def test_in_reference_each_agent_knows_only_the_other_agents_goal():
    env = MPEEnv("simple_reference")
    env.reset(seed=3)
    for own in (0, 1):
        other = 1 - own
        before, _ = env.observe()
        set_goal(env, other, (env.world.landmarks.index(env.world.agents[other].goal_b) + 1) % 3)
        after, _ = env.observe()
        np.testing.assert_array_equal(before[own], after[own])  # agent `own`'s goal changed: it cannot tell
        assert not np.array_equal(before[other], after[other])  # the other agent sees it


@pytest.mark.parametrize("env_id", NEIGHBOR_ENV_IDS)
def test_under_one_landmark_neighbor_every_landmark_is_still_in_the_state(env_id):
    env = MPEEnv(env_id, landmark_neighbors=1, agent_neighbors=1)
    full = MPEEnv(env_id)
    obs, state = env.reset(seed=7)
    _, full_state = full.reset(seed=7)
    np.testing.assert_array_equal(state, full_state)
    assert env.state_dim == full.state_dim and env.obs_width < full.obs_width
    # agent 0's full observation starts the state; spread and tag: velocity, position, landmarks relative
    if env_id != "simple_adversary":
        position, landmarks = state[2:4], state[4 : 4 + 2 * len(env.world.landmarks)].reshape(-1, 2)
        expected = np.array([lm.state.p_pos for lm in env.world.landmarks], dtype=np.float32)
        np.testing.assert_allclose(position + landmarks, expected, atol=1e-6)


@pytest.mark.parametrize("env_id", SUPPORTED_ENV_IDS)
def test_truncation_at_25_steps_and_returns_match_hand_sums(env_id):
    env = MPEEnv(env_id)
    env.reset(seed=5)
    rng = np.random.default_rng(5)
    total = np.zeros(env.num_agents)
    for step in range(1, EPISODE_LENGTH + 1):
        *_, rewards, terminated, truncated, info = env.step(rng.uniform(-1, 1, (env.num_agents, 2)))
        total += rewards
        assert not terminated
        assert truncated == (step == EPISODE_LENGTH)
        assert ("episode" in info) == (step == EPISODE_LENGTH)
    episode = info["episode"]
    assert episode["length"] == EPISODE_LENGTH
    np.testing.assert_allclose([episode["returns"][a] for a in env.agents], total)
    np.testing.assert_allclose(episode["sum"], total.sum())
    for team, team_return in episode["team_returns"].items():
        members = [i for i, t in enumerate(env.teams) if t == team]
        np.testing.assert_allclose(team_return, total[members].sum())
    assert sum(episode["team_returns"].values()) == pytest.approx(total.sum())
    env.reset()
    *_, info = env.step(np.zeros((env.num_agents, 2)))
    assert info == {}


def test_unknown_env_id_lists_the_supported_ones():
    with pytest.raises(UsageError) as err:
        MPEEnv("simple_pushh")
    for env_id in SUPPORTED_ENV_IDS:
        assert env_id in str(err.value)


@pytest.mark.parametrize(
    "task, reason",
    [
        (("simple_push", "learn", 1, None), "--agent-neighbors needs one of simple_spread, simple_tag"),
        (("simple_reference", "learn", None, 2), "--landmark-neighbors needs one of"),
        (("simple_speaker_listener", "learn", 1, None), "simple_speaker_listener has no neighbour limit"),
        (("simple_spread", "learn", -1, None), "--agent-neighbors must be positive, got -1"),
        (("simple_tag", "learn", None, 0), "--landmark-neighbors must be positive, got 0"),
    ],
)
def test_neighbor_limits_only_where_mpe2_has_them_and_only_positive(task, reason):
    with pytest.raises(UsageError, match=reason):
        check_task(*task)


def test_task_names_carry_opponents_and_neighbor_limits():
    assert task_name("simple_spread") == "simple_spread"
    assert task_name("simple_spread", "learn", 1, None) == "simple_spread-an1"
    assert task_name("simple_tag", "scripted", 2, 1) == "simple_tag-scripted-an2-ln1"
    assert MPEEnv("simple_adversary", landmark_neighbors=1).task == "simple_adversary-ln1"


def test_scripted_opponents_only_where_a_script_exists():
    with pytest.raises(UsageError, match="scripted"):
        MPEEnv("simple_spread", opponents="scripted")
    with pytest.raises(UsageError, match="opponents"):
        MPEEnv("simple_tag", opponents="random")


def test_rgb_array_rendering():
    env = MPEEnv("simple_tag", render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render()
    assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3
    assert frame.std() > 0


def unit(v):
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-8)


def predators_catches(opponents, episodes=100):
    """Greedy predators chase the prey; returns the predators' summed return / 10 = catches."""
    env = MPEEnv("simple_tag", opponents=opponents)
    rng = np.random.default_rng(0)
    predators = [i for i, t in enumerate(env.teams) if t == "adversaries"]
    catches = 0.0
    for episode in range(episodes):
        obs, _ = env.reset(seed=episode)
        done = False
        while not done:
            prey_pos = next(a for a in env.world.agents if not a.adversary).state.p_pos
            forces = rng.uniform(-1, 1, (env.num_agents, 2))  # a learning prey acts at random
            for i in predators:
                forces[i] = unit(prey_pos - env.world.agents[i].state.p_pos)
            obs, _, _, terminated, truncated, info = env.step(forces)
            done = terminated or truncated
        catches += info["episode"]["team_returns"]["adversaries"] / 10 / len(predators)
    return catches


def test_scripted_prey_is_invisible_to_the_learner_and_caught_less_than_a_random_prey():
    env = MPEEnv("simple_tag", opponents="scripted")
    assert env.agents == ["adversary_0", "adversary_1", "adversary_2"]
    obs, state = env.reset(seed=0)
    assert obs.shape[0] == 3 and state.shape == (62,)  # the state still holds the prey's observation
    scripted, random = predators_catches("scripted"), predators_catches("learn")
    assert scripted < 0.5 * random, (scripted, random)


def good_agent_returns(opponents, episodes=100):
    """The good agent walks straight to its goal; returns its episodic returns."""
    env = MPEEnv("simple_push", opponents=opponents)
    rng = np.random.default_rng(0)
    good = env.agents.index("agent_0")
    returns = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=episode)
        done = False
        while not done:
            forces = rng.uniform(-1, 1, (env.num_agents, 2))  # a learning adversary acts at random
            forces[good] = unit(obs[good, 2:4])  # obs[2:4]: goal position relative to the agent
            obs, _, _, terminated, truncated, info = env.step(forces)
            done = terminated or truncated
        returns.append(info["episode"]["returns"]["agent_0"])
    return np.array(returns)


def test_scripted_push_adversary_is_invisible_and_hurts_the_good_agent_more_than_a_random_one():
    env = MPEEnv("simple_push", opponents="scripted")
    assert env.agents == ["agent_0"] and env.teams == ["good"]
    # same seeds, same start positions: a paired comparison. A direct approach leaves the
    # adversary little leverage in MPE's soft-contact physics, so the effect is small but clear.
    difference = good_agent_returns("scripted") - good_agent_returns("learn")
    t_statistic = difference.mean() / (difference.std(ddof=1) / np.sqrt(len(difference)))
    assert difference.mean() < 0 and t_statistic < -2.5, (difference.mean(), t_statistic)
