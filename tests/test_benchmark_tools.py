"""The benchmark scripts in tools/ run end to end on the CPU (their GPU figures are taken on a
GPU machine; see docs/benchmarks.md). Numbers are not judged here, only that they are sane.

    .venv/bin/python -m pytest -q tests/test_benchmark_tools.py
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_train_throughput_tool_reports_a_positive_rate_and_mfu():
    # A handful of steps used to give negative rates when the tool subtracted a warm-up run;
    # it now reads the worker's per-step meter and leaves the warm-up steps out.
    cmd = [sys.executable, str(ROOT / "tools" / "bench_train_throughput.py"), "--preset", "tiny", "--precision", "fp32",
           "--steps", "3", "--warmup", "2", "--micro-batch", "4", "--seq-len", "32", "--peak-tflops", "1"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    tokens = re.search(r"tokens/s ([\d,]+)\s+samples/s ([\d,.]+)\s+step ([\d.]+) ms", out.stdout)
    mfu = re.search(r"MFU ([\d.]+)% of 1 TFLOP/s", out.stdout)
    assert tokens and mfu, out.stdout
    tok_s, samples_s = float(tokens[1].replace(",", "")), float(tokens[2].replace(",", ""))
    assert tok_s > 0 and abs(samples_s - tok_s / 32) < 1.0 and float(tokens[3]) > 0
    assert float(mfu[1]) > 0
