"""Retrieval scores: BUCC bitext-mining F1 and its threshold, Tatoeba accuracy, mAP@k.

Usage::

    from stilts_ds.metrics.retrieval import (
        bucc_best_threshold, bucc_pairs_above, bucc_f1, tatoeba_accuracy,
        mean_average_precision_at_k)

    # BUCC: learn the threshold on dev, apply it on test, score the extracted pairs.
    th = bucc_best_threshold(dev_scored_candidates, dev_gold_pairs)
    bucc_f1(test_gold_pairs, bucc_pairs_above(test_scored_candidates, th))

    tatoeba_accuracy(["0", "1", "2"], [0, 1, 1])                   # {"accuracy": 66.66...}
    mean_average_precision_at_k({"q": ["d1", "d2"]}, {"q": {"d2"}})  # {"map@20": 50.0}

BUCC follows xtreme: ``evaluate.py`` ``bucc_f1`` for the score (sets of (src_id, trg_id)
pairs, duplicates collapse, everything 0 when nothing overlaps) and
``third_party/utils_retrieve.py`` ``bucc_optimize`` / ``bucc_extract`` for the threshold:
candidates sorted by score, best first (ties keep input order); sweeping down the list,
each time F1 of "take everything so far" beats the best so far (strictly), the threshold
becomes the midpoint between this candidate's score and the next one's; extraction keeps
candidates with score >= threshold. Scores are x100 except the threshold.

Tatoeba is plain accuracy of the retrieved index against the gold index, compared as
strings so that file contents ("3") and in-memory ints (3) agree.

mAP@k is XTREME-R's LAReQA/Mewsli-X metric (xtreme ``utils_lareqa.average_precision_at_k``):
per query, precision at each rank <= k that holds a not-yet-seen relevant document, summed
and divided by min(#relevant, k); averaged over the gold queries; x100.

``mewslix_map_at_k`` follows xtreme ``third_party/utils_mewslix.evaluate`` (called by
``evaluate.py`` ``mewslix_map20``): the gold file lists one entity per mention, of which only
the first, stripped, counts; predictions are cut to the top k; a mention without a
prediction scores 0; predicted ids that are not gold mentions are ignored (the official
script only counts them). With one relevant entity, its reciprocal rank equals AP@k, so it
is mAP@k of the same function.

Per example (``stilts_ds.metrics.example_stats``): ``bucc_example_stats`` counts each source
sentence's correct, wrongly extracted and missed pairs (their sums are bucc_f1's counts),
``tatoeba_example_stats`` is a (correct, total) row per source sentence and
``map_at_k_example_stats`` a query's (AP, 1).
"""

from __future__ import annotations

from typing import Hashable, Iterable, Mapping, Sequence

import numpy as np

from stilts_ds.metrics.classification import accuracy, accuracy_example_stats


def _pair_set(pairs: Iterable[Sequence[str]], what: str) -> set[tuple[str, ...]]:
    result = set()
    for pair in pairs:
        if isinstance(pair, str):
            raise ValueError(
                f"{what}: expected (source_id, target_id) pairs, got the string {pair!r}"
            )
        result.add(tuple(pair))
    return result


def bucc_f1(
    gold_pairs: Iterable[tuple[str, str]], predicted_pairs: Iterable[tuple[str, str]]
) -> dict[str, float]:
    """Precision/recall/F1 (x100) of predicted sentence pairs against gold pairs."""
    gold = _pair_set(gold_pairs, "gold_pairs")
    predicted = _pair_set(predicted_pairs, "predicted_pairs")
    correct = len(gold & predicted)
    if correct == 0:
        # Also covers empty inputs: no division by zero, everything is 0 (official rule).
        return {"f1": 0.0, "precision": 0.0, "recall": 0.0}
    precision = correct / len(predicted)
    recall = correct / len(gold)
    f1 = 2 * precision * recall / (precision + recall)
    return {"f1": f1 * 100, "precision": precision * 100, "recall": recall * 100}


def _best_score_per_pair(
    scored_candidates: Iterable[tuple[tuple[str, str], float]],
) -> dict[tuple[str, ...], float]:
    # The official reader keeps one score per (src, trg) id pair: the maximum, at the
    # position where the pair was first seen. Duplicates must not count twice in the sweep.
    best: dict[tuple[str, ...], float] = {}
    for pair, score in scored_candidates:
        key = tuple(pair)
        score = float(score)
        best[key] = max(score, best.get(key, score))
    return best


def bucc_best_threshold(
    scored_candidates: Sequence[tuple[tuple[str, str], float]],
    gold_pairs: Iterable[tuple[str, str]],
) -> float:
    """The score threshold that maximises F1 of extracted pairs against ``gold_pairs``.

    Returns 0.0 when no candidate is correct (the official initial value). When the best
    F1 is reached at the very last candidate the official code indexes past the end of
    the list and crashes; we return that candidate's score instead, which extracts every
    candidate with ``>=``, i.e. the same set the sweep chose.
    """
    gold = _pair_set(gold_pairs, "gold_pairs")
    items = sorted(_best_score_per_pair(scored_candidates).items(), key=lambda kv: -kv[1])
    extracted = 0
    correct = 0
    threshold = 0.0
    best_f1 = 0.0
    for index, (pair, score) in enumerate(items):
        extracted += 1
        if pair in gold:
            correct += 1
        if correct == 0:
            continue
        precision = correct / extracted
        recall = correct / len(gold)
        f1 = 2 * precision * recall / (precision + recall)
        if f1 > best_f1:
            best_f1 = f1
            if index + 1 < len(items):
                threshold = (score + items[index + 1][1]) / 2
            else:
                threshold = score
    return threshold


