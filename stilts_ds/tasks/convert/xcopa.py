"""XCOPA (and English COPA) JSON lines -> xcopa rows.

    stilts-ds convert xcopa download/xcopa --data-dir data

Reads ``data/<lang>/val.<lang>.jsonl`` and ``test.<lang>.jsonl`` of github.com/cambridgeltl/xcopa
and writes ``xcopa/validation.<lang>.jsonl`` (``val`` -> validation) and
``xcopa/test.<lang>.jsonl``. English COPA (the training data and model-selection dev set of
XTREME-R's recipe) is read from SuperGLUE's ``COPA/train.jsonl`` and ``COPA/val.jsonl``, or
from the ``train.en.jsonl`` / ``val.en.jsonl`` that xtreme's download_data.sh renames them to,
and written as ``xcopa/train.en.jsonl`` and ``xcopa/validation.en.jsonl``; COPA's test file
has no labels and is left out. The repository's ``data-gmt/`` folder (the test sets machine-
translated into English, for translate-test) is not read.

Rows stay as the official lines are (premise, choice1, choice2, question, label, idx,
changed), which is the cambridgeltl/xcopa hub schema; each is checked: text fields present,
question "cause" or "effect", label 0 or 1. A bad line is an error naming file:line.
"""
from __future__ import annotations

from stilts_ds.errors import DataFileError
from stilts_ds.tasks.convert.common import Converter, Found, Output, read_jsonl
from stilts_ds.tasks.registry import get_task

SPLITS = {"train": "train", "val": "validation", "test": "test"}


def _check(row: dict, path, lineno: int) -> dict:
    for name in ("premise", "choice1", "choice2"):
        if not isinstance(row.get(name), str):
            raise DataFileError(path, f"no {name!r} text; an XCOPA line is {{\"premise\", \"choice1\", \"choice2\", "
                                      "\"question\", \"label\", \"idx\"}", lineno)
    if row.get("question") not in ("cause", "effect"):
        raise DataFileError(path, f"question must be 'cause' or 'effect', got {row.get('question')!r}", lineno)
    if row.get("label") not in (0, 1) or isinstance(row.get("label"), bool):
        raise DataFileError(path, f"label must be 0 or 1 (the right choice), got {row.get('label')!r}", lineno)
    return row


def _run(found: Found, out: Output) -> None:
    spec = get_task("xcopa")
    sources = [(h, h.groups["split"], h.groups["lang"]) for h in found["xcopa"]]
    sources += [(h, h.groups["split"], "en") for h in found["copa"]]
    for hit, official, lang in sources:
        split = SPLITS[official]
        if lang not in spec.splits[split]:
            out.note(f"{hit.path}: xcopa has no {split} split in {lang!r}"
                     + (" (COPA's test labels are hidden)" if lang == "en" else "") + ", left out")
            continue
        out.write(spec, split, lang, (_check(row, hit.path, lineno) for lineno, row in read_jsonl(hit.path)))


CONVERTER = Converter(
    name="xcopa", what="XCOPA / COPA",
    get="github.com/cambridgeltl/xcopa (data/<lang>/); SuperGLUE's COPA.zip for English",
    reads=("val.<lang>.jsonl", "test.<lang>.jsonl", "COPA/train.jsonl, COPA/val.jsonl (or train.en.jsonl, "
           "val.en.jsonl)"),
    writes=("xcopa/validation.<lang>.jsonl", "xcopa/test.<lang>.jsonl", "xcopa/train.en.jsonl"),
    patterns={"xcopa": r"(?P<split>train|val|test)\.(?P<lang>[a-z]{2})\.jsonl",
              "copa": r"COPA/(?P<split>train|val|test)\.jsonl"},
    run=_run, skip_dirs=("data-gmt",),
)
