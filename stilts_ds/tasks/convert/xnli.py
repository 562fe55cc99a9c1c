"""XNLI 1.0 TSV -> xnli rows.

    stilts-ds convert xnli download/XNLI-1.0 --data-dir data

Reads ``xnli.dev.tsv`` and ``xnli.test.tsv`` (XNLI-1.0.zip) and writes
``xnli/{validation,test}.<lang>.jsonl`` for its 15 languages, rows ``{"language", "sentence1",
"sentence2", "gold_label"}`` as google/xtreme's XNLI rows, in file order. With
``multinli.train.en.tsv`` (XNLI-MT-1.0.zip, the English MultiNLI train set XTREME trains on)
under SOURCE, it writes ``xnli/train.en.jsonl`` too (``{"premise", "hypothesis", "label"}``).

The files are tab-separated with a header row; columns are found by the header's names
(language, gold_label, sentence1, sentence2; premise, hypo, label). Quote characters are
literal text (csv's QUOTE_NONE), so a row is split at tabs only and every row must have the
header's number of columns, else an error names file:line. "contradictory" (XNLI-MT's
spelling) becomes "contradiction", as XTREME's preprocessing does; sentences are stripped.
"""
from __future__ import annotations

from pathlib import Path

from stilts_ds.errors import DataFileError
from stilts_ds.tasks.convert.common import Converter, Found, Output, tsv_columns
from stilts_ds.tasks.readers import NLI_LABELS
from stilts_ds.tasks.registry import get_task

SPLITS = {"dev": "validation", "test": "test"}


def label(value: str, path: Path, lineno: int) -> str:
    value = value.strip()
    value = "contradiction" if value == "contradictory" else value
    if value not in NLI_LABELS:
        raise DataFileError(path, f"label {value!r} is not one of {', '.join(NLI_LABELS)}", lineno)
    return value


def _run(found: Found, out: Output) -> None:
    spec = get_task("xnli")
    for hit in found["xnli"]:
        split = SPLITS[hit.groups["split"]]
        by_lang: dict[str, list[dict]] = {}
        for lineno, row in tsv_columns(hit.path, ("language", "gold_label", "sentence1", "sentence2")):
            lang = row["language"].strip()
            if lang not in spec.splits[split]:
                raise DataFileError(hit.path, f"language {lang!r} is not one of XNLI's "
                                              f"({' '.join(spec.splits[split])})", lineno)
            by_lang.setdefault(lang, []).append({
                "language": lang, "sentence1": row["sentence1"].strip(), "sentence2": row["sentence2"].strip(),
                "gold_label": label(row["gold_label"], hit.path, lineno)})
        for lang, rows in by_lang.items():
            out.write(spec, split, lang, rows)
    for hit in found["train"]:
        out.write(spec, "train", "en", (
            {"premise": row["premise"].strip(), "hypothesis": row["hypo"].strip(),
             "label": label(row["label"], hit.path, lineno)}
            for lineno, row in tsv_columns(hit.path, ("premise", "hypo", "label"))))


CONVERTER = Converter(
    name="xnli", what="XNLI",
    get="dl.fbaipublicfiles.com/XNLI/XNLI-1.0.zip (+ XNLI-MT-1.0.zip for the English train set)",
    reads=("xnli.dev.tsv", "xnli.test.tsv", "multinli.train.en.tsv (optional)"),
    writes=("xnli/validation.<lang>.jsonl", "xnli/test.<lang>.jsonl", "xnli/train.en.jsonl"),
    patterns={"xnli": r"xnli\.(?P<split>dev|test)\.tsv", "train": r"multinli\.train\.en\.tsv"},
    run=_run,
)
