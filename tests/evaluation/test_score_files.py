"""score_files: reader selection per metric and errors naming the files."""

import json
import math

import pytest

from stilts_ds.evaluation import ScoreInputError, score_files
from stilts_ds.metrics import METRICS, UnansweredQuestionWarning


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def squad_file(tmp_path, name, answers_by_id):
    qas = [{"id": qid, "answers": [{"text": t} for t in texts]} for qid, texts in answers_by_id.items()]
    return write(tmp_path, name, json.dumps({"data": [{"paragraphs": [{"qas": qas}]}]}))


def test_accuracy_and_tatoeba(tmp_path):
    refs = write(tmp_path, "labels.tsv", "entailment\nneutral\ncontradiction\nneutral\n")
    preds = write(tmp_path, "preds.tsv", "entailment\nneutral\nneutral\nneutral\n")
    assert score_files("accuracy", preds, refs) == {"accuracy": 75.0}
    refs = write(tmp_path, "gold_idx.tsv", "0\n1\n2\n")
    preds = write(tmp_path, "pred_idx.tsv", "0\n2\n2\n")
    assert score_files("tatoeba_accuracy", preds, refs)["accuracy"] == pytest.approx(200 / 3)


def test_label_count_mismatch_names_both_files_and_counts(tmp_path):
    refs = write(tmp_path, "labels.tsv", "a\nb\nc\n")
    preds = write(tmp_path, "preds.tsv", "a\nb\n")
    with pytest.raises(ScoreInputError, match=r"2 lines in .*preds\.tsv.* vs 3 lines in .*labels\.tsv"):
        score_files("accuracy", preds, refs)


def test_tagging_metrics(tmp_path):
    refs = write(tmp_path, "gold.tsv", "B-PER\nI-PER\nO\n\nB-LOC\n")
    preds = write(tmp_path, "pred.tsv", "B-PER\nI-PER\nO\n\nO\n")
    # gold PER, LOC; pred PER -> P=1, R=1/2, F1=2/3
    scores = score_files("seqeval_f1", preds, refs)
    assert scores == pytest.approx({"f1": 200 / 3, "precision": 100.0, "recall": 50.0})
    assert score_files("tag_accuracy", preds, refs) == {"accuracy": 75.0}


def test_tagging_mismatches_name_files(tmp_path):
    refs = write(tmp_path, "gold.tsv", "O\n\nO\nO\n")
    short = write(tmp_path, "one_sentence.tsv", "O\n")
    with pytest.raises(ScoreInputError, match=r"1 in .*one_sentence\.tsv.* vs 2 in .*gold\.tsv"):
        score_files("seqeval_f1", short, refs)
    ragged = write(tmp_path, "ragged.tsv", "O\n\nO\n")
    with pytest.raises(ScoreInputError, match=r"sentence 1 \(0-based\) has 1 tags in .*ragged\.tsv.* but 2"):
        score_files("tag_accuracy", ragged, refs)


def test_qa_metrics(tmp_path):
    refs = squad_file(tmp_path, "gold.json", {"q1": ["Denver Broncos"], "q2": ["北京"]})
    preds = write(tmp_path, "preds.json", json.dumps({"q1": "the Denver Broncos", "q2": "北京大学"}))
    # squad_v1: "the" goes; q2 is one token on each side -> F1 0
    assert score_files("squad_v1", preds, refs) == {"exact_match": 50.0, "f1": 50.0}
    # mlqa zh removes no articles, so q1 is {the, denver, broncos} vs {denver, broncos}:
    # P=2/3, R=1 -> F1 0.8; q2 per character: F1 2/3
    scores = score_files("mlqa", preds, refs, lang="zh")
    assert scores["exact_match"] == 0.0
    assert scores["f1"] == pytest.approx(100 * (0.8 + 2 / 3) / 2)
    assert score_files("mlqa", preds, refs, lang="en")["exact_match"] == 50.0


