"""The data joins behind the study report: accuracy per arm (with its interval or seeds' spread),
training cost per arm, serving cost per arm (or per served checkpoint), and the Pareto front.

    from stilts_ds.studies.tradeoff import arm_scores, read_bench, study_inputs, tradeoff_rows

    results, benches, info = study_inputs(Path("runs/quickstart"))   # arms.json + bench*/bench.jsonl
    arms = [arm_scores(name, path, info.get(name)) for name, path in results.items()]
    bench = read_bench(benches)            # Serving per (arm or served checkpoint, workload, engine, dtype)
    bench.per_arm                          # False: one checkpoint served; its throughput is no arm's

``stilts_ds.studies.report.build_report`` turns these into report.md / index.html (the
command is ``stilts-ds report``, see that module).

Accuracy comes from each arm's ``results.json``: ``xtreme_average``, ``xtreme_r_average`` and
``task_scores``, with, when present, ``uncertainty`` (intervals: ``{"low", "high"}`` per average
and per task, at ``level``) or else ``seeds`` (``std`` per average and per task over
``values``). Training cost is what phases 1 and 2 of the arm took in worker-seconds: every
``DONE.json`` under the arm's ``phase1/`` and ``phase2/`` (stages of staged recipes included),
wall seconds times the workers it ran on; without those files, arms.json's wall seconds
(``phase1_wall_s``, ``phase2_wall_s``). Serving cost comes from ``bench.jsonl`` files of
``stilts-ds bench``: the cluster rows, per (arm, workload, engine, precision) the batch size
with the best median throughput, and batch-1 latency p50 (ms per response); repeated rows of
one (engine, precision, batch size) are repeated timings, whose range is kept. Rows without
an ``arm`` field are one served checkpoint (named by the rows' ``checkpoint`` or the bench
node's ``DONE.json``), whose numbers are not any arm's.
"""
from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from stilts_ds.errors import DataFileError
from stilts_ds.studies.results import load_results


# ----------------------------------------------------------------------------- accuracy
@dataclass(frozen=True)
class Estimate:
    """A score with its uncertainty: an interval (low, high), or a standard deviation over
    seeds, or neither (one run)."""
    value: float | None
    low: float | None = None
    high: float | None = None
    sd: float | None = None

    @property
    def has_interval(self) -> bool:
        return self.low is not None and self.high is not None

    def bounds(self) -> tuple[float | None, float | None]:
        """The error bar's ends: the interval, else value ± sd, else the value itself."""
        if self.value is None:
            return None, None
        if self.has_interval:
            return self.low, self.high
        if self.sd is not None:
            return self.value - self.sd, self.value + self.sd
        return self.value, self.value

    def yerr(self) -> tuple[float, float]:
        low, high = self.bounds()
        if self.value is None or low is None:
            return 0.0, 0.0
        return max(0.0, self.value - low), max(0.0, high - self.value)


@dataclass(frozen=True)
class Uncertainty:
    """Where an arm's error bars come from: ``kind`` "interval" (method, level, resamples),
    "seeds" (how many), or "none"."""
    kind: str
    method: str | None = None
    level: float | None = None
    resamples: int | None = None
    seeds: int | None = None

    def describe(self) -> str:
        if self.kind == "interval":
            level = f"{self.level:.0%} " if self.level is not None else ""
            extra = f", {self.resamples:,} resamples" if self.resamples else ""
            return f"{level}intervals ({self.method or 'method not named'}{extra})"
        if self.kind == "seeds":
            return f"± std over {self.seeds} seeds" if self.seeds else "± std over seeds"
        return "no interval (one run: results.json has neither `uncertainty` nor `seeds`)"


@dataclass(frozen=True)
class TrainCost:
    """Phase-1 and phase-2 cost of an arm in ``unit`` ("worker-s" or "wall-s"); None: unknown."""
    phase1: float | None
    phase2: float | None
    unit: str
    phase1_samples_per_s: float | None = None
    runs: int = 1  # seeds' runs the worker-seconds are the mean of

    @property
    def total(self) -> float | None:
        return None if self.phase1 is None or self.phase2 is None else self.phase1 + self.phase2


