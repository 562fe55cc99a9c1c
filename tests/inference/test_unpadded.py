"""The unpadded engine (packed tokens, varlen attention) on the CPU with the tiny XLM-R.

On the CPU the attention is the per-length SDPA reference; the CUDA varlen_attn path is
exercised by the GPU tests at the end (skipped without a GPU)."""
import copy

import pytest
import torch
import transformers
from torch.nn import functional as F

from stilts_ds.inference import engines as E
from stilts_ds.inference import parity as P
from stilts_ds.inference import unpadded as U
from stilts_ds.modeling.multitask import HeadSpec, MultiTaskModel
from stilts_ds.modeling.presets import model_config


@pytest.fixture(scope="module")
def config(tokenizer):
    return model_config("tiny", vocab_size=len(tokenizer))


def _model(cfg, seed=0, tasks=None):
    torch.manual_seed(seed)
    return MultiTaskModel.build(cfg, tasks or {"xnli": HeadSpec("pair_classification", 3)}).eval()


def _encoder(cfg, seed=0):
    torch.manual_seed(seed)
    return transformers.AutoModel.from_config(cfg, attn_implementation="eager", add_pooling_layer=False).eval()


@pytest.fixture(scope="module")
def model(config):
    return _model(config)


@pytest.fixture(scope="module")
def batches(tokenizer):
    return P.synthetic_parity_batches(len(tokenizer), batch_size=6, seq_len=24, seed=7)


@pytest.fixture(scope="module")
def reference_out(model, batches):
    ref = P.reference_engine(model, "cpu")
    out = P.reference_outputs(ref, batches, task="xnli")
    ref.close()
    return out


