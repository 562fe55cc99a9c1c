"""Multiple choice: HellaSwag, CosmosQA, CommonsenseQA (and XCOPA later).

Each example becomes ``num_choices`` (prompt, choice) pairs scored by one head; the
choice with the highest score wins.

Usage::

    feats = featurize(examples, tokenizer, max_length=128, num_choices=4)
    batch = collate(feats, [0, 1])     # input_ids [2, 4, L], attention_mask, labels [2]
    preds = decode(feats, logits)      # logits [N, 4] -> {guid: choice index}
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from stilts_ds.metrics import ExampleStats, accuracy, accuracy_example_stats
from stilts_ds.tasks.features import Batch, Features, collate_rows
from stilts_ds.tasks.formats.base import ChoiceOptions, Format, accuracy_pairs

IGNORE_INDEX = -100
TOKEN_KEYS = ("input_ids", "attention_mask")


@dataclass(frozen=True)
class Example:
    guid: str
    prompt: str
    choices: tuple[str, ...]
    label: int | None  # index into choices; None for unlabelled test data


def featurize(examples: Sequence[Example], tokenizer, max_length: int = 128, *, num_choices: int) -> Features:
    for ex in examples:
        if len(ex.choices) != num_choices:
            raise ValueError(f"example {ex.guid}: {len(ex.choices)} choices, the task has {num_choices}")
        if ex.label is not None and not 0 <= ex.label < num_choices:
            raise ValueError(f"example {ex.guid}: label {ex.label} is not a choice index 0..{num_choices - 1}")
    # One flat batch call: the tokenizer parallelises across all N*C pairs.
    enc = tokenizer(
        [ex.prompt for ex in examples for _ in range(num_choices)],
        [choice for ex in examples for choice in ex.choices],
        truncation="longest_first",
        max_length=max_length,
        padding="max_length",
        return_tensors="np",
    )
    n = len(examples)
    ids = enc["input_ids"].astype(np.int32).reshape(n, num_choices, max_length)
    mask = enc["attention_mask"].astype(np.int8).reshape(n, num_choices, max_length)
    labels = np.array([IGNORE_INDEX if ex.label is None else ex.label for ex in examples], dtype=np.int64)
    return Features(
        format="multiple_choice",
        columns={
            "input_ids": ids,
            "attention_mask": mask,
            "labels": labels,
            "lengths": mask.sum(axis=2).max(axis=1).astype(np.int32),
        },
        guids=np.array([ex.guid for ex in examples], dtype=object),
        extras={"num_choices": num_choices},
    )


def collate(features: Features, rows: Sequence[int]) -> Batch:
    return collate_rows(features, rows, TOKEN_KEYS)


def decode(features: Features, logits: np.ndarray) -> dict[str, int]:
    best = np.asarray(logits).reshape(len(features), -1).argmax(axis=-1)
    return {str(g): int(b) for g, b in zip(features.guids, best)}


def references(examples: Sequence[Example]) -> dict[str, int]:
    return {ex.guid: ex.label for ex in examples if ex.label is not None}


def score(metric: str, refs: Mapping[str, int], predictions: Mapping[str, int], lang: str | None = None) -> dict:
    return accuracy(*accuracy_pairs("multiple choice", metric, refs, predictions))


def example_stats(metric: str, refs: Mapping, predictions: Mapping, lang: str | None = None) -> ExampleStats:
    """``score`` per example: (correct, total) rows in reference order."""
    return ExampleStats(metric, list(refs),
                        accuracy_example_stats(*accuracy_pairs("multiple choice", metric, refs, predictions)))


class MultipleChoice(Format):
    """An example is C (prompt, choice) sequences scored together: accuracy."""

    name = "multiple_choice"
    options_type = ChoiceOptions
    sized_by_labels = False  # one score per choice: the head's size does not depend on C

    def num_labels(self, spec, labels):
        return self.options_of(spec).num_choices

    def sequences_per_row(self, spec):
        return self.options_of(spec).num_choices

    def _featurize(self, spec, examples, tokenizer, max_length, labels):
        return featurize(examples, tokenizer, max_length, num_choices=self.options_of(spec).num_choices)

    def model_inputs(self, tensors):
        # [B, C, L] -> [B*C, L]: the encoder sees every (prompt, choice) pair as a row.
        return {k: v.reshape(-1, v.shape[-1]) for k, v in tensors.items()}


FORMAT = MultipleChoice()
