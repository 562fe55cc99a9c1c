"""Sentence retrieval: BUCC 2018 bitext mining, Tatoeba, and XTREME-R's language-agnostic
retrieval (LAReQA, Mewsli-X), scored without fine-tuning.

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
    ranked = decode_ranked(feats, embeddings, k=20)              # {query guid: [target guids]}

LAReQA and Mewsli-X rank a candidate pool for every query (source) by cosine similarity
(LAReQA: answer sentences with their paragraph, in all languages; Mewsli-X: entity
descriptions) and are scored by mAP@20. A query names what it wants with ``wants`` (the
question's cross-lingual id, the mention's entity id) and a candidate says what it answers
with ``keys``; ``references`` turns these into {query guid: relevant candidate guids}.
Ties keep pool order (the official code sorts with numpy's unstable argsort; ties between
float embeddings practically never happen).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch

from stilts_ds.metrics import (
    ExampleStats,
    bucc_best_threshold,
    bucc_example_stats,
    bucc_f1,
    bucc_pairs_above,
    map_at_k_example_stats,
    mean_average_precision_at_k,
    tatoeba_accuracy,
    tatoeba_example_stats,
)
from stilts_ds.tasks.alignment import aligned
from stilts_ds.tasks.features import Batch, Features, collate_rows
from stilts_ds.tasks.formats.base import Format

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
    # Ranking tasks (LAReQA, Mewsli-X): the key a query needs and the keys a candidate holds.
    wants: str | None = None
    keys: tuple[str, ...] = ()


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


# Similarity entries per block: the official BUCC 2018 files hold ~400k sentences a side, whose
# full similarity matrix (and the margin matrix beside it) would not fit in memory.
SIM_BLOCK_ELEMENTS = 1 << 25


def _blocks(n_rows: int, n_cols: int):
    step = max(1, SIM_BLOCK_ELEMENTS // max(n_cols, 1))
    return (slice(start, min(start + step, n_rows)) for start in range(0, n_rows, step))


def _knn_means(src: np.ndarray, trg: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean similarity of every source to its k nearest targets, and of every target to its
    k nearest sources, one block of sources at a time (a running top-k per target)."""
    kf, kb = min(k, len(trg)), min(k, len(src))
    fwd = np.empty(len(src), dtype=np.float64)
    bwd_top = np.full((kb, len(trg)), -np.inf, dtype=np.float32)
    for rows in _blocks(len(src), len(trg)):
        block = src[rows] @ trg.T
        fwd[rows] = np.sort(np.partition(block, block.shape[1] - kf, axis=1)[:, -kf:], axis=1).mean(axis=1)
        merged = np.concatenate([bwd_top, block], axis=0)
        bwd_top = np.partition(merged, merged.shape[0] - kb, axis=0)[-kb:]
    return fwd, np.sort(bwd_top, axis=0).mean(axis=0, dtype=np.float64)


def mine_bucc_candidates(features: Features, embeddings: np.ndarray, k: int = MARGIN_NEIGHBOURS):
    """Ratio-margin candidates: forward (best target per source) and backward (best source
    per target), merged, sorted by score, each sentence kept in its best pair only.

    margin(x, y) = cos(x, y) / (mean_k cos(x, NN_k(x)) / 2 + mean_k cos(y, NN_k(y)) / 2)

    Exact (no approximate search), in blocks of sources: memory grows with the block, not
    with sources x targets.
    """
    src_ids, src, trg_ids, trg = _split(features, embeddings)
    if not len(src) or not len(trg):
        return []
    fwd_avg, bwd_avg = _knn_means(src, trg, k)
    best_trg = np.empty(len(src), dtype=np.int64)
    best_src = np.zeros(len(trg), dtype=np.int64)
    best_src_margin = np.full(len(trg), -np.inf)
    for rows in _blocks(len(src), len(trg)):
        margin = (src[rows] @ trg.T) / (fwd_avg[rows, None] / 2 + bwd_avg[None, :] / 2)
        best_trg[rows] = margin.argmax(axis=1)
        col_best, col_arg = margin.max(axis=0), margin.argmax(axis=0) + rows.start
        better = col_best > best_src_margin  # strictly: the first source wins ties, as argmax does
        best_src_margin[better], best_src[better] = col_best[better], col_arg[better]
    cands = {(i, int(best_trg[i])) for i in range(len(src_ids))} | {(int(best_src[j]), j) for j in range(len(trg_ids))}

    def margin_of(i: int, j: int) -> float:
        return float(src[i] @ trg[j]) / (fwd_avg[i] / 2 + bwd_avg[j] / 2)

    scored = {ij: margin_of(*ij) for ij in cands}
    ranked = sorted(cands, key=lambda ij: -scored[ij])
    used_src, used_trg, out = set(), set(), []
    for i, j in ranked:
        if i in used_src or j in used_trg:
            continue
        used_src.add(i)
        used_trg.add(j)
        out.append(((str(src_ids[i]), str(trg_ids[j])), scored[(i, j)]))
    return out


RANK_K = 20  # XTREME-R scores the top 20 (utils_mewslix.TOP_K, mean_avg_prec_at_k(k=20))
QUERY_CHUNK = 1024  # queries per similarity block: a Mewsli-X pool holds ~1M candidates


