"""Known answers through the span-QA format (stilts_ds/tasks/formats/span_qa.py: SpanQA.score).

Small datasets in the official file formats (SQuAD v1.1 / v2.0 JSON; MLQA and XQuAD ship the
v1.1 format), read the way the data loader reads them (the hub's one-row-per-question schema,
through the task's reader), featurized as ``stilts-ds prepare`` does, decoded from logits that
pick chosen spans (``format_of(spec).decode``), and scored by ``format_of(spec).score`` with the task's
spec and language. Every EM/F1 below is worked out by hand, question by question, and
asserted exactly; the same numbers must come out of ``score_files`` on the official reference
file, so the references that ride in the features are the official ones.

Awkward cases on purpose: one-character answers ("7", "3", and "A", which SQuAD's
normalisation deletes as an article), CJK text (MLQA's per-character tokens against SQuAD's
whitespace tokens), full-width punctuation (removed by MLQA's normaliser, kept by SQuAD's), and
SQuAD v2 unanswerable questions (abstaining, and answering one anyway).
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from stilts_ds.data.prepare import featurize_examples
from stilts_ds.data.sources import load_examples
from stilts_ds.evaluation import score_files
from stilts_ds.evaluation.official_files import read_squad_references
from stilts_ds.tasks.registry import get_task
from stilts_ds.tasks.formats import format_of

MAX_LENGTH = 128  # every context below fits one window


def _qa(qid, question, answers=(), impossible=None, plausible=()):
    """One official ``qas`` entry; ``answers`` as (text, answer_start) pairs."""
    qa = {"id": qid, "question": question, "answers": [{"text": t, "answer_start": s} for t, s in answers]}
    if impossible is not None:  # SQuAD v2.0 only
        qa["is_impossible"] = impossible
        if plausible:
            qa["plausible_answers"] = [{"text": t, "answer_start": s} for t, s in plausible]
    return qa


def _official(version, articles):
    """An official SQuAD-format file body: {"version", "data": [{"title", "paragraphs": [...]}]}."""
    return {"version": version, "data": [{"title": title, "paragraphs": paragraphs} for title, paragraphs in articles]}


def _hub_rows(official):
    """The official nesting flattened to one row per question, the schema of the hub's squad,
    squad_v2 and xtreme MLQA/XQuAD rows (what the task's reader and local files take)."""
    for article in official["data"]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                yield {"id": qa["id"], "title": article["title"], "context": paragraph["context"],
                       "question": qa["question"],
                       "answers": {"text": [a["text"] for a in qa["answers"]],
                                   "answer_start": [a["answer_start"] for a in qa["answers"]]}}


def _walk(tmp_path, tokenizer, task, split, lang, official, picks):
    """Official file -> local data dir -> examples -> features; logits that pick ``picks``
    ({qid: (text, char start)} or {qid: None} to abstain at the <s> position); decode; score.
    Returns (predictions, scores, the official file)."""
    spec = get_task(task)
    official_path = tmp_path / f"{task}-{split}-{lang}.json"
    official_path.write_text(json.dumps(official, ensure_ascii=False), encoding="utf-8")
    data_dir = tmp_path / "data"
    local = data_dir / spec.local_file(split, lang)
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in _hub_rows(official)), encoding="utf-8")

    examples = load_examples(spec, split, lang, source="local", data_dir=data_dir)
    feats = featurize_examples(spec, examples, tokenizer, MAX_LENGTH, None)
    assert len(feats) == len(examples) == len(picks)  # one window per question
    # The gold answers that travel in the features are those of the official file.
    assert feats.extras["references"] == read_squad_references(official_path)

    offsets = feats.extras["offsets"]
    start = np.zeros(offsets.shape[:2], dtype=np.float32)
    end = np.zeros_like(start)
    contexts = feats.extras["contexts"]
    for row, qid in enumerate(feats.guids):
        pick = picks[qid]
        if pick is None:  # abstain: the null span (SQuAD v2 predicts "" when it wins)
            start[row, 0] = end[row, 0] = 10.0
            continue
        text, at = pick
        assert contexts[qid][at:at + len(text)] == text, (qid, text, at)
        s = np.flatnonzero(offsets[row, :, 0] == at)
        e = np.flatnonzero(offsets[row, :, 1] == at + len(text))
        assert len(s) and len(e), f"{qid}: {text!r} is not a whole-token span for this tokenizer"
        start[row, s[0]] = end[row, e[-1]] = 10.0
    preds = format_of(spec).decode(spec, feats, {"start_logits": start, "end_logits": end})
    scores = format_of(spec).score(spec, feats, preds, lang)

    # The official-file scorer (stilts-ds score) agrees on the same predictions.
    preds_path = tmp_path / f"{task}-{split}-{lang}.predictions.json"
    preds_path.write_text(json.dumps(preds, ensure_ascii=False), encoding="utf-8")
    assert score_files(spec.metric, preds_path, official_path, lang=lang) == scores
    return preds, scores


