"""XTREME-R tasks (Ruder et al., 2021) beyond those it shares with XTREME: xcopa, mewslix, lareqa.

    from stilts_ds.tasks.registry import get_task
    get_task("xcopa").hub_parts("train", "en")     # [load_dataset('aps/super_glue', ..., data_dir='copa')]
    get_task("xcopa").train_first                  # ('siqa',): phase 2 trains SIQA, then COPA
    python -m stilts_ds.tasks.xtreme_r lareqa  XQUAD_R_DIR  DATA_DIR   # official files -> local rows
    python -m stilts_ds.tasks.xtreme_r mewslix MEWSLIX_DIR  DATA_DIR

XTREME-R shares XNLI, UD-POS, PAN-X, XQuAD, MLQA, TyDiQA-GoldP and Tatoeba with XTREME (the
specs in ``stilts_ds.tasks.xtreme``, some with XTREME-R's extra languages where a hub copy
exists) and drops PAWS-X and BUCC. Its language lists and groups are
``stilts_ds.metrics.XTREME_R_LANGUAGES`` / ``XTREME_R_GROUPS`` (used by ``xtreme_r_score``).
What each task here follows (google-research/xtreme, the XTREME-R code):

* xcopa: ``third_party/run_xcopa.py``: the prompt is "<premise> What was the <question>?"
  (question is "cause" or "effect"), paired with each of the two choices; accuracy. Training
  follows ``scripts/train_xcopa.sh``: first Social IQa (``siqa``: "<context> <question>" with
  each of three answers), then English COPA (SuperGLUE) from that model, head included. Phase 2
  runs the two as stages (``TaskSpec.train_first``; ``finetune.staged: false`` trains on
  COPA alone). The multiple-choice head scores one (prompt, choice) pair at a time, so SIQA's
  three-way head is COPA's two-way head.
* lareqa: XQuAD-R, ``third_party/utils_lareqa.py`` + ``run_retrieval.py``: every question
  (uid "<xquad id>_<lang>") ranks the answer-sentence pool of *all* languages (candidate uid
  "<lang>_<paragraph number>_<sentence number>", text = sentence + its paragraph, joined as
  the official code joins them); relevant = the sentence holding the answer, in every
  language; mAP@20. The hub copy (google-research-datasets/xquad_r) drops the
  ``sentence_breaks`` the candidates are cut by, so the task reads the official files.
* mewslix: ``third_party/utils_mewslix.py``: a mention becomes "<mention>: <left> { <mention> }
  <right>" within its sentence (braces in the text escaped to parentheses), an entity its
  description's sentences; the pool is the ~1M candidate entities; mAP@20 (= MRR@20).

Evaluation is zero-shot from the phase-1 encoder (mean-pooled hidden layer, cosine), like
BUCC and Tatoeba; XTREME-R itself fine-tunes a dual encoder for LAReQA and Mewsli-X. Every
per-language file of lareqa and mewslix holds the whole candidate pool, so one (task, split,
language) is self-contained for ``prepare`` and evaluation; ``shared_pool`` tells phase 3 to
embed each pool row once for all languages (``engine.predict.predict_embeddings``).
"""
from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any, Mapping

from stilts_ds.metrics.aggregate import XTREME_R_LANGUAGES
from stilts_ds.tasks.formats import multiple_choice, retrieval
from stilts_ds.tasks.formats.base import ChoiceOptions
from stilts_ds.tasks.spec import AUXILIARY, PARQUET_BRANCH, XTREME, HubPart, TaskSpec

EN = ("en",)
XCOPA_LANGS = XTREME_R_LANGUAGES["xcopa"]
MEWSLIX_LANGS = XTREME_R_LANGUAGES["mewslix"]
LAREQA_LANGS = XTREME_R_LANGUAGES["lareqa"]

COPA = "aps/super_glue"  # SuperGLUE on the hub (formerly "super_glue"); COPA is its folder "copa"
SIQA = "allenai/social_i_qa"  # main holds only a loading script: read its Parquet conversion
XCOPA_HUB = "cambridgeltl/xcopa"  # one config per language, splits validation / test


