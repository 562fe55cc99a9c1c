"""The study report (stilts_ds.studies.report), built from small literal results.json,
bench.jsonl, arms.json rows and DONE.json files: the answers computed from the numbers (and
saying what is missing), the one served checkpoint named and not copied onto the arms, the
plots' honesty checked on the figures themselves (label boxes from matplotlib's renderer do
not intersect, accuracy axes no narrower than ±2 points or the error bars, the frontier
drawn through its points), and a self-contained index.html. The page in a real browser:
tests/studies/test_report_browser.py.

    pytest tests/studies/test_report.py -q
"""
import csv
import itertools
import json
import re

import pytest
from click.testing import CliRunner

from stilts_ds.cli import main
from stilts_ds.figures import FRONTIER, POINT_LABEL, text_box, value_limits
from stilts_ds.studies.report import build_report, engines_figure, pareto_figure, training_figure
from stilts_ds.studies.results import write_results
from stilts_ds.studies.tradeoff import arm_scores, read_bench

PNG = b"\x89PNG\r\n\x1a\n"


def _results(path, xnli, pawsx, **extra):
    path.parent.mkdir(parents=True, exist_ok=True)
    out = write_results(path, {"xnli": {"en": {"accuracy": xnli}, "de": {"accuracy": xnli}},
                               "pawsx": {"en": {"accuracy": pawsx}}})
    if extra:
        out.update(extra)
        path.write_text(json.dumps(out))
    return path


def _interval(avg, half, tasks):
    return {"method": "paired bootstrap", "resamples": 1000, "seed": 0, "level": 0.95,
            "tasks": {}, "task_scores": {t: {"low": v - half, "high": v + half} for t, v in tasks.items()},
            "xtreme_average": {"low": avg - half, "high": avg + half}}


def _done(path, wall, workers=2):
    path.mkdir(parents=True, exist_ok=True)
    (path / "DONE.json").write_text(json.dumps({"wall_seconds": wall, "world_size": workers}))


def _arm(tmp_path, name, xnli, pawsx, phase1_s, phase2_s, **extra):
    """An arm's run dir: results.json, and DONE.json of phase 1 and of one phase-2 task."""
    arm = tmp_path / "arms" / name
    _done(arm / "phase1", phase1_s)
    _done(arm / "phase2" / "xnli", phase2_s)
    return _results(arm / "results.json", xnli, pawsx, **extra)


