import time

import pytest
import torch

from common.utils import UsageError, atomic_write, load_checkpoint, save_checkpoint, timing_line


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
