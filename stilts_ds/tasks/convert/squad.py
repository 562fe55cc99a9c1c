"""SQuAD-format JSON (SQuAD 1.1/2.0, XQuAD, MLQA, TyDiQA-GoldP) -> span-QA rows.

    stilts-ds convert xquad    download/xquad  --data-dir data   # xquad.<lang>.json
    stilts-ds convert mlqa     download/MLQA_V1 --data-dir data  # {dev,test}-context-<l>-question-<l>.json
    stilts-ds convert tydiqa   download/tydiqa --data-dir data   # tydiqa-goldp-v1.1-train.json, -dev files
    stilts-ds convert squad_v1 download/squad  --data-dir data   # train-v1.1.json, dev-v1.1.json
    stilts-ds convert squad_v2 download/squad  --data-dir data   # train-v2.0.json, dev-v2.0.json

An official file is ``{"version", "data": [{"title", "paragraphs": [{"context", "qas": [{"id",
"question", "answers": [{"text", "answer_start"}], "is_impossible"?}]}]}]}``; each question
becomes one row of the hub schema: ``{"id", "title", "context", "question", "answers":
{"text": [...], "answer_start": [...]}}`` (an unanswerable SQuAD 2.0 question has empty lists,
as rajpurkar/squad_v2 has).

Checked, with the file and line of the question's id: every answer's ``answer_start`` points
at its text in the context (character offsets, as the official scorer and XTREME's
preprocessing assert), no answer is empty (XTREME's download script blanks the test answers of
its copies of XQuAD, MLQA and TyDiQA in place: convert the official downloads), unanswerable
questions only in SQuAD 2.0, and no question id twice within one split (the loader refuses
that too; here it is named in the official file).

XQuAD and MLQA train on SQuAD v1.1 (as XTREME does) and TyDiQA-GoldP on its English training
questions: when ``train-v1.1.json`` / ``dev-v1.1.json`` are under SOURCE, the xquad and mlqa
converters write the English train (and, for xquad, validation) files too, so that
``data.local_tasks`` can read the whole task locally.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from stilts_ds.errors import DataFileError
from stilts_ds.tasks.convert.common import Converter, Found, Output, read_json
from stilts_ds.tasks.registry import get_task
from stilts_ds.tasks.xtreme import TYDIQA_PREFIX

# The "id" members of a SQuAD file in document order: the k-th belongs to the k-th question
# (json.load keeps list order), which gives each question the line it starts on.
_ID = re.compile(r'"id"\s*:\s*"((?:[^"\\]|\\.)*)"')
SQUAD_SCHEMA = ('{"version": ..., "data": [{"title": ..., "paragraphs": [{"context": ..., "qas": '
                '[{"id": ..., "question": ..., "answers": [{"text": ..., "answer_start": ...}]}]}]}]}')


@dataclass(frozen=True)
class Question:
    row: dict
    path: Path
    line: int | None
    where: str  # its JSON path, data[a].paragraphs[p].qas[q]

    @property
    def id(self) -> str:
        return self.row["id"]

    def at(self) -> str:
        return f"{self.path}:{self.line}" if self.line is not None else f"{self.path} ({self.where})"


def _id_lines(text: str) -> list[int]:
    lines, line, pos = [], 1, 0
    for m in _ID.finditer(text):
        line += text.count("\n", pos, m.start())
        pos = m.start()
        lines.append(line)
    return lines


def _fail(path: Path, line: int | None, where: str, message: str) -> DataFileError:
    return DataFileError(path, f"{where}: {message}", line)


def read_questions(path: Path, *, unanswerable: bool = False) -> list[Question]:
    """Every question of one SQuAD-format file, checked (see the module docstring)."""
    data, text = read_json(path)
    articles = data.get("data") if isinstance(data, dict) else None
    if not isinstance(articles, list):
        raise DataFileError(path, f"not a SQuAD-format file: expected {SQUAD_SCHEMA}", 1)
    try:
        total = sum(len(p["qas"]) for a in articles for p in a["paragraphs"])
    except (KeyError, TypeError) as e:
        raise DataFileError(path, f"not a SQuAD-format file ({type(e).__name__}: {e}): expected {SQUAD_SCHEMA}",
                            1) from None
    lines = _id_lines(text)
    if len(lines) != total:  # an "id" member elsewhere, or an escaped key: no line numbers then
        lines = []
    out: list[Question] = []
    for a, article in enumerate(articles):
        title = article.get("title", "") if isinstance(article, dict) else ""
        for p, paragraph in enumerate(article["paragraphs"]):
            context = paragraph.get("context") if isinstance(paragraph, dict) else None
            for q, qa in enumerate(paragraph["qas"]):
                where = f"data[{a}].paragraphs[{p}].qas[{q}]"
                line = lines[len(out)] if lines else None
                if not isinstance(context, str):
                    raise _fail(path, line, f"data[{a}].paragraphs[{p}]", "no context text")
                out.append(_question(qa, title, context, unanswerable, path, line, where))
    return out


def _question(qa: Any, title: Any, context: str, unanswerable: bool, path: Path, line: int | None,
              where: str) -> Question:
    if not isinstance(qa, dict) or not isinstance(qa.get("id"), (str, int)) or isinstance(qa.get("id"), bool):
        raise _fail(path, line, where, 'a question needs an "id" (a string)')
    qid = str(qa["id"])
    where = f"{where} (id {qid!r})"
    if not isinstance(qa.get("question"), str):
        raise _fail(path, line, where, 'no "question" text')
    answers = qa.get("answers", [])
    if not isinstance(answers, list):
        raise _fail(path, line, where, '"answers" must be a list of {"text", "answer_start"}')
    impossible = qa.get("is_impossible", False)
    if impossible:
        if not unanswerable:
            raise _fail(path, line, where, "is_impossible: unanswerable questions are SQuAD 2.0's; convert this "
                                           "file with `stilts-ds convert squad_v2`, or remove the question")
        if answers:
            raise _fail(path, line, where, f"is_impossible but {len(answers)} answers: an unanswerable question "
                                           "has none (its guesses go in plausible_answers)")
    elif not answers:
        raise _fail(path, line, where, "no answers" + (
            '; an unanswerable question needs "is_impossible": true' if unanswerable else
            "; every question of this task needs one (unanswerable questions are SQuAD 2.0's, squad_v2)"))
    texts, starts = [], []
    for i, answer in enumerate(answers):
        text, start = (answer.get("text"), answer.get("answer_start")) if isinstance(answer, dict) else (None, None)
        if not isinstance(text, str) or not isinstance(start, int) or isinstance(start, bool):
            raise _fail(path, line, where, f'answer {i} must be {{"text": <string>, "answer_start": <integer>}}, '
                                           f"got {answer!r}")
        if not text:
            raise _fail(path, line, where, f"answer {i} is empty. XTREME's download_data.sh blanks the test "
                                           "answers of its XQuAD, MLQA and TyDiQA copies in place "
                                           "(remove_qa_test_annotations): convert the official downloads instead")
        found = context[start:start + len(text)]
        if found != text:
            raise _fail(path, line, where, f"answer {i} {text!r} is not at answer_start {start}: the context has "
                                           f"{found!r} there (answer_start counts characters from 0); fix the "
                                           "offset or the text")
        texts.append(text)
        starts.append(start)
    row = {"id": qid, "title": title if isinstance(title, str) else "", "context": context,
           "question": qa["question"], "answers": {"text": texts, "answer_start": starts}}
    return Question(row, path, line, where)


def write_split(out: Output, task: str, split: str, lang: str, questions: Iterable[Question]) -> None:
    """One (split, language): ids must be unique across everything that goes into it."""
    first: dict[str, Question] = {}
    rows = []
    for q in questions:
        if q.id in first:
            raise DataFileError(q.path, f"{q.where}: duplicate question id {q.id!r}, first at {first[q.id].at()} "
                                        f"({task} {split} {lang}). Every question of a split needs its own id "
                                        "(the loader would refuse the file): remove the copy or rename one",
                                q.line)
        first[q.id] = q
        rows.append(q.row)
    out.write(get_task(task), split, lang, rows)


def _squad_v1_english(found: Found, out: Output, task: str, *, validation: bool) -> None:
    """SQuAD v1.1 as the English train (and dev) split of an XTREME QA task."""
    for hit in found["train"]:
        write_split(out, task, "train", "en", read_questions(hit.path))
    for hit in found["dev"]:
        if validation:
            write_split(out, task, "validation", "en", read_questions(hit.path))
        else:
            out.note(f"{hit.path}: not used by {task} (its English validation split is its own dev set)")


# ----------------------------------------------------------------------------- squad_v1 / squad_v2
def _squad(task: str, unanswerable: bool) -> Callable[[Found, Output], None]:
    def run(found: Found, out: Output) -> None:
        for key, split in (("train", "train"), ("dev", "validation")):
            for hit in found[key]:
                write_split(out, task, split, "en", read_questions(hit.path, unanswerable=unanswerable))
    return run


# ----------------------------------------------------------------------------- xquad
def _xquad(found: Found, out: Output) -> None:
    spec = get_task("xquad")
    for hit in found["xquad"]:
        lang = hit.groups["lang"]
        if lang not in spec.splits["test"]:
            out.note(f"{hit.path}: {lang!r} is not one of xquad's test languages, left out")
            continue
        write_split(out, "xquad", "test", lang, read_questions(hit.path))
    _squad_v1_english(found, out, "xquad", validation=True)


# ----------------------------------------------------------------------------- mlqa
def _mlqa(found: Found, out: Output) -> None:
    spec = get_task("mlqa")
    crossed = []
    for hit in found["mlqa"]:
        g = hit.groups
        if g["context"] != g["question"]:  # G-XLT pairs: XTREME reads context = question language
            crossed.append(hit.path.name)
            continue
        split = "validation" if g["split"] == "dev" else "test"
        if g["context"] not in spec.splits[split]:
            out.note(f"{hit.path}: {g['context']!r} is not one of mlqa's languages, left out")
            continue
        write_split(out, "mlqa", split, g["context"], read_questions(hit.path))
    if crossed:
        out.note(f"left out {len(crossed)} cross-lingual MLQA files (context and question in different "
                 f"languages; XTREME evaluates each language with itself), e.g. {crossed[0]}")
    _squad_v1_english(found, out, "mlqa", validation=False)


# ----------------------------------------------------------------------------- tydiqa
LANG_OF = {name: iso for iso, name in TYDIQA_PREFIX.items()}  # "arabic" -> "ar"


def _by_prefix(questions: list[Question]) -> dict[str, list[Question]]:
    """TyDiQA-GoldP ids start with the language's English name ("arabic-123-0")."""
    out: dict[str, list[Question]] = {}
    for q in questions:
        name = q.id.split("-", 1)[0]
        if name not in LANG_OF:
            raise DataFileError(q.path, f"{q.where}: the id should start with a TyDiQA-GoldP language "
                                        f"({', '.join(LANG_OF)}) and a '-', as the official files' ids do", q.line)
        out.setdefault(LANG_OF[name], []).append(q)
    return out


