"""Task weights, the multi-task sampler and the data-parallel row batcher."""
import math
import pickle
from collections import Counter

import numpy as np
import pytest

from stilts_ds.data.sampler import RowBatcher, SamplerError, TaskSampler, task_weights
from stilts_ds.errors import StiltsError

SIZES = {"a": 100, "b": 300, "c": 600}


# -- task_weights ----------------------------------------------------------------------


def test_proportional_is_the_default():
    assert task_weights(SIZES) == pytest.approx({"a": 0.1, "b": 0.3, "c": 0.6})


def test_uniform():
    assert task_weights(SIZES, "uniform") == pytest.approx({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3})


def test_temperature_two_is_square_root_renormalised():
    w = task_weights(SIZES, "temperature", temperature=2.0)
    raw = {k: math.sqrt(v) for k, v in SIZES.items()}
    z = sum(raw.values())
    assert w == pytest.approx({k: v / z for k, v in raw.items()})
    assert w == pytest.approx({"a": 0.1930, "b": 0.3343, "c": 0.4727}, abs=1e-4)


def test_temperature_one_is_proportional_and_large_t_tends_to_uniform():
    assert task_weights(SIZES, "temperature", temperature=1.0) == pytest.approx(task_weights(SIZES))
    w = task_weights(SIZES, "temperature", temperature=1e6)
    assert w == pytest.approx({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}, abs=1e-5)


def test_temperature_with_cap():
    # c is capped to 300, so b and c weigh the same; a is 100 -> (1, sqrt 3, sqrt 3) at T=2.
    w = task_weights(SIZES, "temperature", temperature=2.0, cap=300)
    z = 1 + 2 * math.sqrt(3)
    assert w == pytest.approx({"a": 1 / z, "b": math.sqrt(3) / z, "c": math.sqrt(3) / z})


def test_cap_applies_to_proportional_too():
    assert task_weights(SIZES, cap=100) == pytest.approx({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3})


def test_weights_sum_to_one_and_keep_order():
    sizes = {"qqp": 363_846, "commonsenseqa": 9_741, "ccg": 38_015, "mnli": 392_702}
    for strategy in ("proportional", "temperature", "uniform"):
        w = task_weights(sizes, strategy, temperature=5.0)
        assert list(w) == list(sizes)
        assert sum(w.values()) == pytest.approx(1.0, abs=1e-12)


def test_tiny_task_at_low_temperature_does_not_underflow_to_nan():
    w = task_weights({"big": 10**9, "tiny": 1}, "temperature", temperature=0.01)
    assert w["big"] == pytest.approx(1.0) and w["tiny"] >= 0 and not math.isnan(w["tiny"])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(sizes={}), "at least one task"),
        (dict(sizes={"a": 5, "b": 0}), "no training rows.*'b': 0.*prepare"),
        (dict(sizes={"a": -1}), "no training rows"),
        (dict(sizes=SIZES, strategy="temperature", temperature=0), "positive"),
        (dict(sizes=SIZES, strategy="temperature", temperature=-2.0), "positive"),
        (dict(sizes=SIZES, strategy="softmax"), "unknown sampling strategy 'softmax'.*proportional, temperature, uniform"),
        (dict(sizes=SIZES, cap=0), "cap"),
    ],
)
def test_bad_weights_input(kwargs, match):
    with pytest.raises(ValueError, match=match) as err:
        task_weights(**kwargs)
    assert isinstance(err.value, StiltsError)


# -- TaskSampler -----------------------------------------------------------------------


def _draw(sampler, n):
    return [sampler.next() for _ in range(n)]


def test_sampler_is_deterministic_and_the_same_on_every_rank():
    w = task_weights(SIZES)
    ranks = [TaskSampler(w, seed=7) for _ in range(3)]
    # a rank that built its dict in another order still draws the same sequence
    ranks.append(TaskSampler(dict(reversed(list(w.items()))), seed=7))
    seqs = [_draw(s, 500) for s in ranks]
    assert all(s == seqs[0] for s in seqs)
    assert _draw(TaskSampler(w, seed=8), 500) != seqs[0]


