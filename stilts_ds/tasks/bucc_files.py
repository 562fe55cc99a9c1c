"""The official BUCC 2018 files -> local ``bucc`` rows, for the protocol XTREME scores.

    python -m stilts_ds.tasks.bucc_files BUCC2018_DIR DATA_DIR
    # then, in the study config:  data: {local_tasks: {bucc: DATA_DIR}}

XTREME mines each language's whole BUCC 2018 corpus against the whole English one (de-en:
~413k German and ~400k English sentences, 9,580 gold pairs), with the shared task's training
files as its test set and the sample files as its dev set (the real test set is private;
google-research/xtreme issue #13). The hub's ``google/xtreme`` ``bucc18.<lang>`` configs keep
only the gold pairs, which makes mining far easier: scores from them are not comparable to
the paper's. This converter keeps every sentence: gold pairs as one row, the other sentences
as rows with one side empty (``readers.bucc`` reads both), written to
``DATA_DIR/bucc/{test,validation}.<lang>.jsonl``.

Input: the ``<lang>-en.{training,sample}.{<lang>,en,gold}`` files of bucc2018-<lang>-en.*.tar.bz2
(what xtreme's scripts/download_data.sh fetches), anywhere under BUCC2018_DIR. Sentence files
hold ``<id>\\t<sentence>`` lines, gold files ``<source id>\\t<target id>`` lines.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from stilts_ds.atomic import write_atomic
from stilts_ds.errors import StiltsError

LANGS = ("de", "fr", "ru", "zh")
SPLITS = {"training": "test", "sample": "validation"}  # official file name -> XTREME's split


def _pairs(path: Path, what: str) -> list[tuple[str, str]]:
    out = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line:
                continue
            parts = line.split("\t")
            if len(parts) != 2 or not parts[0]:
                raise StiltsError(f"{path}:{lineno}: expected '<id>\\t<{what}>', got {line[:80]!r}")
            out.append((parts[0], parts[1]))
    return out


def bucc_rows(lang: str, sources: list[tuple[str, str]], targets: list[tuple[str, str]],
              gold: list[tuple[str, str]]) -> list[dict]:
    """Gold pairs first (one row each), then the unpaired sources, then the unpaired targets."""
    src, trg = dict(sources), dict(targets)
    missing = [(s, t) for s, t in gold if s not in src or t not in trg]
    if missing:
        raise StiltsError(f"gold pair {missing[0][0]}\t{missing[0][1]} names a sentence the files do not hold "
                          f"({len(missing)} such pairs)")
    paired_src, paired_trg = {s for s, _ in gold}, {t for _, t in gold}

    def row(s_id="", t_id=""):
        return {"source_sentence": src.get(s_id, ""), "target_sentence": trg.get(t_id, ""), "source_lang": lang,
                "target_lang": "en", "source_id": s_id, "target_id": t_id}

    return ([row(s, t) for s, t in gold] + [row(s_id=s) for s, _ in sources if s not in paired_src]
            + [row(t_id=t) for t, _ in targets if t not in paired_trg])


def _find(root: Path, name: str) -> Path | None:
    found = sorted(root.rglob(name))
    return found[0] if found else None


def convert(source: Path, data_dir: Path) -> list[Path]:
    """Every (language, split) whose three files are under ``source``; at least one."""
    written = []
    for lang in LANGS:
        for official, split in SPLITS.items():
            names = [f"{lang}-en.{official}.{ext}" for ext in (lang, "en", "gold")]
            paths = [_find(source, n) for n in names]
            if not any(paths):
                continue
            if not all(paths):
                raise StiltsError(f"{source}: found {', '.join(n for n, p in zip(names, paths) if p)} but not "
                                  f"{', '.join(n for n, p in zip(names, paths) if not p)}")
            rows = bucc_rows(lang, _pairs(paths[0], "sentence"), _pairs(paths[1], "sentence"),
                             _pairs(paths[2], "target id"))
            out = data_dir / "bucc" / f"{split}.{lang}.jsonl"
            # Atomic: a reader (or a rerun after a crash) never sees half a file.
            written.append(write_atomic(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)))
    if not written:
        raise StiltsError(f"{source}: no BUCC 2018 files (<lang>-en.training.<lang>, .en, .gold) for "
                          f"{', '.join(LANGS)}")
    return written


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m stilts_ds.tasks.bucc_files BUCC2018_DIR DATA_DIR")
    try:
        for path in convert(Path(sys.argv[1]), Path(sys.argv[2])):
            print(path)
    except StiltsError as e:
        sys.exit(f"error: {e}")
