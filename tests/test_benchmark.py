import glob
import hashlib
import json
import math
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import tyro
from conftest import FAKE_SCRIPT, ROOT, assert_one_line_error, run_module

from benchmark import grid, report, run
from common.utils import UsageError, save_checkpoint


def tag_grid(seeds=(1, 2)):
    return grid.build_grid(
        ["simple_tag-scripted"], list(seeds), grid.predefined_arms([1, 3], ctedd_args=["--alpha", "0.1"]), 5000
    )


def test_grid_expansion():
    jobs = tag_grid()
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
    arms = grid.predefined_arms([0, 1], channels=["differentiable", "reinforced"])
    jobs = grid.build_grid(["simple_spread-an1-ln2", "simple_tag"], [1], arms, 5000)
    spread = {job.name: " ".join(job.command("runs")) for job in jobs if job.task == "simple_spread-an1-ln2"}
    assert sorted(spread) == [
        "ctedd_distill_k0",
        "ctedd_distill_k1",
        "ctedd_global",
        "maddpg_k0",
        "maddpg_k1_differentiable",
        "maddpg_k1_reinforced",
    ]
    assert "--env-id simple_spread --agent-neighbors 1 --landmark-neighbors 2" in spread["ctedd_global"]
    assert "--message-bits 1 --channel reinforced" in spread["maddpg_k1_reinforced"]
    tag = [" ".join(job.command("runs")) for job in jobs if job.task == "simple_tag"]
    assert not any("--opponents" in c for c in tag)  # self-play: the prey learns too
    stems = {Path(job.result_path("results")).stem.rsplit("__", 1)[0] for job in jobs}
    assert stems <= set(report.METHODS)  # every run of the grid has its place in the report
    assert report.METHODS["maddpg_k1_reinforced"][0] == "MADDPG-1 (reinf.)"
    with pytest.raises(UsageError, match="unknown part 'x'"):
        grid.build_grid(["simple_tag-x"], [1], grid.predefined_arms([1]), 5000)


def test_methods_restricts_the_grid():
    only_maddpg = grid.build_grid(["simple_spread"], [2, 3], grid.predefined_arms([3], ["maddpg"]), 5000)
    assert [(job.name, job.seed) for job in only_maddpg] == [
        ("maddpg_k3_differentiable", 2),
        ("maddpg_k3_differentiable", 3),
    ]
    only_ctedd = grid.build_grid(["simple_spread"], [1], grid.predefined_arms([1, 3], ["ctedd"]), 5000)
    assert [job.script for job in only_ctedd] == ["ctedd_global.py", "ctedd_distill.py", "ctedd_distill.py"]


