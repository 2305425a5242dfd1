"""The learners' changes not in the paper (issue 34), the same in maddpg.py and ctedd_global.py: TD3's twin critics,
target policy smoothing and delayed updates, the critics' width, the learning-rate schedule. Each mechanism is
watched in a tiny run of each script through spies on the functions the loop calls."""

from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import ctedd_global
import maddpg
from common.utils import anneal_learning_rates as anneal_lr
from common.utils import load_checkpoint

N, S = 3, 20
TINY = dict(total_timesteps=600, learning_starts=200, train_frequency=50, batch_size=64, eval_frequency=600)
# learning iterations at env steps 200, 250, ..., 550: 8 of them
SCRIPTS = {
    "maddpg.py": (maddpg, maddpg.Critics, dict(env_id="simple_speaker_listener", message_bits=2, channel="reinforced")),
    "ctedd_global.py": (ctedd_global, ctedd_global.CentralizedQ, dict(env_id="simple_spread")),
}


def run(script, **flags):
    module, _, task = SCRIPTS[script]
    settings = dict(TINY, num_envs=4, eval_episodes=1, save_model=True, **task)
    return module.main(module.Args(**{**settings, **flags}))


def spy(monkeypatch, owner, name, events, label=None):
    """Record every call of owner.name as events.append(Namespace(name, args, out, grad)), then return its result."""
    original = getattr(owner, name)

    def recorded(*args, **kwargs):
        out = original(*args, **kwargs)
        events.append(SimpleNamespace(name=label or name, args=args, out=out, grad=torch.is_grad_enabled()))
        return out

    monkeypatch.setattr(owner, name, recorded)


def saved(directory, name):
    (path,) = directory.glob(f"runs/*/{name}")
    return load_checkpoint(path)


@pytest.mark.parametrize("script", SCRIPTS)
def test_the_critics_have_their_own_width(script, in_tmp):
    run(script, hidden_dim=16, critic_hidden_dim=24, twin_critics=False, checkpoint_frequency=600)
    checkpoint = saved(in_tmp, "checkpoint.pt")
    for name in ("critics", "target_critics"):
        widths = {key: value.shape[-2] for key, value in checkpoint[name].items() if key.endswith("0.weight")}
        assert widths == {"net.0.weight": 24}, name  # the first hidden layer: (N,) 24 x in
        assert (
            checkpoint[name]["net.2.weight"].shape[-2:] == (24, 24) and checkpoint[name]["net.4.weight"].shape[-1] == 24
        )
    first = "action_net.0.weight" if script == "maddpg.py" else "trunk.0.weight"
    assert checkpoint["policy"][first].shape[-2] == 16
    run(script, hidden_dim=16, critic_hidden_dim=None, exp_name="default")  # None: the critics at --hidden-dim
    (model,) = in_tmp.glob("runs/*__default__*/default.cleanrl_model")
    model = load_checkpoint(model)
    assert model["critics"]["net.0.weight"].shape[-2] == 16


@pytest.mark.parametrize("script", SCRIPTS)
def test_target_policy_smoothing_clips_the_noise_at_td3s_c_and_leaves_maddpgs_bits(script):
    smoothing = SCRIPTS[script][0].target_policy_smoothing
    torch.manual_seed(0)
    bits = torch.sign(torch.randn(N, 500, 3)) if script == "maddpg.py" else torch.zeros(N, 500, 0)
    actions = torch.cat([torch.full((N, 500, 2), 0.2), bits], dim=-1)  # forces, then maddpg.py's reinforced bits
    state = torch.get_rng_state()
    assert smoothing(actions, 0.0) is actions  # off: the actions themselves
    assert torch.equal(torch.get_rng_state(), state)  # and no noise drawn: today's numbers stay as they were
    smoothed = smoothing(actions, 10.0)
    assert torch.equal(smoothed[..., 2:], actions[..., 2:])  # the reinforced channel's bits as they were
    forces = smoothed[..., :2]
    assert forces.min() >= 0.2 - 0.5 - 1e-6 and forces.max() <= 0.7 + 1e-6  # the noise within [-0.5, 0.5]
    assert ((forces - 0.7).abs() < 1e-6).float().mean() > 0.4 and ((forces + 0.3).abs() < 1e-6).float().mean() > 0.4
    assert smoothing(torch.full((N, 500, 2), 0.9), 10.0).max() == 1.0  # then clamped to [-1, 1]
    small = smoothing(torch.zeros(N, 5000, 2), 0.1)
    assert 0.09 < small.std() < 0.11  # unclipped where the noise stays inside the clip


