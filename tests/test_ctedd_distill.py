import json
import shutil

import numpy as np
import pytest
import torch
from conftest import TINY, assert_one_line_error, run_script

import ctedd_distill
from common.engine import BatchedMPE
from common.utils import load_checkpoint
from ctedd_distill import LocalPolicies, Teacher, distillation_loss, labelled

N, W, S = 3, 6, 20


@pytest.fixture(scope="module")
def stage1_run(tmp_path_factory):
    """A tiny ctedd_global.py run on simple_spread whose 400-slot buffer wrapped around (600 steps)."""
    cwd = tmp_path_factory.mktemp("stage1")
    result = run_script("ctedd_global.py", "--env-id", "simple_spread", *TINY, "--buffer-size", "400", cwd=cwd)
    assert result.returncode == 0, result.stderr
    (run_dir,) = (cwd / "runs").iterdir()
    return run_dir


def distil(stage1_run, tmp_path, *args):
    common = ["--global-run", str(stage1_run), "--batch-size", "64", "--iters-per-batch", "2", "--eval-episodes", "2"]
    return run_script("ctedd_distill.py", *common, "--eval-frequency", "200", *args, cwd=tmp_path)


def scalars(run_dir, tag):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars(tag)]


def test_the_buffer_is_consumed_oldest_first_across_wrap_around(stage1_run, tmp_path):
    result = distil(stage1_run, tmp_path, "--message-bits", "1")
    assert result.returncode == 0, result.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    newest_consumed = [value for _, value in scalars(run_dir, "charts/consumed_env_step")]
    # stored: the transitions of env steps 200..599; batches of 64, oldest first
    assert newest_consumed == [float(min(200 + 64 * b, 600)) for b in range(1, 8)]
    eval_steps = [step for step, _ in scalars(run_dir, "eval/episodic_return")]
    assert eval_steps == sorted(eval_steps) and eval_steps[-1] == 600  # lined up with stage-1 env steps


@pytest.mark.parametrize(
    "args",
    [["--message-bits", "0"], ["--message-bits", "3"], ["--message-type", "continuous", "--teacher", "recorded"]],
)
def test_smoke_run(stage1_run, tmp_path, args):
    result = distil(stage1_run, tmp_path, *args, "--passes", "2")
    assert result.returncode == 0, result.stderr
    assert "final eval: episodic_return=" in result.stdout and "kept" in result.stdout


@pytest.fixture(scope="module")
def speaker_listener_run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("speaker_listener")
    result = run_script("ctedd_global.py", "--env-id", "simple_speaker_listener", *TINY, cwd=cwd)
    assert result.returncode == 0, result.stderr
    (run_dir,) = (cwd / "runs").iterdir()
    return run_dir


@pytest.mark.parametrize("k", [0, 1, 3])
def test_smoke_run_on_speaker_listener(speaker_listener_run, k, in_tmp):
    args = dict(batch_size=64, iters_per_batch=2, eval_frequency=300, eval_episodes=1)
    result = ctedd_distill.main(ctedd_distill.Args(global_run=str(speaker_listener_run), message_bits=k, **args))
    assert result["length"] == 25
    (run_dir,) = (in_tmp / "runs").iterdir()
    assert run_dir.name.startswith(f"simple_speaker_listener__ctedd_distill__k{k}__")


