"""Per-example statistics of every metric: hand-computed rows, column sums that give the
official function's score back to 1e-9, vectorised combine, the JSON form and its checks.

    .venv/bin/python -m pytest -q tests/metrics/test_example_stats_metric.py
"""
import json
import math
import random
import warnings

import numpy as np
import pytest

from stilts_ds.metrics import (
    METRICS,
    STATS,
    ExampleStats,
    accuracy,
    accuracy_example_stats,
    bucc_example_stats,
    bucc_f1,
    combine,
    map_at_k_example_stats,
    mean_average_precision_at_k,
    mlqa_em_f1,
    mlqa_example_stats,
    seqeval_example_stats,
    seqeval_f1,
    squad_v1_em_f1,
    squad_v1_example_stats,
    squad_v2_em_f1,
    squad_v2_example_stats,
    tag_accuracy,
    tag_accuracy_example_stats,
    tatoeba_accuracy,
    tatoeba_example_stats,
)
from stilts_ds.metrics.example_stats import score_mismatch


def _agrees(metric, rows, official):
    got = combine(metric, np.asarray(rows).sum(axis=0))
    assert set(got) == set(official)
    for key, value in official.items():
        a, b = float(got[key]), float(value)
        assert (math.isnan(a) and math.isnan(b)) or abs(a - b) <= 1e-9, (key, a, b)


def test_every_metric_has_statistics():
    assert set(STATS) == set(METRICS)


def test_accuracy_rows():
    rows = accuracy_example_stats(["a", "b", "c"], ["a", "a", "c"])
    assert rows.tolist() == [[1, 1], [0, 1], [1, 1]]
    _agrees("accuracy", rows, accuracy(["a", "b", "c"], ["a", "a", "c"]))
    assert combine("accuracy", [2, 3]) == {"accuracy": pytest.approx(200 / 3)}
    with pytest.raises(ValueError, match="one prediction per label"):
        accuracy_example_stats(["a"], [])
    _agrees("tatoeba_accuracy", tatoeba_example_stats(["0", "1"], [0, 2]), tatoeba_accuracy(["0", "1"], [0, 2]))


