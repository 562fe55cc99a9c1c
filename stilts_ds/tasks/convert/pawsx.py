"""PAWS-X TSV -> pawsx rows.

    stilts-ds convert pawsx download/x-final --data-dir data

Reads ``<lang>/dev_2k.tsv``, ``<lang>/test_2k.tsv`` and ``en/train.tsv`` of x-final.tar.gz
(storage.googleapis.com/paws/pawsx) and writes ``pawsx/{validation,test}.<lang>.jsonl`` and
``pawsx/train.en.jsonl``, rows ``{"sentence1", "sentence2", "label"}`` (label "0" or "1") as
google/xtreme's PAWS-X rows, in file order. ``translated_train.tsv`` (machine-translated
training data) is left out: XTREME trains on English.

Each file has the header ``id sentence1 sentence2 label``, tab-separated; quote characters are
literal text, so rows are split at tabs only and a row with another number of columns is an
error naming file:line. Some translated dev/test rows hold "NS" or nothing where a sentence
failed to translate (google-research-datasets/paws issue 15): XTREME's preprocessing keeps
them, and its published scores count them, so they are kept too, and counted in a note.
"""
from __future__ import annotations

from stilts_ds.errors import DataFileError
from stilts_ds.tasks.convert.common import Converter, Found, Output, tsv_columns
from stilts_ds.tasks.readers import PAWSX_LABELS
from stilts_ds.tasks.registry import get_task

SPLITS = {"train": "train", "dev_2k": "validation", "test_2k": "test"}
UNTRANSLATED = ("NS", "")


def _run(found: Found, out: Output) -> None:
    spec = get_task("pawsx")
    left_out = []
    for hit in found["pawsx"]:
        lang, name = hit.groups["lang"], hit.groups["file"]
        split = SPLITS.get(name)
        if split is None or lang not in spec.splits[split]:
            left_out.append(f"{lang}/{name}.tsv")
            continue
        untranslated = 0
        with out.open(spec, split, lang) as rows:
            for lineno, row in tsv_columns(hit.path, ("sentence1", "sentence2", "label")):
                value = row["label"].strip()
                if value not in PAWSX_LABELS:
                    raise DataFileError(hit.path, f"label {value!r} is not 0 or 1", lineno)
                s1, s2 = row["sentence1"].strip(), row["sentence2"].strip()
                untranslated += s1 in UNTRANSLATED or s2 in UNTRANSLATED
                rows.write({"sentence1": s1, "sentence2": s2, "label": value})
        if untranslated:
            out.note(f"{hit.path}: kept {untranslated} rows with a sentence 'NS' or empty (not translated in the "
                     "official files; XTREME keeps and scores them)")
    if left_out:
        out.note(f"left out {', '.join(left_out)} (XTREME trains on English only)")


CONVERTER = Converter(
    name="pawsx", what="PAWS-X",
    get="storage.googleapis.com/paws/pawsx/x-final.tar.gz",
    reads=("<lang>/dev_2k.tsv", "<lang>/test_2k.tsv", "en/train.tsv"),
    writes=("pawsx/validation.<lang>.jsonl", "pawsx/test.<lang>.jsonl", "pawsx/train.en.jsonl"),
    patterns={"pawsx": r"(?P<lang>[a-z]{2})/(?P<file>train|dev_2k|test_2k|translated_train)\.tsv"},
    run=_run,
)
