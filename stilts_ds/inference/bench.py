"""The inference stage: serve a checkpoint (or an architecture preset) through several engines
on every node, and report speed and accuracy from the same run.

    stilts-ds bench --preset tiny --engines torch-eager,torch-sdpa,ds,ds-kernel \
        --batch-sizes 1,4 --seq-len 32 --output runs/bench
    stilts-ds bench --checkpoint runs/quickstart/phase2/xnli/model --task xnli --lang zh \
        --engines torch-sdpa,ds-kernel --precisions fp16,bf16 --output runs/bench-xnli

Per node (one Ray actor each, placed by a spreading placement group; ``--no-ray`` runs the
same measurement in this process as one node): build each engine, gate it on parity
against fp32 PyTorch eager, time throughput and latency (``timing``), and, with ``--task``,
score the task's eval split through that same engine, so precision or kernel drift shows up
as an accuracy figure. Reports (JSON lines, CSV, Markdown, TensorBoard, PNG) go to
``--output`` (``report.write_reports``).

The study's bench nodes (``bench/<arm>/<task>``, ``studies.runners``; a task scored without a
head, retrieval, serves the phase-1 encoder and is timed without a score) use the same ``run_bench``
with ``BenchSpec.lang_features`` (each language's cached test features, timed one after
another by one model load: rows carry ``lang`` and ``tokens_per_example``), ``repeats``
(each configuration timed that many times, rows carry ``repeat``) and ``extra`` (fields put
on every row: ``arm``), so the study report can compare arms, languages and spreads.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from stilts_ds.errors import StiltsError
from stilts_ds.precision import PRECISIONS


@dataclass(frozen=True)
class BenchSpec:
    engines: tuple[str, ...]
    precisions: tuple[str, ...] = ("fp32",)
    batch_sizes: tuple[int, ...] = (1, 8, 32)
    seq_len: int = 128
    serving_batch_size: int | None = None
    latency_requests: int = 100
    preset: str | None = None  # random weights of a named architecture
    checkpoint: str | None = None  # a fine-tuned model dir (phase 2) or an encoder export
    task: str | None = None
    features: str | None = None  # cached eval Features of the task (path), prepared on the driver
    lang: str | None = None
    synthetic_rows: int = 256
    # "lognormal", "uniform", "fixed" (every row seq_len: compute-limit runs), or
    # "real:TASK/LANG" (``features`` then holds that split's rows, timed encoder-only).
    length_distribution: str = "lognormal"
    seed: int = 0
    device: str | None = None
    # (lang, features path) pairs timed in turn with one model load, instead of ``features``/``lang``.
    lang_features: tuple[tuple[str, str], ...] = ()
    repeats: int = 1  # each (engine, precision, batch size) timed this many times, a row each
    extra: dict = field(default_factory=dict)  # fields put on every row (the study's bench: arm)

    def __post_init__(self):
        # Checked here, before a model is built or a node asked: a bad value is a message
        # naming the option, not a traceback from deep in a worker.
        bad = [p for p in self.precisions if p not in PRECISIONS]
        if bad or not self.precisions:
            raise StiltsError(f"--precisions: {bad[0] if bad else 'nothing'!r} is not one of {', '.join(PRECISIONS)}")
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise StiltsError(f"--batch-sizes: every batch size must be at least 1, got {list(self.batch_sizes)}")
        if self.serving_batch_size is not None and self.serving_batch_size < 1:
            raise StiltsError(f"--serving-batch must be at least 1, got {self.serving_batch_size}")
        if self.repeats < 1:
            raise StiltsError(f"--repeats must be at least 1, got {self.repeats}")
        object.__setattr__(self, "lang_features", tuple(tuple(x) for x in self.lang_features))

    def serving(self) -> int:
        return self.serving_batch_size or max(self.batch_sizes)


def _model(spec: BenchSpec):
    from stilts_ds.modeling import export
    from stilts_ds.modeling.presets import PRESETS, load_tokenizer, model_config

    if spec.checkpoint:
        path = Path(spec.checkpoint)
        if (path / export.HEADS_SPEC).is_file():
            return export.load_model(path)
        from transformers import AutoModel

        return AutoModel.from_pretrained(path)
    if spec.preset not in PRESETS:
        raise StiltsError(f"unknown preset {spec.preset!r}; known: {', '.join(PRESETS)}")
    from transformers import AutoModel

    from stilts_ds.inference.parity import sharpen

    vocab = None if "vocab_size" in PRESETS[spec.preset] else len(load_tokenizer("bundled"))
    torch.manual_seed(spec.seed)
    # Random weights time like trained ones; drawn sharp, the parity gate can see a wrong engine.
    return sharpen(AutoModel.from_config(model_config(spec.preset, vocab_size=vocab)), seed=spec.seed)


def _accuracy(engine, spec: BenchSpec, feats) -> dict:
    """The task's primary score with every forward pass through ``engine``."""
    from stilts_ds.tasks.formats import format_of
    from stilts_ds.tasks.registry import get_task
    from stilts_ds.tasks.scoring import primary_score

    task = get_task(spec.task)
    fmt = format_of(task)
    width = feats.columns["input_ids"].shape[-1]
    chunks = {k: [] for k in fmt.output_keys}
    for start in range(0, len(feats), spec.serving()):
        batch = fmt.collate(feats, list(range(start, min(start + spec.serving(), len(feats))))).to(engine.device)
        out = engine.forward(batch.tensors, task=spec.task)
        for k in fmt.output_keys:
            chunks[k].append(fmt.pad_output(k, out[k].float().cpu().numpy(), width))
    outputs = {k: np.concatenate(v) for k, v in chunks.items()}
    predictions = fmt.decode(task, feats, outputs)
    scores = fmt.score(task, feats, predictions, spec.lang)
    low, high = _accuracy_interval(fmt, task, feats, predictions, spec.lang)
    return {"task": spec.task, "lang": spec.lang, "metric": task.metric, "accuracy": primary_score(scores),
            "accuracy_low": low, "accuracy_high": high}


