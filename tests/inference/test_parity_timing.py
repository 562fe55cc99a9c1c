"""The parity gate rejects engines that drift; timing measures only engines that pass."""
import copy

import numpy as np
import pytest
import torch

from stilts_ds.data.prepare import featurize_examples
from stilts_ds.data.sources import load_examples
from stilts_ds.inference import engines as E
from stilts_ds.inference import parity as P
from stilts_ds.inference import timing as T
from stilts_ds.modeling.multitask import HeadSpec, MultiTaskModel
from stilts_ds.modeling.presets import model_config
from stilts_ds.tasks.registry import get_task

REQUIRED_FIELDS = {"engine", "status", "reason", "dtype", "batch_size", "seq_len", "throughput_samples_per_s",
                   "latency_ms_p50", "latency_ms_p90", "latency_ms_p99", "parity_max_abs_diff"}


@pytest.fixture(scope="module")
def model(tokenizer):
    torch.manual_seed(0)
    cfg = model_config("tiny", vocab_size=len(tokenizer))
    return MultiTaskModel.build(cfg, {"xnli": HeadSpec("pair_classification", 3)}).eval()


@pytest.fixture(scope="module")
def batches(tokenizer):
    return P.synthetic_parity_batches(len(tokenizer), batch_size=4, seq_len=16, seed=3)


@pytest.fixture(scope="module")
def reference_out(model, batches):
    return P.reference_outputs(P.reference_engine(model), batches, task="xnli")


@pytest.fixture(scope="module")
def xnli_features(tokenizer):
    spec = get_task("xnli")
    examples = load_examples(spec, "validation", "en")
    return featurize_examples(spec, examples, tokenizer, 64, spec.labels)


# ------------------------------------------------------------------ the gate

def test_engine_with_a_perturbed_weight_fails_parity(model, batches, reference_out):
    bad = copy.deepcopy(model)
    with torch.no_grad():
        query = bad.encoder.encoder.layer[0].attention.self.query.weight
        query.add_(0.5 * torch.randn(query.shape, generator=torch.Generator().manual_seed(0)))
    engine = E.build_engine("torch-eager", bad, "fp32", "cpu")
    report = P.gate(engine, reference_out, batches, task="xnli")
    assert not report.passed
    assert "last_hidden_state" in report.reason and "exceeds" in report.reason
    # Random tiny weights keep attention near uniform, which damps the change: still
    # several times the fp32 tolerance.
    assert report.hidden_max_abs_diff > 2 * P.TOLERANCES["fp32"].atol
    assert engine.status == "failed" and engine.reason.startswith("parity:")
    with pytest.raises(E.EngineUnavailableError, match="failed"):
        engine.forward(batches["padded"], task="xnli")


def _noisy(engine, scale):
    encode = engine._encode_fn
    gen = torch.Generator().manual_seed(1)

    def noisy(inputs):
        hidden = encode(inputs)
        return hidden + scale * torch.randn(hidden.shape, generator=gen).to(hidden.dtype)

    engine._encode_fn = noisy
    return engine


def test_noise_outside_the_precision_tolerance_fails_and_inside_passes(model, batches, reference_out):
    loud = _noisy(E.build_engine("torch-sdpa", model, "fp32", "cpu"), 0.05)
    assert not P.gate(loud, reference_out, batches, task="xnli").passed
    assert loud.status == "failed"
    quiet = _noisy(E.build_engine("torch-sdpa", model, "fp32", "cpu"), 1e-4)
    report = P.gate(quiet, reference_out, batches, task="xnli")
    assert report.passed, report.reason
    assert 0 < report.hidden_max_abs_diff < P.TOLERANCES["fp32"].atol


def test_nan_output_fails(model, batches, reference_out):
    engine = _noisy(E.build_engine("torch-eager", model, "fp32", "cpu"), float("nan"))
    report = P.check_parity(engine, reference_out, batches, task="xnli")
    assert not report.passed and "NaN" in report.reason
    assert engine.status == "ok"  # check_parity only reports; gate() marks