def bucc_pairs_above(
    scored_candidates: Iterable[tuple[tuple[str, str], float]], threshold: float
) -> list[tuple[str, ...]]:
    """Candidate pairs whose (best) score is >= ``threshold``, in first-seen order."""
    return [
        pair
        for pair, score in _best_score_per_pair(scored_candidates).items()
        if score >= threshold
    ]


def tatoeba_accuracy(
    gold: Sequence[str | int], predicted: Sequence[str | int]
) -> dict[str, float]:
    """Accuracy (x100) of retrieved target indices; ints and strings compare as strings."""
    return accuracy([str(g) for g in gold], [str(p) for p in predicted])


def tatoeba_example_stats(gold: Sequence[str | int], predicted: Sequence[str | int]) -> np.ndarray:
    """[sources, 2] (correct, total=1) rows in gold order; sums give ``tatoeba_accuracy``."""
    return accuracy_example_stats([str(g) for g in gold], [str(p) for p in predicted])


def bucc_example_stats(
    gold_pairs: Iterable[tuple[str, str]],
    predicted_pairs: Iterable[tuple[str, str]],
    sources: Sequence[str] = (),
) -> tuple[list[str], np.ndarray]:
    """(source ids, [sources, 3] rows (true_positives, false_positives, false_negatives)):
    per source sentence, its pairs that are gold and extracted, extracted only, gold only.
    Summed, they are bucc_f1's counts (|gold & predicted|, the rest of each set).

    The rows are ``sources`` in order (every source sentence of the split, so that two systems
    have the same examples, distractors included), then any other source id of a gold or
    predicted pair, gold first, in first-seen order."""
    gold_pairs, predicted_pairs = list(gold_pairs), list(predicted_pairs)  # iterated twice
    gold = _pair_set(gold_pairs, "gold_pairs")
    predicted = _pair_set(predicted_pairs, "predicted_pairs")
    order: dict[str, int] = {}
    for src in sources:
        order.setdefault(str(src), len(order))
    for pairs in (gold_pairs, predicted_pairs):
        for pair in pairs:
            order.setdefault(str(pair[0]), len(order))
    rows = np.zeros((len(order), 3))
    for pair in gold & predicted:
        rows[order[str(pair[0])], 0] += 1
    for pair in predicted - gold:
        rows[order[str(pair[0])], 1] += 1
    for pair in gold - predicted:
        rows[order[str(pair[0])], 2] += 1
    return list(order), rows


def _check_map_inputs(ranked, gold, k) -> None:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if len(gold) == 0:
        raise ValueError("no gold queries to score")
    unknown = [q for q in ranked if q not in gold]
    if unknown:
        raise ValueError(
            f"{len(unknown)} ranked queries have no gold entry, e.g. {unknown[:3]!r}"
        )


def _average_precision(query, relevant, ranked, k: int) -> float:
    relevant = set(relevant)
    if not relevant:
        raise ValueError(f"query {query!r} has no relevant documents; AP is undefined")
    top = list(ranked.get(query, ()))[:k]
    seen: set = set()
    hits = 0
    precision_sum = 0.0
    for rank, doc in enumerate(top, start=1):
        # A document listed twice is only credited the first time.
        if doc in relevant and doc not in seen:
            hits += 1
            precision_sum += hits / rank
        seen.add(doc)
    return precision_sum / min(len(relevant), k)


def map_at_k_example_stats(
    ranked: Mapping[Hashable, Sequence[Hashable]],
    gold: Mapping[Hashable, set],
    k: int = 20,
) -> np.ndarray:
    """[queries, 2] (average precision, total=1) in gold order; sums give
    ``mean_average_precision_at_k`` (same errors)."""
    _check_map_inputs(ranked, gold, k)
    return np.array([[_average_precision(q, r, ranked, k), 1.0] for q, r in gold.items()])


def mean_average_precision_at_k(
    ranked: Mapping[Hashable, Sequence[Hashable]],
    gold: Mapping[Hashable, set],
    k: int = 20,
) -> dict[str, float]:
    """mAP@k (x100) over the queries in ``gold``; key is f"map@{k}".

    A gold query absent from ``ranked`` has average precision 0. Raises ValueError for a
    query with no relevant documents (AP undefined), for ranked queries that are not in
    ``gold``, for k < 1 and when ``gold`` is empty.
    """
    _check_map_inputs(ranked, gold, k)
    total = 0.0
    for query, relevant in gold.items():
        total += _average_precision(query, relevant, ranked, k)
    return {f"map@{k}": total / len(gold) * 100}


def mewslix_map_at_k(
    gold: Mapping[str, Sequence[str]],
    predictions: Mapping[str, Sequence[str]],
    k: int = 20,
) -> dict[str, float]:
    """Mewsli-X mAP@k (x100): ``gold`` {mention id: [entity id, ...]} (first entry counts),
    ``predictions`` {mention id: ranked entity ids}; key f"map@{k}"."""
    single: dict[str, set] = {}
    for example_id, labels in gold.items():
        if isinstance(labels, str) or len(labels) == 0:
            raise ValueError(
                f"gold entry {example_id!r} must be a non-empty list of entity ids, got {labels!r}"
            )
        single[example_id] = {str(labels[0]).strip()}
    # Official behaviour: ids that are not gold mentions are left out, not an error.
    ranked = {q: list(v) for q, v in predictions.items() if q in single}
    return mean_average_precision_at_k(ranked, single, k=k)
