"""MetricLogger writes on rank 0 only (event file + metrics.jsonl), read_scalars reads it back,
the tag helpers spell DESIGN.md's tags, and ThroughputMeter's arithmetic (fake clock)."""
import json

import pytest

from stilts_ds.engine.tb_logger import (
    METRICS_JSONL,
    TRAIN_LR,
    TRAIN_SAMPLES_PER_S,
    TRAIN_TOKENS_PER_S,
    MetricLogger,
    ThroughputMeter,
    bench_tag,
    eval_tag,
    read_scalars,
    train_loss_tag,
)


def event_files(path):
    return sorted(p.name for p in path.glob("events.out.tfevents*")) if path.exists() else []


def log_some(log):
    # Values exactly representable in float32, since event files store float32.
    log.scalar(train_loss_tag("mnli"), 0.75, 10)
    log.scalars({train_loss_tag("mnli"): 0.5, TRAIN_LR: 0.25, TRAIN_SAMPLES_PER_S: 128.0}, 20)
    log.scalar(eval_tag("xnli", "de", "accuracy"), 71.5, 20)
    log.text("config", "model: tiny", 0)


# -- MetricLogger ----------------------------------------------------------------------


def test_rank0_writes_events_that_read_back(tmp_path):
    log_dir = tmp_path / "tb"
    with MetricLogger(log_dir, rank=0) as log:
        log_some(log)
    assert len(event_files(log_dir)) == 1
    assert read_scalars(log_dir) == {
        "train/mnli/loss": [(10, 0.75), (20, 0.5)],
        "train/lr": [(20, 0.25)],
        "train/samples_per_s": [(20, 128.0)],
        "eval/xnli/de/accuracy": [(20, 71.5)],
    }  # the text entry is not a scalar


def test_other_ranks_write_nothing(tmp_path):
    log_dir = tmp_path / "tb"
    log = MetricLogger(log_dir, rank=1)
    log_some(log)
    log.flush()
    log.close()
    log.close()
    assert not log_dir.exists()  # not even the directory
    assert read_scalars(log_dir) == {}


def test_rank0_opens_lazily(tmp_path):
    log_dir = tmp_path / "tb"
    MetricLogger(log_dir, rank=0).close()
    assert not log_dir.exists()


def test_metrics_jsonl(tmp_path):
    log_dir = tmp_path / "tb"
    with MetricLogger(log_dir, rank=0) as log:
        log.scalar("train/lr", 0.1, 3)
        log.scalars({"a": 1, "b": 2.5}, 4)
        log.text("note", "not in the jsonl", 4)
    rows = [json.loads(line) for line in (log_dir / METRICS_JSONL).read_text().splitlines()]
    assert [(r["tag"], r["value"], r["step"]) for r in rows] == [("train/lr", 0.1, 3), ("a", 1.0, 4), ("b", 2.5, 4)]
    assert all(set(r) == {"tag", "value", "step", "wall_time"} for r in rows)
    assert rows[1]["wall_time"] == rows[2]["wall_time"] >= rows[0]["wall_time"] > 0  # one wall time per call

    # A second logger on the same directory (a resumed run) appends.
    with MetricLogger(log_dir, rank=0) as log:
        log.scalar("train/lr", 0.2, 5)
    lines = (log_dir / METRICS_JSONL).read_text().splitlines()
    assert len(lines) == 4 and json.loads(lines[-1])["value"] == 0.2


def test_jsonl_flushed_on_schedule(tmp_path):
    log = MetricLogger(tmp_path, rank=0, flush_secs=0)
    log.scalar("x", 1.0, 1)
    assert json.loads((tmp_path / METRICS_JSONL).read_text())["value"] == 1.0  # before close
    log.close()


