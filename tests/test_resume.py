"""A run stopped mid-episode and resumed from its checkpoint equals the uninterrupted run, bit for bit."""

import json

import numpy as np
import pytest
import torch

import ctedd_global
import maddpg
from common import runs
from common.utils import UsageError, load_checkpoint

# 4 environments: an episode is 100 env steps. The buffer (200) has wrapped by the stop at 260, mid-episode,
# between two learning iterations (every 30 env steps); evaluations at 132, 260, 392, 520 and 600 in both runs.
SETTINGS = dict(
    total_timesteps=600,
    num_envs=4,
    buffer_size=200,
    learning_starts=100,
    train_frequency=30,
    batch_size=32,
    eval_frequency=130,
    eval_episodes=2,
    save_model=True,
    checkpoint_frequency=10_000,  # none on the way: maddpg.py then checkpoints at the end of its budget
    seed=3,
)
CASES = {
    "maddpg.py": (maddpg, dict(env_id="simple_speaker_listener", message_bits=2, channel="reinforced")),
    "ctedd_global.py": (ctedd_global, dict(env_id="simple_spread")),
}


def finished(directory, exp_name):
    (run_dir,) = (directory / "runs").iterdir()
    return (
        run_dir,
        json.loads((run_dir / "result.json").read_text()),
        load_checkpoint(run_dir / f"{exp_name}.cleanrl_model"),
    )


@pytest.mark.parametrize("script", CASES)
def test_a_resumed_run_equals_the_uninterrupted_one(script, tmp_path, monkeypatch):
    module, task = CASES[script]
    straight_dir, stopped_dir = tmp_path / "straight", tmp_path / "stopped"
    for directory in (straight_dir, stopped_dir):
        directory.mkdir()
    monkeypatch.chdir(straight_dir)
    constant = dict(lr_final_fraction=1.0)  # a longer budget would stretch a schedule (the crash test below has one)
    straight = module.main(module.Args(**SETTINGS, **task, **constant))
    monkeypatch.chdir(stopped_dir)
    module.main(module.Args(**{**SETTINGS, "total_timesteps": 260}, **task, **constant))
    (run_dir,) = (stopped_dir / "runs").iterdir()
    assert int(load_checkpoint(run_dir / "checkpoint.pt")["envs"]["steps"][0]) == 65 % 25  # mid-episode
    resumed = module.main(module.Args(resume=f"runs/{run_dir.name}", total_timesteps=600))
    assert resumed == straight
    _, straight_result, straight_model = finished(straight_dir, module.Args.exp_name)
    _, resumed_result, resumed_model = finished(stopped_dir, module.Args.exp_name)
    assert resumed_result["curve"] == straight_result["curve"]
    assert [step for step, _ in straight_result["curve"]] == [132, 260, 392, 520, 600]
    assert resumed_result.get("omega") == straight_result.get("omega")
    for name, weight in straight_model["policy"].items():
        assert torch.equal(resumed_model["policy"][name], weight), name
    for name, weight in straight_model["critics"].items():
        assert torch.equal(resumed_model["critics"][name], weight), name


@pytest.mark.parametrize("failing", ["buffer", "checkpoint"])
def test_a_failing_disk_leaves_the_previous_checkpoint_intact(failing, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ctedd_global.Args(**{**SETTINGS, "total_timesteps": 260}, env_id="simple_spread")
    ctedd_global.main(args)
    (run_dir,) = (tmp_path / "runs").iterdir()
    before = {name: (run_dir / name).read_bytes() for name in ("buffer.npz", "checkpoint.pt")}

    def full_disk(*args, **kwargs):
        next(a for a in args if hasattr(a, "write")).write(b"partial")  # some bytes reach the file, then it is full
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np if failing == "buffer" else torch, "savez" if failing == "buffer" else "save", full_disk)
    resumed = ctedd_global.Args(resume=f"runs/{run_dir.name}", total_timesteps=600)
    path = run_dir.relative_to(tmp_path) / ("buffer.npz" if failing == "buffer" else "checkpoint.pt")
    with pytest.raises(
        UsageError, match=f"^cannot write {path}: No space left on device; the previous file is intact$"
    ):
        ctedd_global.main(resumed)
    assert {name: (run_dir / name).read_bytes() for name in before} == before  # the pair, as it was
    assert not list(run_dir.glob(".*.tmp"))
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    ctedd_global.main(resumed)  # and it still resumes