def test_arms_named_on_the_command_line_join_the_predefined_ones(tmp_path):
    spec_distill = "cf=ctedd_distill.py@ctedd_global:--message-bits 1 --relabel counterfactual"
    args = ["--tasks", "simple_spread", "--seeds", "1", "--methods", "ctedd", "--bits", "1", "--workers", "0"]
    result = run_module(
        "benchmark.run", *args, "--arm", spec_distill, "--arm", "m2=maddpg.py:--message-bits 2", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    commands = [line.split(".py ", 1)[1] for line in result.stdout.splitlines()]
    assert commands[2] == (
        "--exp-name cf --seed 1 --global-run '<ctedd_global run of seed 1>' --message-bits 1 --relabel counterfactual"
    )
    assert commands[3] == (
        "--exp-name m2 --seed 1 --env-id simple_spread --save-model --total-timesteps 1000000 "
        "--checkpoint-frequency 0 --message-bits 2"
    )
    assert grid.parse_arm("d=ctedd_distill.py").stage1 == "ctedd_global"  # the distillation script reads CTEDD-G
    assert grid.parse_arm("m=maddpg.py:--channel 'reinforced'").args == ("--channel", "reinforced")


@pytest.mark.parametrize(
    "spec, reason",
    [
        ("maddpg.py", "expected NAME=SCRIPT[@STAGE1][:ARGS]"),
        ("x=nowhere.py", "no script nowhere.py in the repository"),
        ("a/b=maddpg.py", "'a/b' is not an arm name"),
        ("a__b=maddpg.py", "'a__b' is not an arm name"),
        ("maddpg_k0=maddpg.py", "two arms are named maddpg_k0"),
        ("d=ctedd_distill.py@nobody", "reads the runs of arm nobody, which is not in the grid"),
        ("d=ctedd_distill.py@ctedd_distill_k0", "reads arm ctedd_distill_k0, a distillation"),
        ("m=maddpg.py:--seed 3", "the grid sets --seed itself"),
        ("m=maddpg.py:--tau '0.1", "cannot split its ARGS"),
    ],
)
def test_a_bad_arm_is_one_line_of_error(spec, reason, tmp_path):
    result = run_module("benchmark.run", "--bits", "0", "--arm", spec, "--workers", "0", cwd=tmp_path)
    assert_one_line_error(result, reason)


def test_a_fork_runs_the_tuned_setting_of_the_method_it_copies_and_its_own_flags_win(tmp_path):
    tuned = {"simple_spread": {"ctedd_global": ["--hidden-dim", "70", "--batch-size", "1588", "--twin-critics"]}}
    (tmp_path / "tuned.json").write_text(json.dumps({"settings": tuned}))
    args = ["--tasks", "simple_spread", "--seeds", "1", "--methods", "--workers", "0", "--tuned", "tuned.json"]
    fork = ["--arm", "mine=ctedd_global.py:--hidden-dim 256 --no-twin-critics", "--arm", "plain=ctedd_global.py"]
    result = run_module("benchmark.run", *args, *fork, "--tuned-as", "mine=ctedd_global", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    mine, plain = [line.split("--checkpoint-frequency 0", 1)[1].strip() for line in result.stdout.splitlines()]
    assert mine == "--hidden-dim 256 --no-twin-critics --batch-size 1588"  # the tuned width and critics dropped
    assert plain == ""  # an arm without --tuned-as, and not in the file under its name, runs the defaults
    for extra, reason in [
        (["--tuned-as", "mine=maddpg_k0"], "the tuned file has no settings of maddpg_k0 on simple_spread"),
        (["--tuned-as", "other=ctedd_global"], "expected ARM=METHOD, ARM an --arm of this grid"),
        (["--tuned-as", "mine"], "expected ARM=METHOD"),
    ]:
        assert_one_line_error(run_module("benchmark.run", *args, *fork, *extra, cwd=tmp_path), reason)
    untuned = [a for a in args if a not in ("--tuned", "tuned.json")]
    result = run_module("benchmark.run", *untuned, *fork, "--tuned-as", "mine=ctedd_global", cwd=tmp_path)
    assert_one_line_error(result, "--tuned-as takes a method's settings from the --tuned file")


def test_an_arm_and_its_distillation_run_in_the_grid_and_keep_their_results(fake_scripts):
    (fake_scripts / "scripts" / "my_global.py").write_text(FAKE_SCRIPT)
    arms = [
        grid.parse_arm("mine=my_global.py:--alpha 0.5"),
        grid.parse_arm("mine_k2=ctedd_distill.py@mine:--message-bits 2"),
    ]
    jobs = grid.build_grid(["simple_spread"], [1], arms, 5000)
    assert (
        run.run_grid(jobs, workers=2, runs_dir="runs", logs_dir="logs", results_dir="results", poll_seconds=0.05) == 0
    )
    events = read_events(fake_scripts)
    (stage1_end,) = [float(e[5]) for e in events if e[0] == "end" and e[1] == "my_global.py"]
    (distill_start,) = [e for e in events if e[0] == "start" and e[1] == "ctedd_distill.py"]
    assert distill_start[2] == "mine_k2" and "runs/simple_spread__mine__1__" in distill_start[4]  # reads its own arm
    assert float(distill_start[5]) >= stage1_end
    kept = sorted(p.name for p in (fake_scripts / "results" / "simple_spread").iterdir())
    assert kept == ["mine__1.json", "mine_k2__1.json"]
    assert sorted(p.name for p in (fake_scripts / "logs").iterdir()) == [
        "simple_spread__mine__1.log",
        "simple_spread__mine_k2__1.log",
    ]


def read_events(root):
    return [line.split() for line in (root / "events.txt").read_text().splitlines()]


def test_distillations_start_after_their_stage1_run_and_finished_runs_are_skipped(fake_scripts, capsys):
    assert (
        run.run_grid(tag_grid(), workers=2, runs_dir="runs", logs_dir="logs", results_dir="results", poll_seconds=0.05)
        == 0
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
        run.run_grid(tag_grid(), workers=2, runs_dir="runs", logs_dir="logs", results_dir="results", poll_seconds=0.05)
        == 0
    )
    assert not (fake_scripts / "events.txt").exists()  # nothing was run again
    assert capsys.readouterr().out.count("skip (finished)") == 10
    results = sorted(str(p.relative_to(fake_scripts / "results")) for p in (fake_scripts / "results").rglob("*.json"))
    assert len(results) == 10 and "simple_tag-scripted/ctedd_distill_k3__2.json" in results
    assert not list((fake_scripts / "runs").glob("*/buffer.npz"))  # dropped once the distillations were done


def test_on_a_fresh_machine_the_grid_goes_on_from_the_kept_results(fake_scripts):
    assert (
        run.run_grid(
            tag_grid([1]), workers=2, runs_dir="runs", logs_dir="logs", results_dir="results", poll_seconds=0.05
        )
        == 0
    )
    shutil.rmtree(fake_scripts / "runs")  # a fresh machine: the results are all the repository has
    (fake_scripts / "results" / "simple_tag-scripted" / "ctedd_distill_k1__1.json").unlink()
    (fake_scripts / "events.txt").unlink()
    assert (
        run.run_grid(
            tag_grid([1]), workers=2, runs_dir="runs", logs_dir="logs", results_dir="results", poll_seconds=0.05
        )
        == 0
    )
    started = sorted((e[1], e[2]) for e in read_events(fake_scripts) if e[0] == "start")
    # the missing distillation needs its stage-1 buffer again; everything else is kept
    assert started == [("ctedd_distill.py", "ctedd_distill"), ("ctedd_global.py", "ctedd_global")]


def test_a_stale_distillation_runs_its_stage1_run_again_when_the_buffer_is_gone(fake_scripts):
    options = dict(workers=2, runs_dir="runs", logs_dir="logs", results_dir="results", poll_seconds=0.05)
    assert run.run_grid(tag_grid([1]), **options) == 0
    path = fake_scripts / "results" / "simple_tag-scripted" / "ctedd_distill_k1__1.json"
    kept = json.loads(path.read_text())
    path.write_text(json.dumps({**kept, "args": {**kept["args"], "learning_rate": 0.5}}))  # only the student's stale
    (fake_scripts / "events.txt").unlink()
    assert run.run_grid(tag_grid([1]), **options) == 0  # the buffer was dropped: its teacher runs again
    started = sorted((e[1], e[2]) for e in read_events(fake_scripts) if e[0] == "start")
    assert started == [("ctedd_distill.py", "ctedd_distill"), ("ctedd_global.py", "ctedd_global")]


def rerun_tag_grid(root, **options) -> list[tuple[str, str]]:
    """Run the seed-1 tag grid again on the kept results; the (script, exp name) of the runs it started."""
    (root / "events.txt").unlink(missing_ok=True)
    grid_options = dict(workers=2, runs_dir="runs", logs_dir="logs", results_dir="results", poll_seconds=0.05)
    assert run.run_grid(tag_grid([1]), **grid_options, **options) == 0
    events = read_events(root) if (root / "events.txt").exists() else []
    return sorted((e[1], e[2]) for e in events if e[0] == "start")


def test_a_kept_result_made_with_other_settings_is_run_again_or_refused(fake_scripts, capsys):
    assert rerun_tag_grid(fake_scripts) == [("ctedd_distill.py", "ctedd_distill")] * 2 + [
        ("ctedd_global.py", "ctedd_global"),
        ("maddpg.py", "maddpg_k1_differentiable"),
        ("maddpg.py", "maddpg_k3_differentiable"),
    ]
    path = fake_scripts / "results" / "simple_tag-scripted" / "ctedd_global__1.json"
    kept = json.loads(path.read_text())
    path.write_text(json.dumps({**kept, "args": {**kept["args"], "learning_rate": 0.01}}))  # a planted stale result
    capsys.readouterr()
    with pytest.raises(UsageError, match="3 kept results are stale"):  # the stage-1 run and its two distillations
        rerun_tag_grid(fake_scripts, stale="refuse")
    out = capsys.readouterr().out
    assert "ctedd_global__1.json: made with --learning-rate 0.01 (now 0.001)" in out
    assert "ctedd_distill_k1__1.json: it distils a stale ctedd_global result" in out
    assert not (fake_scripts / "events.txt").exists()  # refused before anything ran
    distillations = [("ctedd_distill.py", "ctedd_distill")] * 2
    assert rerun_tag_grid(fake_scripts) == [*distillations, ("ctedd_global.py", "ctedd_global")]
    assert json.loads(path.read_text())["args"]["learning_rate"] == 0.001  # made again at today's settings
    assert rerun_tag_grid(fake_scripts) == []  # and kept


def test_a_kept_result_made_by_other_code_or_defaults_is_run_again(fake_scripts, capsys):
    rerun_tag_grid(fake_scripts)
    script = fake_scripts / "scripts" / "maddpg.py"
    script.write_text(script.read_text() + "\n# a change that leaves the numbers as they were\n")
    capsys.readouterr()
    assert rerun_tag_grid(fake_scripts, accept_code_changes=True) == []  # the same settings: accepted
    runs_of_maddpg = [("maddpg.py", "maddpg_k1_differentiable"), ("maddpg.py", "maddpg_k3_differentiable")]
    assert rerun_tag_grid(fake_scripts) == runs_of_maddpg
    assert "made by other code (maddpg.py " in capsys.readouterr().out
    new_flag = "alpha: float = 1.0\n    beta: float = 0.5\n"  # a flag added since, at its default
    script.write_text(script.read_text().replace("alpha: float = 1.0\n", new_flag))
    assert rerun_tag_grid(fake_scripts, accept_code_changes=True) == []  # at its default it changes nothing
    assert "--beta" not in capsys.readouterr().out
    script.write_text(script.read_text().replace("learning_rate: float = 0.001", "learning_rate: float = 0.002"))
    assert rerun_tag_grid(fake_scripts, accept_code_changes=True) == runs_of_maddpg  # a default changed: never kept
    assert "made with --learning-rate 0.001 (now 0.002)" in capsys.readouterr().out


def test_an_unfinished_run_made_with_other_settings_is_not_resumed(fake_scripts, capsys):
    (job,) = grid.build_grid(["simple_spread"], [1], grid.predefined_arms([], ["ctedd"]), 5000)
    run_dir = fake_scripts / "runs" / "simple_spread__ctedd_global__1__1"
    run_dir.mkdir(parents=True)
    settings = {
        **grid.script_args(str(fake_scripts / "scripts" / "ctedd_global.py"), "")().__dict__,
        "env_id": "simple_spread",
    }
    save_checkpoint(run_dir / "checkpoint.pt", {"args": {**settings, "total_timesteps": 5000}})
    grid.skip_finished([job], "runs", "results")
    assert "--resume" in job.command("runs")  # made as the job would make it: resumed
    save_checkpoint(run_dir / "checkpoint.pt", {"args": {**settings, "total_timesteps": 5000, "alpha": 0.3}})
    job.stale_runs = ()
    grid.skip_finished([job], "runs", "results")
    assert "--resume" not in job.command("runs")
    assert (
        "not resumed: runs/simple_spread__ctedd_global__1__1: made with --alpha 0.3 (now 1.0)"
        in capsys.readouterr().out
    )


def test_a_corrupt_or_foreign_kept_result_is_one_line_of_error(tmp_path):
    kept = tmp_path / "results" / "simple_spread" / "ctedd_global__1.json"
    kept.parent.mkdir(parents=True)
    args = ["--tasks", "simple_spread", "--seeds", "1", "--methods", "ctedd", "--bits", "1", "--results-dir"]
    for content, reason in (("{", "is not valid JSON"), ("[1, 2]", "is not a result.json of this project's scripts")):
        kept.write_text(content)
        result = run_module("benchmark.run", *args, str(tmp_path / "results"), cwd=tmp_path)
        assert_one_line_error(result, f"{kept} {reason}")
        assert_one_line_error(
            run_module("benchmark.report", "--results-dir", str(tmp_path / "results"), cwd=tmp_path), reason
        )


def test_a_failed_run_is_reported_and_does_not_stop_the_others(fake_scripts, monkeypatch, capsys):
    monkeypatch.setenv("FAIL", "ctedd_global.py:2")
    assert (
        run.run_grid(tag_grid(), workers=2, runs_dir="runs", logs_dir="logs", results_dir="results", poll_seconds=0.05)
        == 3
    )
    out = capsys.readouterr().out
    assert "FAILED" in out and "logs/simple_tag-scripted__ctedd_global__2.log" in out
    assert out.count("its stage-1 run failed") == 2
    finished = [e for e in read_events(fake_scripts) if e[0] == "end"]
    assert len(finished) == 7  # everything but seed 2's stage 1 and its two distillations


def write_result(results, task, name, seed, curve, args):
    """A result.json as the scripts write it: the curve (env step, summed return) ends at the final evaluation;
    the run's arguments (a distillation's hold its stage-1 run, --global-run)."""
    path = results / task / f"{name}__{seed}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    final = {"sum": curve[-1][1], "team_returns": {"good": curve[-1][1]}, "returns": {}, "sums": [curve[-1][1]] * 3}
    losses = [[step, 0.5 if step < 10 else 0.1] for step in range(20)]  # eq. (2): 0.1 over the last tenth
    result = {"curve": curve, "final": {"step": curve[-1][0], **final}, "losses": losses, "args": args}
    path.write_text(json.dumps(result))


STAGE1 = {"global_run": "runs/simple_reference__ctedd_global__1__0"}


def synthetic_results(tmp_path, rng):
    """Two tasks, references random -100 and full information 0; CTEDD-G clearly better than MADDPG-0."""
    results = tmp_path / "results"
    tasks = list(report.CHANNEL_TASKS)
    references = {t: {"random": -100.0, "full information": 0.0} for t in tasks}
    (results).mkdir()
    (results / "references.json").write_text(json.dumps({"returns": references}))
    for task in tasks:
        for seed in range(1, 6):
            arms = (("ctedd_global", -20, {}), ("maddpg_k0", -60, {"message_bits": 0}))
            for name, level, args in (*arms, ("ctedd_distill_k0", -60, {**STAGE1, "message_bits": 0})):
                final = level + rng.normal(0, 3)
                write_result(results, task, name, seed, [[500_000, final - 10], [1_000_000, final]], args)
    return results


def test_report_normalises_aggregates_with_rliable_and_gives_verdicts(tmp_path):
    results_dir = synthetic_results(tmp_path, np.random.default_rng(0))
    results, references = report.load_results(results_dir), report.load_references(results_dir)
    assert report.normalise([-100, -50, 0], "simple_reference", references).tolist() == [0.0, 0.5, 1.0]
    seeds = report.common_seeds(results, report.CHANNEL_TASKS, ["ctedd_global", "maddpg_k0"])
    assert seeds == [1, 2, 3, 4, 5]
    scores = report.score_matrix(results, references, report.CHANNEL_TASKS, "ctedd_global", seeds)
    assert scores.shape == (5, 3) and 0.7 < scores.mean() < 0.9
    text, found = report.aggregate_table(results, references, reps=200)
    methods, point, interval = found["channel tasks"]
    assert interval["ctedd_global"].ravel()[0] > interval["maddpg_k0"].ravel()[1]  # intervals apart
    assert "| CTEDD-G | 5 x 3 |" in text
    text, claims = report.claims_table(results, references, reps=200)
    p, ci = claims["channel tasks", "ctedd_distill_k0", "maddpg_k0", "final"]
    assert 0.0 <= ci[0] <= p <= ci[1] <= 1.0 and report.verdict(ci) == "cannot tell"  # the same level
    assert report.verdict((0.6, 0.9)) == "holds" and report.verdict((0.1, 0.4)) == "does not hold"
    assert report.verdict((0.6, 0.9), seeds=2) == "too few seeds (2)"  # no verdict below 5 seeds
    assert "CTEDD-0 > MADDPG-0" in text
    p, ci = claims["simple_reference", "ctedd_global", "maddpg_k0", "curve"]  # one task alone, whole curve
    assert p == 1.0 and report.verdict(ci) == "holds"
    summary = report.claims_summary(results, claims)
    assert "| CTEDD-G > MADDPG-0, whole curve | ✓ 1.00 [1.00, 1.00] |" in summary
    steps, curves = report.curves(results, references, report.CHANNEL_TASKS, "maddpg_k0", seeds)
    assert steps.tolist() == [0.5, 1.0] and curves.shape == (5, 3, 2)  # the share of the budget, 1M env steps
    assert "| task | CTEDD-0 |\n|---|---|\n" in report.distillation_table(results)  # the distillations with results
    assert "| simple_reference | 0.100 ± 0.000 |" in report.distillation_table(results)
    table = report.final_table(results, references, reps=200)
    assert table.count("simple_reference") == 3  # one row per method that ran there
    report.plot_curves(results, references, str(tmp_path / "docs" / "curves.png"))
    report.plot_aggregate(results, found, str(tmp_path / "docs" / "aggregate.png"))
    report.plot_improvement(results, claims, str(tmp_path / "docs" / "improvement.png"))
    report.plot_efficiency(results, references, str(tmp_path / "docs" / "efficiency.png"), reps=50)
    assert all((tmp_path / "docs" / f"{n}.png").stat().st_size > 5000 for n in ("curves", "aggregate", "improvement"))


def test_tasks_of_different_budgets_pool_their_whole_curves_at_the_same_share_of_each_budget(tmp_path):
    """Tag runs 2M env steps, the other controls 1M: pooled, tag's curve is read to its end, not cut at 1M."""
    results_dir = tmp_path / "results"
    tasks = list(report.CONTROL_TASKS)
    references = {t: {"random": -100.0, "full information": 0.0} for t in tasks}
    results_dir.mkdir()
    (results_dir / "references.json").write_text(json.dumps({"returns": references}))
    for task in tasks:
        budget = 2_000_000 if task == "simple_tag-scripted" else 1_000_000
        curve = [[budget // 4 * quarter, -100.0 + 25 * quarter] for quarter in range(1, 5)]  # 0.25 ... 1.0
        for seed in range(1, 6):
            write_result(results_dir, task, "maddpg_k0", seed, curve, {"message_bits": 0})
    results, references = report.load_results(results_dir), report.load_references(results_dir)
    assert report.budgets(results, tasks, "maddpg_k0", [1]) == [
        2_000_000 if t == "simple_tag-scripted" else 1_000_000 for t in tasks
    ]
    progress, scores = report.curves(results, references, tasks, "maddpg_k0", [1, 2, 3, 4, 5])
    assert progress.tolist() == [0.25, 0.5, 0.75, 1.0] and scores.shape == (5, 3, 4)
    assert np.allclose(scores, [0.25, 0.5, 0.75, 1.0])  # every task, tag too, ends at its full-information level
    report.plot_efficiency(results, references, str(tmp_path / "efficiency.png"), reps=20)
    assert (tmp_path / "efficiency.png").stat().st_size > 5000


def test_an_arm_not_predefined_is_reported_under_its_name_with_the_claims_asked_for(tmp_path):
    results_dir = synthetic_results(tmp_path, np.random.default_rng(0))
    for seed in range(1, 6):
        for task in report.CHANNEL_TASKS:
            write_result(
                results_dir, task, "mine", seed, [[500_000, -40.0], [1_000_000, -30.0 + seed]], {"message_bits": 2}
            )
            write_result(results_dir, task, "mine_d", seed, [[1_000_000, -50.0 + seed]], {**STAGE1, "message_bits": 1})
    results, references = report.load_results(results_dir), report.load_references(results_dir)
    assert report.arms_of(results) == ["ctedd_global", "ctedd_distill_k0", "maddpg_k0", "mine", "mine_d"]
    assert report.style(results, "mine") == ("mine (k = 2)", report.OTHER_COLOURS[0], "-")
    assert report.distillations(results) == ["ctedd_distill_k0", "mine_d"]
    assert "| simple_reference | mine (k = 2) | 5 | -27.00 ± 1.41 |" in report.final_table(results, references, reps=50)
    assert "| channel tasks | mine_d (k = 1) | 5 x 3 |" in report.aggregate_table(results, references, reps=50)[0]
    claims = [*report.CLAIMS, report.parse_claim("mine>maddpg_k0:curve", results)]
    text, found = report.claims_table(results, references, 50, claims)
    assert "| mine (k = 2) > MADDPG-0, whole curve | channel tasks | 5 x 3 |" in text
    summary = report.claims_summary(results, found, claims)
    assert "CTEDD-3" not in summary and "| mine (k = 2) > MADDPG-0, whole curve | ✓" in summary  # no CTEDD-3 results
    assert "| simple_reference | 0.100 ± 0.000 | 0.100 ± 0.000 |" in report.distillation_table(results)
    report.plot_curves(results, references, str(tmp_path / "curves.png"))
    report.plot_improvement(results, found, str(tmp_path / "improvement.png"), claims)
    for bad, reason in (("mine>nobody", "no results for arm 'nobody'"), ("mine", "expected X>Y or X>Y:curve")):
        with pytest.raises(UsageError, match=reason):
            report.parse_claim(bad, results)
    args = ["--results-dir", str(results_dir), "--reps", "50"]
    result = run_module("benchmark.report", *args, "--claim", "mine>ctedd_global", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "| mine (k = 2) > CTEDD-G | channel tasks | 5 x 3 |" in result.stdout
    assert_one_line_error(
        run_module("benchmark.report", *args, "--claim", "mine>x", cwd=tmp_path), "no results for arm 'x'"
    )


def test_the_report_warns_of_mixed_budgets_settings_and_code_and_reads_a_baseline(tmp_path):
    results_dir = synthetic_results(tmp_path, np.random.default_rng(0))
    results = report.load_results(results_dir)
    assert report.warnings(results) == []  # every arm alike: nothing to warn of
    code = {"script": "mine.py", "script_sha256": "a", "common_sha256": "b"}
    for seed in range(1, 6):
        args = {"message_bits": 2, "total_timesteps": 200_000, "learning_rate": 0.01 if seed == 4 else 0.001}
        write_result(results_dir, "simple_reference", "mine", seed, [[200_000, -30.0]], args)
        kept = results_dir / "simple_reference" / f"mine__{seed}.json"
        kept.write_text(json.dumps({**json.loads(kept.read_text()), "code": code}))
    write_result(results_dir, "simple_reference", "other", 1, [[1_000_000, -30.0]], {"total_timesteps": 1_000_000})
    lines = report.warnings(report.load_results(results_dir))
    assert (
        "mine on simple_reference mixes results made otherwise: seeds 1 / 4 differ in --learning-rate 0.001 / 0.01"
        in lines
    )
    budgets = "on simple_reference the training arms ran different budgets (200000 env steps: mine; 1000000 env"
    assert f"{budgets} steps: other)" in lines
    assert lines[-1].startswith("the results were made by different versions of common/ (b: mine; unknown: ")
    assert len(lines) == 3
    mine = tmp_path / "mine"
    write_result(mine, "simple_reference", "mine", 1, [[1_000_000, -30.0]], {"message_bits": 2})
    merged, taken = report.with_baseline(report.load_results(mine), results)
    assert taken == ["ctedd_distill_k0", "ctedd_global", "maddpg_k0"] and list(merged) == ["simple_reference"]
    assert merged["simple_reference"]["mine"][1]["curve"] == [[1_000_000, -30.0]]  # its own runs, not the baseline's


def test_the_stronger_learners_study_tables_each_change_against_the_defaults(tmp_path):
    from benchmark.analysis import stronger

    assert stronger.split("ctedd_global_td3") == ("ctedd_global", "td3")
    assert stronger.split("maddpg_k3_differentiable") == ("maddpg_k3_differentiable", "none")
    with pytest.raises(UsageError, match="does not start with"):
        stronger.split("mine")
    results = tmp_path / "results"
    peak_then_fall = [[300_000, -40.0], [700_000, -12.0], [800_000, -20.0], [1_000_000, -30.0]]
    for seed in (101, 102):
        write_result(results, "simple_reference", "ctedd_global", seed, peak_then_fall, {})
        write_result(results, "simple_reference", "ctedd_global_td3", seed, [[500_000, -30.0], [1_000_000, -14.0]], {})
    references = {"simple_reference": {"random": -100.0, "full information": 0.0}}
    found = report.load_results(results)
    numbers = stronger.run_numbers(found["simple_reference"]["ctedd_global"][101], "simple_reference", references)
    assert numbers["last"] == pytest.approx(-20.667, abs=1e-3) and numbers["fall"] == pytest.approx(0.18)
    rows = stronger.table(found, references, "simple_reference").splitlines()
    assert rows[2].startswith("| ctedd_global | none | 2 | -30.0 | -12.0 | -20.7 (-20.7 / -20.7) | 0.180 (0.180) |")
    assert rows[3].startswith("| ctedd_global | td3 | 2 | -14.0 | -14.0 | -14.0 (-14.0 / -14.0) | 0.000 (0.000) |")
    write_result(results, "simple_reference", "maddpg_k0_w128", 101, [[1_000_000, -25.0]], {})
    found = report.load_results(results)
    rows = stronger.summary(found, references).splitlines()
    assert rows[0] == "| change | reference CTEDD-G | reference MADDPG-0 |"
    assert rows[2:] == [
        "| none | -20.7 (0.180) n=2 |  |",
        "| td3 | -14.0 (0.000) n=2 |  |",
        "| w128 |  | -25.0 (0.000) n=1 |",
    ]
    stronger.plot(found, str(tmp_path / "curves.png"))
    assert (tmp_path / "curves.png").stat().st_size > 5000


def test_reference_controllers_gain_return_with_every_bit_of_goal_information():
    """random < no message < 1 bit < full information, on both communication tasks: the range a
    learner must cover, and a check that the goals travel only where the controllers send them."""
    from benchmark import reference_returns

    for task in reference_returns.COMMUNICATION_TASKS:
        controllers = reference_returns.controllers_of(task)
        assert controllers == ("random", "no message", "1 bit", "full information")
        means = [reference_returns.episode_returns(task, c, episodes=60).mean() for c in controllers]
        assert means == sorted(means), (task, means)
        assert means[3] - means[1] > 10, (task, means)  # the goal is worth a lot
    for task in ("simple_spread-an1", "simple_tag-scripted", "simple_push-scripted"):
        random, full = (
            reference_returns.episode_returns(task, c, episodes=30).mean() for c in ("random", "full information")
        )
        assert full > random + 15, (task, random, full)  # the anchors of the normalised score are far apart


def test_tags_planner_beats_the_chase_that_learners_beat_threefold(monkeypatch):
    """Tag's full-information reference plans with the world's model; learned predators beat the plain chase
    (about 50) two- to three-fold, the planner must be far above it; without its look-ahead it is not."""
    from benchmark import reference_returns

    assert reference_returns.controllers_of("simple_tag-scripted") == ("random", "chase", "full information")
    chase = reference_returns.episode_returns("simple_tag-scripted", "chase", episodes=10)
    planned = reference_returns.episode_returns("simple_tag-scripted", "full information", episodes=10)
    assert planned.mean() > 4 * chase.mean() > 0, (planned.mean(), chase.mean())
    monkeypatch.setattr(reference_returns, "PLAN_HORIZON", 1)  # one step ahead: the chase again (72 against 513)
    monkeypatch.setattr(reference_returns, "PLAN_EPISODES", 4)  # and episodes planned in several batches
    short = reference_returns.episode_returns("simple_tag-scripted", "full information", episodes=10)
    assert short.mean() < planned.mean() / 2, (short.mean(), planned.mean())


def test_mutual_information_of_goals_and_messages():
    from benchmark.analysis import messages

    bijection = [(g, (g,)) for g in range(3)] * 50  # every goal its own message
    assert messages.mutual_information(bijection) == pytest.approx(np.log2(3))
    split = [(g, (int(g == 0),)) for g in range(3)] * 50  # one bit: goal 0 or not
    h = -(1 / 3 * np.log2(1 / 3) + 2 / 3 * np.log2(2 / 3))
    assert messages.mutual_information(split) == pytest.approx(h)
    constant = [(g, (1,)) for g in range(3)] * 50
    assert messages.mutual_information(constant) == pytest.approx(0.0)


def test_the_channel_signal_holds_the_receivers_fixed_then_lets_them_answer(in_tmp):
    import maddpg
    from benchmark.analysis import channel_signal

    torch.manual_seed(0)
    policy = maddpg.LocalPolicies(2, 5, 8, message_bits=2, message_type="binary")
    obs, state = torch.randn(2, 6, 5), torch.randn(6, 10)
    actions = torch.cat([torch.rand(2, 6, 2) * 2 - 1, torch.randn(2, 6, 2).sign()], dim=-1)

    def forces_only(state, actions):  # a critic that, like an exact one, ignores the bits given the actions
        return (actions[..., : maddpg.ACTION_DIM].sum((0, -1)) + state.sum(-1)).expand(2, -1)  # every agent's forces

    fixed, responding = channel_signal.q_over_patterns(policy, forces_only, obs, state, actions, sender=0)
    assert fixed.shape == responding.shape == (4, 6)
    assert torch.equal(fixed, fixed[:1].expand_as(fixed))  # the bits alone move nothing
    assert (responding.max(0).values - responding.min(0).values).min() > 0  # the listener's answer does

    def bits_only(state, actions):  # a critic of the sender's bits: the pattern sent is the one it scores
        return actions[..., maddpg.ACTION_DIM :].sum(-1).expand(2, -1)

    fixed, _ = channel_signal.q_over_patterns(policy, bits_only, obs, state, actions, sender=1)
    assert torch.equal(fixed[3], torch.full((6,), 2.0)) and torch.equal(fixed[0], torch.full((6,), -2.0))
    # and on a saved run of maddpg.py's reinforced channel
    args = dict(env_id="simple_speaker_listener", message_bits=1, channel="reinforced", save_model=True)
    short = dict(total_timesteps=400, learning_starts=200, batch_size=32, eval_episodes=2, num_envs=4)
    maddpg.main(maddpg.Args(**args, **short))
    (model,) = glob.glob("runs/*/*.cleanrl_model")
    row = channel_signal.signal(model, episodes=3)
    assert row["patterns"] == 2 and 0.0 <= row["same_best_pattern"] <= 1.0
    assert row["q_range_receivers_fixed"] >= 0.0 and row["q_range_receivers_responding"] > 0.0
    missing = run_module("benchmark.analysis.channel_signal", "--results-dir", "nowhere", cwd=in_tmp)
    assert_one_line_error(missing, "results directory nowhere does not exist")


def test_the_message_analysis_reads_saved_policies(in_tmp):
    import maddpg
    from benchmark.analysis import messages

    for channel in ("differentiable", "reinforced"):
        args = dict(env_id="simple_speaker_listener", message_bits=1, channel=channel, save_model=True)
        maddpg.main(
            maddpg.Args(
                **args,
                total_timesteps=400,
                learning_starts=200,
                batch_size=32,
                eval_episodes=2,
                exp_name=f"maddpg_k1_{channel}",
                num_envs=4,
            )
        )
    report_ = messages.analyse(messages.senders_by_name("runs"), episodes=30)
    entries = report_["simple_speaker_listener"]
    assert set(entries) == {"MADDPG-1 (diff.)", "MADDPG-1 (reinf.)"}
    for entry in entries.values():
        (seed_entry,) = entry["seeds"].values()
        assert 0.0 <= seed_entry["mutual_information"] <= 1.0 + 1e-9  # one bit carries at most one bit
        assert sum(sum(c.values()) for c in seed_entry["messages"].values()) == 30 * 25  # every step of every episode
    table = report.messages_table(json.loads(json.dumps(report_)))  # as the report reads it back from messages.json
    mi = entries["MADDPG-1 (diff.)"]["seeds"][1]["mutual_information"]
    assert f"| simple_speaker_listener | MADDPG-1 (diff.) | 1 | {mi:.2f} | {mi:.2f} | goal 0: " in table
    # a results tree keeps one of the two runs: only that run is analysed, found by its result.json
    task_dir = Path("kept") / "simple_speaker_listener"
    task_dir.mkdir(parents=True)
    (run,) = glob.glob("runs/*maddpg_k1_reinforced*")
    shutil.copyfile(Path(run) / "result.json", task_dir / "maddpg_k1_reinforced__1.json")
    other = {**json.loads((Path(run) / "result.json").read_text()), "exp_name": "maddpg_k1_differentiable"}
    (task_dir / "maddpg_k1_differentiable__1.json").write_text(json.dumps(other))  # no run has it: named, skipped
    chosen = messages.senders_of_results("kept", ["runs"])
    sha = {
        name: hashlib.sha256((task_dir / f"{name}__1.json").read_bytes()).hexdigest()
        for name in ("maddpg_k1_reinforced", "maddpg_k1_differentiable")
    }
    model = glob.glob(f"{run}/*.cleanrl_model")[0]
    assert chosen["simple_speaker_listener"]["MADDPG-1 (reinf.)"] == (1, {1: model}, {1: sha["maddpg_k1_reinforced"]})
    assert chosen["simple_speaker_listener"]["MADDPG-1 (diff.)"] == (1, {}, {1: sha["maddpg_k1_differentiable"]})
    first = json.loads(json.dumps(messages.analyse(chosen, episodes=10)))  # as --write keeps it
    assert (
        first["simple_speaker_listener"]["MADDPG-1 (reinf.)"]["seeds"]["1"]["result_sha256"]
        == sha["maddpg_k1_reinforced"]
    )
    # on another machine the run is gone: its entry is kept while its kept result is the one it analysed
    shutil.rmtree("runs")
    gone = messages.senders_of_results("kept", ["runs"])
    merged = messages.with_earlier(messages.analyse(gone, episodes=10), first, gone)
    assert (
        merged["simple_speaker_listener"]["MADDPG-1 (reinf.)"]["seeds"][1]
        == first["simple_speaker_listener"]["MADDPG-1 (reinf.)"]["seeds"]["1"]
    )
    assert "MADDPG-1 (diff.)" not in merged["simple_speaker_listener"]  # never analysed
    (task_dir / "maddpg_k1_reinforced__1.json").write_text(json.dumps(other))  # the kept result changed: dropped
    changed = messages.senders_of_results("kept", ["runs"])
    assert messages.with_earlier(messages.analyse(changed, episodes=10), first, changed) == {}


def test_sigma_analysis_reads_diagnostics_and_replays_an_episode(in_tmp):
    import ctedd_global
    from benchmark.analysis import sigma

    args = dict(env_id="simple_speaker_listener", total_timesteps=2000, learning_starts=200, train_frequency=10)
    ctedd_global.main(ctedd_global.Args(**args, batch_size=32, eval_frequency=1000, eval_episodes=2, num_envs=4))
    runs = sigma.load_runs("runs")
    ((task, name),) = runs
    entry = runs[task, name]["omega"][0]
    assert len(entry["sigma"]) == 2 and len(entry["pg_snr"]) == 2  # per agent, per dimension
    s = sigma.summary(runs[task, name]["omega"], at=0)
    assert 0 < s["sigma"] <= 1 and s["curvature"] >= 0
    assert "| simple_speaker_listener | ctedd_global |" in sigma.diagnosis_table(runs)
    sigmas, distances = sigma.episode(runs[task, name]["run_dir"], task)
    assert sigmas.shape == (25, 2) and distances.shape == (25, 2) and (distances[:, 0] == distances[:, 1]).all()
    kept = Path("results", task, "ctedd_global__1.json")  # as the grid keeps it
    kept.parent.mkdir(parents=True)
    shutil.copyfile(Path(runs[task, name]["run_dir"], "result.json"), kept)
    assert set(sigma.load_results("results", ["ctedd_global"])) == {(task, "ctedd_global__1")}


def test_the_report_bootstraps_the_same_resamples_every_time():
    """rliable draws its resample indices from numpy's global generator: the report must seed it."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    first = report.improvement(x, y, reps=200)
    np.random.seed(12345)  # whatever ran before
    again = report.improvement(x, y, reps=200)
    assert first[0] == again[0] and np.array_equal(first[1], again[1])
    intervals = [report.iqm_intervals({"x": x}, reps=200)[1]["x"].tolist() for _ in range(2)]
    assert intervals[0] == intervals[1]


def test_tuning_draws_the_same_configurations_everywhere_starting_from_the_defaults():
    from benchmark import tune

    configs = tune.configurations("maddpg_k3_differentiable")
    assert configs == tune.configurations("maddpg_k3_differentiable")  # seeded: the same on every machine
    assert len(configs) == tune.CONFIGS >= 16 and len({json.dumps(c) for c in configs}) == len(configs)
    assert configs[0] == {**tune.DEFAULTS, "exploration_noise": 0.3548}  # the defaults compete too
    assert configs[1] == {**tune.DEFAULTS, **tune.STRONGER, "exploration_noise": 0.3548}  # and issue #34's setting
    assert all(1e-4 <= c["learning_rate"] <= 1e-2 and 50 <= c["train_frequency"] <= 200 for c in configs)
    assert all(64 <= c["hidden_dim"] <= 256 and 64 <= c["critic_hidden_dim"] <= 256 for c in configs)
    assert {c["twin_critics"] for c in configs[2:]} == {0, 1} and {c["policy_delay"] for c in configs[2:]} == {1, 2, 3}
    assert all(0.1 <= c["target_noise"] <= 0.3 and 0.1 <= c["lr_final_fraction"] <= 1 for c in configs[2:])
    ctedd = tune.configurations("ctedd_global")
    shared = [{k: v for k, v in c.items() if k in tune.DEFAULTS} for c in configs]
    assert shared == [
        {k: v for k, v in c.items() if k in tune.DEFAULTS} for c in ctedd
    ]  # the same points for every method
    assert all("exploration_noise" not in c and 0.05 <= c["target_sigma"] <= 0.6 for c in ctedd)
    flags = tune.flags({"target_sigma": 0.3, "batch_size": 512, "twin_critics": 0})
    assert flags[0] == "--target-entropy" and float(flags[1]) == pytest.approx(
        math.log(0.3 * math.sqrt(2 * math.pi * math.e)), abs=1e-6
    )
    assert flags[2:] == ["--batch-size", "512", "--no-twin-critics"] and tune.flags({"twin_critics": 1}) == [
        "--twin-critics"
    ]


SCRIPTS_OF_SINGLES = [
    ("ctedd_global", "ctedd_global.py"),
    ("maddpg_k3_differentiable", "maddpg.py"),
    ("ctedd_distill", "ctedd_distill.py"),
]


@pytest.mark.parametrize("method, script", SCRIPTS_OF_SINGLES)
def test_each_scripts_defaults_are_its_single_tuned_setting(method, script):
    from benchmark import tune

    single = json.loads((tune.TUNING / "single" / f"{method}.json").read_text())
    assert single["method"] == method and single["kept"] in ("rounded", "unrounded")
    args = grid.script_args(str(ROOT / script), "now")
    defaults, configured = vars(args()), vars(tyro.cli(args, args=single["flags"]))
    changed = {k: (defaults[k], v) for k, v in configured.items() if v != defaults[k]}
    if method == "ctedd_global":
        before, after = changed.pop("target_entropy")  # sigma 0.083: -1.06998 nats, the default -1.07
        assert after == pytest.approx(before, abs=1e-4)
    assert changed == {}


def test_the_distilled_students_default_width_is_maddpgs():
    def default_width(script):
        return grid.script_args(str(ROOT / script), "now")().hidden_dim

    assert default_width("ctedd_distill.py") == default_width("maddpg.py")  # the same local policy


def test_benchmark_v3s_own_setting_guards_the_last_rung_where_it_was_not_the_defaults():
    from benchmark import tune

    assert tune.previous_setting("simple_speaker_listener", "ctedd_global") is None  # v3 ran the defaults
    assert tune.previous_setting("simple_spread", "maddpg_k0") is None  # the controls too
    reinforced = tune.previous_setting("simple_speaker_listener", "maddpg_k3_reinforced")
    assert reinforced == {
        **tune.configurations("maddpg_k3_reinforced")[0],
        **{"learning_rate": 0.0002412, "critic_learning_rate": 0.003345, "tau": 0.01333, "train_frequency": 188},
        **{"batch_size": 1928, "actor_reg": 0.0004025, "exploration_noise": 0.3944},
    }
    an1 = tune.previous_setting("simple_spread-an1", "maddpg_k0")  # MADDPG-3's, protocol v1's configuration 0
    assert an1["learning_rate"] == 0.01 and an1["exploration_noise"] == 1.0 and an1["twin_critics"] == 0
    ctedd = tune.flags(tune.previous_setting("simple_spread-an1", "ctedd_global"))
    assert ctedd[ctedd.index("--target-entropy") + 1] == "0.214966"  # the flag v3 ran


def test_the_tuning_score_punishes_a_curve_that_collapses():
    from benchmark import tune

    references = {"t": {"random": -80.0, "full information": -10.0}}
    steps = range(25_000, 500_001, 25_000)
    holds = [[s, -10.0 if s >= 100_000 else -80.0] for s in steps]
    collapses = [[s, -10.0 if 100_000 <= s < 400_000 else -45.0] for s in steps]
    assert tune.score(holds, "t", references) == pytest.approx(1.0)
    assert tune.score(collapses, "t", references) == pytest.approx((2 * 1.0 + 5 * 0.5) / 7)  # 350k-500k: 2 of 7 high
    late = [[s, -80.0 if s < 350_000 else -10.0] for s in steps]
    assert tune.score(late, "t", references) == pytest.approx(1.0)  # only the tail counts


TUNING_SCRIPT = """
import json, math, os, time
import tyro
from benchmark.grid import script_args
from common.envs import task_name
from common.runs import code_version
Args = script_args(os.path.join(os.environ["PYTHONPATH"], "maddpg.py"), "")  # the real maddpg.py's flags
if __name__ == "__main__":
    args = tyro.cli(Args)
    with open("events.txt", "a") as f:
        f.write(f"{args.exp_name} {args.seed}\\n")
    value = -10.0 - 20.0 * (math.log10(args.learning_rate) + 2.5) ** 2 - args.seed % 2  # best at lr 10^-2.5
    task = task_name(args.env_id, args.opponents, args.agent_neighbors, args.landmark_neighbors)
    run_dir = f"runs/{task}__{args.exp_name}__{args.seed}__{time.time_ns()}"
    os.makedirs(run_dir)
    open(os.path.join(run_dir, f"{args.exp_name}.cleanrl_model"), "w").close()
    curve = [[args.total_timesteps // 2, -78.0], [args.total_timesteps, value]]
    result = {"curve": curve, "final": {}, "minutes": 0.01, "args": vars(args), "code": code_version(__file__)}
    with open(os.path.join(run_dir, "result.json"), "w") as f:
        json.dump(result, f)
"""


def test_tuning_halves_the_configurations_on_the_tuning_seeds_and_goes_on_where_it_stopped(tmp_path, monkeypatch):
    from benchmark import tune

    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "maddpg.py").write_text(TUNING_SCRIPT)
    monkeypatch.setattr(grid, "SCRIPTS_DIR", str(scripts))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # it imports maddpg.py's Args and common
    monkeypatch.setattr(tune, "TUNING", tmp_path / "tuning")
    monkeypatch.chdir(tmp_path)
    outcome = tune.tune("simple_speaker_listener", "maddpg_k3_reinforced", 4, "runs", poll=0.05)
    started = (tmp_path / "events.txt").read_text().split("\n")[:-1]
    assert len(started) == 16 + 4 * 3 + 3 and {line.split()[1] for line in started} == {"101", "102", "103"}
    first, second = outcome["rungs"]
    assert first["budget"] == 250_000 and first["seeds"] == [101] and len(first["scores"]) == 16
    assert second["budget"] == 1_000_000 and second["seeds"] == [101, 102, 103] and len(second["scores"]) == 5
    ranked = sorted(first["scores"], key=lambda i: -np.mean(first["scores"][i]))
    assert sorted(second["scores"]) == sorted([*ranked[:4], "16"])  # the best quarter goes on, and v3's setting
    configs = outcome["configurations"]
    assert configs[16] == tune.previous_setting("simple_speaker_listener", "maddpg_k3_reinforced")
    best = min(range(17), key=lambda i: abs(math.log10(configs[i]["learning_rate"]) + 2.5))
    assert outcome["chosen"] == best and outcome["env_steps"] == 16 * 250_000 + 5 * 3 * 1_000_000
    assert outcome["chosen_flags"][:2] == ["--learning-rate", str(configs[best]["learning_rate"])]
    tune.tune("simple_speaker_listener", "maddpg_k3_reinforced", 4, "runs", poll=0.05)  # all kept: nothing runs again
    assert len((tmp_path / "events.txt").read_text().split("\n")[:-1]) == len(started)
    assert f"| simple_speaker_listener | maddpg_k3_reinforced | 31 | 19M | 0.0 | {best} |" in tune.summary()
    table = tune.tuning_report("simple_speaker_listener", str(tmp_path / "tuning.png"))
    assert f"| {best} (chosen) |" in table and "| 0 (defaults) |" in table and (tmp_path / "tuning.png").is_file()
    tuned = tune.write_tuned(str(tmp_path / "tuned.json"))
    chosen = outcome["chosen_flags"]  # MADDPG-1 with the reinforced channel shares MADDPG-3's
    assert tuned["settings"] == {
        "simple_speaker_listener": {"maddpg_k3_reinforced": chosen, "maddpg_k1_reinforced": chosen}
    }
    assert tuned["shared"] == {"simple_speaker_listener": {"maddpg_k1_reinforced": "maddpg_k3_reinforced"}}
    arms = grid.predefined_arms([0, 1, 3], ["maddpg"], ["reinforced"])
    jobs = {job.name: job for job in grid.build_grid(["simple_speaker_listener"], [1], arms, 5000, tuned["settings"])}
    for name in ("maddpg_k3_reinforced", "maddpg_k1_reinforced"):
        assert jobs[name].args[-len(chosen) :] == chosen
    assert jobs["maddpg_k0"].args == ["--total-timesteps", "5000", "--message-bits", "0", "--channel", "differentiable"]
    with pytest.raises(UsageError, match="no tuned settings for task simple_reference"):
        grid.build_grid(["simple_reference"], [1], grid.predefined_arms([3]), 5000, tuned["settings"])


def test_the_single_setting_runs_every_candidate_on_every_channel_task_then_its_rounding(tmp_path, monkeypatch):
    from benchmark import tune

    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "maddpg.py").write_text(TUNING_SCRIPT)
    monkeypatch.setattr(grid, "SCRIPTS_DIR", str(scripts))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setattr(tune, "TUNING", tmp_path / "tuning")
    monkeypatch.chdir(tmp_path)
    method, configs = "maddpg_k3_differentiable", tune.configurations("maddpg_k3_differentiable")
    chosen_and_last = {"simple_speaker_listener": (3, [3, 5, 7, 9]), "simple_reference": (5, [5, 3, 8, 10])}
    chosen_and_last["simple_spread-an1"] = (3, [3, 11, 12, 13])
    for task, (chosen, last) in chosen_and_last.items():
        outcome = {"chosen": chosen, "configurations": configs, "rungs": [{"scores": {str(i): [0.5] for i in last}}]}
        (tmp_path / "tuning" / task).mkdir(parents=True)
        (tmp_path / "tuning" / task / f"{method}.json").write_text(json.dumps(outcome))
    outcome = tune.single_setting(method, 4, "runs", poll=0.05)
    started = [line.split() for line in (tmp_path / "events.txt").read_text().splitlines()]
    names = sorted({name for name, _ in started})
    assert names == [f"{method}_{label}_1000k" for label in ("rounded", "t03", "t05")]  # 3 on all, 5 on all
    assert len(started) == 3 * 3 * 3 and {seed for _, seed in started} == {"101", "102", "103"}
    assert sorted(outcome["candidates"]) == ["t03", "t05"] and outcome["best"] == 5  # lr 0.0031 nearest 10^-2.5
    assert all(len(outcome["candidates"]["t05"][task]) == 3 for task in tune.CHANNEL_TASKS)
    assert outcome["kept"] == "rounded" and outcome["setting"]["learning_rate"] == 0.0031  # 0.003099, 2 digits
    assert outcome["setting"]["batch_size"] == 450 and outcome["setting"]["train_frequency"] == 110  # 449, 111
    assert outcome["flags"] == tune.flags(outcome["setting"])
    tune.single_setting(method, 4, "runs", poll=0.05)  # all kept: nothing runs again
    assert len((tmp_path / "events.txt").read_text().splitlines()) == len(started)


def test_of_the_settings_that_score_the_same_the_single_setting_is_the_cheapest():
    from benchmark import tune

    tasks = ("a", "b")
    scores = {"t01": dict.fromkeys(tasks, [0.90, 0.90]), "t10": dict.fromkeys(tasks, [0.905, 0.905])}
    scores["t06"] = dict.fromkeys(tasks, [0.80, 0.80])
    minutes = {"t01": 1.7, "t10": 8.0, "t06": 1.0}
    assert tune.cheapest_of_the_best(scores, minutes) == "t01"  # 0.005 below the best, 4.7 times as fast
    assert tune.cheapest_of_the_best(scores, {**minutes, "t01": 9.0}) == "t10"
    scores["t01"] = {"a": [0.89, 0.89], "b": [0.89, 0.89]}  # 0.015 below: it no longer scores the same
    assert tune.cheapest_of_the_best(scores, minutes) == "t10"
    kept = [{"minutes": 8.0, "args": {}}, {"minutes": 2.0, "args": {"resume": "runs/x"}}, {"minutes": 6.0, "args": {}}]
    assert tune.run_minutes(kept) == 7.0  # a resumed run counts only the minutes since its resumption


DISTILL_SCRIPTS = """
import json, math, os, sys, time
import numpy as np
import tyro
from benchmark.grid import script_args
from common.envs import parse_task, task_name
from common.runs import code_version
SCRIPT = os.path.basename(__file__)
Args = script_args(os.path.join(os.environ["PYTHONPATH"], SCRIPT), "")  # the real script's flags
if __name__ == "__main__":
    args = tyro.cli(Args)
    with open("events.txt", "a") as f:
        f.write(f"{SCRIPT} {args.exp_name} {args.seed} {getattr(args, 'global_run', '')}\\n")
    if SCRIPT == "ctedd_distill.py":
        assert os.path.isfile(os.path.join(args.global_run, "buffer.npz"))  # it reads its teacher's buffer
        task = os.path.basename(args.global_run).split("__")[0]
        name = f"runs/{task}__{args.exp_name}__k{args.message_bits}__{args.seed}__{time.time_ns()}"
        value = -10.0 - 20.0 * (math.log10(args.learning_rate) + 2.5) ** 2 - args.seed % 2  # best at lr 10^-2.5
    else:
        task = task_name(args.env_id, args.opponents, args.agent_neighbors, args.landmark_neighbors)
        name, value = f"runs/{task}__{args.exp_name}__{args.seed}__{time.time_ns()}", -20.0
    os.makedirs(name)
    open(os.path.join(name, f"{args.exp_name}.cleanrl_model"), "w").close()
    np.savez(os.path.join(name, "buffer.npz"), x=np.zeros(1))
    args = {**parse_task(task), **vars(args)}  # a distillation's result holds its task, as the real one's
    result = {"curve": [[1, value]], "final": {"sum": value}, "minutes": 0.01, "args": args}
    with open(os.path.join(name, "result.json"), "w") as f:
        json.dump({**result, "code": code_version(__file__)}, f)
"""


def with_fake_distillation(tmp_path, monkeypatch):
    """benchmark.tune with fake ctedd_global.py and ctedd_distill.py (DISTILL_SCRIPTS), its trials in tmp_path."""
    from benchmark import tune

    scripts = tmp_path / "scripts"
    scripts.mkdir()
    for name in ("ctedd_global.py", "ctedd_distill.py"):
        (scripts / name).write_text(DISTILL_SCRIPTS)
    monkeypatch.setattr(grid, "SCRIPTS_DIR", str(scripts))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setattr(tune, "TUNING", tmp_path / "tuning")
    monkeypatch.chdir(tmp_path)
    return tune


def test_the_distillation_is_tuned_on_the_chosen_teachers_of_the_tuning_seeds(tmp_path, monkeypatch):
    tune = with_fake_distillation(tmp_path, monkeypatch)
    task = "simple_speaker_listener"
    with pytest.raises(UsageError, match="ctedd_global is not tuned on simple_speaker_listener yet"):
        tune.tune_distillation(task, 2, "runs", poll=0.05)
    for method, chosen in (("ctedd_global", 3), ("maddpg_k3_differentiable", 5)):
        configs = tune.configurations(method)
        outcome = {
            "task": task,
            "method": method,
            "chosen": chosen,
            "configurations": configs,
            "rungs": [{"budget": 1000}],
        }
        (tmp_path / "tuning" / task).mkdir(parents=True, exist_ok=True)
        (tmp_path / "tuning" / task / f"{method}.json").write_text(json.dumps(outcome))
    outcome = tune.tune_distillation(task, 2, "runs", poll=0.05)
    events = [line.split() for line in (tmp_path / "events.txt").read_text().splitlines()]
    teachers = [e for e in events if e[0] == "ctedd_global.py"]
    assert sorted((e[1], e[2]) for e in teachers) == [("ctedd_global_t03_1k", s) for s in ("101", "102", "103")]
    students = [e for e in events if e[0] == "ctedd_distill.py"]
    configs = outcome["configurations"]
    within = [str(i) for i, c in enumerate(configs) if c["iters_per_batch"] * c["passes"] <= tune.DISTILL_MAX_UPDATES]
    assert 8 <= len(within) < len(configs) == 16  # the costliest are left out of the first rung
    assert len(students) == len(within) + 4 * 2
    first, second = outcome["rungs"]
    assert sorted(first["scores"]) == sorted(within)
    assert len({first["scores"][i][0] for i in first["scores"]}) == len(within)  # each configuration's own result
    ranked = sorted(first["scores"], key=lambda i: -first["scores"][i][0])
    assert all(len(v) == 1 for v in first["scores"].values()) and all(len(v) == 3 for v in second["scores"].values())
    assert sorted(second["scores"]) == sorted(ranked[:4])
    assert configs[0] == {"learning_rate": 1e-3, "iters_per_batch": 10, "passes": 1, "critic_weight": 20.0}
    best = min(ranked[:4], key=lambda i: abs(math.log10(configs[int(i)]["learning_rate"]) + 2.5))
    assert outcome["chosen"] == int(best)
    width = str(tune.configurations("maddpg_k3_differentiable")[5]["hidden_dim"])
    assert outcome["chosen_flags"][:4] == ["--hidden-dim", width, "--relabel", "counterfactual"]
    tuned = tune.write_tuned(str(tmp_path / "tuned.json"))
    arms = [*grid.predefined_arms([1]), grid.parse_arm("ctedd_distill_cf_critic_k1=ctedd_distill.py:--message-bits 1")]
    jobs = {job.name: job for job in grid.build_grid([task], [1], arms, 5000, tuned["settings"])}
    tuned_k1 = jobs["ctedd_distill_cf_critic_k1"]
    assert tuned_k1.args == ["--message-bits", "1", *outcome["chosen_flags"]]  # every k distils as tuned for 3
    assert tuned_k1.after is jobs["ctedd_global"]
    assert jobs["ctedd_distill_k1"].args == ["--message-bits", "1", "--hidden-dim", width]  # eq. (2): the defaults


def test_the_distillations_single_setting_runs_its_candidates_on_every_channel_task(tmp_path, monkeypatch):
    tune = with_fake_distillation(tmp_path, monkeypatch)
    chosen_and_last = {"simple_speaker_listener": (3, [3, 5, 7, 9]), "simple_reference": (5, [5, 3, 8, 10])}
    chosen_and_last["simple_spread-an1"] = (3, [3, 11, 12, 13])  # 3 on every task, 5 chosen on one
    for task, (chosen, last) in chosen_and_last.items():
        (tmp_path / "tuning" / task).mkdir(parents=True)
        for method, index in (("ctedd_global", 2), ("maddpg_k3_differentiable", 4), ("ctedd_distill", chosen)):
            configs = tune.configurations(method) if method != "ctedd_distill" else tune.distill_configurations(task)
            rungs = [{"budget": 1000, "scores": {str(i): [0.5] for i in last}}]
            outcome = {"task": task, "method": method, "chosen": index, "configurations": configs, "rungs": rungs}
            (tmp_path / "tuning" / task / f"{method}.json").write_text(json.dumps(outcome))
    outcome = tune.single_distillation(4, "runs", poll=0.05)
    events = [line.split() for line in (tmp_path / "events.txt").read_text().splitlines()]
    assert sorted(e[2] for e in events if e[0] == "ctedd_global.py") == sorted(["101", "102", "103"] * 3)  # teachers
    students = [e for e in events if e[0] == "ctedd_distill.py"]
    assert sorted({e[1] for e in students}) == ["ctedd_distill_rounded", "ctedd_distill_t03", "ctedd_distill_t05"]
    assert len(students) == 3 * 3 * 3  # 3 settings x 3 tasks x 3 teachers
    configs = {task: tune.distill_configurations(task) for task in tune.CHANNEL_TASKS}
    assert configs["simple_spread-an1"][5] == {k: configs["simple_reference"][5][k] for k in tune.DISTILL_DEFAULT_KEYS}
    best = min((3, 5), key=lambda i: abs(math.log10(configs["simple_reference"][i]["learning_rate"]) + 2.5))
    assert sorted(outcome["candidates"]) == ["t03", "t05"] and outcome["best"] == best
    assert all(len(outcome["candidates"]["t05"][task]) == 3 for task in tune.CHANNEL_TASKS)
    assert outcome["kept"] == "rounded" and outcome["setting"] == tune.rounded(configs["simple_reference"][best])
    assert [flag for flag in outcome["flags"] if flag.startswith("--")] == [
        "--learning-rate",
        "--iters-per-batch",
        "--passes",
    ]  # w stays the relabelling's own flag
    assert not list((tmp_path / "runs").glob("*ctedd_global*/buffer.npz"))  # the teachers' buffers: dropped at the end
    assert list((tmp_path / "runs").glob("*ctedd_distill*/buffer.npz"))
    tune.single_distillation(4, "runs", poll=0.05)  # all kept: nothing runs again
    assert len((tmp_path / "events.txt").read_text().splitlines()) == len(events)


def test_benchmark_v4_runs_every_arm_at_its_tuned_setting(tmp_path, monkeypatch):
    """benchmark/run_v4.sh with WORKERS=0 prints its grid: every task, 5 seeds, each arm with tuned.json's flags."""
    from benchmark import tune

    monkeypatch.setattr(tune, "TUNING", tmp_path)
    for task, methods in tune.PLAN.items():
        (tmp_path / task).mkdir()
        for index, method in enumerate(methods):
            chosen = tune.flags({**tune.configurations(method)[0], "hidden_dim": 100 + index})
            outcome = {"task": task, "method": method, "chosen_flags": chosen}
            (tmp_path / task / f"{method}.json").write_text(json.dumps(outcome))
        if task in tune.DISTILL_FIXED:
            chosen = ["--hidden-dim", "101", *tune.DISTILL_FIXED[task], "--learning-rate", "0.002"]
            outcome = {"task": task, "method": "ctedd_distill", "chosen_flags": chosen}
            (tmp_path / task / "ctedd_distill.json").write_text(json.dumps(outcome))
    (tmp_path / "single").mkdir()  # the scripts' single settings (--single) are not a task's choice
    (tmp_path / "single" / "ctedd_global.json").write_text(json.dumps({"method": "ctedd_global", "flags": []}))
    tune.write_tuned(str(tmp_path / "tuned.json"))
    env = {**os.environ, "WORKERS": "0", "TUNED": str(tmp_path / "tuned.json")}
    result = subprocess.run(["bash", str(ROOT / "benchmark" / "run_v4.sh")], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    commands = [shlex.split(line) for line in result.stdout.splitlines()]

    def last(command, name):  # the last value given for a flag: tuned.json's comes after the arm's own
        return command[len(command) - 1 - command[::-1].index(name) + 1]

    # per seed: 6 tasks x (CTEDD-G, CTEDD-0, -1, -3, MADDPG-0, MADDPG-1 and -3 with each channel), 3 relabelling arms
    # on each channel task
    assert len(commands) == 5 * (6 * 9 + 3 * 3)
    trained = [c for c in commands if "--total-timesteps" in c]
    assert len(trained) == 5 * 6 * 6 and {c[c.index("--seed") + 1] for c in commands} == {"1", "2", "3", "4", "5"}
    for c in trained:
        tag = "simple_tag" in c
        assert last(c, "--total-timesteps") == ("2000000" if tag else "1000000") and "--checkpoint-frequency" in c
        assert last(c, "--hidden-dim") in ("100", "101", "102")  # tuned.json's, not the script's default
    exp_names = [c[c.index("--exp-name") + 1] for c in commands]
    assert {name: exp_names.count(name) for name in exp_names if "distill" in name} == {
        "ctedd_distill": 5 * 6 * 3,  # eq. (2): k = 0, 1, 3 on every task
        **{f"ctedd_distill_cf_critic_k{k}": 5 * 2 for k in (0, 1, 3)},  # speaker-listener and reference
        **{f"ctedd_distill_dagger_k{k}": 5 for k in (0, 1, 3)},  # spread-an1
    }
    for c, name in zip(commands, exp_names):
        if name.startswith("ctedd_distill_"):  # the tuned distillation, with its task's variant
            assert last(c, "--learning-rate") == "0.002" and last(c, "--hidden-dim") == "101"
            assert ("--relabel" in c) == ("cf_critic" in name) and ("--dagger-rounds" in c) == ("dagger" in name)
        elif name == "ctedd_distill":  # eq. (2): the student's width, the distillation's defaults
            assert c[c.index("--message-bits") :] in [["--message-bits", k, "--hidden-dim", "101"] for k in "013"]


def test_the_controls_share_maddpg_0s_setting_and_the_students_width(tmp_path, monkeypatch):
    from benchmark import tune

    monkeypatch.setattr(tune, "TUNING", tmp_path)
    k0 = tune.flags({**tune.DEFAULTS, "hidden_dim": 128, "exploration_noise": 0.5})
    ctedd = tune.flags({**tune.DEFAULTS, "target_sigma": 0.35})
    for method, flags in (("maddpg_k0", k0), ("ctedd_global", ctedd)):
        (tmp_path / "simple_spread").mkdir(exist_ok=True)
        outcome = {"task": "simple_spread", "method": method, "chosen_flags": flags}
        (tmp_path / "simple_spread" / f"{method}.json").write_text(json.dumps(outcome))
    tuned = tune.write_tuned(str(tmp_path / "tuned.json"))
    settings = tuned["settings"]["simple_spread"]
    assert settings["ctedd_global"] == ctedd and settings["ctedd_distill"] == ["--hidden-dim", "128"]
    for arm in ("maddpg_k1_differentiable", "maddpg_k1_reinforced", "maddpg_k3_differentiable", "maddpg_k3_reinforced"):
        assert settings[arm] == k0 and tuned["shared"]["simple_spread"][arm] == "maddpg_k0"
    arms = grid.predefined_arms([0, 3], channels=["differentiable", "reinforced"])
    jobs = grid.build_grid(["simple_spread"], [1], arms, 5000, tuned["settings"])
    args = {job.name: job.args for job in jobs}
    assert args["maddpg_k3_reinforced"] == [
        "--total-timesteps",
        "5000",
        "--message-bits",
        "3",
        "--channel",
        "reinforced",
        *k0,
    ]
    assert args["ctedd_distill_k0"] == ["--message-bits", "0", "--hidden-dim", "128"]


def test_the_tuned_comparison_reads_both_result_trees(tmp_path):
    from benchmark import tune

    def write(root, method, seed, final, curve):
        path = root / "simple_speaker_listener" / f"{method}__{seed}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        final_part = {"sum": final, "goal_reached": {"listener_0": 0.5 + 0.1 * (final > -20)}}
        final_part = {**final_part, "goal_distance": {"listener_0": 0.3}}
        path.write_text(json.dumps({"curve": curve, "final": final_part, "args": {}}))

    for seed in range(1, 6):
        write(tmp_path / "old", "maddpg_k3_differentiable", seed, -29.0 - 0.1 * seed, [[500_000, -29.0]])
        peak_then_fall = [[500_000, -12.0], [1_000_000, -15.0 - 0.1 * seed]]
        write(tmp_path / "new", "maddpg_k3_differentiable", seed, peak_then_fall[-1][1], peak_then_fall)
    table = tune.compare(
        "simple_speaker_listener", str(tmp_path / "c.png"), tmp_path / "new", tmp_path / "old", reps=200
    )
    row = [line for line in table.splitlines() if line.startswith("| MADDPG-3 (diff.)")][0].split(" | ")
    assert row[1] == "-29.3 ± 0.1 (n=5)" and row[2] == "-15.3 ± 0.1 (n=5)"
    assert row[4] == "1.00 [1.00, 1.00]"  # every new run beats every old one
    references = report.load_references()["simple_speaker_listener"]
    fall = (-12.0 - -15.5) / (references["full information"] - references["random"])  # seed 5 falls furthest
    assert float(row[5]) == pytest.approx(fall, abs=1e-3) and row[6] == "60%" and (tmp_path / "c.png").is_file()
    write(tmp_path / "new", "maddpg_k0", 1, -30.0, [[1_000_000, -30.0]])  # a learner outside the four compared
    assert "| MADDPG-0 |" not in table
    every = tune.compare("simple_speaker_listener", None, tmp_path / "new", tmp_path / "old", reps=200, every_arm=True)
    assert "| MADDPG-0 | | -30.0 ± 0.0 (n=1) |" in every and "| MADDPG-3 (diff.) | -29.3" in every
    assert "Lowe et al. 2017" in every  # their reach rates, speaker-listener's, beside speaker-listener only
    for root in ("new", "old"):
        (tmp_path / root / "simple_speaker_listener").rename(tmp_path / root / "simple_push-scripted")
    assert "Lowe et al." not in tune.compare("simple_push-scripted", None, tmp_path / "new", tmp_path / "old", reps=200)


def test_the_goal_table_reports_reach_rate_and_distance_per_arm_over_seeds(tmp_path):
    results_dir = synthetic_results(tmp_path, np.random.default_rng(0))
    for seed, reached in ((1, 0.8), (2, 0.6)):  # the listener reached its goal in 80% and 60% of the episodes
        path = results_dir / "simple_speaker_listener" / f"ctedd_global__{seed}.json"
        result = json.loads(path.read_text())
        result["final"].update(goal_reached={"listener_0": reached}, goal_distance={"listener_0": 0.1 * seed})
        path.write_text(json.dumps(result))
    table = report.goal_table(report.load_results(results_dir))
    assert "| simple_speaker_listener | CTEDD-G | 2 | 70% ± 10 | 0.150 ± 0.050 |" in table
    assert "MADDPG-0" not in table  # no goal measures in its results


def test_the_curve_table_gives_best_point_fall_from_best_and_env_steps_to_ninety_percent(tmp_path):
    results_dir = synthetic_results(tmp_path, np.random.default_rng(0))
    references = report.load_references(results_dir)  # random -100, full information 0
    peaked = [[100_000, -50.0], [200_000, -5.0], [300_000, -8.0], [400_000, -20.0]]  # 0.95 at 200k, ends at 0.80
    assert report.fall_from_best(peaked, "simple_reference", references) == pytest.approx(0.15)
    assert report.steps_to(peaked, "simple_reference", references) == 200_000
    assert report.steps_to(peaked, "simple_reference", references, level=0.99) is None
    for seed in range(1, 6):  # one seed never reaches 90%
        curve = peaked if seed < 5 else [[100_000, -50.0], [200_000, -40.0], [300_000, -30.0], [400_000, -30.0]]
        write_result(results_dir, "simple_reference", "ctedd_global", seed, curve, {})
    table = report.curve_table(report.load_results(results_dir), references)
    row = next(line for line in table.splitlines() if line.startswith("| simple_reference | CTEDD-G |"))
    # best 0.95 x 4 and 0.70, final 0.80 x 4 and 0.70, falls 0.15 x 4 and 0; the mean curve: 0.88 at 200k, 0.78 last
    assert row == "| simple_reference | CTEDD-G | 5 | 0.900 | 0.780 | 0.120 (0.150) | 0.100 | 4/5 | 200k |"
    assert "CTEDD-0" not in table  # a distillation has no curve of its own


def test_the_report_names_the_verdicts_that_moved_since_a_previous_benchmark(tmp_path):
    (tmp_path / "now").mkdir(), (tmp_path / "before").mkdir()
    now = synthetic_results(tmp_path / "now", np.random.default_rng(0))  # CTEDD-G far above MADDPG-0
    before = synthetic_results(tmp_path / "before", np.random.default_rng(0))
    for task in report.CHANNEL_TASKS:  # before: MADDPG-0 as good as CTEDD-G on speaker-listener only
        for seed in range(1, 6) if task == "simple_speaker_listener" else ():
            write_result(before, task, "maddpg_k0", seed, [[500_000, -30.0], [1_000_000, -20.0 + seed]], {})
    results, references = report.load_results(now), report.load_references(now)
    old, old_references = report.load_results(before), report.load_references(before)
    found = report.claims_table(results, references, reps=200)[1]
    old_found = report.claims_table(old, old_references, reps=200)[1]
    table = report.moved_table(results, found, old, old_found)
    rows = table.splitlines()[2:]
    assert rows and all("| simple_speaker_listener |" in r or "| channel tasks |" in r for r in rows)  # what differs
    assert "| CTEDD-G > MADDPG-0, whole curve | simple_speaker_listener | 0.20 [0.00, 0.60] | cannot tell |" in table
    assert "| CTEDD-0 > MADDPG-0 | simple_speaker_listener | 0.00 [0.00, 0.00] | does not hold |" in table
    result = run_module(
        "benchmark.report", "--results-dir", str(now), "--previous", str(before), "--reps", "50", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert f"## Verdicts that moved since {before}" in result.stdout


def test_a_grid_in_progress_gets_its_report_and_the_figures_it_has_seeds_for(tmp_path):
    results = synthetic_results(tmp_path, np.random.default_rng(0))
    for kept in {*results.glob("*/*__[45].json"), *results.glob("simple_spread-an1/*")}:  # 3 seeds, 2 tasks so far
        kept.unlink()
    figures = tmp_path / "figures"
    args = ("--results-dir", str(results), "--figures", str(figures), "--prefix", "v", "--reps", "50")
    result = run_module("benchmark.report", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "too few seeds (3)" in result.stdout and "(v_efficiency.png)" in result.stdout
    assert "(v_aggregate.png)" not in result.stdout  # only the figures drawn are linked
    assert sorted(p.name for p in figures.iterdir()) == ["v_curves.png", "v_efficiency.png", "v_improvement.png"]


def test_issue_35s_targets_are_read_per_learner_against_the_previous_benchmark(tmp_path):
    from benchmark.analysis import targets

    (tmp_path / "now").mkdir(), (tmp_path / "before").mkdir()
    now = synthetic_results(tmp_path / "now", np.random.default_rng(0))
    before = synthetic_results(tmp_path / "before", np.random.default_rng(0))
    task = "simple_speaker_listener"
    for seed in range(1, 6):  # MADDPG-3's channels; the reinforced one peaks at -10 and falls to -20
        write_result(now, task, "maddpg_k3_differentiable", seed, [[500_000, -14.0], [1_000_000, -14.0]], {})
        write_result(now, task, "maddpg_k3_reinforced", seed, [[500_000, -10.0], [1_000_000, -20.0]], {})
        kept = now / task / f"maddpg_k3_differentiable__{seed}.json"
        result = json.loads(kept.read_text())
        result["final"]["goal_reached"] = {"listener_0": 0.5 if seed <= 2 else 1.0}  # 80% over the seeds
        kept.write_text(json.dumps(result))
        write_result(before, task, "maddpg_k3_differentiable", seed, [[1_000_000, -13.0]], {})  # better before
    for seed in range(1, 4):  # spread: three seeds so far
        write_result(now, "simple_spread", "maddpg_k0", seed, [[1_000_000, -31.0]], {})
    results, references = report.load_results(now), report.load_references(now)
    rows = targets.targets(results, references, report.load_results(before), reps=100).splitlines()

    def verdict(target, where, label):
        return next(r for r in rows if r.startswith(f"| {target} | {where} | {label} |")).split(" | ")[-1][:-2]

    assert verdict("fall from best", task, "MADDPG-3 (diff.)") == "met"
    assert verdict("fall from best", task, "MADDPG-3 (reinf.)") == "missed"  # 0.1 normalised below its best
    assert verdict("final return", task, "MADDPG-3 (diff.), the better channel") == "met"  # -14 >= -14.5
    assert verdict("goal reached", task, "MADDPG-3 (diff.), the better channel") == "missed"  # 80% < 90%
    assert verdict("final return", "simple_spread", "MADDPG-0") == "missed (interim, 3 seeds)"  # -31 < -30
    assert verdict("not below before", task, "MADDPG-3 (diff.)") == "missed"  # -14 against -13
    assert verdict("not below before", task, "CTEDD-G") == "met"  # the same runs
    assert not any("| CTEDD-0 |" in r and "fall from best" in r for r in rows)  # distilled policies have no curve


def test_the_run_time_table_sums_the_kept_runs_minutes(tmp_path):
    results_dir = synthetic_results(tmp_path, np.random.default_rng(0))
    results = report.load_results(results_dir)
    for runs in results["simple_reference"].values():
        for result in runs.values():
            result["minutes"] = 6.0  # every run on reference took 6 minutes
    count = sum(len(runs) for runs in results["simple_reference"].values())
    table = report.run_time_table(results)
    assert f"| simple_reference | {count} | {count * 6 / 60:.1f} |" in table
    assert table.splitlines()[-1].startswith(f"| all | {sum(len(r) for t in results.values() for r in t.values())} |")


def test_the_best_relabelling_pools_cf_critic_and_dagger_across_the_channel_tasks(tmp_path):
    results_dir = synthetic_results(tmp_path, np.random.default_rng(0))
    goals, spread = report.CHANNEL_TASKS[:2], report.CHANNEL_TASKS[2]
    for seed in range(1, 6):  # cf + critic where goals are drawn, DAgger on spread-an1: together on every task
        for task in goals:
            write_result(results_dir, task, "ctedd_distill_cf_critic_k3", seed, [[1_000_000, -10.0]], STAGE1)
        write_result(results_dir, spread, "ctedd_distill_dagger_k3", seed, [[1_000_000, -10.0]], STAGE1)
    results, references = report.load_results(results_dir), report.load_references(results_dir)
    pooled = report.with_combined(results)
    best = "ctedd_distill_best_k3"
    assert [pooled[task][best] for task in report.CHANNEL_TASKS] == [
        *(results[task]["ctedd_distill_cf_critic_k3"] for task in goals),
        results[spread]["ctedd_distill_dagger_k3"],
    ]
    assert best not in report.arms_of(results)  # the per-task tables keep the arms as they ran
    text, found = report.claims_table(pooled, references, 50, report.COMBINED_CLAIMS, groups_only=True)
    assert list(found) == [("channel tasks", "ctedd_global", best, "final")]  # the only claim with its arms here
    assert found["channel tasks", "ctedd_global", best, "final"][0] == 0.0  # -10 everywhere beats CTEDD-G's -20
    write_result(results_dir, spread, "ctedd_distill_cf_critic_k3", 1, [[1_000_000, -10.0]], STAGE1)
    with pytest.raises(UsageError, match="both ctedd_distill_cf_critic_k3 and ctedd_distill_dagger_k3"):
        report.with_combined(report.load_results(results_dir))
