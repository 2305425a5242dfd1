import importlib.util
import json
import math
import shutil

import pytest
import torch
from conftest import ROOT, TINY, assert_one_line_error, run_script

import ctedd_global
import maddpg
from common.buffer import RecentBatch, ReplayBuffer
from common.diagnostics import omega_diagnostics
from common.envs import MPEEnv, task_name
from common.utils import UsageError, load_checkpoint
from ctedd_global import CentralizedQ, GlobalPolicy, joint_action, omega_loss

N, S = 3, 20


def networks(seed=0):
    torch.manual_seed(seed)
    return GlobalPolicy(N, S, hidden=16), CentralizedQ(N, S, hidden=16)


def parameters_of(module):
    return {name: p.detach().clone() for name, p in module.named_parameters()}


def test_omega_update_leaves_trunk_and_mean_heads_unchanged():
    policy, critics = networks()
    states = torch.randn(32, S)
    means, log_std = policy(states)
    means = means.detach()
    sampled = means + log_std.detach().exp() * torch.randn_like(means)
    q = critics(states, sampled.clamp(-1, 1)).detach()
    before = parameters_of(policy)
    optimizer = torch.optim.Adam(policy.omega.parameters(), lr=0.1)
    loss, _, _ = omega_loss(log_std, sampled, means, q, alpha=0.01)
    loss.backward()
    assert all(p.grad is None for p in policy.ddpg_parameters())  # no gradient reaches the trunk
    optimizer.step()
    after = parameters_of(policy)
    for name in before:
        assert torch.equal(before[name], after[name]) == (not name.startswith("omega")), name


def test_ddpg_update_leaves_omega_unchanged():
    policy, critics = networks()
    states = torch.randn(32, S)
    means = policy(states)[0]
    (-critics.own_action(states, means.detach(), means).mean(1).sum()).backward()
    assert policy.omega.weight.grad is None and policy.omega.bias.grad is None
    assert policy.trunk[0].weight.grad.abs().sum() > 0 and policy.mean_heads.weight.grad.abs().sum() > 0


def test_agent_i_actor_loss_gives_no_gradient_to_agent_j_mean_head():
    policy, critics = networks()
    states = torch.randn(32, S)
    means = policy(states)[0]
    q = critics.own_action(states, means.detach(), means)
    q[2].mean().backward()  # agent 2's DDPG loss
    grad = policy.mean_heads.weight.grad
    assert grad[2].abs().sum() > 0 and grad[0].abs().sum() == 0 and grad[1].abs().sum() == 0


def test_the_means_are_the_tanh_of_the_preactivation_the_actor_penalty_reads():
    policy, _ = networks()
    states = torch.randn(8, S)
    (means, log_std), (mean_preactivation, omega_preactivation) = policy(states), policy.preactivations(states)
    assert torch.equal(means, torch.tanh(mean_preactivation))
    assert torch.equal(log_std, ctedd_global.squash_log_std(omega_preactivation))


def test_q_i_is_read_on_agent_i_own_joint_action():
    _, critics = networks()
    states, actions, own = torch.randn(8, S), torch.rand(N, 8, 2), torch.rand(N, 8, 2)
    torch.testing.assert_close(critics.own_action(states, actions, actions), critics(states, actions))
    q = critics.own_action(states, actions, own)
    for i in range(N):
        replaced = actions.clone()
        replaced[i] = own[i]
        torch.testing.assert_close(q[i], critics(states, replaced)[i])
        q_all = critics.net(torch.cat([states, joint_action(replaced)], dim=-1))
        torch.testing.assert_close(q[i], q_all[:, i])  # one network, output i


def test_eq1_gradient_for_a_gaussian_log_std_matches_the_hand_computed_value():
    # one agent, one action dimension per row, a batch of 2: log pi = -(a-mu)^2 / (2 sigma^2) - log sigma - c
    log_std = torch.tensor([[[math.log(0.5), math.log(0.2)], [0.0, math.log(0.8)]]], requires_grad=True)
    means = torch.tensor([[[0.1, -0.3], [0.0, 0.5]]])
    sampled = torch.tensor([[[0.6, -0.1], [-1.2, 0.9]]])
    q = torch.tensor([[-3.0, 2.0]])
    alpha = 0.05
    loss, _, _ = omega_loss(log_std, sampled, means, q, alpha)
    loss.backward()
    sigma = log_std.detach().exp()
    # d/d log sigma of log pi = (a - mu)^2 / sigma^2 - 1; of the entropy = 1; the loss is minus the mean
    hand = -(q.unsqueeze(-1) * ((sampled - means) ** 2 / sigma**2 - 1) + alpha) / 2
    torch.testing.assert_close(log_std.grad, hand)