@dataclass(frozen=True)
class ArmScores:
    name: str
    data: str | None              # what phase 1 trained on: "English-only", "multilingual +MLM ...", "none"
    results_path: Path
    xtreme: Estimate
    xtreme_r: Estimate
    tasks: dict[str, Estimate]
    uncertainty: Uncertainty
    cost: TrainCost
    description: str | None = None
    # {task: {lang: headline score}} of phase 3 (results.json's tasks, (EM + F1) / 2 for QA; with
    # seeds the first seed's, whose model the bench serves): what the bench's accuracy through
    # each engine is set against.
    per_lang: dict[str, dict[str, float]] = field(default_factory=dict)


def _interval(block) -> tuple[float | None, float | None]:
    if isinstance(block, Mapping) and isinstance(block.get("low"), (int, float)) \
            and isinstance(block.get("high"), (int, float)):
        return float(block["low"]), float(block["high"])
    return None, None


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _estimate(value, interval_block, sd) -> Estimate:
    low, high = _interval(interval_block)
    return Estimate(_number(value), low, high, _number(sd))


def arm_scores(name: str, results_path: Path, info: Mapping | None = None) -> ArmScores:
    """One arm's scores (with uncertainty) and training cost; ``info`` is its arms.json row."""
    res = load_results(Path(results_path))
    info = info or {}
    unc = res.get("uncertainty") if isinstance(res.get("uncertainty"), Mapping) else None
    seeds = res.get("seeds") if isinstance(res.get("seeds"), Mapping) else None
    std = (seeds or {}).get("std") if isinstance((seeds or {}).get("std"), Mapping) else {}
    if unc:
        kind = Uncertainty("interval", unc.get("method"), _number(unc.get("level")),
                           int(unc["resamples"]) if isinstance(unc.get("resamples"), int) else None)
        iv = unc
        std = {}  # the interval is what the report shows; seeds' std would be a second, different bar
    elif std:
        kind, iv = Uncertainty("seeds", seeds=len(seeds.get("values") or []) or None), {}
    else:
        kind, iv = Uncertainty("none"), {}
    task_iv = iv.get("task_scores") if isinstance(iv.get("task_scores"), Mapping) else {}
    task_sd = std.get("task_scores") if isinstance(std.get("task_scores"), Mapping) else {}
    tasks = {t: _estimate(v, task_iv.get(t), task_sd.get(t)) for t, v in res.get("task_scores", {}).items()}
    return ArmScores(
        name=name, data=info.get("data"), results_path=Path(results_path), description=info.get("description"),
        xtreme=_estimate(res.get("xtreme_average"), iv.get("xtreme_average"), std.get("xtreme_average")),
        xtreme_r=_estimate(res.get("xtreme_r_average"), iv.get("xtreme_r_average"), std.get("xtreme_r_average")),
        tasks=tasks, uncertainty=kind, cost=training_cost(Path(results_path).parent, info),
        per_lang=_served_scores(res, seeds),
    )


def _served_scores(res: Mapping, seeds: Mapping | None) -> dict[str, dict[str, float]]:
    """Phase 3's per-language headline scores of the model the bench serves: the arm's own,
    or with seeds the first seed's (the one its bench nodes serve), not the seeds' mean."""
    runs = (seeds or {}).get("runs")
    if runs:
        try:
            return _headlines(load_results(Path(runs[0]) / "results.json").get("tasks", {}))
        except DataFileError:
            return {}
    return _headlines(res.get("tasks", {}))


def _headlines(tasks: Mapping) -> dict[str, dict[str, float]]:
    from stilts_ds.tasks.scoring import primary_score

    out: dict[str, dict[str, float]] = {}
    for task, per_lang in tasks.items():
        for lang, scores in per_lang.items():
            try:
                out.setdefault(task, {})[lang] = float(primary_score(scores))
            except (KeyError, TypeError, ValueError):
                continue
    return out