def test_sampler_follows_its_weights():
    counts = Counter(_draw(TaskSampler({"a": 0.1, "b": 0.3, "c": 0.6}, seed=0), 20_000))
    for task, p in {"a": 0.1, "b": 0.3, "c": 0.6}.items():
        assert counts[task] / 20_000 == pytest.approx(p, abs=0.015)


def test_zero_weight_task_is_never_drawn():
    assert "b" not in set(_draw(TaskSampler({"a": 0.5, "b": 0.0, "c": 0.5}, seed=1), 2_000))


def test_sampler_resume_continues_the_exact_sequence():
    w = task_weights(SIZES, "temperature")
    reference = _draw(TaskSampler(w, seed=3), 300)
    first = TaskSampler(w, seed=3)
    head = _draw(first, 137)
    # checkpoints go through pickle (DeepSpeed client_state); round-trip it that way
    state = pickle.loads(pickle.dumps(first.state_dict()))
    resumed = TaskSampler(w, seed=3)
    resumed.load_state_dict(state)
    assert head + _draw(resumed, 163) == reference
    assert resumed.steps == 300


def test_sampler_refuses_a_state_from_another_mixture_or_seed():
    state = TaskSampler(task_weights(SIZES), seed=3).state_dict()
    with pytest.raises(SamplerError, match="same task mixture"):
        TaskSampler(task_weights(SIZES, "uniform"), seed=3).load_state_dict(state)
    with pytest.raises(SamplerError, match="same seed"):
        TaskSampler(task_weights(SIZES), seed=4).load_state_dict(state)


# -- RowBatcher: training --------------------------------------------------------------


def _epoch_rows(batchers):
    """Rows each rank sees over exactly one epoch (rows_per_rank is a multiple of batch)."""
    out = []
    for b in batchers:
        n_batches = b.rows_per_rank // b.batch_size
        out.append(np.concatenate([b.next() for _ in range(n_batches)]))
    return out


def test_shards_are_disjoint_and_cover_the_table_when_divisible():
    batchers = [RowBatcher(24, 4, rank=r, world_size=3, seed=5) for r in range(3)]
    rows = _epoch_rows(batchers)  # 8 rows per rank, 2 batches each
    assert [len(r) for r in rows] == [8, 8, 8]
    assert sorted(np.concatenate(rows).tolist()) == list(range(24))
    assert all(b.state_dict() == {"epoch": 1, "position": 0} for b in batchers)


def test_uneven_table_is_padded_by_wrapping_so_every_rank_gets_the_same_count():
    batchers = [RowBatcher(10, 2, rank=r, world_size=3, seed=5) for r in range(3)]
    assert {b.rows_per_rank for b in batchers} == {4}
    rows = _epoch_rows(batchers)
    flat = np.concatenate(rows).tolist()
    assert len(flat) == 12 and set(flat) == set(range(10))
    # only the 2 wrapped padding rows repeat, and they are the permutation's first rows
    dupes = [r for r, c in Counter(flat).items() if c > 1]
    perm = np.random.default_rng(5).permutation(10)
    assert sorted(dupes) == sorted(perm[:2].tolist())


def test_batches_are_full_and_cross_epoch_boundaries():
    b = RowBatcher(5, 3, seed=0)
    batches = [b.next() for _ in range(5)]  # 15 rows = 3 epochs of 5
    assert all(len(x) == 3 for x in batches)
    flat = np.concatenate(batches)
    for e in range(3):
        assert sorted(flat[5 * e : 5 * e + 5].tolist()) == list(range(5))
        assert flat[5 * e : 5 * e + 5].tolist() == np.random.default_rng(e).permutation(5).tolist()
    assert b.state_dict() == {"epoch": 3, "position": 0}


def test_epochs_are_reshuffled():
    b = RowBatcher(50, 50, seed=1)
    assert b.next().tolist() != b.next().tolist()


