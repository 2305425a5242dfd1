import numpy as np
import pytest
import torch
import torch.nn as nn
from conftest import TINY, assert_one_line_error, run_script

import ctedd_global
import maddpg
from common.envs import task_name
from common.layers import AgentLinear
from maddpg import (
    Critics,
    LocalPolicies,
    StraightThroughSign,
    critic_actions,
    joint_action,
    own_action_joint,
    perturbed_messages,
    td_target,
)

N, W, S = 3, 6, 20


def policies(k, message_type="binary", seed=0):
    torch.manual_seed(seed)
    return LocalPolicies(N, W, hidden=16, message_bits=k, message_type=message_type)


def test_agent_linear_is_one_independent_linear_layer_per_agent():
    layer = AgentLinear(N, 4, 5)
    x = torch.randn(N, 7, 4)
    for i in range(N):
        single = nn.Linear(4, 5)
        single.weight.data, single.bias.data = layer.weight[i], layer.bias[i, 0]
        torch.testing.assert_close(layer(x)[i], single(x[i]))


@pytest.mark.parametrize("script", [maddpg, ctedd_global])
def test_soft_update_moves_every_target_parameter_a_fraction_tau_toward_the_network(script):
    torch.manual_seed(0)
    net, target = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2)), nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    before = [p.detach().clone() for p in target.parameters()]
    script.soft_update(net, target, 0.25)
    for old, new, online in zip(before, target.parameters(), net.parameters()):
        torch.testing.assert_close(new, 0.75 * old + 0.25 * online)
    assert all(p.requires_grad for p in net.parameters())


@pytest.mark.parametrize("k", [1, 3])
def test_the_channel_carries_exactly_k_bits_per_agent(k):
    messages = policies(k).messages(torch.randn(N, 1, W) * 5)
    assert messages.shape == (N, 1, k)
    assert set(messages.unique().tolist()) <= {-1.0, 1.0}


def test_continuous_messages_are_k_reals_in_the_open_interval():
    messages = policies(3, "continuous").messages(torch.randn(N, 50, W))
    assert messages.shape == (N, 50, 3) and messages.abs().max() < 1 and len(messages.unique()) > 2


def test_straight_through_sign_forward_is_a_bit_backward_is_tanh_gradient():
    x = torch.tensor([-2.0, -0.1, 0.0, 0.3, 4.0], requires_grad=True)
    bits = StraightThroughSign.apply(x)
    assert bits.tolist() == [-1.0, -1.0, 1.0, 1.0, 1.0]
    bits.sum().backward()
    torch.testing.assert_close(x.grad, 1 - torch.tanh(x.detach()) ** 2)


@pytest.mark.parametrize("message_type", ["binary", "continuous"])
def test_gradients_reach_the_senders_part_1_and_only_through_received_messages(message_type):
    policy = policies(2, message_type)
    obs = torch.randn(N, 32, W)
    policy(obs)[0].sum().backward()  # agent 0's action only
    grad = policy.message_net[0].weight.grad  # (N, hidden, W): one slice per sender
    assert grad[1].abs().sum() > 0 and grad[2].abs().sum() > 0  # agent 0 hears agents 1 and 2
    assert grad[0].abs().sum() == 0  # agent 0's own message is not an input of its own action


def test_another_agents_observation_reaches_agent_i_only_through_the_bits():
    policy = policies(1)
    obs = torch.randn(N, 200, W)
    changed = obs.clone()
    changed[1] = torch.randn(200, W)  # agent 1 sees something else entirely
    same_bit = (policy.messages(obs)[1] == policy.messages(changed)[1]).squeeze(-1)
    actions, new_actions = policy(obs), policy(changed)
    assert same_bit.any() and (~same_bit).any()
    assert torch.equal(actions[0][same_bit], new_actions[0][same_bit])  # same bit: same action
    assert not torch.equal(actions[0][~same_bit], new_actions[0][~same_bit])
    assert torch.equal(actions[2][same_bit], new_actions[2][same_bit])  # agent 2 hears agent 1 too
    plain = policies(0)
    assert torch.equal(plain(obs)[0], plain(changed)[0])  # k = 0: no channel at all


def test_agent_i_actor_loss_moves_only_its_own_action():
    torch.manual_seed(0)
    policy, critics = policies(0), Critics(N, S, 2, hidden=16)
    obs, state, buffer_actions = torch.randn(N, 32, W), torch.randn(32, S), torch.rand(N, 32, 2) * 2 - 1
    q = critics.own_action(state, buffer_actions, policy(obs))
    q[1].mean().backward()  # agent 1's actor loss
    weight_grad = policy.action_net[0].weight.grad
    assert weight_grad[1].abs().sum() > 0
    assert weight_grad[0].abs().sum() == 0 and weight_grad[2].abs().sum() == 0