def test_label_rule_forgives_near_ties_not_decisive_flips():
    tol = P.Tolerance(atol=1e-2, rtol=0.0)
    mask = torch.ones(2, 3, dtype=torch.bool)
    hidden = torch.zeros(2, 3, 4)
    ref = {"last_hidden_state": hidden, "logits": torch.tensor([[1.0, 0.995, 0.0], [2.0, 0.0, 0.0]])}
    near_tie = {"last_hidden_state": hidden, "logits": torch.tensor([[0.995, 1.0, 0.0], [2.0, 0.0, 0.0]])}
    res = P.compare_outputs(ref, near_tie, mask, tol)
    assert res["problems"] == [] and res["label_agree"] == 1 and res["decisive_disagreements"] == 0
    flipped = {"last_hidden_state": hidden, "logits": torch.tensor([[1.0, 0.995, 0.0], [0.0, 2.0, 0.0]])}
    res = P.compare_outputs(ref, flipped, mask, P.Tolerance(atol=10.0, rtol=0.0))  # values "within" a huge atol
    assert res["problems"] == []  # a 2.0 margin is a near tie at atol 10
    res = P.compare_outputs(ref, flipped, mask, P.Tolerance(atol=0.5, rtol=0.0))
    assert res["decisive_disagreements"] == 1 and any("predicted labels" in p for p in res["problems"])


def test_hidden_states_compare_over_non_pad_positions_only():
    tol = P.TOLERANCES["fp16"]
    mask = torch.tensor([[1, 1, 0]], dtype=torch.bool)
    ref = {"last_hidden_state": torch.zeros(1, 3, 2)}
    out = {"last_hidden_state": torch.tensor([[[0.0, 0.0], [0.0, 0.0], [9.0, 9.0]]])}  # garbage at padding
    assert P.compare_outputs(ref, out, mask, tol)["problems"] == []
    out["last_hidden_state"][0, 1, 0] = 1.0
    assert P.compare_outputs(ref, out, mask, tol)["problems"]


def test_token_level_heads_pass_and_a_perturbed_head_fails(tokenizer):
    torch.manual_seed(0)
    cfg = model_config("tiny", vocab_size=len(tokenizer))
    model = MultiTaskModel.build(cfg, {"udpos": HeadSpec("tagging", 17), "squad_v1": HeadSpec("span_qa", 2)}).eval()
    batches = P.synthetic_parity_batches(len(tokenizer), batch_size=4, seq_len=16, seed=4)
    reference = P.reference_engine(model)
    for task in ("udpos", "squad_v1"):
        report = P.gate(E.build_engine("torch-sdpa", model, "bf16", "cpu"), reference, batches, task=task)
        assert report.passed, (task, report.reason)
        assert report.logits_max_abs_diff is not None and report.label_agreement is not None
    bad = copy.deepcopy(model)
    with torch.no_grad():
        bad.heads["udpos"].classifier.weight.mul_(-1.0)
    report = P.gate(E.build_engine("torch-eager", bad, "fp32", "cpu"), reference, batches, task="udpos")
    assert not report.passed and "logits" in report.reason and report.hidden_max_abs_diff == 0.0


def test_parity_batches_from_a_task_eval_set(xnli_features):
    b = P.parity_batches_from_features(xnli_features, batch_size=6)
    padded, unpadded = b["padded"]["attention_mask"], b["unpadded"]["attention_mask"]
    assert (padded == 0).any() and padded.shape[0] == 6
    assert (unpadded == 1).all()
    synthetic = P.synthetic_parity_batches(1000, batch_size=4, seq_len=12)
    assert (synthetic["padded"]["attention_mask"] == 0).any() and (synthetic["unpadded"]["attention_mask"] == 1).all()


# ------------------------------------------------------------------ timing

def test_synthetic_workload_is_seeded_and_bounded():
    a = T.Workload.synthetic(64, 1000, 32, seed=7)
    b = T.Workload.synthetic(64, 1000, 32, seed=7)
    c = T.Workload.synthetic(64, 1000, 32, seed=8)
    assert np.array_equal(a.lengths, b.lengths) and not np.array_equal(a.lengths, c.lengths)
    assert a.lengths.min() >= 4 and a.lengths.max() <= 32 and len(set(a.lengths.tolist())) > 3
    fixed = T.Workload.synthetic(8, 1000, 16, distribution="fixed")
    assert set(fixed.lengths.tolist()) == {16}
    batches = a.batches(10)
    assert len(batches) == 7 and batches[-1]["input_ids"].shape[0] == 4
    assert all(bt["input_ids"].shape[1] == int(bt["attention_mask"].sum(1).max()) for bt in batches)  # trimmed


