"""Sentence retrieval: BUCC 2018 bitext mining and Tatoeba, scored without fine-tuning.

A sentence embedding is the mean over non-pad tokens of one hidden layer of the encoder
(XTREME uses layer 14 of XLM-R Large's 24; ``default_layer`` scales that to other depths).
Tatoeba: each source sentence's nearest English sentence by cosine similarity. BUCC: ratio
margin scoring over k=4 nearest neighbours in both directions, candidates mined forward and
backward, each sentence used at most once, and a score threshold tuned on the dev split
(``stilts_ds.metrics.bucc_best_threshold``) applied to test.

Usage::

    feats = featurize(examples, tokenizer, max_length=128)
    emb = mean_pool(hidden_states[layer], batch.tensors["attention_mask"])   # per batch
    preds = decode_tatoeba(feats, embeddings)                    # {source guid: target guid}
    test_cands = mine_bucc_candidates(feats, embeddings)         # [((src, trg), score)]
    threshold = bucc_best_threshold(dev_cands, gold_pairs)       # tuned on validation
    pairs = bucc_pairs_above(test_cands, threshold)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch

from stilts_ds.metrics import bucc_f1, tatoeba_accuracy
from stilts_ds.tasks.alignment import aligned
from stilts_ds.tasks.features import Batch, Features, collate_rows

SOURCE, TARGET = "source", "target"
TOKEN_KEYS = ("input_ids", "attention_mask")
MARGIN_NEIGHBOURS = 4  # k of the ratio margin (Artetxe & Schwenk 2019), as XTREME uses


@dataclass(frozen=True)
class Example:
    """One sentence on one side. ``gold`` is, for a source sentence, the guid of its
    translation on the target side (None for a non-parallel distractor)."""

    guid: str
    text: str
    side: str  # SOURCE or TARGET
    lang: str
    gold: str | None = None


def default_layer(num_hidden_layers: int) -> int:
    """Hidden layer used for embeddings: 14 of 24 for XLM-R Large, scaled for other depths
    (hidden_states[0] is the embedding output, so layer i is hidden_states[i])."""
    return max(1, round(num_hidden_layers * 14 / 24))


def featurize(examples: Sequence[Example], tokenizer, max_length: int = 128) -> Features:
    for ex in examples:
        if ex.side not in (SOURCE, TARGET):
            raise ValueError(f"example {ex.guid}: side must be {SOURCE!r} or {TARGET!r}, not {ex.side!r}")
    enc = tokenizer(
        [ex.text for ex in examples], truncation=True, max_length=max_length, padding="max_length", return_tensors="np"
    )
    mask = enc["attention_mask"].astype(np.int8)
    return Features(
        format="retrieval",
        columns={"input_ids": enc["input_ids"].astype(np.int32), "attention_mask": mask,
                 "lengths": mask.sum(axis=1).astype(np.int32)},
        guids=np.array([ex.guid for ex in examples], dtype=object),
        extras={"sides": np.array([ex.side for ex in examples], dtype=object)},
    )


def collate(features: Features, rows: Sequence[int]) -> Batch:
    return collate_rows(features, rows, TOKEN_KEYS)


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``hidden`` [B, L, H] over positions where ``attention_mask`` is 1."""
    mask = attention_mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


def _split(features: Features, embeddings: np.ndarray):
    emb = np.asarray(embeddings, dtype=np.float32)
    if len(emb) != len(features):
        raise ValueError(f"{len(emb)} embeddings for {len(features)} sentences")
    emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    sides = features.extras["sides"]
    src, trg = sides == SOURCE, sides == TARGET
    return features.guids[src], emb[src], features.guids[trg], emb[trg]


def decode_tatoeba(features: Features, embeddings: np.ndarray) -> dict[str, str]:
    """Nearest target (English) sentence by cosine similarity for every source sentence."""
    src_ids, src, trg_ids, trg = _split(features, embeddings)
    best = (src @ trg.T).argmax(axis=1)
    return {str(s): str(trg_ids[b]) for s, b in zip(src_ids, best)}


def _mean_topk(sim: np.ndarray, k: int) -> np.ndarray:
    k = min(k, sim.shape[1])
    return np.sort(sim, axis=1)[:, -k:].mean(axis=1)


def mine_bucc_candidates(features: Features, embeddings: np.ndarray, k: int = MARGIN_NEIGHBOURS):
    """Ratio-margin candidates: forward (best target per source) and backward (best source
    per target), merged, sorted by score, each sentence kept in its best pair only.

    margin(x, y) = cos(x, y) / (mean_k cos(x, NN_k(x)) / 2 + mean_k cos(y, NN_k(y)) / 2)
    """
    src_ids, src, trg_ids, trg = _split(features, embeddings)
    sim = src @ trg.T
    fwd_avg, bwd_avg = _mean_topk(sim, k), _mean_topk(sim.T, k)
    margin = sim / (fwd_avg[:, None] / 2 + bwd_avg[None, :] / 2)
    cands = {(i, int(margin[i].argmax())) for i in range(len(src_ids))}
    cands |= {(int(margin[:, j].argmax()), j) for j in range(len(trg_ids))}
    ranked = sorted(cands, key=lambda ij: -margin[ij])
    used_src, used_trg, out = set(), set(), []
    for i, j in ranked:
        if i in used_src or j in used_trg:
            continue
        used_src.add(i)
        used_trg.add(j)
        out.append(((str(src_ids[i]), str(trg_ids[j])), float(margin[i, j])))
    return out


def references(examples: Sequence[Example]) -> dict[str, str]:
    """{source guid: gold target guid} for parallel source sentences."""
    return {ex.guid: ex.gold for ex in examples if ex.side == SOURCE and ex.gold is not None}


def score(metric: str, refs: Mapping[str, str], predictions, lang: str | None = None) -> dict:
    """Tatoeba: ``predictions`` {source guid: target guid}. BUCC: a list of (src, trg) pairs."""
    if metric == "tatoeba_accuracy":
        return tatoeba_accuracy(*aligned(refs, predictions))
    if metric == "bucc_f1":
        return bucc_f1(list(refs.items()), list(predictions))
    raise ValueError(f"retrieval is scored by tatoeba_accuracy or bucc_f1, not {metric!r}")
