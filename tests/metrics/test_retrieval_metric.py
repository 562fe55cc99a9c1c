"""BUCC F1 and threshold, Tatoeba accuracy, mAP@k: hand-computed."""

import pytest

from stilts_ds.metrics import (
    bucc_best_threshold,
    bucc_f1,
    bucc_pairs_above,
    mean_average_precision_at_k,
    tatoeba_accuracy,
)

GOLD = [("de-1", "en-1"), ("de-2", "en-2"), ("de-4", "en-4")]
CANDIDATES = [
    (("de-1", "en-1"), 0.9),  # right
    (("de-2", "en-2"), 0.8),  # right
    (("de-3", "en-9"), 0.7),  # wrong
    (("de-4", "en-4"), 0.6),  # right
    (("de-5", "en-9"), 0.5),  # wrong
]


def test_bucc_f1_known_answer():
    # 1 of 2 predictions right, 1 of 3 gold found: P=1/2, R=1/3, F1=2PR/(P+R)=0.4
    scores = bucc_f1([("a", "1"), ("b", "2"), ("c", "3")], [("a", "1"), ("b", "3"), ("b", "3")])
    assert scores == pytest.approx({"precision": 50.0, "recall": 100 / 3, "f1": 40.0})


def test_bucc_f1_is_zero_without_overlap_or_predictions():
    assert bucc_f1([("a", "1")], [("a", "2")]) == {"f1": 0.0, "precision": 0.0, "recall": 0.0}
    assert bucc_f1([("a", "1")], []) == {"f1": 0.0, "precision": 0.0, "recall": 0.0}


def test_bucc_best_threshold_sweeps_and_takes_midpoint():
    # F1 after taking the top n: n=1 0.5, n=2 0.8, n=3 0.667, n=4 6/7 (best), n=5 0.75
    # -> midpoint between the 4th and 5th scores.
    threshold = bucc_best_threshold(CANDIDATES, GOLD)
    assert threshold == pytest.approx(0.55)
    assert bucc_best_threshold(list(reversed(CANDIDATES)), GOLD) == threshold
    extracted = bucc_pairs_above(CANDIDATES, threshold)
    assert extracted == [pair for pair, _ in CANDIDATES[:4]]
    # P=3/4, R=1 -> F1 = 6/7
    assert bucc_f1(GOLD, extracted)["f1"] == pytest.approx(600 / 7)


def test_bucc_threshold_keeps_the_best_score_of_a_duplicate_pair():
    candidates = [(("de-1", "en-1"), 0.2), (("de-9", "en-9"), 0.5), (("de-1", "en-1"), 0.9)]
    # sorted: de-1 (0.9, right, F1 = 2*1*1/2 = 1 with one gold) -> midpoint (0.9+0.5)/2
    assert bucc_best_threshold(candidates, [("de-1", "en-1")]) == pytest.approx(0.7)


def test_bucc_threshold_without_any_correct_candidate_is_zero():
    assert bucc_best_threshold([(("a", "b"), 0.9)], [("x", "y")]) == 0.0
    assert bucc_best_threshold([], [("x", "y")]) == 0.0


def test_bucc_threshold_best_at_last_candidate_is_its_score():
    # The official code would index past the end here; every candidate is right.
    candidates = [(("a", "1"), 0.9), (("b", "2"), 0.4)]
    threshold = bucc_best_threshold(candidates, [("a", "1"), ("b", "2"), ("c", "3")])
    assert threshold == 0.4
    assert bucc_pairs_above(candidates, threshold) == [("a", "1"), ("b", "2")]


def test_tatoeba_accuracy_compares_as_strings():
    assert tatoeba_accuracy(["0", "1", "2", "3"], [0, 1, 1, 3]) == {"accuracy": 75.0}
    with pytest.raises(ValueError, match="2 labels and 1 predictions"):
        tatoeba_accuracy(["0", "1"], ["0"])


def test_mean_average_precision_at_k():
    ranked = {"q1": ["d1", "d2", "d3"], "q2": ["d5", "d5", "d4"]}
    gold = {"q1": {"d2", "d3"}, "q2": {"d5"}}
    # q1: hits at ranks 2 and 3 -> (1/2 + 2/3) / min(2, 20) = 7/12
    # q2: hit at rank 1, the repeated d5 is not credited again -> 1
    assert mean_average_precision_at_k(ranked, gold) == pytest.approx({"map@20": 100 * (7 / 12 + 1) / 2})
    # k=1: q1 top-1 misses -> 0 / min(2, 1); q2 -> 1
    assert mean_average_precision_at_k(ranked, gold, k=1) == pytest.approx({"map@1": 50.0})


def test_mean_average_precision_missing_query_scores_zero_and_bad_input_raises():
    assert mean_average_precision_at_k({}, {"q": {"d"}}) == {"map@20": 0.0}
    with pytest.raises(ValueError, match="no gold entry"):
        mean_average_precision_at_k({"other": ["d"]}, {"q": {"d"}})
    with pytest.raises(ValueError, match="no relevant documents"):
        mean_average_precision_at_k({}, {"q": set()})
