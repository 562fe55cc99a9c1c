"""The study report: the answers to the study's two questions, computed from its numbers, with
the tables and plots behind them, as Markdown and as one self-contained HTML page.

    stilts-ds report --study runs/quickstart --output runs/quickstart/report
    stilts-ds report --results english=runs/quickstart/arms/english/results.json \
        --results multilingual=runs/quickstart/arms/multilingual/results.json \
        --bench runs/quickstart/bench/english/xnli/bench.jsonl --output runs/report

    from stilts_ds.studies.report import build_report
    paths = build_report({"english": Path(".../results.json"), ...}, [Path(".../bench.jsonl")], out_dir,
                         arm_info=rows_of_arms_json, comparisons=paired_comparisons, schedule_dir=study_dir)

RQ1: what English intermediate-task training does to inference efficiency (samples/s,
ms/response) on XTREME-R's zero-shot tasks. RQ2: accuracy against cost when phase 1 is
English-only or multilingual (+MLM, +translated data), on XTREME. Sections, in ``report.md``
and ``index.html`` alike:

1. **Answers**: one sentence per question (per arm for RQ2), each computed from the inputs;
   an input that is missing is named in the sentence instead of a number. With bench rows that
   carry the task's score through each engine (the study's ``bench/<arm>/<task>`` nodes), one
   more: per task, which (arm, engine, precision) are on the accuracy / samples/s frontier, the
   largest change fp16/bf16 made against fp32 on the same engine, and the largest difference
   from the arm's phase-3 score.
2. **RQ1**: samples/s and ms/response per arm (or the one served checkpoint, labelled as
   such: its numbers are no arm's), engine and precision, with the range of repeated timings
   (``serving.png``, ``serving.csv``); with several languages timed, this table and plot hold
   each task's reference language (English, else its first), and a per-(task, language) table
   gives the mean tokens/example and, per engine and precision, samples/s and ms/response at
   the serving batch size of one arm's models (the arm without intermediate training where
   served, else the English-only one), with one sentence on how far the other arms' timings
   are from those. The answer compares arms on the reference languages and gives each arm's
   spread over XNLI's languages (else the first task's). Tasks and languages the bench left
   out (``bench_notes``: retrieval tasks have no head to serve; a task without a listed
   language) are named.
3. **RQ2**: XTREME average (error bars: the results' interval, else the seeds' std, else none,
   said so) against training cost (phase-1 + phase-2 worker-seconds, ``training.png``) and
   against serving cost per engine/precision on XNLI's reference language (``pareto.png``),
   the Pareto frontier drawn; then accuracy through each engine against its serving cost
   (``engines.png``, one panel per task): one point per (arm, engine, precision), its score
   the task's headline metric with every forward pass through that engine at that precision,
   averaged over the languages every point was scored in, against samples/s at the serving
   batch over the same languages, the frontier drawn, with a table of the points (phase 3's
   score on the same languages and the difference from fp32 beside each). Error bars: each
   bench row's 95% bootstrap interval over the test examples (``accuracy_low``/``_high``,
   phase 3's method), the mean of the languages' bounds (an approximation of the interval of
   the mean, on the wide side); rows without them (older bench files) get none, and the page
   says so.
4. **Per-task scores** per arm with intervals (``tasks.png``), then the arms side by side
   (``arms.py``: ``arms.png``).
5. **Cluster use**: utilization.json and timeline.png of the study's last run.

Files (each written atomically): ``report.md`` (PNGs by relative path), ``index.html`` (the
PNGs inlined as data URIs, inline CSS, a Content-Security-Policy that allows nothing from
outside), ``tradeoff.md`` (the report's text without the figures: what ``stilts-ds demo``
prints), ``tradeoff.csv`` (per arm, and per engine/precision where that arm was served),
``serving.csv``, and the PNGs. ``comparisons`` are paired differences between arms computed
elsewhere (``{"a", "b", "method", "xtreme_average": {"a", "b", "difference", "low", "high",
"p_value"}, ...}``); without them the answers say no significance test was given. An arm
whose results.json combines seeds (``studies.seeds``) carries intervals of the seeds' mean
(their method says "pooled over N seeds"), shown like any other interval.
"""
from __future__ import annotations

import base64
import html
import json
import re
from collections import Counter
from pathlib import Path
from typing import Mapping, Sequence

from stilts_ds.atomic import write_atomic
from stilts_ds.figures import figure, frontier_line, place_labels, png, value_limits
from stilts_ds.studies.tradeoff import (ArmScores, Bench, Estimate, Serving, arm_scores, pareto_front, read_bench,
                                        serving_front, serving_points, tradeoff_rows, training_front)
from stilts_ds.tables import MISSING, fmt_number, markdown_table, write_csv

TITLE = "Intermediate-task training: accuracy, training cost and serving cost"
DPI = 110
MIN_SPAN = 4.0  # points of a 0-100 score: an accuracy axis is never narrower (±2 around the data)
LEVEL = 0.95    # significance level of a comparison that names none
# Every file this report may write: one a run did not write is removed, so a stale plot of an
# earlier run never sits beside the new report.
PNGS = ("serving.png", "training.png", "pareto.png", "engines.png", "tasks.png", "arms.png", "timeline.png")
OWN_FILES = ("report.md", "index.html", "tradeoff.md", "tradeoff.csv", "serving.csv", *PNGS)


# ----------------------------------------------------------------------------- formatting
def fmt_est(e: Estimate, spec: str = ".1f") -> str:
    """23.0 [21.2, 24.8] (an interval), 23.0 ± 0.4 (seeds' std), 23.0 (one run), – (none)."""
    if e.value is None:
        return MISSING
    if e.has_interval:
        return f"{e.value:{spec}} [{e.low:{spec}}, {e.high:{spec}}]"
    if e.sd is not None:
        return f"{e.value:{spec}} ± {e.sd:{spec}}"
    return f"{e.value:{spec}}"


def _range(low, high, spec: str, n: int) -> str:
    return f"{low:{spec}} – {high:{spec}}" if n > 1 else "one timing"


def _p(p) -> str:
    if p < 0.001:
        return "p < 0.001"
    return f"p = {p:.3f}" if p < 0.01 else f"p = {p:.2f}"


def _level(level) -> str:
    return f"{level:.0%}"


def _data(a: ArmScores) -> str:
    return a.data or "phase-1 data not recorded"


# ----------------------------------------------------------------------------- the answers
def reference_arm(arms: Sequence[ArmScores], prefer: Sequence[str] = ("English-only",)) -> ArmScores:
    """The arm the others are compared with: the first whose phase-1 data is in ``prefer``
    (in that order), else the first arm."""
    for data in prefer:
        for a in arms:
            if a.data == data:
                return a
    return arms[0]


def _comparison(comparisons, metric: str, arm: str, ref: str, task: str | None = None):
    """(difference arm - ref, low, high, p_value, method, level) of ``metric`` (or of a task's
    score, with ``task``) from a paired comparison of the two arms, whichever way round it was
    computed; None without one."""
    for c in comparisons or ():
        if {c.get("a"), c.get("b")} != {arm, ref}:
            continue
        m = c.get(metric) if task is None else (c.get("tasks") or {}).get(task)
        if not isinstance(m, Mapping):
            continue
        d, low, high = m.get("difference"), m.get("low"), m.get("high")
        if not all(isinstance(v, (int, float)) for v in (d, low, high)):
            continue
        # Which way was the difference taken? The values of a and b say, when given; else it is
        # a - b, as stilts_ds.metrics.uncertainty.paired_bootstrap computes it.
        va, vb = m.get("a"), m.get("b")
        a_minus_b = (abs(d - (va - vb)) <= abs(d - (vb - va))
                     if isinstance(va, (int, float)) and isinstance(vb, (int, float)) else True)
        arm_minus_ref = a_minus_b == (c["a"] == arm)
        if not arm_minus_ref:
            d, low, high = -d, -high, -low
        return d, low, high, m.get("p_value"), c.get("method"), c.get("level")
    return None


def _accuracy_phrase(a: ArmScores, ref: ArmScores, comparisons) -> str:
    if a.xtreme.value is None or ref.xtreme.value is None:
        missing = [x.name for x in (a, ref) if x.xtreme.value is None]
        return f"XTREME average missing for {', '.join(missing)} (no XTREME task scored in its results.json)"
    d = a.xtreme.value - ref.xtreme.value
    found = _comparison(comparisons, "xtreme_average", a.name, ref.name)
    if found:
        d, low, high, p, method, level = found
        level = level or a.uncertainty.level or ref.uncertainty.level or LEVEL
        excludes_zero = low > 0 or high < 0
        verdict = "significant" if excludes_zero else "not significant"
        bits = [f"{_level(level)} interval [{low:+.1f}, {high:+.1f}]", f"{verdict} at {_level(level)}"]
        if isinstance(p, (int, float)):
            bits.append(_p(p))
        if method:
            bits.append(str(method))
        return f"{d:+.1f} ± {(high - low) / 2:.1f} XTREME avg vs {ref.name} ({', '.join(bits)})"
    values = f"{ref.name} {fmt_est(ref.xtreme)}, {a.name} {fmt_est(a.xtreme)}"
    kinds = {x.uncertainty.kind for x in (a, ref)}
    if kinds == {"none"}:
        return (f"{d:+.1f} XTREME avg vs {ref.name} ({ref.xtreme.value:.1f} → {a.xtreme.value:.1f}; one run each: "
                "no interval, no seeds and no paired comparison, so whether this is more than noise is not known)")
    if kinds == {"interval"}:
        how = a.uncertainty.describe()
    elif kinds == {"seeds"}:
        how = a.uncertainty.describe()
    else:
        how = "; ".join(f"{x.name}: {x.uncertainty.describe()}" for x in (ref, a))
    return (f"{d:+.1f} XTREME avg vs {ref.name} ({values}; {how}; no paired comparison was given, so no "
            "significance test)")