# ----------------------------------------------------------------------------- xcopa
def xcopa(record: Mapping, split: str, lang: str, index: int):
    """A COPA/XCOPA row (premise, question, choice1, choice2, label) -> two-way choice."""
    question = record["question"]
    if question not in ("cause", "effect"):
        raise ValueError(f"question must be 'cause' or 'effect', got {question!r}")
    raw = record.get("label")
    label = None if raw in (None, -1, "") else int(raw)  # SuperGLUE's test labels are -1
    return multiple_choice.Example(
        f"{split}-{lang}-{index}", f"{record['premise']} What was the {question}?",
        (record["choice1"], record["choice2"]), label,
    )


SIQA_LETTERS = {"A": 0, "B": 1, "C": 2}


def siqa(record: Mapping, split: str, lang: str, index: int):
    """A Social IQa row (context, question, answerA/B/C and a label) -> three-way choice,
    prompted as run_xcopa.py prompts it: "<context> <question>". The hub's rows carry label
    "1".."3"; the socialIQa_v1.4 files XTREME-R trains on carry ``correct`` "A".."C"."""
    if record.get("correct") not in (None, ""):
        if record["correct"] not in SIQA_LETTERS:
            raise ValueError(f"correct must be 'A', 'B' or 'C', got {record['correct']!r}")
        label = SIQA_LETTERS[record["correct"]]
    else:
        raw = record.get("label")
        label = None if raw in (None, "", -1) else int(str(raw).strip()) - 1  # 1-based strings
        if label is not None and label not in (0, 1, 2):
            raise ValueError(f"label must be '1', '2' or '3', got {raw!r}")
    return multiple_choice.Example(
        f"{split}-{lang}-{index}", f"{record['context']} {record['question']}",
        (record["answerA"], record["answerB"], record["answerC"]), label,
    )


def _xcopa(split: str, lang: str) -> list[HubPart]:
    if lang == "en":  # English COPA: the training data and the model-selection dev set
        # aps/super_glue keeps a loading script on main: read COPA's folder of the conversion.
        return [HubPart(COPA, None, split, revision=PARQUET_BRANCH, data_dir="copa")]
    return [HubPart(XCOPA_HUB, lang, split)]


# ----------------------------------------------------------------------------- lareqa
def lareqa(record: Mapping, split: str, lang: str, index: int):
    """One XQuAD-R paragraph (any language): its sentences join the candidate pool; its
    questions become queries when the paragraph is in ``lang``. Row schema (written by
    ``lareqa_rows``): lang, context_id, context, sentence_breaks [[start, end], ...], qas
    [{id, question, answers: [{text, answer_start}]}]."""
    row_lang, context_id, context = record["lang"], record["context_id"], record["context"]
    breaks = [(int(s), int(e)) for s, e in record["sentence_breaks"]]
    sentences = [context[s:e] for s, e in breaks]
    keys: list[list[str]] = [[] for _ in sentences]
    queries = []
    for qa in record["qas"]:
        if len(qa["answers"]) != 1:
            raise ValueError(f"question {qa['id']!r}: XQuAD-R has exactly one answer, got {len(qa['answers'])}")
        start = int(qa["answers"][0]["answer_start"])
        answer = next((context[s:e] for s, e in breaks if s <= start < e), None)
        if answer is None:
            continue  # official: skipped (a sentence-breaking error), with a warning
        # Official: every sentence of the paragraph equal to the answer sentence is relevant.
        for pos, sentence in enumerate(sentences):
            if sentence == answer:
                keys[pos].append(qa["id"])
        if row_lang == lang:
            queries.append(retrieval.Example(f"{qa['id']}_{lang}", qa["question"], retrieval.SOURCE, lang,
                                             wants=qa["id"]))
    # run_retrieval.py encodes (sentence + context) with no separator; so do we.
    candidates = [
        retrieval.Example(f"{context_id}_{pos}", (sentence + context).replace("\n", ""), retrieval.TARGET,
                          row_lang, keys=tuple(keys[pos]))
        for pos, sentence in enumerate(sentences)
    ]
    return queries + candidates