def _done_worker_seconds(stage_dir: Path) -> float | None:
    """Worker-seconds of every node under ``stage_dir`` (its own DONE.json and its stages')."""
    files = sorted(stage_dir.rglob("DONE.json")) if stage_dir.is_dir() else []
    if not files:
        return None
    total = 0.0
    for path in files:
        try:
            done = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None
        workers = done.get("world_size") or done.get("fit_workers")
        if not isinstance(done.get("wall_seconds"), (int, float)) or not workers:
            return None  # a node without its worker count: a partial sum would understate the arm
        total += done["wall_seconds"] * workers
    return total


def _run_dirs(arm_dir: Path) -> list[Path]:
    """The arm's runs: its own dir, or with training seeds each ``seeds/<s>/`` run."""
    seeds = arm_dir / "seeds"
    if not (arm_dir / "phase2").is_dir() and seeds.is_dir():
        return sorted(d for d in seeds.iterdir() if d.is_dir())
    return [arm_dir]


def training_cost(arm_dir: Path, info: Mapping | None = None) -> TrainCost:
    """Worker-seconds of phases 1 and 2 from the arm's DONE.json files (with seeds, the mean
    over the seeds' runs: what one run of the arm costs, as arms.json counts it); else
    arms.json's wall seconds; else unknown. An arm without intermediate training ("none") has
    no phase-1 cost."""
    info = info or {}
    rate = _number(info.get("phase1_samples_per_s"))
    no_phase1 = info.get("data") == "none"
    runs = _run_dirs(Path(arm_dir))
    p1s = [0.0 if no_phase1 else _done_worker_seconds(r / "phase1") for r in runs]
    p2s = [_done_worker_seconds(r / "phase2") for r in runs]
    p1 = None if None in p1s else sum(p1s) / len(p1s)
    p2 = None if None in p2s else sum(p2s) / len(p2s)
    if p1 is not None and p2 is not None:
        return TrainCost(p1, p2, "worker-s", rate, runs=len(runs))
    w1 = 0.0 if no_phase1 else _number(info.get("phase1_wall_s"))
    w2 = _number(info.get("phase2_wall_s"))
    if w1 is not None or w2 is not None:
        return TrainCost(w1, w2, "wall-s", rate)
    return TrainCost(p1, p2, "worker-s", rate)


# ----------------------------------------------------------------------------- serving
@dataclass(frozen=True)
class Serving:
    """Serving cost of one (arm or served checkpoint, workload, engine, dtype): throughput at
    the batch size with the best median, batch-1 latency p50; each the median of its repeated
    timings with their range (low, high) and count."""
    arm: str | None
    workload: str | None
    engine: str
    dtype: str
    throughput_samples_per_s: float
    throughput_low: float
    throughput_high: float
    timings: int
    best_batch_size: int
    latency_ms_p50_batch1: float | None
    latency_low: float | None = None
    latency_high: float | None = None
    latency_timings: int = 0

    @property
    def config(self) -> str:
        return f"{self.engine} {self.dtype}"


@dataclass
class Bench:
    servings: list[Serving] = field(default_factory=list)
    unavailable: list[tuple[str, str, str | None]] = field(default_factory=list)  # (engine, dtype, reason)
    checkpoint: str | None = None   # the served checkpoint, when the rows are not per arm
    files: list[Path] = field(default_factory=list)

    @property
    def per_arm(self) -> bool:
        """Whether any row names the arm it served (rows that do not are the one checkpoint)."""
        return any(s.arm is not None for s in self.servings)

    @property
    def unattributed(self) -> list[Serving]:
        """Rows of the served checkpoint that no arm owns."""
        return [s for s in self.servings if s.arm is None]

    def of_arm(self, arm: str) -> list[Serving]:
        return [s for s in self.servings if s.arm == arm]


def _bench_rows(path: Path):
    if not path.is_file():
        raise DataFileError(path, "no such bench file (bench.jsonl from `stilts-ds bench`)")
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError as e:
            raise DataFileError(path, f"not valid JSON ({e.msg})", lineno) from None


