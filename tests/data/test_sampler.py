"""Task weights, the multi-task sampler, the data-parallel row batcher and the step schedule
that combines them (what every micro-batch of every rank trains on).

    .venv/bin/python -m pytest -q tests/data/test_sampler.py
"""
import math
import pickle
from collections import Counter

import numpy as np
import pytest

from stilts_ds.data.sampler import RowBatcher, SamplerError, StepSchedule, TaskSampler, task_weights
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
    """Rows each rank sees over exactly one epoch (n_rows is a multiple of batch x world size)."""
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
    assert all(b.state_dict() == {"epoch": 1, "position": 0, "layout": "stream"} for b in batchers)


def test_an_uneven_table_is_one_stream_whatever_the_world_size():
    """No padding: 3 ranks read, block after block, the rows one rank reads in 3 calls, and
    each epoch is the whole permutation seeded by seed + epoch, nothing repeated."""
    ranks = [RowBatcher(10, 2, rank=r, world_size=3, seed=5) for r in range(3)]
    alone = RowBatcher(10, 2, seed=5)
    split = [np.concatenate([b.next() for b in ranks]).tolist() for _ in range(5)]  # 30 rows: 3 epochs
    assert split == [np.concatenate([alone.next() for _ in range(3)]).tolist() for _ in range(5)]
    flat = sum(split, [])
    for e in range(3):
        assert flat[10 * e : 10 * e + 10] == np.random.default_rng(5 + e).permutation(10).tolist()
    assert {tuple(b.state_dict().items()) for b in ranks} == {tuple(alone.state_dict().items())}
    assert all(len(b.next()) == 2 for b in ranks)  # every rank always gets a full batch


def test_batches_are_full_and_cross_epoch_boundaries():
    b = RowBatcher(5, 3, seed=0)
    batches = [b.next() for _ in range(5)]  # 15 rows = 3 epochs of 5
    assert all(len(x) == 3 for x in batches)
    flat = np.concatenate(batches)
    for e in range(3):
        assert sorted(flat[5 * e : 5 * e + 5].tolist()) == list(range(5))
        assert flat[5 * e : 5 * e + 5].tolist() == np.random.default_rng(e).permutation(5).tolist()
    assert b.state_dict() == {"epoch": 3, "position": 0, "layout": "stream"}


def test_epochs_are_reshuffled():
    b = RowBatcher(50, 50, seed=1)
    assert b.next().tolist() != b.next().tolist()


def test_more_ranks_than_rows_still_gives_every_rank_rows():
    batchers = [RowBatcher(2, 1, rank=r, world_size=5, seed=0) for r in range(5)]
    assert all(len(b.next()) == 1 for b in batchers)


def test_batcher_resume_mid_epoch_continues_identically():
    ref = RowBatcher(37, 4, rank=1, world_size=2, seed=11)
    reference = [ref.next().tolist() for _ in range(20)]  # 160 stream rows: 4 epochs of 37 and some
    first = RowBatcher(37, 4, rank=1, world_size=2, seed=11)
    head = [first.next().tolist() for _ in range(7)]
    state = first.state_dict()
    assert state == {"epoch": 1, "position": 7 * 8 - 37, "layout": "stream"}  # 56 rows of the stream taken
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
        RowBatcher(10, 2, world_size=2).load_state_dict({"epoch": 0, "position": 11, "layout": "stream"})


def test_a_state_of_the_per_rank_shard_layout_loads_only_at_world_size_one():
    """Before the stream layout, a position counted one rank's rows of a padded shard: the same
    number at world size 1 (such a checkpoint continues), another meaning at 2 (refused)."""
    b = RowBatcher(10, 2, seed=4)
    b.load_state_dict({"epoch": 1, "position": 6})
    assert b.next().tolist() == np.random.default_rng(5).permutation(10)[6:8].tolist()
    with pytest.raises(SamplerError, match="cannot be continued at world size 2"):
        RowBatcher(10, 2, world_size=2).load_state_dict({"epoch": 1, "position": 3})


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


# -- StepSchedule: what each micro-batch of each rank trains on -----------------------------

