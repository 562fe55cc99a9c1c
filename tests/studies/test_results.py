"""results.json known-answer averages, the Markdown table, atomic writes, load errors."""
import json
import os

import pytest

from stilts_ds.errors import DataFileError, StiltsError
from stilts_ds.studies import results as results_mod
from stilts_ds.studies.results import (
    ResultsError,
    load_results,
    results_markdown,
    write_markdown,
    write_results,
)

SCORES = {
    # classification: accuracy
    "xnli": {"en": {"accuracy": 85.0}, "de": {"accuracy": 78.0}, "fr": {"accuracy": 80.0}},
    # tagging: f1 is the headline even beside precision/recall
    "panx": {"en": {"precision": 90.0, "recall": 77.0, "f1": 83.0}, "de": {"precision": 80.0, "recall": 76.0, "f1": 78.0}},
    # QA: (EM + F1) / 2
    "xquad": {"en": {"exact_match": 72.0, "f1": 84.0}, "de": {"exact_match": 60.0, "f1": 76.0}},
}


def test_known_answer_averages(tmp_path):
    res = write_results(tmp_path / "results.json", SCORES, extra={"intermediate_task": "squad_v2", "seed": 1})
    assert res["task_scores"] == {"xnli": 81.0, "panx": 80.5, "xquad": 73.0}  # xquad: (66 + 80) / 2
    assert res["xtreme_average"] == pytest.approx((81.0 + 80.5 + 73.0) / 3)
    assert res["tasks"] == SCORES
    assert (res["intermediate_task"], res["seed"]) == ("squad_v2", 1)
    assert list(res)[:3] == ["tasks", "task_scores", "xtreme_average"]
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk == res
    assert load_results(tmp_path / "results.json") == res


def test_values_become_plain_floats(tmp_path):
    torch = pytest.importorskip("torch")
    res = write_results(tmp_path / "r.json", {"tatoeba": {"de": {"accuracy": torch.tensor(90.0)}, "fr": {"accuracy": 80}}})
    assert res["tasks"]["tatoeba"] == {"de": {"accuracy": 90.0}, "fr": {"accuracy": 80.0}}
    assert all(type(v) is float for v in (res["tasks"]["tatoeba"]["de"]["accuracy"], res["xtreme_average"]))
    assert res["xtreme_average"] == 85.0


def test_markdown_table(tmp_path):
    res = write_results(tmp_path / "results.json", SCORES)
    text = results_markdown(res)
    assert text.splitlines() == [
        "| task | metric | en | de | fr | avg |",
        "|---|---|---:|---:|---:|---:|",
        "| xnli | accuracy | 85.0 | 78.0 | 80.0 | 81.0 |",
        "| panx | F1 | 83.0 | 78.0 | – | 80.5 |",
        "| xquad | EM / F1 | 72.0 / 84.0 | 60.0 / 76.0 | – | 66.0 / 80.0 |",
        "",
        "**XTREME average: 78.2** (mean over 3 XTREME tasks; QA tasks count (EM + F1) / 2)",
    ]
    assert write_markdown(tmp_path / "results.md", res) == text
    assert (tmp_path / "results.md").read_text(encoding="utf-8") == text


def test_markdown_language_order_and_partial_qa_cell():
    res = {
        "tasks": {
            "tydiqa": {"zh": {"exact_match": 50.0, "f1": 60.0}, "ar": {"f1": 70.0}, "en": {"exact_match": 55.0, "f1": 65.0}},
            "bucc": {"zh": {"f1": 10.0}},
        },
        "task_scores": {"tydiqa": 0.0, "bucc": 0.0},
        "xtreme_average": 12.345,
    }
    lines = results_markdown(res, decimals=2).splitlines()
    assert lines[0] == "| task | metric | en | ar | zh | avg |"
    # ar reports only F1; the EM average is over the languages that have EM (official rule)
    assert lines[2] == "| tydiqa | EM / F1 | 55.00 / 65.00 | – / 70.00 | 50.00 / 60.00 | 52.50 / 65.00 |"
    assert lines[3] == "| bucc | F1 | – | – | 10.00 | 10.00 |"
    assert lines[-1].startswith("**XTREME average: 12.35** (mean over 2 XTREME tasks;")


def test_markdown_without_qa_has_no_qa_note(tmp_path):
    res = write_results(tmp_path / "r.json", {"xnli": SCORES["xnli"]})
    assert res["xtreme_average"] == 81.0
    assert results_markdown(res).splitlines()[-1] == "**XTREME average: 81.0** (mean over 1 XTREME task)"


# -- atomicity -------------------------------------------------------------------------


def test_writes_leave_no_temporary_files(tmp_path):
    res = write_results(tmp_path / "out" / "results.json", SCORES)  # parent created
    write_markdown(tmp_path / "out" / "results.md", res)
    write_results(tmp_path / "out" / "results.json", SCORES)  # overwrite
    assert sorted(os.listdir(tmp_path / "out")) == ["results.json", "results.md"]


