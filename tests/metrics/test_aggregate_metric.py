"""Language/task averages and the XTREME score."""

import pytest

from stilts_ds.metrics import task_score, xtreme_score

QA = {"en": {"exact_match": 70.0, "f1": 80.0}, "de": {"exact_match": 50.0, "f1": 60.0}}
TAGGING = {
    "en": {"f1": 90.0, "precision": 88.0, "recall": 92.0},
    "de": {"f1": 70.0, "precision": 72.0, "recall": 68.0},
}
CLASSIFICATION = {"en": {"accuracy": 80.0}, "de": {"accuracy": 70.0}, "fr": {"accuracy": 60.0}}


def test_qa_headline_is_mean_of_em_and_f1():
    assert task_score(QA) == {"avg_exact_match": 60.0, "avg_f1": 70.0, "avg_metric": 65.0}


def test_tagging_headline_is_f1():
    scores = task_score(TAGGING)
    assert scores["avg_metric"] == 80.0
    assert scores["avg_precision"] == 80.0 and scores["avg_recall"] == 80.0


def test_classification_headline_is_accuracy():
    assert task_score(CLASSIFICATION) == {"avg_accuracy": 70.0, "avg_metric": 70.0}


def test_each_metric_averages_over_the_languages_that_report_it():
    scores = task_score({"en": {"accuracy": 90.0, "extra": 1.0}, "de": {"accuracy": 70.0}})
    assert scores["avg_extra"] == 1.0 and scores["avg_metric"] == 80.0


def test_map_headline_and_unknown_metrics():
    assert task_score({"en": {"map@20": 40.0}})["avg_metric"] == 40.0
    with pytest.raises(ValueError, match="headline metric"):
        task_score({"en": {"bleu": 30.0}})
    with pytest.raises(ValueError):
        task_score({})


def test_xtreme_score_is_mean_over_tasks():
    result = xtreme_score({"xnli": CLASSIFICATION, "panx": TAGGING, "xquad": QA})
    assert result["tasks"] == {"xnli": 70.0, "panx": 80.0, "xquad": 65.0}
    assert result["xtreme_average"] == pytest.approx((70 + 80 + 65) / 3)
    with pytest.raises(ValueError):
        xtreme_score({})