def test_eq1_batch_is_what_was_sampled_since_the_last_iteration_in_order_and_is_emptied():
    recent = RecentBatch()
    for step in range(7):  # 7 steps of 4 environments: transition t carries the value t
        t = torch.arange(4 * step, 4 * step + 4, dtype=torch.float32)
        recent.add(t[:, None].expand(4, S), t[None, :, None].expand(N, 4, 2), -t[None, :, None].expand(N, 4, 2))
    chunks = recent.take(3)  # three learning iterations due at once: three consecutive parts
    assert [len(states) for states, _, _ in chunks] == [10, 9, 9]
    assert torch.cat([states[:, 0] for states, _, _ in chunks]).tolist() == list(range(28))
    for states, samples, means in chunks:
        assert samples.shape == (N, len(states), 2) and torch.equal(samples[0, :, 0], states[:, 0])
        assert torch.equal(means[2, :, 1], -states[:, 0])
    recent.add(torch.zeros(4, S), torch.zeros(N, 4, 2), torch.zeros(N, 4, 2))
    ((states, _, _),) = recent.take(1)
    assert len(states) == 4  # emptied by the previous take


def test_log_std_is_bounded_so_sigma_never_exceeds_one():
    policy, _ = networks()
    with torch.no_grad():
        policy.omega.bias.fill_(100.0)
    assert policy(torch.randn(4, S))[1].max() <= ctedd_global.LOG_STD_MAX
    with torch.no_grad():
        policy.omega.bias.fill_(-100.0)
    assert policy(torch.randn(4, S))[1].min() >= ctedd_global.LOG_STD_MIN