def test_latency_needs_at_least_100_requests(model):
    engine = E.build_engine("torch-eager", model, "fp32", "cpu")
    with pytest.raises(ValueError, match="at least 100"):
        T.measure_latency(engine, T.Workload.synthetic(4, 1000, 8), 1, requests=50)


def test_benchmark_on_a_task_eval_set(model, xnli_features):
    workload = T.Workload.from_features(xnli_features, name="xnli/validation.en", task="xnli")
    results = T.benchmark_engines(model, ["torch-eager", "ds", "ds-kernel"], ["fp32"], device="cpu",
                                  workload=workload, batch_sizes=[4], serving_batch_size=8,
                                  latency_requests=100, warmup_iters=1, parity_batch_size=4)
    rows = [r.to_dict() for r in results]
    assert all(REQUIRED_FIELDS <= set(r) for r in rows)
    timed = [r for r in rows if r["status"] == "ok"]
    runnable = [e for e in ("torch-eager", "ds") if E.availability(e, "fp32", "cpu")[0]]  # ds: CPU accelerator only
    assert {(r["engine"], r["batch_size"]) for r in timed} == {(e, b) for e in runnable for b in (1, 4, 8)}
    for r in timed:
        assert r["throughput_samples_per_s"] > 0
        assert r["dtype"] == "fp32" and r["seq_len"] == int(workload.lengths.max())
        assert r["parity_max_abs_diff"] is not None and r["parity_max_abs_diff"] < 1e-3
        if r["batch_size"] in (1, 8):
            assert 0 < r["latency_ms_p50"] <= r["latency_ms_p90"] <= r["latency_ms_p99"]
            assert r["latency_requests"] == 100
        else:
            assert r["latency_ms_p50"] is None
    (kernel,) = [r for r in rows if r["engine"] == "ds-kernel"]
    assert kernel["status"] == "unavailable" and kernel["reason"] == "DeepSpeed inference kernels need CUDA"
    assert kernel["throughput_samples_per_s"] is None and kernel["batch_size"] is None


def test_engine_failing_parity_is_not_timed(model, tokenizer):
    workload = T.Workload.synthetic(16, len(tokenizer), 16, seed=2)
    results = T.benchmark_engines(model, ["torch-sdpa"], ["bf16"], device="cpu", workload=workload,
                                  batch_sizes=[4], serving_batch_size=4, warmup_iters=1, parity_batch_size=4,
                                  tolerances={"bf16": P.Tolerance(atol=1e-6, rtol=0.0)})
    (row,) = results
    assert row.status == "failed" and row.reason.startswith("parity:")
    assert row.parity_max_abs_diff > 1e-6 and row.throughput_samples_per_s is None and row.latency_ms_p50 is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_benchmark_on_gpu_with_cuda_events(tokenizer):
    torch.manual_seed(0)
    cfg = model_config("tiny", vocab_size=len(tokenizer))
    cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size = 256, 4, 1024
    model = MultiTaskModel.build(cfg, {"xnli": HeadSpec("pair_classification", 3)}).eval()
    workload = T.Workload.synthetic(256, len(tokenizer), 128, seed=0)
    results = T.benchmark_engines(model, ["ds-kernel", "ds", "torch-sdpa", "torch-compile"], ["fp16"], device="cuda",
                                  workload=workload, batch_sizes=[1, 32], serving_batch_size=32)
    for r in results:
        print(r.engine, r.precision, r.batch_size, r.status, r.reason, r.throughput_samples_per_s,
              r.latency_ms_p50, r.latency_ms_p99, r.parity_max_abs_diff, r.replaced)
    assert all(r.status == "ok" for r in results), [(r.engine, r.reason) for r in results if r.status != "ok"]
    assert {r.engine for r in results} == {"ds-kernel", "ds", "torch-sdpa", "torch-compile"}
    for r in results:
        assert r.throughput_samples_per_s > 0 and r.latency_ms_p50 <= r.latency_ms_p90 <= r.latency_ms_p99
