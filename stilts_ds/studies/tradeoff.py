"""The trade-off report: accuracy of each intermediate-training arm beside what serving costs.

    stilts-ds report --study runs/quickstart --output runs/quickstart/report
    stilts-ds report --results english-mt=runs/quickstart/results.json \
        --results baseline=runs/baseline/results.json --bench runs/bench/bench.jsonl --output runs/report

``--study`` reads a study's run dir: every arm of its ``arms.json`` (what phase 1 trained on,
English-only or multilingual, and its cost, beside its accuracy) and its ``bench*/bench.jsonl``.

Accuracy comes from the study's ``results.json`` files (one per arm: the XTREME average and
the per-task scores); efficiency from ``bench.jsonl`` files of ``stilts-ds bench`` (the
cluster rows: throughput at the best batch size, latency p50 at batch 1, per engine and
precision). Every (arm, engine, precision) becomes one row of ``tradeoff.md`` /
``tradeoff.csv``; ``pareto.png`` plots accuracy against samples/s with the Pareto frontier
(no other point is both faster and more accurate).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from stilts_ds.atomic import write_atomic
from stilts_ds.errors import DataFileError
from stilts_ds.figures import figure, png
from stilts_ds.studies.results import load_results
from stilts_ds.tables import MISSING, fmt_number, markdown_table, write_csv


@dataclass(frozen=True)
class Serving:
    engine: str
    dtype: str
    throughput_samples_per_s: float
    best_batch_size: int
    latency_ms_p50_batch1: float | None


def serving_costs(bench_paths: Sequence[Path]) -> list[Serving]:
    """Per (engine, dtype): the best cluster throughput over batch sizes and batch-1 latency."""
    best: dict[tuple[str, str], dict] = {}
    lat: dict[tuple[str, str], float] = {}
    for path in bench_paths:
        path = Path(path)
        if not path.is_file():
            raise DataFileError(path, "no such bench file (bench.jsonl from `stilts-ds bench`)")
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataFileError(path, f"not valid JSON ({e.msg})", lineno) from None
            if row.get("node_id") != "cluster" or row.get("status") != "ok":
                continue
            key = (row["engine"], str(row["dtype"]))
            if row.get("throughput_samples_per_s") and (
                    key not in best or row["throughput_samples_per_s"] > best[key]["throughput_samples_per_s"]):
                best[key] = row
            if row.get("batch_size") == 1 and row.get("latency_ms_p50") is not None:
                lat[key] = row["latency_ms_p50"]
    return [Serving(e, d, r["throughput_samples_per_s"], int(r["batch_size"]), lat.get((e, d)))
            for (e, d), r in sorted(best.items())]


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of points no other point beats on both axes (higher is better on both)."""
    front = []
    for i, (x, y) in enumerate(points):
        if not any((x2 >= x and y2 >= y) and (x2 > x or y2 > y) for j, (x2, y2) in enumerate(points) if j != i):
            front.append(i)
    return front


def study_inputs(study_dir: Path) -> tuple[dict[str, Path], list[Path], dict[str, dict]]:
    """(results per arm, bench files, arm info) found in a study's run dir: the arms of
    ``arms.json`` (or the single ``results.json``) and ``bench*/bench.jsonl``."""
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
    return results, sorted(study_dir.glob("bench*/bench.jsonl")), info