# ------------------------------------------------------------------------------ English

BRONCOS = "The Denver Broncos defeated the Carolina Panthers to win the title."
FLAT = "Apartment 7 is on the third floor."
GRADE = "She received an A in physics."
SOFIA = "Sofia moved from Paris to Rome in 1989."


def test_squad_v1(tmp_path, tokenizer):
    official = _official("1.1", [
        ("Super_Bowl", [{"context": BRONCOS, "qas": [
            _qa("e1", "Who won?", [("Denver Broncos", 4), ("The Denver Broncos", 0)])]}]),
        ("Flats", [{"context": FLAT, "qas": [_qa("e2", "Which apartment is on the third floor?", [("7", 10)])]}]),
        ("Grades", [{"context": GRADE, "qas": [_qa("e3", "What grade did she receive?", [("A", 16)])]}]),
        ("Sofia", [{"context": SOFIA, "qas": [_qa("e4", "Where did Sofia move to?", [("Rome", 26)])]}]),
    ])
    preds, scores = _walk(tmp_path, tokenizer, "squad_v1", "validation", "en", official, {
        "e1": ("The Denver Broncos", 0),
        "e2": ("Apartment 7", 0),
        "e3": ("A", 16),
        "e4": ("Paris", 17),
    })
    assert preds == {"e1": "The Denver Broncos", "e2": "Apartment 7", "e3": "A", "e4": "Paris"}
    # e1: "the denver broncos" -> "denver broncos" = the first gold:              EM 1, F1 1
    # e2: [apartment, 7] vs [7]: 1 common, P 1/2, R 1, F1 2PR/(P+R) = 2/3:         EM 0, F1 2/3
    # e3: "A" is an article: both sides normalise to "" -- equal, but no shared
    #     token, and v1.1 F1 is 0 without one:                                     EM 1, F1 0
    # e4: paris vs rome:                                                            EM 0, F1 0
    assert scores == {"exact_match": 100.0 * (1 + 0 + 1 + 0) / 4, "f1": 100.0 * (1 + 2 / 3 + 0 + 0) / 4}
    assert scores == {"exact_match": 50.0, "f1": pytest.approx(125 / 3, abs=1e-12)}