def decode_ranked(features: Features, embeddings: np.ndarray, k: int = RANK_K) -> dict[str, list[str]]:
    """The ``k`` most cosine-similar targets of every source, best first."""
    src_ids, src, trg_ids, trg = _split(features, embeddings)
    if len(trg_ids) == 0:
        raise ValueError("no candidates (target rows) to rank: the split holds queries only")
    k = min(k, len(trg_ids))
    out: dict[str, list[str]] = {}
    for start in range(0, len(src_ids), QUERY_CHUNK):
        sim = src[start:start + QUERY_CHUNK] @ trg.T
        # argpartition finds the top k without sorting the whole pool; then sort those k,
        # stable on -score so that ties keep pool order.
        top = np.argpartition(-sim, k - 1, axis=1)[:, :k] if k < sim.shape[1] else \
            np.tile(np.arange(sim.shape[1]), (len(sim), 1))
        for row, cand in enumerate(top):
            order = cand[np.lexsort((cand, -sim[row, cand]))]
            out[str(src_ids[start + row])] = [str(trg_ids[j]) for j in order]
    return out


def references(examples: Sequence[Example]) -> dict:
    """Bitext tasks: {source guid: gold target guid} for parallel source sentences. Ranking
    tasks: {query guid: relevant candidate guids (a tuple, pool order)}; a query that no
    candidate answers is an error (its AP is undefined)."""
    refs: dict = {ex.guid: ex.gold for ex in examples if ex.side == SOURCE and ex.gold is not None}
    wanting = [ex for ex in examples if ex.side == SOURCE and ex.wants is not None]
    if wanting:
        by_key: dict[str, list[str]] = {}
        for ex in examples:
            if ex.side == TARGET:
                for key in ex.keys:
                    by_key.setdefault(key, []).append(ex.guid)
        for ex in wanting:
            relevant = by_key.get(ex.wants)
            if not relevant:
                raise ValueError(f"query {ex.guid}: no candidate in the pool answers {ex.wants!r}")
            refs[ex.guid] = tuple(relevant)
    return refs


MAP_METRICS = ("lareqa_map_at_20", "mewslix_map_at_20")


def score(metric: str, refs: Mapping[str, str], predictions, lang: str | None = None) -> dict:
    """Tatoeba: ``predictions`` {source guid: target guid}. BUCC: a list of (src, trg) pairs.
    LAReQA / Mewsli-X: {query guid: ranked candidate guids}."""
    if metric == "tatoeba_accuracy":
        return tatoeba_accuracy(*aligned(refs, predictions))
    if metric == "bucc_f1":
        return bucc_f1(list(refs.items()), list(predictions))
    if metric in MAP_METRICS:
        # In memory every query has its relevant set (a Mewsli-X mention: one entity), so
        # both tasks are plain mAP@20; the file scorers add the official file quirks.
        return mean_average_precision_at_k(predictions, {q: set(r) for q, r in refs.items()}, k=RANK_K)
    raise ValueError(f"retrieval is scored by tatoeba_accuracy, bucc_f1 or {' / '.join(MAP_METRICS)}, "
                     f"not {metric!r}")


def example_stats(metric: str, refs: Mapping, predictions, lang: str | None = None, *,
                  sources: Sequence[str] = ()) -> ExampleStats:
    """``score`` per source sentence / query. BUCC: a row per source sentence, ``sources``
    (every source of the split, distractors too) first; the others in reference order."""
    if metric == "tatoeba_accuracy":
        return ExampleStats(metric, list(refs), tatoeba_example_stats(*aligned(refs, predictions)))
    if metric == "bucc_f1":
        guids, rows = bucc_example_stats(list(refs.items()), list(predictions), sources)
        return ExampleStats(metric, guids, rows)
    if metric in MAP_METRICS:
        return ExampleStats(metric, list(refs), map_at_k_example_stats(
            predictions, {q: set(r) for q, r in refs.items()}, k=RANK_K))
    raise ValueError(f"retrieval is scored by tatoeba_accuracy, bucc_f1 or {' / '.join(MAP_METRICS)}, "
                     f"not {metric!r}")


class Retrieval(Format):
    """Sentence embeddings from the bare encoder (no head, no training): Tatoeba accuracy,
    BUCC F1 with a threshold tuned on dev, LAReQA / Mewsli-X mAP@20."""

    name = "retrieval"
    output_keys = ("embeddings",)
    has_head = False
    trains = False

    def num_labels(self, spec, labels):
        return 0

    def _featurize(self, spec, examples, tokenizer, max_length, labels):
        return featurize(examples, tokenizer, max_length)

    def example_stats(self, spec, feats, predictions, lang):
        # Every source sentence is an example (a BUCC distractor can only add false positives),
        # so two systems scored on the same split have the same rows.
        sources = feats.guids[feats.extras["sides"] == SOURCE] if "sides" in feats.extras else ()
        return example_stats(spec.metric, feats.extras["references"], predictions, lang, sources=sources)

    def needs_dev(self, spec):
        # BUCC's margin threshold is tuned on each language's dev split, as XTREME does.
        return spec.metric == "bucc_f1"

    def tune(self, spec, dev, outputs):
        if not self.needs_dev(spec):
            return None
        candidates = mine_bucc_candidates(dev, outputs["embeddings"])
        return bucc_best_threshold(candidates, dev.extras["references"].items())

    def decode(self, spec, feats, outputs, *, tuned=None):
        embeddings = outputs["embeddings"]
        if spec.metric == "tatoeba_accuracy":
            return decode_tatoeba(feats, embeddings)
        if spec.metric in MAP_METRICS:  # XTREME-R LAReQA / Mewsli-X: top-20 ranking
            return decode_ranked(feats, embeddings, k=RANK_K)
        if tuned is None:
            raise ValueError(f"{spec.name}: BUCC pairs are kept above a threshold tuned on the dev split "
                             "first (Format.tune, or evaluate(..., dev=...))")
        return bucc_pairs_above(mine_bucc_candidates(feats, embeddings), tuned)


FORMAT = Retrieval()
