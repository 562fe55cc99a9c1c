"""Masked language modelling over raw multilingual text (the ``mlm`` task).

Featurization packs text into full blocks, as XLM-R (RoBERTa's FULL-SENTENCES) was
pre-trained: the documents of one language are tokenized, joined with ``</s>`` between
documents, cut into blocks of ``max_length - 2`` tokens and wrapped in ``<s> ... </s>``.
A block never mixes languages; only the last block of a language is shorter. Nothing is
masked in the cache.

Masking is dynamic: ``collate`` draws it for every batch (BERT's recipe: 15% of the
maskable tokens of a row are predicted; of those 80% become ``<mask>``, 10% a random
token, 10% stay as they are). It is deterministic: the draw of a row is seeded by
``(seed, step, the row's guid)``, with no global random state, so a resumed run (same
seed, same step counter from the checkpointed sampler) masks the same batch the same way,
while the same row seen at another step gets a fresh mask. Special tokens (``<s>``,
``</s>``, ``<pad>``, ``<unk>``, ...) are never masked and never drawn as the random
replacement; ``labels`` are -100 everywhere but at the predicted positions.

Usage::

    feats = featurize(examples, tokenizer, max_length=256)       # examples: Example(guid, text, lang)
    batch = collate(feats, rows=[0, 1, 2], seed=42, step=17)     # input_ids, attention_mask, labels
    batch.tensors["labels"]                                      # original ids at predicted positions

``mlm`` is a training-only task: it has no dev split and nothing to decode or score.
"""
from __future__ import annotations

import bisect
import hashlib
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from stilts_ds.errors import StiltsError
from stilts_ds.tasks.features import Batch, Features, pad_rows, trim_to_longest
from stilts_ds.tasks.formats.base import Format

IGNORE_INDEX = -100
TOKEN_KEYS = ("input_ids", "attention_mask", "labels")
MASK_PROBABILITY = 0.15
# Of the predicted positions: share replaced by <mask>, by a random token (the rest: kept).
MASK_TOKEN_SHARE = 0.8
RANDOM_TOKEN_SHARE = 0.1


@dataclass(frozen=True)
class Example:
    guid: str
    text: str  # one document or paragraph
    lang: str


def featurize(examples: Sequence[Example], tokenizer, max_length: int = 256) -> Features:
    if max_length < 8:
        raise ValueError(f"mlm blocks need max_length >= 8, got {max_length}")
    for name in ("cls_token_id", "sep_token_id", "pad_token_id", "mask_token_id"):
        if getattr(tokenizer, name, None) is None:
            raise ValueError(f"the tokenizer has no {name[:-3]}; masked language modelling needs one")
    bos, eos, pad = tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id
    budget = max_length - 2
    ids = tokenizer([ex.text for ex in examples], add_special_tokens=False)["input_ids"]
    streams: dict[str, list[int]] = {}  # language -> its documents' tokens, </s> between documents
    starts: dict[str, tuple[list[int], list[str]]] = {}  # language -> (offset, guid) of each document
    for ex, doc in zip(examples, ids):
        if not doc:
            continue
        stream = streams.setdefault(ex.lang, [])
        offsets, doc_guids = starts.setdefault(ex.lang, ([], []))
        if stream:
            stream.append(eos)
        offsets.append(len(stream))
        doc_guids.append(ex.guid)
        stream.extend(doc)
    rows, guids = [], []
    for lang, stream in streams.items():
        offsets, doc_guids = starts[lang]
        for start in range(0, len(stream), budget):
            rows.append([bos, *stream[start:start + budget], eos])
            # Named after the document the block starts in and the offset into it: unique
            # across featurization chunks, and stable while the data is (it seeds masking).
            d = bisect.bisect_right(offsets, start) - 1
            guids.append(f"{doc_guids[d]}@{start - offsets[d]}")
    lengths = np.array([len(r) for r in rows], dtype=np.int32)
    special = sorted(set(int(i) for i in tokenizer.all_special_ids))
    return Features(
        format="mlm",
        columns={
            "input_ids": pad_rows(rows, max_length, pad),
            "attention_mask": pad_rows([[1] * len(r) for r in rows], max_length, 0, np.int8),
            "lengths": lengths,
        },
        guids=np.array(guids, dtype=object),
        extras={"mask_token_id": int(tokenizer.mask_token_id), "vocab_size": int(len(tokenizer)),
                "special_ids": tuple(special)},
    )