@pytest.mark.parametrize("script", SCRIPTS)
def test_the_td_target_takes_the_smaller_twin_at_the_smoothed_actions_and_both_twins_regress_to_it(
    script, in_tmp, monkeypatch
):
    module, critic_class, _ = SCRIPTS[script]
    events = []
    spy(monkeypatch, critic_class, "forward", events)
    spy(monkeypatch, module, "target_policy_smoothing", events)
    spy(monkeypatch, module, "td_target", events)
    spy(monkeypatch, F, "mse_loss", events)
    run(script, twin_critics=True, target_noise=0.3, checkpoint_frequency=600)
    targets = [i for i, event in enumerate(events) if event.name == "td_target"]
    assert len(targets) == 8
    for i in targets:
        smoothing, target, twin, td = events[i - 3 : i + 1]
        assert smoothing.name == "target_policy_smoothing" and smoothing.args[1:] == (0.3,)
        assert not torch.equal(smoothing.out, smoothing.args[0])  # the target actions moved
        assert target.name == twin.name == "forward" and not target.grad and not twin.grad
        assert twin.args[0] is target.args[0].twin and target.args[2] is twin.args[2] is smoothing.out
        assert torch.equal(td.args[2], torch.minimum(target.out, twin.out))  # next_q: the smaller, per entry
        assert (target.out < twin.out).any() and (twin.out < target.out).any()  # each twin the smaller somewhere
        critic, critic_loss, critic_twin, twin_loss = events[i + 1 : i + 5]
        assert critic.grad and critic_twin.args[0] is critic.args[0].twin and critic.args[0] is not target.args[0]
        assert critic_loss.args[0] is critic.out and twin_loss.args[0] is critic_twin.out  # Q and the twin's Q
        assert critic_loss.args[1] is twin_loss.args[1] is td.out  # both regress to the one target
    checkpoint = saved(in_tmp, "checkpoint.pt")
    for key in ("net.0.weight", "twin.net.0.weight"):  # both learned: their targets, copies at the start, lag behind
        assert not torch.equal(checkpoint["critics"][key], checkpoint["target_critics"][key]), key


@pytest.mark.parametrize("script", SCRIPTS)
def test_without_twins_the_target_is_the_one_target_critics(script, in_tmp, monkeypatch):
    module, critic_class, _ = SCRIPTS[script]
    events = []
    spy(monkeypatch, critic_class, "forward", events)
    spy(monkeypatch, module, "td_target", events)
    run(script, twin_critics=False, save_model=False)
    for i in [i for i, event in enumerate(events) if event.name == "td_target"]:
        assert events[i - 1].args[0].twin is None and events[i].args[2] is events[i - 1].out


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("delay", [1, 3])
def test_the_actors_and_the_targets_move_every_dth_iteration_the_critics_every_one(script, delay, in_tmp, monkeypatch):
    module, critic_class, _ = SCRIPTS[script]
    events = []
    spy(monkeypatch, module, "td_target", events, "critic")
    spy(monkeypatch, critic_class, "own_action", events, "actor")
    spy(monkeypatch, module, "soft_update", events, "target")
    if module is ctedd_global:
        spy(monkeypatch, module, "omega_loss", events, "omega")
    run(script, policy_delay=delay, save_model=False)
    names = "".join(event.name[0] for event in events)  # c: critic, o: omega, a: actor, t: a target network
    iterations = ["c" + part for part in names.split("c")[1:]]
    assert len(iterations) == 8 and names.startswith("c")
    omega = "o" if module is ctedd_global else ""
    assert iterations == [f"c{omega}att" if k % delay == 0 else f"c{omega}" for k in range(8)]


def test_the_learning_rates_decay_linearly_to_the_floor_and_go_on_from_a_saved_state():
    net = nn.Linear(2, 2)
    optimizers = [torch.optim.Adam(net.parameters(), lr=1e-3), torch.optim.SGD(net.parameters(), lr=0.2)]
    for progress, factor in ((0.0, 1.0), (0.5, 0.55), (1.0, 0.1), (1.5, 0.1)):
        anneal_lr([net, *optimizers], 0.1, progress)  # modules that are not optimizers are left alone
        assert [o.param_groups[0]["lr"] for o in optimizers] == pytest.approx([1e-3 * factor, 0.2 * factor])
    anneal_lr(optimizers, 0.1, 0.5)
    resumed = torch.optim.Adam(net.parameters(), lr=1.0)  # as a resumed run builds it, then loads the state
    resumed.load_state_dict(optimizers[0].state_dict())
    anneal_lr([resumed], 0.1, 0.75)
    assert resumed.param_groups[0]["lr"] == pytest.approx(1e-3 * (1 - 0.9 * 0.75))
    constant = torch.optim.Adam(net.parameters(), lr=6.278e-4)
    for progress in (0.0, 0.3, 1.0):
        anneal_lr([constant], 1.0, progress)
        assert constant.param_groups[0]["lr"] == 6.278e-4  # the default: exactly the learning rate, bit for bit


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_learning_rate_reaches_its_floor_at_the_last_step(script, in_tmp):
    module, _, _ = SCRIPTS[script]
    run(script, lr_final_fraction=0.1, checkpoint_frequency=600)
    checkpoint = saved(in_tmp, "checkpoint.pt")  # written at the end of the budget, as the loop left them
    groups = {name: value["param_groups"][0] for name, value in checkpoint.items() if name.endswith("optimizer")}
    assert len(groups) == (2 if module is maddpg else 4)
    args = module.Args()
    for name, group in groups.items():
        initial = args.critic_learning_rate if name == "q_optimizer" else args.learning_rate
        assert group["initial_lr"] == initial and group["lr"] == pytest.approx(0.1 * initial), name


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_new_flag_at_once(script, in_tmp):
    flags = dict(twin_critics=True, target_noise=0.2, policy_delay=2, lr_final_fraction=0.1)
    result = run(script, critic_hidden_dim=24, **flags)
    assert torch.isfinite(torch.tensor(result["sum"]))
    model = saved(in_tmp, f"{SCRIPTS[script][0].Args.exp_name}.cleanrl_model")
    assert {"net.4.weight", "twin.net.0.weight", "twin.net.4.weight"} <= set(model["critics"])
    assert model["critics"]["twin.net.0.weight"].shape[-2] == 24