def _cost_phrase(a: ArmScores, ref: ArmScores) -> str:
    ca, cr = a.cost, ref.cost
    if ca.unit != cr.unit:
        return f"a training cost not comparable with {ref.name}'s ({ca.unit} vs {cr.unit})"
    missing = [x.name for x in (a, ref) if x.cost.phase1 is None]
    if missing:
        return (f"phase-1 cost unknown for {', '.join(missing)} (no DONE.json under its phase1/ and no "
                "phase1_wall_s in arms.json)")
    if not cr.phase1:
        out = f"{_fmt_cost(ca.phase1)} phase-1 {ca.unit} ({ref.name} has no phase 1)"
    else:
        out = (f"{ca.phase1 / cr.phase1:.2f}x phase-1 cost ({_fmt_cost(ca.phase1)} vs {_fmt_cost(cr.phase1)} "
               f"{ca.unit})")
    if ca.total is not None and cr.total:
        out += (f", {ca.total / cr.total:.2f}x training cost in all (phase 1 + 2: {_fmt_cost(ca.total)} vs "
                f"{_fmt_cost(cr.total)})")
    else:
        out += ", phase-2 cost unknown"
    return out


def _gap(mine: Sequence[Serving], ref: Sequence[Serving]):
    """Largest relative throughput and latency gap over the configs both were served with, and
    the largest relative spread of their repeated timings; None without a common config."""
    by = {(s.workload, s.engine, s.dtype): s for s in ref}
    pairs = [(s, by[(s.workload, s.engine, s.dtype)]) for s in mine if (s.workload, s.engine, s.dtype) in by]
    if not pairs:
        return None
    thr = max(pairs, key=lambda p: abs(p[0].throughput_samples_per_s / p[1].throughput_samples_per_s - 1))
    thr_gap = abs(thr[0].throughput_samples_per_s / thr[1].throughput_samples_per_s - 1)
    lats = [abs(x.latency_ms_p50_batch1 / y.latency_ms_p50_batch1 - 1) for x, y in pairs
            if x.latency_ms_p50_batch1 and y.latency_ms_p50_batch1]
    spread = max((s.throughput_high - s.throughput_low) / s.throughput_samples_per_s
                 for p in pairs for s in p if s.timings > 1) if any(s.timings > 1 for p in pairs for s in p) else None
    return thr_gap, thr, (max(lats) if lats else None), spread, len(pairs)


def _serving_phrase(a: ArmScores, ref: ArmScores, bench: Bench) -> str:
    mine, theirs = bench.of_arm(a.name), bench.of_arm(ref.name)
    if mine and theirs:
        g = _gap(mine, theirs)
        if g is None:
            return (f"serving cost not comparable ({a.name} and {ref.name} were served with no engine/precision "
                    "in common)")
        thr_gap, (x, y), lat_gap, spread, n = g
        out = (f"serving cost equal within {thr_gap:.0%} in samples/s over {n} engine/precision "
               f"config{'s' if n != 1 else ''} (largest gap {x.config}: {x.throughput_samples_per_s:,.1f} vs "
               f"{y.throughput_samples_per_s:,.1f})")
        if lat_gap is not None:
            out += f" and within {lat_gap:.0%} in ms/response"
        # RQ1 asks whether intermediate training changes serving cost; the arms share an
        # architecture, so a gap no larger than the repeats' own spread is noise, not an answer.
        if spread is not None:
            out += (f"; repeated timings spread up to {spread:.0%}, so the gap is "
                    + ("within measurement noise" if thr_gap <= spread else "larger than measurement noise"))
        else:
            out += "; each configuration was timed once, so measurement noise is unknown (set bench.repeats)"
        return out
    if bench.servings:
        who = [x.name for x in (a, ref) if not bench.of_arm(x.name)]
        who = "either arm" if len(who) == 2 else who[0]
        served = (f"one checkpoint, {bench.checkpoint}, was served, and its throughput is no arm's"
                  if bench.unattributed else "other arms were served")
        return f"serving cost not measured for {who} ({served})"
    return "serving cost not measured (no bench rows)"


def _best(servings: Sequence[Serving]) -> str:
    s = max(servings, key=lambda s: s.throughput_samples_per_s)
    out = f"{s.throughput_samples_per_s:,.1f} samples/s ({s.config}, batch {s.best_batch_size}"
    if s.timings > 1:
        out += f", {s.throughput_low:,.1f} – {s.throughput_high:,.1f} over {s.timings} timings"
    out += ")"
    lat = [x for x in servings if x.latency_ms_p50_batch1 is not None]
    if lat:
        fast = min(lat, key=lambda x: x.latency_ms_p50_batch1)
        out += f", {fast.latency_ms_p50_batch1:.2f} ms/response ({fast.config}, p50 at batch 1"
        if fast.latency_timings > 1:
            out += f", {fast.latency_low:.2f} – {fast.latency_high:.2f}"
        out += ")"
    return out


def _xtreme_r(arms: Sequence[ArmScores]) -> str:
    if all(a.xtreme_r.value is None for a in arms):
        return "XTREME-R average not computed for any arm (it needs all ten XTREME-R tasks scored)"
    return "XTREME-R average (zero-shot): " + ", ".join(f"{a.name} {fmt_est(a.xtreme_r)}" for a in arms)


def reference_workloads(bench: Bench) -> set[str]:
    """Per task the bench served, the workload (``<task>/<lang>``) the arms are compared on:
    English when it was timed (the language the arms were fine-tuned in), else the first."""
    by_task: dict[str, list[str]] = {}
    for w in sorted({s.workload for s in bench.servings if s.workload}):
        by_task.setdefault(w.split("/")[0], []).append(w)
    return {next((w for w in ws if w.endswith("/en")), ws[0]) for ws in by_task.values()}


def on_reference_language(bench: Bench) -> Bench:
    """``bench`` with only its reference workloads (``reference_workloads``): with several
    languages timed, the best configuration of one arm and the gap between two are otherwise
    taken across languages (a short-token language against a long one), not between arms."""
    refs = reference_workloads(bench)
    if len({s.workload for s in bench.servings}) <= len(refs):
        return bench
    return Bench(servings=[s for s in bench.servings if s.workload in refs or s.workload is None],
                 unavailable=bench.unavailable, checkpoint=bench.checkpoint, files=bench.files)


def on_primary_workload(bench: Bench) -> Bench:
    """``bench`` on one workload per arm: the reference workload (``reference_workloads``) of
    the primary task (``primary_task``: XNLI where timed), for the plots and tables that set
    one serving cost per arm against its XTREME average."""
    view = on_reference_language(bench)
    refs = sorted({s.workload for s in view.servings if s.workload})
    tasks = sorted({w.split("/")[0] for w in refs})
    if len(tasks) <= 1:
        return view
    task = "xnli" if "xnli" in tasks else tasks[0]
    return Bench(servings=[s for s in view.servings if s.workload is None or s.workload.split("/")[0] == task],
                 unavailable=bench.unavailable, checkpoint=bench.checkpoint, files=bench.files)


def rq1_answer(arms: Sequence[ArmScores], bench: Bench) -> str:
    """The RQ1 sentence: with several languages timed, the arms compared on the reference
    language (``reference_workloads``), then each arm's spread over the languages of the
    primary task (``primary_task``)."""
    view = on_reference_language(bench)
    if view is bench:
        return _rq1_core(arms, bench, _xtreme_r(arms))
    costs = language_costs(bench)
    task = primary_task(costs)
    several = len({c["task"] for c in costs}) > 1
    refs = sorted(reference_workloads(bench))
    note = (f"Arms compared on {', '.join(refs)}; per language{f' of {task}' if several else ''}, "
            f"{_language_spread(arms, [c for c in costs if c['task'] == task])}. ")
    return _rq1_core(arms, view, note + _xtreme_r(arms))


