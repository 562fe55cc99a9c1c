"""The scaling study (`stilts-ds scale`): sweep node counts, workers per node, batch sizes,
sequence lengths, precisions and engines (inference) or ZeRO stages (training), measure each
point for real, and keep every result in one append-only study table that a rerun resumes.

    stilts-ds scale --sweep configs/sweeps/quickstart.yaml --output runs/scale
    stilts-ds scale --mode inference --nodes 1,2 --batch-sizes 1,8 --seq-lens 128 \
        --engines torch-sdpa,ds-kernel --precisions fp16 --preset xlmr-large --output runs/scale-inf
    stilts-ds scale --mode training --nodes 1,2,4 --zero-stages 1,2,3 --batch-sizes 16 \
        --seq-lens 128 --precisions bf16 --preset xlmr-large --steps 20 --output runs/scale-train

    from stilts_ds.studies.scale import run_sweep
    from stilts_ds.studies.sweep_spec import load_sweep
    result = run_sweep(load_sweep("configs/sweeps/quickstart.yaml"), Path("runs/scale"))

Pieces, in order:

* **Sweep spec** (``studies.sweep_spec``: ``load_sweep`` for YAML, ``sweep_from_mapping``
  for the CLI's options): validated before anything runs; every error names the YAML
  ``file:line`` and key (or the CLI option) and the fix. Schema: ``SWEEP_KEYS`` /
  ``INFERENCE_KEYS`` / ``TRAINING_KEYS`` there (and configs/sweeps/quickstart.yaml).
* **Points** (``sweep_spec.expand``): the cross product of the axes, nodes innermost (ascending), each
  with a stable ``point_id`` (a hash of everything that changes the measurement, so a rerun
  of an edited sweep reruns exactly the points whose settings changed). The baseline that
  scaling efficiency divides by, one worker on one node, is added when the axes lack it.
* **Running a point**: inference reuses the benchmark (``inference.bench.measure`` on a
  ``BenchSpec``, one Ray actor per node via ``inference.placement.run_per_node``): per-node
  rows and the cluster total. Training runs the real loop (``engine.worker.train_worker``
  through ``engine.launch``: Ray Train, ``num_workers = nodes x workers_per_node``,
  STRICT_SPREAD with one worker per node, else SPREAD) for ``steps`` optimizer steps, with
  the job built by ``studies.pipeline.Study.build_job`` like every training phase; tokens/s comes
  from the loop's per-step timings (``metrics.jsonl``, warm-up steps excluded).
* **The study table** (``StudyTable``): ``scale.jsonl``, appended one point at a time
  (all rows of a point in one write, fsynced); ``scale.csv`` and ``scale.md`` rewritten
  atomically after every point. A rerun skips every point whose latest rows have status
  ``ok`` (or ``unavailable``: an engine that cannot run on this hardware stays so), reruns
  failed and missing ones; ``--force`` reruns all (the old rows stay, the newest count).
* **Reports** (``studies.scale_report``): derived columns (per-node throughput, scaling
  efficiency, the communication model's predicted step time next to each training point),
  PNG plots and TensorBoard scalars ``scale/<mode>/...``.

Multi-node training reads rank 0's ``metrics.jsonl`` and ``train_summary.json`` from the
point's run directory, so on a real cluster ``--output`` must be on storage every node
shares (NFS), as for the pipeline; ``storage_path`` names Ray Train's (S3/GCS/NFS).
"""
from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import click

from stilts_ds.atomic import write_atomic
from stilts_ds.errors import DataFileError, StiltsError
from stilts_ds.inference.placement import LATENCIES
from stilts_ds.studies.sweep_spec import Point, SweepError, SweepSpec, expand
from stilts_ds.tasks.formats import pair_classification

# A point is finished when its latest status is one of these: rerunning cannot change an
# engine that is unavailable on this hardware.
DONE_STATUSES = ("ok", "unavailable")
SUMMARY_ROWS = ("cluster", "training")  # the row of a point that carries the point's status

TABLE_JSONL, SWEEP_JSON = "scale.jsonl", "sweep.json"  # scale.csv, scale.md: scale_report.TABLE_CSV, TABLE_MD



# ============================================================================ the table