def _workload(row) -> str | None:
    if row.get("workload"):
        return str(row["workload"])
    if row.get("task"):
        return f"{row['task']}/{row['lang']}" if row.get("lang") else str(row["task"])
    return None


def _served_checkpoint(path: Path, rows: list[dict]) -> str | None:
    """What a bench file served: its rows' ``checkpoint``, else what the study's bench node
    recorded in the DONE.json beside it."""
    named = {str(r["checkpoint"]) for r in rows if r.get("checkpoint")}
    if named:
        return ", ".join(sorted(named))
    done = path.parent / "DONE.json"
    if done.is_file():
        try:
            served = json.loads(done.read_text(encoding="utf-8")).get("config", {}).get("served")
        except (OSError, json.JSONDecodeError, AttributeError):
            served = None
        if served:
            return str(served)
    return None


def read_bench(bench_paths: Sequence[Path]) -> Bench:
    """Every bench file's cluster rows, grouped per (arm, workload, engine, dtype)."""
    timings: dict[tuple, dict[int, list[float]]] = {}
    latency: dict[tuple, list[float]] = {}
    out = Bench(files=[Path(p) for p in bench_paths])
    checkpoints = []
    for path in out.files:
        rows = [r for r in _bench_rows(path) if r.get("node_id") == "cluster"]
        if any(r.get("arm") is None for r in rows):
            checkpoints.append(_served_checkpoint(path, rows) or f"the checkpoint of {path} (its rows do not name it)")
        for row in rows:
            key = (row.get("arm"), _workload(row), str(row["engine"]), str(row["dtype"]))
            if row.get("status") != "ok":
                entry = (row["engine"], str(row["dtype"]), row.get("reason") or row.get("status"))
                if entry not in out.unavailable:
                    out.unavailable.append(entry)
                continue
            if row.get("throughput_samples_per_s") and row.get("batch_size"):
                timings.setdefault(key, {}).setdefault(int(row["batch_size"]), []).append(
                    float(row["throughput_samples_per_s"]))
            if row.get("batch_size") == 1 and row.get("latency_ms_p50") is not None:
                latency.setdefault(key, []).append(float(row["latency_ms_p50"]))
    for key in sorted(timings, key=lambda k: tuple("" if v is None else v for v in k)):
        by_batch = timings[key]
        batch = max(by_batch, key=lambda b: (statistics.median(by_batch[b]), -b))
        thr, lat = by_batch[batch], latency.get(key, [])
        out.servings.append(Serving(
            arm=key[0], workload=key[1], engine=key[2], dtype=key[3],
            throughput_samples_per_s=statistics.median(thr), throughput_low=min(thr), throughput_high=max(thr),
            timings=len(thr), best_batch_size=batch,
            latency_ms_p50_batch1=statistics.median(lat) if lat else None,
            latency_low=min(lat) if lat else None, latency_high=max(lat) if lat else None, latency_timings=len(lat)))
    named = list(dict.fromkeys(c for c in checkpoints if c))
    out.checkpoint = "; ".join(named) if named else None
    return out


def serving_costs(bench_paths: Sequence[Path]) -> list[Serving]:
    """Per (arm, workload, engine, dtype): the best median cluster throughput over batch sizes
    and batch-1 latency (``read_bench(...).servings``)."""
    return read_bench(bench_paths).servings