def lareqa_rows(xquad_r: Mapping[str, Mapping[str, Any]]) -> list[dict]:
    """Official XQuAD-R files ({lang: json.load(xquad-r/<lang>.json)}) -> our paragraph rows,
    numbering paragraphs per language from 1 in file order as utils_lareqa does."""
    rows = []
    for lang, data in xquad_r.items():
        number = 0
        for article in data["data"]:
            for paragraph in article["paragraphs"]:
                number += 1
                rows.append({
                    "lang": lang, "context_id": f"{lang}_{number}", "context": paragraph["context"],
                    "sentence_breaks": paragraph["sentence_breaks"],
                    "qas": [{"id": qa["id"], "question": qa["question"],
                             "answers": [{"text": a["text"], "answer_start": a["answer_start"]}
                                         for a in qa["answers"]]} for qa in paragraph["qas"]],
                })
    return rows


# ----------------------------------------------------------------------------- mewslix
_MARKER = re.compile(r"\{(.*?)\}")


def _normalise(text: str) -> str:
    return " ".join(text.splitlines()).replace("  ", " ").strip()


def mewslix_query(context: Mapping, mention: Mapping) -> str:
    """utils_mewslix.preprocess_mention: the mention's sentence with the mention marked in
    braces (braces already in the text become parentheses), the mention prepended."""
    span = mention["mention_span"]
    start, end, surface = int(span["start"]), int(span["end"]), span["text"]
    text = context["text"]
    focus = next(((int(s["start"]), int(s["end"])) for s in context["sentence_spans"]
                  if int(s["start"]) <= start < int(s["end"]) and int(s["start"]) < end <= int(s["end"])), None)
    if focus is None:
        raise ValueError(f"mention {mention['example_id']!r} [{start}:{end}] lies in no single sentence "
                         "of its context (the official preprocessing asserts the same)")
    left = _MARKER.sub(r"(\1)", text[focus[0]:start])
    right = _MARKER.sub(r"(\1)", text[end:focus[1]])
    return _normalise(f"{surface}: {left} {{ {surface} }} {right}")


def mewslix_description(entity: Mapping) -> str:
    """utils_mewslix.preprocess_entity_description: the description's sentences, spaced."""
    text = entity["description"]
    return _normalise(" ".join(text[int(s["start"]):int(s["end"])] for s in entity["sentence_spans"]))


def mewslix(record: Mapping, split: str, lang: str, index: int):
    """A candidate entity row (entity_id, description, sentence_spans, description_language)
    or a mentions row (context + mentions, or context + mention) from the official files;
    mentions of other languages than ``lang`` are left out."""
    if "entity_id" in record and "description" in record:
        return [retrieval.Example(str(record["entity_id"]), mewslix_description(record), retrieval.TARGET,
                                  record.get("description_language", ""), keys=(str(record["entity_id"]),))]
    context = record["context"]
    mentions = record["mentions"] if "mentions" in record else [record["mention"]]
    if context["language"] != lang:
        return []
    return [retrieval.Example(str(m["example_id"]), mewslix_query(context, m), retrieval.SOURCE, lang,
                              wants=str(m["entity_id"]).strip()) for m in mentions]


