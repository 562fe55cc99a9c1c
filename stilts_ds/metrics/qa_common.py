"""The scoring loop shared by SQuAD v1.1 and MLQA: best EM/F1 over gold answers, averaged.

Not usually called directly: ``squad.squad_v1_em_f1`` and ``mlqa.mlqa_em_f1`` wrap
``mean_best_em_f1`` with their own answer normalisation. What lives here is the part both
official scripts (xtreme ``third_party/evaluate_squad.py`` and ``evaluate_mlqa.py``) share:

- every reference question is in the denominator, answered or not; a question with no
  prediction scores 0 and triggers an ``UnansweredQuestionWarning`` naming its id
  (the official scripts print the same sentence to stderr);
- per question, EM and F1 are each the maximum over that question's gold answers;
- token F1 is 0 as soon as prediction and gold share no token, so two answers that both
  normalise to nothing get EM 1 but F1 0 (the v1.1 quirk; SQuAD v2.0 differs, see squad.py);
- predictions for ids that are not in the references are ignored.

``best_em_f1_rows`` is the same loop kept per question (exact match, F1, 1) for
``stilts_ds.metrics.example_stats``; it does not warn (scoring the same predictions already
did).
"""

from __future__ import annotations

import warnings
from collections import Counter
from typing import Callable, Mapping, Sequence

import numpy as np


class UnansweredQuestionWarning(UserWarning):
    """A reference question has no prediction; it scores 0 and still counts."""


def warn_unanswered(qid: str) -> None:
    """Warn that ``qid`` has no prediction (same wording as the official scripts)."""
    warnings.warn(
        f"Unanswered question {qid} will receive score 0.",
        UnansweredQuestionWarning,
        stacklevel=3,
    )


def overlap_f1(prediction_tokens: Sequence[str], gold_tokens: Sequence[str]) -> float:
    """Bag-of-tokens F1 between two token lists, SQuAD v1.1 rule.

    Returns 0 when nothing overlaps, including when both lists are empty. The arithmetic
    is done in the same order as the official script (precision, recall, then
    2PR/(P+R)) so results are bit-identical, not merely close.
    """
    common = Counter(prediction_tokens) & Counter(gold_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = num_same / len(prediction_tokens)
    recall = num_same / len(gold_tokens)
    return (2 * precision * recall) / (precision + recall)


def gold_answer_list(qid: str, answers: Sequence[str]) -> list[str]:
    """Validate one question's gold answers and return them as a list.

    A bare string is rejected: iterating it would silently score against its characters.
    """
    if isinstance(answers, str):
        raise ValueError(
            f"gold answers for question {qid!r} must be a list of strings, got the string "
            f"{answers!r}; wrap it in a list"
        )
    answers = list(answers)
    for answer in answers:
        if not isinstance(answer, str):
            raise ValueError(
                f"gold answers for question {qid!r} must be strings, got {type(answer).__name__}"
            )
    return answers


def prediction_text(qid: str, predictions: Mapping[str, str]) -> str:
    """Fetch and type-check the prediction for ``qid`` (caller checked it is present)."""
    text = predictions[qid]
    if not isinstance(text, str):
        raise ValueError(
            f"prediction for question {qid!r} must be a string, got {type(text).__name__}"
        )
    return text


def mean_best_em_f1(
    references: Mapping[str, Sequence[str]],
    predictions: Mapping[str, str],
    normalize: Callable[[str], str],
) -> dict[str, float]:
    """Average over reference questions of max-over-golds EM and F1, both x100.

    ``normalize`` maps an answer string to its normalised form; tokens are its
    whitespace split (for MLQA zh the normaliser has already put spaces between
    characters). Raises ValueError when there are no questions, or when a question has
    no gold answer at all (the official scripts crash on ``max([])`` there).
    """
    rows = best_em_f1_rows(references, predictions, normalize)
    for qid in references:
        if qid not in predictions:
            warn_unanswered(qid)
    # Summed left to right from 0, as the official loop accumulates: the float sum (and so the
    # score) is bit-identical to it.
    exact_match, f1 = sum(rows[:, 0].tolist()), sum(rows[:, 1].tolist())
    total = len(references)
    return {"exact_match": 100.0 * exact_match / total, "f1": 100.0 * f1 / total}


def best_em_f1_rows(
    references: Mapping[str, Sequence[str]],
    predictions: Mapping[str, str],
    normalize: Callable[[str], str],
) -> np.ndarray:
    """[questions, 3] rows (exact match 0/1, best F1, total 1) in reference order: the
    per-question terms of ``mean_best_em_f1`` (an unanswered question is (0, 0, 1)), whose
    column sums give its EM and F1. Raises as it does."""
    if len(references) == 0:
        raise ValueError("no reference questions to score")
    rows = np.zeros((len(references), 3))
    rows[:, 2] = 1.0
    for i, (qid, answers) in enumerate(references.items()):
        golds = gold_answer_list(qid, answers)
        if qid not in predictions:
            continue
        if not golds:
            raise ValueError(
                f"question {qid!r} has no gold answers; SQuAD v1.1-style scoring needs at "
                "least one (use squad_v2_em_f1 for unanswerable questions)"
            )
        predicted = normalize(prediction_text(qid, predictions))
        predicted_tokens = predicted.split()
        normalized_golds = [normalize(g) for g in golds]
        rows[i, 0] = max(predicted == g for g in normalized_golds)
        rows[i, 1] = max(overlap_f1(predicted_tokens, g.split()) for g in normalized_golds)
    return rows