class StudyTable:
    """``scale.jsonl``: one JSON object per row, appended point by point, never rewritten
    (except to drop a line cut short by a crash mid-append, before the next append)."""

    def __init__(self, out_dir: Path):
        self.path = Path(out_dir) / TABLE_JSONL

    def rows(self) -> list[dict]:
        if not self.path.is_file():
            return []
        text = self.path.read_text(encoding="utf-8")
        lines = text.split("\n")
        out = []
        for i, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as e:
                if i == len(lines) and not text.endswith("\n"):
                    continue  # the last append was cut short: that point did not finish
                raise DataFileError(self.path, f"not valid JSON ({e.msg}); the study table is append-only, "
                                               "fix or delete this line", i) from None
        return out

    def _repair(self) -> None:
        """Drop an unterminated last line (an append cut short), so the next append starts
        on a line of its own."""
        if not self.path.is_file():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            cut = data.rfind(b"\n") + 1
            write_atomic(self.path, data[:cut])

    def append(self, rows: Sequence[Mapping[str, Any]]) -> None:
        from stilts_ds.inference.report import jsonable

        self._repair()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One write of whole lines, fsynced: a crash leaves at most one cut line (see rows()).
        blob = "".join(json.dumps(jsonable(dict(r))) + "\n" for r in rows)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())

    def latest(self, point_ids: Iterable[str] | None = None) -> dict[str, list[dict]]:
        """{point_id: rows of its newest attempt} (a --force rerun replaces older rows)."""
        wanted = None if point_ids is None else set(point_ids)
        by_attempt: dict[str, dict[str, list[dict]]] = {}
        order: dict[str, list[str]] = {}
        for r in self.rows():
            pid, att = r.get("point_id"), r.get("attempt")
            if pid is None or (wanted is not None and pid not in wanted):
                continue
            by_attempt.setdefault(pid, {}).setdefault(att, []).append(r)
            if att not in order.setdefault(pid, []):
                order[pid].append(att)
        return {pid: by_attempt[pid][atts[-1]] for pid, atts in order.items()}

    def finished_ids(self) -> set[str]:
        done = set()
        for pid, rows in self.latest().items():
            summary = [r for r in rows if r.get("row") in SUMMARY_ROWS]
            if summary and all(r.get("status") in DONE_STATUSES for r in summary):
                done.add(pid)
        return done


# ============================================================================ running points

def _say_default(msg: str) -> None:
    click.echo(msg, err=True)


