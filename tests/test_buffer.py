import numpy as np
import pytest
import torch

from common.buffer import ReplayBuffer
from common.utils import UsageError, atomic_write

N, W, S = 3, 5, 7


def make_buffer(capacity, with_means=True, seed=0):
    return ReplayBuffer(capacity, num_agents=N, obs_width=W, state_dim=S, with_means=with_means, seed=seed)


def fill(buffer, count, per_add=1):
    """Transition t carries the value t everywhere, so its step can be read off any field; the
    transitions arrive `per_add` at a time, as from that many environments stepped together."""
    for start in range(0, count, per_add):
        t = np.arange(start, min(start + per_add, count), dtype=float)
        per_agent = t[:, None, None] * np.ones((1, N, 1))
        buffer.add(
            states=np.repeat(t[:, None], S, 1),
            obs=np.repeat(per_agent, W, 2),
            actions=np.repeat(per_agent, 2, 2),
            rewards=np.repeat(t[:, None], N, 1),
            terminations=t % 2,
            next_states=np.repeat(t[:, None] + 1, S, 1),
            next_obs=np.repeat(per_agent + 1, W, 2),
            policy_means=-np.repeat(per_agent, 2, 2) if buffer.with_means else None,
        )


def steps_of(batch):
    return batch.states[:, 0].long().tolist()


def test_sample_shapes_and_dtypes():
    buffer = make_buffer(50)
    fill(buffer, 20)
    batch = buffer.sample(8)
    assert batch.states.shape == (8, S) and batch.next_states.shape == (8, S)
    # per-agent fields come out agent-major, as the per-agent networks consume them
    assert batch.obs.shape == (N, 8, W) and batch.next_obs.shape == (N, 8, W)
    assert batch.actions.shape == (N, 8, 2) and batch.policy_means.shape == (N, 8, 2)
    assert batch.rewards.shape == (N, 8) and batch.terminations.shape == (8,)
    for tensor in (batch.states, batch.obs, batch.actions, batch.rewards, batch.terminations):
        assert tensor.dtype == torch.float32
    # the fields of one row belong to one transition, for every agent
    t = batch.states[:, 0]
    assert torch.equal(batch.next_states[:, 0], t + 1) and torch.equal(batch.policy_means[:, :, 0], -t.expand(N, -1))
    assert torch.equal(batch.obs[:, :, 0], t.expand(N, -1)) and torch.equal(batch.rewards, t.expand(N, -1))
    assert torch.equal(batch.terminations, t % 2) and torch.equal(batch.env_steps.float(), t)
    assert set(steps_of(buffer.sample(500))) == set(range(20))  # uniform over what is stored


def test_a_batched_add_is_the_same_as_adding_one_at_a_time_across_wrap_around():
    one, batched = make_buffer(10), make_buffer(10)
    fill(one, 23)
    fill(batched, 23, per_add=4)  # 4 environments per step: the ring wraps inside an add
    assert batched.num_added == 23 and len(batched) == 10
    for a, b in zip(one.iter_chronological(10), batched.iter_chronological(10)):
        for x, y in zip(a, b):
            assert torch.equal(x, y)
    with pytest.raises(ValueError, match="capacity"):
        fill(make_buffer(3), 4, per_add=4)


def test_sampling_is_reproducible_with_the_seed():
    a, b = make_buffer(50, seed=3), make_buffer(50, seed=3)
    fill(a, 30)
    fill(b, 30)
    assert steps_of(a.sample(16)) == steps_of(b.sample(16))


@pytest.mark.parametrize("count", [7, 10, 23, 30])
def test_chronological_iteration_after_wrap_around(count):
    buffer = make_buffer(10)
    fill(buffer, count)
    seen = [t for batch in buffer.iter_chronological(3) for t in steps_of(batch)]
    expected = list(range(max(0, count - 10), count))
    assert seen == expected  # every stored transition once, oldest first
    env_steps = [t for batch in buffer.iter_chronological(4) for t in batch.env_steps.tolist()]
    assert env_steps == expected


def test_write_load_round_trip_is_exact_and_chronological(tmp_path):
    buffer = make_buffer(10)
    fill(buffer, 23)  # wrapped around twice
    path = tmp_path / "buffer.npz"
    atomic_write(path, buffer.writer("simple_tag"))
    loaded = ReplayBuffer.load(path, "simple_tag", N, W, S)
    assert len(loaded) == 10 and loaded.num_added == 23
    for a, b in zip(buffer.iter_chronological(10), loaded.iter_chronological(10)):
        for x, y in zip(a, b):
            assert torch.equal(x, y)
    bigger = ReplayBuffer.load(path, "simple_tag", N, W, S, capacity=100)
    fill(bigger, 2)
    assert [t for b in bigger.iter_chronological(5) for t in steps_of(b)] == list(range(13, 23)) + [0, 1]


def test_writing_leaves_no_temporary_file_and_replaces_atomically(tmp_path):
    buffer = make_buffer(10)
    fill(buffer, 5)
    path = tmp_path / "buffer.npz"
    atomic_write(path, buffer.writer("simple_tag"))
    fill(buffer, 3)
    atomic_write(path, buffer.writer("simple_tag"))
    assert [p.name for p in tmp_path.iterdir()] == ["buffer.npz"]
    assert len(ReplayBuffer.load(path, "simple_tag", N, W, S)) == 8


def test_a_truncated_file_is_refused(tmp_path):
    buffer = make_buffer(10)
    fill(buffer, 5)
    path = tmp_path / "buffer.npz"
    atomic_write(path, buffer.writer("simple_tag"))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(UsageError, match="not readable"):
        ReplayBuffer.load(path, "simple_tag", N, W, S)


def test_a_mismatched_or_missing_file_is_refused(tmp_path):
    buffer = make_buffer(10)
    fill(buffer, 5)
    path = tmp_path / "buffer.npz"
    atomic_write(path, buffer.writer("simple_tag"))
    with pytest.raises(UsageError, match="collected on simple_tag, not simple_push"):
        ReplayBuffer.load(path, "simple_push", N, W, S)
    with pytest.raises(UsageError, match="states has shape"):
        ReplayBuffer.load(path, "simple_tag", N, W, S + 1)
    with pytest.raises(UsageError, match="obs has shape"):
        ReplayBuffer.load(path, "simple_tag", N + 1, W, S)
    with pytest.raises(UsageError, match="does not exist"):
        ReplayBuffer.load(tmp_path / "nope.npz", "simple_tag", N, W, S)
    np.savez(tmp_path / "other.npz", states=np.zeros((3, S)))
    with pytest.raises(UsageError, match="not a buffer of this version of the project"):
        ReplayBuffer.load(tmp_path / "other.npz", "simple_tag", N, W, S)


def test_recorded_means_are_optional_but_required_once_chosen():
    plain = make_buffer(10, with_means=False)
    fill(plain, 3)
    assert plain.sample(2).policy_means is None
    with pytest.raises(ValueError, match="policy means"):
        make_buffer(10).add(
            np.zeros((1, S)),
            np.zeros((1, N, W)),
            np.zeros((1, N, 2)),
            np.zeros((1, N)),
            np.zeros(1),
            np.zeros((1, S)),
            np.zeros((1, N, W)),
        )