def test_failed_replace_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    before = write_results(path, SCORES)

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(results_mod.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_results(path, {"xnli": SCORES["xnli"]})
    assert sorted(os.listdir(tmp_path)) == ["results.json"]
    assert json.loads(path.read_text()) == before


def test_unserialisable_extra_writes_nothing(tmp_path):
    with pytest.raises(ResultsError, match="JSON-serialisable"):
        write_results(tmp_path / "results.json", SCORES, extra={"when": object()})
    assert os.listdir(tmp_path) == []


# -- bad input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "scores, extra, match",
    [
        ({}, None, "non-empty"),
        ({"xnli": {}}, None, "xnli"),
        ({"xnli": {"de": {"accuracy": float("nan")}}}, None, r"xnli.*de.*accuracy.*not finite"),
        ({"xnli": {"de": {"accuracy": True}}}, None, "not a number"),
        ({"xnli": {"de": {"accuracy": "80"}}}, None, "not a number"),
        ({"odd": {"de": {"bleu": 30.0}}}, None, r"task 'odd'.*headline"),
        ({"xnli": {"de": {"accuracy": 80.0}}}, {"xtreme_average": 1.0}, "overwrite"),
    ],
)
def test_write_results_rejects(tmp_path, scores, extra, match):
    with pytest.raises(ResultsError, match=match) as info:
        write_results(tmp_path / "results.json", scores, extra=extra)
    assert isinstance(info.value, StiltsError) and isinstance(info.value, ValueError)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "content, match",
    [
        (None, "not found"),
        ('{"tasks": ', "invalid JSON"),
        ("[1, 2]", "JSON list"),
        ('{"train_batch_size": 32}', "missing tasks, task_scores, xtreme_average"),
        ('{"tasks": {"xnli": {"de": {"accuracy": "x"}}}, "task_scores": {"xnli": 1}, "xtreme_average": 1}', "tasks.xnli.de"),
        ('{"tasks": {"xnli": {"de": {"accuracy": 1}}}, "task_scores": {}, "xtreme_average": 1}', "task_scores"),
        ('{"tasks": {"xnli": {"de": {"accuracy": 1}}}, "task_scores": {"xnli": 1}, "xtreme_average": "high"}', "xtreme_average"),
    ],
)
def test_load_results_errors_name_the_file(tmp_path, content, match):
    path = tmp_path / "ds_config.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(DataFileError, match=match) as info:
        load_results(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, StiltsError)


def test_load_results_invalid_json_names_the_line(tmp_path):
    path = tmp_path / "results.json"
    path.write_text('{\n"tasks": {,\n}')
    with pytest.raises(DataFileError) as info:
        load_results(path)
    assert str(info.value).startswith(f"{path}:2: ")


def test_xtreme_and_xtreme_r_averages_use_their_own_tasks_and_languages(tmp_path):
    # ro is an XTREME-R addition to xquad: it counts for XTREME-R only; xcopa is XTREME-R only.
    scores = {"xnli": {"en": {"accuracy": 80.0}}, "xcopa": {"zh": {"accuracy": 60.0}},
              "xquad": {"en": {"exact_match": 70.0, "f1": 80.0}, "ro": {"exact_match": 10.0, "f1": 20.0}}}
    res = write_results(tmp_path / "r.json", scores)
    assert res["xtreme_average"] == pytest.approx((80.0 + 75.0) / 2)
    assert res["task_scores"]["xquad"] == pytest.approx((75.0 + 15.0) / 2)  # every language evaluated
    assert res["xtreme_r_average"] is None  # seven of its ten tasks are missing
    assert "mewslix" in res["xtreme_r"]["missing_tasks"]
    assert res["xtreme_r"]["tasks"]["xquad"] == pytest.approx(45.0)
    assert res["xtreme_r"]["groups"]["classification"] == pytest.approx(70.0)
    md = results_markdown(res)
    assert "**XTREME-R average: –** (missing: udpos, panx" in md
    assert load_results(tmp_path / "r.json") == res

    from stilts_ds.metrics.aggregate import XTREME_R_LANGUAGES

    full = {t: {langs[0]: {"map@20": 50.0} if t in ("mewslix", "lareqa") else {"accuracy": 50.0}}
            for t, langs in XTREME_R_LANGUAGES.items()}
    res = write_results(tmp_path / "full.json", full)
    assert res["xtreme_r_average"] == pytest.approx(50.0) and res["xtreme_r"]["missing_tasks"] == []

    only_r = write_results(tmp_path / "only_r.json", {"xcopa": {"zh": {"accuracy": 60.0}}})
    assert only_r["xtreme_average"] is None
    assert "**XTREME average: –**" in results_markdown(only_r)
