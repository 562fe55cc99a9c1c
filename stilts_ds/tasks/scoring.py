"""Model selection's one number from a task's scores: ``primary_score``.

Decoding and scoring belong to the task's format (``stilts_ds.tasks.formats``)::

    fmt = format_of(spec)
    preds = fmt.decode(spec, feats, outputs)          # {guid: prediction}
    scores = fmt.score(spec, feats, preds, lang)      # {metric: value}
    stats = fmt.example_stats(spec, feats, preds, lang)   # per example; stats.score() == scores
    best = primary_score(scores)                      # what model selection maximises

``stats`` (``stilts_ds.metrics.example_stats.ExampleStats``) is what phase 3 keeps per
language for the error bars (``stilts_ds.metrics.uncertainty``).
"""
from __future__ import annotations

from typing import Mapping


def primary_score(scores: Mapping[str, float]) -> float:
    """The number model selection maximises: (EM+F1)/2 for QA, else F1, else accuracy."""
    if "exact_match" in scores and "f1" in scores:
        return (scores["exact_match"] + scores["f1"]) / 2
    for key in ("f1", "accuracy", "map@20"):
        if key in scores:
            return scores[key]
    raise KeyError(f"no primary metric among {sorted(scores)}")