def test_values_converted_and_nan_kept(tmp_path):
    torch = pytest.importorskip("torch")
    with MetricLogger(tmp_path, rank=0) as log:
        log.scalar("t", torch.tensor(2.0), torch.tensor(7))
        log.scalar("nan", float("nan"), 8)
    rows = [json.loads(line) for line in (tmp_path / METRICS_JSONL).read_text().splitlines()]
    assert (rows[0]["value"], rows[0]["step"]) == (2.0, 7)
    assert rows[1]["value"] != rows[1]["value"]  # NaN survives: a diverged loss is data


def test_closed_logger_refuses(tmp_path):
    log = MetricLogger(tmp_path, rank=0)
    log.scalar("x", 1.0, 1)
    log.close()
    with pytest.raises(RuntimeError, match="closed"):
        log.scalar("x", 2.0, 2)


def test_read_scalars_reads_tensor_style_scalars(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(tmp_path))
    writer.add_scalar("new", 1.5, 3, new_style=True)
    writer.add_scalar("old", 2.5, 4)
    writer.close()
    assert read_scalars(tmp_path) == {"new": [(3, 1.5)], "old": [(4, 2.5)]}


# -- tags ------------------------------------------------------------------------------


def test_tag_spelling():
    assert train_loss_tag("anli_plus") == "train/anli_plus/loss"
    assert (TRAIN_LR, TRAIN_SAMPLES_PER_S, TRAIN_TOKENS_PER_S) == (
        "train/lr",
        "train/samples_per_s",
        "train/tokens_per_s",
    )
    assert eval_tag("xquad", "de", "f1") == "eval/xquad/de/f1"
    assert eval_tag("lareqa", "ar", "map@20") == "eval/lareqa/ar/map@20"
    assert bench_tag("deepspeed", "node-0", "samples_per_s") == "bench/deepspeed/node-0/samples_per_s"
    assert bench_tag("eager", "10.0.0.2", "latency_ms/p99") == "bench/eager/10.0.0.2/latency_ms/p99"


@pytest.mark.parametrize(
    "call",
    [
        lambda: train_loss_tag(""),
        lambda: train_loss_tag("a/b"),
        lambda: eval_tag("xnli", "de/x", "accuracy"),
        lambda: eval_tag("xnli", "de", ""),
        lambda: bench_tag("ds/x", "n", "t"),
        lambda: bench_tag("ds", "n", ""),
        lambda: bench_tag("ds", "n", "/t"),
    ],
)
def test_bad_tag_parts(call):
    with pytest.raises(ValueError, match="tag"):
        call()


# -- ThroughputMeter -------------------------------------------------------------------


class FakeClock:
    def __init__(self, *times):
        self.times = list(times)

    def __call__(self):
        return self.times.pop(0)


def test_throughput_arithmetic():
    meter = ThroughputMeter(clock=FakeClock(100.0, 102.0, 110.0, 112.0, 200.0, 205.0))
    assert meter.rate() == (0.0, 0.0)
    meter.start()
    assert meter.stop(samples=8, tokens=100) == 2.0
    # the 8 s between regions (eval, logging) is not counted
    meter.start()
    meter.stop(samples=8, tokens=60)
    assert (meter.samples, meter.tokens, meter.seconds) == (16, 160, 4.0)
    assert meter.rate() == (4.0, 40.0)

    meter.reset()
    assert meter.rate() == (0.0, 0.0)
    meter.start()
    meter.stop(samples=10, tokens=1000)
    assert meter.rate() == (2.0, 200.0)


def test_throughput_sync_before_each_clock_read():
    events = []
    ticks = iter([0.0, 1.0])

    def clock():
        events.append("clock")
        return next(ticks)

    meter = ThroughputMeter(clock=clock, sync=lambda: events.append("sync"))
    meter.start()
    meter.stop(samples=1)
    assert events == ["sync", "clock", "sync", "clock"]


def test_throughput_misuse():
    meter = ThroughputMeter(clock=FakeClock(0.0, 1.0))
    with pytest.raises(RuntimeError, match="without start"):
        meter.stop(samples=1)
    meter.start()
    with pytest.raises(RuntimeError, match="twice"):
        meter.start()
