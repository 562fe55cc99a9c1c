"""Sentence-pair classification: NLI (MNLI, ANLI+, XNLI), paraphrase (QQP, PAWS-X).

Usage::

    feats = featurize(examples, tokenizer, max_length=128, labels=spec.labels)
    batch = collate(feats, range(8))          # input_ids, attention_mask, labels
    preds = decode(feats, logits)             # {guid: label name}
    score(spec.metric, references(examples), preds)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from stilts_ds.metrics import ExampleStats, accuracy, accuracy_example_stats
from stilts_ds.tasks.features import Batch, Features, collate_rows
from stilts_ds.tasks.formats.base import Format, accuracy_pairs

IGNORE_INDEX = -100
TOKEN_KEYS = ("input_ids", "attention_mask")


@dataclass(frozen=True)
class Example:
    guid: str
    text_a: str
    text_b: str
    label: str | None  # a name from the task's label set; None for unlabelled test data


def featurize(examples: Sequence[Example], tokenizer, max_length: int = 128, *, labels: Sequence[str]) -> Features:
    index = {name: i for i, name in enumerate(labels)}
    label_ids = np.full(len(examples), IGNORE_INDEX, dtype=np.int64)
    for i, ex in enumerate(examples):
        if ex.label is not None:
            if ex.label not in index:
                raise ValueError(f"example {ex.guid}: label {ex.label!r} is not one of {list(labels)}")
            label_ids[i] = index[ex.label]
    enc = tokenizer(
        [ex.text_a for ex in examples],
        [ex.text_b for ex in examples],
        truncation="longest_first",
        max_length=max_length,
        padding="max_length",
        return_tensors="np",
    )
    mask = enc["attention_mask"].astype(np.int8)
    return Features(
        format="pair_classification",
        columns={
            "input_ids": enc["input_ids"].astype(np.int32),
            "attention_mask": mask,
            "labels": label_ids,
            "lengths": mask.sum(axis=1).astype(np.int32),
        },
        guids=np.array([ex.guid for ex in examples], dtype=object),
        extras={"label_names": tuple(labels)},
    )


def collate(features: Features, rows: Sequence[int]) -> Batch:
    return collate_rows(features, rows, TOKEN_KEYS)


def decode(features: Features, logits: np.ndarray) -> dict[str, str]:
    """Arg-max label per row; rows and guids are one-to-one for this format."""
    names = features.extras["label_names"]
    best = np.asarray(logits).argmax(axis=-1)
    return {str(g): names[int(b)] for g, b in zip(features.guids, best)}


def references(examples: Sequence[Example]) -> dict[str, str]:
    return {ex.guid: ex.label for ex in examples if ex.label is not None}


def score(metric: str, refs: Mapping[str, str], predictions: Mapping[str, str], lang: str | None = None) -> dict:
    return accuracy(*accuracy_pairs("pair classification", metric, refs, predictions))


def example_stats(metric: str, refs: Mapping, predictions: Mapping, lang: str | None = None) -> ExampleStats:
    """``score`` per example: (correct, total) rows in reference order."""
    return ExampleStats(metric, list(refs),
                        accuracy_example_stats(*accuracy_pairs("pair classification", metric, refs, predictions)))


class PairClassification(Format):
    """Sentence pairs, one label each: accuracy."""

    name = "pair_classification"
    row_label = True

    def _featurize(self, spec, examples, tokenizer, max_length, labels):
        return featurize(examples, tokenizer, max_length, labels=labels)


FORMAT = PairClassification()
