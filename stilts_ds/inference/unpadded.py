"""An XLM-R/RoBERTa encoder that computes no padding: every batch is packed into its real tokens.

A padded batch ``[N, L]`` with ``attention_mask`` spends most of its arithmetic on padding
when lengths vary (task eval sets: a few long rows, many short ones). ``UnpaddedEncoder``
runs the same weights on the real tokens only:

1. ``pack(attention_mask)``: the flat positions of the ``T`` real tokens (row-major, so every
   row's tokens are contiguous), the per-row lengths, ``cu_seqlens`` (int32 ``[N + 1]``,
   cumulative lengths, the varlen-attention convention) and ``max_seqlen``.
2. Embeddings on the packed tokens: word + token type + position, then LayerNorm. Position
   ids are XLM-R's, computed on the padded rows before packing (``position_ids``:
   ``padding_idx + cumulative count of non-pad tokens``), so they match the padded model
   exactly, whatever the padding side.
3. Each layer on ``[T, H]``: Q/K/V projections, attention within each sequence only
   (``varlen_attention``), output projection + residual + LayerNorm (post-LN), intermediate
   activation (the config's ``hidden_act`` through transformers' ``ACT2FN``), output
   projection + residual + LayerNorm. The Linear and LayerNorm modules are the encoder's
   own (no copy, no re-initialisation).
4. ``unpack``: the packed hidden states scattered back to ``[N, L, H]``, zeros at padding.

Attention backends (``ATTENTION_BACKENDS``):

* ``"varlen"``: ``torch.nn.attention.varlen.varlen_attn`` (Flash Attention over
  ``cu_seqlens``), CUDA only, fp16/bf16 only (the Flash kernel has no fp32).
* ``"reference"``: ``varlen_attention_reference``: rows of equal length are gathered into
  one ``[k, heads, length, head_dim]`` block and run through ``scaled_dot_product_attention``
  without a mask, one call per distinct length. Any device, any dtype; the CPU path and
  the fallback for fp32 on CUDA.

Usage::

    from stilts_ds.inference.unpadded import UnpaddedEncoder, unsupported_reason, useful_tokens

    encoder = transformers.AutoModel.from_config(config).eval()   # XLMRobertaModel / RobertaModel
    assert unsupported_reason(encoder) is None
    fast = UnpaddedEncoder(encoder)            # attention="auto": varlen on CUDA fp16/bf16, else reference
    hidden = fast(input_ids, attention_mask)   # [N, L, H], zeros at padding positions
    useful_tokens(attention_mask)              # T: the tokens actually computed

The inference engine ``"unpadded"`` (``stilts_ds.inference.engines``) wraps this.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

ATTENTION_BACKENDS = ("varlen", "reference")
VARLEN_DTYPES = (torch.float16, torch.bfloat16)  # what varlen_attn's Flash kernel takes


def useful_tokens(attention_mask: torch.Tensor) -> int:
    """The number of real (non-padding) tokens in ``attention_mask`` (any shape): the tokens
    an unpadded engine computes."""
    return int(torch.count_nonzero(attention_mask))


def position_ids(input_ids: torch.Tensor, padding_idx: int) -> torch.Tensor:
    """XLM-R/RoBERTa position ids for ``[N, L]`` token ids: ``padding_idx + k`` for the k-th
    non-pad token of a row (k from 1), ``padding_idx`` for pad tokens (as
    ``create_position_ids_from_input_ids`` in transformers, without a cache)."""
    real = input_ids.ne(padding_idx).to(torch.int32)
    return (torch.cumsum(real, dim=1, dtype=torch.int32) * real).long() + padding_idx


# ------------------------------------------------------------------ packing

@dataclass
class Packing:
    """Where the real tokens of a padded ``[N, L]`` batch are.

    ``indices``: [T] flat positions in ``N * L`` (row-major); ``cu_seqlens``: int32
    [N + 1] on the batch's device; ``lengths``: per-row lengths on the host; ``max_seqlen``;
    ``shape``: (N, L). Rows of length 0 (all padding) take no tokens."""

    indices: torch.Tensor
    cu_seqlens: torch.Tensor
    lengths: tuple[int, ...]
    max_seqlen: int
    shape: tuple[int, int]
    _groups: list | None = field(default=None, repr=False)

    @property
    def total(self) -> int:
        return len(self.indices)

    def groups(self) -> list[tuple[int, torch.Tensor | None]]:
        """[(length, token index [k, length] into the packed tokens, or None when every row
        has this length and the packed tokens are the block as they are)], one per distinct
        non-zero length. Computed once per batch and shared by every layer."""
        if self._groups is None:
            lengths = [n for n in self.lengths if n > 0]
            if lengths and len(set(lengths)) == 1:
                self._groups = [(lengths[0], None)]
            else:
                dev = self.indices.device
                starts: dict[int, list[int]] = {}
                offset = 0
                for n in self.lengths:
                    if n > 0:
                        starts.setdefault(n, []).append(offset)
                    offset += n
                self._groups = [
                    (n, torch.tensor(s, device=dev)[:, None] + torch.arange(n, device=dev))
                    for n, s in sorted(starts.items())
                ]
        return self._groups


def pack(attention_mask: torch.Tensor) -> Packing:
    """The packing of a ``[N, L]`` mask (non-zero: a real token)."""
    if attention_mask.dim() != 2:
        raise ValueError(f"pack takes an [N, L] attention mask, got shape {tuple(attention_mask.shape)}")
    keep = attention_mask.ne(0)
    lengths = keep.sum(dim=1, dtype=torch.int32)
    cu = torch.zeros(len(lengths) + 1, dtype=torch.int32, device=attention_mask.device)
    torch.cumsum(lengths, dim=0, dtype=torch.int32, out=cu[1:])
    host = tuple(lengths.tolist())  # one device -> host sync: the loop shapes need it
    indices = keep.flatten().nonzero().squeeze(1)
    return Packing(indices=indices, cu_seqlens=cu, lengths=host, max_seqlen=max(host, default=0),
                   shape=tuple(attention_mask.shape))


def pack_tensor(x: torch.Tensor, packing: Packing) -> torch.Tensor:
    """``x`` [N, L, ...] -> [T, ...] (the real tokens)."""
    return x.reshape(-1, *x.shape[2:]).index_select(0, packing.indices)


def unpack(packed: torch.Tensor, packing: Packing) -> torch.Tensor:
    """[T, ...] -> [N, L, ...] with zeros at the padding positions."""
    n, length = packing.shape
    out = packed.new_zeros((n * length, *packed.shape[1:]))
    out.index_copy_(0, packing.indices, packed)
    return out.view(n, length, *packed.shape[1:])


# ------------------------------------------------------------------ attention

def varlen_attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, packing: Packing,
                               scale: float | None = None) -> torch.Tensor:
    """Attention of every packed token over the tokens of its own sequence. ``q, k, v``:
    [T, heads, head_dim]; returns [T, heads, head_dim]. One SDPA call per distinct length
    (rows of that length gathered into one block), no mask needed."""
    if packing.total == 0:
        return torch.empty_like(q)
    out = None
    for n, index in packing.groups():
        if index is None:  # every row has length n: the packed tokens are [rows, n, ...]
            blocks = [t.view(-1, n, *t.shape[1:]).transpose(1, 2) for t in (q, k, v)]
            o = F.scaled_dot_product_attention(*blocks, scale=scale)
            return o.transpose(1, 2).reshape(q.shape)
        if out is None:
            out = torch.empty_like(q)
        flat = index.reshape(-1)
        blocks = [t.index_select(0, flat).view(*index.shape, *t.shape[1:]).transpose(1, 2) for t in (q, k, v)]
        o = F.scaled_dot_product_attention(*blocks, scale=scale)  # [rows, heads, n, head_dim]
        out.index_copy_(0, flat, o.transpose(1, 2).reshape(-1, *q.shape[1:]))
    return out


def varlen_attention_cuda(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, packing: Packing,
                          scale: float | None = None) -> torch.Tensor:
    """The same through ``torch.nn.attention.varlen.varlen_attn`` (CUDA, fp16/bf16)."""
    from torch.nn.attention.varlen import varlen_attn

    if packing.total == 0:
        return torch.empty_like(q)
    m = packing.max_seqlen
    return varlen_attn(q, k, v, packing.cu_seqlens, packing.cu_seqlens, m, m, scale=scale)


def varlen_attention(q, k, v, packing: Packing, scale: float | None = None,
                     backend: Literal["varlen", "reference"] = "reference") -> torch.Tensor:
    if backend == "varlen":
        return varlen_attention_cuda(q, k, v, packing, scale)
    if backend == "reference":
        return varlen_attention_reference(q, k, v, packing, scale)
    raise ValueError(f"unknown attention backend {backend!r}; known: {', '.join(ATTENTION_BACKENDS)}")


def varlen_unusable_reason(device: torch.device | str, dtype: torch.dtype) -> str | None:
    """Why ``varlen_attn`` cannot run at ``dtype`` on ``device`` (None: it can)."""
    device = torch.device(device)
    if device.type != "cuda":
        return f"varlen_attn (Flash Attention) needs CUDA, not {device.type}"
    if dtype not in VARLEN_DTYPES:
        return f"varlen_attn (Flash Attention) takes fp16/bf16 only, not {str(dtype).replace('torch.', '')}"
    return None


def probe_varlen(device: torch.device | str, dtype: torch.dtype, heads: int, head_dim: int) -> str | None:
    """Run ``varlen_attn`` once on two tiny sequences and compare with the reference; None
    when it works and agrees, else why not (GPU generation, head size, build)."""
    why = varlen_unusable_reason(device, dtype)
    if why:
        return why
    try:
        gen = torch.Generator(device="cpu").manual_seed(0)
        q, k, v = (torch.randn(7, heads, head_dim, generator=gen).to(device=device, dtype=dtype) for _ in range(3))
        p = pack(torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]], device=device))
        got = varlen_attention_cuda(q, k, v, p).float()
        want = varlen_attention_reference(q.float(), k.float(), v.float(), p)
    except Exception as e:  # noqa: BLE001 - any failure means "use the reference"
        return f"varlen_attn failed here ({type(e).__name__}: {e})"
    err = float((got - want).abs().max())
    if not err < 5e-2:
        return f"varlen_attn disagrees with the reference here (max abs diff {err:.3g})"
    return None


# ------------------------------------------------------------------ the encoder

def _supported_classes() -> tuple[type, ...]:
    from transformers import RobertaModel, XLMRobertaModel

    return (XLMRobertaModel, RobertaModel)


def unsupported_reason(encoder: nn.Module) -> str | None:
    """None if ``encoder`` is an XLM-R/RoBERTa encoder this module can run unpadded, else why
    not (naming the model type)."""
    config = getattr(encoder, "config", None)
    model_type = getattr(config, "model_type", None)
    if not isinstance(encoder, _supported_classes()):
        return (f"the unpadded engine runs XLM-R/RoBERTa encoders only (XLMRobertaModel, RobertaModel); "
                f"this model is {model_type!r} ({type(encoder).__name__})")
    if getattr(config, "is_decoder", False) or getattr(config, "add_cross_attention", False):
        return f"the unpadded engine runs bidirectional encoders; this {model_type!r} model is configured as a decoder"
    pet = getattr(config, "position_embedding_type", "absolute")
    if pet not in (None, "absolute"):
        return f"the unpadded engine supports absolute position embeddings only; this {model_type!r} model has {pet!r}"
    return None


class UnpaddedEncoder(nn.Module):
    """``encoder`` (XLMRobertaModel / RobertaModel, its own modules and weights) run on packed
    tokens. ``forward(input_ids, attention_mask=None, token_type_ids=None)`` -> [N, L, H]
    last hidden states, zeros at padding positions; dtype and device are the encoder's.

    ``attention``: "varlen" | "reference" | "auto" (varlen where ``varlen_unusable_reason``
    finds nothing against it, i.e. CUDA fp16/bf16; decided from the encoder's parameters
    at each call, so moving or casting the module afterwards is fine)."""

    def __init__(self, encoder: nn.Module, attention: Literal["auto", "varlen", "reference"] = "auto"):
        super().__init__()
        why = unsupported_reason(encoder)
        if why:
            raise ValueError(why)
        if attention not in ("auto", *ATTENTION_BACKENDS):
            raise ValueError(f"attention must be 'auto' or one of {ATTENTION_BACKENDS}, not {attention!r}")
        from transformers.activations import ACT2FN

        config = encoder.config
        self.config = config
        self.embeddings = encoder.embeddings
        self.layers = encoder.encoder.layer
        self.attention = attention
        self.padding_idx = self.embeddings.padding_idx
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        act = config.hidden_act
        self.act = ACT2FN[act] if isinstance(act, str) else act

    def backend(self) -> str:
        if self.attention != "auto":
            return self.attention
        p = self.embeddings.word_embeddings.weight
        return "varlen" if varlen_unusable_reason(p.device, p.dtype) is None else "reference"

    def embed(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None, packing: Packing) -> torch.Tensor:
        emb = self.embeddings
        ids = pack_tensor(input_ids, packing)
        pos = pack_tensor(position_ids(input_ids, self.padding_idx), packing)
        x = emb.word_embeddings(ids)
        if token_type_ids is None:
            types = torch.zeros_like(ids)
        else:
            types = pack_tensor(token_type_ids.expand_as(input_ids), packing)
        x = x + emb.token_type_embeddings(types)
        x = x + emb.position_embeddings(pos)
        return emb.LayerNorm(x)

    def layer(self, layer: nn.Module, x: torch.Tensor, packing: Packing, backend: str) -> torch.Tensor:
        sa, so = layer.attention.self, layer.attention.output
        t = x.shape[0]
        q = sa.query(x).view(t, self.num_heads, self.head_dim)
        k = sa.key(x).view(t, self.num_heads, self.head_dim)
        v = sa.value(x).view(t, self.num_heads, self.head_dim)
        a = varlen_attention(q, k, v, packing, scale=getattr(sa, "scaling", None), backend=backend).reshape(t, -1)
        x = so.LayerNorm(so.dense(a) + x)
        h = self.act(layer.intermediate.dense(x))
        return layer.output.LayerNorm(layer.output.dense(h) + x)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        if input_ids.dim() != 2:
            raise ValueError(f"UnpaddedEncoder takes [N, L] input_ids, got shape {tuple(input_ids.shape)}")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        packing = pack(attention_mask)
        backend = self.backend()
        x = self.embed(input_ids, token_type_ids, packing)
        for layer in self.layers:
            x = self.layer(layer, x, packing, backend)
        return unpack(x, packing)
