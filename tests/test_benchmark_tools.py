"""The benchmark scripts in tools/ run end to end on the CPU (their GPU figures are taken on a
GPU machine; see docs/benchmarks.md). Numbers are not judged here, only that they are sane.

    .venv/bin/python -m pytest -q tests/test_benchmark_tools.py
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_train_throughput_tool_reports_a_positive_rate_and_mfu():
    # A handful of steps used to give negative rates when the tool subtracted a warm-up run;
    # it now reads the worker's per-step meter and leaves the warm-up steps out.
    cmd = [sys.executable, str(ROOT / "tools" / "bench_train_throughput.py"), "--preset", "tiny", "--precision", "fp32",
           "--steps", "3", "--warmup", "2", "--micro-batch", "4", "--seq-len", "32", "--peak-tflops", "0.001"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    tokens = re.search(r"tokens/s ([\d,]+)\s+samples/s ([\d,.]+)\s+step ([\d.]+) ms", out.stdout)
    # A peak of 1 GFLOP/s: the tiny model's MFU stays far from 0.0% even on a busy 2-core machine
    # (against 1 TFLOP/s it rounded to 0.0% when the CI run shared the cores).
    mfu = re.search(r"MFU ([\d.]+)% of 0.001 TFLOP/s", out.stdout)
    assert tokens and mfu, out.stdout
    tok_s, samples_s = float(tokens[1].replace(",", "")), float(tokens[2].replace(",", ""))
    assert tok_s > 0 and abs(samples_s - tok_s / 32) < 1.0 and float(tokens[3]) > 0
    assert float(mfu[1]) > 0


# The GPU machine has torch and transformers but no ray or datasets (tools/gpu_session.sh):
# the bench and the training-throughput tool must run with neither importable.
_WITHOUT_RAY_AND_DATASETS = """
import runpy, sys
sys.modules["ray"] = None
sys.modules["datasets"] = None
target, sys.argv = sys.argv[1], sys.argv[1:]
if target.endswith(".py"):
    runpy.run_path(target, run_name="__main__")
else:
    runpy.run_module(target, run_name="__main__", alter_sys=True)
"""


def _run_without_ray_and_datasets(*args):
    out = subprocess.run([sys.executable, "-c", _WITHOUT_RAY_AND_DATASETS, *args], capture_output=True, text=True,
                         timeout=600, cwd=ROOT)
    assert out.returncode == 0, (out.stdout[-2000:], out.stderr[-3000:])
    return out


def test_gpu_session_commands_need_neither_ray_nor_datasets(tmp_path):
    _run_without_ray_and_datasets(
        "stilts_ds.cli", "bench", "--preset", "tiny", "--engines", "torch-sdpa,ds,ds-kernel", "--precisions", "fp32",
        "--batch-sizes", "1,2", "--seq-len", "16", "--lengths", "fixed", "--rows", "16", "--no-ray",
        "--output", str(tmp_path / "b"))
    rows = [line for line in (tmp_path / "b" / "bench.jsonl").read_text().splitlines() if line]
    assert rows and any('"ds-kernel"' in r for r in rows)
    # The real length distribution is featurized from the bundled data there too.
    _run_without_ray_and_datasets(
        "stilts_ds.cli", "bench", "--preset", "tiny", "--engines", "unpadded", "--precisions", "fp32",
        "--batch-sizes", "4", "--seq-len", "32", "--lengths", "real:xnli/zh", "--no-ray", "--output", str(tmp_path / "r"))
    assert '"unpadded"' in (tmp_path / "r" / "rows.jsonl").read_text()
    out = _run_without_ray_and_datasets(str(ROOT / "tools" / "bench_train_throughput.py"), "--preset", "tiny",
                                        "--precision", "fp32", "--steps", "2", "--warmup", "1", "--micro-batch", "2",
                                        "--seq-len", "16")
    assert "MFU" in out.stdout
    script = ROOT / "tools" / "gpu_session.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    assert "--no-ray" in script.read_text()


def test_gpu_session_smoke_run_on_the_cpu(tmp_path):
    """`bash tools/gpu_session.sh --smoke`: the GPU run's script, every step, on the CPU with the
    tiny preset. Each step records its outcome in steps.jsonl and its rows as they are measured."""
    out = tmp_path / "session"
    run = subprocess.run(["bash", str(ROOT / "tools" / "gpu_session.sh"), "--smoke", "--out", str(out)],
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert run.returncode == 0, (run.stdout[-3000:], run.stderr[-3000:])
    steps = {s["step"]: s for s in map(json.loads, (out / "steps.jsonl").read_text().splitlines())}
    assert list(steps) == ["ds-op", "ds-kernel", "train", "parity", "l128", "compile", "real", "l512"]
    # No CUDA here: the op check says so and ds-kernel leaves the sweep with that reason.
    assert "need CUDA" in steps["ds-kernel"]["why"] and json.loads((out / "ds_op.json").read_text())["ok"] is False
    for name in ("train", "parity", "l128", "compile", "real", "l512"):
        assert steps[name]["status"] == "ok", steps[name]
    train = json.loads((out / "train.jsonl").read_text())
    assert train["tokens_per_s"] > 0 and train["peak_tflops"] == 0.001 and train["matmul_tflops"] == 800
    for bench, engines in (("bench-l128", {"torch-sdpa", "unpadded"}), ("bench-compile", {"torch-compile-static"}),
                           ("bench-real", {"torch-sdpa", "unpadded"}), ("bench-l512", {"torch-sdpa", "unpadded"})):
        rows = [json.loads(line) for line in (out / bench / "rows.jsonl").read_text().splitlines()]
        assert {r["engine"] for r in rows} == engines and all(r["status"] == "ok" for r in rows), bench
        assert all(r["useful_tokens_per_s"] > 0 for r in rows), bench
    real = [json.loads(line) for line in (out / "bench-real" / "rows.jsonl").read_text().splitlines()]
    assert {r["workload"] for r in real} == {"real:xnli/hi"}
    assert {r["padding_share"] > 0 for r in real if r["engine"] == "torch-sdpa" and r["batch_size"] == 4} == {True}
    assert {r["padding_share"] for r in real if r["engine"] == "unpadded"} == {0.0}


def test_gpu_session_skips_a_step_the_budget_cannot_hold(tmp_path):
    # A budget shorter than every time box: nothing is started, every step says why, and the
    # script still ends cleanly with what it has.
    out = tmp_path / "session"
    run = subprocess.run(["bash", str(ROOT / "tools" / "gpu_session.sh"), "--smoke", "--out", str(out), "--budget", "5"],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-2000:]
    steps = [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines()]
    skipped = [s for s in steps if s["status"] == "skipped" and s["step"] != "ds-kernel"]
    assert [s["step"] for s in skipped] == ["ds-op", "train", "parity", "l128", "compile", "real", "l512"]
    assert all("left of the 5s budget" in s["why"] for s in skipped)
