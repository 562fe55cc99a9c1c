"""mAP@20 of XTREME-R's LAReQA (utils_lareqa.average_precision_at_k) and Mewsli-X
(utils_mewslix.evaluate): known answers, and agreement with a re-statement of the official
formulas on random rankings.

    .venv/bin/python -m pytest -q tests/metrics/test_map_metric.py
"""
import random

import pytest

from stilts_ds.metrics import mean_average_precision_at_k, mewslix_map_at_k


def official_ap_at_k(targets, ranked, k):
    """The official AP@k, restated: a hit at rank i (not listed earlier) adds hits / i."""
    ranked = list(ranked)[:k]
    score, hits = 0.0, 0
    for i, pred in enumerate(ranked):
        if pred in targets and pred not in ranked[:i]:
            hits += 1
            score += hits / (i + 1)
    return score / min(len(targets), k)


def official_mewslix_mrr(gold, predictions, k):
    golds = {q: labels[0].strip() for q, labels in gold.items()}
    total = 0.0
    for q, g in golds.items():
        for rank, p in enumerate(predictions.get(q, [])[:k], start=1):
            if p == g:
                total += 1 / rank
                break
    return total / len(golds)


def test_known_answers():
    # relevant {a, c}: hits at ranks 1 and 3 -> (1/1 + 2/3) / 2
    assert mean_average_precision_at_k({"q": ["a", "b", "c"]}, {"q": {"a", "c"}}) == pytest.approx(
        {"map@20": 100 * (1 + 2 / 3) / 2})
    # a duplicate is credited once; more relevant than k divides by k
    assert mean_average_precision_at_k({"q": ["a", "a", "b"]}, {"q": {"a", "b"}}, k=2) == {"map@2": 50.0}
    many = {f"d{i}" for i in range(30)}
    assert mean_average_precision_at_k({"q": [f"d{i}" for i in range(30)]}, {"q": many}) == {"map@20": 100.0}
    # Mewsli-X: first gold only, stripped; answer at rank 4 -> 1/4; beyond 20 -> 0
    assert mewslix_map_at_k({"m": [" Q1 ", "Q2"]}, {"m": ["Q9", "Q2", "Q8", "Q1"]}) == {"map@20": 25.0}
    assert mewslix_map_at_k({"m": ["Q1"]}, {"m": [f"Q{i}" for i in range(2, 22)] + ["Q1"]}) == {"map@20": 0.0}


def test_mewslix_missing_and_extra_predictions_follow_the_official_script():
    gold = {"m1": ["Q1"], "m2": ["Q2"]}
    # m2 unpredicted scores 0; "other" is not a gold mention and is ignored (no error)
    assert mewslix_map_at_k(gold, {"m1": ["Q1"], "other": ["Q3"]}) == {"map@20": 50.0}
    with pytest.raises(ValueError, match="non-empty list"):
        mewslix_map_at_k({"m1": []}, {})
    with pytest.raises(ValueError, match="non-empty list"):
        mewslix_map_at_k({"m1": "Q1"}, {})


@pytest.mark.parametrize("seed", range(25))
def test_random_rankings_match_the_official_formulas(seed):
    rng = random.Random(seed)
    docs = [f"d{i}" for i in range(rng.randint(3, 60))]
    k = rng.choice([1, 5, 20, 100])
    gold, ranked = {}, {}
    for q in range(rng.randint(1, 12)):
        gold[f"q{q}"] = set(rng.sample(docs, rng.randint(1, min(len(docs), 25))))
        if rng.random() < 0.9:  # some queries go unanswered
            ranked[f"q{q}"] = [rng.choice(docs) for _ in range(rng.randint(0, 40))]
    want = sum(official_ap_at_k(gold[q], ranked.get(q, []), k) for q in gold) / len(gold) * 100
    assert mean_average_precision_at_k(ranked, gold, k=k)[f"map@{k}"] == pytest.approx(want, abs=1e-9)

    single = {q: [rng.choice(docs)] for q in gold}
    want = official_mewslix_mrr(single, ranked, k) * 100
    assert mewslix_map_at_k(single, ranked, k=k)[f"map@{k}"] == pytest.approx(want, abs=1e-9)