def _bench(path, rows, served=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    if served:
        (path.parent / "DONE.json").write_text(json.dumps({"config": {"served": served}}))
    return path


def _row(engine, dtype, bs, thr, p50=None, **extra):
    return {"engine": engine, "dtype": dtype, "batch_size": bs, "throughput_samples_per_s": thr,
            "latency_ms_p50": p50, "node_id": "cluster", "status": "ok", "task": "xnli", "lang": "en", **extra}


def _timed(engine, dtype, thr, lat, arm=None, repeats=(0.97, 1.0, 1.03)):
    """Repeated timings of one engine/precision: batch 8 throughput and batch 1 latency."""
    tag = {"arm": arm} if arm else {}
    return ([_row(engine, dtype, 8, thr * r, **tag) for r in repeats]
            + [_row(engine, dtype, 1, thr / 4, lat * r, **tag) for r in repeats])


INFO = {"english": {"arm": "english", "data": "English-only", "description": "nine English tasks",
                    "intermediate_tasks": ["mnli"], "task_scores": {}, "averages": {}, "phase1_samples_per_s": 350.0,
                    "phase1_wall_s": 8.0, "phase2_wall_s": 18.0},
        "multilingual": {"arm": "multilingual", "data": "multilingual +MLM +translated", "description": "plus MLM",
                         "intermediate_tasks": ["mnli", "mlm"], "task_scores": {}, "averages": {},
                         "phase1_samples_per_s": 450.0, "phase1_wall_s": 12.8, "phase2_wall_s": 18.0}}


def _two_arms(tmp_path, **extra):
    return {"english": _arm(tmp_path, "english", 80.0, 70.0, 10.0, 20.0, **extra.get("english", {})),
            "multilingual": _arm(tmp_path, "multilingual", 81.0, 70.6, 16.0, 20.0, **extra.get("multilingual", {}))}


def _answers(md: str) -> str:
    return md.split("## Answers", 1)[1].split("\n## ", 1)[0]


def test_one_served_checkpoint_is_named_and_not_copied_onto_the_arms(tmp_path):
    results = _two_arms(tmp_path)
    bench = _bench(tmp_path / "bench" / "bench.jsonl",
                   _timed("ds", "fp16", 1000.0, 2.0) + _timed("torch-sdpa", "fp16", 800.0, 2.5)
                   + [_row("ds-kernel", "fp16", None, None, status="unavailable", reason="needs CUDA")],
                   served="english/phase2/xnli")
    paths = build_report(results, [bench], tmp_path / "out", arm_info=INFO)
    md = paths["md"].read_text()
    answers = _answers(md)
    assert "one checkpoint was served (english/phase2/xnli) on xnli/en" in answers
    assert "Throughput is NOT per arm" in answers
    assert "serving cost not measured for either arm (one checkpoint, english/phase2/xnli, was served" in answers
    # The repeated timings' spread, per engine and precision.
    assert ("| checkpoint english/phase2/xnli (not per arm) | xnli/en | ds | fp16 | 1,000.0 | 970.0 – 1,030.0 | 3 |"
            in md)
    assert "Not timed: ds-kernel fp16 (needs CUDA)." in md
    # tradeoff.csv: one row per arm, no throughput on either (it is the checkpoint's, not theirs).
    rows = list(csv.DictReader(paths["csv"].open()))
    assert [r["arm"] for r in rows] == ["english", "multilingual"]
    assert all(r["throughput_samples_per_s"] == "" and r["served_checkpoint"] == "english/phase2/xnli" for r in rows)
    serving = list(csv.DictReader(paths["serving_csv"].open()))
    assert [(r["engine"], r["timings"], r["checkpoint"]) for r in serving] == [
        ("ds", "3", "english/phase2/xnli"), ("torch-sdpa", "3", "english/phase2/xnli")]
    # Training cost from DONE.json: worker-seconds, and the phase-1 ratio in the answer.
    assert "1.60x phase-1 cost (32.0 vs 20.0 worker-s)" in answers
    assert "| english | English-only | 75.0 | – | 20.0 | 40.0 | 60.0 | 350.0 |" in md
    for png in ("serving.png", "training.png", "pareto.png", "tasks.png", "arms.png"):
        assert (tmp_path / "out" / png).read_bytes().startswith(PNG)
        assert f"]({png})" in md
    # tradeoff.md: the same text without the figures (what `stilts-ds demo` prints).
    text = paths["tradeoff_md"].read_text()
    assert _answers(text) == answers and ".png)" not in text and "Arms side by side" in text


def test_per_arm_serving_and_a_paired_comparison_make_the_sentence(tmp_path):
    results = _two_arms(tmp_path, english={"uncertainty": _interval(75.0, 0.5, {"xnli": 80.0, "pawsx": 70.0})},
                        multilingual={"uncertainty": _interval(75.8, 0.5, {"xnli": 81.0, "pawsx": 70.6})})
    bench = _bench(tmp_path / "bench" / "bench.jsonl",
                   _timed("ds", "fp16", 1000.0, 2.0, arm="english")
                   + _timed("ds", "fp16", 985.0, 2.02, arm="multilingual"))
    # Computed the other way round (multilingual - english would be +0.8; this says a - b with
    # a = english): the report turns it to "multilingual against english".
    comparisons = [{"a": "english", "b": "multilingual", "method": "paired bootstrap", "level": 0.95,
                    "xtreme_average": {"a": 75.0, "b": 75.8, "difference": -0.8, "low": -1.4, "high": -0.2,
                                       "p_value": 0.004},
                    "tasks": {"xnli": {"a": 80.0, "b": 81.0, "difference": -1.0, "low": -1.5, "high": -0.5,
                                       "p_value": 0.002}}}]
    paths = build_report(results, [bench], tmp_path / "out", arm_info=INFO, comparisons=comparisons)
    answers = _answers(paths["md"].read_text())
    assert ("**multilingual** (multilingual +MLM +translated) against **english** (English-only): "
            "+0.8 ± 0.6 XTREME avg vs english (95% interval [+0.2, +1.4], significant at 95%, p = 0.004, "
            "paired bootstrap), for 1.60x phase-1 cost") in answers
    assert "serving cost equal within 2% in samples/s over 1 engine/precision config" in answers
    assert "repeated timings spread up to 6%, so the gap is within measurement noise" in answers
    assert "served per arm: english: 1,000.0 samples/s (ds fp16, batch 8, 970.0 – 1,030.0 over 3 timings)" in answers
    assert "No arm without intermediate training was served" in answers
    rows = list(csv.DictReader(paths["csv"].open()))
    assert [(r["arm"], r["engine"], r["throughput_samples_per_s"]) for r in rows] == [
        ("english", "ds", "1000.0"), ("multilingual", "ds", "985.0")]
    md = paths["md"].read_text()
    # Per task: each arm's interval, then the paired difference from the English-only arm.
    assert "| multilingual − english |" in md
    assert "| xnli | 80.0 [79.5, 80.5] | 81.0 [80.5, 81.5] | +1.0 [+0.5, +1.5], p = 0.002 |" in md
    assert "| pawsx | 70.0 [69.5, 70.5] | 70.6 [70.1, 71.1] | – |" in md
    assert "95% intervals (paired bootstrap, 1,000 resamples)" in md
    # Not significant: the interval holds 0.
    comparisons[0]["xtreme_average"].update(difference=-0.8, low=-1.9, high=0.3, p_value=0.31)
    answers = _answers(build_report(results, [bench], tmp_path / "out2", arm_info=INFO,
                                    comparisons=comparisons)["md"].read_text())
    assert "+0.8 ± 1.1 XTREME avg vs english (95% interval [-0.3, +1.9], not significant at 95%, p = 0.31" in answers


def test_missing_inputs_are_named_not_invented(tmp_path):
    results = {"english": _results(tmp_path / "e.json", 80.0, 70.0),
               "multilingual": _results(tmp_path / "m.json", 81.0, 70.6)}
    paths = build_report(results, [], tmp_path / "out")
    answers = _answers(paths["md"].read_text())
    assert "not measured: no bench rows were given" in answers
    assert "one run each: no interval, no seeds and no paired comparison" in answers
    assert "phase-1 cost unknown for multilingual, english" in answers
    assert "XTREME-R average not computed for any arm" in answers
    assert "No error bars: every arm is one run" in answers
    assert not (tmp_path / "out" / "serving.png").exists() and not (tmp_path / "out" / "training.png").exists()
    # Bench rows, but no engine ran: said so, not "no bench rows".
    gone = _bench(tmp_path / "gone.jsonl", [_row("ds-kernel", "fp16", None, None, status="unavailable",
                                                 reason="needs CUDA")])
    answers = _answers(build_report(results, [gone], tmp_path / "out1")["md"].read_text())
    assert "not measured: no engine produced a timing (unavailable: ds-kernel fp16: needs CUDA)" in answers
    # Seeds' std when there is no interval, and no significance test without a comparison.
    seeds = {"values": [1, 2, 3], "runs": [], "std": {"xtreme_average": 0.4, "task_scores": {"xnli": 0.3}}}
    results["english"] = _results(tmp_path / "e2.json", 80.0, 70.0, seeds=seeds)
    results["multilingual"] = _results(tmp_path / "m2.json", 81.0, 70.6, seeds=seeds)
    answers = _answers(build_report(results, [], tmp_path / "out2")["md"].read_text())
    assert "+0.8 XTREME avg vs english (english 75.0 ± 0.4, multilingual 75.8 ± 0.4; ± std over 3 seeds; " \
           "no paired comparison was given, so no significance test)" in answers


def test_rerun_removes_figures_it_no_longer_writes(tmp_path):
    results = _two_arms(tmp_path)
    bench = _bench(tmp_path / "bench.jsonl", _timed("ds", "fp16", 1000.0, 2.0))
    build_report(results, [bench], tmp_path / "out", arm_info=INFO)
    assert (tmp_path / "out" / "pareto.png").is_file()
    (tmp_path / "out" / "DONE.json").write_text("{}")  # not the report's: left alone
    build_report(results, [], tmp_path / "out", arm_info=INFO)
    assert not (tmp_path / "out" / "pareto.png").exists() and not (tmp_path / "out" / "serving.png").exists()
    assert (tmp_path / "out" / "DONE.json").is_file() and (tmp_path / "out" / "training.png").is_file()


def test_index_html_is_self_contained(tmp_path):
    results = _two_arms(tmp_path)
    bench = _bench(tmp_path / "bench.jsonl", _timed("ds", "fp16", 1000.0, 2.0), served="english/phase2/xnli")
    sched = tmp_path / "study"
    sched.mkdir()
    (sched / "utilization.json").write_text(json.dumps(
        {"busy_worker_s": 110.0, "available_worker_s": 210.0, "utilization": 0.524, "wall_s": 105.0, "slots": 2}))
    from stilts_ds.figures import figure, png
    (sched / "timeline.png").write_bytes(png(figure((2, 1))))
    paths = build_report(results, [bench], tmp_path / "out", arm_info=INFO, schedule_dir=sched)
    page = paths["html"].read_text()
    srcs = re.findall(r'<img src="([^"]*)"', page)
    files = re.findall(r'data-file="([^"]*)"', page)
    assert sorted(files) == sorted(p.name for p in (tmp_path / "out").glob("*.png"))
    assert len(srcs) == 6 and all(s.startswith("data:image/png;base64,") for s in srcs)
    # Nothing fetched from anywhere: no external URL, script, stylesheet link or frame.
    assert not re.search(r'(src|href)="(?!data:)', page) and "<script" not in page and "<link" not in page
    assert "default-src 'none'; img-src data:" in page
    assert '<section id="answers">' in page and "RQ1 (inference efficiency)" in page
    assert "utilization <strong>52%</strong>" in page
    md = paths["md"].read_text()
    for name in re.findall(r"\]\(([^)]+\.png)\)", md):  # relative paths that exist beside report.md
        assert (tmp_path / "out" / name).is_file()


# ----------------------------------------------------------------------------- the plots themselves
def _crowded(tmp_path, n_arms=3, spread=0.05):
    """Arms with nearly equal accuracy, each served through four near-equal engines: labels
    that would sit on top of each other if placed naively."""
    arms, rows = [], []
    for k in range(n_arms):
        name = f"arm{k}"
        arms.append(arm_scores(name, _results(tmp_path / f"{name}.json", 80.0 + k * spread, 70.0),
                               {"data": "English-only" if k == 0 else "multilingual +MLM"}))
        for j, engine in enumerate(("torch-eager", "torch-sdpa", "ds", "ds-kernel")):
            rows.append(_row(engine, "fp16", 8, 1000.0 + 3 * j + k, arm=name))
            rows.append(_row(engine, "fp16", 1, 250.0, 2.0 + 0.01 * j, arm=name))
    return arms, read_bench([_bench(tmp_path / "crowded.jsonl", rows)])


def _labels(fig):
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    labels = [t for t in ax.texts if t.get_gid() == POINT_LABEL]
    return labels, [text_box(t, renderer) for t in labels], ax.get_window_extent(renderer)


def _legend_texts(fig):
    legend = fig.axes[0].get_legend()
    return [t.get_text() for t in legend.get_texts()] if legend else []


def test_point_labels_do_not_intersect(tmp_path):
    arms, bench = _crowded(tmp_path)
    fig = pareto_figure(arms, bench)
    fig.canvas.draw()  # the boxes as rendered
    labels, boxes, frame = _labels(fig)
    for (i, a), (j, b) in itertools.combinations(enumerate(boxes), 2):
        assert not a.overlaps(b), f"labels {labels[i].get_text()!r} and {labels[j].get_text()!r} overlap"
    for t, box in zip(labels, boxes):  # inside the plot, not cut off
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1, t.get_text()
    # Every point is labelled on the plot, or listed in the legend: none silently dropped.
    unplaced = [t for t in _legend_texts(fig) if t.endswith("label not placed")]
    assert len(labels) + len(unplaced) == 12 and len(labels) >= 8


def test_accuracy_axis_is_never_narrower_than_two_points_or_the_error_bars(tmp_path):
    # Nearly equal accuracy, no intervals: the axis still spans at least 4 points (±2).
    arms, bench = _crowded(tmp_path)
    lo, hi = pareto_figure(arms, bench).axes[0].get_ylim()
    assert hi - lo >= 4.0 and lo <= 75.0 and hi >= 75.05
    # Wide intervals: the axis holds every error bar's ends.
    results = _two_arms(tmp_path, english={"uncertainty": _interval(75.0, 6.0, {})},
                        multilingual={"uncertainty": _interval(75.8, 9.0, {})})
    scored = [arm_scores(n, p, INFO[n]) for n, p in results.items()]
    fig = training_figure(scored)
    lo, hi = fig.axes[0].get_ylim()
    assert lo <= 75.8 - 9.0 and hi >= 75.8 + 9.0
    caps = [y for line in fig.axes[0].lines for y in line.get_ydata()]
    assert lo <= min(caps) and max(caps) <= hi
    # The rule itself: a span at least min_span, padded, clipped at a bound only where nothing is cut.
    assert value_limits([50.0], min_span=4.0, pad=0.0) == (48.0, 52.0)
    assert value_limits([1.0], [0.5], [1.5], min_span=4.0, bounds=(0, 100))[0] == 0.0
    assert value_limits([50.0], [10.0], [90.0], pad=0.0) == (10.0, 90.0)


def _frontier(fig):
    (line,) = [ln for ln in fig.axes[0].lines if ln.get_gid() == FRONTIER]
    return line, [tuple(v) for v in line.get_xydata()]


def test_frontier_is_a_visible_line_through_its_points(tmp_path):
    results = _two_arms(tmp_path)
    scored = [arm_scores(n, p, INFO[n]) for n, p in results.items()]
    # english: 60 worker-s, 75.0; multilingual: 72 worker-s, 75.8 -- both on the frontier.
    line, verts = _frontier(training_figure(scored))
    assert line.get_visible() and line.get_linewidth() >= 1.0 and line.get_linestyle() != "None"
    assert (60.0, 75.0) in verts and (72.0, 75.8) in verts
    # A frontier of one point is still a line of nonzero length (to the axis edge).
    results["multilingual"] = _arm(tmp_path / "worse", "multilingual", 70.0, 60.0, 16.0, 20.0)
    scored = [arm_scores(n, p, INFO[n]) for n, p in results.items()]
    line, verts = _frontier(training_figure(scored))
    assert (60.0, 75.0) in verts and len(verts) >= 2 and len(set(verts)) >= 2
    # Per-arm serving: the frontier over samples/s and accuracy passes through its points.
    arms, bench = _crowded(tmp_path)
    line, verts = _frontier(pareto_figure(arms, bench))
    assert (1011.0, pytest.approx(75.05)) in verts  # arm2 through ds-kernel: fastest and most accurate


def test_report_cli_writes_the_page(tmp_path):
    results = _two_arms(tmp_path)
    bench = _bench(tmp_path / "bench" / "bench.jsonl", _timed("ds", "fp16", 1000.0, 2.0))
    out = CliRunner().invoke(main, ["report", "--results", f"english={results['english']}",
                                    "--results", f"multilingual={results['multilingual']}",
                                    "--bench", str(bench), "--output", str(tmp_path / "r")])
    assert out.exit_code == 0, out.output
    assert "## Answers" in out.output and "html: " in out.output
    assert (tmp_path / "r" / "index.html").is_file() and (tmp_path / "r" / "report.md").is_file()


def test_a_serving_gap_beyond_the_repeats_spread_is_called_real(tmp_path):
    """RQ1's verdict: a gap larger than the spread of the repeated timings is more than noise."""
    results = _two_arms(tmp_path)
    bench = _bench(tmp_path / "bench" / "bench.jsonl",
                   _timed("ds", "fp16", 1000.0, 2.0, arm="english")
                   + _timed("ds", "fp16", 800.0, 2.5, arm="multilingual"))
    answers = _answers(build_report(results, [bench], tmp_path / "out", arm_info=INFO)["md"].read_text())
    assert "serving cost equal within 20% in samples/s" in answers
    assert "repeated timings spread up to 6%, so the gap is larger than measurement noise" in answers


def test_accuracy_through_each_engine_follows_the_plot_rules(tmp_path):
    """engines.png: one point per (arm, engine, precision) with its score through that engine;
    labels that overlap nothing, a score axis no narrower than 4 points, the frontier through
    the fastest of the most accurate."""
    arms, rows = [], []
    for k in range(3):
        name = f"arm{k}"
        arms.append(arm_scores(name, _results(tmp_path / f"{name}.json", 80.0 + k * 0.05, 70.0),
                               {"data": "English-only" if k == 0 else "multilingual +MLM"}))
        for j, engine in enumerate(("torch-eager", "torch-sdpa", "ds", "ds-kernel")):
            for bs in (1, 8):
                rows.append(_row(engine, "fp16", bs, (1000.0 + 3 * j + k) * (1 if bs == 8 else 0.25), 2.0,
                                 arm=name, serving_batch_size=8, accuracy=80.0 + 0.01 * (j + k), metric="accuracy"))
    bench = read_bench([_bench(tmp_path / "engines.jsonl", rows)])
    fig = engines_figure(arms, bench)
    fig.canvas.draw()
    labels, boxes, frame = _labels(fig)
    for (i, a), (j, b) in itertools.combinations(enumerate(boxes), 2):
        assert not a.overlaps(b), f"labels {labels[i].get_text()!r} and {labels[j].get_text()!r} overlap"
    # Every point is labelled on the plot, or listed under it: none silently dropped.
    unplaced = [t.get_text().split(": ", 1)[1].split("; ") for t in fig.texts
                if t.get_text().startswith("labels not placed")]
    assert len(labels) + sum(map(len, unplaced)) == 12 and len(labels) >= 8
    lo, hi = fig.axes[0].get_ylim()
    assert hi - lo >= 4.0 and lo <= 80.0 and hi >= 80.05
    line, verts = _frontier(fig)
    assert (1011.0, pytest.approx(80.05)) in verts  # arm2 through ds-kernel: fastest and most accurate
    assert "no error bars" in fig._suptitle.get_text()
    # Rows without a score (timing alone): no figure, and the report says why.
    plain = read_bench([_bench(tmp_path / "plain.jsonl", [_row("ds", "fp16", 8, 1000.0, arm="arm0")])])
    assert engines_figure(arms, plain) is None


def test_accuracy_through_each_engine_gets_the_rows_intervals(tmp_path):
    """Bench rows carry a bootstrap interval of the score through each engine
    (``accuracy_low``/``_high``, stilts_ds.inference.bench): engines.png draws it as error bars
    and says so."""
    arms = [arm_scores("arm0", _results(tmp_path / "arm0.json", 80.0, 70.0), {"data": "English-only"})]
    rows = []
    for j, engine in enumerate(("torch-sdpa", "ds")):
        for bs in (1, 8):
            rows.append(_row(engine, "fp16", bs, (1000.0 + 50 * j) * (1 if bs == 8 else 0.25), 2.0, arm="arm0",
                             serving_batch_size=8, accuracy=80.0 + j, metric="accuracy",
                             accuracy_low=77.0 + j, accuracy_high=83.0 + j))
    fig = engines_figure(arms, read_bench([_bench(tmp_path / "engines.jsonl", rows)]))
    fig.canvas.draw()
    assert "error bars: 95% bootstrap intervals" in fig._suptitle.get_text()
    ax = fig.axes[0]
    spans = sorted(tuple(round(float(y), 3) for y in seg[:, 1]) for coll in ax.collections
                   for seg in getattr(coll, "get_segments", lambda: [])() if len(seg) == 2 and seg[0][0] == seg[1][0])
    assert (77.0, 83.0) in spans and (78.0, 84.0) in spans