def _ragged(vocab, lengths, width, seed=0, left=()):
    """Token ids and mask [len(lengths), width]: row i has lengths[i] real tokens (BOS ...
    EOS), right-padded, or left-padded for the rows in ``left``."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.full((len(lengths), width), 1, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, n in enumerate(lengths):
        span = slice(width - n, width) if i in left else slice(0, n)
        row = torch.randint(5, vocab, (n,), generator=gen)
        if n:
            row[0], row[-1] = 0, 2
        ids[i, span] = row
        mask[i, span] = 1
    return ids, mask


# ------------------------------------------------------------------ pieces

def test_useful_tokens_and_packing():
    mask = torch.tensor([[1, 1, 1, 0], [0, 0, 0, 0], [1, 0, 0, 0], [0, 1, 1, 1]])
    assert U.useful_tokens(mask) == 7
    assert U.useful_tokens(mask.bool()[None]) == 7  # any shape: [B, C, L] too
    p = U.pack(mask)
    assert p.lengths == (3, 0, 1, 3) and p.max_seqlen == 3 and p.total == 7 and p.shape == (4, 4)
    assert p.cu_seqlens.dtype == torch.int32 and p.cu_seqlens.tolist() == [0, 3, 3, 4, 7]
    assert p.indices.tolist() == [0, 1, 2, 8, 13, 14, 15]
    x = torch.arange(16.0).view(4, 4, 1)
    packed = U.pack_tensor(x, p)
    assert packed.flatten().tolist() == [0, 1, 2, 8, 13, 14, 15]
    back = U.unpack(packed, p)
    assert torch.equal(back, x * mask[..., None])  # zeros at padding
    groups = p.groups()
    assert [n for n, _ in groups] == [1, 3]
    assert groups[1][1].tolist() == [[0, 1, 2], [4, 5, 6]]  # rows 0 and 3 in the packed tokens


def test_position_ids_are_xlmr_s():
    from transformers.models.xlm_roberta.modeling_xlm_roberta import XLMRobertaEmbeddings

    ids, _ = _ragged(100, [5, 1, 8, 3], 8, left={3})
    ids[0, 2] = 1  # a pad token inside a row
    want = XLMRobertaEmbeddings.create_position_ids_from_input_ids(ids, padding_idx=1)
    assert torch.equal(U.position_ids(ids, 1), want)


def test_reference_attention_is_masked_attention_per_sequence():
    gen = torch.Generator().manual_seed(0)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0], [1, 1, 0, 0, 0]])
    n, length, heads, d = 5, 5, 3, 8
    q, k, v = (torch.randn(n, length, heads, d, generator=gen) for _ in range(3))
    dense = F.scaled_dot_product_attention(*(t.transpose(1, 2) for t in (q, k, v)),
                                           attn_mask=mask.bool()[:, None, None, :]).transpose(1, 2)
    p = U.pack(mask)
    got = U.varlen_attention_reference(*(U.pack_tensor(t, p) for t in (q, k, v)), p)
    assert got.shape == (p.total, heads, d)
    assert torch.allclose(U.unpack(got, p)[mask.bool()], dense[mask.bool()], atol=1e-6)
    # equal lengths everywhere: the no-gather block path
    full = U.pack(torch.ones(3, 4, dtype=torch.long))
    qf, kf, vf = (t[:3, :4].reshape(12, heads, d) for t in (q, k, v))
    want = F.scaled_dot_product_attention(*(t[:3, :4].transpose(1, 2) for t in (q, k, v))).transpose(1, 2)
    assert torch.allclose(U.varlen_attention_reference(qf, kf, vf, full).view(3, 4, heads, d), want, atol=1e-6)


# ------------------------------------------------------------------ the encoder vs transformers

@pytest.mark.parametrize("hidden_act", ["gelu", "gelu_new"])
def test_hidden_states_match_transformers_on_real_tokens(config, tokenizer, hidden_act):
    cfg = copy.deepcopy(config)
    cfg.hidden_act = hidden_act  # the activation comes from the config (ACT2FN), variants included
    enc = _encoder(cfg)
    width = 20
    # lengths 1 and 2, a full-length row, a left-padded row, equal lengths (one SDPA group)
    ids, mask = _ragged(len(tokenizer), [1, 2, width, 7, 7, 11], width, seed=2, left={5})
    fast = U.UnpaddedEncoder(enc)
    assert fast.backend() == "reference"
    with torch.no_grad():
        want = enc(input_ids=ids, attention_mask=mask).last_hidden_state
        got = fast(ids, mask)
    keep = mask.bool()
    assert got.shape == want.shape and got.dtype == want.dtype
    assert (got[keep] - want[keep]).abs().max() < 1e-5
    assert torch.count_nonzero(got[~keep]) == 0


def test_token_types_and_all_padding_rows(config, tokenizer):
    cfg = copy.deepcopy(config)
    cfg.type_vocab_size = 2
    enc = _encoder(cfg, seed=4)
    ids, mask = _ragged(len(tokenizer), [9, 4, 0, 12], 12, seed=3)
    types = (torch.arange(12) >= 5).long().expand(4, 12).clone()
    with torch.no_grad():
        want = enc(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
        got = U.UnpaddedEncoder(enc)(ids, mask, types)
        no_mask = U.UnpaddedEncoder(enc)(ids[[0]], None, types[[0]])  # no mask: every token is real
    keep = mask.bool()
    assert (got[keep] - want[keep]).abs().max() < 1e-5
    assert torch.count_nonzero(got[2]) == 0  # a row of padding only computes nothing
    with torch.no_grad():
        want0 = enc(input_ids=ids[[0]], token_type_ids=types[[0]]).last_hidden_state
    assert (no_mask - want0).abs().max() < 1e-5


def test_roberta_is_accepted(tokenizer):
    cfg = transformers.RobertaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=40,
                                     pad_token_id=1)
    enc = _encoder(cfg)
    assert U.unsupported_reason(enc) is None
    ids, mask = _ragged(len(tokenizer), [3, 10, 6], 10, seed=5)
    with torch.no_grad():
        want = enc(input_ids=ids, attention_mask=mask).last_hidden_state
        got = U.UnpaddedEncoder(enc)(ids, mask)
    assert (got[mask.bool()] - want[mask.bool()]).abs().max() < 1e-5


# ------------------------------------------------------------------ the engine

def test_unpadded_is_available_on_cpu_at_every_precision():
    for precision in ("fp32", "fp16", "bf16"):
        assert E.availability("unpadded", precision, "cpu") == (True, None)


def test_unpadded_engine_passes_the_fp32_gate(model, batches, reference_out):
    engine = E.build_engine("unpadded", model, "fp32", "cpu")
    assert engine.status == "ok", engine.reason
    assert engine.notes[0] == ("packed tokens, no padding computed; attention: varlen_attn (CUDA) / "
                               "per-length SDPA reference (CPU)")
    assert "per-length SDPA reference" in engine.notes[1]  # what runs here
    assert engine.replaced == {}
    report = P.gate(engine, reference_out, batches, task="xnli")
    assert report.passed, report.reason
    assert report.hidden_max_abs_diff < 1e-5 and report.label_agreement == 1.0
    out = engine.forward(batches["padded"], task="xnli")
    assert out["logits"].dtype == torch.float32 and out["logits"].shape == (6, 3)
    mask = batches["padded"]["attention_mask"].bool()
    assert torch.count_nonzero(out["last_hidden_state"][~mask]) == 0
    engine.close()
    with pytest.raises(E.EngineUnavailableError, match="closed"):
        engine.forward(batches["padded"])


def test_unpadded_engine_matches_eager_on_short_and_full_rows(model, tokenizer):
    width = 32
    ids, mask = _ragged(len(tokenizer), [1, 2, width, 5, 17], width, seed=8)
    batch = {"input_ids": ids, "attention_mask": mask}
    ref = E.build_engine("torch-eager", model, "fp32", "cpu")
    engine = E.build_engine("unpadded", model, "fp32", "cpu")
    want, got = ref.forward(batch, task="xnli"), engine.forward(batch, task="xnli")
    keep = mask.bool()
    assert (got["last_hidden_state"][keep] - want["last_hidden_state"][keep]).abs().max() < 1e-5
    assert torch.allclose(got["logits"], want["logits"], atol=1e-5)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_unpadded_engine_passes_the_low_precision_gate(model, batches, reference_out, precision):
    engine = E.build_engine("unpadded", model, precision, "cpu")
    assert engine.status == "ok", engine.reason
    report = P.gate(engine, reference_out, batches, task="xnli")
    assert report.passed, report.reason
    assert report.tolerance == P.TOLERANCES[precision]
    assert engine.forward(batches["padded"])["last_hidden_state"].dtype == E.PRECISIONS[precision]


def test_multiple_choice_through_engine_forward(config, tokenizer):
    model = _model(config, tasks={"hellaswag": HeadSpec("multiple_choice", 4)})
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(5, len(tokenizer), (2, 4, 10), generator=gen)
    mask = torch.ones_like(ids)
    mask[0, 1, 6:] = 0
    mask[1, 2, 2:] = 0
    mask[1, 3, 1:] = 0
    ids[mask == 0] = 1
    mc = {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([0, 3])}
    engine = E.build_engine("unpadded", model, "fp32", "cpu")
    with torch.no_grad():
        want = model("hellaswag", mc)
    got = engine.forward(mc, task="hellaswag")
    assert got["last_hidden_state"].shape[:2] == (8, 10)  # B x C rows
    assert got["logits"].shape == (2, 4)
    assert torch.allclose(got["logits"], want["logits"], atol=1e-5)
    report = P.gate(engine, P.reference_engine(model), {"mc": mc}, task="hellaswag")
    assert report.passed, report.reason


def test_non_xlmr_model_is_unavailable_with_its_type_named():
    cfg = transformers.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=64, max_position_embeddings=40)
    bert = transformers.BertModel(cfg).eval()
    engine = E.build_engine("unpadded", bert, "fp32", "cpu")
    assert engine.status == "unavailable"
    assert "'bert'" in engine.reason and "BertModel" in engine.reason and "XLM-R" in engine.reason
    with pytest.raises(E.EngineUnavailableError, match="unavailable"):
        engine.forward({"input_ids": torch.full((1, 4), 7)})
    with pytest.raises(ValueError, match="'bert'"):
        U.UnpaddedEncoder(bert)
    assert E.build_engine("torch-eager", bert, "fp32", "cpu").status == "ok"  # other engines still take it


def test_decoder_configured_xlmr_is_refused(config):
    cfg = copy.deepcopy(config)
    cfg.is_decoder = True
    assert "decoder" in U.unsupported_reason(_encoder(cfg))


# ------------------------------------------------------------------ on a GPU (skipped without one)

GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: varlen_attn is a CUDA kernel")


@GPU
def test_varlen_attn_matches_the_reference_on_gpu():
    gen = torch.Generator().manual_seed(0)
    mask = torch.tensor([[1] * 9 + [0] * 7, [1] * 16, [1, 0] + [0] * 14, [1] * 3 + [0] * 13], device="cuda")
    p = U.pack(mask)
    q, k, v = (torch.randn(p.total, 4, 64, generator=gen).to("cuda", torch.float16) for _ in range(3))
    got = U.varlen_attention(q, k, v, p, backend="varlen").float()
    want = U.varlen_attention_reference(q.float(), k.float(), v.float(), p)
    assert (got - want).abs().max() < 1e-2


@GPU
@pytest.mark.parametrize("precision", ["fp16", "bf16", "fp32"])
def test_unpadded_engine_on_gpu(config, tokenizer, precision):
    cfg = copy.deepcopy(config)
    cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size = 256, 4, 1024
    model = _model(cfg)
    engine = E.build_engine("unpadded", model, precision, "cuda")
    assert engine.status == "ok", engine.reason
    if precision == "fp32":
        assert "per-length SDPA reference" in engine.notes[1] and "fp16/bf16 only" in engine.notes[1]
    else:
        assert engine.notes[1] == "attention here: varlen_attn", engine.notes
    batches = P.synthetic_parity_batches(len(tokenizer), batch_size=8, seq_len=64, seed=12)
    report = P.gate(engine, P.reference_engine(model, "cuda"), batches, task="xnli")
    assert report.passed, report.reason
    print(f"unpadded {precision}: hidden {report.hidden_max_abs_diff:.3g}")
    engine.close()