def _rq1_core(arms: Sequence[ArmScores], bench: Bench, tail: str) -> str:
    head = "**RQ1 (inference efficiency):** "
    if not bench.servings:
        if bench.unavailable:
            return (head + "not measured: no engine produced a timing (unavailable: " + "; ".join(
                f"{e} {d}: {why or 'no reason given'}" for e, d, why in bench.unavailable) + f"). {tail}.")
        return (head + "not measured: no bench rows were given (`bench*/bench.jsonl` of `stilts-ds bench`, or "
                f"`bench:` in the study config). {tail}.")
    served = [a for a in arms if bench.of_arm(a.name)]
    if len(served) >= 2:
        ref = reference_arm(served, ("none", "English-only"))
        parts = [f"{a.name}: {_best(bench.of_arm(a.name))}" for a in served]
        gaps = [f"{a.name} vs {ref.name}: {_serving_phrase(a, ref, bench)}" for a in served if a is not ref]
        note = ("" if ref.data == "none" else
                " No arm without intermediate training was served, so this compares intermediate-training arms "
                "with each other, not with no intermediate training.")
        missing = [a.name for a in arms if not bench.of_arm(a.name)]
        if missing:
            note += f" Not served: {', '.join(missing)}."
        return head + "served per arm: " + "; ".join(parts) + ". " + "; ".join(gaps) + "." + note + \
            f" {tail}."
    if not served and not bench.unattributed:
        names = sorted({s.arm for s in bench.servings})
        return (head + f"not answered: the bench rows are of {', '.join(names)}, none of which is an arm of this "
                f"report ({', '.join(a.name for a in arms)}). {tail}.")
    if served and not bench.unattributed:
        a = served[0]
        return (head + f"only {a.name} was served: {_best(bench.of_arm(a.name))}; no other arm was served, so there "
                f"is nothing to compare its serving cost with. {tail}.")
    rows = bench.unattributed or bench.servings
    workloads = sorted({s.workload for s in rows if s.workload})
    on = f" on {', '.join(workloads)}" if workloads else ""
    name = bench.checkpoint or "a checkpoint the bench rows do not name"
    return (head + f"one checkpoint was served ({name}){on}: {_best(rows)}. Throughput is NOT per arm: these are "
            "that one checkpoint's numbers, so this run does not show what intermediate training does to serving "
            f"cost (serve each arm's checkpoint for that). {tail}.")


def rq2_answers(arms: Sequence[ArmScores], bench: Bench, comparisons) -> list[str]:
    head = "**RQ2 (accuracy vs cost, XTREME):** "
    if not arms:
        return [head + "no arm has results."]
    ref = reference_arm(arms)
    if len(arms) == 1:
        return [head + f"only one arm ({ref.name}, {_data(ref)}): XTREME avg {fmt_est(ref.xtreme)}; no other arm "
                       "to compare it with."]
    return [head + f"**{a.name}** ({_data(a)}) against **{ref.name}** ({_data(ref)}): "
            f"{_accuracy_phrase(a, ref, comparisons)}, for {_cost_phrase(a, ref)}; {_serving_phrase(a, ref, bench)}."
            for a in arms if a is not ref]


def error_bars_note(arms: Sequence[ArmScores]) -> str:
    if not arms:
        return "No arms, so no scores."
    kinds = {a.uncertainty for a in arms}
    if len(kinds) == 1:
        (u,) = kinds
        return ("Error bars and intervals: " + u.describe() + "." if u.kind != "none" else
                "No error bars: every arm is one run (results.json has neither `uncertainty` nor `seeds`).")
    return "Error bars and intervals: " + "; ".join(f"{a.name}: {a.uncertainty.describe()}" for a in arms) + "."


# ----------------------------------------------------------------------------- plots
_MARKERS = {"English-only": "o", "none": "s"}


def _style(arms: Sequence[ArmScores]) -> dict[str, dict]:
    """One colour and marker per arm, the same in every plot: English-only circles,
    multilingual triangles (the comparison the study is about), no phase 1 squares."""
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {a.name: {"color": cmap(i % 10),
                     "marker": _MARKERS.get(a.data or "", "^" if (a.data or "").startswith("multilingual") else "D")}
            for i, a in enumerate(arms)}


def _legend_below(ax, extra_labels: Sequence[str] = ()):
    from matplotlib.lines import Line2D

    handles, labels = ax.get_legend_handles_labels()
    for text in extra_labels:  # labels that found no free spot on the plot
        handles.append(Line2D([], [], linestyle="none"))
        labels.append(text)
    if handles:
        ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize=7, frameon=False)


def training_figure(arms: Sequence[ArmScores], title: str = "Accuracy against training cost"):
    """XTREME average (error bars) against phase-1 + phase-2 cost per arm, frontier drawn;
    None when no arm has both."""
    unit = Counter(a.cost.unit for a in arms if a.cost.total is not None).most_common(1)
    known = [a for a in arms if a.xtreme.value is not None and a.cost.total is not None and a.cost.unit == unit[0][0]] \
        if unit else []
    if not known:
        return None
    style = _style(arms)
    fig = figure((7, 4.6), dpi=DPI)
    ax = fig.add_subplot(1, 1, 1)
    xs = [a.cost.total for a in known]
    ys = [a.xtreme.value for a in known]
    bars = []
    for a, x, y in zip(known, xs, ys):
        lo, hi = a.xtreme.yerr()
        bars.append(ax.errorbar([x], [y], yerr=[[lo], [hi]], fmt=style[a.name]["marker"], color=style[a.name]["color"],
                                capsize=4, markersize=7, label=f"{a.name} ({_data(a)})", zorder=3))
    lows, highs = zip(*(a.xtreme.bounds() for a in known))
    ax.set_ylim(*value_limits(ys, lows, highs, min_span=MIN_SPAN, bounds=(0, 100)))
    ax.set_xlim(0, max(xs) * 1.25)  # from zero: a cost ratio reads as the ratio of distances
    front = training_front(known)
    line = frontier_line(ax, xs, ys, [i for i, a in enumerate(known) if a.name in front], x_better="lower")
    ax.set_xlabel(f"training cost: phase 1 + phase 2 ({unit[0][0]})")
    ax.set_ylabel("XTREME average")
    ax.set_title(f"{title}\nerror bars: {_bars(known)}", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    _, unplaced = place_labels(ax, xs, ys, [a.name for a in known], avoid=[line, *bars],
                               colors=[style[a.name]["color"] for a in known])
    _legend_below(ax, [f"{known[i].name}: label not placed" for i in unplaced])
    return fig


def _bars(arms: Sequence[ArmScores]) -> str:
    kinds = {a.uncertainty.kind for a in arms}
    if kinds == {"none"}:
        return "none (one run per arm, no interval)"
    return "; ".join(sorted({a.uncertainty.describe() for a in arms}))


def pareto_figure(arms: Sequence[ArmScores], bench: Bench, title: str = "Accuracy against serving cost"):
    """Per arm's own serving rows: XTREME average against samples/s per engine/precision,
    frontier drawn. Without per-arm rows, the one served checkpoint's engines: samples/s
    against ms/response, titled as that checkpoint's and no arm's. None without timings."""
    points = serving_points(arms, bench)
    fig = figure((7, 4.8), dpi=DPI)
    ax = fig.add_subplot(1, 1, 1)
    workloads = len({s.workload for s in bench.servings}) > 1
    if points:
        style = _style(arms)
        xs = [s.throughput_samples_per_s for _, s in points]
        ys = [a.xtreme.value for a, _ in points]
        seen, bars = set(), []
        for (a, s), x, y in zip(points, xs, ys):
            lo, hi = a.xtreme.yerr()
            bars.append(ax.errorbar([x], [y], yerr=[[lo], [hi]], xerr=[[x - s.throughput_low], [s.throughput_high - x]],
                        fmt=style[a.name]["marker"], color=style[a.name]["color"], capsize=3, markersize=6,
                        label=None if a.name in seen else f"{a.name} ({_data(a)})", zorder=3))
            seen.add(a.name)
        lows, highs = zip(*(a.xtreme.bounds() for a, _ in points))
        ax.set_ylim(*value_limits(ys, lows, highs, min_span=MIN_SPAN, bounds=(0, 100)))
        ax.set_xlim(0, max(s.throughput_high for _, s in points) * 1.2)
        line = frontier_line(ax, xs, ys, sorted(serving_front(points)), x_better="higher")
        ax.set_ylabel("XTREME average")
        ax.set_title(f"{title}: each arm's own checkpoints\nerror bars: {_bars([a for a, _ in points])}; "
                     "samples/s range of repeated timings", fontsize=9)
        texts = [f"{s.config}" + (f" {s.workload}" if workloads else "") for _, s in points]
        colors = [style[a.name]["color"] for a, _ in points]  # the label says the engine, its colour the arm
    else:
        rows = [s for s in (bench.unattributed or bench.servings) if s.latency_ms_p50_batch1 is not None]
        if not rows:
            return None
        xs = [s.throughput_samples_per_s for s in rows]
        ys = [s.latency_ms_p50_batch1 for s in rows]
        bars = [ax.errorbar(xs, ys, xerr=[[x - s.throughput_low for x, s in zip(xs, rows)],
                                  [s.throughput_high - x for x, s in zip(xs, rows)]],
                    yerr=[[y - s.latency_low for y, s in zip(ys, rows)],
                          [s.latency_high - y for y, s in zip(ys, rows)]],
                    fmt="o", color="tab:blue", capsize=3, markersize=6,
                    label=f"checkpoint {bench.checkpoint or '(not named)'}", zorder=3)]
        ax.set_ylim(*value_limits([0, *ys], [], [s.latency_high for s in rows], min_span=0, bounds=(0, None)))
        ax.set_xlim(0, max(s.throughput_high for s in rows) * 1.2)
        front = pareto_front([(x, -y) for x, y in zip(xs, ys)])  # faster and quicker to answer
        line = frontier_line(ax, xs, ys, front, x_better="higher")
        ax.set_ylabel("ms/response (p50, batch 1)")
        ax.set_title(f"One checkpoint served ({bench.checkpoint or 'not named'}): NOT per arm\n"
                     "serving cost per engine/precision; bars: range of repeated timings", fontsize=9)
        texts = [f"{s.config}" + (f" {s.workload}" if workloads else "") for s in rows]
        colors = None
    ax.set_xlabel("samples/s (cluster, best batch size)")
    ax.grid(alpha=0.3)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    _, unplaced = place_labels(ax, xs, ys, texts, avoid=[line, *bars], colors=colors)
    _legend_below(ax, [f"{texts[i]}: label not placed" for i in unplaced])
    return fig


def serving_figure(arms: Sequence[ArmScores], bench: Bench):
    """RQ1: samples/s and ms/response per engine/precision, one bar per arm served (or the
    one checkpoint), error bars the range of repeated timings; both axes from zero."""
    if not bench.servings:
        return None
    series = [(a.name, bench.of_arm(a.name)) for a in arms if bench.of_arm(a.name)]
    others = sorted({s.arm for s in bench.servings if s.arm is not None} - {a.name for a in arms})
    series += [(name, [s for s in bench.servings if s.arm == name]) for name in others]
    if bench.unattributed:
        series.append((f"checkpoint {bench.checkpoint or '(not named)'} (not per arm)", bench.unattributed))
    configs = list(dict.fromkeys((s.workload, s.engine, s.dtype) for _, rows in series for s in rows))
    many_workloads = len({c[0] for c in configs}) > 1
    fig = figure((max(7.0, 1.3 * len(configs) + 3), 4.4), dpi=DPI)
    axes = fig.subplots(1, 2)
    width = 0.8 / len(series)
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    for ax, what in zip(axes, ("throughput", "latency")):
        tops = []
        for k, (name, rows) in enumerate(series):
            by = {(s.workload, s.engine, s.dtype): s for s in rows}
            xs, vals, lo, hi = [], [], [], []
            for j, c in enumerate(configs):
                s = by.get(c)
                if s is None:
                    continue
                v, low, high = ((s.throughput_samples_per_s, s.throughput_low, s.throughput_high)
                                if what == "throughput" else (s.latency_ms_p50_batch1, s.latency_low, s.latency_high))
                if v is None:
                    continue
                xs.append(j + (k - (len(series) - 1) / 2) * width)
                vals.append(v)
                lo.append(v - low)
                hi.append(high - v)
                tops.append(high)
            ax.bar(xs, vals, width=width, yerr=[lo, hi], capsize=3, color=cmap(k % 10), label=name)
        ax.set_ylim(0, (max(tops) if tops else 1.0) * 1.15)
        ax.set_xticks(range(len(configs)))
        ax.set_xticklabels([f"{e}\n{d}" + (f"\n{w}" if many_workloads else "") for w, e, d in configs], fontsize=7)
        ax.set_ylabel("samples/s (best batch size)" if what == "throughput" else "ms/response (p50, batch 1)")
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("RQ1: serving cost per engine and precision (bars: range of repeated timings)", fontsize=9)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(3, len(labels)), fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 0.95))
    return fig


