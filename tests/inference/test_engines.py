"""Inference engines and the kernel-injection helper, on the CPU with the tiny XLM-R.

The fused kernels need CUDA, so the ds-kernel tests here drive DeepSpeed's *real* layer
matching (``replace_module`` with its policy table) with a stand-in kernel layer that
behaves like DeepSpeed's injected BERT layer from the outside: it returns a tuple and reads
the mask as an additive ``[B, L]`` block. Everything around the kernel (registration,
accounting, adapter, masks, the engine's plumbing, CUDA-graph padding) runs for real."""
import copy
import json
from pathlib import Path

import pytest
import torch
import transformers
from torch import nn

from stilts_ds.errors import StiltsError
from stilts_ds.inference import engines as E
from stilts_ds.inference import kernel_inject as ki
from stilts_ds.inference import parity as P
from stilts_ds.modeling.multitask import HeadSpec, MultiTaskModel
from stilts_ds.modeling.presets import model_config

ROOT = Path(__file__).resolve().parents[2]
CPU_ONLY = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU availability matrix")


@pytest.fixture(scope="module")
def config(tokenizer):
    return model_config("tiny", vocab_size=len(tokenizer))


@pytest.fixture(scope="module")
def config4x(config):
    # DeepSpeed's BERT policy assumes intermediate = 4 x hidden (the tiny preset has 2x).
    cfg = copy.deepcopy(config)
    cfg.intermediate_size = 4 * cfg.hidden_size
    return cfg


def _model(cfg, seed=0, tasks=None):
    torch.manual_seed(seed)
    return MultiTaskModel.build(cfg, tasks or {"xnli": HeadSpec("pair_classification", 3)}).eval()


@pytest.fixture(scope="module")
def model(config):
    return _model(config)


@pytest.fixture(scope="module")
def batches(tokenizer):
    return P.synthetic_parity_batches(len(tokenizer), batch_size=4, seq_len=16, seed=3)


# ------------------------------------------------------------------ configs

INFERENCE_CONFIGS = sorted((ROOT / "ds_configs").glob("inference_*.json"))


def test_inference_configs_exist():
    assert {p.name for p in INFERENCE_CONFIGS} == {"inference_fp32.json", "inference_fp16.json", "inference_bf16.json"}


@pytest.mark.parametrize("path", INFERENCE_CONFIGS, ids=lambda p: p.name)
def test_inference_config_is_a_deepspeed_inference_config(path):
    from deepspeed.inference.config import DeepSpeedInferenceConfig

    raw = json.loads(path.read_text())
    assert "zero_optimization" not in raw  # an inference config, not a training one
    cfg = DeepSpeedInferenceConfig(**raw)  # DeepSpeed's schema rejects unknown keys
    precision = path.stem.removeprefix("inference_")
    assert cfg.dtype == E.PRECISIONS[precision]
    assert cfg.replace_with_kernel_inject and not cfg.enable_cuda_graph
    assert cfg.tensor_parallel.tp_size == 1
    assert E.load_ds_inference_config(precision) == raw


def test_config_contradicting_its_name_is_refused(tmp_path):
    (tmp_path / "inference_fp16.json").write_text(json.dumps({"dtype": "bf16"}))
    with pytest.raises(StiltsError, match="contradicts"):
        E.load_ds_inference_config("fp16", tmp_path)
    (tmp_path / "inference_bf16.json").write_text(json.dumps({"dtype": "bf16", "tensor_parallel": {"tp_size": 2}}))
    with pytest.raises(StiltsError, match="tp_size"):
        E.load_ds_inference_config("bf16", tmp_path)
    with pytest.raises(StiltsError, match="no DeepSpeed inference config"):
        E.load_ds_inference_config("fp32", tmp_path)


# ------------------------------------------------------------------ availability

@CPU_ONLY
def test_cpu_availability_matrix():
    m = E.availability_matrix("cpu")
    assert set(m) == {"ds-kernel", "ds", "torch-eager", "torch-sdpa", "torch-compile", "torch-compile-static",
                      "unpadded"}
    for p in ("fp32", "fp16", "bf16"):
        assert m["ds-kernel"][p] == ki.KERNELS_NEED_CUDA
        for name in ("torch-eager", "torch-sdpa", "torch-compile", "torch-compile-static", "unpadded"):
            assert m[name][p] is None
    assert m["ds"]["fp32"] is None and m["ds"]["bf16"] is None
    assert "does not support fp16" in m["ds"]["fp16"]


