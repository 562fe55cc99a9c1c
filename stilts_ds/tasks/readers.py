"""Readers: one raw row (a hub dataset row, or a line of a local JSONL file in the same
schema) -> the format's Example. A reader raises KeyError/ValueError on a bad row; the
data loader adds the file and line to the message.

Hub ``ClassLabel`` columns arrive as integers, local files may hold the label names: both
are accepted and checked against the task's label set.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from stilts_ds.tasks.formats import mlm, multiple_choice, pair_classification, retrieval, span_qa, tagging

NLI_LABELS = ("entailment", "neutral", "contradiction")  # GLUE/SNLI/ANLI ids 0, 1, 2
QQP_LABELS = ("not_duplicate", "duplicate")
PAWSX_LABELS = ("0", "1")  # the official PAWS-X files and scorer use the strings 0/1
UPOS_TAGS = (
    "ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM",
    "PART", "PRON", "PROPN", "PUNCT", "SCONJ", "SYM", "VERB", "X",
)
PANX_TAGS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC")


def label_name(value: Any, labels: Sequence[str]) -> str | None:
    """A label given as an id or a name -> the name; -1 (unlabelled) -> None."""
    if isinstance(value, bool):
        raise ValueError(f"label {value!r} is not one of {list(labels)}")
    if isinstance(value, int):
        if value == -1:
            return None
        if 0 <= value < len(labels):
            return labels[value]
        raise ValueError(f"label id {value} is outside 0..{len(labels) - 1} ({', '.join(labels)})")
    value = str(value)
    if value not in labels:
        raise ValueError(f"label {value!r} is not one of {list(labels)}")
    return value


def _guid(split: str, lang: str, index: int) -> str:
    return f"{split}-{lang}-{index}"


def nli(record: Mapping, split: str, lang: str, index: int):
    """MNLI/SNLI/ANLI rows (premise, hypothesis, label id) and XNLI rows (sentence1,
    sentence2, gold_label name); rows with label -1 (no annotator majority) are skipped."""
    if "gold_label" in record:
        text_a, text_b, raw = record["sentence1"], record["sentence2"], record["gold_label"]
    else:
        text_a, text_b, raw = record["premise"], record["hypothesis"], record["label"]
    label = label_name(raw, NLI_LABELS)
    if label is None:
        return None
    return pair_classification.Example(_guid(split, lang, index), text_a, text_b, label)


def qqp(record: Mapping, split: str, lang: str, index: int):
    label = label_name(record["label"], QQP_LABELS)
    return pair_classification.Example(_guid(split, lang, index), record["question1"], record["question2"], label)


def pawsx(record: Mapping, split: str, lang: str, index: int):
    label = label_name(str(record["label"]), PAWSX_LABELS)
    return pair_classification.Example(_guid(split, lang, index), record["sentence1"], record["sentence2"], label)


def squad(record: Mapping, split: str, lang: str, index: int):
    answers = record["answers"]
    texts, starts = tuple(answers["text"]), tuple(int(s) for s in answers["answer_start"])
    if len(texts) != len(starts):
        raise ValueError(f"answers has {len(texts)} texts but {len(starts)} answer_start values")
    return span_qa.Example(str(record["id"]), record["question"], record["context"], texts, starts, record.get("title", ""))


def hellaswag(record: Mapping, split: str, lang: str, index: int):
    # As in jiant: the prompt is ctx_a, each choice continues it with ctx_b + ending.
    choices = tuple(f"{record['ctx_b']} {ending}".strip() for ending in record["endings"])
    raw = record["label"]
    label = int(raw) if raw not in ("", None) else None
    return multiple_choice.Example(_guid(split, lang, index), record["ctx_a"], choices, label)


def cosmosqa(record: Mapping, split: str, lang: str, index: int):
    choices = tuple(record[f"answer{i}"] for i in range(4))
    label = int(record["label"])
    return multiple_choice.Example(
        str(record.get("id", _guid(split, lang, index))), f"{record['context']} {record['question']}",
        choices, None if label == -1 else label,
    )


def commonsenseqa(record: Mapping, split: str, lang: str, index: int):
    keys = list(record["choices"]["label"])
    key = record["answerKey"]
    if key and key not in keys:
        raise ValueError(f"answerKey {key!r} is not one of the choice labels {keys}")
    return multiple_choice.Example(
        str(record.get("id", _guid(split, lang, index))), record["question"],
        tuple(record["choices"]["text"]), keys.index(key) if key else None,
    )


def _tags(record: Mapping, field: str, labels: Sequence[str] | None) -> tuple[str, ...]:
    values = record[field]
    if labels is None:
        return tuple(str(v) for v in values)
    return tuple(label_name(v, labels) for v in values)


def udpos(record: Mapping, split: str, lang: str, index: int):
    return tagging.Example(_guid(split, lang, index), tuple(record["tokens"]), _tags(record, "pos_tags", UPOS_TAGS))


def panx(record: Mapping, split: str, lang: str, index: int):
    return tagging.Example(_guid(split, lang, index), tuple(record["tokens"]), _tags(record, "ner_tags", PANX_TAGS))


def ccg(record: Mapping, split: str, lang: str, index: int):
    # The supertag set comes from the user's tags.txt; featurize checks membership.
    return tagging.Example(_guid(split, lang, index), tuple(record["tokens"]), _tags(record, "tags", None))


def bucc(record: Mapping, split: str, lang: str, index: int):
    """A row holds a source sentence, its English translation, or both (a gold pair).
    Ids default to the row position, so hub rows (gold pairs only) get stable ids."""
    src_text, trg_text = record.get("source_sentence") or "", record.get("target_sentence") or ""
    src_id = record.get("source_id") or f"{lang}-{index:06d}"
    trg_id = record.get("target_id") or f"en-{index:06d}"
    out = []
    if trg_text:
        out.append(retrieval.Example(trg_id, trg_text, retrieval.TARGET, "en"))
    if src_text:
        out.append(retrieval.Example(src_id, src_text, retrieval.SOURCE, lang, trg_id if trg_text else None))
    if not out:
        raise ValueError("row has neither source_sentence nor target_sentence")
    return out


def tatoeba(record: Mapping, split: str, lang: str, index: int):
    """Row i pairs a sentence with its English translation; the official scorer compares
    predicted and gold row indices, so guids carry the index."""
    return [
        retrieval.Example(f"trg-{index}", record["target_sentence"], retrieval.TARGET, "en"),
        retrieval.Example(f"src-{index}", record["source_sentence"], retrieval.SOURCE, lang, f"trg-{index}"),
    ]


def text(record: Mapping, split: str, lang: str, index: int):
    """Raw text for masked language modelling: a ``text`` field, as in wikimedia/wikipedia
    rows (``id``, ``url``, ``title`` may be present and are ignored). Blank text is skipped."""
    value = record["text"]
    if not isinstance(value, str):
        raise ValueError(f"'text' must be a string, got {type(value).__name__}")
    if not value.strip():
        return None
    return mlm.Example(_guid(split, lang, index), value, lang)