def tasks_figure(arms: Sequence[ArmScores]):
    """Per-task scores per arm as dots with their intervals (or seeds' std), tasks down the
    side; None without any task score."""
    tasks = list(dict.fromkeys(t for a in arms for t in a.tasks))
    if not tasks:
        return None
    style = _style(arms)
    fig = figure((7, 0.32 * len(tasks) * max(1, len(arms) / 2) + 1.8), dpi=DPI)
    ax = fig.add_subplot(1, 1, 1)
    step = 0.7 / max(1, len(arms))
    values, lows, highs = [], [], []
    for k, a in enumerate(arms):
        pts = [(i, a.tasks[t]) for i, t in enumerate(tasks) if t in a.tasks and a.tasks[t].value is not None]
        if not pts:
            continue
        ys = [len(tasks) - 1 - i + (k - (len(arms) - 1) / 2) * step for i, _ in pts]
        xs = [e.value for _, e in pts]
        err = [e.yerr() for _, e in pts]
        ax.errorbar(xs, ys, xerr=[[e[0] for e in err], [e[1] for e in err]], fmt=style[a.name]["marker"],
                    color=style[a.name]["color"], capsize=2, markersize=5, linestyle="none",
                    label=f"{a.name} ({_data(a)})")
        values += xs
        for _, e in pts:
            lo, hi = e.bounds()
            lows.append(lo)
            highs.append(hi)
    ax.set_xlim(*value_limits(values, lows, highs, min_span=MIN_SPAN, bounds=(0, 100)))
    ax.set_yticks(range(len(tasks)))
    ax.set_yticklabels(list(reversed(tasks)), fontsize=8)
    ax.set_ylim(-0.6, len(tasks) - 0.4)
    ax.set_xlabel("task score (the task's metric, 0-100)")
    ax.set_title(f"Per-task scores per arm; bars: {_bars(arms)}", fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, fontsize=7, frameon=False)
    fig.tight_layout()
    return fig


def _png_bytes(fig) -> bytes:
    # bbox "tight": the legend sits below the axes and must be in the picture.
    return png(fig, dpi=DPI, bbox_inches="tight")


# ----------------------------------------------------------------------------- document
# A report is a list of sections, each a list of blocks, rendered twice: Markdown and HTML.
# Blocks: ("p", text), ("ul", [text]), ("h", level, text), ("table", header, rows, align),
# ("img", file, alt). Text may hold **bold** and `code`, nothing else.


# ----------------------------------------------------------------------------- RQ1 per language
def language_costs(bench: Bench) -> list[dict]:
    """Per (arm, task, language, engine, precision), from the cluster rows of every bench file
    that name their language: samples/s and ms/response (p50) at the serving batch size (the
    rows' ``serving_batch_size``, else the largest batch timed), each the median of the
    repeated timings with their range, the language's mean tokens per example, and the task's
    score through that engine (``accuracy``: the task's headline metric, ``metric`` names it;
    ``acc_low``/``acc_high`` where the rows carry an interval, else None)."""
    import statistics

    from stilts_ds.studies.tradeoff import _bench_rows

    groups: dict[tuple, list[dict]] = {}
    for path in bench.files:
        for r in _bench_rows(path):
            if (r.get("node_id") == "cluster" and r.get("status") == "ok" and r.get("lang")
                    and r.get("batch_size") and r.get("throughput_samples_per_s")):
                key = (r.get("arm"), str(r["lang"]), str(r.get("task") or ""), str(r["engine"]), str(r["dtype"]))
                groups.setdefault(key, []).append(r)
    out = []
    for (arm, lang, task, engine, dtype), rows in groups.items():
        batch = max((int(r.get("serving_batch_size") or 0) for r in rows), default=0) or \
            max(int(r["batch_size"]) for r in rows)
        at = [r for r in rows if int(r["batch_size"]) == batch]
        if not at:
            continue
        thr = [float(r["throughput_samples_per_s"]) for r in at]
        lat = [float(r["latency_ms_p50"]) for r in at if r.get("latency_ms_p50") is not None]
        tokens = next((r.get("tokens_per_example") for r in at if r.get("tokens_per_example") is not None),
                      at[0].get("mean_seq_len"))
        # The score is measured once per engine and precision (every batch size's row carries it).
        scored = next((r for r in rows if isinstance(r.get("accuracy"), (int, float))), None)
        bounds = (scored or {}).get("accuracy_low"), (scored or {}).get("accuracy_high")
        out.append({"arm": arm, "lang": lang, "task": task, "engine": engine, "dtype": dtype, "batch": batch,
                    "tokens": tokens, "thr": statistics.median(thr), "thr_low": min(thr), "thr_high": max(thr),
                    "timings": len(thr), "ms": statistics.median(lat) if lat else None,
                    "ms_low": min(lat) if lat else None, "ms_high": max(lat) if lat else None,
                    "ms_timings": len(lat),
                    "accuracy": float(scored["accuracy"]) if scored else None,
                    "metric": (scored or {}).get("metric"),
                    "acc_low": float(bounds[0]) if isinstance(bounds[0], (int, float)) else None,
                    "acc_high": float(bounds[1]) if isinstance(bounds[1], (int, float)) else None})
    return out


def primary_task(costs: Sequence[dict]) -> str | None:
    """The task the RQ1 sentence spreads over languages: XNLI where it was timed (the
    classic one), else the first in name order."""
    tasks = sorted({c["task"] for c in costs})
    return None if not tasks else "xnli" if "xnli" in tasks else tasks[0]