@pytest.mark.parametrize("reinforced", [False, True])
def test_who_teaches_a_senders_part_1_depends_on_the_channel(reinforced):
    """differentiable: agent 0's actor loss reaches the Part 1 of the agents it hears, not its own;
    reinforced: agent 0's message is part of its action, so only its own Q_0 teaches its Part 1."""
    torch.manual_seed(0)
    policy, k = policies(2), 2
    critics = Critics(N, S, 2 + k if reinforced else 2, hidden=16)
    obs, state = torch.randn(N, 64, W), torch.randn(64, S)
    _, actions = critic_actions(policy, obs, reinforced)
    assert actions.shape == (N, 64, 2 + k if reinforced else 2)
    buffer_actions = torch.rand(N, 64, actions.shape[-1]) * 2 - 1
    critics.own_action(state, buffer_actions, actions)[0].mean().backward()  # agent 0's actor loss
    grad = policy.message_net[0].weight.grad.abs().flatten(1).sum(1)  # per sender
    if reinforced:
        assert grad[0] > 0 and grad[1] == 0 and grad[2] == 0
    else:
        assert grad[0] == 0 and grad[1] > 0 and grad[2] > 0


def test_reinforced_exploration_flips_unsure_bits_more_often():
    torch.manual_seed(0)
    policy = policies(3)
    obs = torch.randn(N, 4000, W)
    with torch.no_grad():
        clean = policy.messages(obs)
        assert torch.equal(perturbed_messages(policy, obs, 0.0), clean)
        noisy = perturbed_messages(policy, obs, 0.5)
        sureness = torch.tanh(policy.message_net(obs)).abs()
    assert set(noisy.unique().tolist()) == {-1.0, 1.0}
    flipped = noisy != clean
    unsure, sure = sureness < 0.1, sureness > 0.4
    assert unsure.any() and sure.any()
    assert flipped[unsure].float().mean() > 0.4 > 0.25 > flipped[sure].float().mean()  # P(|noise| > margin)


def test_own_action_joint_replaces_exactly_the_own_slot():
    buffer_actions, policy_actions = torch.rand(N, 5, 2), torch.rand(N, 5, 2)
    joint = own_action_joint(buffer_actions, policy_actions).reshape(N, 5, N, 2)
    torch.testing.assert_close(joint_action(buffer_actions).reshape(5, N, 2), buffer_actions.transpose(0, 1))
    for i in range(N):
        for j in range(N):
            expected = policy_actions[i] if i == j else buffer_actions[j]
            assert torch.equal(joint[i, :, j], expected)


def test_critic_i_reads_its_own_joint_action():
    torch.manual_seed(0)
    critics = Critics(N, S, 2, hidden=16)
    state, actions, own = torch.randn(8, S), torch.rand(N, 8, 2), torch.rand(N, 8, 2)
    torch.testing.assert_close(critics.own_action(state, actions, actions), critics(state, actions))
    q = critics.own_action(state, actions, own)
    for i in range(N):
        replaced = actions.clone()
        replaced[i] = own[i]
        torch.testing.assert_close(q[i], critics(state, replaced)[i])


def test_td_target_bootstraps_through_truncation_not_through_termination():
    rewards, next_q = torch.tensor([[1.0, 1.0]]), torch.tensor([[10.0, 10.0]])
    truncated_only = torch.tensor([0.0, 1.0])  # the buffer stores termination: 0 at a time limit
    target = td_target(rewards, truncated_only, next_q, gamma=0.9)
    torch.testing.assert_close(target, torch.tensor([[10.0, 1.0]]))


