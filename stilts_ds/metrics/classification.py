"""Accuracy for sentence(-pair) classification (XNLI, PAWS-X, XCOPA, intermediate tasks).

Usage::

    from stilts_ds.metrics.classification import accuracy
    accuracy(["entailment", "neutral"], ["entailment", "contradiction"])  # {"accuracy": 50.0}

Labels are compared with ``==`` (so "1" != 1: convert first if the two sides differ in
type). Score is x100 and computed as in xtreme ``evaluate.py`` (correct / count * 100).
Unlike the official script, which zips and divides by the number of predictions, a length
mismatch or an empty input is an error here: the official result would be meaningless.
"""

from __future__ import annotations

from typing import Sequence


def accuracy(labels: Sequence, predictions: Sequence) -> dict[str, float]:
    """Percentage of positions where prediction equals label."""
    if len(labels) != len(predictions):
        raise ValueError(
            f"accuracy needs one prediction per label: got {len(labels)} labels and "
            f"{len(predictions)} predictions"
        )
    if len(predictions) == 0:
        raise ValueError("accuracy of an empty set is undefined: got 0 labels and 0 predictions")
    correct = sum(int(p == l) for p, l in zip(predictions, labels))
    return {"accuracy": correct / len(predictions) * 100}