def _lang_config(costs: Sequence[dict]) -> tuple[str, str] | None:
    """The (engine, precision) the per-language sentence uses: one timed for every (arm,
    language) pair, the fastest of those on English (else the first language); without one
    common to all, the one timed for the most pairs."""
    if not costs:
        return None
    pairs = {(c["arm"], c["lang"]) for c in costs}
    having: dict[tuple, set] = {}
    for c in costs:
        having.setdefault((c["engine"], c["dtype"]), set()).add((c["arm"], c["lang"]))
    most = max(len(v) for v in having.values())
    candidates = [k for k, v in having.items() if len(v) == len(pairs)] or \
        [k for k, v in having.items() if len(v) == most]
    langs = sorted({c["lang"] for c in costs})
    ref = "en" if "en" in langs else langs[0]

    def speed(cfg):
        on_ref = [c["thr"] for c in costs if (c["engine"], c["dtype"]) == cfg and c["lang"] == ref]
        return (sum(on_ref) / len(on_ref) if on_ref else 0.0, cfg)

    return max(candidates, key=speed)


def _language_spread(arms: Sequence[ArmScores], costs: Sequence[dict]) -> str:
    """Each arm's samples/s from its fastest to its slowest language, with their tokens per
    example, at one engine/precision (``_lang_config``), on one task's languages (the caller
    picks the task: languages of different tasks differ in more than their language)."""
    cfg = _lang_config(costs)
    if cfg is None:
        return "no per-language rows (bench rows without `lang`)"
    mine = [c for c in costs if (c["engine"], c["dtype"]) == cfg]
    order = [a.name for a in arms] + sorted({str(c["arm"]) for c in mine if c["arm"] not in [a.name for a in arms]})
    parts = []
    for name in order:
        rows = [c for c in mine if str(c["arm"]) == name]
        if len(rows) < 2:
            continue
        fast, slow = max(rows, key=lambda c: c["thr"]), min(rows, key=lambda c: c["thr"])
        parts.append(f"{name} {fast['thr']:,.1f} samples/s ({fast['lang']}, {_tokens(fast['tokens'])} tokens/example) "
                     f"to {slow['thr']:,.1f} ({slow['lang']}, {_tokens(slow['tokens'])})")
    langs = sorted({c["lang"] for c in mine})
    if not parts:
        return f"one language per arm timed at {cfg[0]} {cfg[1]}"
    batch = max(c["batch"] for c in mine)
    return f"over {len(langs)} languages at {cfg[0]} {cfg[1]}, batch {batch}: " + "; ".join(parts)


def _tokens(value) -> str:
    return MISSING if value is None else f"{value:.1f}"


def _lang_order(lang: str):
    return (lang != "en", lang)


def _configs(costs: Sequence[dict]) -> list[tuple[str, str]]:
    """(engine, precision) pairs in the order the bench rows first name them."""
    return list(dict.fromkeys((c["engine"], c["dtype"]) for c in costs))


def _table_arm(arms: Sequence[ArmScores], costs: Sequence[dict]):
    """The arm whose model the per-(task, language) table shows: the one without intermediate
    training where it was served, else the English-only one, else the first served (None:
    rows of one checkpoint that name no arm)."""
    served = [a for a in arms if any(c["arm"] == a.name for c in costs)]
    if served:
        return reference_arm(served, ("none", "English-only")).name
    named = sorted({str(c["arm"]) for c in costs if c["arm"] is not None})
    return named[0] if named else None


def _language_section(arms, bench: Bench, notes: Sequence[str] = ()) -> list:
    """RQ1 per task and language: the mean tokens per example, and samples/s and ms/response
    at the serving batch size per engine and precision (each the median of the repeated
    timings), of one arm's models (``_table_arm``); how far the other arms' timings are from
    those, in one computed sentence; and the bench tasks and languages not timed (``notes``)."""
    costs = language_costs(bench)
    blocks = []
    if costs:
        shown = _table_arm(arms, costs)
        mine = [c for c in costs if c["arm"] == shown]
        configs = _configs(mine)
        by = {(c["task"], c["lang"], c["engine"], c["dtype"]): c for c in mine}
        cells = sorted({(c["task"], c["lang"]) for c in mine}, key=lambda tl: (tl[0], _lang_order(tl[1])))
        rows = []
        for task, lang in cells:
            tokens = next((by[(task, lang, *cfg)]["tokens"] for cfg in configs if (task, lang, *cfg) in by), None)
            row = [task or MISSING, lang, _tokens(tokens)]
            for cfg in configs:
                c = by.get((task, lang, *cfg))
                row += [fmt_number(c and c["thr"], ",.1f"), fmt_number(c and c["ms"], ".2f")]
            rows.append(row)
        header = ["task", "language", "tokens/example"]
        for engine, dtype in configs:
            header += [f"{engine} {dtype} samples/s", f"{engine} {dtype} ms/response"]
        batches = sorted({c["batch"] for c in mine})
        timings = sorted({c["timings"] for c in mine})
        who = f"arm {shown}'s models" if shown is not None else f"checkpoint {bench.checkpoint or '(not named)'}"
        blocks.append(("p", f"**Per task and language** ({who}, at the serving batch size "
                            f"{', '.join(map(str, batches))}; median of {'/'.join(map(str, timings))} timing"
                            f"{'s' if timings != [1] else ''}): each language's own test set, so its own tokenized "
                            "length (the tokenizer cuts some scripts into more pieces than English). ms/response is "
                            "the p50 of one request of the serving batch. Ranges of the repeats: serving.csv and "
                            "the table above."))
        blocks.append(("table", header, rows, "ll" + "r" * (len(header) - 2)))
        others = _arms_gap(shown, costs)
        if others:
            blocks.append(("p", others))
    if notes:
        blocks.append(("p", "Not timed: " + "; ".join(notes) + "."))
    return blocks


def _arms_gap(shown, costs: Sequence[dict]) -> str | None:
    """How far each other arm's samples/s are from ``shown``'s, over every (task, language,
    engine, precision) both were timed on: the largest relative gap, named."""
    base = {(c["task"], c["lang"], c["engine"], c["dtype"]): c for c in costs if c["arm"] == shown}
    parts = []
    for arm in sorted({str(c["arm"]) for c in costs if c["arm"] is not None and c["arm"] != shown}):
        pairs = [(c, base[k]) for c in costs if str(c["arm"]) == arm
                 for k in [(c["task"], c["lang"], c["engine"], c["dtype"])] if k in base]
        if not pairs:
            parts.append(f"{arm}: no (task, language, engine) in common with {shown}")
            continue
        c, b = max(pairs, key=lambda p: abs(p[0]["thr"] / p[1]["thr"] - 1))
        gap = abs(c["thr"] / b["thr"] - 1)
        parts.append(f"{arm} within {gap:.0%} over {len(pairs)} (largest: {c['task']}/{c['lang']} {c['engine']} "
                     f"{c['dtype']}, {c['thr']:,.1f} vs {b['thr']:,.1f})")
    if not parts:
        return None
    return f"The other arms' samples/s against {shown}'s, same task, language, engine and precision: " + \
        "; ".join(parts) + "."


# ----------------------------------------------------------------------------- RQ2 through each engine
def engine_points(arms: Sequence[ArmScores], bench: Bench) -> dict[str, list[dict]]:
    """Per task, one point per (arm, engine, precision) that scored it: the task's score
    through that engine (its headline metric, the mean over the languages every point of the
    task was scored in), and samples/s and ms/response at the serving batch size over the
    same languages; ``phase3``: the arm's phase-3 score on those languages (results.json);
    ``fp32``: the same arm and engine's score at fp32 where that was timed; ``front``: on the
    task's accuracy / samples/s Pareto frontier. An interval only where the rows carry one
    (``accuracy_low``/``accuracy_high``): the bench scores each engine once and writes no
    per-example statistics (older bench files)."""
    known = {a.name: a for a in arms}
    costs = [c for c in language_costs(bench) if c["accuracy"] is not None and c["arm"] in known]
    out: dict[str, list[dict]] = {}
    for task in sorted({c["task"] for c in costs}):
        mine = [c for c in costs if c["task"] == task]
        keys = list(dict.fromkeys((c["arm"], c["engine"], c["dtype"]) for c in mine))
        langs = None
        for key in keys:
            have = {c["lang"] for c in mine if (c["arm"], c["engine"], c["dtype"]) == key}
            langs = have if langs is None else langs & have
        langs = sorted(langs or (), key=_lang_order)
        if not langs:
            continue
        points = []
        for arm, engine, dtype in keys:
            rows = {c["lang"]: c for c in mine if (c["arm"], c["engine"], c["dtype"]) == (arm, engine, dtype)}
            at = [rows[l] for l in langs]
            ms = [c["ms"] for c in at if c["ms"] is not None]
            lows, highs = [c["acc_low"] for c in at], [c["acc_high"] for c in at]
            ref = known[arm].per_lang.get(task, {})
            phase3 = sum(ref[l] for l in langs) / len(langs) if all(l in ref for l in langs) else None
            points.append({"task": task, "arm": arm, "engine": engine, "dtype": dtype, "langs": langs,
                           "accuracy": sum(c["accuracy"] for c in at) / len(at), "metric": at[0]["metric"],
                           "low": sum(lows) / len(lows) if None not in lows else None,
                           "high": sum(highs) / len(highs) if None not in highs else None,
                           "thr": sum(c["thr"] for c in at) / len(at),
                           "ms": sum(ms) / len(ms) if len(ms) == len(at) else None,
                           "batch": max(c["batch"] for c in at), "phase3": phase3, "fp32": None})
        for p in points:
            same = next((q for q in points if (q["arm"], q["engine"], q["dtype"]) == (p["arm"], p["engine"], "fp32")),
                        None)
            if same is not None and p["dtype"] != "fp32":
                p["fp32"] = same["accuracy"]
        front = set(pareto_front([(p["thr"], p["accuracy"]) for p in points]))
        for i, p in enumerate(points):
            p["front"] = i in front
        out[task] = points
    return out


