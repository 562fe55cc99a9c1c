"""The parity gate can see a wrong engine: sharpened weights and a padded batch always.

At the std-0.02 initialisation of a random-weight preset every sublayer adds little to the
residual stream and attention is nearly uniform, so an engine with a wrong softmax scale or
the wrong activation passes the gate. ``parity.sharpen`` redraws the layers' weights at unit
gain (Q/K a little more), and the same wrong engines fail; correct engines at lower precision,
and the tanh GELU DeepSpeed's kernels use, still pass. A fixed-length workload has no padding
in its own batches, so the gate adds a synthetic padded one: an engine that ignores the
attention mask fails it.

    .venv/bin/python -m pytest -q tests/inference/test_parity_sharp.py
"""
from __future__ import annotations

import copy

import pytest
import torch
from transformers import AutoModel
from transformers.activations import ACT2FN

from stilts_ds.inference import parity as P
from stilts_ds.inference.engines import Engine, build_engine
from stilts_ds.inference.timing import Workload
from stilts_ds.modeling.presets import model_config


@pytest.fixture(scope="module")
def config(tokenizer):
    return model_config("tiny", vocab_size=len(tokenizer))


@pytest.fixture(scope="module")
def plain(config):
    torch.manual_seed(0)
    return AutoModel.from_config(config).eval()


@pytest.fixture(scope="module")
def sharp(plain):
    return P.sharpen(copy.deepcopy(plain))


@pytest.fixture(scope="module")
def batches(tokenizer):
    return P.synthetic_parity_batches(len(tokenizer), batch_size=8, seq_len=64, seed=0)


def _wrong_scale(model):
    """Attention logits divided by the head size instead of its square root."""
    model = copy.deepcopy(model)
    for layer in model.encoder.layer:
        layer.attention.self.scaling = layer.attention.self.attention_head_size ** -1.0
    return model


def _activation(model, name):
    model = copy.deepcopy(model)
    for layer in model.encoder.layer:
        layer.intermediate.intermediate_act_fn = ACT2FN[name]
    return model


def _verdict(model, wrong, batches, precision):
    reference = P.reference_outputs(P.reference_engine(model), batches)
    engine = build_engine("torch-eager", wrong, "fp32")
    return P.check_parity(engine, reference, batches, tolerance=P.TOLERANCES[precision])


@pytest.mark.parametrize("wrong, precision", [
    (_wrong_scale, "bf16"),                          # a wrong softmax scale, judged at the loosest tolerance
    (lambda m: _activation(m, "relu"), "bf16"),      # ReLU for GELU
    (lambda m: _activation(m, "quick_gelu"), "fp32"),  # the sigmoid GELU approximation
], ids=["scale-1/d", "relu", "quick-gelu"])
def test_plain_random_weights_hide_a_wrong_engine_and_sharpened_ones_do_not(plain, sharp, batches, wrong, precision):
    hidden = _verdict(plain, wrong(plain), batches, precision)
    assert hidden.passed, "the plain random model was expected to hide this (the reason for sharpen)"
    caught = _verdict(sharp, wrong(sharp), batches, precision)
    assert not caught.passed and "last_hidden_state" in caught.reason
    assert caught.hidden_max_abs_diff > 5 * hidden.hidden_max_abs_diff


def test_sharpened_weights_still_pass_correct_engines(sharp, batches):
    # DeepSpeed's kernels compute GELU with the tanh approximation: inside the fp32 budget.
    assert _verdict(sharp, _activation(sharp, "gelu_new"), batches, "fp32").passed
    reference = P.reference_outputs(P.reference_engine(sharp), batches)
    for name, precision in (("torch-sdpa", "fp32"), ("torch-sdpa", "bf16"), ("torch-eager", "fp16")):
        report = P.check_parity(build_engine(name, sharp, precision), reference, batches)
        assert report.passed, (name, precision, report.reason)


