"""Report tables, Markdown and CSV, written one way everywhere.

    from stilts_ds.tables import MISSING, fmt_number, markdown_table, write_csv

    lines = markdown_table(["engine", "samples/s"], [[r["engine"], fmt_number(r["thr"], ",.1f")] for r in rows],
                           align="lr")
    write_csv(out_dir / "bench.csv", rows, columns)     # atomically, through stilts_ds.atomic

Every report of stilts-ds (the bench, the scaling study, the trade-off report, the arms
comparison, the communication model) builds its tables here, so a cell means the same in
all of them:

* **Numbers** go through ``fmt_number(value, spec)``: ``None`` is ``MISSING`` ("–"), any
  other value is ``format(value, spec)``, and a value the spec does not fit (text, a float
  under an integer spec) is shown as ``str(value)`` rather than failing the whole report.
  NaN and infinity print as ``nan`` / ``inf``: a diverged measurement is not a missing one.
* **Markdown cells** go through ``md_cell``: ``None`` is ``MISSING``; every run of whitespace
  (newlines included: a newline would end the table row) becomes one space; ``|`` becomes
  ``\\|`` (otherwise it starts a new column). ``markdown_table`` applies it to every header
  and body cell, so callers pass raw values, never escaped text (that would escape twice);
  ``shorten`` cuts long text (tracebacks) before it goes in.
* **CSV** goes through the csv module (quoting commas, quotes and newlines inside cells),
  ``\\n`` line ends, ``None`` as an empty cell, lists and dicts as JSON, UTF-8.

Near the bottom of the layer table (docs/architecture.md): of stilts_ds it imports only ``atomic``.
"""
from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from stilts_ds.atomic import write_atomic

MISSING = "–"  # a value that was not measured or does not apply


def fmt_number(value: Any, spec: str = ".1f") -> str:
    """``value`` formatted with ``spec`` (``",.1f"``, ``".2e"``, ``".0%"``, ``"d"``); see the
    module docstring for None, NaN and values the spec does not fit."""
    if value is None:
        return MISSING
    try:
        return format(value, spec)
    except (TypeError, ValueError):
        # e.g. a batch size that arrived as a float or a string: show it rather than fail.
        return str(value)


def fmt_range(low: Any, high: Any, spec: str = ".1f") -> str:
    """``"low .. high"`` (a predicted bracket), each through ``fmt_number``; ``MISSING`` when
    neither bound is known."""
    if low is None and high is None:
        return MISSING
    return f"{fmt_number(low, spec)} .. {fmt_number(high, spec)}"


def shorten(value: Any, limit: int) -> str | None:
    """``value`` as one line (whitespace runs collapsed) of at most ``limit`` characters, cut
    with "…"; None stays None. Not escaped: pass it to ``markdown_table`` as a raw value."""
    if value is None:
        return None
    text = " ".join(str(value).split())
    return text[: limit - 1] + "…" if len(text) > limit else text


def md_cell(value: Any) -> str:
    """One Markdown table cell (module docstring)."""
    if value is None:
        return MISSING
    return " ".join(str(value).split()).replace("|", "\\|")


def _row(cells: Iterable[Any]) -> str:
    # An empty cell is "| |", not "|  |": the arms table's blank corner cell reads that way.
    return "|" + "|".join(f" {c} " if c else " " for c in (md_cell(v) for v in cells)) + "|"


def markdown_table(header: Sequence[Any], rows: Iterable[Sequence[Any]], align: str = "") -> list[str]:
    """The lines of a Markdown table. ``align``: one letter per column, ``"r"`` right-aligns
    (numbers), anything else or a missing letter leaves the column left-aligned."""
    rule = "|" + "|".join("---:" if align[i:i + 1] == "r" else "---" for i in range(len(header))) + "|"
    return [_row(header), rule, *(_row(r) for r in rows)]


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value)
    return value


def csv_text(rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """A header line of ``columns``, then one line per row (a key a row lacks is an empty cell;
    keys not in ``columns`` are left out)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for r in rows:
        writer.writerow([_csv_value(r.get(c)) for c in columns])
    return buf.getvalue()


def write_csv(path: str | os.PathLike, rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> Path:
    """``csv_text`` written atomically to ``path`` (UTF-8); returns the path."""
    return write_atomic(path, csv_text(rows, columns))
