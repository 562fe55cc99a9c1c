"""Readers for the prediction/reference file formats of the official XTREME scorer.

Usage::

    from stilts_ds.evaluation.official_files import read_labels, read_tags
    labels = read_labels("labels/xnli/test-de.tsv")       # ["entailment", ...]
    sentences = read_tags("predictions/panx/test-de.tsv")  # [["B-PER", "O"], ...]

Formats (as xtreme ``evaluate.py`` reads them; files are UTF-8, universal newlines):

- labels (XNLI, PAWS-X, Tatoeba): one label per line, surrounding whitespace stripped.
  Every line counts, blank ones included (as ''), exactly like the official reader.
- tags (UD-POS, PAN-X, CCG): one tag per line, a blank line ends a sentence. As in the
  official reader, *every* blank line ends a sentence, so two blank lines in a row make an
  empty sentence (it matters for sentence counts; it adds no chunk). Extension: a line
  with tabs ("token<TAB>tag", CoNLL-style) contributes its last tab-separated column;
  the official reader would take the whole line as the tag. Lines without tabs are
  untouched, so official one-column files read identically.
- SQuAD references (XQuAD, MLQA, TyDiQA, SQuAD): JSON, either {"data": [articles]} or a
  bare list of articles; article -> "paragraphs" -> "qas" -> {"id", "answers": [{"text"}]}.
  Returns id -> list of answer texts in file order. Stricter than the official reader:
  a missing key, a wrong type or a duplicate question id is an error naming where.
- QA predictions: a JSON object mapping question id -> answer text.
- XCOPA labels (XTREME-R): JSON lines, one object with an integer "label" per example, in
  order (predictions ``{"label": 0}`` as run_xcopa.py writes them; references the XCOPA rows
  themselves), read like evaluate.py ``read_xcopa``; a line without "label" is an error.
- ranked ids (XTREME-R Mewsli-X, LAReQA): one JSON object mapping a query id to a list of
  ids: predictions ranked best first, references the gold ids (evaluate.py reads Mewsli-X
  with ``read_squad``, which returns such an object unchanged). The official scorer has no
  LAReQA file format (its language list for lareqa is empty); we use Mewsli-X's.
- BUCC pairs: "source_id<TAB>target_id" per line. The official scorer splits each
  stripped line on tabs and would count a blank or malformed line as a (bogus) pair; we
  reject any line that does not have exactly two fields, naming file:line.

Every problem raises ``ScoreInputError`` whose message starts with the file path (and
``:line`` where a line is to blame). A missing file raises the usual FileNotFoundError.
"""

from __future__ import annotations

import io
import json
import os
from typing import Any

from stilts_ds.evaluation.errors import ScoreInputError

PathLike = str | os.PathLike


def _read_text(path: PathLike) -> str:
    with open(path, "rb") as handle:
        data = handle.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise ScoreInputError(f"{path}:{line}: not valid UTF-8 ({error.reason})") from None


def _lines(path: PathLike) -> list[str]:
    """The file's lines as Python's text mode yields them (\\r, \\r\\n and \\n all end a line)."""
    return list(io.StringIO(_read_text(path), newline=None))


def read_labels(path: PathLike) -> list[str]:
    """One stripped label per line (blank lines included as '')."""
    return [line.strip() for line in _lines(path)]


def read_tags(path: PathLike) -> list[list[str]]:
    """Sentences of tags: one tag per line, blank line between sentences."""
    sentences: list[list[str]] = []
    current: list[str] = []
    for line in _lines(path):
        line = line.strip()
        if line:
            # "token\ttag" -> "tag"; a one-column line is its own last column.
            current.append(line.split("\t")[-1].strip())
        else:
            # Official behaviour: each blank line closes a sentence, even an empty one.
            sentences.append(current)
            current = []
    if current:
        sentences.append(current)
    return sentences


def _load_json(path: PathLike) -> Any:
    text = _read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ScoreInputError(
            f"{path}:{error.lineno}:{error.colno}: invalid JSON: {error.msg}"
        ) from None


