"""results.json's error bars: the "uncertainty" schema, intervals around the scores they
belong to, the Markdown "score [low, high]", the results node reading phase 3's per-example
files, and nothing changed for runs without them.

    .venv/bin/python -m pytest -q tests/studies/test_results_uncertainty.py
"""
import json
from types import SimpleNamespace

import numpy as np
import pytest

from stilts_ds.metrics import ExampleStats, seqeval_example_stats
from stilts_ds.metrics.aggregate import XTREME_R_LANGUAGES
from stilts_ds.studies.results import (
    ResultsError,
    example_stats_of,
    load_results,
    results_markdown,
    write_results,
)
from stilts_ds.studies.runners import Runners


def _acc(n, p, seed, prefix):
    correct = (np.random.default_rng(seed).random(n) < p).astype(float)
    return ExampleStats("accuracy", [f"{prefix}{i}" for i in range(n)], np.column_stack([correct, np.ones(n)]))


def _qa(n, p, seed):
    rng = np.random.default_rng(seed)
    em = (rng.random(n) < p).astype(float)
    f1 = np.clip(em + 0.5 * rng.random(n), 0, 1)
    return ExampleStats("squad_v1", [f"q{i}" for i in range(n)], np.column_stack([em, f1, np.ones(n)]))


def _ner(n, p, seed):
    rng = np.random.default_rng(seed)
    gold = [["B-PER", "I-PER", "O", "B-LOC"] for _ in range(n)]
    pred = [s if rng.random() < p else ["B-PER", "O", "O", "B-LOC"] for s in gold]
    return ExampleStats("seqeval_f1", [f"s{i}" for i in range(n)], seqeval_example_stats(gold, pred))


STATS = {
    "xnli": {"en": _acc(400, 0.8, 1, "x"), "de": _acc(300, 0.7, 2, "x")},
    "panx": {"en": _ner(300, 0.8, 3), "de": _ner(200, 0.6, 4)},
    "xquad": {"en": _qa(300, 0.7, 5), "ro": _qa(200, 0.5, 6)},  # ro: an XTREME-R language only
}
SCORES = {t: {lang: s.score() for lang, s in per_lang.items()} for t, per_lang in STATS.items()}


def test_uncertainty_schema_and_intervals_around_the_scores(tmp_path):
    res = write_results(tmp_path / "results.json", SCORES, extra={"name": "x"}, example_stats=STATS)
    bars = res["uncertainty"]
    assert list(bars) == ["method", "resamples", "seed", "level", "tasks", "task_scores", "xtreme_average"]
    assert (bars["method"], bars["resamples"], bars["seed"], bars["level"]) == \
        ("percentile bootstrap over test examples", 1000, 0, 0.95)
    for task, per_lang in SCORES.items():
        assert set(bars["tasks"][task]) == set(per_lang)
        for lang, scores in per_lang.items():
            assert set(bars["tasks"][task][lang]) == set(scores)  # f1, precision, recall for panx
            for metric, value in scores.items():
                b = bars["tasks"][task][lang][metric]
                assert list(b) == ["low", "high"] and b["low"] <= value <= b["high"]
        b = bars["task_scores"][task]
        assert b["low"] < res["task_scores"][task] < b["high"]
    assert bars["xtreme_average"]["low"] < res["xtreme_average"] < bars["xtreme_average"]["high"]
    assert "xtreme_r_average" not in bars  # XTREME-R lacks seven of its tasks: no average, no interval
    assert load_results(tmp_path / "results.json") == res
    # Everything else is what it was without per-example statistics.
    plain = write_results(tmp_path / "plain.json", SCORES, extra={"name": "x"})
    assert "uncertainty" not in plain
    assert {k: v for k, v in res.items() if k != "uncertainty"} == plain


def test_averages_bootstrap_the_languages_each_average_uses(tmp_path):
    # xquad's ro counts in its task score but not in the XTREME average: resampling ro must
    # move the task score's interval and leave the XTREME average's alone.
    res = write_results(tmp_path / "r.json", SCORES, example_stats=STATS)
    wider_ro = {**STATS, "xquad": {"en": STATS["xquad"]["en"], "ro": _qa(20, 0.5, 6)}}
    scores = {**SCORES, "xquad": {lang: s.score() for lang, s in wider_ro["xquad"].items()}}
    res2 = write_results(tmp_path / "r2.json", scores, example_stats=wider_ro)
    width = lambda b: b["high"] - b["low"]
    assert width(res2["uncertainty"]["task_scores"]["xquad"]) > width(res["uncertainty"]["task_scores"]["xquad"])
    assert res2["uncertainty"]["xtreme_average"] == res["uncertainty"]["xtreme_average"]