def test_more_ranks_than_rows_still_gives_every_rank_rows():
    batchers = [RowBatcher(2, 1, rank=r, world_size=5, seed=0) for r in range(5)]
    assert all(len(b.next()) == 1 for b in batchers)


def test_batcher_resume_mid_epoch_continues_identically():
    ref = RowBatcher(37, 4, rank=1, world_size=2, seed=11)
    reference = [ref.next().tolist() for _ in range(20)]  # ~4 epochs of 19 rows per rank
    first = RowBatcher(37, 4, rank=1, world_size=2, seed=11)
    head = [first.next().tolist() for _ in range(7)]
    state = first.state_dict()
    assert set(state) == {"epoch", "position"} and state == {"epoch": 1, "position": 9}
    resumed = RowBatcher(37, 4, rank=1, world_size=2, seed=11)
    resumed.load_state_dict(state)
    assert head + [resumed.next().tolist() for _ in range(13)] == reference


def test_every_rank_has_the_same_state_after_the_same_steps():
    batchers = [RowBatcher(37, 4, rank=r, world_size=3, seed=2) for r in range(3)]
    for _ in range(9):
        for b in batchers:
            b.next()
    assert len({tuple(b.state_dict().items()) for b in batchers}) == 1


def test_batcher_accepts_a_table_with_len():
    class Table:
        def __len__(self):
            return 6

    assert RowBatcher(Table(), 6).next().dtype == np.int64


@pytest.mark.parametrize(
    "args, kwargs, match",
    [
        ((0, 4), {}, "0 rows"),
        ((10, 0), {}, "batch_size"),
        ((10, 2), {"rank": 3, "world_size": 3}, "rank 3"),
        ((10, 2), {"mode": "test"}, "mode"),
    ],
)
def test_bad_batcher_arguments(args, kwargs, match):
    with pytest.raises(SamplerError, match=match):
        RowBatcher(*args, **kwargs)


def test_batcher_refuses_a_state_that_does_not_fit():
    with pytest.raises(SamplerError, match="same data and world size"):
        RowBatcher(10, 2, world_size=2).load_state_dict({"epoch": 0, "position": 9})


# -- RowBatcher: evaluation ------------------------------------------------------------


@pytest.mark.parametrize("n_rows", [0, 1, 2, 10, 11, 12, 13])
def test_eval_mode_covers_each_row_exactly_once_across_three_ranks(n_rows):
    per_rank = []
    for r in range(3):
        b = RowBatcher(n_rows, 4, rank=r, world_size=3, mode="eval")
        batches = list(b)
        assert len(batches) == len(b) <= b.max_batches
        assert all(0 < len(x) <= 4 for x in batches)
        rows = np.concatenate(batches).tolist() if batches else []
        assert rows == list(range(r, n_rows, 3))  # sequential, no shuffle
        per_rank.append(rows)
    flat = sum(per_rank, [])
    assert sorted(flat) == list(range(n_rows)) and len(flat) == n_rows  # no padding, no duplicates
    assert max(map(len, per_rank)) - min(map(len, per_rank)) <= 1


def test_eval_counts_may_differ_between_ranks():
    counts = [len(np.concatenate(list(RowBatcher(10, 3, rank=r, world_size=3, mode="eval")))) for r in range(3)]
    assert counts == [4, 3, 3]
    assert RowBatcher(10, 3, rank=2, world_size=3, mode="eval").max_batches == 2


def test_eval_is_the_same_regardless_of_seed():
    a = list(RowBatcher(9, 2, rank=1, world_size=2, seed=0, mode="eval"))
    b = list(RowBatcher(9, 2, rank=1, world_size=2, seed=99, mode="eval"))
    assert [x.tolist() for x in a] == [x.tolist() for x in b]


def test_sampler_module_loads_neither_deepspeed_nor_ray():
    import subprocess
    import sys

    code = "import sys, stilts_ds.data.sampler; print(sorted(k for k in sys.modules if k.split('.')[0] in ('deepspeed', 'ray')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
