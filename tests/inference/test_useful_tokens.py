"""What a padding-free engine saves shows in the bench: useful (non-padding) tokens/s and the
padding share beside samples/s, real length distributions (`--lengths real:TASK/LANG`), and
rows appended as they are measured (a run cut off by a time limit keeps them).

    .venv/bin/python -m pytest -q tests/inference/test_useful_tokens.py
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from transformers import AutoModel

from stilts_ds.cli import main
from stilts_ds.inference import parity as P
from stilts_ds.inference.engines import build_engine
from stilts_ds.inference.timing import Workload, time_engine
from stilts_ds.modeling.presets import model_config
from stilts_ds.tasks.features import Features


def _workload(lengths, width=8):
    n = len(lengths)
    ids = np.full((n, width), 1, dtype=np.int32)
    mask = np.zeros((n, width), dtype=np.int8)
    for i, k in enumerate(lengths):
        ids[i, :k], mask[i, :k] = 7, 1
    feats = Features("pair_classification", {"input_ids": ids, "attention_mask": mask,
                                             "labels": np.full(n, -100), "lengths": np.asarray(lengths, np.int32)},
                     np.array([f"r{i}" for i in range(n)], dtype=object))
    return Workload.from_features(feats, name="known")


def test_padding_share_known_answer():
    w = _workload([2, 4, 3, 3])
    # Batches of 2: [2, 4] padded to 4 (8 tokens), [3, 3] to 3 (6): 12 real of 14.
    assert w.padding_share(2) == pytest.approx(1 - 12 / 14)
    assert w.padding_share(1) == 0.0
    # An engine that pads rows to 4 and tokens to 8 computes 32 + 32 for the same 12.
    assert w.padding_share(2, lambda rows, tokens: (4, 8)) == pytest.approx(1 - 12 / 64)


@pytest.fixture(scope="module")
def model(tokenizer):
    torch.manual_seed(0)
    return P.sharpen(AutoModel.from_config(model_config("tiny", vocab_size=len(tokenizer))).eval())


def test_rows_carry_useful_tokens_and_each_engines_own_padding(model, tokenizer):
    workload = Workload.synthetic(24, len(tokenizer), 40, seed=2)  # log-normal lengths: padded batches
    mean_tokens = float(workload.lengths.mean())
    shares = {}
    for name in ("torch-sdpa", "unpadded"):
        engine = build_engine(name, model, "fp32", "cpu")
        seen = []
        try:
            rows = time_engine(engine, workload, [4], 4, on_row=seen.append, warmup_iters=1)
        finally:
            engine.close()
        assert [r.batch_size for r in seen] == [r.batch_size for r in rows] == [1, 4]
        for r in rows:
            assert r.useful_tokens_per_s == pytest.approx(r.throughput_samples_per_s * mean_tokens)
        shares[name] = rows[-1].padding_share
    assert shares["unpadded"] == 0.0
    assert 0 < shares["torch-sdpa"] == pytest.approx(workload.padding_share(4))


def test_static_buckets_count_the_padding_they_add(model):
    # torch-compile-static pads rows to a power of two and tokens to a bucket: its padding
    # share counts that, so its useful tokens/s is not flattered.
    engine = build_engine("torch-compile-static", model, "fp32", "cpu", compile_options={"backend": "eager"})
    try:
        assert engine.computed_shape(3, 20) == (4, 32) and engine.computed_shape(8, 64) == (8, 64)
        w = _workload([3, 5, 2], width=8)
        assert w.padding_share(3, engine.computed_shape) == pytest.approx(1 - 10 / (4 * 16))
    finally:
        engine.close()
    assert build_engine("torch-sdpa", model, "fp32", "cpu").computed_shape(3, 20) == (3, 20)


def test_bench_times_a_real_length_distribution_and_appends_rows(tmp_path):
    out = tmp_path / "b"
    r = CliRunner().invoke(main, ["bench", "--preset", "tiny", "--engines", "torch-sdpa,unpadded", "--precisions", "fp32",
                                  "--batch-sizes", "4", "--seq-len", "64", "--lengths", "real:xnli/hi", "--no-ray",
                                  "--output", str(out)])
    assert r.exit_code == 0, r.output
    logged = [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines()]
    final = [json.loads(line) for line in (out / "bench.jsonl").read_text().splitlines()]
    assert len(logged) == 4 and {x["engine"] for x in logged} == {"torch-sdpa", "unpadded"}
    assert all(x["workload"] == "real:xnli/hi" and x["lang"] == "hi" and x["task"] is None for x in logged)
    # The Hindi rows of the bundled XNLI sample, tokenized: lengths vary, so sdpa pads and unpadded does not.
    sdpa = next(x for x in logged if x["engine"] == "torch-sdpa" and x["batch_size"] == 4)
    assert sdpa["padding_share"] > 0 and sdpa["tokens_per_example"] == pytest.approx(sdpa["mean_seq_len"])
    assert {x["useful_tokens_per_s"] > 0 for x in logged} == {True}
    assert {(x["engine"], x["batch_size"]) for x in final if x["node_id"] == "local"} == \
        {(x["engine"], x["batch_size"]) for x in logged}
    assert "useful tok/s" in (out / "bench.md").read_text()


@pytest.mark.parametrize("lengths, message", [
    ("real:xnli", "real:TASK/LANG"),
    ("gamma", "real:TASK/LANG"),
    ("real:nosuchtask/en", "nosuchtask"),
])
def test_bench_refuses_bad_lengths(tmp_path, lengths, message):
    r = CliRunner().invoke(main, ["bench", "--preset", "tiny", "--engines", "torch-sdpa", "--lengths", lengths,
                                  "--no-ray", "--output", str(tmp_path)])
    assert r.exit_code != 0 and message in r.output
    assert not (tmp_path / "bench.jsonl").exists()
