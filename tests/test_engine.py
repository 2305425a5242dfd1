import numpy as np
import pytest

from common.engine import BatchedMPE, evaluate, make_envs
from common.envs import EPISODE_LENGTH, MPEEnv, parse_task
from common.utils import UsageError

# every task, every neighbour setting, every scripted opponent
TASKS = [
    "simple_spread",
    "simple_tag",
    "simple_push",
    "simple_adversary",
    "simple_speaker_listener",
    "simple_reference",
    "simple_spread-an1",
    "simple_spread-ln1",
    "simple_spread-an2-ln2",
    "simple_tag-an2-ln1",
    "simple_tag-an1",
    "simple_adversary-an1-ln1",
    "simple_tag-scripted",
    "simple_tag-scripted-an1-ln1",
    "simple_push-scripted",
]


def towards_each_other(env: MPEEnv) -> np.ndarray:
    """Forces that drive every learning agent to the centre of all agents, so they collide."""
    positions = np.array([agent.state.p_pos for agent in env.world.agents])
    return np.clip(5 * (positions.mean(0) - positions[env._learner_index]), -1, 1)


def in_contact(env: MPEEnv) -> bool:
    """Whether two colliding entities of the mpe2 world overlap (a contact force is pushing them)."""
    colliders = [e for e in env.world.entities if e.collide]
    return any(
        np.linalg.norm(a.state.p_pos - b.state.p_pos) < a.size + b.size
        for i, a in enumerate(colliders)
        for b in colliders[i + 1 :]
    )


@pytest.mark.parametrize("task", TASKS)
def test_engine_equals_mpe2_step_for_step(task):
    """Three environments of the engine against three mpe2-backed environments (MPEEnv equals
    mpe2's parallel_env, tests/test_envs.py): the same starts, the same forces, for whole episodes.
    Odd episodes drive the agents into each other, so contacts fire."""
    settings = parse_task(task)
    references = [MPEEnv(**settings) for _ in range(3)]
    engine = make_envs(settings, num_envs=3)
    rng = np.random.default_rng(0)
    contacts = 0
    for episode in range(4):
        seeds = [100 * episode + i for i in range(3)]
        obs, state = engine.reset(seed=seeds)
        expected = [env.reset(seed=s) for env, s in zip(references, seeds)]
        for _ in range(EPISODE_LENGTH):
            np.testing.assert_allclose(obs, np.stack([o for o, _ in expected]), rtol=0, atol=1e-6)
            np.testing.assert_allclose(state, np.stack([s for _, s in expected]), rtol=0, atol=1e-6)
            forces = rng.uniform(-1, 1, (3, engine.num_agents, 2))
            if episode % 2:
                forces = np.stack([towards_each_other(env) for env in references])
            obs, state, rewards, terminated, truncated, info = engine.step(forces)
            steps = [env.step(f) for env, f in zip(references, forces)]
            expected = [(s[0], s[1]) for s in steps]
            np.testing.assert_allclose(rewards, np.stack([s[2] for s in steps]), rtol=0, atol=1e-9)
            assert terminated.tolist() == [s[3] for s in steps] and truncated.tolist() == [s[4] for s in steps]
            contacts += any(in_contact(env) for env in references)
        ends = [s[5]["episode"] for s in steps]
        assert info["episode"]["count"] == 3
        np.testing.assert_allclose(info["episode"]["sums"], [e["sum"] for e in ends], atol=1e-9)
        assert info["episode"]["sum"] == pytest.approx(np.mean([e["sum"] for e in ends]))
    if any(e.collide for e in references[0].world.agents):
        assert contacts > 0  # the contact forces were exercised


@pytest.mark.parametrize("task", ["simple_spread", "simple_push", "simple_reference", "simple_tag-scripted"])
def test_a_seeded_reset_at_one_environment_draws_mpe2s_own_start(task):
    settings = parse_task(task)
    engine, reference = make_envs(settings, num_envs=1), MPEEnv(**settings)
    for seed in (0, 7, 12345):
        obs, state = engine.reset(seed=seed)
        expected_obs, expected_state = reference.reset(seed=seed)
        np.testing.assert_array_equal(obs[0], expected_obs)
        np.testing.assert_array_equal(state[0], expected_state)


def test_each_environment_starts_a_new_episode_when_its_own_ends():
    engine = BatchedMPE("simple_spread", num_envs=3, seed=0)
    engine.reset()
    engine.steps[1] = 10  # environment 1 is 10 steps into its episode: it ends 10 steps before the others
    forces = np.zeros((3, 3, 2))
    for _ in range(EPISODE_LENGTH - 10):
        *_, truncated, info = engine.step(forces)
        before = engine.pos.copy()
        if truncated.any():
            break
    assert truncated.tolist() == [False, True, False] and info["episode"]["count"] == 1
    engine.reset_done()
    after = engine.pos
    np.testing.assert_array_equal(after[..., [0, 2]], before[..., [0, 2]])  # the others go on
    assert not np.allclose(after[..., 1], before[..., 1])  # environment 1 starts afresh
    assert engine.steps.tolist() == [15, 0, 15] and (engine.returns[1] == 0).all()
    assert not (engine.returns[[0, 2]] == 0).all()