def _row_rng(seed: int, step: int, guid: str) -> np.random.Generator:
    # A stable digest of the guid (Python's hash() is salted per process) mixed with the
    # seed and step: the same (seed, step, row) always draws the same mask, on any rank.
    digest = int.from_bytes(hashlib.sha256(str(guid).encode("utf-8")).digest()[:8], "little")
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), int(step), digest])))


def mask_row(ids: np.ndarray, maskable: np.ndarray, rng: np.random.Generator, *, mask_token_id: int,
             replacement_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(masked input ids, labels) for one row: ``round(15%)`` of the ``maskable`` positions
    (at least one) are predicted, 80/10/10 <mask>/random/unchanged."""
    inputs, labels = ids.copy(), np.full(ids.shape, IGNORE_INDEX, dtype=np.int64)
    candidates = np.flatnonzero(maskable)
    if len(candidates) == 0:
        return inputs, labels
    n = max(1, int(round(MASK_PROBABILITY * len(candidates))))
    chosen = np.sort(rng.choice(candidates, size=n, replace=False))
    labels[chosen] = ids[chosen]
    action = rng.random(n)
    to_mask = chosen[action < MASK_TOKEN_SHARE]
    to_random = chosen[(action >= MASK_TOKEN_SHARE) & (action < MASK_TOKEN_SHARE + RANDOM_TOKEN_SHARE)]
    inputs[to_mask] = mask_token_id
    inputs[to_random] = rng.choice(replacement_ids, size=len(to_random))
    return inputs, labels


def collate(features: Features, rows: Sequence[int], *, seed: int = 0, step: int = 0) -> Batch:
    """Rows with a fresh, seeded mask: ``seed`` is the run's seed and ``step`` a counter
    that advances every batch and is restored on resume (the training loop passes its task
    sampler's step count)."""
    idx = np.asarray(rows, dtype=np.int64)
    ex = features.extras
    special = np.asarray(ex["special_ids"], dtype=np.int64)
    replacement = np.setdiff1d(np.arange(ex["vocab_size"], dtype=np.int64), special)
    ids = features.columns["input_ids"][idx].astype(np.int64)
    attention = features.columns["attention_mask"][idx]
    maskable = (attention == 1) & ~np.isin(ids, special)
    inputs, labels = np.empty_like(ids), np.empty_like(ids)
    guids = [str(g) for g in features.guids[idx]]  # one lookup for the batch (data.columns)
    for i, guid in enumerate(guids):
        rng = _row_rng(seed, step, guid)
        inputs[i], labels[i] = mask_row(ids[i], maskable[i], rng, mask_token_id=ex["mask_token_id"],
                                        replacement_ids=replacement)
    tensors = trim_to_longest({"input_ids": inputs, "attention_mask": attention, "labels": labels},
                              range(len(idx)), features.columns["lengths"][idx], TOKEN_KEYS)
    tensors = {k: v.long() for k, v in tensors.items()}
    return Batch(tensors, guids, idx)


def decode(features: Features, logits) -> dict:
    raise StiltsError("mlm is a training-only task (continued pre-training): it has no predictions to decode")


def references(examples: Sequence[Example]) -> dict:
    # Targets are drawn at batch time, so there are no fixed gold answers to cache.
    return {}


def score(metric: str, refs: Mapping, predictions: Mapping, lang: str | None = None) -> dict:
    raise StiltsError("mlm is a training-only task (continued pre-training): it is not scored")


class MaskedLM(Format):
    """Continued masked language modelling on raw text: trained, never scored."""

    name = "mlm"
    sized_by_labels = False  # the encoder's own LM head: its size is the vocabulary
    pretrained_head = True
    scores = False
    counts_toward_epochs = False  # text is a share on top of the tasks' epochs, not an epoch of its own

    def num_labels(self, spec, labels):
        return 0  # the vocabulary, taken from the encoder

    def _featurize(self, spec, examples, tokenizer, max_length, labels):
        return featurize(examples, tokenizer, max_length)

    def collate(self, feats, rows, *, seed=0, step=0):
        # Masks drawn per batch, seeded by the run's seed and the step count (checkpointed),
        # so a resumed run masks every batch as the first run did.
        return collate(feats, rows, seed=seed, step=step)

    def decode(self, spec, feats, outputs, *, tuned=None):
        return decode(feats, outputs.get("logits"))

    def score(self, spec, feats, predictions, lang):
        return score(spec.metric, {}, predictions, lang)


FORMAT = MaskedLM()
