"""SQuAD v1.1 and v2.0 exact match / F1, equal to the official evaluation scripts.

Usage::

    from stilts_ds.metrics.squad import squad_v1_em_f1, squad_v2_em_f1

    refs = {"q1": ["Denver Broncos", "The Denver Broncos"], "q2": []}
    squad_v1_em_f1({"q1": refs["q1"]}, {"q1": "the Denver Broncos!"})
    # -> {"exact_match": 100.0, "f1": 100.0}
    squad_v2_em_f1(refs, {"q1": "Broncos", "q2": ""})   # q2 unanswerable, "" abstains

``references`` maps question id -> list of gold answer texts (in dataset order: the float
sums follow it, as in the official loops); ``predictions`` maps id -> predicted text.
Scores are x100.

v1.1 (xtreme ``third_party/evaluate_squad.py``; used for XQuAD, TyDiQA-GoldP, SQuAD v1.1):
see ``qa_common`` for the loop. Its normalisation is English-only even for XQuAD's other
languages: ASCII ``string.punctuation`` only (so '«', '、', '。' survive), articles a/an/the
only, whitespace tokens only (so a Chinese answer is one token and F1 is all-or-nothing).

v2.0 (official ``evaluate-v2.0.py`` with no no-answer-probability file):

- a question is *has-answer* iff its reference answer list is non-empty (even when every
  answer normalises to nothing), which decides only the has_ans/no_ans breakdown;
- the golds actually scored are the answers whose normalised text is non-empty; if none
  remain, the only gold is '' (so predicting '' -- or 'the', or '...' -- abstains
  correctly);
- F1 when either side has no tokens is 1 if both have none, else 0 (unlike v1.1);
- a missing prediction scores 0 and counts in every denominator, with a warning. (The
  official script prints "Missing prediction for ..." and then dies with a KeyError while
  building the has_ans/no_ans breakdown, so there is no official number to match; we use
  the v1.1 convention.)
- a breakdown with no questions gets NaN EM/F1 and total 0 (the official script omits
  those keys; NaN keeps one schema).

``squad_v1_example_stats`` / ``squad_v2_example_stats`` give the same scores per question
(``stilts_ds.metrics.example_stats``): rows in reference order whose column sums make them.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from typing import Mapping, Sequence

import numpy as np

from stilts_ds.metrics.qa_common import (
    best_em_f1_rows,
    gold_answer_list,
    mean_best_em_f1,
    prediction_text,
    warn_unanswered,
)

_ASCII_PUNCTUATION = frozenset(string.punctuation)
# English articles as whole words; applied after punctuation removal, so "a.k.a." -> "aka"
# keeps its letters but a stand-alone "A" disappears.
_ENGLISH_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """SQuAD normalisation (v1.1 and v2.0 are identical).

    Lower-case, drop ASCII punctuation characters, replace the words a/an/the with a
    space, then collapse whitespace. The order matters and is the official one.
    """
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _ASCII_PUNCTUATION)
    text = _ENGLISH_ARTICLES.sub(" ", text)
    return " ".join(text.split())


def squad_v1_em_f1(
    references: Mapping[str, Sequence[str]], predictions: Mapping[str, str]
) -> dict[str, float]:
    """SQuAD v1.1 EM and F1 (x100) over all reference questions.

    Unanswered questions score 0 (warning names the id); a question with an empty gold
    list raises ValueError, as the official script cannot score it either.
    """
    return mean_best_em_f1(references, predictions, normalize_answer)


def _v2_f1(gold: str, prediction: str) -> float:
    gold_tokens = normalize_answer(gold).split()
    predicted_tokens = normalize_answer(prediction).split()
    if not gold_tokens or not predicted_tokens:
        # v2.0 treats "no tokens" as the no-answer answer: agreeing on it is a full match.
        return int(gold_tokens == predicted_tokens)
    common = Counter(gold_tokens) & Counter(predicted_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = num_same / len(predicted_tokens)
    recall = num_same / len(gold_tokens)
    return (2 * precision * recall) / (precision + recall)


def _summary(
    qids: list[str], exact: dict[str, int], f1: dict[str, float]
) -> tuple[float, float, int]:
    total = len(qids)
    if total == 0:
        return math.nan, math.nan, 0
    # sum() over qids in dataset order, as the official make_eval_dict does.
    return (
        100.0 * sum(exact[q] for q in qids) / total,
        100.0 * sum(f1[q] for q in qids) / total,
        total,
    )


def _v2_per_question(
    references: Mapping[str, Sequence[str]], predictions: Mapping[str, str], warn: bool
) -> tuple[dict[str, int], dict[str, float], dict[str, bool]]:
    """Each question's exact match, F1 and whether it has an answer (reference order)."""
    if len(references) == 0:
        raise ValueError("no reference questions to score")
    exact: dict[str, int] = {}
    f1: dict[str, float] = {}
    has_answer: dict[str, bool] = {}
    for qid, answers in references.items():
        answers = gold_answer_list(qid, answers)
        has_answer[qid] = bool(answers)
        golds = [a for a in answers if normalize_answer(a)] or [""]
        if qid not in predictions:
            if warn:
                warn_unanswered(qid)
            exact[qid] = 0
            f1[qid] = 0
            continue
        predicted = prediction_text(qid, predictions)
        normalized_prediction = normalize_answer(predicted)
        exact[qid] = max(int(normalize_answer(g) == normalized_prediction) for g in golds)
        f1[qid] = max(_v2_f1(g, predicted) for g in golds)
    return exact, f1, has_answer


def squad_v2_em_f1(
    references: Mapping[str, Sequence[str]], predictions: Mapping[str, str]
) -> dict[str, float]:
    """SQuAD v2.0 EM/F1 (x100) overall and split into has-answer / no-answer questions.

    Returns exact_match, f1, total and the same three for the has_ans_ and no_ans_
    subsets. A prediction of '' means "no answer".
    """
    exact, f1, has_answer = _v2_per_question(references, predictions, warn=True)
    all_qids = list(references)
    em_all, f1_all, total = _summary(all_qids, exact, f1)
    em_has, f1_has, total_has = _summary([q for q in all_qids if has_answer[q]], exact, f1)
    em_no, f1_no, total_no = _summary([q for q in all_qids if not has_answer[q]], exact, f1)
    return {
        "exact_match": em_all,
        "f1": f1_all,
        "total": total,
        "has_ans_exact_match": em_has,
        "has_ans_f1": f1_has,
        "has_ans_total": total_has,
        "no_ans_exact_match": em_no,
        "no_ans_f1": f1_no,
        "no_ans_total": total_no,
    }


def squad_v1_example_stats(
    references: Mapping[str, Sequence[str]], predictions: Mapping[str, str]
) -> np.ndarray:
    """[questions, 3] (exact_match, f1, total) in reference order; sums give squad_v1_em_f1."""
    return best_em_f1_rows(references, predictions, normalize_answer)


def squad_v2_example_stats(
    references: Mapping[str, Sequence[str]], predictions: Mapping[str, str]
) -> np.ndarray:
    """[questions, 9] in reference order: (exact_match, f1, total) overall, then the same for
    has-answer and for no-answer questions (zeros outside the question's own subset); sums
    give squad_v2_em_f1."""
    exact, f1, has_answer = _v2_per_question(references, predictions, warn=False)
    rows = np.zeros((len(references), 9))
    for i, qid in enumerate(references):
        own = 3 if has_answer[qid] else 6
        rows[i, [0, own]] = exact[qid]
        rows[i, [1, own + 1]] = f1[qid]
        rows[i, [2, own + 2]] = 1.0
    return rows
