"""Format.example_stats on the bundled fixtures: for every metric the project reports, the
per-example statistics' column sums give back the format's official score to 1e-9.

Each case reads a fixture split's references (official row schemas, CJK, Arabic, Cyrillic
text) and scores two prediction sets through the Format object, as phase 3 does: the gold
answers, and a seeded corruption of them that exercises each metric's corners (span QA:
unanswered, empty, article-only and partly right answers; tagging: UD's "X" tag, whose
seqeval chunks run on across sentences; BUCC: pairs from distractor sentences; mAP: the
relevant candidate missing, late, or listed twice).

    .venv/bin/python -m pytest -q tests/tasks/test_example_stats.py
"""
from __future__ import annotations

import math
import random
import warnings

import numpy as np
import pytest

from stilts_ds.data.prepare import featurize_examples
from stilts_ds.data.sources import FIXTURES_DIR, load_examples, load_labels
from stilts_ds.metrics import ExampleStats
from stilts_ds.tasks.features import Features
from stilts_ds.tasks.formats import format_of
from stilts_ds.tasks.formats.retrieval import SOURCE, TARGET
from stilts_ds.tasks.registry import get_task


def _cases():
    """(task, split, lang) for every fixture file of the scored tasks."""
    cases = []
    for task in ("xnli", "pawsx", "xcopa", "udpos", "panx", "xquad", "mlqa", "tydiqa", "bucc", "tatoeba",
                 "lareqa", "mewslix"):
        for path in sorted((FIXTURES_DIR / task).glob("test.*.jsonl")):
            cases.append((task, "test", path.name.split(".")[1]))
    cases += [("squad_v1", "validation", "en"), ("squad_v2", "validation", "en"), ("hellaswag", "validation", "en"),
              ("ccg", "validation", "en")]
    return cases


CASES = _cases()


def test_every_reported_metric_is_covered():
    from stilts_ds.metrics import METRICS

    assert {get_task(t).metric for t, _, _ in CASES} == set(METRICS)


def _features(spec, examples, refs):
    if spec.format == "retrieval":
        return Features(format="retrieval", columns={}, guids=np.array([e.guid for e in examples], dtype=object),
                        extras={"references": refs, "sides": np.array([e.side for e in examples], dtype=object)})
    return Features(format=spec.format, columns={}, guids=np.array(list(refs), dtype=object),
                    extras={"references": refs})


def _corrupt(spec, examples, refs, rng: random.Random):
    """Seeded wrong-in-places predictions in the shape the format's decode returns."""
    fmt = spec.format
    if fmt == "pair_classification":
        labels = load_labels(spec)
        return {g: (y if rng.random() < 0.6 else rng.choice(labels)) for g, y in refs.items()}
    if fmt == "multiple_choice":
        choices = spec.options.num_choices
        return {g: (y if rng.random() < 0.6 else (y + 1) % choices) for g, y in refs.items()}
    if fmt == "span_qa":
        out = {}
        for g, answers in refs.items():
            gold = answers[0] if answers else ""
            pick = rng.randrange(8)
            if pick == 0:
                continue  # unanswered: scores 0 and still counts
            out[g] = [gold, f"the {gold}!", gold.split(" ")[0], f"{gold} und so weiter", "", "the",
                      gold[: max(1, len(gold) // 2)]][pick - 1]
        return out
    if fmt == "tagging":
        labels = list(load_labels(spec))
        odd = ["X"] if "X" in labels else labels[:2]
        return {g: [t if rng.random() < 0.6 else rng.choice(odd + labels) for t in tags] for g, tags in refs.items()}
    metric = spec.metric
    targets = [e.guid for e in examples if e.side == TARGET]
    sources = [e.guid for e in examples if e.side == SOURCE]
    if metric == "tatoeba_accuracy":
        return {s: (t if rng.random() < 0.6 else rng.choice(targets)) for s, t in refs.items()}
    if metric == "bucc_f1":
        pairs = [(s, t if rng.random() < 0.7 else rng.choice(targets)) for s, t in refs.items() if rng.random() < 0.8]
        distractors = [s for s in sources if s not in refs]
        return pairs + [(s, rng.choice(targets)) for s in distractors[:2]]
    ranked = {}
    for query, relevant in refs.items():
        if rng.random() < 0.1:
            continue  # no ranking at all: AP 0
        pool = rng.sample(targets, min(25, len(targets)))
        at = rng.randrange(22)
        pool.insert(at, relevant[0])
        if rng.random() < 0.2:
            pool.insert(at + 1, relevant[0])  # listed twice: credited once
        ranked[query] = pool[:20]
    return ranked


def _gold(spec, refs):
    if spec.format == "span_qa":
        return {g: (a[0] if a else "") for g, a in refs.items()}
    if spec.metric == "bucc_f1":
        return list(refs.items())
    if spec.metric in ("lareqa_map_at_20", "mewslix_map_at_20"):
        return {q: list(r) for q, r in refs.items()}
    return dict(refs)


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= 1e-9


@pytest.mark.parametrize("task, split, lang", CASES, ids=[f"{t}-{lang}" for t, _, lang in CASES])
def test_column_sums_give_the_official_score(task, split, lang):
    spec = get_task(task)
    fmt = format_of(spec)
    examples = load_examples(spec, split, lang)
    refs = fmt.references(examples)
    feats = _features(spec, examples, refs)
    for seed, predictions in [(None, _gold(spec, refs))] + [(s, None) for s in range(3)]:
        if predictions is None:
            predictions = _corrupt(spec, examples, refs, random.Random(f"{task}-{lang}-{seed}"))
        with warnings.catch_warnings():
            # Unanswered span-QA questions warn when scored: the metric's warning, expected here.
            warnings.simplefilter("ignore")
            official = fmt.score(spec, feats, predictions, lang)
        stats = fmt.example_stats(spec, feats, predictions, lang)
        assert isinstance(stats, ExampleStats) and stats.metric == spec.metric
        mine = stats.score()
        assert set(mine) == set(official), (task, lang, seed)
        for key, value in official.items():
            assert _same(mine[key], float(value)), (task, lang, seed, key, mine[key], value)
        if spec.metric == "bucc_f1":  # every source sentence, distractors included, in split order
            assert list(stats.guids) == [e.guid for e in examples if e.side == SOURCE]
        else:
            assert list(stats.guids) == list(refs)  # guid (reference) order kept


def test_evaluate_hands_each_language_over(tokenizer):
    """Format.evaluate with ``examples=``: one call per language, statistics that give back the
    scores it returns, and the same scores as without it."""
    spec = get_task("xnli")
    fmt = format_of(spec)
    labels = load_labels(spec)
    splits = []
    for lang in ("en", "zh"):
        splits.append((lang, featurize_examples(spec, load_examples(spec, "test", lang), tokenizer, 32, labels)))

    def predict(feats):  # a fixed, partly wrong "model": logits from the row index
        rows = np.arange(len(feats))
        return {"logits": np.eye(len(labels))[rows % len(labels)]}

    kept = {}
    with_stats = fmt.evaluate(spec, predict, splits, examples=lambda lang, s: kept.__setitem__(lang, s))
    assert with_stats == fmt.evaluate(spec, predict, splits)
    assert list(kept) == ["en", "zh"]
    for lang, scores in with_stats.items():
        assert kept[lang].score() == pytest.approx(scores, abs=1e-9)
        assert list(kept[lang].guids) == [str(g) for g in splits[[l for l, _ in splits].index(lang)][1].guids]
