"""Throughput and latency of inference engines, behind the parity gate.

Method:

* **Workload**: a fixed list of rows: a task's tokenized eval set (``Workload.from_features``,
  its real length distribution; batches are trimmed to their longest row as in evaluation)
  or a seeded synthetic one (``Workload.synthetic``: log-normal, uniform or fixed lengths).
  Rows are taken in order; a batch size B cuts them into ceil(N / B) batches.
* **Warm-up** at the largest shape first (largest batch x longest row): DeepSpeed sizes its
  kernel workspace and CUDA graph on the first call; allocators, cuDNN/cuBLAS heuristics and
  torch.compile settle. Then one untimed pass over the workload at each batch size, so every
  shape a timed loop meets has been seen (compiled, autotuned) once.
* **Clocks** are device-synchronised: CUDA events on a GPU (the end event is waited for),
  ``time.perf_counter`` on a CPU.
* **Throughput** at batch B: samples/s = rows / time of one pass over the workload, inputs
  already on the device (a serving process receives them there, or overlaps the copy).
* **Latency** at batch 1 and at the serving batch: per-request time from host tensors to
  outputs on the device (input copy, encoder, head, synchronise), over ``latency_requests``
  requests (default 100, at least 100 so that p99 is not just the maximum), cycling through
  the workload's batches; p50/p90/p99 in ms.
* **Repeats** (``repeats``): after the one warm-up, every batch size is timed ``repeats``
  times in turn, each its own row with its ``repeat`` index (0, 1, ...), so a report shows the
  median and range of one engine's timings instead of one draw.
* **Parity** first: ``benchmark_engines`` compares each engine with fp32 torch-eager
  (``stilts_ds.inference.parity``); an engine outside tolerance is reported "failed" with the
  reason and is not timed, as is one that is unavailable here.

Usage::

    from stilts_ds.inference.timing import Workload, benchmark_engines

    workload = Workload.from_features(features, name="xnli/test.de", task="xnli")
    # or Workload.synthetic(n_rows=512, vocab_size=len(tokenizer), max_length=128, seed=0)
    results = benchmark_engines(model, ["torch-eager", "torch-sdpa", "ds", "ds-kernel"], ["fp16"],
                                device="cuda", workload=workload, batch_sizes=[1, 8, 32, 128],
                                serving_batch_size=32)
    [r.to_dict() for r in results]   # engine, status, reason, dtype, batch_size, seq_len,
                                     # throughput_samples_per_s, latency_ms_p50/p90/p99,
                                     # parity_max_abs_diff, ...
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from stilts_ds.inference.engines import PRECISIONS, Engine, build_engine
from stilts_ds.inference.parity import (TOLERANCES, ParityReport, Tolerance, gate, parity_batches_from_features,
                                        reference_engine, reference_outputs, with_padded_batch)
from stilts_ds.tasks.features import Features
from stilts_ds.tasks.formats import pair_classification

MIN_LATENCY_REQUESTS = 100


# ------------------------------------------------------------------ workloads

@dataclass(frozen=True)
class Workload:
    """Rows to run: featurized ``features`` (any format), the ``task`` whose head runs on
    them (None: encoder only) and a ``name`` for reports."""

    name: str
    features: Features
    task: str | None = None

    @classmethod
    def from_features(cls, features: Features, name: str, task: str | None = None,
                      max_rows: int | None = None) -> "Workload":
        """A task's featurized split (from ``stilts_ds.data.cache.read`` or a format's
        ``featurize``), optionally its first ``max_rows`` rows."""
        if max_rows is not None and max_rows < len(features):
            idx = np.arange(max_rows)
            features = Features(features.format, {k: v[idx] for k, v in features.columns.items()},
                                features.guids[idx], features.extras)
        if len(features) == 0:
            raise ValueError(f"workload {name!r} has no rows")
        return cls(name, features, task)

    @classmethod
    def synthetic(cls, n_rows: int, vocab_size: int, max_length: int, *, seed: int = 0,
                  distribution: str = "lognormal", median_length: int | None = None, min_length: int = 4,
                  sigma: float = 0.5, pad_token_id: int = 1, bos_token_id: int = 0, eos_token_id: int = 2,
                  name: str | None = None) -> "Workload":
        """Random tokens with seeded lengths: ``lognormal`` (median ``median_length``,
        default max_length/4, spread ``sigma``: sentence-like, long right tail),
        ``uniform`` in [min_length, max_length], or ``fixed`` (every row max_length: the
        fixed-shape case, e.g. sequence-length sweeps and CUDA graphs). Encoder only."""
        if n_rows < 1 or max_length < min_length or min_length < 2:
            raise ValueError("need n_rows >= 1 and 2 <= min_length <= max_length")
        rng = np.random.default_rng(seed)
        if distribution == "lognormal":
            median = median_length or max(min_length, max_length // 4)
            lengths = np.exp(rng.normal(math.log(median), sigma, n_rows)).round()
        elif distribution == "uniform":
            lengths = rng.integers(min_length, max_length + 1, n_rows)
        elif distribution == "fixed":
            lengths = np.full(n_rows, max_length)
        else:
            raise ValueError(f"unknown length distribution {distribution!r}; use lognormal, uniform or fixed")
        lengths = np.clip(lengths, min_length, max_length).astype(np.int32)
        low = min(5, vocab_size - 1)  # above XLM-R's special tokens
        ids = np.full((n_rows, max_length), pad_token_id, dtype=np.int32)
        mask = np.zeros((n_rows, max_length), dtype=np.int8)
        for i, n in enumerate(lengths):
            ids[i, :n] = rng.integers(low, vocab_size, n)
            ids[i, 0], ids[i, n - 1] = bos_token_id, eos_token_id
            mask[i, :n] = 1
        feats = Features(
            format=pair_classification.FORMAT.name,  # one [B, L] row, one label: the plain collate
            columns={"input_ids": ids, "attention_mask": mask, "labels": np.full(n_rows, -100, dtype=np.int64),
                     "lengths": lengths},
            guids=np.array([f"synthetic-{i}" for i in range(n_rows)], dtype=object),
        )
        label = name or f"synthetic-{distribution}-n{n_rows}-len{max_length}-seed{seed}"
        return cls(label, feats, None)

    def __len__(self) -> int:
        return len(self.features)

    @property
    def lengths(self) -> np.ndarray:
        return np.asarray(self.features.columns["lengths"])

    @property
    def tokens_per_sample(self) -> float:
        """Mean real (non-padding) tokens per sample, all choices of a multiple-choice one."""
        return float(self.lengths.sum()) / len(self)

    @property
    def rows_per_sample(self) -> int:
        """Encoder rows per sample: the number of choices for multiple choice, else 1."""
        ids = self.features.columns["input_ids"]
        return int(ids.shape[1]) if ids.ndim == 3 else 1

    def batches(self, batch_size: int) -> list[dict[str, torch.Tensor]]:
        """The rows in order, ``batch_size`` at a time (the last batch may be smaller),
        collated by the features' format (trimmed to each batch's longest row)."""
        from stilts_ds.tasks.formats import format_of

        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        collate = format_of(self.features).collate
        n = len(self)
        return [dict(collate(self.features, list(range(i, min(i + batch_size, n)))).tensors)
                for i in range(0, n, batch_size)]

    def parity_batches(self, batch_size: int = 8, vocab_size: int | None = None) -> dict[str, dict[str, torch.Tensor]]:
        """The features' padded and unpadded parity batches, plus (with ``vocab_size``) the
        gate's synthetic padded batch as wide as the longest row."""
        batches = parity_batches_from_features(self.features, batch_size)
        if vocab_size is None:
            return batches
        return with_padded_batch(batches, vocab_size, seq_len=int(self.lengths.max()), batch_size=batch_size)

    def padding_share(self, batch_size: int, computed_shape: Callable[[int, int], tuple[int, int]] | None = None) -> float:
        """Padding tokens over all tokens computed when the rows are cut into batches of
        ``batch_size``, each padded to its longest row (as ``batches`` does), and, with
        ``computed_shape`` (``Engine.computed_shape``), further to the shape the engine runs."""
        lengths = self.lengths.reshape(len(self), -1)  # multiple choice: a row per choice
        total = 0
        for i in range(0, len(self), batch_size):
            block = lengths[i:i + batch_size]
            rows, tokens = block.size, int(block.max())
            if computed_shape is not None:
                rows, tokens = computed_shape(rows, tokens)
            total += rows * tokens
        return 1.0 - float(lengths.sum()) / max(total, 1)


