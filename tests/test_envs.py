import numpy as np
import pytest
from mpe2 import simple_push_v3, simple_spread_v3, simple_tag_v3

from common.envs import EPISODE_LENGTH, SUPPORTED_ENV_IDS, MPEEnv, force_to_mpe_action
from common.utils import UsageError

PARALLEL_ENVS = {"simple_push": simple_push_v3, "simple_tag": simple_tag_v3, "simple_spread": simple_spread_v3}


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


@pytest.mark.parametrize("env_id", list(PARALLEL_ENVS))
def test_matches_mpe2_parallel_env_step_for_step(env_id):
    env = MPEEnv(env_id)
    reference = PARALLEL_ENVS[env_id].parallel_env(continuous_actions=True, max_cycles=EPISODE_LENGTH)
    rng = np.random.default_rng(1)
    for episode in range(2):
        obs, state = env.reset(seed=10 + episode)
        ref_obs, _ = reference.reset(seed=10 + episode)
        for _ in range(EPISODE_LENGTH):
            for i, agent in enumerate(env.agents):
                np.testing.assert_array_equal(obs[i, : env.obs_dims[i]], ref_obs[agent])
            np.testing.assert_array_equal(state, reference.state())
            forces = rng.uniform(-1, 1, (env.num_agents, 2))
            obs, state, rewards, terminated, truncated, _ = env.step(forces)
            mpe_actions = force_to_mpe_action(forces)
            ref_obs, ref_rewards, ref_term, ref_trunc, _ = reference.step(dict(zip(env.agents, mpe_actions)))
            np.testing.assert_array_equal(rewards, [ref_rewards[a] for a in env.agents])
            assert terminated == any(ref_term.values()) and truncated == any(ref_trunc.values())
        assert truncated


@pytest.mark.parametrize(
    "env_id, obs_dims, state_dim",
    [
        ("simple_push", [8, 19], 27),
        ("simple_tag", [16, 16, 16, 14], 62),
        ("simple_spread", [18, 18, 18], 54),
        ("simple_adversary", [8, 10, 10], 28),
    ],
)
def test_state_is_observations_concatenated_in_agent_order(env_id, obs_dims, state_dim):
    env = MPEEnv(env_id)
    assert env.obs_dims == obs_dims and env.state_dim == state_dim
    obs, state = env.reset(seed=0)
    for _ in range(3):
        pieces = [obs[i, :d] for i, d in enumerate(env.obs_dims)]
        np.testing.assert_array_equal(state, np.concatenate(pieces))
        np.testing.assert_array_equal(state, env._raw.state())
        for i, d in enumerate(env.obs_dims):
            assert not obs[i, d:].any()  # padding stays zero
        obs, state, *_ = env.step(np.full((env.num_agents, 2), 0.5))


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
