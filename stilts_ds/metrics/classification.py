"""Accuracy for sentence(-pair) classification (XNLI, PAWS-X, XCOPA, intermediate tasks).

Usage::

    from stilts_ds.metrics.classification import accuracy
    accuracy(["entailment", "neutral"], ["entailment", "contradiction"])  # {"accuracy": 50.0}

Labels are compared with ``==`` (so "1" != 1: convert first if the two sides differ in
type). Score is x100 and computed as in xtreme ``evaluate.py`` (correct / count * 100).
Unlike the official script, which zips and divides by the number of predictions, a length
mismatch or an empty input is an error here: the official result would be meaningless.

``accuracy_example_stats`` gives the same score per example, one (correct, total) row each
(``stilts_ds.metrics.example_stats``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def _check(labels: Sequence, predictions: Sequence) -> None:
    if len(labels) != len(predictions):
        raise ValueError(
            f"accuracy needs one prediction per label: got {len(labels)} labels and "
            f"{len(predictions)} predictions"
        )
    if len(predictions) == 0:
        raise ValueError("accuracy of an empty set is undefined: got 0 labels and 0 predictions")


def accuracy(labels: Sequence, predictions: Sequence) -> dict[str, float]:
    """Percentage of positions where prediction equals label."""
    _check(labels, predictions)
    correct = sum(int(p == l) for p, l in zip(predictions, labels))
    return {"accuracy": correct / len(predictions) * 100}


def accuracy_example_stats(labels: Sequence, predictions: Sequence) -> np.ndarray:
    """[n, 2] rows (correct, total=1) in label order; their sums give ``accuracy``."""
    _check(labels, predictions)
    correct = [float(p == l) for p, l in zip(predictions, labels)]
    return np.column_stack([correct, np.ones(len(correct))])
