"""The study's results files: ``results.json`` (scores + XTREME average) and a Markdown table.

Usage::

    from stilts_ds.studies.results import load_results, results_markdown, write_markdown, write_results

    res = write_results(
        run_dir / "results.json",
        {"xnli":  {"en": {"accuracy": 85.0}, "de": {"accuracy": 78.0}},
         "panx":  {"en": {"f1": 83.0}, "de": {"f1": 78.0}},
         "xquad": {"en": {"exact_match": 72.0, "f1": 84.0}, "de": {"exact_match": 60.0, "f1": 76.0}}},
        extra={"intermediate_task": "squad_v2", "encoder": "xlm-roberta-large"},
    )
    res["task_scores"]     # {"xnli": 81.5, "panx": 80.5, "xquad": 73.0}
    res["xtreme_average"]  # 78.333...
    write_markdown(run_dir / "results.md", res)
    load_results(run_dir / "results.json") == res   # True

``results.json`` holds::

    {"tasks": {task: {lang: {metric: value}}},      # as given, numbers as floats
     "task_scores": {task: avg_metric},              # stilts_ds.metrics.aggregate.task_score
     "xtreme_average": mean of task_scores,          # stilts_ds.metrics.aggregate.xtreme_score
     ...extra fields}

Averaging is ``stilts_ds.metrics.aggregate``'s rule (the official XTREME one): a task's score
is the language mean of (EM+F1)/2 for QA, else F1 (tagging, BUCC), else accuracy
(classification, Tatoeba), else mAP@20; the XTREME average is the mean over tasks. Scores are
on whatever scale the metrics produced (the project's metrics report 0-100).

The Markdown table has one row per task, a ``metric`` column naming what the cells show,
one column per language (``en`` first, then alphabetical), and ``avg`` (the language
average of the shown metric; for QA "EM / F1", whose mean is the task's score). Missing
cells are "–". A last line gives the XTREME average.

Error bars: given every (task, language)'s per-example statistics (phase 3 writes them to
``phase3/<task>/examples/<lang>.json``; ``example_stats_of`` reads a phase-3 directory's),
``write_results(..., example_stats=...)`` adds::

    "uncertainty": {"method": "percentile bootstrap over test examples", "resamples": 1000,
                    "seed": 0, "level": 0.95,
                    "tasks": {task: {lang: {metric: {"low": x, "high": y}}}},
                    "task_scores": {task: {"low": x, "high": y}},
                    "xtreme_average": {"low": x, "high": y},      # where the average exists
                    "xtreme_r_average": {"low": x, "high": y}}    # likewise

(``stilts_ds.metrics.uncertainty``: each (task, language)'s examples resampled on their own,
every score recomputed from the resampled sums by the same rules as above; counts such as
SQuAD v2's totals get no interval). The Markdown then shows "score [low, high]" for the task
scores and the averages. Without per-example files (runs from before they existed) there is
no "uncertainty" key and nothing else changes. An arm's combination over its seeds
(``studies.seeds``) passes ``seed_example_stats=[seed 1's, seed 2's, ...]`` with the seeds'
mean scores instead: the same block, each interval that of the seeds' mean with one draw of
examples applied to every seed (``pooled_uncertainty``; its method says "pooled over N seeds").

Both files are written atomically (temporary file in the same directory, fsync,
``os.replace``): a crash leaves the previous file or none, never half of one.
``load_results`` raises ``stilts_ds.errors.DataFileError`` (a ``StiltsError``) naming the
file when it is missing, not JSON, or not shaped like a results file; ``write_results``
raises ``ResultsError`` (a ``StiltsError`` and a ``ValueError``) for unusable scores.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from pathlib import Path
from typing import Mapping, Sequence

from stilts_ds.atomic import write_atomic
from stilts_ds.errors import DataFileError, StiltsError
from stilts_ds.metrics import uncertainty as bootstrap
from stilts_ds.metrics.aggregate import (
    XTREME_R_LANGUAGES,
    task_score,
    xtreme_r_score,
    xtreme_score,
)
from stilts_ds.metrics.example_stats import ExampleStats, kind_of, score_mismatch

RESERVED_KEYS = ("tasks", "task_scores", "xtreme_average")
COMPUTED_KEYS = RESERVED_KEYS + ("xtreme_r_average", "xtreme_r")
EXAMPLES_DIR = "examples"  # beside a phase-3 node's scores.json: <lang>.json per language
MISSING = "–"  # en dash, for a language a task does not report

# The headline rule of stilts_ds.metrics.aggregate.task_score, spelled out here because the
# table must know *which* metric to show, not only the average: exact_match + f1 (QA), else
# the first single metric present. A test checks the avg column agrees with task_score.
_QA_METRICS = ("exact_match", "f1")
_SINGLE_METRICS = ("f1", "accuracy", "map@20")
_LABELS = {"exact_match": "EM", "f1": "F1", "accuracy": "accuracy", "map@20": "mAP@20"}


class ResultsError(StiltsError, ValueError):
    """Scores that cannot be written as a results file; the message names task/lang/metric."""


# -- writing ---------------------------------------------------------------------------


def _clean(results: Mapping[str, Mapping[str, Mapping[str, float]]]) -> dict[str, dict[str, dict[str, float]]]:
    """Plain nested dicts of finite floats (tensors/numpy scalars converted), else ResultsError."""
    if not isinstance(results, Mapping) or len(results) == 0:
        raise ResultsError("results must be a non-empty mapping {task: {lang: {metric: value}}}")
    clean: dict[str, dict[str, dict[str, float]]] = {}
    for task, per_lang in results.items():
        if not isinstance(per_lang, Mapping) or len(per_lang) == 0:
            raise ResultsError(f"results[{task!r}] must be a non-empty mapping {{lang: {{metric: value}}}}")
        clean[task] = {}
        for lang, scores in per_lang.items():
            if not isinstance(scores, Mapping) or len(scores) == 0:
                raise ResultsError(f"results[{task!r}][{lang!r}] must be a non-empty mapping {{metric: value}}")
            clean[task][lang] = {}
            for metric, value in scores.items():
                # bool is an Integral; a True score is a bug upstream, not 1.0.
                if isinstance(value, bool) or not (isinstance(value, numbers.Real) or hasattr(value, "__float__")):
                    raise ResultsError(f"results[{task!r}][{lang!r}][{metric!r}] is not a number: {value!r}")
                number = float(value)
                if not math.isfinite(number):
                    # json would write NaN/Infinity, which is not JSON and poisons every average.
                    raise ResultsError(f"results[{task!r}][{lang!r}][{metric!r}] is not finite: {number}")
                clean[task][lang][metric] = number
    return clean


def write_results(
    path_json: str | os.PathLike,
    results: Mapping[str, Mapping[str, Mapping[str, float]]],
    extra: dict | None = None,
    *,
    example_stats: Mapping[str, Mapping[str, ExampleStats]] | None = None,
    seed_example_stats: Sequence[Mapping[str, Mapping[str, ExampleStats]]] | None = None,
    resamples: int = bootstrap.RESAMPLES,
    seed: int = bootstrap.SEED,
    level: float = bootstrap.LEVEL,
) -> dict:
    """Compute task scores and the XTREME average, write them atomically, return the dict.
    With ``example_stats`` ({task: {lang: ExampleStats}} for every scored language) it
    carries bootstrap intervals too (``"uncertainty"``); with ``seed_example_stats`` (one
    such mapping per seed, ``results`` being the seeds' mean scores) the intervals of the
    seeds' mean, pooled over the seeds (``pooled_uncertainty``)."""
    if example_stats is not None and seed_example_stats is not None:
        raise ResultsError("give example_stats (one run) or seed_example_stats (several seeds), not both")
    tasks = _clean(results)
    for task, per_lang in tasks.items():
        try:
            task_score(per_lang)
        except ValueError as err:  # name the task: aggregate's message only names metrics
            raise ResultsError(f"task {task!r}: {err}") from None
    out: dict = {"tasks": tasks, "task_scores": {t: task_score(p)["avg_metric"] for t, p in tasks.items()},
                 **benchmark_averages(tasks)}
    if example_stats is not None:
        out["uncertainty"] = uncertainty(out, example_stats, resamples=resamples, seed=seed, level=level)
    elif seed_example_stats is not None:
        out["uncertainty"] = pooled_uncertainty(out, seed_example_stats, resamples=resamples, seed=seed, level=level)
    for key, value in (extra or {}).items():
        if key in COMPUTED_KEYS or key in out:  # "uncertainty" too, when computed here
            raise ResultsError(f"extra field {key!r} would overwrite a computed field ({', '.join(COMPUTED_KEYS)})")
        out[key] = value
    try:
        # Serialise before opening any file, so a bad extra value leaves nothing behind.
        text = json.dumps(out, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    except (TypeError, ValueError) as err:
        raise ResultsError(f"extra fields must be JSON-serialisable with finite numbers: {err}") from None
    write_atomic(Path(path_json), text)
    return out


def benchmark_averages(tasks: Mapping[str, Mapping[str, Mapping[str, float]]]) -> dict:
    """``xtreme_average`` over the XTREME tasks present (each over XTREME's own languages: the
    XTREME-R additions to a shared task are left out), None without any; with any XTREME-R
    task, ``xtreme_r`` (its task, group and missing-language report) and ``xtreme_r_average``
    (over XTREME-R's languages; None until all ten of its tasks are scored, as the official
    script does)."""
    from stilts_ds.tasks.xtreme import XTREME_R_EXTRA, XTREME_TASKS

    xtreme = {}
    for spec in XTREME_TASKS:
        per_lang = {l: m for l, m in tasks.get(spec.name, {}).items() if l not in XTREME_R_EXTRA.get(spec.name, ())}
        if per_lang:
            xtreme[spec.name] = per_lang
    out: dict = {"xtreme_average": xtreme_score(xtreme)["xtreme_average"] if xtreme else None}
    xtreme_r = {t: {l: m for l, m in per_lang.items() if l in XTREME_R_LANGUAGES[t]}
                for t, per_lang in tasks.items() if t in XTREME_R_LANGUAGES}
    xtreme_r = {t: p for t, p in xtreme_r.items() if p}
    if any(t not in {s.name for s in XTREME_TASKS} for t in xtreme_r):  # an XTREME-R-only task is present
        summary = xtreme_r_score(xtreme_r)
        out["xtreme_r_average"] = summary["xtreme_r_average"]
        out["xtreme_r"] = {k: v for k, v in summary.items() if k != "xtreme_r_average"}
    return out


# -- error bars ------------------------------------------------------------------------


def _bounds(values, level: float) -> dict | None:
    low, high = bootstrap.percentile_interval(values, level)
    return None if math.isnan(low) else {"low": low, "high": high}


def _missing_stats(tasks: Mapping, example_stats: Mapping, what: str = "") -> None:
    missing = [f"{t}/{lang}" for t, per_lang in tasks.items() for lang in per_lang
               if lang not in example_stats.get(t, {})]
    if missing:
        raise ResultsError(f"no per-example statistics{what} for {', '.join(missing[:5])}"
                           f"{f' and {len(missing) - 5} more' if len(missing) > 5 else ''}: every scored "
                           "language needs them for the intervals")


def uncertainty(computed: Mapping, example_stats: Mapping[str, Mapping[str, ExampleStats]], *,
                resamples: int = bootstrap.RESAMPLES, seed: int = bootstrap.SEED,
                level: float = bootstrap.LEVEL) -> dict:
    """results.json's ``"uncertainty"`` for ``computed`` (the tasks, task scores and averages
    ``write_results`` computed): percentile bootstrap intervals over test examples, each
    (task, language) resampled on its own stream, the averages recomputed from the resampled
    languages by the very functions that computed them."""
    tasks = computed["tasks"]
    _missing_stats(tasks, example_stats)
    reps = bootstrap.replicates_of({t: {lang: example_stats[t][lang] for lang in per_lang}
                                    for t, per_lang in tasks.items()}, resamples=resamples, seed=seed)
    metrics = {t: {lang: example_stats[t][lang].metric for lang in per_lang} for t, per_lang in tasks.items()}
    return uncertainty_block(computed, reps, metrics, method=bootstrap.METHOD, resamples=resamples, seed=seed,
                             level=level)


def pooled_method(runs: int) -> str:
    """The method text of an interval pooled over ``runs`` seeds."""
    return (f"{bootstrap.METHOD}, pooled over {runs} seed{'s' if runs != 1 else ''} (one draw of examples "
            "for every seed; the interval of the seeds' mean)")


def pooled_uncertainty(computed: Mapping, runs: Sequence[Mapping[str, Mapping[str, ExampleStats]]], *,
                       resamples: int = bootstrap.RESAMPLES, seed: int = bootstrap.SEED,
                       level: float = bootstrap.LEVEL) -> dict:
    """``uncertainty`` of the mean over seeds: ``computed`` holds the seeds' mean scores and
    ``runs`` each seed's per-example statistics (the same test examples);
    ``metrics.uncertainty.pooled_replicates`` resamples the examples once per resample for
    every seed and averages the seeds' resampled scores. Same shape as ``uncertainty``'s,
    its ``method`` saying how many seeds it pools."""
    tasks = computed["tasks"]
    runs = list(runs)
    if not runs:
        raise ResultsError("no seed's per-example statistics to pool")
    for i, run in enumerate(runs, start=1):
        _missing_stats(tasks, run, f" in run {i}")
    picked = [{t: {lang: run[t][lang] for lang in per_lang} for t, per_lang in tasks.items()} for run in runs]
    try:
        reps = bootstrap.pooled_replicates(picked, resamples=resamples, seed=seed)
    except ValueError as err:
        raise ResultsError(f"cannot pool the seeds' intervals: {err}") from None
    metrics = {t: {lang: runs[0][t][lang].metric for lang in per_lang} for t, per_lang in tasks.items()}
    return uncertainty_block(computed, reps, metrics, method=pooled_method(len(runs)), resamples=resamples,
                             seed=seed, level=level)


def uncertainty_block(computed: Mapping, reps: Mapping, metrics: Mapping[str, Mapping[str, str]], *, method: str,
                      resamples: int, seed: int, level: float) -> dict:
    """The ``"uncertainty"`` dict from resampled scores ``reps`` ({task: {lang: {metric key:
    [resamples]}}}, ``metrics.uncertainty.replicates_of`` or ``pooled_replicates``) of the
    tasks, task scores and averages in ``computed``; ``metrics``: each (task, language)'s
    metric name (its count keys get no interval)."""
    tasks = computed["tasks"]
    out: dict = {"method": method, "resamples": resamples, "seed": seed, "level": level, "tasks": {}}
    for task, per_lang in tasks.items():
        out["tasks"][task] = {}
        for lang, scores in per_lang.items():
            counts = kind_of(metrics[task][lang]).counts
            bounds = {m: _bounds(reps[task][lang][m], level) for m in scores if m in reps[task][lang] and m not in counts}
            out["tasks"][task][lang] = {m: b for m, b in bounds.items() if b is not None}
    out["task_scores"] = {task: _bounds(task_score(reps[task])["avg_metric"], level) for task in tasks}
    averages = benchmark_averages(reps)
    for key in ("xtreme_average", "xtreme_r_average"):
        if computed.get(key) is not None and averages.get(key) is not None:
            out[key] = _bounds(averages[key], level)
    return out


def read_example_file(path: str | os.PathLike) -> ExampleStats:
    """One ``examples/<lang>.json``; DataFileError naming the file when it is not one."""
    path = Path(path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
        return ExampleStats.from_json(obj)
    except FileNotFoundError:
        raise DataFileError(path, "per-example statistics not found") from None
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as err:
        raise DataFileError(path, f"not a per-example statistics file: {err}") from None


def example_files(phase3_dir: str | os.PathLike, task: str, several_tasks: bool = False) -> dict[str, Path]:
    """``{lang: path}`` of the per-example files a phase-3 directory holds for ``task``
    (``examples/<lang>.json``; ``examples/<task>/<lang>.json`` when its job scored several)."""
    where = Path(phase3_dir) / EXAMPLES_DIR
    if several_tasks:
        where = where / task
    return {p.stem: p for p in sorted(where.glob("*.json"))} if where.is_dir() else {}


def example_stats_of(phase3_dir: str | os.PathLike, scores: Mapping[str, Mapping[str, Mapping[str, float]]]
                     ) -> tuple[dict[str, dict[str, ExampleStats]] | None, str | None]:
    """The per-example statistics of every (task, language) of ``scores`` (a phase-3
    node's scores.json, in ``phase3_dir``): ``(stats, None)``, or ``(None, why not)`` when a
    file is missing (a run from before they were written), unreadable, or does not give
    back the scores beside it (left over from another evaluation)."""
    stats: dict[str, dict[str, ExampleStats]] = {}
    for task, per_lang in scores.items():
        files = example_files(phase3_dir, task, several_tasks=len(scores) > 1)
        for lang, scored in per_lang.items():
            if lang not in files:
                return None, f"{Path(phase3_dir) / EXAMPLES_DIR} has no per-example statistics for {task} {lang}"
            try:
                one = read_example_file(files[lang])
            except DataFileError as err:
                return None, str(err)
            off = score_mismatch(one, scored)
            if off:
                return None, f"{files[lang]} does not give back the scores of {task} {lang} ({', '.join(off)})"
            stats.setdefault(task, {})[lang] = one
    return stats, None


# -- reading ---------------------------------------------------------------------------


def load_results(path: str | os.PathLike) -> dict:
    """The dict ``write_results`` wrote; ``DataFileError`` naming ``path`` for anything else."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataFileError(path, "results file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DataFileError(path, f"cannot read results file: {err}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataFileError(path, f"not a results file: invalid JSON ({err.msg}, column {err.colno})", line=err.lineno) from None
    problem = _shape_problem(data)
    if problem:
        raise DataFileError(
            path, f"not a stilts-ds results file: {problem} (expected keys {', '.join(RESERVED_KEYS)}, "
            "as written by stilts_ds.studies.results.write_results)"
        )
    return data


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _shape_problem(data) -> str | None:
    if not isinstance(data, dict):
        return f"top level is a JSON {type(data).__name__}, not an object"
    missing = [k for k in RESERVED_KEYS if k not in data]
    if missing:
        return f"missing {', '.join(missing)}"
    tasks, scores = data["tasks"], data["task_scores"]
    if not isinstance(tasks, dict) or not tasks:
        return "'tasks' is not a non-empty object"
    for task, per_lang in tasks.items():
        if not isinstance(per_lang, dict) or not per_lang:
            return f"tasks.{task} is not a non-empty object of languages"
        for lang, metrics in per_lang.items():
            if not isinstance(metrics, dict) or not metrics or not all(_is_number(v) for v in metrics.values()):
                return f"tasks.{task}.{lang} is not an object of numbers"
    if not isinstance(scores, dict) or set(scores) != set(tasks) or not all(_is_number(v) for v in scores.values()):
        return "'task_scores' does not hold one number per task"
    if not _is_number(data["xtreme_average"]) and data["xtreme_average"] is not None:
        return "'xtreme_average' is not a number (or null: no XTREME task scored)"
    return None


# -- Markdown --------------------------------------------------------------------------


def _shown_metrics(task: str, per_lang: Mapping[str, Mapping[str, float]]) -> tuple[str, ...]:
    present = {m for scores in per_lang.values() for m in scores}
    if all(m in present for m in _QA_METRICS):
        return _QA_METRICS
    for metric in _SINGLE_METRICS:
        if metric in present:
            return (metric,)
    raise ResultsError(f"task {task!r}: no headline metric among {sorted(present)}")


def _languages(tasks: Mapping[str, Mapping]) -> list[str]:
    langs = {lang for per_lang in tasks.values() for lang in per_lang}
    return sorted(langs, key=lambda lang: (lang != "en", lang))


def results_markdown(results_dict: Mapping, decimals: int = 1) -> str:
    """A Markdown table of a results dict (as ``write_results`` returns / ``load_results`` reads)."""
    tasks = results_dict["tasks"]
    langs = _languages(tasks)

    def fmt(value) -> str:
        return MISSING if value is None else f"{value:.{decimals}f}"

    bars = results_dict.get("uncertainty")

    def with_bars(value, bounds) -> str:
        # "score [low, high]": the bootstrap interval beside the score it belongs to.
        if not bars or not bounds or value is None:
            return fmt(value)
        return f"{fmt(value)} [{fmt(bounds['low'])}, {fmt(bounds['high'])}]"

    header = ["task", "metric", *langs, "avg"]
    if bars:
        header.append(f"score [{bars['level']:.0%} CI]")
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(["---", "---"] + ["---:"] * (len(header) - 2)) + "|"]
    for task, per_lang in tasks.items():
        shown = _shown_metrics(task, per_lang)
        cells = []
        for lang in langs:
            scores = per_lang.get(lang)
            if not scores or not any(m in scores for m in shown):
                cells.append(MISSING)
            else:
                cells.append(" / ".join(fmt(scores.get(m)) for m in shown))
        averages = task_score(per_lang)
        avg = " / ".join(fmt(averages.get(f"avg_{m}")) for m in shown)
        label = " / ".join(_LABELS.get(m, m) for m in shown)
        row = [task, label, *cells, avg]
        if bars:
            row.append(with_bars(results_dict["task_scores"].get(task), bars["task_scores"].get(task)))
        lines.append("| " + " | ".join(row) + " |")
    has_qa = any(_shown_metrics(task, per_lang) == _QA_METRICS for task, per_lang in tasks.items())
    from stilts_ds.tasks.xtreme import XTREME_TASKS

    n = sum(1 for spec in XTREME_TASKS if spec.name in tasks)
    lines.append("")
    lines.append(
        f"**XTREME average: {with_bars(results_dict['xtreme_average'], (bars or {}).get('xtreme_average'))}** "
        f"(mean over {n} XTREME task{'s' if n != 1 else ''}{'; QA tasks count (EM + F1) / 2' if has_qa else ''})"
    )
    if "xtreme_r" in results_dict:
        report = results_dict["xtreme_r"]
        missing = report.get("missing_tasks") or []
        why = f" (missing: {', '.join(missing)})" if missing else " (mean over its ten tasks)"
        lines.append("")
        lines.append(f"**XTREME-R average: "
                     f"{with_bars(results_dict.get('xtreme_r_average'), (bars or {}).get('xtreme_r_average'))}**{why}")
    if bars:
        lines.append("")
        lines.append(f"[low, high]: {bars['level']:.0%} {bars['method']} ({bars['resamples']:,} resamples, "
                     f"seed {bars['seed']})")
    return "\n".join(lines) + "\n"


def write_markdown(path: str | os.PathLike, results_dict: Mapping, decimals: int = 1) -> str:
    """Write ``results_markdown(results_dict)`` to ``path`` atomically; returns the text."""
    text = results_markdown(results_dict, decimals=decimals)
    write_atomic(Path(path), text)
    return text
