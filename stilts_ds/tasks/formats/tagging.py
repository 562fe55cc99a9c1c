"""Token tagging: UD POS (udpos), NER (panx), CCG supertags (ccg).

The label sits on the first sub-word of each word; the other sub-words carry the ignore
index so the loss and the prediction are per word, as in XTREME's reference code. A
sentence longer than ``max_length`` is cut at word boundaries into several rows with the
same guid (no word is dropped); ``decode`` stitches the rows back in order.

Usage::

    feats = featurize(examples, tokenizer, max_length=128, labels=spec.labels)
    batch = collate(feats, range(8))     # input_ids, attention_mask, labels (-100 off-word)
    preds = decode(feats, logits)        # {guid: [tag per word]}
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from stilts_ds.metrics import (
    ExampleStats,
    seqeval_example_stats,
    seqeval_f1,
    tag_accuracy,
    tag_accuracy_example_stats,
)
from stilts_ds.tasks.alignment import aligned
from stilts_ds.tasks.features import Batch, Features, collate_rows, pad_rows
from stilts_ds.tasks.formats.base import Format

log = logging.getLogger(__name__)

IGNORE_INDEX = -100
TOKEN_KEYS = ("input_ids", "attention_mask", "labels", "word_index")


@dataclass(frozen=True)
class Example:
    guid: str
    tokens: tuple[str, ...]
    tags: tuple[str, ...] | None  # one per token; None for unlabelled data


def _fallback_tag(labels: Sequence[str]) -> str:
    # A word the tokenizer maps to no sub-word (a lone control character, say) gets no
    # logit; it is predicted as the "outside" tag where the label set has one.
    for tag in ("O", "X"):
        if tag in labels:
            return tag
    return labels[0]


def _cap_words(ids: Sequence[int], word_ids: Sequence[int | None], most: int) -> tuple[list, list]:
    """``ids``/``word_ids`` with every word cut to its first ``most`` sub-words."""
    keep, run, last = [], 0, object()
    for t, w in enumerate(word_ids):
        run = run + 1 if w == last and w is not None else 1
        last = w
        if run <= most:
            keep.append(t)
    return [ids[t] for t in keep], [word_ids[t] for t in keep]


def featurize(examples: Sequence[Example], tokenizer, max_length: int = 128, *, labels: Sequence[str]) -> Features:
    index = {name: i for i, name in enumerate(labels)}
    for ex in examples:
        if ex.tags is None:
            continue
        if len(ex.tags) != len(ex.tokens):
            raise ValueError(f"example {ex.guid}: {len(ex.tokens)} tokens but {len(ex.tags)} tags")
        for tag in ex.tags:
            if tag not in index:
                raise ValueError(f"example {ex.guid}: tag {tag!r} is not in the task's label set")
    enc = tokenizer([list(ex.tokens) for ex in examples], is_split_into_words=True, add_special_tokens=False)
    budget = max_length - 2  # <s> ... </s>
    bos, eos = tokenizer.cls_token_id, tokenizer.sep_token_id
    ids_rows, label_rows, word_rows, guids, no_subword = [], [], [], [], 0
    # A word keeps at most half a row of sub-words: its label and prediction sit on its first
    # sub-word, and a very long word (a 473-character URL in UD English-EWT) would otherwise
    # be cut into a row per sub-word, since rows never split a word.
    word_budget = max(1, budget // 2)
    for i, ex in enumerate(examples):
        ids, word_ids = _cap_words(enc["input_ids"][i], enc.word_ids(i), word_budget)
        seen: set[int] = set()
        start = 0
        while True:
            end = min(start + budget, len(ids))
            # Never split a word: move the cut back to the first sub-word of the word it hits.
            while 0 < end < len(ids) and end > start + 1 and word_ids[end] == word_ids[end - 1]:
                end -= 1
            row_ids, row_labels, row_words = [bos], [IGNORE_INDEX], [-1]
            for t in range(start, end):
                w = word_ids[t]
                first = w is not None and w not in seen
                if first:
                    seen.add(w)
                row_ids.append(ids[t])
                row_words.append(w if first else -1)
                row_labels.append(index[ex.tags[w]] if first and ex.tags is not None else IGNORE_INDEX)
            row_ids.append(eos)
            row_labels.append(IGNORE_INDEX)
            row_words.append(-1)
            ids_rows.append(row_ids)
            label_rows.append(row_labels)
            word_rows.append(row_words)
            guids.append(ex.guid)
            if end >= len(ids):
                break
            start = end
        no_subword += len(ex.tokens) - len(seen)
    if no_subword:
        log.warning("%d words map to no sub-word; they are predicted as %r", no_subword, _fallback_tag(labels))
    lengths = np.array([len(r) for r in ids_rows], dtype=np.int32)
    return Features(
        format="tagging",
        columns={
            "input_ids": pad_rows(ids_rows, max_length, tokenizer.pad_token_id),
            "attention_mask": (pad_rows([[1] * len(r) for r in ids_rows], max_length, 0, np.int8)),
            "labels": pad_rows(label_rows, max_length, IGNORE_INDEX, np.int64),
            "word_index": pad_rows(word_rows, max_length, -1),
            "lengths": lengths,
        },
        guids=np.array(guids, dtype=object),
        extras={"label_names": tuple(labels), "num_words": {ex.guid: len(ex.tokens) for ex in examples}},
    )


def collate(features: Features, rows: Sequence[int]) -> Batch:
    return collate_rows(features, rows, TOKEN_KEYS)


def decode(features: Features, logits: np.ndarray) -> dict[str, list[str]]:
    """``logits`` [N, L', num_labels] with L' <= max_length (dynamic padding)."""
    names = features.extras["label_names"]
    fallback = _fallback_tag(names)
    best = np.asarray(logits).argmax(axis=-1)
    words = features.columns["word_index"][:, : best.shape[1]]
    out = {g: [fallback] * n for g, n in features.extras["num_words"].items()}
    rows, cols = np.nonzero(words >= 0)
    for r, c in zip(rows.tolist(), cols.tolist()):
        out[str(features.guids[r])][int(words[r, c])] = names[int(best[r, c])]
    return out


def references(examples: Sequence[Example]) -> dict[str, list[str]]:
    return {ex.guid: list(ex.tags) for ex in examples if ex.tags is not None}


def score(metric: str, refs: Mapping[str, list[str]], predictions: Mapping[str, list[str]], lang: str | None = None) -> dict:
    golds, preds = aligned(refs, predictions)
    if metric == "seqeval_f1":
        return seqeval_f1(golds, preds)
    if metric == "tag_accuracy":
        return tag_accuracy(golds, preds)
    raise ValueError(f"tagging is scored by seqeval_f1 or tag_accuracy, not {metric!r}")


def example_stats(metric: str, refs: Mapping[str, list[str]], predictions: Mapping[str, list[str]],
                  lang: str | None = None) -> ExampleStats:
    """``score`` per sentence (reference order): chunk TP/FP/FN, or correct/total words."""
    golds, preds = aligned(refs, predictions)
    if metric == "seqeval_f1":
        return ExampleStats(metric, list(refs), seqeval_example_stats(golds, preds))
    if metric == "tag_accuracy":
        return ExampleStats(metric, list(refs), tag_accuracy_example_stats(golds, preds))
    raise ValueError(f"tagging is scored by seqeval_f1 or tag_accuracy, not {metric!r}")


class Tagging(Format):
    """A tag per word on the word's first sub-word: seqeval F1 or tag accuracy."""

    name = "tagging"
    token_outputs = True

    def _featurize(self, spec, examples, tokenizer, max_length, labels):
        return featurize(examples, tokenizer, max_length, labels=labels)

    def quality(self, feats, max_length, unk_id=None):
        # A long sentence is cut into rows at word boundaries (no word lost): a row that
        # fills max_length is not a truncated example here; count the sentences split.
        figures = super().quality(feats, max_length, unk_id)
        figures["truncated"] = 0
        _, rows_per_example = np.unique(feats.guids.astype(str), return_counts=True)
        figures["split_examples"] = int((rows_per_example > 1).sum())
        return figures


FORMAT = Tagging()