# ------------------------------------------------------------------ clocks

class DeviceTimer:
    """Elapsed seconds between ``start()`` and ``stop()``, with the device's work done:
    CUDA events on a GPU (``stop`` waits for the end event), perf_counter on a CPU."""

    def __init__(self, device: torch.device):
        self.cuda = torch.device(device).type == "cuda"
        if self.cuda:
            self._start = torch.cuda.Event(enable_timing=True)
            self._end = torch.cuda.Event(enable_timing=True)
        self._t0 = 0.0

    def start(self) -> None:
        if self.cuda:
            self._start.record()
        else:
            self._t0 = time.perf_counter()

    def stop(self) -> float:
        if self.cuda:
            self._end.record()
            self._end.synchronize()
            return self._start.elapsed_time(self._end) / 1000.0
        return time.perf_counter() - self._t0


# ------------------------------------------------------------------ results

@dataclass
class BenchmarkResult:
    """One row of the benchmark table: an engine at a precision and a batch size.

    ``dtype`` and ``precision`` are the precision's name (fp32 | fp16 | bf16).
    Unavailable or failed engines get one row with ``batch_size`` None and no timings.
    ``seq_len``: the workload's longest row; ``mean_seq_len``: its mean row length.
    ``useful_tokens_per_s``: non-padding tokens per second at that batch size;
    ``padding_share``: padding tokens over all tokens of the batches as collated (trimmed to
    each batch's longest row), 0 for an engine that computes no padding (``unpadded``).
    Latency fields are set at batch 1 and at the serving batch only."""

    engine: str
    status: str
    reason: str | None
    dtype: str
    precision: str
    device: str
    workload: str
    batch_size: int | None = None
    seq_len: int | None = None
    mean_seq_len: float | None = None
    throughput_samples_per_s: float | None = None
    latency_ms_p50: float | None = None
    latency_ms_p90: float | None = None
    latency_ms_p99: float | None = None
    latency_requests: int | None = None
    # Non-padding tokens per second of the throughput pass (samples/s x mean real tokens per
    # sample), and the share of the tokens an engine computed that were padding: what a
    # padding-free engine saves shows here, not in samples/s alone.
    useful_tokens_per_s: float | None = None
    padding_share: float | None = None
    repeat: int = 0  # which timing of this configuration (time_engine's ``repeats``)
    parity_max_abs_diff: float | None = None
    label_agreement: float | None = None
    replaced: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _base_result(engine: Engine, workload: Workload, parity: ParityReport | None) -> dict[str, Any]:
    return dict(engine=engine.name, status=engine.status, reason=engine.reason, dtype=engine.precision,
                precision=engine.precision, device=str(engine.device), workload=workload.name,
                seq_len=int(workload.lengths.max()), mean_seq_len=float(workload.lengths.mean()),
                parity_max_abs_diff=parity.max_abs_diff if parity else None,
                label_agreement=parity.label_agreement if parity else None,
                replaced=dict(engine.replaced), notes=list(engine.notes))