def test_save_then_evaluate_with_video(stage1_run, tmp_path):
    trained = distil(stage1_run, tmp_path, "--message-bits", "3")
    assert trained.returncode == 0, trained.stderr
    (checkpoint,) = (tmp_path / "runs").glob("*/ctedd_distill.cleanrl_model")
    final = float(trained.stdout.split("final eval: episodic_return=")[1].split()[0])
    args = ["--eval-checkpoint", str(checkpoint), "--eval-episodes", "2", "--capture-video"]
    evaluated = run_script("ctedd_distill.py", *args, cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    assert float(evaluated.stdout.split("episodic_return=")[1].split()[0]) == pytest.approx(final, abs=0.01)
    assert len(list((tmp_path / "videos").glob("*.gif"))) == 1


def test_the_loss_falls_on_a_fixed_buffer():
    torch.manual_seed(0)
    student = LocalPolicies(N, W, hidden=32, message_bits=1, message_type="binary")
    obs, targets = torch.randn(N, 128, W), torch.rand(N, 128, 2) * 2 - 1
    optimizer = torch.optim.Adam(student.parameters(), lr=1e-2)
    losses = []
    for _ in range(300):
        loss = distillation_loss(student(obs), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]


def test_a_student_at_zero_loss_reproduces_the_teachers_actions():
    torch.manual_seed(0)
    teacher = Teacher(N, N * W, hidden=16)
    obs = torch.randn(N, 32, W)
    states = obs.transpose(0, 1).reshape(32, N * W)  # the state is the observations concatenated
    with torch.no_grad():
        targets = teacher(states)
    student = LocalPolicies(N, W, hidden=64, message_bits=2, message_type="continuous")
    optimizer = torch.optim.Adam(student.parameters(), lr=3e-3)
    for _ in range(3000):
        loss = distillation_loss(student(obs), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 1e-5
    assert (student(obs) - targets).abs().max() < 5e-3
    # eq. (2) sums over agents and action dimensions and averages over the batch
    assert distillation_loss(targets + 0.1, targets).item() == pytest.approx(N * 2 * 0.01, rel=1e-4)


def test_another_agents_observation_reaches_agent_i_only_through_the_bits():
    torch.manual_seed(0)
    student = LocalPolicies(N, W, hidden=16, message_bits=1, message_type="binary")
    obs = torch.randn(N, 200, W)
    changed = obs.clone()
    changed[1] = torch.randn(200, W)
    same_bit = (student.messages(obs)[1] == student.messages(changed)[1]).squeeze(-1)
    assert same_bit.any() and (~same_bit).any()
    assert torch.equal(student(obs)[0][same_bit], student(changed)[0][same_bit])
    assert not torch.equal(student(obs)[0][~same_bit], student(changed)[0][~same_bit])
    assert set(student.messages(obs).unique().tolist()) <= {-1.0, 1.0}


def test_the_student_has_exactly_maddpgs_local_policy_architecture():
    import maddpg

    ours = LocalPolicies(N, W, hidden=64, message_bits=3, message_type="binary")
    theirs = maddpg.LocalPolicies(N, W, hidden=64, message_bits=3, message_type="binary")
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}
    theirs.load_state_dict(ours.state_dict())
    obs = torch.randn(N, 16, W)
    assert torch.equal(ours(obs), theirs(obs))


def test_bad_input_exits_with_a_one_line_reason(stage1_run, tmp_path):
    assert_one_line_error(run_script("ctedd_distill.py", cwd=tmp_path), "pass --global-run")
    missing = run_script("ctedd_distill.py", "--global-run", "runs/nowhere", cwd=tmp_path)
    assert_one_line_error(missing, "stage-1 run directory runs/nowhere does not exist")
    broken = tmp_path / "broken"
    shutil.copytree(stage1_run, broken)
    (broken / "buffer.npz").write_bytes((stage1_run / "buffer.npz").read_bytes()[:1000])
    assert_one_line_error(distil(broken, tmp_path), "buffer.npz is not readable")
    (broken / "buffer.npz").unlink()
    assert_one_line_error(distil(broken, tmp_path), "buffer.npz does not exist")
    negative = distil(stage1_run, tmp_path, "--iters-per-batch", "-1")
    assert_one_line_error(negative, "--iters-per-batch must be a finite number in [1, inf), got -1")
    (model,) = stage1_run.glob("*.cleanrl_model")  # the stage-1 model is not a student
    evaluated = run_script("ctedd_distill.py", "--eval-checkpoint", str(model), cwd=tmp_path)
    assert_one_line_error(evaluated, f"checkpoint {model} was written by ctedd_global.py, not ctedd_distill.py")


def test_a_buffer_of_another_environment_is_refused(stage1_run, tmp_path):
    push = run_script("ctedd_global.py", "--env-id", "simple_push", *TINY, cwd=tmp_path)
    assert push.returncode == 0, push.stderr
    (push_run,) = (tmp_path / "runs").iterdir()
    mixed = tmp_path / "mixed"
    shutil.copytree(stage1_run, mixed)
    shutil.copy(push_run / "buffer.npz", mixed / "buffer.npz")
    assert_one_line_error(distil(mixed, tmp_path), "was collected on simple_push, not simple_spread")


def test_same_seed_gives_identical_results(stage1_run, in_tmp):
    args = dict(global_run=str(stage1_run), batch_size=64, iters_per_batch=2, eval_frequency=300, eval_episodes=2)
    first = ctedd_distill.main(ctedd_distill.Args(**args, seed=3))
    assert first == ctedd_distill.main(ctedd_distill.Args(**args, seed=3))
    assert first != ctedd_distill.main(ctedd_distill.Args(**args, seed=4))


def test_the_teacher_is_exactly_ctedd_global_s_policy_means():
    import ctedd_global

    torch.manual_seed(0)
    trained = ctedd_global.GlobalPolicy(N, S, hidden=16)
    teacher = Teacher(N, S, hidden=16)
    teacher.load_state_dict(trained.state_dict())  # the stage-1 checkpoint loads as saved
    states = torch.randn(8, S)
    assert torch.equal(teacher(states), trained(states)[0])


def speaker_listener_steps(goal: int | None = None, num_envs: int = 64, steps: int = 6):
    """Stored-like steps of speaker-listener, (N, B, W) and (B, S) tensors; with `goal`, always that goal."""
    envs = BatchedMPE("simple_speaker_listener", num_envs=num_envs, seed=0)
    envs.reset(seed=0)
    if goal is not None:
        envs.goals[:] = goal
    rng = np.random.default_rng(0)
    obs, states = [], []
    for _ in range(steps):
        o, s, *_ = envs.step(rng.uniform(-1, 1, (num_envs, 2, 2)))
        obs.append(torch.from_numpy(o).transpose(0, 1))
        states.append(torch.from_numpy(s))
    return envs, torch.cat(obs, 1), torch.cat(states)


def test_counterfactual_relabelling_labels_each_stored_state_once_per_goal():
    torch.manual_seed(0)
    envs, obs, states = speaker_listener_steps()
    teacher = Teacher(2, envs.state_dim, hidden=16)
    batch = len(states)
    stored_obs, stored_states, stored_targets = labelled(teacher, envs, obs, states, "stored")
    assert torch.equal(stored_obs, obs) and torch.equal(stored_targets, teacher(states))
    assert torch.equal(stored_states, states)
    relabelled_obs, relabelled_states, targets = labelled(teacher, envs, obs, states, "counterfactual")
    assert relabelled_obs.shape == (2, 3 * batch, obs.shape[-1]) and targets.shape == (2, 3 * batch, 2)
    for c, goals in enumerate(envs.goal_assignments()):
        versions = slice(c * batch, (c + 1) * batch)
        counterfactual_obs, counterfactual_states = envs.with_goals(obs, states, goals)
        assert torch.equal(relabelled_obs[:, versions], counterfactual_obs)
        assert torch.equal(targets[:, versions], teacher(counterfactual_states))
        assert torch.equal(relabelled_states[versions], counterfactual_states)
        assert torch.equal(relabelled_obs[1, versions], obs[1])  # the listener sees the same, its label changes
    assert not torch.allclose(targets[1, :batch], targets[1, batch : 2 * batch])


class GoalOnlyTeacher(torch.nn.Module):
    """mu_i(s) depends only on the goal's colour (the speaker's observation, state[:, :3])."""

    def __init__(self):
        super().__init__()
        self.mix = torch.tensor([[1.5, -0.5], [-1.0, 1.0], [0.5, 2.0]])

    def forward(self, states):
        action = torch.tanh(states[:, :3] @ self.mix)
        return torch.stack([action, -action])


@pytest.mark.parametrize("relabel", ["stored", "counterfactual"])
def test_with_no_bits_counterfactual_relabelling_hedges_over_the_goals(relabel):
    torch.manual_seed(0)
    envs, obs, states = speaker_listener_steps(goal=0)  # the stored data only ever had goal 0
    teacher = GoalOnlyTeacher()
    per_goal = torch.stack([teacher(envs.with_goals(obs, states, goals)[1])[1, 0] for goals in envs.goal_assignments()])
    student = LocalPolicies(2, obs.shape[-1], hidden=32, message_bits=0, message_type="binary")
    optimizer = torch.optim.Adam(student.parameters(), lr=3e-3)
    inputs, _, targets = labelled(teacher, envs, obs, states, relabel)
    for _ in range(800):
        loss = distillation_loss(student(inputs), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        listener = student(obs)[1]  # (B, 2): it hears nothing, so it cannot tell the goals apart
    expected = per_goal.mean(0) if relabel == "counterfactual" else per_goal[0]
    assert (listener - expected).abs().max() < 0.05
    assert (per_goal.mean(0) - per_goal[0]).abs().max() > 0.3  # the two answers are far apart


def test_dagger_collects_the_states_the_student_visits():
    torch.manual_seed(0)
    student = LocalPolicies(2, 8, hidden=16, message_bits=1, message_type="binary")
    act = ctedd_distill.local_actor(student, torch.device("cpu"))
    envs = BatchedMPE("simple_speaker_listener", num_envs=4, seed=5)
    obs, states = ctedd_distill.dagger_round(envs, act, torch.device("cpu"))
    assert obs.shape == (2, 4 * 25, 8) and states.shape == (4 * 25, envs.state_dim)
    # the full state holds both observations; the listener's velocity is zero only at the episodes' first step
    assert torch.equal(states[:, :3], obs[0, :, :3]) and torch.equal(states[:, 3:], obs[1])
    assert torch.equal(states[:, 3:5].abs().sum(1) == 0, torch.arange(100) < 4)
    # the same episodes, replayed with the student's actions
    replay = BatchedMPE("simple_speaker_listener", num_envs=4, seed=5)
    o, s = replay.reset()
    for t in range(25):
        assert torch.equal(states[4 * t : 4 * (t + 1)], torch.from_numpy(s))
        o, s, *_ = replay.step(act(o, s))


def test_dagger_counts_its_new_samples(speaker_listener_run, in_tmp):
    args = dict(batch_size=64, iters_per_batch=2, eval_frequency=300, eval_episodes=2, message_bits=1)
    dagger = dict(dagger_rounds=2, dagger_steps=60, dagger_updates=3, relabel="counterfactual")
    ctedd_distill.main(ctedd_distill.Args(global_run=str(speaker_listener_run), **args, **dagger))
    (run_dir,) = (in_tmp / "runs").iterdir()
    result = json.loads((run_dir / "result.json").read_text())
    assert result["stage2_env_steps"] == 2 * 50  # two rounds of one episode in each of 60 // 25 environments
    assert [step for step, _ in scalars(run_dir, "charts/stage2_env_steps")] == [650, 700]
    assert [value for _, value in scalars(run_dir, "charts/stage2_env_steps")] == [50, 100]
    assert [point[0] for point in result["curve"]][-3:] == [600, 650, 700]


def test_new_states_need_a_teacher_and_counterfactuals_a_goal(stage1_run, tmp_path):
    recorded = distil(stage1_run, tmp_path, "--teacher", "recorded", "--dagger-rounds", "1")
    assert_one_line_error(recorded, "they need --teacher final")
    assert_one_line_error(distil(stage1_run, tmp_path, "--relabel", "counterfactual"), "has no goal drawn at reset")
    short = distil(stage1_run, tmp_path, "--dagger-rounds", "1", "--dagger-steps", "3")
    assert_one_line_error(short, "--dagger-steps must be a finite number in [25, inf)")


def test_the_critics_are_exactly_ctedd_global_s():
    import ctedd_global

    torch.manual_seed(0)
    trained = ctedd_global.CentralizedQ(N, S, hidden=16)
    critics = ctedd_distill.CentralizedQ(N, S, hidden=16)
    critics.load_state_dict(trained.state_dict())
    states, actions = torch.randn(8, S), torch.rand(N, 8, 2) * 2 - 1
    assert torch.equal(critics(states, actions), trained(states, actions))


class BowlCritic(torch.nn.Module):
    """Q_i(s, a) = -||a_i - best_i||^2, the best action of agent i fixed: (N, B)."""

    def __init__(self, best):
        super().__init__()
        self.best = best

    def forward(self, states, actions):
        return -(actions - self.best[:, None]).pow(2).sum(-1)


def test_the_critic_target_pulls_the_student_toward_the_critics_best_action():
    torch.manual_seed(0)
    obs, states = torch.randn(N, 64, W), torch.randn(64, S)
    teacher_actions, best = torch.zeros(N, 64, 2), torch.full((N, 2), 0.6)
    for weight, expected in ((0.0, 0.0), (1.0, 0.3), (9.0, 0.54)):  # the minimum of |a|^2 + w |a - 0.6|^2
        student = LocalPolicies(N, W, hidden=32, message_bits=1, message_type="continuous")
        optimizer = torch.optim.Adam(student.parameters(), lr=3e-3)
        for _ in range(600):
            loss = ctedd_distill.student_loss(student, obs, states, teacher_actions, BowlCritic(best), weight)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        assert student(obs).mean().item() == pytest.approx(expected, abs=0.02)


def test_the_critic_target_reaches_the_speaker_through_the_bits():
    torch.manual_seed(0)
    student = LocalPolicies(2, W, hidden=16, message_bits=2, message_type="binary")
    obs, states = torch.randn(2, 32, W), torch.randn(32, S)
    best = torch.tensor([[0.0, 0.0], [0.9, -0.9]])  # only the listener (agent 1) is asked to change
    targets = student(obs).detach()  # eq. (2) at its minimum: every gradient comes from the critic
    ctedd_distill.student_loss(student, obs, states, targets, BowlCritic(best), 1.0).backward()
    speaker_gradient = sum(p.grad[0].abs().sum() for p in student.message_net.parameters())
    assert speaker_gradient > 0  # the speaker's message net learns from the listener's Q through the channel


def test_the_student_is_maddpgs_local_policy_letter_for_letter():
    """The two scripts each carry the channel and the local policy (self-contained); they must not drift."""
    import inspect

    import maddpg

    for name in ("StraightThroughSign", "LocalPolicies", "local_actor"):
        assert inspect.getsource(getattr(ctedd_distill, name)) == inspect.getsource(getattr(maddpg, name)), name


def test_the_critics_are_ctedd_global_s_letter_for_letter():
    """The distillation carries stage 1's critic as ctedd_global.py writes it, but for own_action (only stage 1's
    DDPG update reads it): every method it has, and the helpers they call, are the same code."""
    import inspect

    import ctedd_global

    for name in ("mlp", "joint_action"):
        assert inspect.getsource(getattr(ctedd_distill, name)) == inspect.getsource(getattr(ctedd_global, name)), name
    ours, theirs = ctedd_distill.CentralizedQ, ctedd_global.CentralizedQ
    methods = [name for name, value in vars(ours).items() if callable(value)]
    assert methods == ["__init__", "forward"]
    for name in methods:
        assert inspect.getsource(getattr(ours, name)) == inspect.getsource(getattr(theirs, name)), name


@pytest.fixture(scope="module")
def stage1_with_the_new_flags(tmp_path_factory):
    """A tiny ctedd_global.py run with every flag of issue 34 on: its critics are twins, 24 wide."""
    cwd = tmp_path_factory.mktemp("stage1_new_flags")
    flags = ["--twin-critics", "--target-noise", "0.2", "--policy-delay", "2", "--critic-hidden-dim"]
    flags += ["24", "--lr-final-fraction", "0.1"]
    result = run_script("ctedd_global.py", "--env-id", "simple_spread", *TINY, *flags, cwd=cwd)
    assert result.returncode == 0, result.stderr
    (run_dir,) = (cwd / "runs").iterdir()
    return run_dir


def test_a_stage1_run_with_the_new_flags_is_distilled_against_its_first_critic(stage1_with_the_new_flags, in_tmp):
    import ctedd_global

    args = ctedd_distill.Args(global_run=str(stage1_with_the_new_flags), critic_weight=1.0, eval_episodes=1)
    _, critics, _, envs, rb = ctedd_distill.load_teacher(args, torch.device("cpu"))
    assert critics.twin is not None
    assert critics.net[0].out_features == 24
    (model,) = stage1_with_the_new_flags.glob("*.cleanrl_model")
    saved = load_checkpoint(model)["critics"]
    first = ctedd_global.CentralizedQ(envs.num_agents, envs.state_dim, 24)
    first.load_state_dict({key: value for key, value in saved.items() if not key.startswith("twin.")})
    data = rb.sample(32)
    assert torch.equal(critics(data.states, data.actions), first(data.states, data.actions))  # the first critic
    assert not torch.equal(critics.twin(data.states, data.actions), first(data.states, data.actions))
    tiny = dict(batch_size=64, iters_per_batch=2, eval_frequency=300)
    result = ctedd_distill.main(ctedd_distill.Args(**{**vars(args), **tiny}))
    assert np.isfinite(result["sum"])