def test_unknown_engine_or_precision_raises(model):
    with pytest.raises(StiltsError, match="unknown engine"):
        E.build_engine("onnx", model, "fp32")
    with pytest.raises(StiltsError, match="unknown precision"):
        E.build_engine("torch-eager", model, "int8")


@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_ds_kernel_is_unavailable_on_cpu_without_crashing(model, batches, precision):
    engine = E.build_engine("ds-kernel", model, precision, "cpu")
    assert engine.status == "unavailable"
    assert engine.reason == "DeepSpeed inference kernels need CUDA"
    assert engine.replaced == {}
    with pytest.raises(E.EngineUnavailableError, match="need CUDA"):
        engine.forward(batches["padded"], task="xnli")
    engine.close()


# ------------------------------------------------------------------ engines vs the reference

def _available_combos():
    out = []
    for name in ("torch-eager", "torch-sdpa", "ds"):
        for precision in ("fp32", "fp16", "bf16"):
            ok, why = E.availability(name, precision, "cpu")
            out.append(pytest.param(name, precision, marks=() if ok else pytest.mark.skip(reason=why)))
    return out


@pytest.fixture(scope="module")
def reference_out(model, batches):
    ref = P.reference_engine(model, "cpu")
    out = P.reference_outputs(ref, batches, task="xnli")
    ref.close()
    return out


@pytest.mark.parametrize("name,precision", _available_combos())
def test_engine_agrees_with_reference(model, batches, reference_out, name, precision):
    engine = E.build_engine(name, model, precision, "cpu")
    assert engine.status == "ok", engine.reason
    assert engine.replaced == {}  # nothing injected
    report = P.gate(engine, reference_out, batches, task="xnli")
    assert report.passed, report.reason
    assert engine.status == "ok"
    assert report.label_agreement == 1.0
    assert set(report.batches) == {"padded", "unpadded"}
    out = engine.forward(batches["padded"], task="xnli")
    assert out["last_hidden_state"].dtype == E.PRECISIONS[precision]
    assert out["logits"].dtype == torch.float32 and out["logits"].shape == (4, 3)  # head stays fp32 PyTorch
    engine.close()
    with pytest.raises(E.EngineUnavailableError, match="closed"):
        engine.forward(batches["padded"])


@CPU_ONLY  # with a GPU, DeepSpeed's accelerator is CUDA and "ds" on the CPU is unavailable
def test_ds_engine_on_cpu_needs_no_process_group(model, batches):
    import deepspeed.comm as dist

    before = dist.is_initialized()  # an earlier in-process training test may have made one
    engine = E.build_engine("ds", model, "fp32", "cpu")
    assert engine.status == "ok", engine.reason
    engine.forward(batches["unpadded"])
    assert dist.is_initialized() == before  # building and running the engine created none
    engine.close()


def test_torch_compile_agrees_with_reference(model, batches, reference_out):
    engine = E.build_engine("torch-compile", model, "fp32", "cpu")
    assert engine.status == "ok", engine.reason
    report = P.gate(engine, reference_out, batches, task="xnli")
    assert report.passed, report.reason
    assert report.hidden_max_abs_diff < 1e-4
    engine.close()