# ------------------------------------------------------------------ measuring

def largest_shape(workload: Workload, batch_sizes: Sequence[int],
                  extra_batches: Sequence[Mapping[str, torch.Tensor]] = ()) -> tuple[int, int]:
    """(encoder rows, tokens) of the largest batch the engine will see: the largest batch
    size (times the choices, for multiple choice) by the longest row, or larger extras."""
    rows = min(max(batch_sizes), len(workload)) * workload.rows_per_sample
    length = int(workload.lengths.max())
    for b in extra_batches:
        ids = b["input_ids"]
        rows = max(rows, int(ids.numel() // ids.shape[-1]))
        length = max(length, int(ids.shape[-1]))
    return rows, length


def _to_device(batch: Mapping[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in batch.items() if torch.is_tensor(v)}


def measure_throughput(engine: Engine, workload: Workload, batch_size: int, *, warm_pass: bool = True) -> float:
    """Samples/s of one pass over ``workload`` at ``batch_size`` (inputs pre-staged on the
    device; an untimed pass first unless ``warm_pass`` is False)."""
    batches = [_to_device(b, engine.device) for b in workload.batches(batch_size)]
    if warm_pass:
        for b in batches:
            engine.forward(b, task=workload.task)
        engine.synchronize()
    timer = DeviceTimer(engine.device)
    timer.start()
    for b in batches:
        engine.forward(b, task=workload.task)
    seconds = timer.stop()
    return len(workload) / max(seconds, 1e-12)


def measure_latency(engine: Engine, workload: Workload, batch_size: int,
                    requests: int = MIN_LATENCY_REQUESTS) -> np.ndarray:
    """Per-request milliseconds (host tensors in, outputs ready on the device) for
    ``requests`` requests of ``batch_size`` rows cycling through the workload."""
    if requests < MIN_LATENCY_REQUESTS:
        raise ValueError(f"latency needs at least {MIN_LATENCY_REQUESTS} requests (p99 of fewer is the maximum); got {requests}")
    batches = workload.batches(batch_size)
    timer = DeviceTimer(engine.device)
    out = np.empty(requests)
    for i in range(requests):
        timer.start()
        engine.forward(batches[i % len(batches)], task=workload.task)
        out[i] = timer.stop() * 1000.0
    return out


def percentiles(ms: np.ndarray) -> tuple[float, float, float]:
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return float(p50), float(p90), float(p99)


def time_engine(engine: Engine, workload: Workload, batch_sizes: Sequence[int], serving_batch_size: int, *,
                latency_requests: int = MIN_LATENCY_REQUESTS, warmup_iters: int = 3, warm_pass: bool = True,
                parity: ParityReport | None = None, repeats: int = 1,
                on_row: Callable[[BenchmarkResult], None] | None = None) -> list[BenchmarkResult]:
    """Warm up at the largest shape, then throughput at every batch size in
    ``batch_sizes`` and at 1 and ``serving_batch_size``, and latency at 1 and
    ``serving_batch_size``. One result per batch size and repeat (every size timed once per
    repeat, the repeats one after another), each handed to ``on_row`` as soon as it is
    measured. The engine must be "ok" (gate it first: ``benchmark_engines`` does)."""
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    if latency_requests < MIN_LATENCY_REQUESTS:
        raise ValueError(f"latency_requests must be >= {MIN_LATENCY_REQUESTS}, got {latency_requests}")
    sizes = sorted(set(int(b) for b in batch_sizes) | {1, int(serving_batch_size)})
    engine.warmup(*largest_shape(workload, sizes), iters=warmup_iters)
    base = _base_result(engine, workload, parity)
    results = []
    for repeat in range(repeats):
        for bs in sizes:
            row = BenchmarkResult(**base, batch_size=bs, repeat=repeat)
            # The untimed pass is needed once per shape: later repeats find it warm.
            row.throughput_samples_per_s = measure_throughput(engine, workload, bs, warm_pass=warm_pass and repeat == 0)
            row.useful_tokens_per_s = row.throughput_samples_per_s * workload.tokens_per_sample
            row.padding_share = 0.0 if engine.computes_no_padding else workload.padding_share(bs, engine.computed_shape)
            if bs in (1, serving_batch_size):
                ms = measure_latency(engine, workload, bs, latency_requests)
                row.latency_ms_p50, row.latency_ms_p90, row.latency_ms_p99 = percentiles(ms)
                row.latency_requests = len(ms)
            results.append(row)
            if on_row is not None:
                on_row(row)
    return results


def _reported(row: BenchmarkResult, on_row) -> BenchmarkResult:
    if on_row is not None:
        on_row(row)
    return row


def benchmark_engines(model, engines: Sequence[str], precisions: Sequence[str], *, device="cpu",
                      workload: Workload, batch_sizes: Sequence[int], serving_batch_size: int,
                      latency_requests: int = MIN_LATENCY_REQUESTS, warmup_iters: int = 3,
                      parity_batch_size: int = 8, tolerances: Mapping[str, Tolerance] | None = None,
                      ds_config_dir=None, enable_cuda_graph: bool | None = None,
                      compile_options: Mapping[str, Any] | None = None, repeats: int = 1,
                      on_row: Callable[[BenchmarkResult], None] | None = None) -> list[BenchmarkResult]:
    """Every (engine, precision): build, warm up at the largest shape, parity gate against
    fp32 torch-eager on the workload's padded and unpadded parity batches and the synthetic
    padded batch (``parity.with_padded_batch``), time. Engines are built and closed one at a
    time (one DeepSpeed kernel workspace per process; memory). Returns every row, including
    those of unavailable and failed engines; ``on_row`` gets each row as it is measured (a
    caller appends it to a file, so a run cut off by a time limit keeps what it measured)."""
    for p in precisions:
        if p not in PRECISIONS:
            raise ValueError(f"unknown precision {p!r}; known: {', '.join(PRECISIONS)}")
    tols = {**TOLERANCES, **dict(tolerances or {})}
    encoder = getattr(model, "encoder", model)
    pbatches = workload.parity_batches(parity_batch_size, vocab_size=encoder.config.vocab_size)
    reference = reference_engine(model, device)
    try:
        ref_out = reference_outputs(reference, pbatches, workload.task)
    finally:
        reference.close()
    sizes = sorted(set(int(b) for b in batch_sizes) | {1, int(serving_batch_size)})
    warm_shape = largest_shape(workload, sizes, list(pbatches.values()))

    results: list[BenchmarkResult] = []
    for name in engines:
        for precision in precisions:
            engine = build_engine(name, model, precision, device, ds_config_dir=ds_config_dir,
                                  enable_cuda_graph=enable_cuda_graph, compile_options=compile_options)
            report = None
            try:
                if engine.status == "ok":
                    # First call at the largest shape (DeepSpeed sizes its workspace on it),
                    # before the parity batches.
                    engine.warmup(*warm_shape, iters=warmup_iters)
                    report = gate(engine, ref_out, pbatches, task=workload.task, tolerance=tols[precision])
                if engine.status == "ok":
                    results += time_engine(engine, workload, sizes, serving_batch_size,
                                           latency_requests=latency_requests, warmup_iters=warmup_iters,
                                           parity=report, repeats=repeats, on_row=on_row)
                else:
                    results.append(_reported(BenchmarkResult(**_base_result(engine, workload, report)), on_row))
            except Exception as e:  # noqa: BLE001 - one engine breaking mid-run is a row, not the end of the sweep
                engine.mark_failed(f"{type(e).__name__}: {e}")
                results.append(_reported(BenchmarkResult(**_base_result(engine, workload, report)), on_row))
            finally:
                engine.close()
    return results