# ----------------------------------------------------------------------------- joins
def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of points no other point beats on both axes (higher is better on both; negate
    an axis where lower is better)."""
    front = []
    for i, (x, y) in enumerate(points):
        if not any((x2 >= x and y2 >= y) and (x2 > x or y2 > y) for j, (x2, y2) in enumerate(points) if j != i):
            front.append(i)
    return front


def training_front(arms: Sequence[ArmScores]) -> set[str]:
    """Arms on the accuracy / training-cost frontier (cheaper or more accurate than any other)."""
    known = [a for a in arms if a.xtreme.value is not None and a.cost.total is not None]
    return {known[i].name for i in pareto_front([(-a.cost.total, a.xtreme.value) for a in known])}


def serving_points(arms: Sequence[ArmScores], bench: Bench) -> list[tuple[ArmScores, Serving]]:
    """(arm, its own serving measurement) pairs: only where the bench served that arm."""
    if not bench.per_arm:
        return []
    return [(a, s) for a in arms if a.xtreme.value is not None for s in bench.of_arm(a.name)]


def serving_front(points: Sequence[tuple[ArmScores, Serving]]) -> set[int]:
    return set(pareto_front([(s.throughput_samples_per_s, a.xtreme.value) for a, s in points]))


def tradeoff_rows(arms: Sequence[ArmScores], bench: Bench) -> list[dict]:
    """tradeoff.csv: one row per arm and, when the bench served every arm, per (arm, engine,
    precision); a served checkpoint that is no arm's adds no serving columns to any arm."""
    tasks = list(dict.fromkeys(t for a in arms for t in a.tasks))
    on_train = training_front(arms)
    points = serving_points(arms, bench)
    on_serve = serving_front(points)
    rows = []
    for a in arms:
        base = {
            "arm": a.name, "phase1_data": a.data,
            "xtreme_average": a.xtreme.value, "xtreme_low": a.xtreme.low, "xtreme_high": a.xtreme.high,
            "xtreme_sd": a.xtreme.sd, "xtreme_r_average": a.xtreme_r.value, "xtreme_r_low": a.xtreme_r.low,
            "xtreme_r_high": a.xtreme_r.high, "xtreme_r_sd": a.xtreme_r.sd, "uncertainty": a.uncertainty.kind,
            "cost_unit": a.cost.unit, "phase1_cost": a.cost.phase1, "phase2_cost": a.cost.phase2,
            "training_cost": a.cost.total, "phase1_samples_per_s": a.cost.phase1_samples_per_s,
            "pareto_training": a.name in on_train,
            **{f"score_{t}": a.tasks[t].value if t in a.tasks else None for t in tasks},
            "serving_per_arm": bool(bench.of_arm(a.name)),
            "served_checkpoint": None if bench.of_arm(a.name) else bench.checkpoint,
        }
        mine = [(i, s) for i, (b, s) in enumerate(points) if b.name == a.name]
        for i, s in mine or [(None, None)]:
            rows.append({**base, "workload": s and s.workload, "engine": s and s.engine, "dtype": s and s.dtype,
                         "throughput_samples_per_s": s and s.throughput_samples_per_s,
                         "throughput_low": s and s.throughput_low, "throughput_high": s and s.throughput_high,
                         "timings": s and s.timings, "best_batch_size": s and s.best_batch_size,
                         "ms_per_response_p50_batch1": s and s.latency_ms_p50_batch1,
                         "pareto_serving": i in on_serve if s else None})
    return rows


def study_inputs(study_dir: Path) -> tuple[dict[str, Path], list[Path], dict[str, dict]]:
    """(results per arm, bench files, arm info) found in a study's run dir: the arms of
    ``arms.json`` (or the single ``results.json``), ``bench*/bench.jsonl`` (one served model,
    or `stilts-ds bench --output <run dir>/bench-...`), ``bench/<arm>/<task>/bench.jsonl``
    (the study's bench node of each arm and task) and ``bench/<arm>/bench.jsonl`` (one node per
    arm, before bench.tasks)."""
    from stilts_ds.studies.arms import COMPARISON, load_comparison

    study_dir = Path(study_dir)
    if (study_dir / COMPARISON).is_file():
        info = {r["arm"]: r for r in load_comparison(study_dir / COMPARISON)}
        results = {arm: Path(r["results"]) for arm, r in info.items()}
    elif (study_dir / "results.json").is_file():
        info, results = {}, {study_dir.name: study_dir / "results.json"}
    else:
        raise DataFileError(study_dir, f"holds neither {COMPARISON} nor results.json: run `stilts-ds pipeline` "
                                       "with this output_dir first")
    benches = sorted({*study_dir.glob("bench*/bench.jsonl"), *study_dir.glob("bench/*/bench.jsonl"),
                      *study_dir.glob("bench/*/*/bench.jsonl")})
    return results, benches, info
