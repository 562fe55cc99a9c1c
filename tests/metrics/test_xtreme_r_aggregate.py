"""The XTREME-R aggregate (evaluate.py --xtreme_version xtreme-r): ten tasks, per-task mean,
groups only when complete, missing tasks and languages reported.

    .venv/bin/python -m pytest -q tests/metrics/test_xtreme_r_aggregate.py
"""
import pytest

from stilts_ds.metrics import XTREME_R_GROUPS, XTREME_R_LANGUAGES, xtreme_r_score, xtreme_score


def _full(value_of):
    out = {}
    for task, langs in XTREME_R_LANGUAGES.items():
        out[task] = {lang: value_of(task) for lang in langs}
    return out


def _scores(task, v):
    if task in ("xquad", "mlqa", "tydiqa"):
        return {"exact_match": v - 10, "f1": v + 10}
    if task in ("udpos", "panx"):
        return {"f1": v, "precision": 0.0, "recall": 0.0}
    if task in ("mewslix", "lareqa"):
        return {"map@20": v}
    return {"accuracy": v}


def test_task_set_and_language_lists():
    assert list(XTREME_R_LANGUAGES) == ["xnli", "xcopa", "udpos", "panx", "xquad", "mlqa", "tydiqa",
                                        "tatoeba", "mewslix", "lareqa"]
    assert "pawsx" not in XTREME_R_LANGUAGES and "bucc" not in XTREME_R_LANGUAGES
    assert len(XTREME_R_LANGUAGES["udpos"]) == 38 and {"lt", "pl", "uk", "wo", "ro"} <= set(XTREME_R_LANGUAGES["udpos"])
    assert len(XTREME_R_LANGUAGES["panx"]) == 48 and len(XTREME_R_LANGUAGES["tatoeba"]) == 41
    assert XTREME_R_LANGUAGES["xquad"][-1] == "ro"
    assert XTREME_R_GROUPS["retrieval"] == ("tatoeba", "mewslix")


def test_complete_results_average_over_the_ten_tasks():
    value = {t: 10.0 * (i + 1) for i, t in enumerate(XTREME_R_LANGUAGES)}
    results = {t: {l: _scores(t, value[t]) for l in langs} for t, langs in XTREME_R_LANGUAGES.items()}
    out = xtreme_r_score(results)
    assert out["tasks"] == pytest.approx(value)  # QA: (EM + F1) / 2
    assert out["xtreme_r_average"] == pytest.approx(sum(value.values()) / 10)  # per task, not per group
    assert out["groups"]["qa"] == pytest.approx((50 + 60 + 70) / 3)
    assert out["groups"]["multi_choice"] == value["xcopa"]
    assert out["missing_tasks"] == [] and out["missing_languages"] == {}


def test_partial_results_report_what_is_missing():
    out = xtreme_r_score({"xnli": {"en": {"accuracy": 80.0}, "de": {"accuracy": 70.0}},
                          "xcopa": {"zh": {"accuracy": 60.0}}})
    assert out["xtreme_r_average"] is None
    assert out["groups"] == {"classification": pytest.approx(67.5), "multi_choice": 60.0}
    assert "lareqa" in out["missing_tasks"] and "xnli" not in out["missing_tasks"]
    assert "qu" in out["missing_languages"]["xcopa"] and "en" not in out["missing_languages"]["xnli"]


def test_xtreme_only_tasks_are_refused_and_xtreme_score_is_unchanged():
    with pytest.raises(ValueError, match="pawsx.*not XTREME-R"):
        xtreme_r_score({"pawsx": {"de": {"accuracy": 1.0}}})
    assert xtreme_score({"xnli": {"en": {"accuracy": 80.0}}, "pawsx": {"de": {"accuracy": 60.0}}})[
        "xtreme_average"] == 70.0