def _pct(value) -> str:
    return f"{value:+.2f}"


def _largest_move(points: Sequence[dict], against: str) -> tuple[dict, float] | None:
    """(the point whose score moved most from its ``against`` score, accuracy - that score),
    over the points that have one; None if none has."""
    have = [p for p in points if p[against] is not None]
    if not have:
        return None
    worst = max(have, key=lambda p: abs(p["accuracy"] - p[against]))
    return worst, worst["accuracy"] - worst[against]


def engines_answer(arms: Sequence[ArmScores], bench: Bench) -> str | None:
    """The sentence on accuracy through each engine and precision against its serving cost,
    per task: the frontier's points, the accuracy moved by fp16/bf16 against fp32 on the same
    engine (else, without fp32 timed, against phase 3's score), computed from the points.
    None without any point (no bench row carries a score of an arm of this report)."""
    per_task = engine_points(arms, bench)
    if not per_task:
        return None
    parts = []
    for task, points in per_task.items():
        front = sorted((p for p in points if p["front"]), key=lambda p: p["thr"])
        where = (f"{task} ({len(points[0]['langs'])} language{'s' if len(points[0]['langs']) != 1 else ''}, "
                 f"{points[0]['metric'] or 'headline metric'})")
        text = f"{where}: on the accuracy/samples/s frontier " + ", ".join(
            f"{p['arm']} {p['engine']} {p['dtype']} ({p['accuracy']:.1f} at {p['thr']:,.1f} samples/s)" for p in front)
        largest = _largest_move(points, "fp32")
        if largest:
            worst, moved = largest
            text += ("; fp16/bf16 left every score as fp32 on the same engine had it" if moved == 0 else
                     f"; the largest change from fp32 to {worst['dtype']} on the same engine is {_pct(moved)} points "
                     f"({worst['arm']} {worst['engine']})")
        elif any(p["dtype"] != "fp32" for p in points):
            text += "; no fp32 timed to set fp16/bf16 against"
        largest = _largest_move(points, "phase3")
        if largest:
            worst, moved = largest
            text += ("; every engine gives phase 3's score exactly" if moved == 0 else
                     f"; the largest difference from phase 3's score is {_pct(moved)} points ({worst['arm']} "
                     f"{worst['engine']} {worst['dtype']})")
        parts.append(text)
    intervals = any(p["low"] is not None for ps in per_task.values() for p in ps)
    tail = "" if intervals else (" No interval on these scores: these bench rows carry no bootstrap interval "
                                 "(an older bench file; phase 3's intervals are in the per-task table).")
    return ("**RQ2 through the engines (accuracy against serving cost):** " + "; ".join(parts) + "." + tail)


def engines_figure(arms: Sequence[ArmScores], bench: Bench):
    """One panel per task: the task's score through each (arm, engine, precision) against its
    samples/s at the serving batch (mean over the languages every point was scored in), the
    Pareto frontier drawn; error bars only where the rows carry an interval. None without a
    point."""
    from stilts_ds.figures import panels

    per_task = engine_points(arms, bench)
    if not per_task:
        return None
    style = _style(arms)
    data = {a.name: _data(a) for a in arms}
    fig, axes = panels(len(per_task), panel_w=5.6, panel_h=4.4, max_cols=2)
    placements = []
    seen: set[str] = set()
    for ax, (task, points) in zip(axes, per_task.items()):
        xs = [p["thr"] for p in points]
        ys = [p["accuracy"] for p in points]
        bars = []
        for p, x, y in zip(points, xs, ys):
            err = None
            if p["low"] is not None and p["high"] is not None:
                err = [[max(0.0, y - p["low"])], [max(0.0, p["high"] - y)]]
            bars.append(ax.errorbar([x], [y], yerr=err, fmt=style[p["arm"]]["marker"],
                                    color=style[p["arm"]]["color"], capsize=3, markersize=6, zorder=3,
                                    label=None if p["arm"] in seen else f"{p['arm']} ({data[p['arm']]})"))
            seen.add(p["arm"])
        lows = [p["low"] for p in points if p["low"] is not None]
        highs = [p["high"] for p in points if p["high"] is not None]
        ax.set_ylim(*value_limits(ys, lows, highs, min_span=MIN_SPAN, bounds=(0, 100)))
        ax.set_xlim(0, max(xs) * 1.25)
        line = frontier_line(ax, xs, ys, [i for i, p in enumerate(points) if p["front"]], x_better="higher")
        langs = points[0]["langs"]
        ax.set_title(f"{task}: {points[0]['metric'] or 'score'} over {', '.join(langs[:6])}"
                     f"{' …' if len(langs) > 6 else ''}", fontsize=8)
        ax.set_xlabel(f"samples/s at the serving batch ({max(p['batch'] for p in points)})", fontsize=8)
        ax.set_ylabel("score through the engine", fontsize=8)
        ax.grid(alpha=0.3)
        placements.append((ax, xs, ys, [f"{p['engine']} {p['dtype']}" for p in points], [line, *bars],
                           [style[p["arm"]]["color"] for p in points], [f"{task}: {p['arm']}" for p in points]))
    intervals = any(p["low"] is not None for ps in per_task.values() for p in ps)
    fig.suptitle("Accuracy through each engine and precision against serving cost, per arm; "
                 + ("error bars: 95% bootstrap intervals over the test examples" if intervals else
                    "no error bars: these bench rows carry no interval"), fontsize=9)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(4, max(1, len(labels))), fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 0.95))
    unplaced = []
    for ax, xs, ys, texts, avoid, colors, whose in placements:
        _, missed = place_labels(ax, xs, ys, texts, avoid=avoid, colors=colors)
        unplaced += [f"{whose[i]} {texts[i]}" for i in missed]
    if unplaced:  # never drawn over another: listed under the plot instead
        fig.text(0.01, 0.005, "labels not placed: " + "; ".join(unplaced), fontsize=6, wrap=True)
    return fig


def _engines_section(arms, bench: Bench, images) -> list:
    per_task = engine_points(arms, bench)
    blocks: list = [("h", 3, "Accuracy through each engine against serving cost")]
    if not per_task:
        blocks.append(("p", "No bench row carries a task score of an arm of this report (rows of the study's "
                            "bench nodes do: each engine and precision scores the task it serves), so accuracy "
                            "through the engines is not plotted."))
        return blocks
    rows = []
    for task, points in per_task.items():
        for p in points:
            score = fmt_number(p["accuracy"], ".2f")
            if p["low"] is not None and p["high"] is not None:
                score += f" [{p['low']:.2f}, {p['high']:.2f}]"
            rows.append([task, p["arm"], p["engine"], p["dtype"], ", ".join(p["langs"]), score,
                         fmt_number(p["phase3"], ".2f"),
                         _pct(p["accuracy"] - p["phase3"]) if p["phase3"] is not None else MISSING,
                         _pct(p["accuracy"] - p["fp32"]) if p["fp32"] is not None else MISSING,
                         fmt_number(p["thr"], ",.1f"), fmt_number(p["ms"], ".2f"), "yes" if p["front"] else ""])
    blocks.append(("table", ["task", "arm", "engine", "precision", "languages", "score through the engine",
                             "phase 3", "− phase 3", "− fp32", "samples/s", "ms/response", "on the frontier"],
                   rows, "llllllrrrrrl"))
    intervals = any(p["low"] is not None for ps in per_task.values() for p in ps)
    blocks.append(("p", "Score: the task's headline metric ((EM + F1) / 2 for QA, else F1 or accuracy) with every "
                        "forward pass through that engine at that precision, the mean over the languages listed "
                        "(those every point of the task was scored in); phase 3: the arm's own evaluation of the "
                        "same model on the same languages (with seeds, the first seed's: the model the bench "
                        "serves); − fp32: against the same engine at fp32, where timed. samples/s and "
                        "ms/response at the serving batch size, the mean over the same languages. Frontier: no "
                        "other point of the task is both faster and more accurate. "
                        + ("Intervals: 95% bootstrap over the test examples through that engine (phase 3's "
                           "method), the mean of the languages' bounds." if intervals else
                           "No interval: these bench rows carry none (an older bench file).")))
    if "engines.png" in images:
        blocks.append(("img", "engines.png", "score through each engine and precision against samples/s, per task, "
                                             "Pareto frontier"))
    return blocks


