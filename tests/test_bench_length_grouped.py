"""tools/bench_length_grouped.py runs end to end on the CPU (the real training loop, random and
length-grouped batches) and prints sane figures; timings are not judged, only that grouping
pads less and the numbers add up.

    .venv/bin/python -m pytest -q -p no:cacheprovider tests/test_bench_length_grouped.py
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINE = re.compile(r"^(random|grouped)\s+padding share\s+([\d.]+)%\s+useful tokens/s\s+([\d,]+)\s+step\s+([\d.]+) ms"
                  r"\s+tokens ([\d,]+) of ([\d,]+) computed$", re.MULTILINE)


def _number(text: str) -> float:
    return float(text.replace(",", ""))


def test_length_grouped_bench_pads_less_than_random_batches():
    cmd = [sys.executable, str(ROOT / "tools" / "bench_length_grouped.py"), "--steps", "4", "--warmup", "1",
           "--micro-batch", "8", "--max-length", "64", "--median-length", "12", "--min-length", "4", "--rounds", "1"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    runs = {m[1]: m for m in LINE.finditer(out.stdout)}
    assert set(runs) == {"random", "grouped"}, out.stdout
    for m in runs.values():
        share, tok_s, step_ms = float(m[2]), _number(m[3]), float(m[4])
        useful, computed = _number(m[5]), _number(m[6])
        assert 0 <= share < 100 and tok_s > 0 and step_ms > 0
        assert 0 < useful <= computed
        assert abs(share - 100 * (1 - useful / computed)) < 0.06  # the share is what the counts say
    # One epoch of the same rows in both runs: the same real tokens, fewer computed when grouped.
    assert _number(runs["random"][5]) == _number(runs["grouped"][5])
    assert float(runs["grouped"][2]) < float(runs["random"][2])
    assert _number(runs["grouped"][6]) < _number(runs["random"][6])
    ratio = re.search(r"grouped / random: useful tokens/s x([\d.]+), tokens computed x([\d.]+)", out.stdout)
    assert ratio and float(ratio[1]) > 0 and 0 < float(ratio[2]) < 1, out.stdout
    assert "40 rows (one epoch per run)" in out.stdout  # (1 + 4) steps x 8 rows
