"""PAN-X (WikiANN, the Rahimi et al. 2019 splits) -> panx rows.

    stilts-ds convert panx download/panx_dataset --data-dir data

Reads, under SOURCE, each language's ``train``, ``dev`` and ``test`` files in any of the
layouts the distribution comes in: ``<lang>.tar.gz`` as AmazonPhotos.zip holds them (read
without unpacking), ``<lang>/{train,dev,test}`` (each archive unpacked into a folder named by
its language) or ``<lang>-{train,dev,test}`` (xtreme's download_data.sh renames them so).
Writes ``panx/{train,validation,test}.<lang>.jsonl``, one ``{"tokens", "ner_tags", "langs"}``
row per sentence, as google/xtreme's PAN-X rows (tag names; ``langs`` repeats the language).

A line is ``<lang>:<token>\\t<TAG>``; a blank line ends a sentence. As XTREME's
utils_preprocess.py does, the prefix up to the first ':' is dropped (``en:http://x`` ->
``http://x``) and the token stripped; ``dev`` becomes ``validation``; only English trains
(the other languages' train files are left out). A token that is empty once stripped is
dropped (it has nothing to tag) and counted in a note. A line that is not two tab-separated
fields, has no ':' prefix or an unknown tag is an error naming file:line.
"""
from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Iterator

from stilts_ds.errors import DataFileError, StiltsError
from stilts_ds.tasks.convert.common import Converter, Found, Output, decode_lines, read_lines
from stilts_ds.tasks.readers import PANX_TAGS
from stilts_ds.tasks.registry import get_task

SPLITS = {"train": "train", "dev": "validation", "test": "test"}


def sentences(lines: Iterator[tuple[int, str]], where) -> Iterator[tuple[list[str], list[str], int]]:
    """(tokens, tags, empty tokens dropped) per sentence of one PAN-X file's lines."""
    tokens: list[str] = []
    tags: list[str] = []
    dropped = 0
    for lineno, line in lines:
        line = line.strip()
        if not line:
            if tokens:
                yield tokens, tags, dropped
            tokens, tags, dropped = [], [], 0
            continue
        fields = line.split("\t")
        colon = fields[0].find(":")
        if len(fields) != 2 or colon == -1:
            raise DataFileError(where, f"expected '<lang>:<token>\\t<TAG>' (two tab-separated fields, the token "
                                       f"prefixed by its language), got {line[:80]!r}", lineno)
        tag = fields[1].strip()
        if tag not in PANX_TAGS:
            raise DataFileError(where, f"tag {tag!r} is not one of PAN-X's ({' '.join(PANX_TAGS)})", lineno)
        token = fields[0][colon + 1:].strip()
        if not token:
            dropped += 1
            continue
        tokens.append(token)
        tags.append(tag)
    if tokens:
        yield tokens, tags, dropped


def _sources(found: Found) -> dict[tuple[str, str], tuple[Path, str | None]]:
    """(language, official split) -> (file, or archive and its member name)."""
    out: dict[tuple[str, str], tuple[Path, str | None]] = {}

    def add(lang, split, path, member=None):
        if (lang, split) in out:
            shown = [f"{p}[{m}]" if m else str(p) for p, m in (out[(lang, split)], (path, member))]
            raise StiltsError(f"PAN-X {lang} {split} is under SOURCE twice: {shown[0]} and {shown[1]}; point SOURCE "
                              "at one copy")
        out[(lang, split)] = (path, member)

    for key in ("dir", "flat"):
        for hit in found[key]:
            add(hit.groups["lang"], hit.groups["split"], hit.path)
    for hit in found["tar"]:
        try:
            with tarfile.open(hit.path, "r:gz") as tar:
                members = tar.getmembers()
        except (tarfile.TarError, OSError, EOFError) as e:
            raise StiltsError(f"{hit.path}: not a readable .tar.gz ({e}); download it again, or unpack it into "
                              f"{hit.groups['lang']}/ beside it and remove the archive") from None
        for member in members:
            name = member.name.rsplit("/", 1)[-1]
            if member.isfile() and name in SPLITS:
                add(hit.groups["lang"], name, hit.path, member.name)
    return out


def _run(found: Found, out: Output) -> None:
    spec = get_task("panx")
    left_out: list[str] = []
    for (lang, official), (path, member) in sorted(_sources(found).items()):
        split = SPLITS[official]
        if lang not in spec.splits[split]:
            left_out.append(f"{lang}-{official}")
            continue
        where = f"{path}[{member}]" if member else path
        dropped = 0
        with out.open(spec, split, lang) as rows:
            if member is None:
                lines = read_lines(path)
                for tokens, tags, n in sentences(lines, where):
                    rows.write({"tokens": tokens, "ner_tags": tags, "langs": [lang] * len(tokens)})
                    dropped += n
            else:
                with tarfile.open(path, "r:gz") as tar:
                    for tokens, tags, n in sentences(decode_lines(tar.extractfile(member), where), where):
                        rows.write({"tokens": tokens, "ner_tags": tags, "langs": [lang] * len(tokens)})
                        dropped += n
        if dropped:
            out.note(f"{where}: dropped {dropped} tokens that are empty once their '{lang}:' prefix is cut")
    if left_out:
        out.note(f"left out {len(left_out)} files panx does not read (XTREME trains on English only; other "
                 f"languages: not in panx): {', '.join(left_out[:6])}{' ...' if len(left_out) > 6 else ''}")


CONVERTER = Converter(
    name="panx", what="PAN-X (WikiANN)",
    get="AmazonPhotos.zip of Rahimi et al. 2019 (the link in xtreme's download_data.sh): one <lang>.tar.gz each",
    reads=("<lang>.tar.gz", "<lang>/{train,dev,test}", "<lang>-{train,dev,test}"),
    writes=("panx/train.en.jsonl", "panx/validation.<lang>.jsonl", "panx/test.<lang>.jsonl"),
    patterns={"tar": r"(?P<lang>[a-z]{2,3})\.tar\.gz", "dir": r"(?P<lang>[a-z]{2,3})/(?P<split>train|dev|test)",
              "flat": r"(?P<lang>[a-z]{2,3})-(?P<split>train|dev|test)"},
    run=_run,
)
