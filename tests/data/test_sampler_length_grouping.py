"""Length-grouped training batches (RowBatcher(..., group_by_length=True)): every epoch is still
a permutation, batches pad less, the order is seeded, resumes exactly and does not depend on
how the global batch is split over workers and accumulation steps.

    .venv/bin/python -m pytest -q -p no:cacheprovider tests/data/test_sampler_length_grouping.py
"""
import pickle

import numpy as np
import pytest

from stilts_ds.data.sampler import RowBatcher, SamplerError, StepSchedule, TaskSampler, task_weights
from stilts_ds.tasks.features import Features


def _lengths(n, seed=0):
    """Long-tailed lengths (log-normal, median 24), as sentences are."""
    rng = np.random.default_rng(seed)
    return np.clip(np.exp(rng.normal(np.log(24), 0.6, n)).round(), 4, 256).astype(np.int32)


def _grouped(n, batch, *, lengths=None, **kwargs):
    return RowBatcher(n, batch, group_by_length=True, lengths=_lengths(n) if lengths is None else lengths, **kwargs)


def _padded_tokens(batches, lengths):
    return sum(len(b) * int(lengths[b].max()) for b in batches)


# -- the epoch --------------------------------------------------------------------------


@pytest.mark.parametrize("n, batch, world, accum, window", [
    (1000, 8, 1, 1, 50), (1000, 8, 2, 3, 4), (997, 4, 3, 2, 5), (37, 4, 2, 1, 2), (5, 4, 2, 2, 1), (1, 3, 1, 1, 50),
])
def test_every_epoch_holds_every_row_exactly_once(n, batch, world, accum, window):
    ranks = [_grouped(n, batch, rank=r, world_size=world, grad_accum=accum, group_window=window) for r in range(world)]
    stream = []
    per_call = batch * world
    calls = -(-5 * n // per_call)  # five epochs and some
    for _ in range(calls):
        stream += np.concatenate([b.next() for b in ranks]).tolist()
    for e in range(5):
        assert sorted(stream[e * n : (e + 1) * n]) == list(range(n)), f"epoch {e}"


def test_a_window_holds_the_rows_of_the_same_window_of_the_plain_permutation():
    """Grouping only reorders rows inside windows of the epoch's seeded permutation: the
    epoch is as random as before, at the scale of a window."""
    n, batch, window = 1000, 10, 5  # windows of 50 rows
    grouped = _grouped(n, batch, seed=3, group_window=window)
    rows = np.concatenate([grouped.next() for _ in range(n // batch)])
    perm = np.random.default_rng(3).permutation(n)
    for start in range(0, n, 50):
        assert sorted(rows[start : start + 50].tolist()) == sorted(perm[start : start + 50].tolist())
    assert rows.tolist() != perm.tolist()


def test_a_step_block_is_longest_first_and_blocks_of_a_window_are_shuffled():
    n, batch = 2000, 16
    lengths = _lengths(n, seed=1)
    b = _grouped(n, batch, lengths=lengths, seed=4, group_window=10)
    blocks = [b.next() for _ in range(n // batch)]
    for rows in blocks:  # a block is one batch here (1 worker, no accumulation)
        assert np.all(np.diff(lengths[rows]) <= 0)
    # Not sorted across the window: long and short batches interleave.
    longest = [int(lengths[rows].max()) for rows in blocks[:10]]
    assert longest != sorted(longest, reverse=True)


def test_grouping_pads_much_less_than_random_batches():
    n, batch = 4000, 32
    lengths = _lengths(n, seed=2)
    plain = RowBatcher(n, batch, seed=5)
    grouped = _grouped(n, batch, lengths=lengths, seed=5)
    steps = n // batch
    useful = int(lengths.sum())
    random_pad = _padded_tokens([plain.next() for _ in range(steps)], lengths)
    grouped_pad = _padded_tokens([grouped.next() for _ in range(steps)], lengths)
    assert grouped_pad >= useful
    # Padding share: random batches of a long-tailed table waste most of what they compute.
    assert 1 - useful / grouped_pad < 0.1
    assert 1 - useful / random_pad > 0.4


def test_grouping_is_seeded_and_reshuffled_every_epoch():
    def rows(seed, calls=60):
        b = _grouped(300, 10, seed=seed, group_window=3)
        return [b.next().tolist() for _ in range(calls)]

    assert rows(1) == rows(1)
    assert rows(1) != rows(2)
    epochs = rows(1)
    assert epochs[:30] != epochs[30:]


def test_lengths_default_to_the_features_table_and_choices_count_their_longest():
    n = 64
    per_choice = np.stack([_lengths(n, seed=6), _lengths(n, seed=7)], axis=1)  # [N, 2]
    feats = Features("multiple_choice", {"lengths": per_choice}, np.array([f"g{i}" for i in range(n)], dtype=object))
    from_table = RowBatcher(feats, 8, seed=0, group_by_length=True)
    explicit = RowBatcher(n, 8, seed=0, group_by_length=True, lengths=per_choice.max(axis=1))
    assert from_table.lengths.tolist() == per_choice.max(axis=1).tolist()
    assert [from_table.next().tolist() for _ in range(16)] == [explicit.next().tolist() for _ in range(16)]


def test_steps_stay_whole_blocks_after_an_epoch_that_ends_inside_a_step():
    """Epochs of 37 rows, steps of 8: the stream's step boundaries fall at a different offset
    in every epoch; grouping lines its blocks up with them, so only the step that straddles
    two epochs mixes lengths."""
    n, batch = 37, 4
    lengths = np.arange(n) % 11 + 1
    ranks = [_grouped(n, batch, lengths=lengths, rank=r, world_size=2, group_window=2) for r in range(2)]
    for step in range(40):  # 320 rows: 8 epochs and some
        start = step * 8
        rows = np.concatenate([b.next() for b in ranks])
        if start // n == (start + 7) // n:  # within one epoch
            assert np.all(np.diff(lengths[rows]) <= 0), f"step {step}"


# -- resume ------------------------------------------------------------------------------


def test_a_grouped_batcher_resumed_mid_epoch_continues_identically():
    kwargs = dict(rank=1, world_size=2, seed=11, grad_accum=2, group_window=3)
    ref = _grouped(137, 4, **kwargs)
    reference = [ref.next().tolist() for _ in range(90)]  # 720 stream rows: five epochs and some
    first = _grouped(137, 4, **kwargs)
    head = [first.next().tolist() for _ in range(23)]
    state = pickle.loads(pickle.dumps(first.state_dict()))
    assert state == {"epoch": 1, "position": 23 * 8 - 137, "layout": "stream",
                     "group_by_length": {"block": 16, "window": 48}}
    resumed = _grouped(137, 4, **kwargs)
    resumed.load_state_dict(state)
    assert head + [resumed.next().tolist() for _ in range(67)] == reference


def test_a_state_taken_mid_epoch_under_another_grouping_is_refused():
    grouped, plain = _grouped(40, 4, seed=1), RowBatcher(40, 4, seed=1)
    grouped.next(), plain.next()
    with pytest.raises(SamplerError, match="not grouped by length.*resume with the same group_by_length"):
        _grouped(40, 4, seed=1).load_state_dict(plain.state_dict())
    with pytest.raises(SamplerError, match="grouped by length in blocks of 4 rows"):
        RowBatcher(40, 4, seed=1).load_state_dict(grouped.state_dict())
    with pytest.raises(SamplerError, match="blocks of 4 rows, windows of 200.*blocks of 8 rows"):
        _grouped(40, 4, seed=1, grad_accum=2).load_state_dict(grouped.state_dict())
    # At an epoch boundary nothing of the epoch was taken: either order may start it.
    fresh = _grouped(40, 4, seed=1)
    fresh.load_state_dict({"epoch": 2, "position": 0, "layout": "stream"})
    assert fresh.next().tolist() == _grouped(40, 4, seed=1)._permutation(2)[:4].tolist()


@pytest.mark.parametrize("kwargs, match", [
    (dict(mode="eval"), "training epochs"),
    (dict(lengths=None), "needs the rows' lengths"),
    (dict(lengths=np.ones(9)), "one length per row: 10 rows"),
    (dict(grad_accum=0), "grad_accum must be a positive integer"),
    (dict(group_window=0), "group_window must be a positive integer"),
])
def test_bad_grouping_arguments(kwargs, match):
    kwargs = {"lengths": np.ones(10), **kwargs}
    with pytest.raises(SamplerError, match=match):
        RowBatcher(10, 2, group_by_length=True, **kwargs)


# -- the schedule: 1 worker x accumulation 2 == 2 workers x accumulation 1 --------------------

MIX = {"mnli": 137, "qqp": 93, "mlm": 41}  # odd sizes: epochs end inside optimizer steps
LENGTHS = {t: _lengths(n, seed=i) for i, (t, n) in enumerate(MIX.items())}
LAYOUTS = [(1, 2, 4), (2, 1, 4), (1, 4, 2), (4, 1, 2), (2, 2, 2), (1, 8, 1), (8, 1, 1)]


def _schedules(world, accum, micro, *, seed=9, window=3):
    weights = task_weights(MIX, fixed={"mlm": 0.2})
    return [StepSchedule(TaskSampler(weights, seed=seed),
                         {t: RowBatcher(n, micro, rank=r, world_size=world, seed=seed, group_by_length=True,
                                        lengths=LENGTHS[t], grad_accum=accum, group_window=window)
                          for t, n in MIX.items()},
                         grad_accum=accum) for r in range(world)]


def _run(schedules, n_steps):
    """Per optimizer step: (task, draws, each micro-batch's rows in (accumulation, rank) order)."""
    out = []
    for _ in range(n_steps):
        per_rank = [s.step() for s in schedules]
        mbs = [per_rank[r][a] for a in range(len(per_rank[0])) for r in range(len(schedules))]
        out.append((sorted({mb.task for mb in mbs}), sorted({mb.draw for mb in mbs}), [mb.rows.tolist() for mb in mbs]))
    return out


def test_one_worker_accumulating_two_and_two_workers_train_the_same_grouped_steps():
    one = _run(_schedules(1, 2, 4), 120)  # 960 rows: every task's table wraps several times
    two = _run(_schedules(2, 1, 4), 120)
    assert one == two
    # ... and grouping did something: most steps are longest-first runs of similar rows.
    sorted_steps = sum(np.all(np.diff(LENGTHS[t[0]][sum(rows, [])]) <= 0) for t, _, rows in one)
    assert sorted_steps >= 0.8 * len(one)
    plain = _run([StepSchedule(TaskSampler(task_weights(MIX, fixed={"mlm": 0.2}), seed=9),
                               {t: RowBatcher(n, 8, seed=9) for t, n in MIX.items()}, grad_accum=1)], 120)
    assert [t for t, _, _ in one] == [t for t, _, _ in plain]  # the same tasks, other rows
    assert [sum(rows, []) for _, _, rows in one] != [sum(rows, []) for _, _, rows in plain]


@pytest.mark.parametrize("layout", LAYOUTS[2:], ids=lambda l: "x".join(map(str, l)))
def test_every_split_of_the_global_batch_trains_the_same_grouped_steps(layout):
    flat = [(t, d, sum(rows, [])) for t, d, rows in _run(_schedules(*layout), 60)]
    assert flat == [(t, d, sum(rows, [])) for t, d, rows in _run(_schedules(1, 2, 4), 60)]


def test_a_grouped_schedule_resumed_at_a_step_boundary_continues_the_exact_sequence():
    reference = _run(_schedules(2, 2, 2), 70)
    first = _schedules(2, 2, 2)
    head = _run(first, 29)
    states = [pickle.loads(pickle.dumps(s.state_dict())) for s in first]
    assert states[0] == states[1]  # the same on every rank
    resumed = _schedules(2, 2, 2)
    for s, state in zip(resumed, states):
        s.load_state_dict(state)
    assert head + _run(resumed, 41) == reference


def test_a_grouped_checkpoint_of_two_workers_continues_on_one_worker_accumulating_two():
    """The same global batch, split another way: the state fits and the steps go on alike."""
    reference = _run(_schedules(1, 2, 4), 50)
    two = _schedules(2, 1, 4)
    head = _run(two, 21)
    one = _schedules(1, 2, 4)[0]
    one.load_state_dict(pickle.loads(pickle.dumps(two[0].state_dict())))
    flat = [(t, d, sum(rows, [])) for t, d, rows in head + _run([one], 29)]
    assert flat == [(t, d, sum(rows, [])) for t, d, rows in reference]