# ----------------------------------------------------------------------------- specs
LAREQA_HELP = (
    "lareqa reads the official XQuAD-R files, not the hub copy (google-research-datasets/xquad_r "
    "drops the sentence_breaks that cut the answer candidates). Get xquad-r/<lang>.json for "
    f"{' '.join(LAREQA_LANGS)} from github.com/google-research-datasets/lareqa (what xtreme's "
    "scripts/download_lareqa_data.sh downloads), then run `stilts-ds convert lareqa <dir with the "
    "<lang>.json files> --data-dir <data dir>`: it writes lareqa/test.<lang>.jsonl, each holding the "
    "paragraphs of every language (the shared answer pool), and --data-dir <data dir> reads them."
)
MEWSLIX_HELP = (
    "mewslix has no official hub copy (izhx/mewsli-x is an unofficial mirror). Get Mewsli-X with "
    "xtreme's scripts/download_mewslix_data.sh (it runs get-mewsli-x.sh of google-research/"
    "dense_representations_for_entity_retrieval/mel and keeps candidate_set_entities.jsonl and "
    "wikinews_mentions-test.jsonl), then run `stilts-ds convert mewslix <that dir> --data-dir "
    f"<data dir>`: it writes mewslix/test.<lang>.jsonl for {' '.join(MEWSLIX_LANGS)}, each the "
    "language's mentions followed by all candidate entities (the shared pool, ~1M rows)."
)

XTREME_R_TASKS = [
    TaskSpec(
        name="siqa", kind=AUXILIARY, format="multiple_choice", metric="accuracy",
        description="Social IQa, 3-way social commonsense QA (XTREME-R's first stage for xcopa)",
        reader=siqa, hub_parts=lambda split, lang: [HubPart(SIQA, None, split, revision=PARQUET_BRANCH)],
        splits={"train": EN, "validation": EN}, options=ChoiceOptions(num_choices=3),
    ),
    TaskSpec(
        name="xcopa", kind=XTREME, format="multiple_choice", metric="accuracy",
        description="XCOPA, causal commonsense 2-way choice in 11 languages (XTREME-R)", reader=xcopa,
        hub_parts=_xcopa, splits={"train": EN, "validation": EN + XCOPA_LANGS, "test": XCOPA_LANGS},
        options=ChoiceOptions(num_choices=2), train_first=("siqa",), answer_files="xcopa",
        train_source="SIQA, then COPA en (SuperGLUE), as XTREME-R's train_xcopa.sh",
    ),
    TaskSpec(
        name="mewslix", kind=XTREME, format="retrieval", metric="mewslix_map_at_20",
        description="Mewsli-X entity linking as retrieval from ~1M entities, mAP@20 (XTREME-R)",
        reader=mewslix, hub_parts=None, splits={"test": MEWSLIX_LANGS}, local_only_help=MEWSLIX_HELP,
        train_source=None, shared_pool=True,
    ),
    TaskSpec(
        name="lareqa", kind=XTREME, format="retrieval", metric="lareqa_map_at_20",
        description="LAReQA (XQuAD-R) answer retrieval from an 11-language pool, mAP@20 (XTREME-R)",
        reader=lareqa, hub_parts=None, splits={"test": LAREQA_LANGS}, local_only_help=LAREQA_HELP,
        train_source=None, shared_pool=True,
    ),
]


# ----------------------------------------------------------------------------- converters
def convert(task: str, source: Path, data_dir: Path) -> list[Path]:
    """Official files under ``source`` -> ``data_dir/<task>/test.<lang>.jsonl``: a thin wrapper of
    `stilts-ds convert lareqa|mewslix SOURCE --data-dir DATA_DIR` (stilts_ds.tasks.convert)."""
    if task not in ("lareqa", "mewslix"):
        raise ValueError(f"unknown task {task!r}: convert lareqa or mewslix")
    # Imported here: the converters import this module.
    from stilts_ds.tasks.convert import convert as run

    return run(task, source, data_dir).written


if __name__ == "__main__":
    from stilts_ds.errors import StiltsError

    if len(sys.argv) != 4:
        sys.exit("usage: python -m stilts_ds.tasks.xtreme_r {lareqa|mewslix} OFFICIAL_DIR DATA_DIR "
                 "(or: stilts-ds convert {lareqa|mewslix} OFFICIAL_DIR --data-dir DATA_DIR)")
    try:
        for out in convert(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])):
            print(out)
    except StiltsError as e:
        sys.exit(f"error: {e}")