def _json_type(value: Any) -> str:
    return {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def _field(path: PathLike, container: Any, where: str, key: str, expected: type) -> Any:
    """``container[key]``, checking that container is an object and the value's type."""
    if not isinstance(container, dict):
        raise ScoreInputError(f"{path}: {where} must be an object, got {_json_type(container)}")
    if key not in container:
        raise ScoreInputError(f"{path}: {where} has no {key!r} key")
    value = container[key]
    if not isinstance(value, expected):
        wanted = "a list" if expected is list else "a string"
        raise ScoreInputError(
            f"{path}: {where}.{key} must be {wanted}, got {_json_type(value)}"
        )
    return value


def read_squad_references(path: PathLike) -> dict[str, list[str]]:
    """Question id -> gold answer texts, from a SQuAD-format JSON file."""
    content = _load_json(path)
    if isinstance(content, dict):
        if "data" not in content:
            keys = ", ".join(repr(k) for k in list(content)[:5]) or "none"
            raise ScoreInputError(
                f"{path}: expected SQuAD format, an object with a 'data' key (or a list of "
                f"articles); the top-level object has keys {keys}"
            )
        articles = content["data"]
        prefix = "data"
        if not isinstance(articles, list):
            raise ScoreInputError(
                f"{path}: 'data' must be a list of articles, got {_json_type(articles)}"
            )
    elif isinstance(content, list):
        articles = content
        prefix = ""
    else:
        raise ScoreInputError(
            f"{path}: expected SQuAD format (an object with 'data', or a list of articles), "
            f"got {_json_type(content)}"
        )

    references: dict[str, list[str]] = {}
    for a, article in enumerate(articles):
        article_at = f"{prefix}[{a}]"
        for p, paragraph in enumerate(_field(path, article, article_at, "paragraphs", list)):
            paragraph_at = f"{article_at}.paragraphs[{p}]"
            for q, qa in enumerate(_field(path, paragraph, paragraph_at, "qas", list)):
                qa_at = f"{paragraph_at}.qas[{q}]"
                qid = _field(path, qa, qa_at, "id", str)
                answers = _field(path, qa, qa_at, "answers", list)
                texts = [
                    _field(path, answer, f"{qa_at}.answers[{i}]", "text", str)
                    for i, answer in enumerate(answers)
                ]
                if qid in references:
                    # The official loops would score such a question twice; a dict cannot
                    # say that, and a duplicate id is almost certainly a broken file.
                    raise ScoreInputError(f"{path}: {qa_at}: duplicate question id {qid!r}")
                references[qid] = texts
    return references


def read_qa_predictions(path: PathLike) -> dict[str, str]:
    """Question id -> predicted answer text, from a JSON object."""
    content = _load_json(path)
    if not isinstance(content, dict):
        raise ScoreInputError(
            f"{path}: expected a JSON object mapping question id to answer text, "
            f"got {_json_type(content)}"
        )
    for qid, text in content.items():
        if not isinstance(text, str):
            raise ScoreInputError(
                f"{path}: prediction for question {qid!r} must be a string, got {_json_type(text)}"
            )
    return content


def read_bucc_pairs(path: PathLike) -> list[tuple[str, str]]:
    """(source_id, target_id) pairs, one tab-separated pair per line."""
    pairs: list[tuple[str, str]] = []
    for number, line in enumerate(_lines(path), start=1):
        fields = line.strip().split("\t")
        if len(fields) != 2:
            raise ScoreInputError(
                f"{path}:{number}: expected 2 tab-separated ids, found {len(fields)} "
                f"field(s) in {line.strip()!r}"
            )
        pairs.append((fields[0], fields[1]))
    return pairs


def read_xcopa_labels(path: PathLike) -> list[Any]:
    """The "label" of every JSON line (blank lines skipped), as evaluate.py ``read_xcopa``."""
    labels: list[Any] = []
    for number, line in enumerate(_lines(path), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise ScoreInputError(f"{path}:{number}: invalid JSON: {error.msg}") from None
        if not isinstance(row, dict) or "label" not in row:
            raise ScoreInputError(
                f"{path}:{number}: expected a JSON object with a 'label' key (e.g. {{\"label\": 1}}), "
                f"got {line.strip()[:80]!r}"
            )
        labels.append(row["label"])
    return labels


def read_ranked_ids(path: PathLike) -> dict[str, list[str]]:
    """Query id -> list of ids, from one JSON object (Mewsli-X / LAReQA files)."""
    content = _load_json(path)
    if not isinstance(content, dict):
        raise ScoreInputError(
            f"{path}: expected a JSON object mapping each query id to a list of ids, got {_json_type(content)}"
        )
    for qid, ids in content.items():
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise ScoreInputError(
                f"{path}: entry {qid!r} must be a list of id strings, got {json.dumps(ids)[:80]}"
            )
    return content