@pytest.mark.parametrize(
    "env_id, extra",
    [
        ("simple_push", []),
        ("simple_tag", ["--opponents", "scripted"]),
        ("simple_spread", ["--no-pg-baseline", "--target-entropy", "None", "--omega-reg", "0", "--alpha", "1.0"]),
        ("simple_reference", ["--target-entropy", "0.9", "--alpha", "0.5", "--omega-reg", "0"]),
        ("simple_speaker_listener", ["--fixed-sigma", "0.3"]),
    ],
)
def test_smoke_run(env_id, extra, tmp_path):
    result = run_script("ctedd_global.py", "--env-id", env_id, *extra, *TINY, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "python ctedd_distill.py --global-run runs/" in result.stdout


@pytest.mark.parametrize(
    "task",
    [
        dict(env_id="simple_speaker_listener"),
        dict(env_id="simple_reference"),
        dict(env_id="simple_spread", agent_neighbors=1, landmark_neighbors=2),
    ],
)
def test_smoke_run_on_the_tasks_where_the_channel_matters(task, in_tmp):
    args = dict(total_timesteps=600, learning_starts=200, train_frequency=50, batch_size=64, eval_frequency=300)
    result = ctedd_global.main(ctedd_global.Args(**task, **args, eval_episodes=1))
    assert result["length"] == 25
    (run_dir,) = (in_tmp / "runs").iterdir()
    assert run_dir.name.startswith(task_name(**task) + "__ctedd_global__")
    env = MPEEnv(**task)
    buffer = ReplayBuffer.load(run_dir / "buffer.npz", env.task, env.num_agents, env.obs_width, env.state_dim)
    assert len(buffer) == 600


def test_saved_buffer_is_chronological_with_teacher_means_and_no_truncation_as_termination(tmp_path):
    result = run_script("ctedd_global.py", "--env-id", "simple_spread", *TINY, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    buffer = ReplayBuffer.load(run_dir / "buffer.npz", "simple_spread", num_agents=3, obs_width=14, state_dim=42)
    (batch,) = buffer.iter_chronological(600)
    assert batch.env_steps.tolist() == list(range(600))
    assert batch.terminations.sum() == 0  # 24 episodes were truncated, none terminated
    # 4 environments add 4 transitions per step, env 0 first: s' of row t is s of row t + 4 (the same
    # environment's next step), except across its episode resets (6 episodes of 25 steps per environment)
    chained = (batch.next_states[:-4] == batch.states[4:]).all(1)
    assert chained.sum() == (600 - 4) - 4 * 5
    assert not (batch.next_states[:-1] == batch.states[1:]).all(1).any()  # neighbours are other environments
    assert batch.actions.abs().max() <= 1 and batch.policy_means is not None
    assert not torch.equal(batch.actions, batch.policy_means)  # executed = clip(mean + noise)


def test_resume_continues_the_step_count_and_the_curve(tmp_path):
    first = run_script("ctedd_global.py", "--env-id", "simple_push", *TINY, "--total-timesteps", "300", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    args = [*TINY, "--resume", f"runs/{run_dir.name}"]  # TINY's budget: 600 in all
    resumed = run_script("ctedd_global.py", *args, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed runs/{run_dir.name} at step 300" in resumed.stdout
    assert list((tmp_path / "runs").iterdir()) == [run_dir]
    buffer = ReplayBuffer.load(run_dir / "buffer.npz", "simple_push", num_agents=2, obs_width=19, state_dim=27)
    assert buffer.num_added == 600 and len(buffer) == 600
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    events = EventMultiplexer().AddRunsFromDirectory(str(run_dir))
    events.Reload()
    steps = sorted(e.step for e in events.Scalars(".", "eval/episodic_return"))
    assert steps == [300, 600]
    result = json.loads((run_dir / "result.json").read_text())
    assert [step for step, _ in result["curve"]] == [300, 600]  # the curve goes on through the resume
    assert len(result["final"]["sums"]) == 2 and result["final"]["step"] == 600
    at_budget = run_script("ctedd_global.py", *args, cwd=tmp_path)
    assert_one_line_error(at_budget, f"runs/{run_dir.name} is already at env step 600; pass --total-timesteps above")


def test_resume_refuses_a_checkpoint_whose_networks_do_not_fit(tmp_path):
    first = run_script("ctedd_global.py", "--env-id", "simple_push", *TINY, "--total-timesteps", "300", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    checkpoint = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    weight = checkpoint["policy"]["mean_heads.weight"]
    checkpoint["policy"]["mean_heads.weight"] = weight.transpose(1, 2).contiguous()  # the layout before #20
    torch.save(checkpoint, run_dir / "checkpoint.pt")
    resumed = run_script("ctedd_global.py", *TINY, "--resume", f"runs/{run_dir.name}", cwd=tmp_path)
    assert_one_line_error(resumed, "checkpoint.pt: its policy does not fit this script")


def test_periodic_checkpoint_and_crash_safety(tmp_path):
    result = run_script(
        "ctedd_global.py", "--env-id", "simple_push", *TINY, "--checkpoint-frequency", "200", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    names = sorted(p.name for p in run_dir.iterdir() if not p.name.startswith("events"))
    assert names == ["buffer.npz", "checkpoint.pt", "ctedd_global.cleanrl_model", "result.json"]  # no temporary files


def test_same_seed_gives_identical_results(in_tmp):
    args = dict(
        env_id="simple_spread",
        total_timesteps=600,
        learning_starts=200,
        train_frequency=50,
        batch_size=64,
        eval_frequency=300,
        eval_episodes=2,
        seed=7,
        save_model=False,
    )
    first, second = ctedd_global.main(ctedd_global.Args(**args)), ctedd_global.main(ctedd_global.Args(**args))
    assert first == second
    assert first != ctedd_global.main(ctedd_global.Args(**{**args, "seed": 8}))


def test_save_then_evaluate(tmp_path):
    trained = run_script("ctedd_global.py", "--env-id", "simple_tag", *TINY, cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    (checkpoint,) = (tmp_path / "runs").glob("*/ctedd_global.cleanrl_model")
    final = float(trained.stdout.split("final eval: episodic_return=")[1].split()[0])
    evaluated = run_script(
        "ctedd_global.py",
        "--env-id",
        "simple_tag",
        "--eval-checkpoint",
        str(checkpoint),
        "--eval-episodes",
        "2",
        cwd=tmp_path,
    )
    assert evaluated.returncode == 0, evaluated.stderr
    assert float(evaluated.stdout.split("episodic_return=")[1].split()[0]) == pytest.approx(final, abs=0.01)
    partial = ["--env-id", "simple_tag", "--landmark-neighbors", "1", "--eval-checkpoint", str(checkpoint)]
    assert_one_line_error(run_script("ctedd_global.py", *partial, cwd=tmp_path), "not simple_tag-ln1")


@pytest.mark.parametrize(
    "args, reason",
    [
        (["--env-id", "simple_pong"], "unknown env id 'simple_pong'; supported: simple_push, simple_tag"),
        (["--total-timesteps", "-5"], "--total-timesteps must be a finite number in [1, inf), got -5"),
        (["--resume", "runs/nothing"], "checkpoint runs/nothing/checkpoint.pt does not exist"),
        (["--eval-checkpoint", "missing.cleanrl_model"], "checkpoint missing.cleanrl_model does not exist"),
        (["--fixed-sigma", "0"], "--fixed-sigma must be a finite number in (0, inf), got 0.0"),
        (["--target-entropy", "0.2", "--alpha", "0"], "--alpha must be positive"),
        (["--total-timesteps", "500", "--learning-starts", "1000"], "--total-timesteps 500 ends before learning"),
    ],
)
def test_bad_input_exits_with_a_one_line_reason(args, reason, tmp_path):
    result = run_script("ctedd_global.py", *args, cwd=tmp_path)
    assert_one_line_error(result, reason)


class QuadraticCritic:
    """Q_i(s, a) = -c * ||a_i - target||^2: E over a ~ N(target, sigma^2) of Q_i is -2 c sigma^2 (2 dimensions)."""

    def __init__(self, c, target):
        self.c, self.target = c, target

    def own_action(self, state, actions, own_actions):
        return -self.c * ((own_actions - self.target) ** 2).sum(-1)


def optimise_log_std(loss_of, steps=400, lr=0.05):
    log_std = torch.full((1, 1, 2), math.log(0.5), requires_grad=True)
    optimizer = torch.optim.Adam([log_std], lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        loss_of(log_std).backward()
        optimizer.step()
    return log_std.detach().exp()


def test_on_a_quadratic_q_eq1_settles_where_theory_puts_sigma():
    """d/dlog sigma of E[Q] + alpha H is -2 c sigma^2 + alpha per dimension: zero at sigma^2 = alpha / (2 c)."""
    torch.manual_seed(0)
    c, alpha, batch = 1.0, 0.02, 4096
    means = torch.zeros(1, batch, 2)
    critic = QuadraticCritic(c, means)

    def loss_of(log_std):
        stds = log_std.expand(1, batch, 2)
        samples = (means + stds.detach().exp() * torch.randn_like(means)).detach()  # drawn by the current policy
        q = critic.own_action(None, samples, samples)  # Q_i(s, mu) = 0: the baseline changes nothing here
        return ctedd_global.omega_loss(stds, samples, means, q, alpha)[0]

    sigma = optimise_log_std(loss_of)
    torch.testing.assert_close(sigma, torch.full_like(sigma, math.sqrt(alpha / (2 * c))), rtol=0.15, atol=0)


def test_the_temperature_moves_alpha_toward_the_target_entropy():
    temperature = ctedd_global.Temperature(2, alpha=0.1, target_entropy=0.2)
    optimizer = torch.optim.Adam(temperature.parameters(), lr=0.05)
    entropy = torch.tensor([1.5, -1.0])  # agent 0 above the target (2 x 0.2 nats), agent 1 below
    for _ in range(20):
        optimizer.zero_grad()
        temperature.loss(entropy).backward()
        optimizer.step()
    alpha = temperature()
    assert alpha[0] < 0.1 < alpha[1] and not alpha.requires_grad
    fixed = ctedd_global.Temperature(2, alpha=1.0, target_entropy=None)
    assert torch.equal(fixed(), torch.ones(2))


def test_the_diagnostics_give_the_score_terms_gradient_at_log_sigma():
    torch.manual_seed(0)
    log_std = torch.randn(3, 64, 2, requires_grad=True)
    means, samples, q = torch.randn(3, 64, 2), torch.randn(3, 64, 2), torch.randn(3, 64)
    ctedd_global.omega_loss(log_std, samples, means, q, alpha=0.0)[1].sum().backward()  # the mean score term
    found = omega_diagnostics(0, torch.zeros(3), log_std, samples, means, q)
    per_dimension = log_std.grad.sum(1)  # summed over the batch: the gradient of the batch mean, per dimension
    torch.testing.assert_close(torch.tensor(found["pg_gradient"]), per_dimension)
    assert torch.tensor(found["pg_snr"]).min() >= 0 and len(found["log_sigma_spread"]) == 3


def test_omega_reg_pulls_a_saturated_omega_back_where_eq1_alone_cannot():
    """With omega_i's output deep in tanh's flat tail (sigma pinned at 1), eq. (1)'s gradient vanishes;
    the --omega-reg penalty on the pre-squash output still moves it, and only omega_i."""
    policy, critics = networks()
    with torch.no_grad():
        policy.omega.bias.fill_(40.0)
    states = torch.randn(32, S)
    means = policy(states)[0].detach()
    sampled = means + torch.randn_like(means)
    q = critics(states, sampled.clamp(-1, 1)).detach()

    def bias_gradient(omega_reg):
        policy.zero_grad()
        _, preactivation = policy.preactivations(states)
        log_std = ctedd_global.squash_log_std(preactivation)
        torch.testing.assert_close(log_std, policy(states)[1])  # the same log sigma as acting uses
        penalty = ctedd_global.omega_penalty(preactivation, omega_reg)
        loss = omega_loss(log_std, sampled, means, q, alpha=0.01)[0] + penalty
        loss.backward()
        assert all(p.grad is None or not p.grad.any() for p in policy.ddpg_parameters())
        return policy.omega.bias.grad.clone()

    assert bias_gradient(0.0).abs().max() < 1e-12  # eq. (1) alone: stuck
    assert (bias_gradient(1e-3) > 0).all()  # descending it lowers the pre-activation, back toward the slope


def test_a_checkpoint_of_another_script_is_refused_naming_it(tmp_path):
    trained = run_script("maddpg.py", "--env-id", "simple_push", *TINY, "--save-model", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    model = run_dir / "maddpg.cleanrl_model"
    reason = f"checkpoint {model} was written by maddpg.py, not ctedd_global.py"
    evaluated = run_script("ctedd_global.py", "--env-id", "simple_push", "--eval-checkpoint", str(model), cwd=tmp_path)
    assert_one_line_error(evaluated, reason)
    assert_one_line_error(run_script("ctedd_distill.py", "--global-run", str(run_dir), cwd=tmp_path), reason)
    checkpoint = torch.load(model, weights_only=True)
    assert checkpoint.pop("script") == "maddpg.py"
    torch.save(checkpoint, model)  # as written before the script was recorded: told by its arguments
    evaluated = run_script("ctedd_global.py", "--env-id", "simple_push", "--eval-checkpoint", str(model), cwd=tmp_path)
    assert_one_line_error(evaluated, reason)


def test_a_fork_records_itself_and_reads_the_checkpoints_of_the_script_it_copies(in_tmp, capsys):
    shutil.copy(ROOT / "ctedd_global.py", in_tmp / "my_ctedd.py")  # step 1 of README's "Fork a variant"
    spec = importlib.util.spec_from_file_location("my_ctedd", in_tmp / "my_ctedd.py")
    fork = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fork)
    tiny = dict(total_timesteps=600, learning_starts=200, train_frequency=50, batch_size=64, eval_frequency=300)
    fork.main(fork.Args(env_id="simple_push", **tiny, eval_episodes=2, checkpoint_frequency=300))
    (run_dir,) = (in_tmp / "runs").iterdir()
    model = run_dir / "my_ctedd.cleanrl_model"
    assert load_checkpoint(model)["script"] == load_checkpoint(run_dir / "checkpoint.pt")["script"] == "my_ctedd.py"
    assert "evaluate it with:\n  python my_ctedd.py " in capsys.readouterr().out  # the fork's own command
    ctedd_global.main(ctedd_global.Args(env_id="simple_push", eval_checkpoint=str(model), eval_episodes=2))
    with pytest.raises(UsageError, match="was written by my_ctedd.py, not maddpg.py$"):
        maddpg.main(maddpg.Args(env_id="simple_push", eval_checkpoint=str(model)))


def test_recent_batch_take_0_returns_nothing_and_keeps_the_batch():
    recent = RecentBatch()
    recent.add(torch.zeros(4, S), torch.zeros(N, 4, 2), torch.zeros(N, 4, 2))
    assert recent.take(0) == [] and len(recent.parts) == 1  # no iteration due: it grows on
    recent.add(torch.ones(4, S), torch.ones(N, 4, 2), torch.ones(N, 4, 2))
    ((states, _, _),) = recent.take(1)
    assert states[:, 0].tolist() == [0.0] * 4 + [1.0] * 4 and recent.parts == []


def test_the_first_eq1_update_sees_every_transition_since_env_step_0_then_those_since_the_last(in_tmp, monkeypatch):
    """4 environments, learning from env step 200 every 50: the first iteration falls in the step batch 200-203."""
    calls, original = [], ctedd_global.omega_loss

    def recorded(log_std, samples, means, advantage, alpha):
        calls.append(samples)
        return original(log_std, samples, means, advantage, alpha)

    monkeypatch.setattr(ctedd_global, "omega_loss", recorded)
    tiny = dict(total_timesteps=600, learning_starts=200, train_frequency=50, batch_size=64, eval_frequency=600)
    ctedd_global.main(ctedd_global.Args(env_id="simple_spread", **tiny, eval_episodes=1, save_model=False, num_envs=4))
    assert [samples.shape[1] for samples in calls] == [204, 48, 52, 48, 52, 48, 52, 48]