class PointRunner:
    """Runs points for real. A context manager: connects to Ray once for the whole sweep
    (and disconnects at the end if it connected), checks the cluster has the nodes asked for."""

    def __init__(self, spec: SweepSpec, out_dir: Path, say: Callable[[str], None] = _say_default):
        self.spec, self.out_dir, self.say = spec, Path(out_dir), say
        self._connected_here = False
        self._params: dict = {}

    def __enter__(self) -> "PointRunner":
        return self

    def __exit__(self, *exc) -> None:
        if self._connected_here:
            from stilts_ds.engine.connection import disconnect

            disconnect()
            self._connected_here = False

    def prepare(self, points: Sequence[Point]) -> None:
        """Before the first point: connect to Ray and check the node counts fit."""
        if not self.spec.ray or not points:
            return
        from stilts_ds.engine.connection import alive_nodes, connect

        self._connected_here = connect(self.spec.address, quiet=True)
        alive = alive_nodes()
        need = max(p.nodes for p in points)
        if need > len(alive):
            modes = sorted({p.mode for p in points if p.nodes > len(alive)})
            raise SweepError(f"{' and '.join(m + '.nodes' for m in modes)} asks for {need} nodes, but the Ray cluster "
                             f"has {len(alive)} alive node{'s' if len(alive) != 1 else ''}; start more nodes "
                             f"(ray start --address=...) or lower the node counts")

    def __call__(self, point: Point) -> list[dict]:
        if point.mode == "inference":
            return self._inference(point)
        return self._training(point)

    # ---------------------------------------------------------------- inference
    def _inference(self, point: Point) -> list[dict]:
        import functools
        import socket

        import torch

        from stilts_ds.inference.bench import BenchSpec, measure
        from stilts_ds.inference.placement import cluster_total, device_name, node_label

        s = dict(point.settings)
        bench = BenchSpec(engines=(point.engine,), precisions=(point.precision,), batch_sizes=(point.batch_size,),
                          seq_len=point.seq_len, latency_requests=s["latency_requests"], preset=s["preset"],
                          synthetic_rows=s["synthetic_rows"], length_distribution=s["lengths"])
        if self.spec.ray:
            from stilts_ds.inference.placement import run_per_node

            gpus = 1 if torch.cuda.is_available() else 0
            rows = run_per_node(functools.partial(measure, bench), num_nodes=point.nodes, gpus_per_actor=gpus,
                                actors_per_node=point.workers_per_node if point.workers_per_node > 1 else None)
        else:
            gpus_here = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
            rows = [{**r, "node_id": "local", "host": socket.gethostname(), "node_index": 0,
                     "device": device_name(gpus_here)} for r in measure(bench)]
        # timing always adds batch 1 for latency; this point is about its own batch size.
        rows = [r for r in rows if r.get("batch_size") in (None, point.batch_size)]
        totals = cluster_total(rows)
        out = []
        for r, kind in [(r, "node") for r in rows] + [(t, "cluster") for t in totals]:
            r = dict(r)
            r["node"] = node_label(r)
            r["actual_nodes"] = r.pop("nodes", None) if kind == "cluster" else None
            r["workload_max_len"] = r.pop("seq_len", None)
            r.pop("batch_size", None)
            r.update(point.fields(), row=kind)
            out.append(r)
        cluster = out[-1]
        for r in out[:-1]:
            r["actual_nodes"] = cluster["actual_nodes"]
        return out

    # ---------------------------------------------------------------- training
    def _training(self, point: Point) -> list[dict]:
        import torch

        from stilts_ds.config import from_dict
        from stilts_ds.engine.launch import launch
        from stilts_ds.studies.pipeline import Study

        s = dict(point.settings)
        run_dir = (self.out_dir / "points" / point.point_id).resolve()
        # An earlier attempt's checkpoint must not be resumed: that would time fewer steps.
        shutil.rmtree(run_dir, ignore_errors=True)
        steps = s["steps"]
        cfg = from_dict({
            "name": f"scale-{point.point_id}", "output_dir": str(run_dir),
            "model": {"encoder": s["preset"], "tokenizer": "bundled"},
            "data": {"source": "local", "max_length": point.seq_len, "qa_max_length": max(point.seq_len, 16),
                     "cache_dir": str((self.out_dir / "cache").resolve())},
            "cluster": {"num_workers": point.workers, "use_gpu": bool(self.spec.ray and torch.cuda.is_available()),
                        "cpus_per_worker": s.get("cpus_per_worker", 1.0),
                        # One worker per node: STRICT_SPREAD guarantees it. Several per node: SPREAD
                        # (STRICT_SPREAD refuses two workers on one node); the row records where they ran.
                        "placement_strategy": "STRICT_SPREAD" if point.workers_per_node == 1 else "SPREAD",
                        "max_failures": 0,  # a restarted worker would time a resumed run: fail the point
                        "ray_address": self.spec.address,
                        "multi_node": bool(self.spec.storage_path) and point.nodes > 1,
                        "storage_path": self.spec.storage_path},
            "deepspeed": {"base": f"zero{point.zero_stage}", "precision": point.precision},
            "intermediate": {"tasks": [s["task"]], "max_steps": steps, "micro_batch": point.batch_size,
                             "global_batch": point.global_batch, "lr": s["lr"], "warmup_ratio": 0.0,
                             "schedule": "constant", "log_every": 1, "checkpoint_every": steps + 1},
        })
        study = Study(cfg, in_process=not self.spec.ray, progress=False)
        synthetic = ({s["task"]: str(self._synthetic(s["preset"], point.seq_len, point.global_batch))}
                     if s["data"] == "synthetic" else None)
        job = study.build_job("scale", cfg.intermediate, run_dir, s["preset"], run_dir / "export", with_dev=False,
                              export=False, features=synthetic)
        params = self._param_count(s["preset"], job)
        t0 = time.perf_counter()
        launch(job, asdict(cfg.cluster), name=f"{cfg.name}-{uuid.uuid4().hex[:6]}",
               storage_path=cfg.storage_path(), in_process=not self.spec.ray)
        wall = time.perf_counter() - t0
        measured = training_throughput(run_dir, warmup_steps=s["warmup_steps"], global_batch=point.global_batch)
        summary = json.loads((run_dir / "train_summary.json").read_text())
        nodes_used = {w.get("node_id") for w in summary.get("workers", [])}
        row = {**measured, "status": "ok", "reason": None, "params": params,
               "bytes_per_param": 4 if point.precision == "fp32" else 2,
               "actual_nodes": len(nodes_used), "loop_steps": summary["loop"]["steps"],
               "loop_seconds": summary["loop"]["seconds"], "loop_compute_seconds": summary["loop"]["compute_seconds"],
               "fit_seconds": wall, "hosts": sorted({w.get("host") for w in summary.get("workers", [])})}
        if row["actual_nodes"] != point.nodes:
            row["reason"] = (f"Ray placed the {point.workers} workers on {row['actual_nodes']} nodes, not "
                             f"{point.nodes} (SPREAD is best effort)")
        row.update(point.fields(), row="training")
        return [row]

    def _synthetic(self, preset: str, seq_len: int, global_batch: int) -> Path:
        """Pair-classification rows of exactly ``seq_len`` tokens (cached per shape), so a
        step holds micro x seq_len tokens per worker and the seq_len axis is the real shape."""
        import numpy as np

        from stilts_ds.data import cache
        from stilts_ds.modeling.presets import PRESETS, load_tokenizer
        from stilts_ds.tasks.features import Features

        vocab = PRESETS[preset].get("vocab_size") or len(load_tokenizer("bundled"))
        n = max(64, 4 * global_batch)
        path = (self.out_dir / "cache" / f"synthetic-{vocab}-{seq_len}-{n}.features").resolve()
        if cache.exists(path):
            return path
        rng = np.random.default_rng(0)
        ids = rng.integers(5, vocab, size=(n, seq_len), dtype=np.int64)
        ids[:, 0], ids[:, -1] = 0, 2  # <s> ... </s>
        feats = Features(format=pair_classification.FORMAT.name,  # one sequence, one label
                         columns={"input_ids": ids, "attention_mask": np.ones_like(ids, dtype=np.int8),
                                  "labels": rng.integers(0, 3, size=n).astype(np.int64),
                                  "lengths": np.full(n, seq_len, dtype=np.int32)},
                         guids=np.array([f"synthetic-{i}" for i in range(n)], dtype=object),
                         extras={"label_names": ("entailment", "neutral", "contradiction"), "references": {}})
        cache.write(path, feats)
        return path

    def _param_count(self, preset: str, job) -> int:
        """Trainable parameters of the model the workers build (the bytes ZeRO moves),
        counted on the meta device: nothing is allocated, so xlmr-large costs no memory."""
        heads = {t.name: t.head for t in job.tasks}
        key = (preset, repr(sorted(heads.items())))
        if key not in self._params:
            import torch

            from stilts_ds.engine.worker import build_model

            with torch.device("meta"):
                model = build_model(preset, job.tokenizer, heads, 0.0)
            self._params[key] = sum(p.numel() for p in model.parameters() if p.requires_grad)
        return self._params[key]