def _fmt_cost(value) -> str:
    # Whole seconds for real runs; tenths for the quick start's seconds-long phases.
    return fmt_number(value, ",.0f") if value is None or value >= 100 else fmt_number(value, ",.1f")


def _rq1_section(arms, bench: Bench, images, notes: Sequence[str] = ()) -> list:
    blocks = []
    if not bench.servings:
        blocks.append(("p", "No serving measurements: no bench rows were given (`bench*/bench.jsonl` of "
                            "`stilts-ds bench`, or `bench:` in the study config), so RQ1 is not answered here."))
        if notes:
            blocks.append(("p", "Not timed: " + "; ".join(notes) + "."))
    else:
        if bench.unattributed:
            blocks.append(("p", f"**One checkpoint was served: {bench.checkpoint or 'not named by its rows'}.** "
                                "Its rows name no arm, so its samples/s and ms/response are that checkpoint's, "
                                "NOT per arm; they are not copied onto the arms below."))
        # With several languages timed, the reference one of each task here (the arms are
        # compared on it); every language is in the per-language table below and serving.csv.
        view = on_reference_language(bench)
        if view is not bench:
            blocks.append(("p", "On each task's reference language ("
                                + ", ".join(sorted(reference_workloads(bench))) + "); every language below."))
        rows = []
        for s in view.servings:
            served = s.arm if s.arm is not None else f"checkpoint {bench.checkpoint or '(not named)'} (not per arm)"
            rows.append([served, s.workload or MISSING, s.engine, s.dtype,
                         fmt_number(s.throughput_samples_per_s, ",.1f"),
                         _range(s.throughput_low, s.throughput_high, ",.1f", s.timings), s.timings,
                         s.best_batch_size, fmt_number(s.latency_ms_p50_batch1, ".2f"),
                         _range(s.latency_low, s.latency_high, ".2f", s.latency_timings)
                         if s.latency_ms_p50_batch1 is not None else MISSING, s.latency_timings])
        blocks.append(("table", ["served", "workload", "engine", "precision", "samples/s (median)", "range",
                                 "timings", "best batch", "ms/response (p50, batch 1)", "range", "timings"],
                       rows, "llllrrrrrrr"))
        if not any(s.timings > 1 for s in bench.servings):
            blocks.append(("p", "Each configuration was timed once: no spread to show (repeat the bench rows of an "
                                "engine, precision and batch size to get one)."))
        if bench.unavailable:
            blocks.append(("p", "Not timed: " + "; ".join(f"{e} {d} ({why or 'no reason given'})"
                                                         for e, d, why in bench.unavailable) + "."))
        blocks += _language_section(arms, bench, notes)
        if "serving.png" in images:
            blocks.append(("img", "serving.png", "samples/s and ms/response per engine and precision"))
    return blocks


def _rq2_section(arms, bench: Bench, images) -> list:
    front = training_front(arms)
    units = {a.cost.unit for a in arms}
    unit = units.pop() if len(units) == 1 else "cost"
    rows = [[a.name, _data(a), fmt_est(a.xtreme), fmt_est(a.xtreme_r), _fmt_cost(a.cost.phase1),
             _fmt_cost(a.cost.phase2), _fmt_cost(a.cost.total), fmt_number(a.cost.phase1_samples_per_s),
             "yes" if a.name in front else ""] for a in arms]
    blocks = [("table", ["arm", "phase-1 data", "XTREME avg", "XTREME-R avg", f"phase-1 {unit}", f"phase-2 {unit}",
                         f"training {unit}", "phase-1 rows/s", "on the frontier"], rows, "llllrrrrl"),
              ("p", error_bars_note(arms) + (
                  " Training cost: wall seconds of each phase-1 and phase-2 node times the workers it ran on "
                  "(their DONE.json files)" + ("; with seeds, the mean over the seeds' runs (one run's cost)."
                                                if any(a.cost.runs > 1 for a in arms) else ".")
                  if unit == "worker-s" else
                  " Training cost: wall seconds from arms.json (the worker count was not found)."
                  if unit == "wall-s" else " Training cost units differ between arms."))]
    if "training.png" in images:
        blocks.append(("img", "training.png", "XTREME average against training cost, Pareto frontier"))
    else:
        blocks.append(("p", "No accuracy-against-training-cost plot: no arm has both an XTREME average and a "
                            "training cost."))
    points = serving_points(arms, on_primary_workload(bench))
    blocks.append(("h", 3, "Accuracy against serving cost"))
    if points:
        on = serving_front(points)
        blocks.append(("table", ["arm", "engine", "precision", "workload", "XTREME avg", "samples/s", "ms/response",
                                 "on the frontier"],
                       [[a.name, s.engine, s.dtype, s.workload or MISSING, fmt_est(a.xtreme),
                         fmt_number(s.throughput_samples_per_s, ",.1f"), fmt_number(s.latency_ms_p50_batch1, ".2f"),
                         "yes" if i in on else ""] for i, (a, s) in enumerate(points)], "llllrrrl"))
        missing = [a.name for a in arms if not bench.of_arm(a.name)]
        if missing:
            blocks.append(("p", f"Not served, so not on this plot: {', '.join(missing)}."))
    elif bench.servings:
        blocks.append(("p", f"Not per arm: the bench served one checkpoint ({bench.checkpoint or 'not named'}), not "
                            "each arm, so accuracy cannot be set against each arm's serving cost. The plot shows that "
                            "checkpoint's engines and precisions instead: samples/s against ms/response, with their "
                            "frontier."))
    else:
        blocks.append(("p", "No bench rows: serving cost was not measured."))
    if "pareto.png" in images:
        blocks.append(("img", "pareto.png", "accuracy or latency against samples/s, Pareto frontier"))
    return blocks + _engines_section(arms, bench, images)


def _difference(comparisons, a: ArmScores, ref: ArmScores, metric: str, task: str | None = None) -> str:
    found = _comparison(comparisons, metric, a.name, ref.name, task)
    if found is None:
        return MISSING
    d, low, high, p, _, _ = found
    return f"{d:+.1f} [{low:+.1f}, {high:+.1f}]" + (f", {_p(p)}" if isinstance(p, (int, float)) else "")


def _tasks_section(arms, arm_info, images, comparisons=None) -> list:
    tasks = list(dict.fromkeys(t for a in arms for t in a.tasks))
    # With paired comparisons, one more column per arm: its difference from the reference arm.
    ref = reference_arm(arms) if arms else None
    diffs = [a for a in arms if a is not ref
             and any({c.get("a"), c.get("b")} == {a.name, ref.name} for c in comparisons or ())]
    rows = [["**XTREME avg**", *(f"**{fmt_est(a.xtreme)}**" for a in arms),
             *(_difference(comparisons, a, ref, "xtreme_average") for a in diffs)],
            ["**XTREME-R avg**", *(f"**{fmt_est(a.xtreme_r)}**" for a in arms),
             *(_difference(comparisons, a, ref, "xtreme_r_average") for a in diffs)]]
    rows += [[t, *(fmt_est(a.tasks[t]) if t in a.tasks else MISSING for a in arms),
              *(_difference(comparisons, a, ref, "", t) for a in diffs)] for t in tasks]
    header = ["task", *(f"{a.name} ({_data(a)})" for a in arms), *(f"{a.name} − {ref.name}" for a in diffs)]
    blocks = [("table", header, rows, "l" + "r" * (len(arms) + len(diffs))), ("p", error_bars_note(arms))]
    if diffs:
        blocks.append(("p", f"{', '.join(f'{a.name} − {ref.name}' for a in diffs)}: the paired comparison's "
                            "difference, its interval and p-value."))
    if "tasks.png" in images:
        blocks.append(("img", "tasks.png", "per-task scores per arm with intervals"))
    infos = [arm_info[a.name] for a in arms if a.name in arm_info]
    if infos:
        from stilts_ds.studies.arms import comparison_markdown

        md = comparison_markdown(infos, title="Arms side by side: English-only vs multilingual phase 1")
        blocks += markdown_blocks(md, shift=2)
        if "arms.png" in images:
            blocks.append(("img", "arms.png", "scores per arm (arms.py)"))
    return blocks


def _cluster_section(schedule_dir, images) -> list:
    if schedule_dir is None:
        return [("p", "Not given: no study run dir (`--study`), so no utilization.json or timeline.png to quote.")]
    util_path = Path(schedule_dir) / "utilization.json"
    if not util_path.is_file():
        return [("p", f"No `utilization.json` in {schedule_dir}: the scheduler writes it at the end of a study run.")]
    util = json.loads(util_path.read_text(encoding="utf-8"))
    blocks = [("p", "The last run of the study graph that trained or evaluated: "
                    f"{util['busy_worker_s']:,.0f} busy worker-seconds of {util['available_worker_s']:,.0f} available "
                    f"({util['slots']} worker slots x {util['wall_s']:,.0f} s): utilization "
                    f"**{util['utilization']:.0%}**.")]
    if "timeline.png" in images:
        blocks.append(("img", "timeline.png", "every job on its worker slots"))
    return blocks


