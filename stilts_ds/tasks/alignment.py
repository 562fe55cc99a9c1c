"""Pairing predictions with references by guid, the last step before a metric.

Distributed evaluation gathers ``{guid: prediction}`` from every rank; a lost example
would silently raise or lower a score, so a missing guid is an error here (span QA is the
exception: the official SQuAD scripts score a missing answer as 0 with a warning, and
its metric does that itself).
"""
from __future__ import annotations

from typing import Any, Mapping


def aligned(refs: Mapping[str, Any], predictions: Mapping[str, Any]) -> tuple[list, list]:
    """(golds, predictions) in reference order; raises if any reference has no prediction."""
    missing = [g for g in refs if g not in predictions]
    if missing:
        raise ValueError(
            f"{len(missing)} of {len(refs)} examples have no prediction (first: {missing[0]}); "
            "predictions must cover every guid of the split"
        )
    return [refs[g] for g in refs], [predictions[g] for g in refs]