def test_evaluation_runs_every_episode_at_once_on_mpe2s_seeds():
    envs = make_envs({"env_id": "simple_speaker_listener"}, num_envs=5)
    result = evaluate(envs, lambda obs, state: np.zeros((*obs.shape[:2], 2)), seed=10_000)
    expected = []
    for i in range(5):
        env = MPEEnv("simple_speaker_listener")
        env.reset(seed=10_000 + i)
        for _ in range(EPISODE_LENGTH):
            *_, info = env.step(np.zeros((2, 2)))
        expected.append(info["episode"]["sum"])
    np.testing.assert_allclose(result["sums"], expected)
    assert result["count"] == 5 and result["sum"] == pytest.approx(np.mean(expected))


@pytest.mark.parametrize("env_id", ["simple_speaker_listener", "simple_reference"])
def test_evaluation_measures_whether_each_mover_ends_at_its_own_landmark(env_id):
    """The MADDPG paper's measure: at the last step, the mover's distance to its goal and whether its
    goal is the nearest landmark. Steering to the goal reaches it; steering to another landmark never does."""
    from benchmark.reference_returns import communication_forces

    def steer_to(shift):
        def act(obs, state):
            forces = []
            for env_obs in obs:
                if env_id == "simple_speaker_listener":  # the colour the speaker sees, rolled: another landmark
                    told = np.roll(env_obs[0, :3], shift)
                    env_obs = np.concatenate([[np.concatenate([told, env_obs[0, 3:]])], env_obs[1:]])
                else:
                    env_obs = env_obs.copy()
                    env_obs[:, 8:11] = np.roll(env_obs[:, 8:11], shift, axis=1)
                forces.append(communication_forces(env_id, env_obs, "full information"))
            return np.array(forces)

        return act

    envs = make_envs({"env_id": env_id}, num_envs=40)
    movers = ["listener_0"] if env_id == "simple_speaker_listener" else envs.agents
    to_goal, elsewhere = evaluate(envs, steer_to(0), 10_000), evaluate(envs, steer_to(1), 10_000)
    assert set(to_goal["goal_reached"]) == set(movers) == set(to_goal["goal_distance"])
    for mover in movers:
        assert to_goal["goal_reached"][mover] >= 0.95 and to_goal["goal_distance"][mover] < 0.1
        assert elsewhere["goal_reached"][mover] == 0.0 and elsewhere["goal_distance"][mover] > 0.2
    spread = evaluate(make_envs({"env_id": "simple_spread"}, 4), lambda obs, state: np.zeros((4, 3, 2)), 10_000)
    assert "goal_reached" not in spread  # no agent of spread has a landmark of its own


def test_bad_forces_are_refused():
    engine = BatchedMPE("simple_push", num_envs=2)
    engine.reset(seed=0)
    with pytest.raises(ValueError, match="expected forces of shape"):
        engine.step(np.zeros((2, 3, 2)))
    with pytest.raises(ValueError, match="expected 2 seeds"):
        engine.reset(seed=[1, 2, 3])


@pytest.mark.parametrize("env_id", ["simple_speaker_listener", "simple_reference"])
def test_a_counterfactual_step_is_the_same_world_observed_with_other_goals(env_id):
    envs = BatchedMPE(env_id, num_envs=6, seed=0)
    envs.reset(seed=1)
    rng = np.random.default_rng(0)
    for _ in range(5):
        obs, state, *_ = envs.step(rng.uniform(-1, 1, (6, envs.num_agents, 2)))
    stored_obs, stored_goals = obs.transpose(1, 0, 2), envs.goals.copy()  # agent-major, as the buffer stores it
    assignments = envs.goal_assignments()
    assert len(set(assignments)) == envs.scenario.num_landmarks**envs.scenario.num_goals
    for goals in assignments:
        counterfactual_obs, counterfactual_state = envs.with_goals(stored_obs, state, goals)
        envs.goals[:] = np.array(goals)[:, None]
        expected_obs, expected_state = envs.observe(envs.view())
        assert np.array_equal(counterfactual_obs, expected_obs.transpose(1, 0, 2))
        assert np.array_equal(counterfactual_state, expected_state)
        # only the steps whose goal changed, and only in the colour columns of the changed goal
        changed = (counterfactual_state != state).any(1)
        assert np.array_equal(changed, (stored_goals != np.array(goals)[:, None]).any(0))
        columns = np.flatnonzero((counterfactual_state != state).any(0))
        assert len(columns) <= 3 * envs.scenario.num_goals and (changed.any() == (len(columns) > 0))
    assert np.array_equal(stored_obs, obs.transpose(1, 0, 2))  # the stored arrays are not touched


def test_a_task_without_goals_drawn_at_reset_has_no_counterfactual():
    with pytest.raises(UsageError, match="simple_spread has no goal drawn at reset"):
        BatchedMPE("simple_spread").goal_assignments()