@pytest.mark.parametrize("env_id", ["simple_push", "simple_tag", "simple_spread"])
@pytest.mark.parametrize("k", [0, 1, 3])
def test_smoke_run(env_id, k, tmp_path):
    result = run_script("maddpg.py", "--env-id", env_id, "--message-bits", str(k), *TINY, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "final eval: episodic_return=" in result.stdout
    assert len(list((tmp_path / "runs").glob("*/events.out.tfevents.*"))) == 1


def test_save_then_evaluate_with_video(tmp_path):
    args = ["--env-id", "simple_tag", "--opponents", "scripted", "--message-bits", "1"]
    trained = run_script("maddpg.py", *args, *TINY, "--save-model", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    (checkpoint,) = (tmp_path / "runs").glob("*/maddpg.cleanrl_model")
    final = float(trained.stdout.split("final eval: episodic_return=")[1].split()[0])
    evaluated = run_script(
        "maddpg.py",
        *args,
        "--eval-checkpoint",
        str(checkpoint),
        "--eval-episodes",
        "2",
        "--capture-video",
        cwd=tmp_path,
    )
    assert evaluated.returncode == 0, evaluated.stderr
    assert float(evaluated.stdout.split("episodic_return=")[1].split()[0]) == pytest.approx(final, abs=0.01)
    assert len(list((tmp_path / "videos").glob("*.gif"))) == 1
    wrong_env = run_script("maddpg.py", "--env-id", "simple_push", "--eval-checkpoint", str(checkpoint), cwd=tmp_path)
    assert_one_line_error(wrong_env, "was trained on simple_tag-scripted, not simple_push")
    partial = run_script(
        "maddpg.py", *args, "--agent-neighbors", "1", "--eval-checkpoint", str(checkpoint), cwd=tmp_path
    )
    assert_one_line_error(partial, "was trained on simple_tag-scripted, not simple_tag-scripted-an1")


TINY_ARGS = dict(total_timesteps=600, learning_starts=200, train_frequency=50, batch_size=64, eval_frequency=300)


@pytest.mark.parametrize(
    "task, k, channel",
    [
        (dict(env_id="simple_speaker_listener"), 0, "differentiable"),
        (dict(env_id="simple_speaker_listener"), 1, "reinforced"),
        (dict(env_id="simple_reference"), 3, "differentiable"),
        (dict(env_id="simple_reference"), 3, "reinforced"),
        (dict(env_id="simple_spread", agent_neighbors=1), 1, "reinforced"),
        (dict(env_id="simple_tag", opponents="scripted", landmark_neighbors=1), 3, "differentiable"),
    ],
)
def test_smoke_run_on_the_tasks_where_the_channel_matters(task, k, channel, in_tmp):
    result = maddpg.main(maddpg.Args(**task, **TINY_ARGS, message_bits=k, channel=channel, eval_episodes=1))
    assert np.isfinite(result["sum"])
    (run_dir,) = (in_tmp / "runs").iterdir()
    assert run_dir.name.startswith(task_name(**task) + "__maddpg__")


def test_same_seed_gives_identical_results(in_tmp):
    args = dict(
        env_id="simple_spread",
        message_bits=1,
        total_timesteps=600,
        learning_starts=200,
        train_frequency=50,
        batch_size=64,
        eval_frequency=300,
        eval_episodes=2,
        seed=7,
    )
    first, second = maddpg.main(maddpg.Args(**args)), maddpg.main(maddpg.Args(**args))
    other_seed = maddpg.main(maddpg.Args(**{**args, "seed": 8}))
    assert first == second
    assert first != other_seed


@pytest.mark.parametrize(
    "args, reason",
    [
        (["--env-id", "simple_pong"], "unknown env id 'simple_pong'; supported: simple_push, simple_tag"),
        (["--total-timesteps", "-5"], "--total-timesteps must be a finite number in [1, inf), got -5"),
        (["--eval-checkpoint", "missing.cleanrl_model"], "checkpoint missing.cleanrl_model does not exist"),
        (["--env-id", "simple_spread", "--opponents", "scripted"], "--opponents scripted needs one of"),
        (["--env-id", "simple_push", "--agent-neighbors", "1"], "--agent-neighbors needs one of simple_spread"),
        (["--env-id", "simple_reference", "--landmark-neighbors", "1"], "simple_reference has no neighbour limit"),
        (["--env-id", "simple_spread", "--agent-neighbors", "-2"], "--agent-neighbors must be a finite number in [1"),
        (["--total-timesteps", "500", "--learning-starts", "500"], "--total-timesteps 500 ends before learning starts"),
    ],
)
def test_bad_input_exits_with_a_one_line_reason(args, reason, tmp_path):
    result = run_script("maddpg.py", *args, cwd=tmp_path)
    assert_one_line_error(result, reason)


def test_periodic_checkpoints_and_resume_as_in_ctedd_global(tmp_path):
    args = ["--env-id", "simple_reference", "--message-bits", "1", "--channel", "reinforced", *TINY, "--save-model"]
    first = run_script("maddpg.py", *args, "--checkpoint-frequency", "200", "--total-timesteps", "400", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    names = sorted(p.name for p in run_dir.iterdir() if not p.name.startswith("events"))
    assert names == ["buffer.npz", "checkpoint.pt", "maddpg.cleanrl_model", "result.json"]  # no temporary files
    resumed = run_script("maddpg.py", *TINY, "--resume", f"runs/{run_dir.name}", cwd=tmp_path)  # to 600 steps
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed runs/{run_dir.name} at step 400" in resumed.stdout and "final eval" in resumed.stdout
    assert list((tmp_path / "runs").iterdir()) == [run_dir]
