"""Accuracy: known answers and input checks."""

import pytest

from stilts_ds.metrics import accuracy


def test_accuracy_known_answer():
    labels = ["entailment", "neutral", "contradiction", "neutral"]
    predictions = ["entailment", "contradiction", "contradiction", "neutral"]
    assert accuracy(labels, predictions) == {"accuracy": 75.0}


def test_accuracy_compares_with_equality():
    assert accuracy(["1", "0"], [1, "0"]) == {"accuracy": 50.0}


def test_accuracy_length_mismatch_names_both_lengths():
    with pytest.raises(ValueError, match="3 labels and 2 predictions"):
        accuracy(["a", "b", "c"], ["a", "b"])


def test_accuracy_empty_is_an_error():
    with pytest.raises(ValueError, match="0 labels and 0 predictions"):
        accuracy([], [])