MIX = {"mnli": 37, "qqp": 23, "mlm": 11}  # odd sizes: epochs end inside optimizer steps
FIXED = {"mlm": 0.2}
GLOBAL_BATCH = 8
# (workers, gradient accumulation, micro-batch): every split of the same global batch of 8
LAYOUTS = [(1, 2, 4), (2, 1, 4), (1, 4, 2), (4, 1, 2), (2, 2, 2), (1, 8, 1), (8, 1, 1)]


def _schedules(world, accum, micro, *, sample_per="step", seed=9, sizes=MIX):
    weights = task_weights(sizes, fixed=FIXED)
    return [StepSchedule(TaskSampler(weights, seed=seed),
                         {t: RowBatcher(n, micro, rank=r, world_size=world, seed=seed) for t, n in sizes.items()},
                         grad_accum=accum, sample_per=sample_per) for r in range(world)]


def _run(schedules, n_steps):
    """Per optimizer step: (tasks, draws, the step's rows) over every micro-batch of every
    rank, micro-batches in (accumulation step, rank) order."""
    out = []
    for _ in range(n_steps):
        per_rank = [s.step() for s in schedules]
        mbs = [per_rank[r][a] for a in range(len(per_rank[0])) for r in range(len(schedules))]
        out.append((sorted({mb.task for mb in mbs}), sorted({mb.draw for mb in mbs}),
                    np.concatenate([mb.rows for mb in mbs]).tolist()))
    return out


def test_one_worker_accumulating_two_and_two_workers_see_the_same_task_and_rows_every_step():
    one = _run(_schedules(1, 2, 4), 60)  # 480 rows: every task's table wraps several times
    two = _run(_schedules(2, 1, 4), 60)
    assert one == two
    for step, (tasks, draws, rows) in enumerate(one, start=1):
        assert len(tasks) == 1 and draws == [step] and len(rows) == GLOBAL_BATCH  # one task per step
    assert {tasks[0] for tasks, _, _ in one} == set(MIX)
    # The step's rows are the next 8 of its task's stream (epochs of seeded permutations), exactly.
    streams = {t: np.concatenate([np.random.default_rng(9 + e).permutation(n) for e in range(60)]).tolist()
               for t, n in MIX.items()}
    taken = {t: 0 for t in MIX}
    for (task,), _, rows in one:
        assert rows == streams[task][taken[task] : taken[task] + 8]
        taken[task] += 8
    # The tasks follow the sampler's draws, one per optimizer step.
    sampler = TaskSampler(task_weights(MIX, fixed=FIXED), seed=9)
    assert [tasks[0] for tasks, _, _ in one] == [sampler.next() for _ in range(60)]


@pytest.mark.parametrize("layout", LAYOUTS[2:], ids=lambda l: "x".join(map(str, l)))
def test_every_split_of_the_global_batch_trains_the_same_steps(layout):
    assert _run(_schedules(*layout), 40) == _run(_schedules(1, 2, 4), 40)


def test_per_micro_batch_sampling_is_the_old_sequence_and_mixes_tasks_within_a_step():
    sched = _schedules(1, 2, 4, sample_per="micro_batch")[0]
    mbs = [sched.next() for _ in range(120)]
    sampler = TaskSampler(task_weights(MIX, fixed=FIXED), seed=9)
    assert [mb.task for mb in mbs] == [sampler.next() for _ in range(120)]  # a draw per micro-batch
    assert [mb.draw for mb in mbs] == list(range(1, 121))
    assert any(a.task != b.task for a, b in zip(mbs[::2], mbs[1::2]))  # some steps mix two tasks
    # ... so 1 x 2 and 2 x 1 no longer train the same steps.
    per_micro = {layout: _run(_schedules(*layout, sample_per="micro_batch"), 30) for layout in [(1, 2, 4), (2, 1, 4)]}
    assert per_micro[(1, 2, 4)] != per_micro[(2, 1, 4)]


