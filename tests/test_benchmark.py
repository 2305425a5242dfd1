import shutil
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmark"))
import report  # noqa: E402
import run  # noqa: E402

FAKE_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    argv = sys.argv[1:]
    def arg(name, default=None):
        return argv[argv.index(name) + 1] if name in argv else default
    script = os.path.basename(__file__)
    exp, seed = arg("--exp-name"), arg("--seed")
    with open("events.txt", "a") as f:
        f.write(f"start {script} {exp} {seed} {arg('--global-run', '')} {time.time()}\\n")
    if os.environ.get("FAIL") == f"{script}:{seed}":
        sys.exit(1)
    time.sleep(0.3)
    if arg("--global-run"):
        assert os.path.isfile(os.path.join(arg("--global-run"), "ctedd_global.cleanrl_model"))
        env = os.path.basename(arg("--global-run")).split("__")[0]
        run_dir = f"runs/{env}__{exp}__k{arg('--message-bits')}__{seed}__{time.time_ns()}"
    else:
        task = arg("--env-id") + ("-scripted" if arg("--opponents") == "scripted" else "")
        run_dir = f"runs/{task}__{exp}__{seed}__{time.time_ns()}"
    os.makedirs(run_dir)
    open(os.path.join(run_dir, f"{exp}.cleanrl_model"), "w").close()
    with open(os.path.join(run_dir, "result.json"), "w") as f:
        f.write('{"run": "%s"}' % run_dir)
    if script == "ctedd_global.py":
        open(os.path.join(run_dir, "buffer.npz"), "w").close()
    with open("events.txt", "a") as f:
        f.write(f"end {script} {exp} {seed} {run_dir} {time.time()}\\n")
    """
)


@pytest.fixture
def fake_scripts(tmp_path, monkeypatch):
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    for name in ("ctedd_global.py", "ctedd_distill.py", "maddpg.py"):
        (scripts / name).write_text(FAKE_SCRIPT)
    monkeypatch.setattr(run, "SCRIPTS_DIR", str(scripts))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def grid(seeds=(1, 2)):
    return run.build_grid(["simple_tag-scripted"], list(seeds), [1, 3], 5000, ["--alpha", "0.1"], [], [])


def test_grid_expansion():
    jobs = grid()
    assert len(jobs) == 2 * (1 + 2 + 2)
    commands = [" ".join(job.command("runs")) for job in jobs]
    stage1 = [c for c in commands if "ctedd_global.py" in c]
    assert len(stage1) == 2 and all("--opponents scripted" in c and "--alpha 0.1" in c for c in stage1)
    assert all("--total-timesteps 5000" in c for c in stage1)
    maddpg = [c for c in commands if "maddpg.py" in c]
    assert sorted(c.split("--message-bits ")[1].split()[0] for c in maddpg) == ["1", "1", "3", "3"]
    assert all("--opponents scripted" in c for c in maddpg)
    distill = [job for job in jobs if job.script == "ctedd_distill.py"]
    assert all(job.after.script == "ctedd_global.py" and job.after.seed == job.seed for job in distill)
    assert all("--global-run" in " ".join(job.command("runs")) for job in distill)


def test_tasks_become_the_scripts_flags_and_both_channels_are_separate_runs():
    jobs = run.build_grid(
        ["simple_spread-an1-ln2", "simple_tag"], [1], [0, 1], 5000, channels=["differentiable", "reinforced"]
    )
    spread = {job.name: " ".join(job.command("runs")) for job in jobs if job.task == "simple_spread-an1-ln2"}
    assert sorted(spread) == [
        "ctedd_distill",
        "ctedd_global",
        "maddpg_k0",
        "maddpg_k1_differentiable",
        "maddpg_k1_reinforced",
    ]
    assert "--env-id simple_spread --agent-neighbors 1 --landmark-neighbors 2" in spread["ctedd_global"]
    assert "--message-bits 1 --channel reinforced" in spread["maddpg_k1_reinforced"]
    tag = [" ".join(job.command("runs")) for job in jobs if job.task == "simple_tag"]
    assert not any("--opponents" in c for c in tag)  # self-play: the prey learns too
    assert report.label("simple_spread-an1__maddpg_k1_reinforced") == "MADDPG-1 (reinforced)"
    assert report.label("simple_spread-an1__maddpg_k0") == "MADDPG-0"
    with pytest.raises(run.UsageError, match="unknown part 'x'"):
        run.build_grid(["simple_tag-x"], [1], [1], 5000)


def test_methods_restricts_the_grid():
    only_maddpg = run.build_grid(["simple_spread"], [2, 3], [3], 5000, [], [], [], methods=["maddpg"])
    assert [(job.name, job.seed) for job in only_maddpg] == [
        ("maddpg_k3_differentiable", 2),
        ("maddpg_k3_differentiable", 3),
    ]
    only_ctedd = run.build_grid(["simple_spread"], [1], [1, 3], 5000, [], [], [], methods=["ctedd"])
    assert [job.script for job in only_ctedd] == ["ctedd_global.py", "ctedd_distill.py", "ctedd_distill.py"]


def read_events(root):
    return [line.split() for line in (root / "events.txt").read_text().splitlines()]


def test_distillations_start_after_their_stage1_run_and_finished_runs_are_skipped(fake_scripts, capsys):
    assert (
        run.run_grid(grid(), workers=2, runs_dir="runs", logs_dir="logs", results_dir="results", poll_seconds=0.05) == 0
    )
    events = read_events(fake_scripts)
    ends = {(e[2], e[3]): float(e[5]) for e in events if e[0] == "end" and e[1] == "ctedd_global.py"}
    distill_starts = [e for e in events if e[0] == "start" and e[1] == "ctedd_distill.py"]
    assert len(distill_starts) == 4
    for e in distill_starts:
        assert float(e[5]) >= ends[("ctedd_global", e[3])]  # after its own seed's stage-1 run
        assert f"__{e[3]}__" in e[4]  # reads that run's directory
    assert len(list((fake_scripts / "logs").iterdir())) == 10
    (fake_scripts / "events.txt").unlink()
    capsys.readouterr()
    assert (
        run.run_grid(grid(), workers=2, runs_dir="runs", logs_dir="logs", results_dir="results", poll_seconds=0.05) == 0
    )
    assert not (fake_scripts / "events.txt").exists()  # nothing was run again
    assert capsys.readouterr().out.count("skip (finished)") == 10
    results = sorted(str(p.relative_to(fake_scripts / "results")) for p in (fake_scripts / "results").rglob("*.json"))
    assert len(results) == 10 and "simple_tag-scripted/ctedd_distill_k3__2.json" in results
    assert not list((fake_scripts / "runs").glob("*/buffer.npz"))  # dropped once the distillations were done


def test_on_a_fresh_machine_the_grid_goes_on_from_the_kept_results(fake_scripts):
    assert (
        run.run_grid(grid([1]), workers=2, runs_dir="runs", logs_dir="logs", results_dir="results", poll_seconds=0.05)
        == 0
    )
    shutil.rmtree(fake_scripts / "runs")  # a fresh machine: the results are all the repository has
    (fake_scripts / "results" / "simple_tag-scripted" / "ctedd_distill_k1__1.json").unlink()
    (fake_scripts / "events.txt").unlink()
    assert (
        run.run_grid(grid([1]), workers=2, runs_dir="runs", logs_dir="logs", results_dir="results", poll_seconds=0.05)
        == 0
    )
    started = sorted((e[1], e[2]) for e in read_events(fake_scripts) if e[0] == "start")
    # the missing distillation needs its stage-1 buffer again; everything else is kept
    assert started == [("ctedd_distill.py", "ctedd_distill"), ("ctedd_global.py", "ctedd_global")]


def test_a_failed_run_is_reported_and_does_not_stop_the_others(fake_scripts, monkeypatch, capsys):
    monkeypatch.setenv("FAIL", "ctedd_global.py:2")
    assert (
        run.run_grid(grid(), workers=2, runs_dir="runs", logs_dir="logs", results_dir="results", poll_seconds=0.05) == 3
    )
    out = capsys.readouterr().out
    assert "FAILED" in out and "logs/simple_tag-scripted__ctedd_global__2.log" in out
    assert out.count("its stage-1 run failed") == 2
    finished = [e for e in read_events(fake_scripts) if e[0] == "end"]
    assert len(finished) == 7  # everything but seed 2's stage 1 and its two distillations


def write_run(runs_dir, name, values, steps=(100_000, 200_000, 300_000)):
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(runs_dir / name))
    for step, value in zip(steps, values):
        writer.add_scalar("eval/episodic_return", value, step)
    writer.add_scalar("charts/SPS", 1000, steps[-1])
    writer.close()


def test_report_table_and_plot_from_synthetic_event_files(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs, "simple_spread__maddpg_k1_differentiable__1__1", [-60, -50, -40])
    write_run(runs, "simple_spread__maddpg_k1_differentiable__2__1", [-70, -45, -44])
    write_run(runs, "simple_spread__maddpg_k1_differentiable__3__1", [-65, -55, -41])
    write_run(runs, "simple_spread__ctedd_distill__k1__1__1", [-80, -30, -20])
    write_run(runs, "simple_spread__unfinished__1__1", [-90], steps=(100_000,))
    groups = report.read_runs(str(runs), "eval/episodic_return", min_step=300_000)
    assert sorted(groups) == ["simple_spread__ctedd_distill__k1", "simple_spread__maddpg_k1_differentiable"]
    text = report.table(groups, {"simple_spread": -45}, at=200_000, random={"simple_spread": -79.8})
    row = next(line for line in text.splitlines() if "MADDPG-1 (differentiable)" in line)
    finals = np.array([-40, -44, -41])
    assert f"{finals.mean():.2f} ± {finals.std():.2f}" in row
    assert f"{np.mean([-50, -45, -55]):.2f}" in row  # the value at 200k steps
    assert "300k, 200k, 300k (>= -45)" in row  # env steps to reach the threshold, per seed
    assert "simple_spread MADDPG-1 (differentiable) |" in row and "simple_spread CTEDD-1 |" in text
    assert report.label("simple_tag-scripted__ctedd_global") == "CTEDD-G"
    assert report.label("simple_tag-scripted__ctedd_distill__k3") == "CTEDD-3"
    random_row = text.splitlines()[-1]
    assert "random actions" in random_row and "-79.80" in random_row
    assert random_row.count("|") == text.splitlines()[0].count("|")
    assert report.steps_to_reach({100: -60, 200: -45, 300: -40}, -45) == 200
    band = report.confidence_95(finals.astype(float))
    assert band == pytest.approx(4.30 * finals.std(ddof=1) / np.sqrt(3))
    report.plot({"eval/episodic_return": groups}, str(tmp_path / "docs" / "curves.png"), {"simple_spread": -79.8})
    assert (tmp_path / "docs" / "curves.png").stat().st_size > 1000


def test_reference_controllers_gain_return_with_every_bit_of_goal_information():
    """random < no message < 1 bit < full information, on both communication tasks: the range a
    learner must cover, and a check that the goals travel only where the controllers send them."""
    import reference_returns

    for task in reference_returns.COMMUNICATION_TASKS:
        means = [reference_returns.episode_returns(task, c, episodes=60).mean() for c in reference_returns.CONTROLLERS]
        assert means == sorted(means), (task, means)
        assert means[3] - means[1] > 10, (task, means)  # the goal is worth a lot
    for task in ("simple_spread-an1", "simple_tag-scripted", "simple_push-scripted"):
        random, full = (
            reference_returns.episode_returns(task, c, episodes=30).mean() for c in ("random", "full information")
        )
        assert full > random + 15, (task, random, full)  # the anchors of the normalised score are far apart
