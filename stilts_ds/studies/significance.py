"""Is arm A better than arm B? The paired bootstrap over test examples, pooled over seeds,
from the per-example statistics phase 3 writes (``phase3/<task>/examples/<lang>.json``).

Usage::

    from stilts_ds.studies.significance import compare_runs

    out = compare_runs([Path("runs/paper-seed1/arms/english"), Path("runs/paper-seed2/arms/english")],
                       [Path("runs/paper-seed1/arms/none"), Path("runs/paper-seed2/arms/none")])
    out["xtreme_average"]    # {"a", "b", "difference", "low", "high", "p_value"}: a - b, 95% interval
    out["xtreme_r_average"]  # the same, where both arms have the XTREME-R average (its ten tasks)
    out["tasks"]["xnli"]     # the same for the task score, plus "examples" and "dropped"
    out["examples"]          # {"compared": n, "dropped": m}

``a`` and ``b`` are run directories, one per seed (each holds ``phase3/<task>/...``: an arm's
``<arm run dir>/seeds/<s>``, an arm's directory ``<output_dir>/arms/<arm>`` or a study's
``output_dir``). ``names=("english", "none")`` adds ``"a"``/``"b"`` naming the arms, the shape
``studies.report`` takes its paired comparisons in. The method is
``stilts_ds.metrics.uncertainty.paired_bootstrap`` (its docstring says why this test): one
draw of example ids per (task, language), applied to both arms and to every seed's
predictions; an arm's statistic is the mean over its seeds; the XTREME and XTREME-R averages
are recomputed from the resampled scores by ``studies.results.benchmark_averages``, the
function results.json's own averages come from. Only (task, language, example) present in
every run of both arms are compared; ``dropped`` counts the rest, per task and in all.
Defaults: 1,000 resamples, seed 0, 95% level.

A run directory without per-example files (phase 3 from before they were written), or with a
file that does not give back the scores.json beside it, is an error naming the file.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from stilts_ds.errors import StiltsError
from stilts_ds.metrics import uncertainty as bootstrap
from stilts_ds.metrics.example_stats import ExampleStats
from stilts_ds.studies.results import (
    benchmark_averages,
    example_files,
    example_stats_of,
    read_example_file,
)


def read_run(run_dir: str | Path) -> dict[str, dict[str, ExampleStats]]:
    """``{task: {lang: ExampleStats}}`` of one run directory (``phase3/<task>/examples/``),
    checked against each task's scores.json where there is one."""
    phase3 = Path(run_dir) / "phase3"
    if not phase3.is_dir():
        raise StiltsError(f"{run_dir}: no phase3 directory: not a study run (or phase 3 has not run)")
    out: dict[str, dict[str, ExampleStats]] = {}
    for task_dir in sorted(p for p in phase3.iterdir() if p.is_dir()):
        task = task_dir.name
        scores_file = task_dir / "scores.json"
        if scores_file.is_file():
            scores = json.loads(scores_file.read_text(encoding="utf-8"))
            if not scores:
                continue
            found, why = example_stats_of(task_dir, scores)
            if found is None:
                raise StiltsError(f"{run_dir}: cannot compare: {why} (rerun phase 3 to write them)")
            out.update(found)
        else:  # per-example files alone
            files = example_files(task_dir, task)
            if files:
                out[task] = {lang: read_example_file(path) for lang, path in files.items()}
    if not out:
        raise StiltsError(f"{run_dir}: no per-example statistics under {phase3} (rerun phase 3 to write them)")
    return out


def _xtreme_average(scores: Mapping) -> Any:
    return benchmark_averages(scores)["xtreme_average"]


def _xtreme_r_average(scores: Mapping) -> Any:
    return benchmark_averages(scores).get("xtreme_r_average")


def compare_runs(a: Sequence[str | Path], b: Sequence[str | Path], *, resamples: int = bootstrap.RESAMPLES,
                 seed: int = bootstrap.SEED, level: float = bootstrap.LEVEL,
                 names: tuple[str, str] | None = None) -> dict[str, Any]:
    """Arm ``a`` against arm ``b`` (difference a - b), each a list of run directories (one
    per seed): ``{"method", "resamples", "seed", "level", "runs", "dirs", "examples",
    "xtreme_average", "xtreme_r_average" (where defined for both), "tasks"}``; with ``names``
    (the arms' names) also ``"a"`` and ``"b"``, as the report's comparisons name their arms."""
    if not a or not b:
        raise StiltsError("compare_runs needs at least one run directory per arm")
    runs_a, runs_b = [read_run(d) for d in a], [read_run(d) for d in b]
    out = bootstrap.paired_bootstrap(runs_a, runs_b, {"xtreme_average": _xtreme_average,
                                                       "xtreme_r_average": _xtreme_r_average},
                                     resamples=resamples, seed=seed, level=level)
    out["dirs"] = {"a": [str(d) for d in a], "b": [str(d) for d in b]}
    if names is not None:
        out["a"], out["b"] = names
    return out


# Phase-1 data of the arms each other arm is compared with (arms.json's "data"): no
# intermediate training (what intermediate training does at all), then English-only (what
# multilingual data adds): the study's two comparisons.
REFERENCES = ("none", "English-only")


def run_dirs(results_path: str | Path) -> list[Path]:
    """The run directories behind an arm's results.json: its seeds' runs when it combines
    seeds (``studies.seeds``), else the directory it sits in."""
    path = Path(results_path)
    res = json.loads(path.read_text(encoding="utf-8"))
    runs = (res.get("seeds") or {}).get("runs")
    return [Path(r) for r in runs] if runs else [path.parent]


def arm_comparisons(results: Mapping[str, str | Path], arm_info: Mapping[str, Mapping] | None = None, *,
                    resamples: int = bootstrap.RESAMPLES, seed: int = bootstrap.SEED,
                    level: float = bootstrap.LEVEL) -> tuple[list[dict], list[str]]:
    """Every arm against each reference arm (``REFERENCES``, by arms.json's ``data``), for the
    report: (comparisons tagged with the arms' names, notes on pairs that could not be
    compared and why). ``results``: arm -> its results.json."""
    info = arm_info or {}
    refs = [next((a for a in results if (info.get(a) or {}).get("data") == data), None) for data in REFERENCES]
    out, notes, done = [], [], set()
    for ref in (r for r in refs if r is not None):
        for arm in results:
            if arm == ref or frozenset((arm, ref)) in done:
                continue
            done.add(frozenset((arm, ref)))
            try:
                out.append(compare_runs(run_dirs(results[arm]), run_dirs(results[ref]), resamples=resamples,
                                        seed=seed, level=level, names=(arm, ref)))
            except (StiltsError, OSError, ValueError) as e:
                notes.append(f"{arm} vs {ref}: no paired comparison ({e})")
    if not any(refs):
        notes.append("no arm without intermediate training and no English-only arm: nothing to compare against")
    return out, notes