def test_squad_v2_with_unanswerable_questions(tmp_path, tokenizer):
    official = _official("v2.0", [
        ("Super_Bowl", [{"context": BRONCOS, "qas": [
            _qa("v1", "Who won?", [("Denver Broncos", 4), ("The Denver Broncos", 0)], impossible=False)]}]),
        ("Sofia", [{"context": SOFIA, "qas": [
            _qa("v2", "In what year did Sofia move to Lisbon?", impossible=True, plausible=[("1989", 34)]),
            _qa("v4", "Who moved to Madrid?", impossible=True, plausible=[("Sofia", 0)]),
        ]}]),
        ("Flats", [{"context": FLAT, "qas": [
            _qa("v3", "Which apartment is on the third floor?", [("7", 10)], impossible=False)]}]),
        ("Grades", [{"context": GRADE, "qas": [
            _qa("v5", "What grade did she receive?", [("A", 16)], impossible=False)]}]),
    ])
    preds, scores = _walk(tmp_path, tokenizer, "squad_v2", "validation", "en", official, {
        "v1": ("The Denver Broncos", 0),
        "v2": None,  # abstains on an unanswerable question
        "v3": ("Apartment 7", 0),
        "v4": ("Sofia", 0),  # answers an unanswerable question
        "v5": None,  # abstains on an answerable one whose only answer normalises to nothing
    })
    assert preds == {"v1": "The Denver Broncos", "v2": "", "v3": "Apartment 7", "v4": "Sofia", "v5": ""}
    # Dataset order is v1, v2, v4, v3, v5 (file order); sums are in that order.
    # v1: has answer, matches a gold:                                              EM 1, F1 1
    # v2: no answer, "" predicted: the gold is "", and two empty token lists
    #     are a full v2.0 match:                                                   EM 1, F1 1
    # v4: no answer, "sofia" predicted:                                            EM 0, F1 0
    # v3: has answer, [apartment, 7] vs [7]:                                       EM 0, F1 2/3
    # v5: has an answer, "A", which normalises to "": v2.0 drops it, the gold
    #     becomes "", so abstaining scores in full:                                EM 1, F1 1
    assert scores == {
        "exact_match": 100.0 * (1 + 1 + 0 + 0 + 1) / 5,
        "f1": 100.0 * (1 + 1 + 0 + 2 / 3 + 1) / 5,
        "total": 5,
        "has_ans_exact_match": 100.0 * (1 + 0 + 1) / 3,
        "has_ans_f1": 100.0 * (1 + 2 / 3 + 1) / 3,
        "has_ans_total": 3,
        "no_ans_exact_match": 100.0 * (1 + 0) / 2,
        "no_ans_f1": 100.0 * (1 + 0) / 2,
        "no_ans_total": 2,
    }
    assert (scores["exact_match"], scores["no_ans_exact_match"], scores["no_ans_f1"]) == (60.0, 50.0, 50.0)
    assert scores["f1"] == pytest.approx(220 / 3, abs=1e-12)
    assert scores["has_ans_exact_match"] == pytest.approx(200 / 3, abs=1e-12)
    assert scores["has_ans_f1"] == pytest.approx(800 / 9, abs=1e-12)


# ------------------------------------------------------------------------------ Chinese

CAPITAL = "北京是中国的首都，也是一座历史悠久的城市。"
CHILDREN = "他有3个孩子。"
ZH = _official(1, [
    ("北京", [{"context": CAPITAL, "qas": [
        _qa("z1", "中国的首都是哪里？", [("北京", 0)]),
        _qa("z2", "北京是中国的什么？", [("首都", 6)]),
    ]}]),
    ("孩子", [{"context": CHILDREN, "qas": [_qa("z3", "他有几个孩子？", [("3", 2)])]}]),
])
ZH_PICKS = {"z1": ("北京是中国的首都", 0), "z2": ("首都，", 6), "z3": ("3", 2)}
ZH_PREDS = {"z1": "北京是中国的首都", "z2": "首都，", "z3": "3"}


def test_mlqa_chinese(tmp_path, tokenizer):
    preds, scores = _walk(tmp_path, tokenizer, "mlqa", "test", "zh", ZH, ZH_PICKS)
    assert preds == ZH_PREDS
    # MLQA zh: Unicode punctuation removed, every CJK character its own token.
    # z1: [北 京 是 中 国 的 首 都] vs [北 京]: 2 common, P 2/8, R 1, F1 0.4:      EM 0, F1 0.4
    # z2: "首都，" -> "首都" (the full-width comma is punctuation):               EM 1, F1 1
    # z3: "3" = "3", a one-character answer:                                       EM 1, F1 1
    assert scores == {"exact_match": 100.0 * (0 + 1 + 1) / 3, "f1": 100.0 * (0.4 + 1 + 1) / 3}
    assert scores == {"exact_match": pytest.approx(200 / 3, abs=1e-12), "f1": 80.0}


def test_xquad_chinese_scores_the_same_predictions_with_squad_rules(tmp_path, tokenizer):
    """XQuAD zh is scored by the SQuAD v1.1 script: whitespace tokens and ASCII punctuation
    only, so the same predictions as MLQA's above score lower."""
    preds, scores = _walk(tmp_path, tokenizer, "xquad", "test", "zh", ZH, ZH_PICKS)
    assert preds == ZH_PREDS
    # z1: "北京是中国的首都" vs "北京": one whitespace token each, different:      EM 0, F1 0
    # z2: "首都，" keeps its full-width comma: one token, not "首都":               EM 0, F1 0
    # z3: "3" = "3":                                                                EM 1, F1 1
    assert scores == {"exact_match": 100.0 * (0 + 0 + 1) / 3, "f1": 100.0 * (0 + 0 + 1) / 3}
    assert scores == pytest.approx({"exact_match": 100 / 3, "f1": 100 / 3}, abs=1e-12)
