import os
import subprocess
import sys
import time

import pytest
import torch
from conftest import ROOT

from common.utils import UsageError, atomic_write, due, iterations_due, load_checkpoint, save_checkpoint, timing_line


def test_a_crash_while_writing_keeps_the_previous_file(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"args": {"seed": 1}, "w": torch.ones(3)})

    def crash(f):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, crash)
    assert torch.equal(load_checkpoint(path)["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


class Arbitrary:
    pass


def test_checkpoints_load_safely_and_refuse_garbage(tmp_path):
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UsageError, match="not readable"):
        load_checkpoint(tmp_path / "garbage.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "foreign.pt")
    with pytest.raises(UsageError, match="not a checkpoint of this project"):
        load_checkpoint(tmp_path / "foreign.pt")
    torch.save({"args": Arbitrary()}, tmp_path / "pickled.pt")
    with pytest.raises(UsageError, match="not readable"):  # weights_only=True refuses arbitrary objects
        load_checkpoint(tmp_path / "pickled.pt")


def test_timing_line_gives_seconds_per_part_and_steps_per_second():
    start = time.time() - 4.0
    line = timing_line(8000, start, {"env": 2.4, "act": 0.6, "update": 1.0})
    parts, sps = line.split(", SPS ")
    assert parts == "time: env 2 s, act 1 s, update 1 s"
    assert 1900 <= int(sps) <= 2000  # 8000 steps in a little over 4 s


@pytest.mark.parametrize("num_envs", [1, 3, 4, 16, 150])
@pytest.mark.parametrize("every, offset, start", [(50, 0, 200), (100, 0, 0), (7, 0, 33), (84, 0, 25_600), (130, -1, 0)])
def test_events_land_where_a_one_environment_loop_puts_them(num_envs, every, offset, start):
    """The loops step B environments at a time; an event scheduled at the env steps t >= start with
    t % every == offset % every is due in the batch that holds its env step, as a one-environment loop has it."""
    total = 30_000
    one_at_a_time = [t for t in range(total) if t >= start and t % every == offset % every]
    batched = []
    for step in range(0, total, num_envs):
        batched += [step] * due(step, num_envs, every, offset, start)
    assert len(batched) == len(one_at_a_time) > 0
    assert all(b <= t < b + num_envs for b, t in zip(batched, one_at_a_time))


def test_the_loops_events_keep_their_schedules():
    """Learning iterations at env steps 0, every, 2 * every, ... from learning_starts on; evaluations and
    checkpoints after every `every` env steps: in the batch whose step count reaches a multiple of `every`."""
    learning = [step for step in range(0, 2000, 16) for _ in range(due(step, 16, 84, start=336))]
    assert learning[:3] == [336, 416, 496]  # env steps 336, 420, 504: 336 itself is due, in the batch from 336
    evaluation = [step + 16 for step in range(0, 2000, 16) if due(step, 16, 336, offset=-1)]
    assert evaluation[:3] == [336, 672, 1008]  # after 336 steps taken, not in the batch holding env step 336
    assert due(320, 16, 336, offset=-1) == 1 and due(336, 16, 336, offset=-1) == 0
    assert due(336, 16, 336) == 1 and due(320, 16, 336) == 0
    assert all(due(step, 16, 0, offset=-1) == 0 for step in range(0, 1000, 16))  # every 0: never


@pytest.mark.parametrize("num_envs, every, start", [(16, 84, 25_600), (4, 50, 200), (100, 30, 0), (7, 3, 10)])
def test_the_learning_iterations_are_numbered_from_the_first_across_the_batches(num_envs, every, start):
    batches = [iterations_due(step, num_envs, every, start) for step in range(0, 30_000, num_envs)]
    assert [len(b) for b in batches] == [due(step, num_envs, every, start=start) for step in range(0, 30_000, num_envs)]
    numbers = [k for b in batches for k in b]
    assert numbers == list(range(len(numbers))) and numbers  # 0, 1, 2, ... from the first learning iteration on


def test_a_run_records_its_code_as_it_was_when_it_started(tmp_path):
    """A script edited while its run goes on: result.json records the code that ran, not the edited file."""
    script = tmp_path / "edited.py"
    script.write_text(
        "import hashlib, os\n"
        "from common import runs\n"
        "started = hashlib.sha256(open(__file__, 'rb').read()).hexdigest()[:12]\n"
        "with open(__file__, 'a') as f:\n"
        "    f.write('# edited while running\\n')\n"
        "assert runs.STARTED[os.path.abspath(__file__)]['script_sha256'] == started\n"
        "assert runs.code_version(__file__)['script_sha256'] != started\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