@pytest.mark.parametrize("sample_per", ["step", "micro_batch"])
def test_a_schedule_resumed_at_a_step_boundary_continues_the_exact_sequence(sample_per):
    reference = _run(_schedules(2, 2, 2, sample_per=sample_per), 33)
    first = _schedules(2, 2, 2, sample_per=sample_per)
    head = _run(first, 13)
    states = [pickle.loads(pickle.dumps(s.state_dict())) for s in first]  # DeepSpeed client state is pickled
    assert set(states[0]) == {"sampler", "batchers"} and states[0] == states[1]  # the same on every rank
    resumed = _schedules(2, 2, 2, sample_per=sample_per)
    for s, state in zip(resumed, states):
        s.load_state_dict(state)
    assert head + _run(resumed, 20) == reference
    assert resumed[0].sampler.steps == (33 if sample_per == "step" else 66)


def test_a_schedule_is_checkpointed_only_between_optimizer_steps():
    sched = _schedules(1, 2, 4)[0]
    sched.next()
    assert not sched.at_step_boundary
    with pytest.raises(SamplerError, match="1 of 2 micro-batches into an optimizer step"):
        sched.state_dict()
    sched.next()
    assert sched.at_step_boundary and set(sched.state_dict()) == {"sampler", "batchers"}


def test_a_checkpoint_of_the_sampler_and_batchers_before_the_schedule_loads():
    """The client state keeps its keys: a world-size-1 checkpoint written by the loop before the
    schedule (sampler + batchers without the layout key) continues where it stopped."""
    weights = task_weights(MIX, fixed=FIXED)
    sampler = TaskSampler(weights, seed=9)
    batchers = {t: RowBatcher(n, 4, seed=9) for t, n in MIX.items()}
    for _ in range(10):
        batchers[sampler.next()].next()
    old = {"sampler": sampler.state_dict(),
           "batchers": {t: {"epoch": b.epoch, "position": b.position} for t, b in batchers.items()}}
    sched = _schedules(1, 1, 4)[0]
    sched.load_state_dict(old)
    mb = sched.next()
    assert mb.task == sampler.next() and mb.rows.tolist() == batchers[mb.task].next().tolist() and mb.draw == 11


@pytest.mark.parametrize("args, match", [
    (dict(grad_accum=0), "grad_accum must be a positive integer"),
    (dict(grad_accum=2, sample_per="epoch"), "sample_per must be one of step, micro_batch"),
])
def test_bad_schedule_arguments(args, match):
    with pytest.raises(SamplerError, match=match):
        StepSchedule(TaskSampler({"a": 1.0}, seed=0), {"a": RowBatcher(4, 2)}, **args)
    with pytest.raises(SamplerError, match=r"no row batcher for sampled task\(s\) \['b'\]"):
        StepSchedule(TaskSampler({"a": 0.5, "b": 0.5}, seed=0), {"a": RowBatcher(4, 2)}, grad_accum=1)


def test_mlm_masks_of_a_step_are_the_same_on_one_worker_and_on_two(tokenizer):
    """MLM masks are seeded by (run seed, draw, row guid); with a draw per optimizer step every
    micro-batch of a step carries the step's number, so 1 x 2 and 2 x 1 mask each row alike."""
    from stilts_ds.data.sources import load_examples
    from stilts_ds.tasks.formats import format_of
    from stilts_ds.tasks.registry import get_task

    spec = get_task("mlm@en+de")
    feats = format_of(spec).featurize(spec, load_examples(spec, "train", spec.train_language), tokenizer, 32)
    sizes = {"mlm": len(feats), "mnli": 37}

    def batches(world, accum):
        scheds = _schedules(world, accum, 4, sizes=sizes)
        out = []
        for _ in range(12):
            per_rank = [s.step() for s in scheds]
            out += [format_of(spec).collate(feats, mb.rows, seed=9, step=mb.draw).tensors
                    for a in range(accum) for mb in (per_rank[r][a] for r in range(world)) if mb.task == "mlm"]
        return out

    one, two = batches(1, 2), batches(2, 1)
    assert len(one) == len(two) >= 4
    for a, b in zip(one, two):
        assert set(a) == set(b) == {"input_ids", "attention_mask", "labels"}
        assert all(a[k].equal(b[k]) for k in a)
    assert any((t["labels"] != -100).any() for t in one)  # something was masked


def test_sampler_module_loads_neither_deepspeed_nor_ray():
    import subprocess
    import sys

    code = "import sys, stilts_ds.data.sampler; print(sorted(k for k in sys.modules if k.split('.')[0] in ('deepspeed', 'ray')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