def test_sharpen_redraws_layer_weights_only(plain):
    model = P.sharpen(copy.deepcopy(plain), seed=3)
    layer = model.encoder.layer[0]
    fan_in = layer.attention.self.query.weight.shape[1]
    assert abs(float(layer.attention.self.value.weight.detach().std()) * fan_in ** 0.5 - 1.0) < 0.1
    assert abs(float(layer.attention.self.query.weight.detach().std()) * fan_in ** 0.5 - P.SHARP_QK_GAIN) < 0.15
    assert torch.equal(model.embeddings.word_embeddings.weight, plain.embeddings.word_embeddings.weight)
    assert torch.equal(layer.output.LayerNorm.weight, plain.encoder.layer[0].output.LayerNorm.weight)
    again = P.sharpen(copy.deepcopy(plain), seed=3)
    assert torch.equal(again.encoder.layer[1].output.dense.weight, model.encoder.layer[1].output.dense.weight)


def _mask_blind(model) -> Engine:
    """An engine that drops the attention mask: right on unpadded rows, wrong on padded ones."""
    def encode(inputs):
        return model(input_ids=inputs["input_ids"], return_dict=True).last_hidden_state
    return Engine("mask-blind", "fp32", torch.device("cpu"), encode=encode, vocab_size=model.config.vocab_size)


def test_a_fixed_length_workload_still_tests_padding(sharp, config):
    workload = Workload.synthetic(16, config.vocab_size, 32, distribution="fixed", seed=1)
    own = workload.parity_batches(8)
    assert all(bool(b["attention_mask"].all()) for b in own.values())  # no padding of its own
    reference = P.reference_engine(sharp)
    assert P.check_parity(_mask_blind(sharp), reference, own).passed  # so a mask-blind engine passes

    gated = workload.parity_batches(8, vocab_size=config.vocab_size)
    padded = gated[P.SYNTHETIC_PADDED]
    assert padded["input_ids"].shape == (8, 32) and not bool(padded["attention_mask"].all())
    report = P.check_parity(_mask_blind(sharp), reference, gated)
    assert not report.passed and P.SYNTHETIC_PADDED in report.reason


def test_the_padded_batch_runs_encoder_only_beside_a_task(tokenizer):
    # The synthetic batch goes through the encoder alone, so a multiple-choice task's gate
    # ([B, C, L] rows for its head) can carry a [B, L] batch.
    from stilts_ds.modeling.multitask import HeadSpec, MultiTaskModel

    cfg = model_config("tiny", vocab_size=len(tokenizer))
    torch.manual_seed(0)
    model = P.sharpen(MultiTaskModel.build(cfg, {"xcopa": HeadSpec("multiple_choice", 2)}).eval())
    choices = P.synthetic_parity_batches(len(tokenizer), batch_size=4, seq_len=16, seed=2)["padded"]
    mc = {k: v.reshape(2, 2, 16) for k, v in choices.items()}
    batches = P.with_padded_batch({"padded": mc}, len(tokenizer), seq_len=16)
    report = P.gate(build_engine("torch-sdpa", model, "fp32"), P.reference_engine(model), batches, task="xcopa")
    assert report.passed, report.reason
    assert set(report.batches) == {"padded", P.SYNTHETIC_PADDED}


GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: DeepSpeed's kernels are CUDA kernels")


@GPU
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_ds_kernel_passes_the_sharpened_gate_on_gpu(tokenizer, precision):
    # XLM-R's layout at a size the kernels take (head size 64, MLP 4 x hidden), sharpened, on
    # padded batches; the difference is printed for docs/benchmarks.md.
    cfg = model_config("tiny", vocab_size=len(tokenizer))
    cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size, cfg.num_hidden_layers = 256, 4, 1024, 2
    torch.manual_seed(0)
    model = P.sharpen(AutoModel.from_config(cfg).eval())
    engine = build_engine("ds-kernel", model, precision, "cuda")
    assert engine.status == "ok", engine.reason
    assert engine.replaced == {"XLMRobertaLayer": 2}
    engine.warmup(batch_size=8, seq_len=64)
    batches = P.with_padded_batch(P.synthetic_parity_batches(len(tokenizer), 8, 64, seed=5), len(tokenizer), seq_len=64)
    report = P.gate(engine, P.reference_engine(model, "cuda"), batches)
    print(f"ds-kernel {precision} sharpened: hidden {report.hidden_max_abs_diff:.3g}")
    assert report.passed, report.reason
    engine.close()
