"""`stilts-ds score` files for XTREME-R: XCOPA JSON lines ({"label": n}), Mewsli-X and
LAReQA JSON objects {query id: [ids]} (the official mock_test_data layout).

    .venv/bin/python -m pytest -q tests/evaluation/test_xtreme_r_score_files.py
"""
import json

import pytest
from click.testing import CliRunner

from stilts_ds.cli import main
from stilts_ds.evaluation import ScoreInputError, read_ranked_ids, read_xcopa_labels, score_files


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_xcopa_jsonl(tmp_path):
    preds = _write(tmp_path / "test-zh.jsonl", '{"label": 0}\n{"label": 1}\n{"label": 1}\n')
    refs = _write(tmp_path / "ref-zh.jsonl", "".join(json.dumps({"premise": "p", "choice1": "a", "choice2": "b",
                                                                 "question": "cause", "label": l, "idx": i}) + "\n"
                                                     for i, l in enumerate([0, 1, 0])))
    assert read_xcopa_labels(preds) == [0, 1, 1]
    assert score_files("accuracy", preds, refs) == {"accuracy": pytest.approx(200 / 3)}
    assert score_files("accuracy", preds, refs, file_format="xcopa")["accuracy"] == pytest.approx(200 / 3)
    short = _write(tmp_path / "short.jsonl", '{"label": 0}\n')
    with pytest.raises(ScoreInputError, match="1 labels in .*short.jsonl.*3 labels in"):
        score_files("accuracy", short, refs)
    bad = _write(tmp_path / "bad.jsonl", '{"label": 0}\n{"lab": 1}\n')
    with pytest.raises(ScoreInputError, match=r"bad.jsonl:2: .*'label'"):
        read_xcopa_labels(bad)


def test_mewslix_like_the_official_mock_data(tmp_path):
    # The shape of xtreme mock_test_data/{labels,predictions}/mewslix/test-de.json
    refs = _write(tmp_path / "labels.json", json.dumps({"a": ["Q156913"], "b": ["Q2"]}))
    preds = _write(tmp_path / "preds.json", json.dumps({"a": ["Q11490423", "Q156913"] + [f"Q{i}" for i in range(18)],
                                                        "zzz": ["Q1"]}))
    # a: rank 2 -> 1/2; b: unpredicted -> 0; zzz: not gold, ignored as officially
    assert score_files("mewslix_map_at_20", preds, refs) == {"map@20": 25.0}


def test_lareqa_ranked_ids(tmp_path):
    refs = _write(tmp_path / "labels.json", json.dumps({"q1_de": ["en_1_1", "de_1_1"], "q2_de": ["en_2_0"]}))
    preds = _write(tmp_path / "preds.json", json.dumps({"q1_de": ["de_1_1", "x", "en_1_1"], "q2_de": ["y", "en_2_0"]}))
    assert score_files("lareqa_map_at_20", preds, refs)["map@20"] == pytest.approx(100 * ((1 + 2 / 3) / 2 + 0.5) / 2)
    extra = _write(tmp_path / "extra.json", json.dumps({"q9_de": ["a"]}))
    with pytest.raises(ScoreInputError, match="not in .*labels.json"):
        score_files("lareqa_map_at_20", extra, refs)
    bad = _write(tmp_path / "bad.json", json.dumps({"q1_de": "en_1_1"}))
    with pytest.raises(ScoreInputError, match="bad.json: entry 'q1_de' must be a list"):
        read_ranked_ids(bad)


def test_cli_scores_the_new_tasks(tmp_path):
    refs = _write(tmp_path / "labels.json", json.dumps({"m": ["Q1"]}))
    preds = _write(tmp_path / "test-de.json", json.dumps({"m": ["Q1"]}))
    result = CliRunner().invoke(main, ["score", "--task", "mewslix", "--lang", "de",
                                       "--predictions", str(preds), "--references", str(refs)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.strip().splitlines()[-1]) == {"map@20": 100.0}
    p = _write(tmp_path / "test-et.jsonl", '{"label": 1}\n')
    r = _write(tmp_path / "gold-et.jsonl", '{"label": 1}\n')
    result = CliRunner().invoke(main, ["score", "--task", "xcopa", "--lang", "et",
                                       "--predictions", str(p), "--references", str(r)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.strip().splitlines()[-1]) == {"accuracy": 100.0}