def _accuracy_interval(fmt, task, feats, predictions, lang) -> tuple[float | None, float | None]:
    """The 95% percentile-bootstrap interval of the primary score through this engine, over
    the test examples (as phase 3's intervals: ``metrics.uncertainty``, same seed and stream);
    (None, None) for a format without per-example statistics."""
    from stilts_ds.metrics.uncertainty import percentile_interval, replicates
    from stilts_ds.tasks.scoring import primary_score

    try:
        stats = fmt.example_stats(task, feats, predictions, lang)
    except NotImplementedError:
        return None, None
    reps = replicates(stats, key=(task.name, lang or ""))
    return percentile_interval(primary_score(reps))


def measure(spec: BenchSpec, rows_log: Path | None = None) -> list[dict]:
    """One node's rows: every (language,) engine, precision, batch size and repeat, gated,
    timed, scored; ``spec.extra`` on every row. ``rows_log``: a JSON-lines file each timing
    row is appended to as it is measured (before accuracy is added)."""
    device = spec.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = _model(spec).eval()
    if spec.lang_features:
        rows = []
        for lang, path in spec.lang_features:
            rows += _measure(replace(spec, features=path, lang=lang, lang_features=()), model, device, rows_log)
    else:
        rows = _measure(spec, model, device, rows_log)
    return [{**r, **spec.extra} for r in rows]


def _row(result, spec: BenchSpec, tokens: float, real: bool) -> dict:
    return {**result.to_dict(), "tokens_per_example": tokens, "serving_batch_size": spec.serving(),
            **({"task": spec.task, "lang": spec.lang} if real else {})}


def _scored(spec: BenchSpec) -> bool:
    """Whether the bench scores ``spec.task`` through each engine: a task with a head."""
    if not spec.task:
        return False
    from stilts_ds.tasks.formats import format_of
    from stilts_ds.tasks.registry import get_task

    return format_of(get_task(spec.task)).has_head


