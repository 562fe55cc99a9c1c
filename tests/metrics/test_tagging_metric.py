"""seqeval F1 (with its POS-tag chunking quirk) and token accuracy: hand-computed."""

import pytest

from stilts_ds.metrics import seqeval_f1, tag_accuracy


def test_pos_tags_merge_into_chunks():
    # seqeval reads NOUN as IOB tag 'N' + type 'OUN'; equal neighbours merge:
    # gold chunks OUN[0-1], ERB[2]; pred OUN[0], ERB[1-2]: nothing matches,
    # although 2 of 3 tokens are right.
    gold = [["NOUN", "NOUN", "VERB"]]
    pred = [["NOUN", "VERB", "VERB"]]
    assert seqeval_f1(gold, pred) == {"f1": 0.0, "precision": 0.0, "recall": 0.0}
    assert tag_accuracy(gold, pred)["accuracy"] == pytest.approx(200 / 3)


def test_pos_tag_f1_counts_runs_not_tokens():
    # gold: ET[0], OUN[1-2], ERB[3] (3 chunks); pred: ET[0], OUN[1], DJ[2], ERB[3] (4)
    # correct: ET, ERB -> P=2/4, R=2/3, F1=4/7
    scores = seqeval_f1([["DET", "NOUN", "NOUN", "VERB"]], [["DET", "NOUN", "ADJ", "VERB"]])
    assert scores["precision"] == pytest.approx(50.0)
    assert scores["recall"] == pytest.approx(200 / 3)
    assert scores["f1"] == pytest.approx(400 / 7)


def test_sentence_boundaries_end_chunks():
    # Two one-token NOUN sentences are two chunks (not one merged run):
    # gold OUN, OUN; pred OUN, ERB -> 1 of 2 on each side.
    scores = seqeval_f1([["NOUN"], ["NOUN"]], [["NOUN"], ["VERB"]])
    assert scores == pytest.approx({"f1": 50.0, "precision": 50.0, "recall": 50.0})


def test_ner_per_loc_f1():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-LOC", "O"]]
    pred = [["B-PER", "I-PER", "O", "O"], ["B-LOC", "B-PER"]]
    # gold: PER, LOC, LOC; pred: PER, LOC (2nd sentence), PER -> 2 correct of 3 and 3
    scores = seqeval_f1(gold, pred)
    assert scores == pytest.approx({"f1": 200 / 3, "precision": 200 / 3, "recall": 200 / 3})


def test_non_strict_mode_accepts_i_without_b():
    assert seqeval_f1([["I-PER", "I-PER"]], [["B-PER", "I-PER"]])["f1"] == 100.0


def test_tuples_are_read_as_sentences():
    assert seqeval_f1([("B-PER", "O")], [("B-PER", "O")])["f1"] == 100.0


def test_tag_accuracy_is_token_level():
    gold = [["NP", "S\\NP", "NP"], ["N"]]
    pred = [["NP", "NP", "NP"], ["N"]]
    assert tag_accuracy(gold, pred) == {"accuracy": 75.0}


@pytest.mark.parametrize("metric", [seqeval_f1, tag_accuracy])
def test_mismatches_name_the_sentence(metric):
    with pytest.raises(ValueError, match="2 label sentences and 1 prediction"):
        metric([["O"], ["O"]], [["O"]])
    with pytest.raises(ValueError, match="sentence 1: 2 gold tags but 1 predicted"):
        metric([["O"], ["O", "O"]], [["O"], ["O"]])
    with pytest.raises(ValueError, match="0 sentences"):
        metric([], [])
