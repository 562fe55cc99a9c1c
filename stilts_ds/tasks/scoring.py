"""From model outputs to scores for any task: registry -> spec -> format decode -> metric.

The engine gathers per-row model outputs (numpy, rows in Features order) and calls::

    preds = decode_outputs(spec, feats, outputs)          # {guid: prediction}
    scores = score_predictions(spec, feats, preds, lang)  # {metric: value}

References travel inside the cached Features (``extras["references"]``, written by
``stilts-ds prepare``), so scoring needs neither raw data nor a tokenizer.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from stilts_ds.metrics import mlqa_em_f1, squad_v1_em_f1, squad_v2_em_f1
from stilts_ds.tasks.features import Features
from stilts_ds.tasks.formats import get_format, retrieval, span_qa
from stilts_ds.tasks.spec import TaskSpec

# Which model outputs each format's decode needs (the engine collects exactly these).
OUTPUT_KEYS = {
    "pair_classification": ("logits",),
    "multiple_choice": ("logits",),
    "tagging": ("logits",),
    "span_qa": ("start_logits", "end_logits"),
    "retrieval": ("embeddings",),
}


# Span-QA padding positions must never win a decode: a very negative logit.
PAD_LOGIT = -1e4


def pad_output(spec: TaskSpec, key: str, values: np.ndarray, width: int) -> np.ndarray:
    """Pad a batch's token-axis output (dynamic padding) back to the table's ``width`` so
    batches of different lengths stack: span logits with PAD_LOGIT, tagging logits with 0."""
    if spec.format not in ("span_qa", "tagging") or values.ndim < 2 or values.shape[1] >= width:
        return values
    pad = [(0, 0)] * values.ndim
    pad[1] = (0, width - values.shape[1])
    return np.pad(values, pad, constant_values=PAD_LOGIT if spec.format == "span_qa" else 0.0)


def decode_outputs(spec: TaskSpec, feats: Features, outputs: Mapping[str, np.ndarray], *,
                   bucc_threshold: float | None = None):
    if spec.format == "span_qa":
        return span_qa.decode(feats, outputs["start_logits"], outputs["end_logits"],
                              version_2_with_negative=bool(spec.options.get("version_2_with_negative")))
    if spec.format == "retrieval":
        if spec.metric == "tatoeba_accuracy":
            return retrieval.decode_tatoeba(feats, outputs["embeddings"])
        if spec.metric in retrieval.MAP_METRICS:  # XTREME-R LAReQA / Mewsli-X: top-20 ranking
            return retrieval.decode_ranked(feats, outputs["embeddings"], k=retrieval.RANK_K)
        cands = retrieval.mine_bucc_candidates(feats, outputs["embeddings"])
        if bucc_threshold is None:
            return cands  # the caller tunes the threshold on these (validation)
        from stilts_ds.metrics import bucc_pairs_above

        return bucc_pairs_above(cands, bucc_threshold)
    return get_format(spec.format).decode(feats, outputs["logits"])


def score_predictions(spec: TaskSpec, feats: Features, predictions, lang: str | None) -> dict[str, float]:
    refs = feats.extras["references"]
    if spec.format == "span_qa":
        if spec.metric == "mlqa":
            return mlqa_em_f1(refs, predictions, lang)
        if spec.metric == "squad_v2":
            return squad_v2_em_f1(refs, predictions)
        return squad_v1_em_f1(refs, predictions)
    return get_format(spec.format).score(spec.metric, refs, predictions, lang)


def primary_score(scores: Mapping[str, float]) -> float:
    """The number model selection maximises: (EM+F1)/2 for QA, else F1, else accuracy."""
    if "exact_match" in scores and "f1" in scores:
        return (scores["exact_match"] + scores["f1"]) / 2
    for key in ("f1", "accuracy", "map@20"):
        if key in scores:
            return scores[key]
    raise KeyError(f"no primary metric among {sorted(scores)}")