def _ragged_batch(vocab, lengths, width, seed=0):
    gen = torch.Generator().manual_seed(seed)
    ids = torch.full((len(lengths), width), 1, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, n in enumerate(lengths):
        ids[i, :n] = torch.randint(5, vocab, (n,), generator=gen)
        mask[i, :n] = 1
    return {"input_ids": ids, "attention_mask": mask}


def test_torch_compile_static_buckets(model, tokenizer, batches, reference_out):
    from torch._dynamo.testing import CompileCounterWithBackend

    # The eager backend keeps the test fast; shapes, guards and recompiles are dynamo's
    # whatever the backend.
    counter = CompileCounterWithBackend("eager")
    engine = E.build_engine("torch-compile", model, "fp32", "cpu", static_buckets=[16, 32, 64],
                            compile_options={"backend": counter})
    assert engine.status == "ok", engine.reason
    assert any("dynamic=False" in n for n in engine.notes)
    assert any("padded up to 16, 32, 64" in n and "next power of two" in n for n in engine.notes)
    sdpa = E.build_engine("torch-sdpa", model, "fp32", "cpu")
    tol = P.TOLERANCES["fp32"]
    seen = []
    # rows 3 and 4 -> 4, lengths 17 and 20 -> 32: one compiled shape; then (2, 40) -> (2, 64)
    for lengths, width in (([17, 5, 9], 17), ([20, 3, 12, 1], 20), ([40, 2], 40)):
        b = _ragged_batch(len(tokenizer), lengths, width, seed=width)
        got, want = engine.forward(b, task="xnli"), sdpa.forward(b, task="xnli")
        assert got["last_hidden_state"].shape == want["last_hidden_state"].shape == (len(lengths), width, 64)
        keep = b["attention_mask"].bool()
        res = P.compare_outputs(want, got, keep, tol)
        assert not res["problems"], res["problems"]
        assert res["hidden_max_abs_diff"] < 1e-5
        seen.append(counter.frame_count)
    assert seen[0] >= 1
    assert seen[1] == seen[0]  # a second length in the same bucket compiled nothing
    assert seen[2] > seen[1]  # another bucket does compile (the counter sees recompiles)
    assert P.gate(engine, reference_out, batches, task="xnli").passed
    with pytest.raises(StiltsError, match="largest static bucket"):
        engine.forward({"input_ids": torch.full((1, 65), 7)})
    engine.close()


def test_static_bucket_options(model, config):
    assert E.default_static_buckets(config) == (16, 32, 64, 128, 256, 512)
    engine = E.build_engine("torch-compile", model, "fp32", "cpu", static_buckets=True,
                            compile_options={"backend": "eager"})
    assert any("16, 32, 64, 128, 256, 512" in n for n in engine.notes)
    plain = E.build_engine("torch-compile", model, "fp32", "cpu", compile_options={"backend": "eager"})
    assert plain.notes == ("torch.compile(backend='eager') of the SDPA model",)  # the default is unchanged
    with pytest.raises(StiltsError, match="static_buckets"):
        E.build_engine("torch-compile", model, "fp32", "cpu", static_buckets=[0, 16])
    with pytest.raises(StiltsError, match="static_buckets"):
        E.build_engine("torch-compile", model, "fp32", "cpu", static_buckets=["x"])
    # other engines ignore the option
    assert E.build_engine("torch-sdpa", model, "fp32", "cpu", static_buckets=True).notes == ()


def test_caller_model_is_not_touched(config, batches):
    model = _model(config)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for name, precision in (("torch-eager", "bf16"), ("ds", "bf16"), ("torch-sdpa", "fp16")):
        E.build_engine(name, model, precision, "cpu").close()
    after = model.state_dict()
    assert all(after[k].dtype == torch.float32 and torch.equal(after[k], v) for k, v in before.items())


def test_multiple_choice_and_span_heads_run_like_the_model(config, tokenizer):
    model = _model(config, tasks={"hellaswag": HeadSpec("multiple_choice", 4), "squad_v1": HeadSpec("span_qa", 2)})
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(5, len(tokenizer), (2, 4, 10), generator=gen)
    mask = torch.ones_like(ids)
    mask[0, 1, 6:] = 0
    mc = {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([0, 3])}
    span = {"input_ids": ids[:, 0], "attention_mask": mask[:, 1]}
    engine = E.build_engine("torch-sdpa", model, "fp32", "cpu")
    with torch.no_grad():
        want_mc, want_span = model("hellaswag", mc), model("squad_v1", span)
    got_mc, got_span = engine.forward(mc, task="hellaswag"), engine.forward(span, task="squad_v1")
    assert "loss" not in got_mc  # targets are not passed to the head at inference
    assert torch.allclose(got_mc["logits"], want_mc["logits"], atol=1e-5)
    assert torch.allclose(got_span["start_logits"], want_span["start_logits"], atol=1e-5)
    assert got_mc["last_hidden_state"].shape[0] == 8  # B x C rows
    with pytest.raises(StiltsError, match="no head for task"):
        engine.forward(span, task="xnli")


# ------------------------------------------------------------------ kernel_inject on the CPU

class StandInKernelLayer(nn.Module):
    """DeepSpeed's injected BERT layer as the encoder sees it (ds_transformer.forward):
    sizes its workspace from ``input.size()`` (so a tuple fed back in breaks it), takes the
    mask as ``input_mask``/``attention_mask``, reads its memory as additive values of the
    layer's dtype, and returns ``(output, mask)``. It insists on the compact one-row-per-
    sequence mask stilts-ds passes. The arithmetic is the original layer's, in eager mode."""

    def __init__(self, layer, policy):
        super().__init__()
        self.original = layer
        self.policy = policy

    def forward(self, input=None, input_mask=None, attention_mask=None, **kwargs):
        batch, length = input.size()[:2]
        mask = input_mask if attention_mask is None else attention_mask
        if mask is not None:
            assert mask.dtype == input.dtype, f"the kernel reads the mask as {input.dtype}: got {mask.dtype}"
            assert mask.numel() == batch * length, f"the kernel reads a [B, L] mask: got {tuple(mask.shape)}"
            mask = mask.reshape(batch, 1, 1, length)
        return (self.original(input, mask), None)


def deepspeed_matching(seen=None):
    """An ``init_inference`` that runs DeepSpeed's own class -> policy matching
    (``replace_module`` with ``orig_class=None``, as kernel injection does) and swaps in
    the stand-in kernel layer."""
    from deepspeed.module_inject.replace_module import replace_module

    def replace_fn(child, policy, layer_id=0, prefix="", state_dict=None):
        if seen is not None:
            seen.append((type(child).__name__, policy.__name__))
        return StandInKernelLayer(child, policy)

    def init_inference(model, config):
        from deepspeed.inference.config import DtypeEnum

        assert config["replace_with_kernel_inject"] is True
        model.to(DtypeEnum.from_str(str(config["dtype"])).value[0])  # as InferenceEngine._convert_to_dtype
        return replace_module(model, None, replace_fn, None)

    return init_inference


def _encoder(cfg, seed=0):
    torch.manual_seed(seed)
    return transformers.AutoModel.from_config(cfg, add_pooling_layer=False).eval()


def _padded_inputs(vocab):
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(5, vocab, (3, 9), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    mask[2, 3:] = 0
    return ids, mask


def test_stock_bert_policy_does_not_match_xlmr_and_registration_is_scoped():
    from transformers.models.xlm_roberta.modeling_xlm_roberta import XLMRobertaLayer

    stock = ki.bert_policy_layer_classes()
    assert [c.__name__ for c in stock] == ["BertLayer", "RobertaLayer"]
    with ki.layer_classes_registered() as matched:
        assert XLMRobertaLayer in matched
        assert XLMRobertaLayer in ki.bert_policy_layer_classes()
    assert ki.bert_policy_layer_classes() == stock


def test_injection_that_replaces_nothing_is_an_error(config4x):
    # Stock DeepSpeed: XLMRobertaLayer matches no policy, nothing is replaced, no error.
    model = _encoder(config4x)
    with pytest.raises(ki.NothingReplacedError) as err:
        ki.inject_kernels(model, {"dtype": "fp32"}, register=False, init_inference=deepspeed_matching(),
                          injected_types=(StandInKernelLayer,))
    assert "replaced no module" in str(err.value) and "{'XLMRobertaLayer': 2}" in str(err.value)
    assert "BertLayer, RobertaLayer" in str(err.value)


def test_registered_injection_counts_adapts_and_matches_the_model(config4x, tokenizer):
    model = _encoder(config4x)
    original = copy.deepcopy(model)
    ids, mask = _padded_inputs(len(tokenizer))
    seen = []
    engine, report = ki.inject_kernels(model, {"dtype": "fp32"}, init_inference=deepspeed_matching(seen),
                                       injected_types=(StandInKernelLayer,))
    assert report.replaced == {"XLMRobertaLayer": 2} and report.total == 2
    assert report.injected == {"StandInKernelLayer": 2} and report.adapted == 2
    assert seen == [("XLMRobertaLayer", "HFBertLayerPolicy")] * 2  # -> DeepSpeed's BERT container
    assert any("tanh-GELU" in n for n in report.notes)
    assert all(isinstance(layer, ki.KernelLayerAdapter) for layer in model.encoder.layer)
    assert model.config._attn_implementation == "eager"
    assert [c.__name__ for c in ki.bert_policy_layer_classes()] == ["BertLayer", "RobertaLayer"]  # restored
    with torch.no_grad():
        want = original(input_ids=ids, attention_mask=mask).last_hidden_state
        via_4d = engine(input_ids=ids, attention_mask=ki.key_padding_mask(mask, torch.float32)).last_hidden_state
        via_2d = engine(input_ids=ids, attention_mask=mask).last_hidden_state  # eager [B,1,L,L] -> adapter
    keep = mask.bool()
    assert torch.allclose(via_4d[keep], want[keep], atol=1e-5)
    assert torch.allclose(via_2d[keep], want[keep], atol=1e-5)


def test_without_the_adapter_the_transformers_5_encoder_breaks(config4x, tokenizer):
    from deepspeed.module_inject.replace_module import replace_module

    model = _encoder(config4x)
    ki.force_eager_attention(model)
    ids, mask = _padded_inputs(len(tokenizer))
    with ki.layer_classes_registered():
        replace_module(model, None, lambda child, policy, *a, **k: StandInKernelLayer(child, policy), None)
    with pytest.raises(AttributeError, match="tuple"):  # layer 1 gets layer 0's tuple as hidden states
        model(input_ids=ids, attention_mask=ki.key_padding_mask(mask, torch.float32))
    assert ki.adapt_injected_layers(model, (StandInKernelLayer,)) == 2
    assert ki.adapt_injected_layers(model, (StandInKernelLayer,)) == 0  # idempotent
    model(input_ids=ids, attention_mask=ki.key_padding_mask(mask, torch.float32))


def test_model_the_kernel_cannot_reproduce_is_refused(config):
    # The tiny preset's MLP is 2 x hidden; DeepSpeed's policy would build a 4 x hidden MLP.
    with pytest.raises(ki.KernelInjectionError, match="intermediate_size = 4 x hidden_size"):
        ki.inject_kernels(_encoder(config), {"dtype": "fp32"}, init_inference=deepspeed_matching(),
                          injected_types=(StandInKernelLayer,))
    problems = ki.kernel_compatibility_problems(config, tp_size=2)
    assert any("tp_size=2" in p for p in problems)


def test_adapter_returns_a_tensor_from_a_plain_module():
    class TupleLayer(nn.Module):
        def forward(self, hidden, input_mask=None):
            self.mask = input_mask
            return hidden * 2, input_mask

    layer = TupleLayer()
    adapter = ki.KernelLayerAdapter(layer)
    x = torch.ones(2, 3, 4)
    sdpa_mask = torch.tensor([[1, 1, 1], [1, 1, 0]], dtype=torch.bool)[:, None, None, :].expand(2, 1, 3, 3)
    out = adapter(x, sdpa_mask, None, encoder_attention_mask=None, past_key_values=None, position_ids=None)
    assert torch.is_tensor(out) and torch.equal(out, x * 2)
    assert layer.mask.shape == (2, 1, 1, 3) and layer.mask.dtype == torch.float32
    assert layer.mask[1, 0, 0].tolist() == [0.0, 0.0, ki.MASK_VALUE]
    with pytest.raises(ki.KernelInjectionError, match="cross-attention"):
        adapter(x, None, torch.ones(2, 3, 4))


def test_mask_conversion():
    keep = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    add = ki.key_padding_mask(keep, torch.float16)
    assert add.shape == (2, 1, 1, 4) and add.dtype == torch.float16 and add.is_contiguous()
    assert add[1, 0, 0].tolist() == [0.0, 0.0, -10000.0, -10000.0]
    assert ki.key_padding_mask(None, torch.float16) is None
    # SDPA's boolean [B, 1, L, L] and eager's float [B, 1, L, L] (finfo.min) -> the same [B, 1, 1, L]
    sdpa = keep.bool()[:, None, None, :].expand(2, 1, 4, 4)
    eager = torch.zeros(2, 1, 4, 4).masked_fill(~sdpa, torch.finfo(torch.float32).min)
    for mask in (sdpa, eager, keep):
        got = ki.kernel_attention_mask(mask, torch.float16)
        assert torch.equal(got, add), mask.dtype
        assert torch.isfinite(got).all()  # finfo(float32).min would be -inf in fp16
    assert ki.kernel_attention_mask(None, torch.float32) is None
    with pytest.raises(ValueError):
        ki.kernel_attention_mask(torch.ones(2, 4, 4), torch.float32)
    with pytest.raises(ValueError):
        ki.kernel_attention_mask(torch.ones(2, 1, 4, 4, dtype=torch.long), torch.float32)


def test_force_eager_attention(config):
    model = transformers.AutoModel.from_config(config, attn_implementation="sdpa", add_pooling_layer=False)
    ki.force_eager_attention(model)
    assert model.config._attn_implementation == "eager"


# ------------------------------------------------------------------ the ds-kernel engine's plumbing

@pytest.fixture
def stand_in_kernels(monkeypatch):
    """ds-kernel built on the CPU with the stand-in kernel layer behind DeepSpeed's matching."""
    real = ki.inject_kernels
    monkeypatch.setitem(E.ENGINES, "ds-kernel", E.EngineSpec("ds-kernel", "stand-in", lambda p, d: None))

    def inject(model, cfg, **kw):
        return real(model, cfg, init_inference=deepspeed_matching(), injected_types=(StandInKernelLayer,), **kw)

    monkeypatch.setattr(ki, "inject_kernels", inject)
    return inject


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_ds_kernel_engine_plumbing(stand_in_kernels, config4x, tokenizer, precision):
    model = _model(config4x)
    batches = P.synthetic_parity_batches(len(tokenizer), batch_size=4, seq_len=12, seed=5)
    engine = E.build_engine("ds-kernel", model, precision, "cpu")
    assert engine.status == "ok", engine.reason
    assert engine.replaced == {"XLMRobertaLayer": 2}
    engine.warmup(batch_size=4, seq_len=12)
    report = P.gate(engine, P.reference_engine(model), batches, task="xnli")
    assert report.passed, report.reason
    engine.forward({"input_ids": torch.full((2, 40), 7)})  # longer rows fit: up to max_out_tokens
    with pytest.raises(E.EngineUnavailableError, match="workspace"):  # a bigger batch does not
        engine.forward({"input_ids": torch.full((8, 12), 7)})
    with pytest.raises(E.EngineUnavailableError, match="max_out_tokens"):
        engine.forward({"input_ids": torch.full((1, 1025), 7)})
    engine.close()


def test_ds_kernel_cuda_graph_pads_to_the_captured_shape(stand_in_kernels, config4x, tokenizer):
    model = _model(config4x)
    batches = P.synthetic_parity_batches(len(tokenizer), batch_size=3, seq_len=10, seed=6)
    engine = E.build_engine("ds-kernel", model, "fp32", "cpu", enable_cuda_graph=True)
    assert engine.status == "ok", engine.reason
    engine.warmup(batch_size=5, seq_len=16)  # the captured shape; parity batches are smaller
    report = P.gate(engine, P.reference_engine(model), batches, task="xnli")
    assert report.passed, report.reason
    assert engine.forward(batches["padded"])["last_hidden_state"].shape[:2] == (3, 10)
    assert any("padded" in n for n in engine.notes)
    with pytest.raises(E.EngineUnavailableError, match="captured"):  # longer than the graph
        engine.forward({"input_ids": torch.full((2, 20), 7)})


@CPU_ONLY  # "ds" on the CPU needs DeepSpeed's CPU accelerator
def test_building_ds_closes_the_live_ds_kernel_engine(model, batches):
    # ds-kernel cannot be built on the CPU: register a stand-in engine as the live one.
    released = []
    kernel = E.Engine("ds-kernel", "fp16", torch.device("cpu"), encode=lambda inputs: None,
                      on_close=lambda: released.append("workspace"))
    E._register_live_kernel_engine(kernel)
    engine = E.build_engine("ds", model, "fp32", "cpu")
    assert engine.status == "ok", engine.reason
    assert released == ["workspace"]  # closed (its on_close ran) before init_inference
    assert "ds engine was built" in kernel.reason and "kernel workspace" in kernel.reason
    with pytest.raises(E.EngineUnavailableError, match="closed.*ds engine was built"):
        kernel.forward(batches["padded"])
    E.build_engine("ds", model, "fp32", "cpu").close()
    assert released == ["workspace"]  # closed once; nothing live any more
    engine.close()


@CPU_ONLY
def test_building_ds_after_a_stand_in_ds_kernel_engine(stand_in_kernels, config4x, batches):
    model = _model(config4x)
    first = E.build_engine("ds-kernel", model, "fp32", "cpu")
    assert first.status == "ok", first.reason
    second = E.build_engine("ds-kernel", model, "fp32", "cpu")
    assert "another ds-kernel engine" in first.reason
    with pytest.raises(E.EngineUnavailableError, match="closed"):
        first.forward(batches["padded"])
    E.build_engine("ds", model, "fp32", "cpu").close()
    assert "ds engine was built" in second.reason
    with pytest.raises(E.EngineUnavailableError, match="closed"):
        second.forward(batches["padded"])


def test_injection_that_replaces_nothing_fails_the_engine(monkeypatch, config4x):
    real = ki.inject_kernels
    monkeypatch.setitem(E.ENGINES, "ds-kernel", E.EngineSpec("ds-kernel", "stand-in", lambda p, d: None))
    monkeypatch.setattr(ki, "inject_kernels", lambda model, cfg, **kw: real(
        model, cfg, register=False, init_inference=deepspeed_matching(), injected_types=(StandInKernelLayer,)))
    engine = E.build_engine("ds-kernel", _model(config4x), "fp16", "cpu")
    assert engine.status == "failed"
    assert engine.reason.startswith("injection replaced nothing")
    assert isinstance(engine.error, ki.NothingReplacedError)
    with pytest.raises(E.EngineUnavailableError, match="failed"):
        engine.forward({"input_ids": torch.full((1, 4), 7)})


# ------------------------------------------------------------------ on a GPU (skipped without one)

GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: DeepSpeed's kernels are CUDA kernels")


@pytest.fixture(scope="module")
def gpu_config(config):
    # XLM-R's layout at a size the kernels are built for: head size 64, MLP 4 x hidden.
    cfg = copy.deepcopy(config)
    cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size, cfg.num_hidden_layers = 256, 4, 1024, 2
    return cfg


@GPU
@pytest.mark.parametrize("precision", ["fp16", "bf16", "fp32"])
@pytest.mark.parametrize("cuda_graph", [False, True], ids=["no-graph", "cuda-graph"])
def test_ds_kernel_on_gpu(gpu_config, tokenizer, precision, cuda_graph):
    model = _model(gpu_config)
    engine = E.build_engine("ds-kernel", model, precision, "cuda", enable_cuda_graph=cuda_graph)
    assert engine.status == "ok", engine.reason
    assert engine.replaced == {"XLMRobertaLayer": 2}
    engine.warmup(batch_size=8, seq_len=64)
    batches = P.synthetic_parity_batches(len(tokenizer), batch_size=8, seq_len=64, seed=11)
    report = P.gate(engine, P.reference_engine(model, "cuda"), batches, task="xnli")
    assert report.passed, report.reason
    print(f"ds-kernel {precision} graph={cuda_graph}: hidden {report.hidden_max_abs_diff:.3g}, "
          f"logits {report.logits_max_abs_diff:.3g}")
    engine.close()


@GPU
def test_stock_deepspeed_replaces_nothing_on_gpu(gpu_config):
    with pytest.raises(ki.NothingReplacedError, match="XLMRobertaLayer"):
        ki.inject_kernels(_encoder(gpu_config).cuda(), {"dtype": "fp16"}, register=False)


@GPU
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_torch_compile_static_buckets_on_gpu(gpu_config, tokenizer, precision):
    model = _model(gpu_config)
    engine = E.build_engine("torch-compile", model, precision, "cuda", static_buckets=[32, 64])
    assert engine.status == "ok", engine.reason
    assert any("reduce-overhead" in n for n in engine.notes)
    batches = P.synthetic_parity_batches(len(tokenizer), batch_size=8, seq_len=64, seed=12)
    report = P.gate(engine, P.reference_engine(model, "cuda"), batches, task="xnli")
    assert report.passed, report.reason
    a = engine.forward(batches["padded"])["last_hidden_state"].clone()
    engine.forward(batches["unpadded"])  # a CUDA-graph replay must not overwrite what was returned
    assert torch.equal(engine.forward(batches["padded"])["last_hidden_state"], a)
    engine.close()


@GPU
@pytest.mark.parametrize("name", ["torch-eager", "torch-sdpa", "torch-compile", "ds", "unpadded"])
@pytest.mark.parametrize("precision", ["fp16", "bf16", "fp32"])
def test_engines_on_gpu(gpu_config, tokenizer, name, precision):
    model = _model(gpu_config)
    engine = E.build_engine(name, model, precision, "cuda")
    assert engine.status == "ok", engine.reason
    batches = P.synthetic_parity_batches(len(tokenizer), batch_size=8, seq_len=64, seed=12)
    report = P.gate(engine, P.reference_engine(model, "cuda"), batches, task="xnli")
    assert report.passed, report.reason
    engine.close()