def test_a_buffer_out_of_step_with_its_checkpoint_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ctedd_global.main(ctedd_global.Args(**{**SETTINGS, "total_timesteps": 260}, env_id="simple_spread"))
    (run_dir,) = (tmp_path / "runs").iterdir()
    checkpoint = load_checkpoint(run_dir / "checkpoint.pt")
    checkpoint["buffer_added"] = 200  # as if a crash fell between the renames of buffer.npz and checkpoint.pt
    torch.save(checkpoint, run_dir / "checkpoint.pt")
    with pytest.raises(UsageError, match="buffer.npz holds 260 transitions, its checkpoint.pt 200"):
        ctedd_global.main(ctedd_global.Args(resume=f"runs/{run_dir.name}", total_timesteps=600))


def test_resuming_the_run_of_another_script_is_refused_naming_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    module, task = CASES["maddpg.py"]
    module.main(module.Args(**{**SETTINGS, "total_timesteps": 260}, **task))
    (run_dir,) = (tmp_path / "runs").iterdir()
    path = run_dir / "checkpoint.pt"
    reason = f"^checkpoint runs/{run_dir.name}/checkpoint.pt was written by maddpg.py, not ctedd_global.py$"
    with pytest.raises(UsageError, match=reason):
        ctedd_global.main(ctedd_global.Args(resume=f"runs/{run_dir.name}", total_timesteps=600))
    checkpoint = load_checkpoint(path)
    assert checkpoint.pop("script") == "maddpg.py"
    torch.save(checkpoint, path)  # as written before the script was recorded: told by its arguments
    with pytest.raises(UsageError, match=reason):
        ctedd_global.main(ctedd_global.Args(resume=f"runs/{run_dir.name}", total_timesteps=600))


def test_a_resumed_budget_is_checked_against_the_runs_own_learning_start(tmp_path, monkeypatch):
    """The command's --learning-starts is not the run's: a resumed run's budget is checked against its own."""
    monkeypatch.chdir(tmp_path)
    ctedd_global.main(ctedd_global.Args(**{**SETTINGS, "total_timesteps": 260}, env_id="simple_spread"))
    (run_dir,) = (tmp_path / "runs").iterdir()
    checkpoint = load_checkpoint(run_dir / "checkpoint.pt")
    checkpoint["args"]["learning_starts"] = 500
    torch.save(checkpoint, run_dir / "checkpoint.pt")
    with pytest.raises(UsageError, match="^--total-timesteps 400 ends before learning starts at --learning-starts 500"):
        ctedd_global.main(ctedd_global.Args(resume=f"runs/{run_dir.name}", total_timesteps=400))


NEW_FLAGS = dict(twin_critics=True, target_noise=0.2, policy_delay=3, critic_hidden_dim=24)
NEW_FLAGS.update(lr_final_fraction=0.1)  # the schedule over the run's budget: a crash must not change it


class Crash(Exception):
    pass


@pytest.mark.parametrize("script", CASES)
def test_a_run_with_the_new_flags_resumed_after_a_crash_equals_the_uninterrupted_one(script, tmp_path, monkeypatch):
    """Issue 34's flags carry state through a resume: the learning-rate schedule (the optimizers' initial_lr), the
    iteration count of --policy-delay, the twins."""
    module, task = CASES[script]
    settings = dict(SETTINGS, **task, **NEW_FLAGS, checkpoint_frequency=260)
    straight_dir, crashed_dir = tmp_path / "straight", tmp_path / "crashed"
    for directory in (straight_dir, crashed_dir):
        directory.mkdir()
    monkeypatch.chdir(straight_dir)
    straight = module.main(module.Args(**settings))
    monkeypatch.chdir(crashed_dir)
    save_run = runs.save_run

    def crash_after_saving(*args, **kwargs):
        save_run(*args, **kwargs)
        raise Crash  # the process dies right after its first checkpoint, at env step 260

    monkeypatch.setattr(runs, "save_run", crash_after_saving)
    with pytest.raises(Crash):
        module.main(module.Args(**settings))
    monkeypatch.setattr(runs, "save_run", save_run)
    (run_dir,) = (crashed_dir / "runs").iterdir()
    assert load_checkpoint(run_dir / "checkpoint.pt")["global_step"] == 260
    assert module.main(module.Args(resume=f"runs/{run_dir.name}", total_timesteps=600)) == straight
    _, straight_result, straight_model = finished(straight_dir, module.Args.exp_name)
    _, resumed_result, resumed_model = finished(crashed_dir, module.Args.exp_name)
    assert resumed_result["curve"] == straight_result["curve"]
    for name in ("policy", "critics"):
        assert straight_model[name].keys() == resumed_model[name].keys()
        for key, weight in straight_model[name].items():
            assert torch.equal(resumed_model[name][key], weight), (name, key)