def test_squad_v1_rows():
    refs = {"q1": ["Denver Broncos"], "q2": ["Paris", "the city of Paris"], "q3": ["blue whale"], "q4": ["x"]}
    preds = {"q1": "the Denver Broncos!", "q2": "city of Paris", "q3": "whale shark"}  # q4 unanswered
    rows = squad_v1_example_stats(refs, preds)
    assert rows[:, 0].tolist() == [1, 1, 0, 0]
    assert rows[:, 1].tolist() == pytest.approx([1.0, 1.0, 0.5, 0.0])  # q3: 1 of 2 tokens each way
    assert rows[:, 2].tolist() == [1, 1, 1, 1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _agrees("squad_v1", rows, squad_v1_em_f1(refs, preds))


def test_mlqa_rows_use_the_language():
    refs = {"q1": ["北京"], "q2": ["der Hund"]}
    rows = mlqa_example_stats(refs, {"q1": "北京大学", "q2": "Hund"}, "zh")
    assert rows[0].tolist() == pytest.approx([0, 2 / 3, 1])  # zh: character tokens
    _agrees("mlqa", rows, mlqa_em_f1(refs, {"q1": "北京大学", "q2": "Hund"}, "zh"))
    de = mlqa_example_stats({"q2": ["der Hund"]}, {"q2": "Hund"}, "de")
    assert de[0].tolist() == [1, 1, 1]  # de drops "der"
    with pytest.raises(ValueError, match="unknown MLQA language"):
        mlqa_example_stats(refs, {}, "xx")


def test_squad_v2_rows_fill_their_own_subset():
    refs = {"a": ["Paris"], "b": [], "c": ["Rome"], "d": []}
    preds = {"a": "Paris", "b": "", "c": "Milan"}  # d unanswered
    rows = squad_v2_example_stats(refs, preds)
    assert rows.tolist() == [[1, 1, 1, 1, 1, 1, 0, 0, 0],
                             [1, 1, 1, 0, 0, 0, 1, 1, 1],
                             [0, 0, 1, 0, 0, 1, 0, 0, 0],
                             [0, 0, 1, 0, 0, 0, 0, 0, 1]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _agrees("squad_v2", rows, squad_v2_em_f1(refs, preds))
    # No unanswerable question: the no-answer scores are NaN on both sides.
    _agrees("squad_v2", squad_v2_example_stats({"a": ["Paris"]}, {"a": "Paris"}), squad_v2_em_f1({"a": ["Paris"]}, {"a": "Paris"}))


def test_seqeval_rows_per_sentence():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-LOC", "O"], ["O"]]
    pred = [["B-PER", "I-PER", "O", "O"], ["B-LOC", "B-PER"], ["B-ORG"]]
    rows = seqeval_example_stats(gold, pred)
    # sentence 0: PER right, LOC missed; 1: LOC right, PER extra; 2: ORG extra
    assert rows.tolist() == [[1, 0, 1], [1, 1, 0], [0, 1, 0]]
    _agrees("seqeval_f1", rows, seqeval_f1(gold, pred))


def test_seqeval_x_chunks_run_across_sentences_as_seqeval_counts_them():
    # "X" has type '_', like the 'O' seqeval puts between sentences (corpus: NOUN X O X VERB O X O).
    # Gold: the X ending sentence 0 and the X opening sentence 1 are one chunk ('_', 1, 3), and
    # the trailing X run is never closed: OUN(0), _(1-3), ERB(4). Predicted (NOUN X O NOUN VERB
    # O X O): the X run is still open when NOUN starts at 3 (after an 'O' nothing ends), so it
    # is lost: OUN(0), OUN(3), ERB(4). Right: OUN(0) and ERB(4); extra: OUN(3), in sentence 1;
    # missed: _(1-3), counted in sentence 0 where it starts. Sentence by sentence on their own,
    # the gold side would instead hold OUN, _, _, ERB and a closed X in sentence 2.
    gold = [["NOUN", "X"], ["X", "VERB"], ["X"]]
    pred = [["NOUN", "X"], ["NOUN", "VERB"], ["X"]]
    rows = seqeval_example_stats(gold, pred)
    assert rows.tolist() == [[1, 0, 1], [1, 1, 0], [0, 0, 0]]
    assert seqeval_f1(gold, pred) == pytest.approx({"f1": 200 / 3, "precision": 200 / 3, "recall": 200 / 3})
    _agrees("seqeval_f1", rows, seqeval_f1(gold, pred))


@pytest.mark.filterwarnings("ignore::UserWarning")  # seqeval's "ill-defined" on empty corpora
def test_seqeval_random_corpora_match_exactly():
    rng = random.Random(7)
    tags = ["NOUN", "VERB", "X", "ADJ", "SYM", "INTJ", "B-PER", "I-PER", "O", "B-LOC", "I-LOC"]
    for _ in range(200):
        gold = [[rng.choice(tags) for _ in range(rng.randrange(0, 6))] for _ in range(rng.randrange(1, 8))]
        pred = [[t if rng.random() < 0.5 else rng.choice(tags) for t in sentence] for sentence in gold]
        _agrees("seqeval_f1", seqeval_example_stats(gold, pred), seqeval_f1(gold, pred))


def test_tag_accuracy_rows_are_words():
    gold, pred = [["NP", "S"], ["N"]], [["NP", "NP"], ["N"]]
    rows = tag_accuracy_example_stats(gold, pred)
    assert rows.tolist() == [[1, 2], [1, 1]]
    _agrees("tag_accuracy", rows, tag_accuracy(gold, pred))


def test_bucc_rows_per_source_sentence():
    gold = [("de-1", "en-1"), ("de-2", "en-2"), ("de-3", "en-3")]
    predicted = [("de-1", "en-1"), ("de-2", "en-9"), ("de-7", "en-4")]  # de-7: a distractor
    guids, rows = bucc_example_stats(gold, predicted, sources=["de-1", "de-2", "de-3", "de-7", "de-8"])
    assert guids == ["de-1", "de-2", "de-3", "de-7", "de-8"]
    assert rows.tolist() == [[1, 0, 0], [0, 1, 1], [0, 0, 1], [0, 1, 0], [0, 0, 0]]
    _agrees("bucc_f1", rows, bucc_f1(gold, predicted))
    # Sources not listed come after, gold first; nothing right: all zero, as bucc_f1 says.
    guids, rows = bucc_example_stats(gold, [("de-9", "en-1")])
    assert guids == ["de-1", "de-2", "de-3", "de-9"]
    _agrees("bucc_f1", rows, bucc_f1(gold, [("de-9", "en-1")]))
    assert combine("bucc_f1", rows.sum(axis=0)) == {"f1": 0.0, "precision": 0.0, "recall": 0.0}


def test_map_rows_per_query():
    gold = {"q1": {"d1"}, "q2": {"d2", "d3"}, "q3": {"d4"}}
    ranked = {"q1": ["d9", "d1"], "q2": ["d2", "d2", "d3"]}  # q3 unranked; d2 listed twice
    rows = map_at_k_example_stats(ranked, gold, k=20)
    assert rows[:, 0].tolist() == pytest.approx([0.5, (1 + 2 / 3) / 2, 0.0])
    assert rows[:, 1].tolist() == [1, 1, 1]
    _agrees("lareqa_map_at_20", rows, mean_average_precision_at_k(ranked, gold, k=20))
    with pytest.raises(ValueError, match="no gold entry"):
        map_at_k_example_stats({"q9": []}, gold)


def test_combine_is_vectorised_over_resamples():
    sums = np.array([[3, 4], [1, 4], [0, 4]])
    out = combine("accuracy", sums)
    assert out["accuracy"].tolist() == [75.0, 25.0, 0.0]
    prf = combine("seqeval_f1", np.array([[0, 0, 0], [2, 2, 0]]))
    assert prf["f1"].tolist() == pytest.approx([0.0, 100 * 2 * 0.5 / 1.5])
    with pytest.raises(ValueError, match="3 columns"):
        combine("seqeval_f1", [1, 2])
    with pytest.raises(KeyError, match="no per-example statistics"):
        combine("bleu", [1])


def test_example_stats_json_round_trip_and_checks():
    stats = ExampleStats("squad_v1", ["q1", "q2"], [[1, 1, 1], [0, 0.5, 1]])
    obj = json.loads(json.dumps(stats.to_json()))
    assert obj == {"metric": "squad_v1", "stats": ["exact_match", "f1", "total"], "guids": ["q1", "q2"],
                   "values": [[1.0, 1.0, 1.0], [0.0, 0.5, 1.0]]}
    back = ExampleStats.from_json(obj)
    assert back.guids == stats.guids and np.array_equal(back.values, stats.values)
    assert back.score() == {"exact_match": 50.0, "f1": 75.0}
    assert back.select(["q2"]).values.tolist() == [[0, 0.5, 1]]
    assert score_mismatch(back, {"exact_match": 50.0, "f1": 75.0}) == []
    assert score_mismatch(back, {"exact_match": 51.0, "f1": 75.0}) == ["exact_match"]
    with pytest.raises(ValueError, match="appears twice"):
        ExampleStats("accuracy", ["a", "a"], [[1, 1], [0, 1]])
    with pytest.raises(ValueError, match="shape"):
        ExampleStats("accuracy", ["a"], [[1, 1, 1]])
    with pytest.raises(ValueError, match="columns"):
        ExampleStats.from_json({**obj, "stats": ["em", "f1", "total"]})
    with pytest.raises(ValueError, match="finite"):
        ExampleStats("accuracy", ["a"], [[math.nan, 1]])
