"""compare_runs: two arms' phase-3 per-example files, the paired bootstrap pooled over seeds.

Most tests write run directories as phase 3 does (``phase3/<task>/scores.json`` and
``examples/<lang>.json``, through ``Format.score`` / ``Format.example_stats``) from the bundled
fixtures' references and hand-made predictions of two skills, over all ten XTREME-R tasks
plus PAWS-X and BUCC, so both averages exist. The last one runs a tiny study in-process and
compares its real phase-3 output.

    .venv/bin/python -m pytest -q tests/studies/test_significance.py
"""
import json
import random
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from stilts_ds.data.sources import FIXTURES_DIR, load_examples, load_labels
from stilts_ds.errors import StiltsError
from stilts_ds.studies.results import write_results
from stilts_ds.studies.significance import compare_runs, read_run
from stilts_ds.tasks.features import Features
from stilts_ds.tasks.formats import format_of
from stilts_ds.tasks.formats.retrieval import TARGET
from stilts_ds.tasks.registry import get_task

TASKS = ("xnli", "pawsx", "xcopa", "udpos", "panx", "xquad", "mlqa", "tydiqa", "bucc", "tatoeba", "mewslix", "lareqa")


def _predict(spec, examples, refs, skill, rng):
    """Right with probability ``skill`` per example, wrong otherwise (the format's decode shape)."""
    right = lambda: rng.random() < skill
    if spec.format == "pair_classification":
        labels = load_labels(spec)
        return {g: y if right() else next(l for l in labels if l != y) for g, y in refs.items()}
    if spec.format == "multiple_choice":
        return {g: y if right() else (y + 1) % spec.options.num_choices for g, y in refs.items()}
    if spec.format == "span_qa":
        return {g: a[0] if right() else "nothing at all" for g, a in refs.items()}
    if spec.format == "tagging":
        labels = load_labels(spec)
        return {g: tags if right() else [labels[(labels.index(t) + 1) % len(labels)] for t in tags]
                for g, tags in refs.items()}
    targets = [e.guid for e in examples if e.side == TARGET]
    if spec.metric == "tatoeba_accuracy":
        return {s: t if right() else next(x for x in targets if x != t) for s, t in refs.items()}
    if spec.metric == "bucc_f1":
        return [(s, t if right() else next(x for x in targets if x != t)) for s, t in refs.items()]
    return {q: (list(r) if right() else []) + [x for x in targets if x not in r][:5] for q, r in refs.items()}


def _write_run(root: Path, skill: float, seed: int) -> dict:
    """A run directory as phase 3 leaves it; returns its {task: {lang: scores}}."""
    rng = random.Random(seed)
    all_scores = {}
    for task in TASKS:
        spec = get_task(task)
        fmt = format_of(spec)
        task_dir = root / "phase3" / task
        scores = {}
        for path in sorted((FIXTURES_DIR / task).glob("test.*.jsonl")):
            lang = path.name.split(".")[1]
            examples = load_examples(spec, "test", lang)
            refs = fmt.references(examples)
            extras = {"references": refs}
            if spec.format == "retrieval":
                extras["sides"] = np.array([e.side for e in examples], dtype=object)
            feats = Features(format=spec.format, columns={}, guids=np.array([e.guid for e in examples], dtype=object),
                             extras=extras)
            preds = _predict(spec, examples, refs, skill, rng)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                scores[lang] = fmt.score(spec, feats, preds, lang)
            stats = fmt.example_stats(spec, feats, preds, lang)
            (task_dir / "examples").mkdir(parents=True, exist_ok=True)
            (task_dir / "examples" / f"{lang}.json").write_text(
                json.dumps({"task": task, "lang": lang, **stats.to_json()}))
        (task_dir / "scores.json").write_text(json.dumps({task: scores}))
        all_scores[task] = scores
    return all_scores


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for name, skill, seed in (("strong1", 0.9, 1), ("strong2", 0.9, 2), ("weak1", 0.5, 3), ("weak2", 0.5, 4)):
        out[name] = (root / name, _write_run(root / name, skill, seed))
    return out