def _tydiqa(found: Found, out: Output) -> None:
    for hit in found["train"]:
        langs = _by_prefix(read_questions(hit.path))
        # XTREME trains on the English questions only (zero-shot transfer).
        write_split(out, "tydiqa", "train", "en", langs.get("en", []))
        others = sum(len(v) for k, v in langs.items() if k != "en")
        if others:
            out.note(f"{hit.path}: kept its {len(langs.get('en', []))} English questions; XTREME trains on English "
                     f"only, so the {others} in other languages are left out")
    dev: dict[str, list[Question]] = {}
    for hit in found["dev_lang"]:
        lang = LANG_OF.get(hit.groups["language"])
        if lang is None:
            out.note(f"{hit.path}: {hit.groups['language']!r} is not a TyDiQA-GoldP language of XTREME, left out")
            continue
        dev[lang] = read_questions(hit.path)
    for hit in found["dev"]:
        for lang, questions in _by_prefix(read_questions(hit.path)).items():
            if lang in dev:  # the per-language file of the same questions is read instead
                continue
            dev[lang] = questions
    for lang in sorted(dev):
        write_split(out, "tydiqa", "test", lang, dev[lang])
        if lang == "en":  # XTREME's English dev set for model selection is the English test set
            write_split(out, "tydiqa", "validation", "en", dev[lang])
    for hit in found["xtreme_copy"]:
        out.note(f"{hit.path}: XTREME's processed copy (its answers are blanked), not read; the official "
                 "tydiqa-goldp-v1.1-dev files are")
    if not found["train"] and not dev:
        raise DataFileError(found.source, "only XTREME's processed TyDiQA copies, whose dev answers its download "
                                          "script blanks: convert the official tydiqa-goldp-v1.1-train.json and "
                                          "tydiqa-goldp-v1.1-dev.tgz (storage.googleapis.com/tydiqa/v1.1/)")


