"""SQuAD v1.1 / v2.0 EM and F1: hand-computed known answers and the official quirks."""

import math

import pytest

from stilts_ds.metrics import UnansweredQuestionWarning, normalize_answer
from stilts_ds.metrics import squad_v1_em_f1, squad_v2_em_f1


def test_normalize_answer_lowercases_strips_ascii_punctuation_and_articles():
    assert normalize_answer("The  Denver Broncos!") == "denver broncos"
    assert normalize_answer("A cat, an owl") == "cat owl"
    # Punctuation goes first, so dotted abbreviations keep their letters.
    assert normalize_answer("U.S.A.") == "usa"
    assert normalize_answer("...") == ""


def test_v1_articles_removed_give_exact_match():
    scores = squad_v1_em_f1({"q1": ["Eiffel Tower"]}, {"q1": "the Eiffel Tower"})
    assert scores == {"exact_match": 100.0, "f1": 100.0}
    assert squad_v1_em_f1({"q1": ["cat"]}, {"q1": "A cat."})["exact_match"] == 100.0


def test_v1_partial_f1():
    # pred tokens {denver, broncos, team}, gold {denver, broncos}: P=2/3, R=1 -> F1 0.8
    scores = squad_v1_em_f1({"q1": ["Denver Broncos"]}, {"q1": "Denver Broncos team"})
    assert scores["exact_match"] == 0.0
    assert scores["f1"] == pytest.approx(80.0)


def test_v1_takes_max_over_gold_answers():
    # vs "Broncos": P=1/2, R=1 -> 2/3; vs "Denver": same; EM 0 against both.
    scores = squad_v1_em_f1({"q1": ["Broncos", "Denver"]}, {"q1": "Denver Broncos"})
    assert scores["exact_match"] == 0.0
    assert scores["f1"] == pytest.approx(200 / 3)
    scores = squad_v1_em_f1({"q1": ["Carolina", "Denver Broncos"]}, {"q1": "denver broncos"})
    assert scores == {"exact_match": 100.0, "f1": 100.0}


def test_v1_empty_vs_empty_is_exact_match_but_zero_f1():
    # The v1.1 quirk: no shared token -> F1 0, even when both sides are empty.
    assert squad_v1_em_f1({"q1": [""]}, {"q1": ""}) == {"exact_match": 100.0, "f1": 0.0}


def test_v1_punctuation_only_answers_normalise_to_empty():
    assert squad_v1_em_f1({"q1": ["!!!"]}, {"q1": "..."}) == {"exact_match": 100.0, "f1": 0.0}
    assert squad_v1_em_f1({"q1": ["the"]}, {"q1": "a"}) == {"exact_match": 100.0, "f1": 0.0}


def test_v1_normalisation_is_ascii_and_whitespace_only():
    # XQuAD zh/ar... go through this English normaliser: '«' is not ASCII punctuation, and
    # an unsegmented Chinese answer is a single token, so partial overlap scores 0.
    assert squad_v1_em_f1({"q1": ["Paris"]}, {"q1": "«Paris»"}) == {"exact_match": 0.0, "f1": 0.0}
    assert squad_v1_em_f1({"q1": ["北京"]}, {"q1": "北京大学"}) == {"exact_match": 0.0, "f1": 0.0}


def test_v1_averages_over_all_questions():
    refs = {"q1": ["Denver Broncos"], "q2": ["Carolina Panthers"], "q3": ["Santa Clara"]}
    preds = {"q1": "Denver Broncos", "q2": "Panthers", "q3": "Levi's Stadium"}
    # EM 1+0+0; F1 1 + (P=1, R=1/2 -> 2/3) + 0
    scores = squad_v1_em_f1(refs, preds)
    assert scores["exact_match"] == pytest.approx(100 / 3)
    assert scores["f1"] == pytest.approx(100 * (1 + 2 / 3) / 3)


def test_v1_unanswered_question_scores_zero_counts_and_warns_with_its_id():
    refs = {"q1": ["Denver"], "q-missing": ["Carolina"]}
    with pytest.warns(UnansweredQuestionWarning, match="Unanswered question q-missing will receive score 0"):
        scores = squad_v1_em_f1(refs, {"q1": "Denver", "unrelated": "ignored"})
    assert scores == {"exact_match": 50.0, "f1": 50.0}


def test_v1_rejects_unscorable_input():
    with pytest.raises(ValueError, match="no reference questions"):
        squad_v1_em_f1({}, {})
    with pytest.raises(ValueError, match="'q1' has no gold answers"):
        squad_v1_em_f1({"q1": []}, {"q1": "x"})
    with pytest.raises(ValueError, match="list of strings"):
        squad_v1_em_f1({"q1": "Denver"}, {"q1": "Denver"})
    with pytest.raises(ValueError, match="must be a string"):
        squad_v1_em_f1({"q1": ["Denver"]}, {"q1": ["Denver"]})


def test_v2_has_answer_and_no_answer_cases():
    refs = {
        "has_partial": ["Denver Broncos"],  # pred "Broncos": P=1, R=1/2 -> F1 2/3, EM 0
        "has_abstained": ["Carolina Panthers"],  # pred "": abstain wrong -> 0, 0
        "none_abstained": [],  # pred "": abstain right -> 1, 1
        "none_answered": [],  # pred "Denver": answer where none -> 0, 0
        "none_the": [],  # pred "The" normalises to nothing -> counts as abstaining: 1, 1
    }
    preds = {
        "has_partial": "Broncos",
        "has_abstained": "",
        "none_abstained": "",
        "none_answered": "Denver",
        "none_the": "The",
    }
    scores = squad_v2_em_f1(refs, preds)
    assert scores["total"] == 5
    assert scores["exact_match"] == pytest.approx(100 * 2 / 5)
    assert scores["f1"] == pytest.approx(100 * (2 / 3 + 1 + 1) / 5)
    assert scores["has_ans_total"] == 2
    assert scores["has_ans_exact_match"] == 0.0
    assert scores["has_ans_f1"] == pytest.approx(100 * (2 / 3) / 2)
    assert scores["no_ans_total"] == 3
    assert scores["no_ans_exact_match"] == pytest.approx(200 / 3)
    assert scores["no_ans_f1"] == pytest.approx(200 / 3)


def test_v2_empty_vs_empty_is_a_full_match_unlike_v1():
    assert squad_v2_em_f1({"q": []}, {"q": ""})["f1"] == 100.0
    assert squad_v1_em_f1({"q": [""]}, {"q": ""})["f1"] == 0.0


def test_v2_answers_that_normalise_to_nothing_make_the_gold_empty_but_stay_has_answer():
    # The official script buckets by "answers list non-empty" but scores against the
    # answers whose normalised text is non-empty, falling back to ''.
    scores = squad_v2_em_f1({"q": ["The", "..."]}, {"q": ""})
    assert scores["exact_match"] == 100.0 and scores["f1"] == 100.0
    assert scores["has_ans_total"] == 1 and scores["no_ans_total"] == 0
    assert math.isnan(scores["no_ans_exact_match"]) and math.isnan(scores["no_ans_f1"])


def test_v2_missing_prediction_scores_zero_and_counts():
    with pytest.warns(UnansweredQuestionWarning, match="q2"):
        scores = squad_v2_em_f1({"q1": [], "q2": []}, {"q1": ""})
    assert scores["exact_match"] == 50.0 and scores["no_ans_total"] == 2


def test_v2_rejects_empty_references():
    with pytest.raises(ValueError):
        squad_v2_em_f1({}, {})
