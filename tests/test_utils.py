import pytest
import torch

from common.utils import UsageError, atomic_write, load_checkpoint, save_checkpoint


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
