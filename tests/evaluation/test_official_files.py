"""Readers of the official XTREME file formats, including malformed files."""

import json

import pytest

from stilts_ds.errors import StiltsError
from stilts_ds.evaluation import (
    ScoreInputError,
    read_bucc_pairs,
    read_labels,
    read_qa_predictions,
    read_squad_references,
    read_tags,
)

SQUAD = {
    "version": "1.1",
    "data": [
        {
            "title": "t",
            "paragraphs": [
                {
                    "context": "c",
                    "qas": [
                        {"id": "q1", "question": "?", "answers": [{"text": "Denver", "answer_start": 0}]},
                        {"id": "q2", "question": "?", "answers": []},
                    ],
                }
            ],
        }
    ],
}


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return path


def test_score_input_error_is_a_value_error_and_a_stilts_error():
    assert issubclass(ScoreInputError, ValueError) and issubclass(ScoreInputError, StiltsError)


def test_read_labels_strips_and_keeps_every_line(tmp_path):
    path = write(tmp_path, "labels.tsv", " entailment \r\nneutral\n\ncontradiction\n")
    assert read_labels(path) == ["entailment", "neutral", "", "contradiction"]


def test_read_tags_sentences_and_blank_line_quirk(tmp_path):
    path = write(tmp_path, "tags.tsv", "B-PER\nI-PER\n\nO\n\n\nB-LOC\n")
    # The double blank line makes an empty sentence, as in the official reader.
    assert read_tags(path) == [["B-PER", "I-PER"], ["O"], [], ["B-LOC"]]


def test_read_tags_takes_last_column_of_tab_separated_lines(tmp_path):
    path = write(tmp_path, "conll.tsv", "Angela\tB-PER\nMerkel\tI-PER\n\nBerlin\tB-LOC\n\n")
    assert read_tags(path) == [["B-PER", "I-PER"], ["B-LOC"]]


def test_read_squad_references_from_object_and_bare_list(tmp_path):
    expected = {"q1": ["Denver"], "q2": []}
    assert read_squad_references(write(tmp_path, "a.json", json.dumps(SQUAD))) == expected
    bare = write(tmp_path, "b.json", json.dumps(SQUAD["data"]))
    assert read_squad_references(bare) == expected


def test_read_squad_references_names_the_missing_key(tmp_path):
    broken = json.loads(json.dumps(SQUAD))
    del broken["data"][0]["paragraphs"][0]["qas"][1]["answers"]
    path = write(tmp_path, "broken.json", json.dumps(broken))
    with pytest.raises(ScoreInputError, match=r"broken\.json: data\[0\]\.paragraphs\[0\]\.qas\[1\] has no 'answers' key"):
        read_squad_references(path)

    with pytest.raises(ScoreInputError, match=r"nodata\.json: .*'data' key.*'version'"):
        read_squad_references(write(tmp_path, "nodata.json", '{"version": "1.1"}'))

    bad_text = json.loads(json.dumps(SQUAD))
    bad_text["data"][0]["paragraphs"][0]["qas"][0]["answers"][0]["text"] = 3
    with pytest.raises(ScoreInputError, match=r"answers\[0\]\.text must be a string, got a number"):
        read_squad_references(write(tmp_path, "badtext.json", json.dumps(bad_text)))


def test_read_squad_references_rejects_duplicate_ids(tmp_path):
    dup = json.loads(json.dumps(SQUAD))
    dup["data"][0]["paragraphs"][0]["qas"][1]["id"] = "q1"
    with pytest.raises(ScoreInputError, match="dup.json.*duplicate question id 'q1'"):
        read_squad_references(write(tmp_path, "dup.json", json.dumps(dup)))


def test_invalid_json_reports_file_line_and_column(tmp_path):
    path = write(tmp_path, "bad.json", '{\n  "q1": "a",\n  "q2": \n}\n')
    with pytest.raises(ScoreInputError, match=r"bad\.json:4:1: invalid JSON"):
        read_qa_predictions(path)


def test_read_qa_predictions(tmp_path):
    path = write(tmp_path, "preds.json", json.dumps({"q1": "Denver", "q2": ""}))
    assert read_qa_predictions(path) == {"q1": "Denver", "q2": ""}
    with pytest.raises(ScoreInputError, match="list.json: expected a JSON object.*got a list"):
        read_qa_predictions(write(tmp_path, "list.json", '["Denver"]'))
    with pytest.raises(ScoreInputError, match="nbest.json: prediction for question 'q1' must be a string"):
        read_qa_predictions(write(tmp_path, "nbest.json", '{"q1": ["Denver", "Broncos"]}'))


def test_read_bucc_pairs(tmp_path):
    path = write(tmp_path, "pairs.tsv", "de-1\ten-1\nde-2\ten-2\n")
    assert read_bucc_pairs(path) == [("de-1", "en-1"), ("de-2", "en-2")]


@pytest.mark.parametrize("bad_line", ["de-3\ten-3\textra", "de-3 en-3", ""])
def test_read_bucc_pairs_names_file_and_line_of_a_bad_line(tmp_path, bad_line):
    path = write(tmp_path, "pairs.tsv", f"de-1\ten-1\nde-2\ten-2\n{bad_line}\nde-4\ten-4\n")
    with pytest.raises(ScoreInputError, match=r"pairs\.tsv:3: expected 2 tab-separated ids"):
        read_bucc_pairs(path)


def test_invalid_utf8_reports_the_line(tmp_path):
    path = write(tmp_path, "latin1.tsv", "ok\nalso ok\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(ScoreInputError, match=r"latin1\.tsv:3: not valid UTF-8"):
        read_labels(path)
