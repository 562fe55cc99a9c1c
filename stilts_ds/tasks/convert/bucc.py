"""The official BUCC 2018 files -> bucc rows, for the protocol XTREME scores.

    stilts-ds convert bucc download/bucc2018 --data-dir data
    # then, in the study config:  data: {local_tasks: {bucc: data}}

XTREME mines each language's whole BUCC 2018 corpus against the whole English one (de-en:
~413k German and ~400k English sentences, 9,580 gold pairs), with the shared task's training
files as its test set and the sample files as its dev set (the real test set is private;
google-research/xtreme issue #13). The hub's ``google/xtreme`` ``bucc18.<lang>`` configs keep
only the gold pairs, which makes mining far easier: scores from them are not comparable to
the paper's. This converter keeps every sentence: gold pairs as one row, the other sentences
as rows with one side empty (``readers.bucc`` reads both), written to
``bucc/{test,validation}.<lang>.jsonl``.

Input: the ``<lang>-en.{training,sample}.{<lang>,en,gold}`` files of bucc2018-<lang>-en.*.tar.bz2
(what xtreme's scripts/download_data.sh fetches), anywhere under SOURCE. Sentence files hold
``<id>\\t<sentence>`` lines, gold files ``<source id>\\t<target id>`` lines; a (language, split)
needs all three.
"""
from __future__ import annotations

from pathlib import Path

from stilts_ds.errors import DataFileError, StiltsError
from stilts_ds.tasks.convert.common import Converter, Found, Output, read_lines
from stilts_ds.tasks.registry import get_task

LANGS = ("de", "fr", "ru", "zh")
SPLITS = {"training": "test", "sample": "validation"}  # official file name -> XTREME's split


def read_pairs(path: Path, what: str) -> list[tuple[str, str]]:
    out = []
    for lineno, line in read_lines(path):
        if not line:
            continue
        parts = line.split("\t")
        if len(parts) != 2 or not parts[0]:
            raise DataFileError(path, f"expected '<id>\\t<{what}>', got {line[:80]!r}", lineno)
        out.append((parts[0], parts[1]))
    return out


def bucc_rows(lang: str, sources: list[tuple[str, str]], targets: list[tuple[str, str]],
              gold: list[tuple[str, str]], gold_file: Path | str = "the gold file") -> list[dict]:
    """Gold pairs first (one row each), then the unpaired sources, then the unpaired targets."""
    src, trg = dict(sources), dict(targets)
    missing = [(s, t) for s, t in gold if s not in src or t not in trg]
    if missing:
        raise StiltsError(f"{gold_file}: gold pair {missing[0][0]}\t{missing[0][1]} names a sentence the files do "
                          f"not hold ({len(missing)} such pairs)")
    paired_src, paired_trg = {s for s, _ in gold}, {t for _, t in gold}

    def row(s_id="", t_id=""):
        return {"source_sentence": src.get(s_id, ""), "target_sentence": trg.get(t_id, ""), "source_lang": lang,
                "target_lang": "en", "source_id": s_id, "target_id": t_id}

    return ([row(s, t) for s, t in gold] + [row(s_id=s) for s, _ in sources if s not in paired_src]
            + [row(t_id=t) for t, _ in targets if t not in paired_trg])


def _run(found: Found, out: Output) -> None:
    spec = get_task("bucc")
    files: dict[tuple[str, str], dict[str, Path]] = {}
    for hit in found["bucc"]:
        lang, part, ext = hit.groups["lang"], hit.groups["part"], hit.groups["ext"]
        if ext in (lang, "en", "gold"):
            files.setdefault((lang, part), {})[ext] = hit.path
    for (lang, part), have in sorted(files.items()):
        names = [f"{lang}-en.{part}.{ext}" for ext in (lang, "en", "gold")]
        if len(have) != 3:
            raise StiltsError(f"{found.source}: found {', '.join(n for n in names if n.rsplit('.', 1)[1] in have)} "
                              f"but not {', '.join(n for n in names if n.rsplit('.', 1)[1] not in have)}")
        rows = bucc_rows(lang, read_pairs(have[lang], "sentence"), read_pairs(have["en"], "sentence"),
                         read_pairs(have["gold"], "target id"), have["gold"])
        out.write(spec, SPLITS[part], lang, rows)


CONVERTER = Converter(
    name="bucc", what="BUCC 2018",
    get="comparable.limsi.fr/bucc2018: bucc2018-<lang>-en.{training,sample}-gold.tar.bz2",
    reads=("<lang>-en.training.{<lang>,en,gold}", "<lang>-en.sample.{<lang>,en,gold}"),
    writes=("bucc/test.<lang>.jsonl", "bucc/validation.<lang>.jsonl"),
    patterns={"bucc": r"(?P<lang>de|fr|ru|zh)-en\.(?P<part>training|sample)\.(?P<ext>de|fr|ru|zh|en|gold)"},
    run=_run,
)