def build_report(results: Mapping[str, Path], bench_paths: Sequence[Path], out_dir: Path,
                 *, title: str = "Intermediate training: accuracy vs serving cost",
                 arm_info: Mapping[str, Mapping] | None = None, schedule_dir: Path | None = None) -> dict[str, Path]:
    """``arm_info`` (rows of arms.json) adds what phase 1 trained on and what it cost;
    ``schedule_dir`` (a study's run dir) adds how full the cluster was (its utilization.json
    and timeline.png, written by the scheduler)."""
    arms = {name: load_results(Path(p)) for name, p in results.items()}
    arm_info = arm_info or {}
    serving = serving_costs(bench_paths)
    tasks = sorted({t for r in arms.values() for t in r.get("task_scores", {})})
    rows = []
    for arm, res in arms.items():
        info = arm_info.get(arm, {})
        for s in serving or [None]:
            rows.append({
                "arm": arm, "phase1_data": info.get("data"), "phase1_samples_per_s": info.get("phase1_samples_per_s"),
                "xtreme_average": res["xtreme_average"],
                **{f"score_{t}": res.get("task_scores", {}).get(t) for t in tasks},
                "engine": s.engine if s else None, "dtype": s.dtype if s else None,
                "throughput_samples_per_s": s.throughput_samples_per_s if s else None,
                "best_batch_size": s.best_batch_size if s else None,
                "latency_ms_p50_batch1": s.latency_ms_p50_batch1 if s else None,
            })
    points = [(r["throughput_samples_per_s"] or 0.0, r["xtreme_average"]) for r in rows]
    front = set(pareto_front(points)) if serving else set()
    for i, r in enumerate(rows):
        r["pareto"] = i in front
    out_dir = Path(out_dir)
    md = _markdown(rows, tasks, title)
    paths = {"csv": write_csv(out_dir / "tradeoff.csv", rows, list(rows[0]))}
    if arm_info:
        from stilts_ds.studies.arms import comparison_markdown, comparison_png

        infos = [arm_info[a] for a in arms if a in arm_info]
        md += "\n" + comparison_markdown(infos, title="Arms side by side: English-only vs multilingual phase 1")
        paths["arms_png"] = write_atomic(out_dir / "arms.png", comparison_png(infos, title="Scores per arm"))
    if schedule_dir is not None and (Path(schedule_dir) / "utilization.json").is_file():
        util = json.loads((Path(schedule_dir) / "utilization.json").read_text(encoding="utf-8"))
        md += ("\n## Cluster use (the last run of the study graph that trained or evaluated)\n\n"
               f"{util['busy_worker_s']:,.0f} busy worker-seconds of {util['available_worker_s']:,.0f} available "
               f"({util['slots']} worker slots x {util['wall_s']:,.0f} s): utilization **{util['utilization']:.0%}**. "
               "Every job on its worker slots: `timeline.png`.\n")
        if (Path(schedule_dir) / "timeline.png").is_file():
            paths["timeline_png"] = write_atomic(out_dir / "timeline.png",
                                                 (Path(schedule_dir) / "timeline.png").read_bytes())
    paths["md"] = write_atomic(out_dir / "tradeoff.md", md)
    if serving:
        paths["pareto_png"] = write_atomic(out_dir / "pareto.png", _pareto_png(rows, title))
    return paths


def _markdown(rows, tasks, title) -> str:
    head = ["arm", "phase-1 data", "phase-1 rows/s", "XTREME avg", *tasks, "engine", "dtype",
            "samples/s (best batch)", "p50 ms @1", "Pareto"]
    body = []
    for r in rows:
        thr = MISSING if r["throughput_samples_per_s"] is None else \
            f"{fmt_number(r['throughput_samples_per_s'], ',.1f')} (B={r['best_batch_size']})"
        body.append([r["arm"], r["phase1_data"] or MISSING, fmt_number(r["phase1_samples_per_s"]),
                     fmt_number(r["xtreme_average"]), *[fmt_number(r[f"score_{t}"]) for t in tasks],
                     r["engine"] or MISSING, r["dtype"] or MISSING, thr, fmt_number(r["latency_ms_p50_batch1"], ".2f"),
                     "yes" if r["pareto"] else ""])
    return "\n".join([f"# {title}", "", *markdown_table(head, body)]) + "\n"


def _pareto_png(rows, title) -> bytes:
    fig = figure((7, 4.5))
    ax = fig.add_subplot(1, 1, 1)
    for arm in dict.fromkeys(r["arm"] for r in rows):
        mine = [r for r in rows if r["arm"] == arm]
        # Multilingual arms as triangles, English-only as circles: the comparison the study is about.
        marker = "^" if (mine[0]["phase1_data"] or "").startswith("multilingual") else "o"
        label = f"{arm} ({mine[0]['phase1_data']})" if mine[0]["phase1_data"] else arm
        ax.scatter([r["throughput_samples_per_s"] for r in mine], [r["xtreme_average"] for r in mine],
                   label=label, marker=marker)
        for r in mine:
            ax.annotate(f"{r['engine']} {r['dtype']}", (r["throughput_samples_per_s"], r["xtreme_average"]),
                        fontsize=7, xytext=(3, 3), textcoords="offset points")
    front = sorted((r for r in rows if r["pareto"]), key=lambda r: r["throughput_samples_per_s"])
    ax.plot([r["throughput_samples_per_s"] for r in front], [r["xtreme_average"] for r in front],
            linestyle="--", color="grey", label="Pareto frontier")
    ax.set_xlabel("throughput (samples/s, cluster)")
    ax.set_ylabel("XTREME average")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return png(fig, dpi=110)
