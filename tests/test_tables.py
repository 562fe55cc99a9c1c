"""stilts_ds.tables: the one number formatter, Markdown cells that cannot break their table,
and CSV that reads back exactly what was written."""
import csv
import math
import re

import pytest

from stilts_ds.tables import (
    MISSING,
    csv_text,
    fmt_number,
    fmt_range,
    markdown_table,
    md_cell,
    shorten,
    write_csv,
)

UNESCAPED_PIPE = re.compile(r"(?<!\\)\|")


def _columns(line: str) -> int:
    """Columns a Markdown renderer sees in one table line."""
    return len(UNESCAPED_PIPE.findall(line)) - 1


# ------------------------------------------------------------------------ numbers

@pytest.mark.parametrize("value, spec, expected", [
    (1234.56, ",.1f", "1,234.6"),
    (1234.56, ",.0f", "1,235"),
    (0.756, ".0%", "76%"),
    (3.2e-06, ".2e", "3.20e-06"),
    (8, "d", "8"),
    (12.345, ".1f", "12.3"),
    (None, ".1f", MISSING),
    (8.0, "d", "8.0"),  # a float where an int was expected: shown, not a crash
    ("n/a", ".2f", "n/a"),
    (float("nan"), ",.1f", "nan"),  # diverged is not missing
    (float("inf"), ".2e", "inf"),
    (float("nan"), "d", "nan"),
])
def test_fmt_number(value, spec, expected):
    assert fmt_number(value, spec) == expected


def test_fmt_number_default_and_range():
    assert fmt_number(70.0) == "70.0"
    assert fmt_range(0.5121, 0.61, ".3f") == "0.512 .. 0.610"
    assert fmt_range(0.5, 1.0, ".0%") == "50% .. 100%"
    assert fmt_range(None, None) == MISSING
    assert fmt_range(None, 2.0) == f"{MISSING} .. 2.0"


# ------------------------------------------------------------------------ Markdown

def test_md_cell_escapes_pipes_and_joins_lines():
    assert md_cell("max |diff| 0.31 | rtol") == "max \\|diff\\| 0.31 \\| rtol"
    assert md_cell("Traceback:\n  File x\r\n\tValueError  boom") == "Traceback: File x ValueError boom"
    assert md_cell(None) == MISSING
    assert md_cell("") == ""
    assert md_cell(3) == "3"
    assert md_cell("中文 | 日本語") == "中文 \\| 日本語"


def test_markdown_table_keeps_its_columns_whatever_the_cells_hold():
    header = ["arm", "a|b", "note"]
    rows = [["stil|ts", 1.5, "line one\nline two | three"], [None, "", "**bold**"], ["中文", "x||y", "\\"]]
    lines = markdown_table(header, rows, align="lr")
    assert lines[:2] == ["| arm | a\\|b | note |", "|---|---:|---|"]
    assert lines[2] == "| stil\\|ts | 1.5 | line one line two \\| three |"
    assert lines[3] == f"| {MISSING} | | **bold** |"  # an empty cell stays empty
    assert len(lines) == 2 + len(rows)
    assert all(_columns(line) == len(header) for line in lines)


def test_shorten_cuts_before_the_table_escapes_once():
    reason = "parity: max |diff| 0.31 > atol 0.05\n" + "x" * 500
    cut = shorten(reason, 40)
    assert len(cut) == 40 and cut.endswith("…") and "\n" not in cut
    assert shorten(None, 10) is None and shorten("short", 10) == "short"
    (line,) = markdown_table(["reason"], [[cut]])[2:]
    assert line.count("\\|") == 2 and "\\\\|" not in line  # escaped once, not twice


# ------------------------------------------------------------------------ CSV

ROWS = [
    {"arm": "a,b", "note": 'says "hi"', "text": "line one\nline two", "n": 3, "x": 0.1, "ok": True},
    {"arm": "中文,日本語", "note": "한국어 \"引用\"", "text": "crlf\r\nkept", "n": None, "x": float("nan"), "ok": False},
    {"arm": "lists", "note": ["a", 1], "text": {"k": [1, 2]}},  # n, x, ok missing
]
COLUMNS = ["arm", "note", "text", "n", "x", "ok"]


def test_csv_round_trip(tmp_path):
    path = write_csv(tmp_path / "t.csv", ROWS, COLUMNS)
    assert path == tmp_path / "t.csv"
    assert [p.name for p in tmp_path.iterdir()] == ["t.csv"]  # written atomically: no temporary left
    with open(path, newline="", encoding="utf-8") as f:
        back = list(csv.DictReader(f))
    assert list(back[0]) == COLUMNS
    assert [r["arm"] for r in back] == ["a,b", "中文,日本語", "lists"]
    assert back[0]["note"] == 'says "hi"' and back[1]["note"] == "한국어 \"引用\""
    assert back[0]["text"] == "line one\nline two" and back[1]["text"] == "crlf\r\nkept"
    assert back[0]["n"] == "3" and float(back[0]["x"]) == 0.1 and back[0]["ok"] == "True"
    assert back[1]["n"] == "" and math.isnan(float(back[1]["x"])) and back[1]["ok"] == "False"
    assert back[2]["note"] == '["a", 1]' and back[2]["text"] == '{"k": [1, 2]}'  # lists and dicts as JSON
    assert back[2]["n"] == back[2]["x"] == back[2]["ok"] == ""
    assert path.read_bytes().decode("utf-8") == csv_text(ROWS, COLUMNS)


def test_csv_lines_end_in_newline_and_leave_out_other_keys():
    text = csv_text([{"a": 1, "b": 2, "extra": 3}], ["a", "b"])
    assert text == "a,b\n1,2\n"
    assert csv_text([], ["a"]) == "a\n"