def test_xtreme_r_average_gets_an_interval_when_it_exists(tmp_path):
    stats = {t: {langs[0]: (_acc(100, 0.6, i, t) if t not in ("mewslix", "lareqa") else
                            ExampleStats("mewslix_map_at_20", [f"m{j}" for j in range(100)],
                                         np.column_stack([np.linspace(0, 1, 100), np.ones(100)])))}
             for i, (t, langs) in enumerate(XTREME_R_LANGUAGES.items())}
    scores = {t: {lang: s.score() for lang, s in p.items()} for t, p in stats.items()}
    res = write_results(tmp_path / "r.json", scores, example_stats=stats)
    b = res["uncertainty"]["xtreme_r_average"]
    assert b["low"] < res["xtreme_r_average"] < b["high"]
    assert "**XTREME-R average: " in results_markdown(res) and " [" in results_markdown(res).split("XTREME-R")[1]


def test_markdown_shows_score_low_high(tmp_path):
    res = write_results(tmp_path / "results.json", SCORES, example_stats=STATS)
    lines = results_markdown(res).splitlines()
    assert lines[0] == "| task | metric | en | de | ro | avg | score [95% CI] |"
    assert lines[1] == "|---|---|---:|---:|---:|---:|---:|"
    b = res["uncertainty"]["task_scores"]["xnli"]
    assert lines[2].endswith(f"| {res['task_scores']['xnli']:.1f} [{b['low']:.1f}, {b['high']:.1f}] |")
    a = res["uncertainty"]["xtreme_average"]
    shown = f"**XTREME average: {res['xtreme_average']:.1f} [{a['low']:.1f}, {a['high']:.1f}]** (mean over 3"
    assert any(line.startswith(shown) for line in lines), lines
    assert lines[-1] == "[low, high]: 95% percentile bootstrap over test examples (1,000 resamples, seed 0)"
    # Without error bars the table is exactly the old one.
    plain = write_results(tmp_path / "plain.json", SCORES)
    assert "score [" not in results_markdown(plain) and "[low, high]" not in results_markdown(plain)


def test_computed_intervals_cannot_be_overwritten(tmp_path):
    with pytest.raises(ResultsError, match="would overwrite a computed field"):
        write_results(tmp_path / "r.json", SCORES, extra={"uncertainty": {}}, example_stats=STATS)


def test_partial_statistics_are_refused(tmp_path):
    with pytest.raises(ResultsError, match="no per-example statistics for panx/de"):
        write_results(tmp_path / "r.json", SCORES, example_stats={**STATS, "panx": {"en": STATS["panx"]["en"]}})
    assert not (tmp_path / "r.json").exists()


def _phase3(root, task, per_lang, *, files=True):
    d = root / "phase3" / task
    d.mkdir(parents=True)
    (d / "scores.json").write_text(json.dumps({task: {lang: s.score() for lang, s in per_lang.items()}}))
    if files:
        (d / "examples").mkdir()
        for lang, s in per_lang.items():
            (d / "examples" / f"{lang}.json").write_text(json.dumps({"task": task, "lang": lang, **s.to_json()}))
    return d


def _runners(root, deps):
    cfg = SimpleNamespace(run_dir=root, name="t", evaluate=SimpleNamespace(split="test"))
    nodes = {f"phase3/{t}": SimpleNamespace(dir=d) for t, d in deps.items()}
    graph = SimpleNamespace(config_of=lambda node: cfg, nodes=nodes)
    said = []
    node = SimpleNamespace(id="results", kind="results", deps=tuple(nodes))
    return Runners(graph, say=said.append), node, said


def test_results_node_reads_phase3_examples(tmp_path):
    deps = {t: _phase3(tmp_path, t, p) for t, p in STATS.items()}
    runners, node, said = _runners(tmp_path, deps)
    runners.run_driver(node)
    res = load_results(tmp_path / "results.json")
    assert res == write_results(tmp_path / "again.json", SCORES, extra={"name": "t", "split": "test"},
                                example_stats=STATS)
    assert "score [95% CI]" in (tmp_path / "results.md").read_text()
    assert said == []


def test_results_node_without_examples_writes_what_it_always_did(tmp_path):
    deps = {t: _phase3(tmp_path, t, p, files=(t != "panx")) for t, p in STATS.items()}
    runners, node, said = _runners(tmp_path, deps)
    runners.run_driver(node)
    res = load_results(tmp_path / "results.json")
    assert "uncertainty" not in res
    assert res == write_results(tmp_path / "old.json", SCORES, extra={"name": "t", "split": "test"})
    assert len(said) == 1 and "no error bars" in said[0] and "panx" in said[0]


def test_stale_or_broken_example_files_are_not_used(tmp_path):
    d = _phase3(tmp_path, "xnli", STATS["xnli"])
    assert example_stats_of(d, SCORES["xnli"] and {"xnli": SCORES["xnli"]})[0] is not None
    other = {"xnli": {"en": {"accuracy": 1.0}, "de": SCORES["xnli"]["de"]}}
    stats, why = example_stats_of(d, other)
    assert stats is None and "does not give back the scores of xnli en" in why
    (d / "examples" / "de.json").write_text("{")
    stats, why = example_stats_of(d, {"xnli": SCORES["xnli"]})
    assert stats is None and "de.json" in why