def test_squad_v2_and_unanswered_warning(tmp_path):
    refs = squad_file(tmp_path, "gold.json", {"q1": [], "q2": ["Denver"], "q3": []})
    preds = write(tmp_path, "preds.json", json.dumps({"q1": "", "q2": "Denver"}))
    with pytest.warns(UnansweredQuestionWarning, match="q3"):
        scores = score_files("squad_v2", preds, refs)
    assert scores["exact_match"] == pytest.approx(200 / 3)
    assert scores["no_ans_total"] == 2 and scores["has_ans_exact_match"] == 100.0


def test_mlqa_needs_a_supported_language(tmp_path):
    refs = squad_file(tmp_path, "gold.json", {"q1": ["x"]})
    preds = write(tmp_path, "preds.json", '{"q1": "x"}')
    with pytest.raises(ScoreInputError, match="needs the answer language"):
        score_files("mlqa", preds, refs)
    with pytest.raises(ScoreInputError, match="en es hi vi de ar zh"):
        score_files("mlqa", preds, refs, lang="fr")


def test_bucc(tmp_path):
    refs = write(tmp_path, "gold.tsv", "de-1\ten-1\nde-2\ten-2\n")
    preds = write(tmp_path, "pred.tsv", "de-1\ten-1\nde-3\ten-3\n")
    assert score_files("bucc_f1", preds, refs) == pytest.approx({"f1": 50.0, "precision": 50.0, "recall": 50.0})


def test_unknown_metric_and_empty_files(tmp_path):
    empty = write(tmp_path, "empty.tsv", "")
    with pytest.raises(ScoreInputError, match="unknown metric 'bleu'"):
        score_files("bleu", empty, empty)
    with pytest.raises(ScoreInputError, match=r"cannot score .*empty\.tsv"):
        score_files("accuracy", empty, empty)


def test_every_registered_metric_is_scorable(tmp_path):
    labels = write(tmp_path, "l.tsv", "0\n")
    pairs = write(tmp_path, "p.tsv", "a\tb\n")
    refs = squad_file(tmp_path, "gold.json", {"q1": ["x"]})
    preds = write(tmp_path, "preds.json", '{"q1": "x"}')
    tags = write(tmp_path, "t.tsv", "B-PER\n")
    ranked = write(tmp_path, "r.json", '{"q": ["a"]}')
    perfect_prf = {"f1": 100.0, "precision": 100.0, "recall": 100.0}
    perfect_qa = {"exact_match": 100.0, "f1": 100.0}
    # (predictions, references, every metric the scorer returns). Exact dicts: a max() over the
    # values would pass with one metric at 100 and another dropped or wrong.
    inputs = {
        "accuracy": (labels, labels, {"accuracy": 100.0}),
        "tatoeba_accuracy": (labels, labels, {"accuracy": 100.0}),
        "seqeval_f1": (tags, tags, perfect_prf),
        "tag_accuracy": (labels, labels, {"accuracy": 100.0}),
        "squad_v1": (preds, refs, perfect_qa),
        # One answerable question: the no-answer breakdown is empty, NaN with total 0 (squad.py).
        "squad_v2": (preds, refs, {**perfect_qa, "total": 1,
                                   "has_ans_exact_match": 100.0, "has_ans_f1": 100.0, "has_ans_total": 1,
                                   "no_ans_exact_match": math.nan, "no_ans_f1": math.nan, "no_ans_total": 0}),
        "mlqa": (preds, refs, perfect_qa),
        "bucc_f1": (pairs, pairs, perfect_prf),
        "lareqa_map_at_20": (ranked, ranked, {"map@20": 100.0}),
        "mewslix_map_at_20": (ranked, ranked, {"map@20": 100.0}),
    }
    assert set(inputs) == set(METRICS)
    for metric, (p, r, expected) in inputs.items():
        result = score_files(metric, p, r, lang="en")
        assert set(result) == set(expected), metric
        for key, want in expected.items():
            got = result[key]
            # NaN never equals itself: compare NaN by isnan, everything else exactly.
            ok = math.isnan(got) if isinstance(want, float) and math.isnan(want) else got == want
            assert ok, (metric, key, got, want)
