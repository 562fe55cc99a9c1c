"""Scoring files in the official XTREME formats.

Usage::

    from stilts_ds.evaluation import score_files, ScoreInputError
    score_files("seqeval_f1", "predictions/panx/test-de.tsv", "labels/panx/test-de.tsv")

``official_files`` holds the readers (one per xtreme ``evaluate.py`` format), ``score``
picks the readers for a metric name from ``stilts_ds.metrics.METRICS``, and every
unusable input raises ``ScoreInputError`` naming the file (and line).
"""

from stilts_ds.evaluation.errors import ScoreInputError
from stilts_ds.evaluation.official_files import (
    read_bucc_pairs,
    read_labels,
    read_qa_predictions,
    read_ranked_ids,
    read_squad_references,
    read_tags,
    read_xcopa_labels,
)
from stilts_ds.evaluation.score import score_files

__all__ = [
    "ScoreInputError",
    "read_bucc_pairs",
    "read_labels",
    "read_qa_predictions",
    "read_ranked_ids",
    "read_squad_references",
    "read_tags",
    "read_xcopa_labels",
    "score_files",
]