def test_averages_are_results_json_averages_and_the_gap_is_significant(runs, tmp_path):
    (a, scores_a), (b, scores_b) = runs["strong1"], runs["weak1"]
    out = compare_runs([a], [b])
    ra, rb = write_results(tmp_path / "a.json", scores_a), write_results(tmp_path / "b.json", scores_b)
    assert ra["xtreme_r_average"] is not None  # all ten XTREME-R tasks: both averages exist
    for key in ("xtreme_average", "xtreme_r_average"):
        row = out[key]
        assert row["a"] == pytest.approx(ra[key], abs=1e-9) and row["b"] == pytest.approx(rb[key], abs=1e-9)
        assert row["difference"] == pytest.approx(ra[key] - rb[key], abs=1e-9)
        assert row["low"] < row["difference"] < row["high"]
        assert row["p_value"] < 0.01 and row["low"] > 0
    for task in TASKS:
        row = out["tasks"][task]
        assert row["a"] == pytest.approx(ra["task_scores"][task], abs=1e-9)
        assert row["dropped"] == 0 and row["examples"] > 0
    # One run a side: nothing is pooled, and the method says so; several: "pooled over seeds".
    assert out["method"] == "paired bootstrap over test examples"
    assert "a" not in out and compare_runs([a], [b], names=("english", "none"))["a"] == "english"
    assert (out["resamples"], out["seed"], out["level"]) == (1000, 0, 0.95)
    assert out["examples"]["dropped"] == 0


def test_an_arm_against_itself(runs):
    a = runs["strong1"][0]
    out = compare_runs([a], [a])
    for row in [out["xtreme_average"], out["xtreme_r_average"], *out["tasks"].values()]:
        assert (row["difference"], row["low"], row["high"], row["p_value"]) == (0.0, 0.0, 0.0, 1.0)


def test_seeds_pool_and_results_repeat(runs):
    (a1, s1), (a2, s2) = runs["strong1"], runs["strong2"]
    (b1, _), (b2, _) = runs["weak1"], runs["weak2"]
    out = compare_runs([a1, a2], [b1, b2])
    assert out["method"] == "paired bootstrap over test examples, pooled over seeds"
    mean_a = (write_results(a1 / "r.json", s1)["xtreme_average"] + write_results(a2 / "r.json", s2)["xtreme_average"]) / 2
    assert out["xtreme_average"]["a"] == pytest.approx(mean_a, abs=1e-9)
    assert out["runs"] == {"a": 2, "b": 2}
    assert json.dumps(out) == json.dumps(compare_runs([a1, a2], [b1, b2]))  # byte-identical
    assert json.dumps(out) != json.dumps(compare_runs([a1, a2], [b1, b2], seed=1))


def test_examples_not_in_every_run_are_dropped_and_counted(runs, tmp_path):
    a = runs["strong1"][0]
    b = tmp_path / "weak"
    shutil.copytree(runs["weak1"][0], b)
    # b lost xnli's zh file and three tatoeba ru examples (its scores.json says the same).
    (b / "phase3" / "xnli" / "examples" / "zh.json").unlink()
    scores = json.loads((b / "phase3" / "xnli" / "scores.json").read_text())
    del scores["xnli"]["zh"]
    (b / "phase3" / "xnli" / "scores.json").write_text(json.dumps(scores))
    ru = b / "phase3" / "tatoeba" / "examples" / "ru.json"
    obj = json.loads(ru.read_text())
    obj["guids"], obj["values"] = obj["guids"][3:], obj["values"][3:]
    ru.write_text(json.dumps(obj))
    tscores = json.loads((b / "phase3" / "tatoeba" / "scores.json").read_text())
    tscores["tatoeba"]["ru"] = {"accuracy": sum(v[0] for v in obj["values"]) / len(obj["values"]) * 100}
    (b / "phase3" / "tatoeba" / "scores.json").write_text(json.dumps(tscores))
    out = compare_runs([a], [b])
    zh = len(read_run(a)["xnli"]["zh"])
    assert out["tasks"]["xnli"]["dropped"] == zh and out["tasks"]["tatoeba"]["dropped"] == 3
    assert out["examples"]["dropped"] == zh + 3
    full = compare_runs([a], [runs["weak1"][0]])
    assert out["examples"]["compared"] == full["examples"]["compared"] - zh - 3