def training_throughput(run_dir: Path, *, warmup_steps: int, global_batch: int) -> dict:
    """Tokens/s, samples/s and step time of a training point from the loop's own per-step
    timings (``train/samples_per_s`` and ``train/tokens_per_s`` logged every step in
    ``<run_dir>/tensorboard/metrics.jsonl``), leaving out the first ``warmup_steps``.

    The loop times forward + backward + optimizer step (collectives included) and logs, per
    step, samples and tokens over that time. With one micro-batch per step, a step's seconds
    are ``global_batch / samples_rate`` and its tokens ``tokens_rate x seconds``; summing both
    over the timed steps gives tokens/s weighted by time (a mean of rates would overweight
    fast steps). ``train_summary.json``'s loop totals include the warm-up steps, so they are
    kept in the row only as a cross-check.
    """
    path = Path(run_dir) / "tensorboard" / "metrics.jsonl"
    if not path.is_file():
        raise StiltsError(f"{path}: the training run logged no metrics (rank 0 writes them); is --output on "
                          "storage every node shares?")
    rates: dict[int, dict[str, float]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        if r["tag"] in ("train/samples_per_s", "train/tokens_per_s"):
            rates.setdefault(int(r["step"]), {})[r["tag"].split("/")[1]] = float(r["value"])
    timed = sorted(s for s, v in rates.items() if s > warmup_steps and len(v) == 2 and v["samples_per_s"] > 0)
    if not timed:
        raise StiltsError(f"{path}: no step after the {warmup_steps} warm-up steps was logged")
    seconds = [global_batch / rates[s]["samples_per_s"] for s in timed]
    tokens = [rates[s]["tokens_per_s"] * sec for s, sec in zip(timed, seconds)]
    total = sum(seconds)
    first = rates.get(min(rates)) if rates else None
    return {"tokens_per_s": sum(tokens) / total, "samples_per_s": global_batch * len(timed) / total,
            "step_s": total / len(timed), "timed_steps": len(timed),
            "tokens_per_step": sum(tokens) / len(timed),
            "first_step_s": global_batch / first["samples_per_s"] if first and first.get("samples_per_s") else None}


# ============================================================================ the sweep

@dataclass
class SweepResult:
    points: list[Point]
    ran: list[str] = field(default_factory=list)  # point ids run now
    skipped: list[str] = field(default_factory=list)  # already finished
    failed: list[str] = field(default_factory=list)
    paths: dict = field(default_factory=dict)


def _failed_row(point: Point, error: BaseException) -> dict:
    return {**point.fields(), "row": "cluster" if point.mode == "inference" else "training", "status": "failed",
            "reason": f"{type(error).__name__}: {error}"[:2000]}


def run_sweep(spec: SweepSpec, out_dir: str | os.PathLike, *, force: bool = False,
              runner: Callable[[Point], list[dict]] | None = None,
              on_point: Callable[[Point, list[dict]], None] | None = None,
              say: Callable[[str], None] = _say_default) -> SweepResult:
    """Run every point not finished in ``out_dir``'s study table (all with ``force``),
    appending each point's rows as soon as it ends, then write the reports.

    ``runner(point) -> rows`` measures one point (default: ``PointRunner``, for real);
    ``on_point(point, rows)`` is called after a point's rows are in the table (progress
    hooks; tests interrupt a sweep from it). A point that raises an ``Exception`` becomes a
    ``failed`` row and the sweep goes on; KeyboardInterrupt stops it, and a rerun resumes.
    """
    from stilts_ds.studies import scale_report

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(out_dir / SWEEP_JSON, json.dumps(spec.to_dict(), indent=2, default=str))
    points = expand(spec)
    table = StudyTable(out_dir)
    done = set() if force else table.finished_ids() & {p.point_id for p in points}
    todo = [p for p in points if p.point_id not in done]
    result = SweepResult(points)
    say(f"scale sweep {spec.name!r}: {len(points)} points, {len(done)} finished earlier, {len(todo)} to run "
        f"-> {out_dir / TABLE_JSONL}")
    own_runner = runner is None
    runner = runner or PointRunner(spec, out_dir, say)
    width = len(str(len(points)))

    def report_table() -> None:
        result.paths.update(scale_report.write_tables(_current(table, points), out_dir, spec))

    try:
        if own_runner and todo:
            runner.prepare(todo)
        for i, p in enumerate(points, start=1):
            tag = f"[{i:>{width}}/{len(points)}] {p.label}"
            if p.point_id in done:
                say(f"{tag}: finished earlier, skipped")
                result.skipped.append(p.point_id)
                continue
            say(f"{tag}: running ...")
            t0 = time.perf_counter()
            attempt = uuid.uuid4().hex[:8]
            try:
                rows = runner(p)
            except Exception as e:  # noqa: BLE001 - one broken point is a row, not the end of the sweep
                rows = [_failed_row(p, e)]
            stamp = {"attempt": attempt, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
                     "point_seconds": round(time.perf_counter() - t0, 3)}
            rows = [{**r, **stamp} for r in rows]
            table.append(rows)
            result.ran.append(p.point_id)
            summary = next((r for r in rows if r.get("row") in SUMMARY_ROWS), rows[-1])
            if summary.get("status") not in DONE_STATUSES:
                result.failed.append(p.point_id)
            say(f"{tag}: {_describe(summary)} ({stamp['point_seconds']:.1f} s)")
            report_table()
            if on_point is not None:
                on_point(p, rows)
    finally:
        if own_runner:
            runner.__exit__(None, None, None)
    # The tables too (after every point above, report_table kept them current): one derive.
    result.paths.update(scale_report.write_reports(_current(table, points), out_dir, spec))
    if result.failed:
        say(f"{len(result.failed)} point(s) failed; rerun the same command to retry them (finished points are skipped)")
    return result


def _current(table: StudyTable, points: Sequence[Point]) -> list[dict]:
    """The newest rows of the sweep's points, in the sweep's order."""
    latest = table.latest(p.point_id for p in points)
    return [r for p in points for r in latest.get(p.point_id, [])]


def _describe(row: Mapping[str, Any]) -> str:
    status = row.get("status")
    if status != "ok":
        return f"{status}: {row.get('reason') or 'no reason given'}"
    if row.get("mode") == "inference":
        p = ", ".join(f"{row[k]:.2f}" for k in LATENCIES if row.get(k) is not None)
        return f"ok, {row['throughput_samples_per_s']:,.1f} samples/s on {row.get('actual_nodes')} node(s)" + \
            (f", p50/p90/p99 {p} ms" if p else "")
    return f"ok, {row['tokens_per_s']:,.0f} tokens/s, {row['step_s'] * 1e3:.1f} ms/step over {row['timed_steps']} steps"
