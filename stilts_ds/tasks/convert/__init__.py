"""Official distributions -> local task files: what `stilts-ds convert` runs.

    stilts-ds convert --list                                  # what each converter reads and writes
    stilts-ds convert xquad download/xquad --data-dir data    # then: stilts-ds prepare --task xquad --data-dir data

    from stilts_ds.tasks.convert import convert
    convert("udpos", Path("ud-treebanks-v2.5"), Path("data")).written   # [data/udpos/test.af.jsonl, ...]

The name a user types is a task name; each converter finds the official files under SOURCE
(a file, or the unpacked distribution, searched recursively) by their official names and
writes ``<data_dir>/<task>/<split>[.<lang>].jsonl`` in the task's row schema, the files
``--data-dir`` and ``data.local_tasks`` read. One module per official format:

* ``squad``: SQuAD-format JSON (squad_v1, squad_v2, xquad, mlqa, tydiqa)
* ``conllu``: Universal Dependencies CoNLL-U (udpos)
* ``panx``: PAN-X / WikiANN token files (panx)
* ``tatoeba``: LASER Tatoeba line-aligned pairs (tatoeba)
* ``xnli``, ``pawsx``: the XNLI and PAWS-X TSV files
* ``xcopa``: XCOPA / COPA JSON lines
* ``bucc``, ``lareqa``, ``mewslix``: BUCC 2018, XQuAD-R, Mewsli-X

Every output of one conversion is staged beside its target and renamed into place at the end
(``common.Output``): bad input raises a ``StiltsError`` naming file:line and leaves the data
directory as it was.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from stilts_ds import atomic
from stilts_ds.errors import StiltsError
from stilts_ds.tasks.convert import bucc, conllu, lareqa, mewslix, panx, pawsx, squad, tatoeba, xcopa, xnli
from stilts_ds.tasks.convert.common import Converter, Output, find

CONVERTERS: dict[str, Converter] = {c.name: c for c in [
    *squad.CONVERTERS, conllu.CONVERTER, panx.CONVERTER, tatoeba.CONVERTER, xnli.CONVERTER, pawsx.CONVERTER,
    xcopa.CONVERTER, bucc.CONVERTER, lareqa.CONVERTER, mewslix.CONVERTER,
]}


@dataclass(frozen=True)
class Conversion:
    """What one conversion did: the files written (in order) and notes on what it left out."""

    name: str
    written: list[Path]
    notes: list[str]


def get_converter(name: str) -> Converter:
    if name in CONVERTERS:
        return CONVERTERS[name]
    close = difflib.get_close_matches(name, CONVERTERS, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise StiltsError(f"no converter for {name!r}.{hint} Converters: {', '.join(CONVERTERS)} "
                      "(`stilts-ds convert --list` shows what each reads)")


def convert(name: str, source: Path | str, data_dir: Path | str) -> Conversion:
    """Convert the official files of ``name`` under ``source`` into ``data_dir``: every file or none."""
    converter = get_converter(name)
    # A converter writes <data_dir>/<its name>/: files there are earlier outputs, not official ones
    # (unless SOURCE itself lies there).
    outputs = Path(data_dir) / name
    inside = Path(source).resolve().is_relative_to(outputs.resolve())
    found = find(Path(source), converter.patterns, what=converter.what, looked_for=converter.reads,
                 skip_dirs=converter.skip_dirs, exclude=None if inside else outputs)
    out = Output(Path(data_dir))
    with atomic.explains_full_disk(outputs):  # names the folder and the space left; nothing half-written stays
        try:
            converter.run(found, out)
            written = out.commit()
        except BaseException:
            out.abort()
            raise
    if not written:
        raise StiltsError(f"{source}: nothing to write for {name}: "
                          + ("; ".join(out.notes) or "the files found hold no rows"))
    return Conversion(name, written, out.notes)


def converter_rows() -> list[dict]:
    """One row per converter, for `stilts-ds convert --list`."""
    return [{"name": c.name, "distribution": c.what, "reads": list(c.reads), "writes": list(c.writes),
             "get": c.get} for c in CONVERTERS.values()]
