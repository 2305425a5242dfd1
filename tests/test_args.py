"""Every numeric argument of every script is checked by its meaning before anything runs."""

import math

import pytest
from conftest import assert_one_line_error, run_script

import ctedd_distill
import ctedd_global
import maddpg
from common.envs import MPEEnv
from common.utils import RANGES, UsageError, check_numbers, numeric_fields

SCRIPTS = {"maddpg.py": maddpg, "ctedd_global.py": ctedd_global, "ctedd_distill.py": ctedd_distill}
REQUIRED = {"ctedd_distill.py": {"global_run": "runs/stage1"}}  # what check_args needs besides the defaults


def bad_values(name: str, kind) -> list:
    """Just outside the range at each finite end, and the non-finite numbers."""
    low, high, low_in, high_in = RANGES[name]
    values = [math.nan, math.inf, -math.inf] if kind is float else []
    step = 1 if kind is int else 1e-9
    if math.isfinite(low):
        values.append(kind(low - step) if low_in else kind(low))
    if math.isfinite(high):
        values.append(kind(high + step) if high_in else kind(high))
    return values


def kind_of(args, name: str):
    value = getattr(args, name)
    floats = ("target_entropy", "fixed_sigma")  # None by default
    return type(value) if value is not None else float if name in floats else int


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_numeric_argument_has_a_range_and_its_defaults_are_inside(script):
    args = SCRIPTS[script].Args(**REQUIRED.get(script, {}))
    names = numeric_fields(args)
    assert {"seed", "learning_rate", "batch_size"} <= set(names) and "cuda" not in names  # bools are not numbers
    assert set(names) <= set(RANGES)
    SCRIPTS[script].check_args(args)


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_numeric_argument_refuses_values_outside_its_range(script):
    module = SCRIPTS[script]
    defaults = module.Args(**REQUIRED.get(script, {}))
    for name in numeric_fields(defaults):
        values = bad_values(name, kind_of(defaults, name))
        assert values, name  # every number has a bad value: a finite end or, for a float, nan
        for value in values:
            args = module.Args(**{**REQUIRED.get(script, {}), name: value})
            with pytest.raises(UsageError, match=f"^--{name.replace('_', '-')} must be a finite number in"):
                module.check_args(args)


def test_a_numeric_argument_without_a_range_is_a_programming_error():
    from dataclasses import dataclass

    @dataclass
    class Args:
        learning_rate: float = 1e-3
        new_knob: int = 3

    with pytest.raises(TypeError, match="new_knob has no range"):
        check_numbers(Args())


@pytest.mark.parametrize(
    "script, args, reason",
    [
        ("maddpg.py", ["--learning-rate", "nan"], "--learning-rate must be a finite number in (0, 1], got nan"),
        ("ctedd_global.py", ["--gamma", "2.0"], "--gamma must be a finite number in [0, 1], got 2.0"),
        ("ctedd_global.py", ["--learning-rate", "-1e-3"], "--learning-rate must be a finite number in (0, 1]"),
        ("maddpg.py", ["--env-id", "simple_spread", "--agent-neighbors", "9"], "simple_spread has only 2 other agents"),
        ("maddpg.py", ["--checkpoint-frequency", "100"], "--checkpoint-frequency writes checkpoints with the model"),
        ("ctedd_global.py", ["--batch-size", "64", "--buffer-size", "10"], "--batch-size 64 is larger than"),
        ("ctedd_distill.py", ["--global-run", "x", "--seed", "-1"], "--seed must be a finite number in [0, 4294967295"),
    ],
)
def test_bad_numbers_exit_with_one_line(script, args, reason, tmp_path):
    assert_one_line_error(run_script(script, *args, cwd=tmp_path), reason)


def test_a_neighbour_limit_above_what_the_task_has_is_refused():
    MPEEnv("simple_spread", agent_neighbors=2, landmark_neighbors=3)  # every other agent, every landmark: allowed
    with pytest.raises(UsageError, match="simple_spread has only 3 landmarks"):
        MPEEnv("simple_spread", landmark_neighbors=4)
    with pytest.raises(UsageError, match="simple_tag has only 3 other agents"):
        MPEEnv("simple_tag", agent_neighbors=4)