def real_lengths(lengths: str) -> tuple[str, str] | None:
    """(task, lang) of ``--lengths real:TASK/LANG``; None for a synthetic distribution; a
    StiltsError naming the option for anything else."""
    if lengths in ("lognormal", "uniform", "fixed"):
        return None
    task, _, lang = lengths.removeprefix("real:").partition("/")
    if not lengths.startswith("real:") or not task or not lang:
        raise StiltsError(f"--lengths {lengths!r}: use lognormal, uniform, fixed or real:TASK/LANG "
                          "(e.g. real:xnli/th: the lengths of XNLI's Thai rows)")
    from stilts_ds.tasks.registry import get_task

    get_task(task)  # an unknown task is named with the known ones
    return task, lang


def _measure(spec: BenchSpec, model, device: str, rows_log: Path | None = None) -> list[dict]:
    from stilts_ds.data import cache
    from stilts_ds.inference.engines import build_engine
    from stilts_ds.inference.timing import Workload, benchmark_engines

    feats = cache.read(Path(spec.features)) if spec.features else None
    if feats is not None:
        name = f"{spec.task}/{spec.lang}" if spec.task else spec.length_distribution
        # A task scored without a head (retrieval: phase 3 embeds it with the encoder) is timed
        # on the encoder alone, and not scored: the engines return no embedding layer.
        workload = Workload.from_features(feats, name=name, task=spec.task if _scored(spec) else None)
    else:
        vocab = model.config.vocab_size
        workload = Workload.synthetic(spec.synthetic_rows, vocab, spec.seq_len, seed=spec.seed,
                                      distribution=spec.length_distribution)
    # What a language costs: its own tokenized length (the bundled tokenizer cuts Thai or Hindi
    # into more pieces than English), per example (all choices of a multiple-choice one).
    tokens = workload.tokens_per_sample
    on_row = None
    if rows_log is not None:
        def on_row(result):
            # Appended and flushed as measured: a run stopped by a time limit keeps these rows.
            with open(rows_log, "a", encoding="utf-8") as f:
                f.write(json.dumps({**_row(result, spec, tokens, feats is not None), **spec.extra}) + "\n")
                f.flush()
                os.fsync(f.fileno())
    results = benchmark_engines(model, spec.engines, spec.precisions, device=device, workload=workload,
                                batch_sizes=spec.batch_sizes, serving_batch_size=spec.serving(),
                                latency_requests=spec.latency_requests, repeats=spec.repeats, on_row=on_row)
    rows = [_row(r, spec, tokens, feats is not None) for r in results]
    if feats is not None and _scored(spec):
        # Accuracy through each engine that passed parity (a fresh build: timing closed it).
        for engine_name in spec.engines:
            for precision in spec.precisions:
                mine = [r for r in rows if r["engine"] == engine_name and r["dtype"] == precision]
                if not mine or mine[0]["status"] != "ok":
                    continue
                engine = build_engine(engine_name, model, precision, device)
                try:
                    # DeepSpeed sizes its kernel workspace on the first call: the largest shape first.
                    engine.warmup(spec.serving(), feats.columns["input_ids"].shape[-1])
                    with torch.no_grad():
                        acc = _accuracy(engine, spec, feats)
                finally:
                    engine.close()
                for r in mine:
                    r.update(acc)
    return rows


def run_bench(spec: BenchSpec, out_dir: Path, *, use_ray: bool = True, address: str | None = None,
              num_nodes: int | None = None, title: str = "stilts-ds inference benchmark",
              rows_log: Path | None = None) -> tuple[list[dict], dict]:
    """Measure on every node (or here, ``use_ray=False``) and write the reports to
    ``out_dir``. ``rows_log`` (in this process only): a file each row is appended to as it is
    measured."""
    from stilts_ds.inference.report import write_reports

    if use_ray:
        from stilts_ds.inference.placement import run_per_node

        gpus = 1 if torch.cuda.is_available() else 0
        rows = run_per_node(lambda: measure(spec), num_nodes=num_nodes, gpus_per_actor=gpus, address=address)
    else:
        import socket

        from stilts_ds.inference.placement import device_name

        gpus = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
        if rows_log is not None:
            Path(rows_log).parent.mkdir(parents=True, exist_ok=True)
        rows = [{**r, "node_id": "local", "host": socket.gethostname(), "node_index": 0, "device": device_name(gpus)}
                for r in measure(spec, rows_log)]
    paths = write_reports(rows, out_dir, title=title)
    return rows, paths


