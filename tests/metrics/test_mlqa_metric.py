"""MLQA per-language normalisation: hand-computed known answers, quirks included."""

import pytest

from stilts_ds.metrics import (
    UnansweredQuestionWarning,
    mixed_segmentation,
    mlqa_em_f1,
    mlqa_normalize_answer,
)


def test_zh_mixed_segmentation_splits_chinese_characters():
    assert mixed_segmentation("NBA总决赛2019") == ["NBA", "总", "决", "赛", "2019"]
    assert mixed_segmentation("a b 中") == ["a", "b", "中"]
    assert mlqa_normalize_answer("北京大学", "zh") == "北 京 大 学"


def test_zh_partial_f1_is_per_character():
    # pred 北/京/大/学 vs gold 北/京: 2 shared, P=2/4, R=2/2 -> F1 = 2*0.5*1/1.5 = 2/3
    scores = mlqa_em_f1({"q1": ["北京"]}, {"q1": "北京大学"}, "zh")
    assert scores["exact_match"] == 0.0
    assert scores["f1"] == pytest.approx(200 / 3)


def test_zh_character_range_stops_at_u9fa5():
    # U+9FA5 is a "Chinese character" for the segmenter, U+9FA6 is not.
    assert mlqa_normalize_answer("\u9fa5\u9fa5", "zh") == "\u9fa5 \u9fa5"
    assert mlqa_normalize_answer("\u9fa6\u9fa6", "zh") == "\u9fa6\u9fa6"


def test_zh_unicode_punctuation_is_removed():
    assert mlqa_em_f1({"q1": ["北京"]}, {"q1": "「北京。」"}, "zh") == {"exact_match": 100.0, "f1": 100.0}


def test_unicode_punctuation_and_ascii_symbols_are_removed():
    # Unlike SQuAD v1.1 (ASCII only), MLQA drops every 'P*' character...
    assert mlqa_em_f1({"q1": ["Paris"]}, {"q1": "«Paris»"}, "en")["exact_match"] == 100.0
    # ...plus string.punctuation, which includes symbols like '$'.
    assert mlqa_normalize_answer("$5", "en") == "5"


def test_ar_every_al_is_replaced_even_inside_words():
    # The official pattern removes "ال" anywhere: the article goes...
    assert mlqa_normalize_answer("الكتاب", "ar") == "كتاب"
    assert mlqa_em_f1({"q1": ["كتاب"]}, {"q1": "الكتاب"}, "ar") == {"exact_match": 100.0, "f1": 100.0}
    # ...but so does an "ال" in the middle or end of a word, splitting it.
    assert mlqa_normalize_answer("مال", "ar") == "م"
    assert mlqa_normalize_answer("بالقلم", "ar") == "ب قلم"
    # pred tokens {ب, قلم} vs gold {قلم}: P=1/2, R=1 -> F1 2/3
    scores = mlqa_em_f1({"q1": ["القلم"]}, {"q1": "بالقلم"}, "ar")
    assert scores["exact_match"] == 0.0
    assert scores["f1"] == pytest.approx(200 / 3)


def test_de_articles_removed_and_english_ones_kept():
    assert mlqa_em_f1({"q1": ["Hund"]}, {"q1": "der Hund"}, "de")["exact_match"] == 100.0
    assert mlqa_em_f1({"q1": ["eine Katze"]}, {"q1": "Die Katze"}, "de")["exact_match"] == 100.0
    # "the" is not a German article: tokens {the, hund} vs {hund} -> F1 2/3
    scores = mlqa_em_f1({"q1": ["Hund"]}, {"q1": "the Hund"}, "de")
    assert scores["exact_match"] == 0.0
    assert scores["f1"] == pytest.approx(200 / 3)


def test_en_articles_removed():
    assert mlqa_em_f1({"q1": ["Eiffel Tower"]}, {"q1": "The Eiffel Tower"}, "en")["exact_match"] == 100.0


def test_es_vi_and_hi_article_lists():
    # Spanish "los" is an article even in a place name.
    assert mlqa_normalize_answer("Los Angeles", "es") == "angeles"
    # The Vietnamese list also drops "của" (of) and "là" (is).
    assert mlqa_normalize_answer("sách của tôi", "vi") == "sách tôi"
    # Hindi removes nothing, not even English articles.
    assert mlqa_normalize_answer("the book", "hi") == "the book"


def test_empty_and_punctuation_only_answers():
    assert mlqa_em_f1({"q1": ["。"]}, {"q1": ""}, "zh") == {"exact_match": 100.0, "f1": 0.0}


def test_unanswered_question_scores_zero_with_a_warning():
    with pytest.warns(UnansweredQuestionWarning, match="Unanswered question q2 will receive score 0"):
        scores = mlqa_em_f1({"q1": ["北京"], "q2": ["上海"]}, {"q1": "北京"}, "zh")
    assert scores == {"exact_match": 50.0, "f1": 50.0}


def test_unknown_language_lists_supported_ones():
    with pytest.raises(ValueError, match="en es hi vi de ar zh"):
        mlqa_em_f1({"q1": ["x"]}, {"q1": "x"}, "fr")
    with pytest.raises(ValueError, match="'ru'"):
        mlqa_normalize_answer("x", "ru")
