"""Sequence-tagging scores: seqeval chunk F1 (UD-POS, PAN-X) and token accuracy (CCG).

Usage::

    from stilts_ds.metrics.tagging import seqeval_f1, tag_accuracy

    seqeval_f1([["B-PER", "I-PER", "O"]], [["B-PER", "I-PER", "O"]])
    # -> {"f1": 100.0, "precision": 100.0, "recall": 100.0}
    tag_accuracy([["NP", "S\\\\NP"]], [["NP", "NP"]])  # -> {"accuracy": 50.0}

Both take one list of tags per sentence; each sentence's predictions must be as long as
its labels (ValueError names the first sentence index that is not).

``seqeval_f1`` is what xtreme ``evaluate.py`` reports for udpos *and* panx: seqeval 1.2.2
``f1_score``/``precision_score``/``recall_score`` in their default (non-strict, IOB-guessing)
mode, x100. We call seqeval itself so its behaviour carries over exactly, including the
quirk that POS tags are read as chunk tags: the first letter is the IOB prefix and the
rest the type ("NOUN" -> tag 'N', type 'OUN'; "SYM" -> an 'S'ingle chunk of type 'YM';
"INTJ" -> an 'I'nside tag). Consecutive tokens with the same type merge into one chunk,
so for UD-POS the "F1" is over runs of equal tags, not over tokens: gold NOUN NOUN VERB vs
predicted NOUN VERB VERB shares no chunk (F1 0) although 2 of 3 tokens are right. Sentence
boundaries do end chunks (seqeval appends an 'O' after each sentence).

``tag_accuracy`` is plain token accuracy, the CCG supertagging metric.

``seqeval_example_stats`` and ``tag_accuracy_example_stats`` give the same scores per
sentence (``stilts_ds.metrics.example_stats``): chunk TP/FP/FN, and correct/total words.
The chunks are seqeval's own, taken from the whole corpus as it takes them: with the tag "X"
(type '_', the type of the 'O' seqeval puts between sentences) a chunk runs on into the next
sentence, and an "X" run that reaches the corpus's end is never closed (not a chunk). Each
chunk counts in the sentence where it starts, so the sentences' sums are seqeval's counts.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np


def _check_aligned(labels: Sequence[Sequence[str]], predictions: Sequence[Sequence[str]]) -> None:
    if len(labels) != len(predictions):
        raise ValueError(
            f"tagging needs one predicted sentence per gold sentence: got {len(labels)} "
            f"label sentences and {len(predictions)} prediction sentences"
        )
    if len(labels) == 0:
        raise ValueError("nothing to score: got 0 sentences")
    for index, (gold, predicted) in enumerate(zip(labels, predictions)):
        if isinstance(gold, str) or isinstance(predicted, str):
            raise ValueError(
                f"sentence {index}: expected a list of tags per sentence, got a string"
            )
        if len(gold) != len(predicted):
            raise ValueError(
                f"sentence {index}: {len(gold)} gold tags but {len(predicted)} predicted tags"
            )


def seqeval_f1(labels: list[list[str]], predictions: list[list[str]]) -> dict[str, float]:
    """Micro chunk F1/precision/recall (x100) from seqeval, as xtreme evaluate.py computes it."""
    _check_aligned(labels, predictions)
    # Imported here: seqeval pulls in scikit-learn, which the rest of the package does not
    # need at import time.
    from seqeval.metrics import f1_score, precision_score, recall_score

    # seqeval only flattens (and separates sentences) when it sees *lists*; tuples would
    # be read as one flat sequence, so normalise the container type.
    gold = [list(sentence) for sentence in labels]
    predicted = [list(sentence) for sentence in predictions]
    with warnings.catch_warnings():
        # Every POS tag triggers "X seems not to be NE tag."; it is expected here and the
        # scores do not depend on it.
        warnings.filterwarnings("ignore", message=r".* seems not to be NE tag\.")
        f1 = f1_score(gold, predicted)
        precision = precision_score(gold, predicted)
        recall = recall_score(gold, predicted)
    return {
        "f1": float(f1 * 100),
        "precision": float(precision * 100),
        "recall": float(recall * 100),
    }


def tag_accuracy(labels: list[list[str]], predictions: list[list[str]]) -> dict[str, float]:
    """Token-level accuracy (x100) over all sentences."""
    _check_aligned(labels, predictions)
    correct = 0
    total = 0
    for gold, predicted in zip(labels, predictions):
        correct += sum(int(p == g) for p, g in zip(predicted, gold))
        total += len(gold)
    if total == 0:
        raise ValueError("nothing to score: every sentence is empty")
    return {"accuracy": correct / total * 100}


def _corpus_chunks(sentences: list[list[str]]) -> set[tuple[str, int, int]]:
    from seqeval.metrics.sequence_labeling import get_entities

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".* seems not to be NE tag\.")
        # The nested list as seqeval's f1_score reads it: sentences joined by an 'O'.
        return set(get_entities(sentences))


def seqeval_example_stats(labels: list[list[str]], predictions: list[list[str]]) -> np.ndarray:
    """[sentences, 3] chunk counts (true_positives, false_positives, false_negatives) in
    sentence order, each chunk in the sentence it starts in; sums give ``seqeval_f1``."""
    _check_aligned(labels, predictions)
    gold = [list(sentence) for sentence in labels]
    predicted = [list(sentence) for sentence in predictions]
    gold_chunks, predicted_chunks = _corpus_chunks(gold), _corpus_chunks(predicted)
    # Sentence i's tokens start at offset starts[i] of the joined corpus (one 'O' after each).
    starts = np.cumsum([0] + [len(s) + 1 for s in gold[:-1]])
    rows = np.zeros((len(gold), 3))

    def sentence_of(chunks):
        return np.searchsorted(starts, np.array([begin for _, begin, _ in chunks], dtype=np.int64),
                               side="right") - 1

    if gold_chunks & predicted_chunks:
        np.add.at(rows[:, 0], sentence_of(gold_chunks & predicted_chunks), 1.0)
    if predicted_chunks - gold_chunks:
        np.add.at(rows[:, 1], sentence_of(predicted_chunks - gold_chunks), 1.0)
    if gold_chunks - predicted_chunks:
        np.add.at(rows[:, 2], sentence_of(gold_chunks - predicted_chunks), 1.0)
    return rows


def tag_accuracy_example_stats(labels: list[list[str]], predictions: list[list[str]]) -> np.ndarray:
    """[sentences, 2] (correct words, words); sums give ``tag_accuracy``."""
    _check_aligned(labels, predictions)
    return np.array([[float(sum(int(p == g) for p, g in zip(predicted, gold))), float(len(gold))]
                     for gold, predicted in zip(labels, predictions)]).reshape(len(labels), 2)