def parse_list(text: str, cast=str) -> tuple:
    items = [x.strip() for x in text.split(",") if x.strip()]
    if not items:
        raise StiltsError(f"empty list {text!r}; give comma-separated values")
    try:
        return tuple(cast(x) for x in items)
    except ValueError:
        raise StiltsError(f"{text!r}: expected comma-separated {cast.__name__} values") from None


def check_engines(names: Sequence[str]) -> None:
    from stilts_ds.inference.engines import ENGINES

    unknown = [n for n in names if n not in ENGINES]
    if unknown:
        raise StiltsError(f"unknown engine(s) {unknown}; known: {', '.join(ENGINES)}")


def check_model(*, preset: str | None, checkpoint: Path | None, seq_len: int) -> None:
    """Refuse, before any worker starts, a checkpoint folder that holds no model and a
    sequence length past the model's position table (XLM-R: 514 positions, 512 tokens)."""
    from stilts_ds.modeling.presets import PRESETS, model_config

    if checkpoint is not None:
        if not (Path(checkpoint) / "config.json").is_file():
            raise StiltsError(f"--checkpoint {checkpoint}: no config.json there, so no model; give a phase-2 "
                              "model directory (phase2/<task>/model) or an encoder export (phase1/encoder)")
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(checkpoint)
    elif preset in PRESETS:
        config = model_config(preset, vocab_size=PRESETS[preset].get("vocab_size", 1))  # positions only
    else:
        return  # an unknown preset is refused with the list of known ones when the model is built
    positions = getattr(config, "max_position_embeddings", None)
    # XLM-R numbers positions from padding_idx + 1: two of its table's entries are never a token's.
    usable = positions - (getattr(config, "pad_token_id", 0) or 0) - 1 if positions else None
    if usable is not None and seq_len > usable:
        raise StiltsError(f"--seq-len {seq_len}: the model has {positions} positions, {usable} usable tokens per "
                          f"row; use --seq-len {usable} or less")


def check_task(task: str, checkpoint: Path) -> None:
    """Refuse, before anything is featurized or timed, a task the checkpoint cannot score:
    one without a head (retrieval: scored from encoder embeddings the engines do not return)
    or one whose head the checkpoint lacks."""
    import json

    from stilts_ds.modeling import export
    from stilts_ds.tasks.formats import format_of
    from stilts_ds.tasks.registry import get_task

    spec = get_task(task)
    if not format_of(spec).has_head:
        raise StiltsError(f"--task {task}: {spec.format} tasks are scored in phase 3 from the embeddings of an encoder "
                          "layer, which the bench engines do not return; score a task with a trained head "
                          "(--checkpoint phase2/<task>/model), or leave --task out to time the encoder")
    heads_spec = Path(checkpoint) / export.HEADS_SPEC
    trained = sorted(json.loads(heads_spec.read_text(encoding="utf-8"))) if heads_spec.is_file() else []
    if task not in trained:
        has = f"heads for {', '.join(trained)}" if trained else "no trained heads (an encoder export)"
        raise StiltsError(f"--task {task}: {checkpoint} has {has}; give the phase2/{task}/model checkpoint")


def eval_features(task: str, checkpoint: Path, *, split: str, lang: str, max_length: int, cache_dir: Path,
                  source: str = "local", data_dir: Path | None = None) -> str:
    """Featurize ``task``'s ``split``/``lang`` with the checkpoint's own tokenizer (cached in
    ``cache_dir``) on the driver, and return the cache entry's absolute path: what
    ``BenchSpec.features`` names, so every node reads the same rows instead of featurizing."""
    from stilts_ds.data.prepare import prepare
    from stilts_ds.modeling.presets import load_tokenizer
    from stilts_ds.tasks.registry import get_task

    (item,) = prepare([get_task(task)], tokenizer=load_tokenizer(checkpoint), cache_dir=cache_dir, source=source,
                      data_dir=data_dir, splits=[split], langs=[lang], max_length=max_length, progress=False)
    return str(item.path.resolve())