TRAIN_V1, DEV_V1 = r"train-v1\.1\.json", r"dev-v1\.1\.json"
SQUAD_GET = "rajpurkar.github.io/SQuAD-explorer (what xtreme's download_data.sh fetches)"

CONVERTERS = [
    Converter(
        name="squad_v1", what="SQuAD 1.1", get=SQUAD_GET,
        reads=("train-v1.1.json", "dev-v1.1.json"), writes=("squad_v1/train.jsonl", "squad_v1/validation.jsonl"),
        patterns={"train": TRAIN_V1, "dev": DEV_V1}, run=_squad("squad_v1", unanswerable=False),
    ),
    Converter(
        name="squad_v2", what="SQuAD 2.0", get=SQUAD_GET,
        reads=("train-v2.0.json", "dev-v2.0.json"), writes=("squad_v2/train.jsonl", "squad_v2/validation.jsonl"),
        patterns={"train": r"train-v2\.0\.json", "dev": r"dev-v2\.0\.json"},
        run=_squad("squad_v2", unanswerable=True),
    ),
    Converter(
        name="xquad", what="XQuAD", get="github.com/deepmind/xquad (+ SQuAD 1.1 for the English train/dev)",
        reads=("xquad.<lang>.json", "train-v1.1.json (optional)", "dev-v1.1.json (optional)"),
        writes=("xquad/test.<lang>.jsonl", "xquad/train.en.jsonl", "xquad/validation.en.jsonl"),
        patterns={"xquad": r"xquad\.(?P<lang>[a-z]{2})\.json", "train": TRAIN_V1, "dev": DEV_V1}, run=_xquad,
    ),
    Converter(
        name="mlqa", what="MLQA",
        get="dl.fbaipublicfiles.com/MLQA/MLQA_V1.zip (+ SQuAD 1.1 for the English train)",
        reads=("dev-context-<lang>-question-<lang>.json", "test-context-<lang>-question-<lang>.json",
               "train-v1.1.json (optional)"),
        writes=("mlqa/validation.<lang>.jsonl", "mlqa/test.<lang>.jsonl", "mlqa/train.en.jsonl"),
        patterns={"mlqa": r"(?P<split>dev|test)-context-(?P<context>[a-z]{2})-question-(?P<question>[a-z]{2})\.json",
                  "train": TRAIN_V1, "dev": DEV_V1},  # dev-v1.1.json: found to say it is not used
        run=_mlqa,
    ),
    Converter(
        name="tydiqa", what="TyDiQA-GoldP",
        get="storage.googleapis.com/tydiqa/v1.1/ (tydiqa-goldp-v1.1-train.json, tydiqa-goldp-v1.1-dev.tgz)",
        reads=("tydiqa-goldp-v1.1-train.json", "tydiqa-goldp-dev-<language>.json (from the dev .tgz)",
               "tydiqa-goldp-v1.1-dev.json"),
        writes=("tydiqa/train.en.jsonl", "tydiqa/validation.en.jsonl", "tydiqa/test.<lang>.jsonl"),
        patterns={"train": r"tydiqa-goldp-v1\.1-train\.json", "dev": r"tydiqa-goldp-v1\.1-dev\.json",
                  "dev_lang": r"tydiqa-goldp-dev-(?P<language>[a-z]+)\.json",
                  "xtreme_copy": r"tydiqa\.goldp\.[a-z]{2}\.dev\.json"},
        run=_tydiqa,
    ),
]