def test_runs_without_per_example_files_are_refused(runs, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(runs["weak1"][0], old)
    shutil.rmtree(old / "phase3" / "panx" / "examples")
    with pytest.raises(StiltsError, match="no per-example statistics for panx"):
        compare_runs([runs["strong1"][0]], [old])
    with pytest.raises(StiltsError, match="no phase3 directory"):
        compare_runs([runs["strong1"][0]], [tmp_path / "nothing"])
    stale = tmp_path / "stale"
    shutil.copytree(runs["weak1"][0], stale)
    (stale / "phase3" / "xnli" / "scores.json").write_text(json.dumps({"xnli": {"en": {"accuracy": 12.5}}}))
    with pytest.raises(StiltsError, match="does not give back the scores of xnli en"):
        compare_runs([runs["strong1"][0]], [stale])


def test_real_phase3_output(tmp_path):
    """A tiny study in-process (tests/engine/test_training.py's quick-start settings, one
    intermediate task to keep it short): phase 3
    writes a per-example file per (task, language) that gives back scores.json, results.json
    gets its error bars, and compare_runs reads the run."""
    from stilts_ds.config import load_config
    from stilts_ds.studies.pipeline import Study

    quickstart = Path(__file__).resolve().parents[2] / "configs" / "quickstart.yaml"
    cfg = load_config(quickstart, {"output_dir": str(tmp_path / "run"), "cluster.num_workers": 1, "arms": {},
                                   "intermediate.tasks": ["mnli"], "finetune.tasks": ["panx"],
                                   "evaluate.tasks": ["panx", "tatoeba", "bucc"],
                                   "intermediate.max_steps": 2, "finetune.defaults.max_steps": 2})
    run = cfg.run_dir
    stale = run / "phase3" / "tatoeba" / "examples" / "xx.json"  # a language an earlier evaluation scored
    stale.parent.mkdir(parents=True)
    stale.write_text("{}")
    results = Study(cfg, in_process=True, progress=False).run()
    assert not stale.exists()
    for task in ("panx", "tatoeba", "bucc"):  # bucc: a job item per language, each tuned on its dev split
        scores = json.loads((run / "phase3" / task / "scores.json").read_text())[task]
        files = sorted(p.stem for p in (run / "phase3" / task / "examples").glob("*.json"))
        assert files == sorted(scores)
        for lang, official in scores.items():
            obj = json.loads((run / "phase3" / task / "examples" / f"{lang}.json").read_text())
            assert {"metric", "stats", "guids", "values"} <= set(obj) and obj["lang"] == lang
        stats = read_run(run)[task]
        for lang, official in scores.items():
            assert stats[lang].score() == pytest.approx(official, abs=1e-9)
    bars = results["uncertainty"]
    assert set(bars["tasks"]) == set(bars["task_scores"]) == {"panx", "tatoeba", "bucc"}
    assert bars["xtreme_average"]["low"] <= results["xtreme_average"] <= bars["xtreme_average"]["high"]
    same = compare_runs([run], [run])
    assert same["xtreme_average"]["difference"] == 0.0 and same["xtreme_average"]["p_value"] == 1.0
    assert same["examples"]["dropped"] == 0 and same["examples"]["compared"] > 0


def test_arm_comparisons_pairs_every_arm_with_each_reference(runs, tmp_path):
    """The report's comparisons: every arm against the no-intermediate arm and against the
    English-only one (by arms.json's data), each arm's runs found from its results.json (a
    seeds' combination lists its runs); an arm whose runs hold no per-example files is a note,
    not a failure."""
    from stilts_ds.studies.significance import arm_comparisons

    (s1, scores1), (s2, _), (w1, scores_w) = runs["strong1"], runs["strong2"], runs["weak1"]
    multi = tmp_path / "multilingual" / "results.json"
    write_results(multi, scores1, extra={"seeds": {"values": [1, 2], "runs": [str(s1), str(s2)]}})
    english = w1 / "results.json"
    write_results(english, scores_w)
    empty = tmp_path / "none"
    (empty / "phase3").mkdir(parents=True)
    write_results(empty / "results.json", scores_w)
    results = {"multilingual": multi, "english": english, "none": empty / "results.json"}
    info = {"multilingual": {"data": "multilingual +MLM"}, "english": {"data": "English-only"}, "none": {"data": "none"}}
    comparisons, notes = arm_comparisons(results, info)
    assert [(c["a"], c["b"]) for c in comparisons] == [("multilingual", "english")]
    (c,) = comparisons
    assert c["runs"] == {"a": 2, "b": 1} and c["xtreme_average"]["p_value"] < 0.01
    assert c["xtreme_average"]["difference"] == pytest.approx(c["xtreme_average"]["a"] - c["xtreme_average"]["b"])
    assert len(notes) == 2 and all("none: no paired comparison" in n for n in notes)
    assert arm_comparisons({"x": english}, {"x": {"data": "multilingual"}}) == (
        [], ["no arm without intermediate training and no English-only arm: nothing to compare against"])