def markdown_blocks(text: str, shift: int = 0) -> list:
    """Blocks of a Markdown text made of headings, pipe tables and paragraphs (what the
    project's own Markdown writers emit); headings moved ``shift`` levels down."""
    lines, blocks, i = text.splitlines(), [], 0
    rule = re.compile(r"^\|(\s*:?-+:?\s*\|)+\s*$")

    def cells(line):
        return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip()[1:-1])]

    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            blocks.append(("h", min(6, level + shift), line.lstrip("#").strip()))
            i += 1
        elif line.startswith("|") and i + 1 < len(lines) and rule.match(lines[i + 1]):
            header = cells(line)
            align = "".join("r" if c.strip().endswith(":") else "l" for c in lines[i + 1].strip()[1:-1].split("|"))
            i += 2
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(cells(lines[i]))
                i += 1
            blocks.append(("table", header, rows, align))
        else:
            para = []
            while i < len(lines) and lines[i].strip() and not lines[i].startswith(("#", "|")):
                para.append(lines[i].strip())
                i += 1
            blocks.append(("p", " ".join(para)))
    return blocks


def to_markdown(title: str, sections, *, images: bool = True) -> str:
    out = [f"# {title}", ""]
    for _, heading, blocks in sections:
        out += [f"## {heading}", ""]
        for b in blocks:
            if b[0] == "p":
                out += [b[1], ""]
            elif b[0] == "ul":
                out += [f"- {item}" for item in b[1]] + [""]
            elif b[0] == "h":
                out += ["#" * b[1] + " " + b[2], ""]
            elif b[0] == "table":
                out += markdown_table(b[1], b[2], b[3]) + [""]
            elif b[0] == "img" and images:
                out += [f"![{b[2]}]({b[1]})", ""]
    return "\n".join(out).rstrip() + "\n"


def _inline(text) -> str:
    out = html.escape(str(text) if text is not None else MISSING)
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", out)


_CSS = """body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1b1b1b;margin:0}
main{max-width:1100px;margin:0 auto;padding:1.5em}h1{font-size:1.5em}h2{margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:1em 0;font-size:13px;display:block;overflow-x:auto}
th,td{border:1px solid #ddd;padding:.3em .6em;text-align:left;white-space:nowrap}td.r{text-align:right}
th{background:#f4f4f4}figure{margin:1em 0}img{max-width:100%;height:auto}figcaption{color:#555;font-size:13px}
#answers li{margin:.5em 0}code{background:#f4f4f4;padding:0 .2em}"""
# Nothing from outside the page: images are data: URIs, the style is inline, and there are no scripts.
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def to_html(title: str, sections, images: Mapping[str, bytes]) -> str:
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>",
           f"<body><main><h1>{html.escape(title)}</h1>"]
    for sid, heading, blocks in sections:
        out.append(f'<section id="{sid}"><h2>{html.escape(heading)}</h2>')
        for b in blocks:
            if b[0] == "p":
                out.append(f"<p>{_inline(b[1])}</p>")
            elif b[0] == "ul":
                out.append("<ul>" + "".join(f"<li>{_inline(item)}</li>" for item in b[1]) + "</ul>")
            elif b[0] == "h":
                level = min(6, max(3, b[1]))
                out.append(f"<h{level}>{_inline(b[2])}</h{level}>")
            elif b[0] == "table":
                align = b[3]
                head = "".join(f"<th>{_inline(c)}</th>" for c in b[1])
                body = "".join("<tr>" + "".join(
                    f'<td{" class=r" if align[j:j + 1] == "r" else ""}>{_inline(c)}</td>' for j, c in enumerate(r))
                    + "</tr>" for r in b[2])
                out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
            elif b[0] == "img":
                data = base64.b64encode(images[b[1]]).decode("ascii")
                out.append(f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(b[2])}" '
                           f'data-file="{html.escape(b[1])}"><figcaption>{html.escape(b[1])}: '
                           f"{html.escape(b[2])}</figcaption></figure>")
        out.append("</section>")
    out.append("</main></body></html>")
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------- the builder
def build_report(results: Mapping[str, Path], bench_paths: Sequence[Path], out_dir: Path, *, title: str = TITLE,
                 arm_info: Mapping[str, Mapping] | None = None, schedule_dir: Path | None = None,
                 comparisons: list[dict] | None = None, bench_notes: Sequence[str] = ()) -> dict[str, Path]:
    """Write the report into ``out_dir``; returns {name: path} ("md" is report.md, "html"
    index.html). ``arm_info``: rows of arms.json (phase-1 data and costs); ``schedule_dir``: a
    study's run dir (utilization.json, timeline.png); ``comparisons``: paired comparisons of
    arms (module docstring); ``bench_notes``: bench tasks and languages not timed, and why
    (``StudyGraph.bench_notes``)."""
    arm_info = dict(arm_info or {})
    arms = [arm_scores(name, Path(p), arm_info.get(name)) for name, p in results.items()]
    bench = read_bench(bench_paths)
    out_dir = Path(out_dir)

    images: dict[str, bytes] = {}
    for name, make in (("serving.png", lambda: serving_figure(arms, on_reference_language(bench))),
                       ("training.png", lambda: training_figure(arms)),
                       ("pareto.png", lambda: pareto_figure(arms, on_primary_workload(bench))),
                       ("engines.png", lambda: engines_figure(arms, bench)),
                       ("tasks.png", lambda: tasks_figure(arms))):
        fig = make()
        if fig is not None:
            images[name] = _png_bytes(fig)
    infos = [arm_info[a.name] for a in arms if a.name in arm_info]
    if infos:
        from stilts_ds.studies.arms import comparison_png

        images["arms.png"] = comparison_png(infos, title="Scores per arm")
    timeline = Path(schedule_dir) / "timeline.png" if schedule_dir is not None else None
    if timeline is not None and timeline.is_file() and (Path(schedule_dir) / "utilization.json").is_file():
        images["timeline.png"] = timeline.read_bytes()

    sections = [
        # RQ2's serving phrases compare arms on the reference language, as RQ1's sentence does.
        ("answers", "Answers", [("ul", [rq1_answer(arms, bench),
                                        *rq2_answers(arms, on_reference_language(bench), comparisons),
                                        *filter(None, [engines_answer(arms, bench)])]),
                                ("p", error_bars_note(arms))]),
        ("rq1", "RQ1: inference efficiency per arm, engine and precision",
         _rq1_section(arms, bench, images, bench_notes)),
        ("rq2", "RQ2: accuracy against training and serving cost", _rq2_section(arms, bench, images)),
        ("tasks", "Per-task scores per arm", _tasks_section(arms, arm_info, images, comparisons)),
        ("cluster", "Cluster use", _cluster_section(schedule_dir, images)),
    ]
    written = ["report.md", "index.html", "tradeoff.md", "tradeoff.csv", "serving.csv", *images]
    sections.append(("files", "Files", [("ul", [f"`{f}`" for f in written])]))

    paths: dict[str, Path] = {}
    # Figures first, the pages last: a page never names a figure that is not there yet.
    for name, data in images.items():
        paths[name.replace(".", "_")] = write_atomic(out_dir / name, data)
    # One workload per arm (XNLI on English where timed), as pareto.png: a frontier across tasks
    # would set one task's throughput against another's; every row is in serving.csv.
    rows = tradeoff_rows(arms, on_primary_workload(bench))
    paths["csv"] = write_csv(out_dir / "tradeoff.csv", rows, list(rows[0]) if rows else ["arm"])
    serving_cols = ["arm", "checkpoint", "workload", "engine", "dtype", "throughput_samples_per_s", "throughput_low",
                    "throughput_high", "timings", "best_batch_size", "ms_per_response_p50_batch1", "latency_low",
                    "latency_high", "latency_timings"]
    paths["serving_csv"] = write_csv(out_dir / "serving.csv", [
        {"arm": s.arm, "checkpoint": None if s.arm else bench.checkpoint, "workload": s.workload, "engine": s.engine,
         "dtype": s.dtype, "throughput_samples_per_s": s.throughput_samples_per_s, "throughput_low": s.throughput_low,
         "throughput_high": s.throughput_high, "timings": s.timings, "best_batch_size": s.best_batch_size,
         "ms_per_response_p50_batch1": s.latency_ms_p50_batch1, "latency_low": s.latency_low,
         "latency_high": s.latency_high, "latency_timings": s.latency_timings} for s in bench.servings], serving_cols)
    paths["tradeoff_md"] = write_atomic(out_dir / "tradeoff.md", to_markdown(title, sections, images=False))
    paths["md"] = write_atomic(out_dir / "report.md", to_markdown(title, sections))
    paths["html"] = write_atomic(out_dir / "index.html", to_html(title, sections, images))
    for name in OWN_FILES:
        if name not in written and (out_dir / name).is_file():
            (out_dir / name).unlink()
    return paths
