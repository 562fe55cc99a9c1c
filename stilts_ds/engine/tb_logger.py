"""Rank-0 metric logging: TensorBoard event files plus a ``metrics.jsonl`` beside them.

Every rank builds a ``MetricLogger`` and calls it unconditionally; the logger itself decides
that only rank 0 writes, so the training loop carries no ``if rank == 0`` branches::

    from stilts_ds.engine.tb_logger import (
        MetricLogger, ThroughputMeter, TRAIN_LR, TRAIN_SAMPLES_PER_S, TRAIN_TOKENS_PER_S,
        eval_tag, train_loss_tag,
    )

    log = MetricLogger(run_dir / "tensorboard", rank=ray.train.get_context().get_world_rank())
    meter = ThroughputMeter(sync=torch.cuda.synchronize if on_gpu else None)
    for step, batch in enumerate(loader, start=1):
        meter.start()
        loss = engine(**batch).loss; engine.backward(loss); engine.step()
        meter.stop(samples=len(batch["input_ids"]), tokens=int(batch["attention_mask"].sum()))
        if step % log_every == 0:
            samples_per_s, tokens_per_s = meter.rate(); meter.reset()
            log.scalars({train_loss_tag(task): loss.item(), TRAIN_LR: lr,
                         TRAIN_SAMPLES_PER_S: samples_per_s, TRAIN_TOKENS_PER_S: tokens_per_s}, step)
    log.scalar(eval_tag("xnli", "de", "accuracy"), 71.3, step)
    log.close()

    # later, anywhere (tests, reports): read the event files back
    from stilts_ds.engine.tb_logger import read_scalars
    read_scalars(run_dir / "tensorboard")   # {"train/xnli/loss": [(10, 0.69), ...], ...}

Files (rank 0 only; other ranks create nothing, not even the directory):

- ``<log_dir>/events.out.tfevents.*``: written by ``torch.utils.tensorboard.SummaryWriter``,
  opened on the first call rather than in ``__init__`` so a run that logs nothing leaves
  no empty event file;
- ``<log_dir>/metrics.jsonl``: one ``{"tag", "value", "step", "wall_time"}`` object per
  scalar, appended (a resumed run continues the same file), so scripts can read metrics
  without TensorBoard. A diverged loss is written as Python's ``NaN``/``Infinity`` tokens,
  which ``json.loads`` reads back (strict JSON parsers do not).

Both files are flushed every ``flush_secs`` and on ``close()`` / ``flush()``.

Tags are built by the helpers below (``train_loss_tag``, ``eval_tag``, ``bench_tag`` and the
``TRAIN_*`` constants) so that every caller spells them the same way (DESIGN.md's list).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable, Mapping

METRICS_JSONL = "metrics.jsonl"

TRAIN_LR = "train/lr"
TRAIN_SAMPLES_PER_S = "train/samples_per_s"
TRAIN_TOKENS_PER_S = "train/tokens_per_s"


def _part(kind: str, value: str) -> str:
    # A "/" inside a component would silently create an extra level in TensorBoard's tag
    # hierarchy (and make eval/<task>/<lang>/<metric> ambiguous to parse), so refuse it.
    if not isinstance(value, str) or not value or "/" in value:
        raise ValueError(f"tag {kind} must be a non-empty string without '/', got {value!r}")
    return value


def train_loss_tag(task: str) -> str:
    """``train/<task>/loss``."""
    return f"train/{_part('task', task)}/loss"


def eval_tag(task: str, lang: str, metric: str) -> str:
    """``eval/<task>/<lang>/<metric>``."""
    return f"eval/{_part('task', task)}/{_part('lang', lang)}/{_part('metric', metric)}"


def bench_tag(engine: str, node: str, name: str) -> str:
    """``bench/<engine>/<node>/<name>``; ``name`` may itself hold "/" (e.g. ``latency_ms/p99``)."""
    if not isinstance(name, str) or not name or name.startswith("/") or name.endswith("/"):
        raise ValueError(f"tag name must be a non-empty string not starting/ending with '/', got {name!r}")
    return f"bench/{_part('engine', engine)}/{_part('node', node)}/{name}"


class MetricLogger:
    """Scalars and text to TensorBoard and ``metrics.jsonl`` on rank 0; a no-op elsewhere.

    ``value`` may be anything ``float()`` accepts (a Python number, a 0-d tensor, a numpy
    scalar). ``step`` is the global (optimizer) step. Usable as a context manager.
    """

    def __init__(self, log_dir: str | os.PathLike, rank: int, flush_secs: float = 10):
        self.log_dir = Path(log_dir)
        self.rank = int(rank)
        self.flush_secs = flush_secs
        self.enabled = self.rank == 0
        self._writer = None
        self._jsonl = None
        self._last_flush = time.monotonic()
        self._closed = False

    # -- lazy open ---------------------------------------------------------------------

    def _open(self) -> None:
        if self._closed:
            raise RuntimeError(f"MetricLogger({self.log_dir}) is closed")
        if self._writer is None:
            # Imported here: non-zero ranks never load tensorboard at all.
            from torch.utils.tensorboard import SummaryWriter

            self.log_dir.mkdir(parents=True, exist_ok=True)
            self._writer = SummaryWriter(str(self.log_dir), flush_secs=self.flush_secs)
            self._jsonl = open(self.log_dir / METRICS_JSONL, "a", encoding="utf-8")

    def _maybe_flush(self) -> None:
        # SummaryWriter flushes its own event file every flush_secs in a background thread;
        # the JSONL file gets the same cadence here so `tail -f metrics.jsonl` stays current.
        now = time.monotonic()
        if now - self._last_flush >= self.flush_secs:
            self._jsonl.flush()
            self._last_flush = now

    # -- logging -----------------------------------------------------------------------

    def scalar(self, tag: str, value, step: int) -> None:
        if not self.enabled:
            return
        self._open()  # before reading the clock: the first call imports tensorboard (~seconds)
        self._scalar(tag, value, step, time.time())
        self._maybe_flush()

    def scalars(self, values: Mapping[str, object], step: int) -> None:
        """Several scalars at one step (one wall time for all, so they line up)."""
        if not self.enabled:
            return
        self._open()
        wall = time.time()
        for tag, value in values.items():
            self._scalar(tag, value, step, wall)
        self._maybe_flush()

    def _scalar(self, tag: str, value, step: int, wall: float) -> None:
        value = float(value)
        step = int(step)
        self._writer.add_scalar(tag, value, global_step=step, walltime=wall)
        self._jsonl.write(json.dumps({"tag": tag, "value": value, "step": step, "wall_time": wall}) + "\n")

    def text(self, tag: str, text: str, step: int) -> None:
        """Free text (config dump, engine report) in TensorBoard's Text tab; not in the JSONL."""
        if not self.enabled:
            return
        self._open()
        self._writer.add_text(tag, text, global_step=int(step))
        self._maybe_flush()

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()
            self._jsonl.flush()
            self._last_flush = time.monotonic()

    def close(self) -> None:
        """Flush and close both files; safe to call twice and on any rank."""
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()
            self._jsonl.flush()
            self._jsonl.close()
            self._writer = self._jsonl = None
        self._closed = True

    def __enter__(self) -> "MetricLogger":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ThroughputMeter:
    """Samples/s and non-pad tokens/s over the timed regions since the last ``reset()``.

    Wrap each timed region (a training step, a forward pass) in ``start()`` / ``stop(samples,
    tokens)``. ``rate()`` divides the counts by the time spent *inside* those regions, so
    evaluation, checkpointing or logging between regions does not dilute the figure.

    GPU work is asynchronous: the host clock returns while kernels still run, so reading it
    without a device synchronisation measures launch time, not compute. The caller must
    synchronise the device before the clock is read, either by passing ``sync`` (e.g.
    ``torch.cuda.synchronize``; it is called right before each clock read in ``start`` and
    ``stop``) or by synchronising itself before each call. On CPU no sync is needed.

    ``clock`` is injectable for tests; it must be monotonic (default ``time.perf_counter``).
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter, sync: Callable[[], None] | None = None):
        self._clock = clock
        self._sync = sync
        self._t0: float | None = None
        self.reset()

    def reset(self) -> None:
        """Start a new window (an open region is discarded)."""
        self.samples = 0
        self.tokens = 0
        self.seconds = 0.0
        self._t0 = None

    def _now(self) -> float:
        if self._sync is not None:
            self._sync()
        return self._clock()

    def start(self) -> None:
        if self._t0 is not None:
            raise RuntimeError("ThroughputMeter.start() called twice without stop()")
        self._t0 = self._now()

    def stop(self, samples: int, tokens: int = 0) -> float:
        """End the region, counting ``samples`` and non-pad ``tokens`` (e.g. the attention
        mask's sum) processed in it; returns the region's seconds."""
        if self._t0 is None:
            raise RuntimeError("ThroughputMeter.stop() called without start()")
        elapsed = self._now() - self._t0
        self._t0 = None
        self.samples += int(samples)
        self.tokens += int(tokens)
        self.seconds += elapsed
        return elapsed

    def rate(self) -> tuple[float, float]:
        """``(samples/s, tokens/s)`` over the window; ``(0.0, 0.0)`` before any timed time."""
        if self.seconds <= 0:
            return 0.0, 0.0
        return self.samples / self.seconds, self.tokens / self.seconds


def read_scalars(log_dir: str | os.PathLike) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in ``log_dir``'s event files: ``{tag: [(step, value), ...]}`` in step order.

    Reads with TensorBoard's own ``EventAccumulator`` (all events kept, no sampling), so a
    test or report sees what TensorBoard shows, including its handling of a resumed run
    (events past the resume step are dropped). A directory without event files gives ``{}``.
    Values come back as event files store them, float32 (``metrics.jsonl`` keeps float64).
    """
    log_dir = Path(log_dir)
    if not log_dir.is_dir() or not any(p.name.startswith("events.out.tfevents") for p in log_dir.iterdir()):
        return {}
    from tensorboard.backend.event_processing import event_accumulator

    # size 0 = keep everything; the default keeps a 10,000-point reservoir sample per tag.
    acc = event_accumulator.EventAccumulator(
        str(log_dir), size_guidance={event_accumulator.SCALARS: 0, event_accumulator.TENSORS: 0}
    )
    acc.Reload()
    tags = acc.Tags()
    out: dict[str, list[tuple[int, float]]] = {
        tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in tags.get(event_accumulator.SCALARS, [])
    }
    # Newer writers (SummaryWriter(..., new_style=True), tf.summary v2) store scalars as
    # tensors under the "scalars" plugin; read those too so no writer setting hides data.
    try:
        scalar_tensor_tags = set(acc.PluginTagToContent("scalars"))
    except KeyError:  # no tensor-style scalars in these files
        scalar_tensor_tags = set()
    if scalar_tensor_tags:
        from tensorboard.util import tensor_util

        for tag in tags.get(event_accumulator.TENSORS, []):
            if tag in scalar_tensor_tags and tag not in out:
                out[tag] = [(e.step, float(tensor_util.make_ndarray(e.tensor_proto))) for e in acc.Tensors(tag)]
    for series in out.values():
        series.sort(key=lambda step_value: step_value[0])
    return out
