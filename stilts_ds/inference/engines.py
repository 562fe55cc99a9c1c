"""Inference engines side by side: one interface over DeepSpeed-Inference and PyTorch.

==============  =========================================================================
engine          what runs the encoder
==============  =========================================================================
ds-kernel       ``deepspeed.init_inference`` with ``replace_with_kernel_inject=True``:
                fused CUDA kernels in place of every XLMRobertaLayer (see kernel_inject);
                optional CUDA graphs (``enable_cuda_graph``) for one fixed shape
ds              ``deepspeed.init_inference`` without injection (DeepSpeed's engine around
                the unchanged transformers model, SDPA attention)
torch-eager     transformers, ``attn_implementation="eager"``
torch-sdpa      transformers, ``attn_implementation="sdpa"``
torch-compile   ``torch.compile`` of the SDPA model (inductor unless told otherwise); with
                ``static_buckets``: every batch padded up to a bucket shape, compiled with
                ``dynamic=False`` (CUDA: ``mode="reduce-overhead"``, CUDA graphs)
torch-compile-  torch-compile with ``static_buckets=True`` as an engine of its own, so a
static          sweep times both and tables name them apart
unpadded        the XLM-R/RoBERTa encoder's own modules run on packed tokens, no padding
                computed (``stilts_ds.inference.unpadded``): attention within each sequence
                via ``varlen_attn`` on CUDA fp16/bf16, per-length SDPA otherwise
==============  =========================================================================

Precisions: ``fp32``, ``fp16``, ``bf16`` (the encoder's weights and activations). DeepSpeed
settings come from ``ds_configs/inference_<precision>.json`` (dtype, kernel injection,
CUDA graphs, ``tensor_parallel.tp_size`` = 1). The file is the ds-kernel setting; the ds
engine uses it with ``replace_with_kernel_inject`` and ``enable_cuda_graph`` off.

Usage::

    from stilts_ds.inference.engines import build_engine

    engine = build_engine("ds-kernel", model, "fp16", "cuda")   # model: MultiTaskModel or AutoModel
    engine.status, engine.reason, engine.replaced               # "ok", None, {"XLMRobertaLayer": 24}
    engine.warmup(batch_size=64, seq_len=128)                   # first call at the largest shape
    out = engine.forward(batch.tensors, task="xnli")            # {"last_hidden_state", "logits"}
    engine.close()

An engine never runs silently as something else: a combination that cannot run here has
``status == "unavailable"`` and a ``reason``; one that broke while building (an injection
that replaced nothing, an out-of-memory) has ``status == "failed"``; ``forward`` on either
raises ``EngineUnavailableError``. ``parity.gate`` marks an engine failed when its outputs
drift from the fp32 PyTorch reference.

The encoder runs in the engine; the task head stays in PyTorch, in fp32, on the engine's
device (hidden states are cast to fp32 first), so every engine feeds the head the same way
and the head adds the same small cost to all of them. Each engine works on its own copy of
the encoder and heads: the caller's model is never converted or injected.

Availability (``availability(name, precision, device)``)::

    CUDA: every engine, every precision (ds-kernel fp32 is DeepSpeed's fp32 kernel).
    CPU:  torch-eager, torch-sdpa, torch-compile(-static), unpadded: fp32, bf16, fp16 (fp16 runs but is slow:
          most CPUs have no fp16 arithmetic, numbers are for checking, not for the paper)
          ds: fp32, bf16; fp16 is unavailable: DeepSpeed's CPU accelerator lists
          supported_dtypes() = [float32, bfloat16] and init_inference refuses the rest
          ds-kernel: unavailable, "DeepSpeed inference kernels need CUDA"
    unpadded, any device: unavailable for a model that is not an XLMRobertaModel/RobertaModel
          encoder (the reason names its model type); checked when it is built.

Static shape buckets (torch-compile only; other engines ignore the option)::

    engine = build_engine("torch-compile", model, "fp16", "cuda", static_buckets=True)
    # lengths padded up to 16, 32, ..., 256, 512 (default_static_buckets(config)); rows
    # up to the next power of two; results cut back. static_buckets=[64, 128, 256] picks
    # the length buckets; a longer batch raises.

Process-wide state: DeepSpeed keeps one kernel workspace per process
(``DeepSpeedTransformerInference.workspace``) and frees it when the next ``init_inference``
starts, so only one ds-kernel engine is usable at a time: building another ds-kernel engine
or a ds engine (also ``init_inference``) closes the live ds-kernel engine first, with a
reason. ``torch-compile`` resets dynamo's caches when it is built (compiled code is keyed by
the model's code objects, shared by every copy) and fails loudly rather than falling back to
eager when dynamo's recompile limit is hit (with static buckets the limit is raised to the
number of bucket shapes).
"""
from __future__ import annotations

import copy
import json
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from stilts_ds import shipped
from stilts_ds.errors import StiltsError
from stilts_ds.modeling.multitask import ENCODER_INPUTS, MultiTaskModel
from stilts_ds.precision import PRECISIONS as PRECISION_NAMES
from stilts_ds.tasks.formats import format_of

# The torch dtype of each of stilts_ds.precision.PRECISIONS (the one list of precision names).
PRECISIONS: dict[str, torch.dtype] = dict(zip(PRECISION_NAMES, (torch.float32, torch.float16, torch.bfloat16),
                                              strict=True))
STATUSES = ("ok", "unavailable", "failed")
TARGET_KEYS = ("labels", "start_positions", "end_positions")  # targets make heads compute a loss
DEFAULT_DS_CONFIG_DIR = shipped.ds_config_dir()  # the checkout's ds_configs/, or the wheel's copy


class EngineUnavailableError(StiltsError, RuntimeError):
    """``forward`` on an engine whose status is not "ok" (or that was closed)."""


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def resolve_precision(precision: str) -> torch.dtype:
    try:
        return PRECISIONS[precision]
    except KeyError:
        raise StiltsError(f"unknown precision {precision!r}; known: {', '.join(PRECISIONS)}") from None


def load_ds_inference_config(precision: str, ds_config_dir: str | Path | None = None) -> dict:
    """``<ds_config_dir>/inference_<precision>.json`` (default: the repository's ds_configs),
    checked: its dtype must be ``precision``, its tp_size 1."""
    resolve_precision(precision)
    path = Path(ds_config_dir or DEFAULT_DS_CONFIG_DIR) / f"inference_{precision}.json"
    if not path.is_file():
        raise StiltsError(f"no DeepSpeed inference config at {path}; pass ds_config_dir=<folder with inference_{precision}.json>")
    cfg = json.loads(path.read_text())
    from deepspeed.inference.config import DtypeEnum

    declared = cfg.get("dtype")
    if declared is None or DtypeEnum.from_str(str(declared)).value[0] != PRECISIONS[precision]:
        raise StiltsError(f"{path}: dtype {declared!r} contradicts the file name's precision {precision!r}")
    tp = (cfg.get("tensor_parallel") or {}).get("tp_size", 1)
    if tp != 1:
        raise StiltsError(f"{path}: tensor_parallel.tp_size={tp}; stilts-ds runs one engine per GPU (tp_size 1)")
    return cfg


# ------------------------------------------------------------------ availability

def _device(device) -> torch.device:
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device() if torch.cuda.is_available() else 0)
    return dev


def _torch_availability(precision: str, device: torch.device) -> str | None:
    if device.type == "cuda" and not torch.cuda.is_available():
        return "no CUDA device here"
    if device.type == "cuda" and precision == "bf16" and not torch.cuda.is_bf16_supported():
        return "this GPU has no bf16 support"
    if device.type not in ("cpu", "cuda"):
        return f"device type {device.type!r} is not supported by stilts-ds engines"
    return None


def _ds_availability(precision: str, device: torch.device) -> str | None:
    why = _torch_availability(precision, device)
    if why:
        return why
    from deepspeed.accelerator import get_accelerator

    acc = get_accelerator()
    if acc.device_name() != device.type:
        return f"DeepSpeed runs on its accelerator ({acc.device_name()}), not on {device.type}"
    if device.type == "cuda" and device.index != torch.cuda.current_device():
        # init_inference moves the model to the *current* device, whatever was asked.
        return (f"DeepSpeed places the model on the current CUDA device (cuda:{torch.cuda.current_device()}), "
                f"not {device}; call torch.cuda.set_device({device.index}) first")
    if PRECISIONS[precision] not in acc.supported_dtypes():
        supported = ", ".join(_dtype_name(d) for d in acc.supported_dtypes())
        return f"DeepSpeed's {acc.device_name()} accelerator does not support {precision} (supported: {supported})"
    return None


def _kernel_availability(precision: str, device: torch.device) -> str | None:
    from stilts_ds.inference.kernel_inject import KERNELS_NEED_CUDA, kernels_available

    if device.type != "cuda":
        return KERNELS_NEED_CUDA
    ok, why = kernels_available()
    if not ok:
        return why
    return _ds_availability(precision, device)


def _unpadded_model_check(encoder: nn.Module) -> str | None:
    from stilts_ds.inference.unpadded import unsupported_reason

    return unsupported_reason(encoder)


@dataclass(frozen=True)
class EngineSpec:
    name: str
    description: str
    availability: Callable[[str, torch.device], str | None]  # None: available; else why not
    # For engines that run only some architectures: the encoder -> None, or why not
    # (checked by build_engine before anything is copied; the engine is then "unavailable").
    model_check: Callable[[nn.Module], str | None] | None = None


ENGINES: dict[str, EngineSpec] = {
    "ds-kernel": EngineSpec("ds-kernel", "DeepSpeed-Inference, fused kernels injected", _kernel_availability),
    "ds": EngineSpec("ds", "DeepSpeed-Inference engine, no injection", _ds_availability),
    "torch-eager": EngineSpec("torch-eager", "transformers, eager attention", _torch_availability),
    "torch-sdpa": EngineSpec("torch-sdpa", "transformers, SDPA attention", _torch_availability),
    "torch-compile": EngineSpec("torch-compile", "torch.compile of the SDPA model", _torch_availability),
    "torch-compile-static": EngineSpec("torch-compile-static",
                                       "torch.compile of the SDPA model, static shape buckets (CUDA graphs on a GPU)",
                                       _torch_availability),
    "unpadded": EngineSpec("unpadded", "XLM-R encoder on packed tokens, varlen attention", _torch_availability,
                           model_check=_unpadded_model_check),
}


def availability(name: str, precision: str, device="cpu") -> tuple[bool, str | None]:
    """(True, None) if engine ``name`` can run ``precision`` on ``device`` here, else
    (False, reason)."""
    if name not in ENGINES:
        raise StiltsError(f"unknown engine {name!r}; known: {', '.join(ENGINES)}")
    resolve_precision(precision)
    why = ENGINES[name].availability(precision, _device(device))
    return why is None, why


def availability_matrix(device="cpu") -> dict[str, dict[str, str | None]]:
    """{engine: {precision: None if available else reason}} for ``device``."""
    return {name: {p: availability(name, p, device)[1] for p in PRECISIONS} for name in ENGINES}


# ------------------------------------------------------------------ the engine

_LIVE_KERNEL_ENGINE: "weakref.ref[Engine] | None" = None


def pad_batch(inputs: Mapping[str, torch.Tensor], shape: tuple[int, int], pad_token_id: int, *,
              unmask_added_rows: bool = False) -> dict[str, torch.Tensor]:
    """Encoder inputs ``[n, l]`` padded up to ``shape`` (rows, tokens): pad tokens, mask and
    token types 0 (a mask of ones is added first when there is none, so the padding added
    here is masked). ``unmask_added_rows``: each added row keeps its first token unmasked, so
    no row is fully masked. For engines that run fixed shapes (a CUDA graph's, static buckets)."""
    if "attention_mask" not in inputs:
        inputs = dict(inputs, attention_mask=torch.ones_like(inputs["input_ids"]))
    rows, cols = inputs["input_ids"].shape
    padded = {}
    for k, v in inputs.items():
        full = torch.full(shape, pad_token_id if k == "input_ids" else 0, dtype=v.dtype, device=v.device)
        full[:rows, :cols] = v
        if unmask_added_rows and k == "attention_mask":
            full[rows:, 0] = 1
        padded[k] = full
    return padded


class Engine:
    """One encoder behind one inference engine at one precision on one device.

    ``computes_no_padding``: True for an engine that skips padding tokens altogether
    (``unpadded``); timing then reports its padding share as 0.

    Attributes: ``name``, ``precision``, ``dtype``, ``device``, ``status`` ("ok" |
    "unavailable" | "failed"), ``reason`` (None when ok), ``replaced`` ({class name: count}
    of modules the engine swapped out; empty for engines that swap nothing), ``notes``
    (known numeric differences), ``tasks`` (head names available to ``forward``)."""

    computes_no_padding = False
    padded_shape: Callable[[int, int], tuple[int, int]] | None = None  # rows, tokens -> the shape it computes

    def computed_shape(self, rows: int, tokens: int) -> tuple[int, int]:
        """The (rows, tokens) the engine computes for a batch of ``rows`` x ``tokens``: larger
        than the batch for an engine that pads further (static buckets, a CUDA graph's
        captured shape), the batch itself otherwise. Timing's padding share counts it."""
        if self._fixed_shape and self.max_shape is not None:
            return self.max_shape
        if self.padded_shape is not None:
            return self.padded_shape(rows, tokens)
        return rows, tokens

    def __init__(self, name: str, precision: str, device: torch.device, *, status: str = "ok",
                 reason: str | None = None, encode: Callable[[dict], torch.Tensor] | None = None,
                 heads: nn.ModuleDict | None = None, task_heads: Mapping[str, str] | None = None,
                 task_formats: Mapping[str, str] | None = None, replaced: Mapping[str, int] | None = None,
                 notes: tuple[str, ...] = (), vocab_size: int | None = None, pad_token_id: int = 1,
                 on_close: Callable[[], None] | None = None, fixed_shape: bool = False,
                 shape_limited: bool = False, max_tokens: int | None = None):
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, not {status!r}")
        self.name = name
        self.precision = precision
        self.dtype = PRECISIONS[precision]
        self.device = device
        self.status = status
        self.reason = reason
        self.replaced = dict(replaced or {})
        self.notes = tuple(notes)
        self.error: BaseException | None = None  # the exception behind a "failed" build
        self._encode_fn = encode
        self._heads = heads
        self._task_heads = dict(task_heads or {})
        self._task_formats = dict(task_formats or {})
        self._vocab_size = vocab_size
        self._pad_token_id = pad_token_id
        self._on_close = on_close
        self._closed = False
        # ds-kernel: DeepSpeed sizes its kernel workspace for the batch of the first call and
        # for up to max_out_tokens tokens (shape_limited, max_tokens); with CUDA graphs every
        # call is padded to the captured shape, the first call's (fixed_shape).
        self._shape_limited = shape_limited or fixed_shape
        self._fixed_shape = fixed_shape
        self._max_tokens = max_tokens
        self.max_shape: tuple[int, int] | None = None  # (rows, tokens) of the first call

    # -- info
    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(self._task_heads)

    def task_format(self, task: str | None) -> str | None:
        return None if task is None else self._task_formats.get(task)

    def info(self) -> dict[str, Any]:
        return {"engine": self.name, "precision": self.precision, "dtype": self.precision,
                "device": str(self.device), "status": self.status, "reason": self.reason,
                "replaced": dict(self.replaced), "notes": list(self.notes)}

    def __repr__(self) -> str:
        why = f", reason={self.reason!r}" if self.reason else ""
        return f"Engine({self.name!r}, {self.precision}, {self.device}, status={self.status!r}{why})"

    def mark_failed(self, reason: str) -> None:
        """Take the engine out of service (parity gate, runtime error) with a reason."""
        self.status = "failed"
        self.reason = reason

    # -- running
    def _check_usable(self) -> None:
        if self._closed:
            raise EngineUnavailableError(f"engine {self.name} {self.precision} was closed ({self.reason or 'close()'})")
        if self.status != "ok":
            raise EngineUnavailableError(f"engine {self.name} {self.precision} is {self.status}: {self.reason}")

    def encode(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Last hidden states ``[N, L, H]`` (engine dtype) for encoder inputs ``[N, L]``
        (input_ids, attention_mask, token_type_ids), moved to the engine's device."""
        self._check_usable()
        inputs = {k: v.to(self.device, non_blocking=True) for k, v in inputs.items() if k in ENCODER_INPUTS}
        if "input_ids" not in inputs:
            raise ValueError(f"encoder inputs need input_ids (got {', '.join(inputs) or 'nothing'})")
        shape = tuple(inputs["input_ids"].shape)
        if self._shape_limited:
            self._check_shape(shape)
        with torch.no_grad():
            if self._fixed_shape and shape != self.max_shape:
                return self._encode_padded(inputs, shape)
            return self._encode_fn(inputs)

    def _check_shape(self, shape: tuple[int, int]) -> None:
        if self._max_tokens is not None and shape[1] > self._max_tokens:
            raise EngineUnavailableError(
                f"{self.name}: {shape[1]} tokens exceed the kernel workspace's {self._max_tokens} (max_out_tokens)")
        if self.max_shape is None:
            self.max_shape = shape
            return
        rows_over = shape[0] > self.max_shape[0]
        if rows_over or (self._fixed_shape and shape[1] > self.max_shape[1]):
            what = "DeepSpeed's CUDA graph was captured" if self._fixed_shape else "DeepSpeed sized its kernel workspace"
            raise EngineUnavailableError(
                f"{self.name}: batch {shape} is larger than {self.max_shape}: {what} at the first call; "
                "call warmup() at the largest shape first")

    def _encode_padded(self, inputs: dict, shape: tuple[int, int]) -> torch.Tensor:
        # CUDA graphs replay one captured shape: pad rows and columns up to it, run, cut the
        # result back.
        return self._encode_fn(pad_batch(inputs, self.max_shape, self._pad_token_id))[: shape[0], : shape[1]]

    def forward(self, tensors, task: str | None = None) -> dict[str, torch.Tensor]:
        """Run a batch: ``tensors`` is ``Batch.tensors`` (or a ``Batch``). Returns
        ``{"last_hidden_state": [N, L, H]}`` (multiple choice: N = B x C rows, engine dtype)
        plus, with ``task``, the head's outputs (fp32: logits, or start/end logits)."""
        tensors = getattr(tensors, "tensors", tensors)
        fmt = self.task_format(task)
        if task is not None and task not in self._task_heads:
            raise StiltsError(f"engine {self.name} has no head for task {task!r}; it knows: {', '.join(self._task_heads) or 'none (bare encoder)'}")
        inputs = {k: tensors[k] for k in ENCODER_INPUTS if k in tensors}
        if fmt is not None:  # shaped as the encoder takes them, as MultiTaskModel does
            inputs = dict(format_of(fmt).model_inputs(inputs))
        elif "input_ids" in inputs and inputs["input_ids"].dim() > 2:  # a bare encoder fed choices
            inputs = {k: v.reshape(-1, v.shape[-1]) for k, v in inputs.items()}
        hidden = self.encode(inputs)
        out = {"last_hidden_state": hidden}
        if task is not None:
            head = self._heads[self._task_heads[task]]
            head_tensors = {k: v.to(self.device, non_blocking=True) for k, v in tensors.items()
                            if k not in TARGET_KEYS and torch.is_tensor(v)}
            with torch.no_grad():
                out.update(head(hidden.float(), head_tensors))
        return out

    __call__ = forward

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def warmup(self, batch_size: int, seq_len: int, iters: int = 3, seed: int = 0) -> None:
        """Run ``iters`` unpadded batches of ``batch_size`` x ``seq_len`` random tokens.
        Call it first, at the largest shape you will run: DeepSpeed's kernel workspace is
        sized for the first call's batch, a CUDA graph is captured at the first call's
        shape, allocators and autotuners settle."""
        self._check_usable()
        vocab = self._vocab_size or 1000
        gen = torch.Generator().manual_seed(seed)
        low = min(5, vocab - 1)  # skip special tokens (XLM-R: 0-3) where the vocabulary allows
        ids = torch.randint(low, vocab, (batch_size, seq_len), generator=gen)
        batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        for _ in range(max(1, iters)):
            self.encode(batch)
        self.synchronize()

    def close(self) -> None:
        """Release the engine's model and device memory; the engine refuses work after."""
        if self._closed:
            return
        self._closed = True
        if self._on_close is not None:
            self._on_close()
        self._encode_fn = None
        self._heads = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


# ------------------------------------------------------------------ building

def _split_model(model: nn.Module):
    """(encoder, heads, task -> head name, task -> format) of a MultiTaskModel, or the
    encoder alone for a bare transformers model."""
    if isinstance(model, MultiTaskModel):
        formats = {t: spec.format for t, spec in model.task_specs.items()}
        return model.encoder, model.heads, dict(model.task_heads), formats
    if not hasattr(model, "config"):
        raise TypeError(f"expected a MultiTaskModel or a transformers encoder, got {type(model).__name__}")
    return model, None, {}, {}


def build_engine(name: str, model: nn.Module, precision: str = "fp32", device="cpu", *,
                 ds_config_dir: str | Path | None = None, enable_cuda_graph: bool | None = None,
                 compile_options: Mapping[str, Any] | None = None,
                 static_buckets: Sequence[int] | bool | None = None) -> Engine:
    """An ``Engine`` named ``name`` over a copy of ``model``'s encoder (and heads).

    ``precision``: fp32 | fp16 | bf16. ``device``: "cpu", "cuda", "cuda:1", ... DeepSpeed
    settings come from ``<ds_config_dir>/inference_<precision>.json``;
    ``enable_cuda_graph`` overrides that file's value for ds-kernel.
    ``compile_options`` go to ``torch.compile`` (default ``{"backend": "inductor"}``).
    ``static_buckets`` (torch-compile only, ignored by the others): sequence-length buckets
    (``True``: ``default_static_buckets(config)``); each batch is padded to the next length
    bucket and its rows to the next power of two, compiled with ``dynamic=False``.
    Never raises for a combination that cannot run (status "unavailable") or a build that
    breaks (status "failed", exception in ``engine.error``); raises ``StiltsError`` for an
    unknown engine or precision, or malformed ``static_buckets``."""
    dev = _device(device)
    ok, why = availability(name, precision, dev)
    encoder, heads, task_heads, formats = _split_model(model)
    buckets = _static_buckets(static_buckets, encoder.config)
    pad = getattr(encoder.config, "pad_token_id", None)
    common = dict(task_heads=task_heads, task_formats=formats, vocab_size=getattr(encoder.config, "vocab_size", None),
                  pad_token_id=1 if pad is None else pad)
    if ok and ENGINES[name].model_check is not None:
        why = ENGINES[name].model_check(encoder)
        ok = why is None
    if not ok:
        return Engine(name, precision, dev, status="unavailable", reason=why, **common)
    dtype = PRECISIONS[precision]
    try:
        head_copy = copy.deepcopy(heads).to(dev).float().eval() if heads is not None else None
        work = copy.deepcopy(encoder).eval()
        builder = _BUILDERS[name]
        return builder(work, precision, dtype, dev, head_copy, common, ds_config_dir=ds_config_dir,
                       enable_cuda_graph=enable_cuda_graph, compile_options=compile_options,
                       static_buckets=buckets)
    except Exception as e:  # noqa: BLE001 - a broken build is a result ("failed"), not a crash of the sweep
        from stilts_ds.inference.kernel_inject import NothingReplacedError

        kind = "injection replaced nothing" if isinstance(e, NothingReplacedError) else "build failed"
        engine = Engine(name, precision, dev, status="failed", reason=f"{kind}: {type(e).__name__}: {e}", **common)
        engine.error = e
        return engine


def _hf_encode(module: Callable) -> Callable[[dict], torch.Tensor]:
    def encode(inputs: dict) -> torch.Tensor:
        return module(**inputs, return_dict=True).last_hidden_state
    return encode


def _set_attention(encoder: nn.Module, impl: str) -> None:
    if hasattr(encoder, "set_attn_implementation"):
        encoder.set_attn_implementation(impl)
    else:
        encoder.config._attn_implementation = impl


def _build_torch(impl: str):
    def build(encoder, precision, dtype, dev, heads, common, **_):
        _set_attention(encoder, impl)
        encoder.to(device=dev, dtype=dtype)
        return Engine(f"torch-{impl}", precision, dev, encode=_hf_encode(encoder), heads=heads, **common)
    return build


MIN_STATIC_BUCKET = 16
ROW_BUCKET_SLOTS = 16  # row buckets 1, 2, 4, ..., 2**15 a compiled engine may meet


def default_static_buckets(config) -> tuple[int, ...]:
    """Powers of two from 16 up to the model's longest input, and that length itself
    (XLM-R: 16, 32, 64, 128, 256, 512; RoBERTa-style positions start after the padding
    index, so 514 position embeddings hold 512 tokens)."""
    n_pos = int(getattr(config, "max_position_embeddings", 514))
    pad = getattr(config, "pad_token_id", None)
    roberta_positions = getattr(config, "model_type", "") in ("xlm-roberta", "roberta") and pad is not None
    longest = n_pos - (pad + 1 if roberta_positions else 0)
    out, b = [], MIN_STATIC_BUCKET
    while b < longest:
        out.append(b)
        b *= 2
    return tuple(out) + (longest,)


def _static_buckets(spec: Sequence[int] | bool | None, config) -> tuple[int, ...] | None:
    if spec is None or spec is False:
        return None
    if spec is True:
        return default_static_buckets(config)
    try:
        buckets = sorted({int(b) for b in spec})
    except (TypeError, ValueError):
        raise StiltsError(f"static_buckets must be True or a list of sequence lengths, not {spec!r}") from None
    if not buckets or buckets[0] < 1:
        raise StiltsError(f"static_buckets must be positive sequence lengths, got {spec!r}")
    return tuple(buckets)


def _next_bucket(n: int, buckets: Sequence[int]) -> int | None:
    return next((b for b in buckets if b >= n), None)


def _row_bucket(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()


def _bucket_padded(encode: Callable[[dict], torch.Tensor], buckets: tuple[int, ...],
                   pad_token_id: int) -> Callable[[dict], torch.Tensor]:
    """``encode`` fed only bucket shapes: rows padded to the next power of two, tokens to the
    next length bucket (``pad_batch``; added rows keep one token unmasked so no row is fully
    masked), the result cut back and copied (CUDA graphs reuse their output buffer)."""

    def encode_bucketed(inputs: dict) -> torch.Tensor:
        rows, cols = inputs["input_ids"].shape
        length = _next_bucket(cols, buckets)
        if length is None:
            raise StiltsError(f"torch-compile: {cols} tokens exceed the largest static bucket ({buckets[-1]})")
        shape = (_row_bucket(rows), length)
        padded = inputs if shape == (rows, cols) else pad_batch(inputs, shape, pad_token_id, unmask_added_rows=True)
        return encode(padded)[:rows, :cols].clone()

    return encode_bucketed


def _build_compile(encoder, precision, dtype, dev, heads, common, *, compile_options=None, static_buckets=None,
                   name="torch-compile", **_):
    import torch._dynamo

    _set_attention(encoder, "sdpa")
    encoder.to(device=dev, dtype=dtype)
    # Compiled code and recompile counts are keyed by code objects shared by every copy of
    # the model; start clean so an earlier engine's graphs neither serve nor crowd this one.
    torch._dynamo.reset()
    options = {"backend": "inductor", **dict(compile_options or {})}
    patch: dict[str, Any] = {"fail_on_recompile_limit_hit": True}
    notes: tuple[str, ...] = ()
    if static_buckets:
        options.setdefault("dynamic", False)
        graphs = dev.type == "cuda" and options["backend"] == "inductor" and not ({"mode", "options"} & set(options))
        if graphs:
            options["mode"] = "reduce-overhead"
        # One compiled graph per (row bucket, length bucket): let dynamo keep them all.
        limit = len(static_buckets) * ROW_BUCKET_SLOTS
        patch.update(recompile_limit=max(limit, torch._dynamo.config.recompile_limit),
                     accumulated_recompile_limit=max(limit, torch._dynamo.config.accumulated_recompile_limit))
        notes = (f"static shape buckets: sequence length padded up to {', '.join(map(str, static_buckets))}; "
                 "rows up to the next power of two; results cut back" + ("; CUDA graphs (reduce-overhead)" if graphs else ""),)
    compiled = torch.compile(encoder, **options)
    inner = _hf_encode(compiled)
    if static_buckets:
        inner = _bucket_padded(inner, static_buckets, common["pad_token_id"])

    def encode(inputs: dict) -> torch.Tensor:
        # Past the recompile limit dynamo would quietly run eager code: raise instead.
        with torch._dynamo.config.patch(**patch):
            return inner(inputs)

    notes = (f"torch.compile({', '.join(f'{k}={v!r}' for k, v in options.items())}) of the SDPA model",) + notes
    engine = Engine(name, precision, dev, encode=encode, heads=heads, notes=notes, **common)
    if static_buckets:
        engine.padded_shape = lambda rows, tokens: (_row_bucket(rows), _next_bucket(tokens, static_buckets) or tokens)
    return engine


def _build_compile_static(encoder, precision, dtype, dev, heads, common, *, static_buckets=None, **kwargs):
    # torch-compile with static shape buckets as an engine of its own, so a sweep can time it
    # beside the dynamic one and every table names it apart.
    buckets = static_buckets or default_static_buckets(encoder.config)
    return _build_compile(encoder, precision, dtype, dev, heads, common, static_buckets=buckets,
                          name="torch-compile-static", **kwargs)


UNPADDED_NOTE = "packed tokens, no padding computed; attention: varlen_attn (CUDA) / per-length SDPA reference (CPU)"


def _build_unpadded(encoder, precision, dtype, dev, heads, common, **_):
    from stilts_ds.inference.unpadded import UnpaddedEncoder, probe_varlen

    encoder.to(device=dev, dtype=dtype)
    cfg = encoder.config
    why = probe_varlen(dev, dtype, cfg.num_attention_heads, cfg.hidden_size // cfg.num_attention_heads)
    backend = "reference" if why else "varlen"
    unpadded = UnpaddedEncoder(encoder, attention=backend).eval()
    used = ("attention here: varlen_attn" if backend == "varlen" else
            f"attention here: per-length SDPA reference ({why})")

    def encode(inputs: dict) -> torch.Tensor:
        return unpadded(inputs["input_ids"], inputs.get("attention_mask"), inputs.get("token_type_ids"))

    engine = Engine("unpadded", precision, dev, encode=encode, heads=heads, notes=(UNPADDED_NOTE, used), **common)
    engine.computes_no_padding = True  # timing reports its padding share as 0
    return engine


def _register_live_kernel_engine(engine: Engine) -> None:
    """Make ``engine`` the one whose kernel workspace the next ``init_inference`` frees."""
    global _LIVE_KERNEL_ENGINE
    _LIVE_KERNEL_ENGINE = weakref.ref(engine)


def _close_live_kernel_engine(reason: str) -> Engine | None:
    """Close the live ds-kernel engine, if any, before a DeepSpeed ``init_inference``: it
    frees the process-wide kernel workspace the engine runs in. Returns the engine closed."""
    global _LIVE_KERNEL_ENGINE
    previous = _LIVE_KERNEL_ENGINE() if _LIVE_KERNEL_ENGINE is not None else None
    _LIVE_KERNEL_ENGINE = None
    if previous is None or previous._closed:
        return None
    previous.reason = previous.reason or reason
    previous.close()
    return previous


def _build_ds(encoder, precision, dtype, dev, heads, common, *, ds_config_dir=None, **_):
    import deepspeed

    cfg = load_ds_inference_config(precision, ds_config_dir)
    cfg.update(replace_with_kernel_inject=False, enable_cuda_graph=False)
    _close_live_kernel_engine("closed: a ds engine was built (deepspeed.init_inference frees the process-wide "
                              "kernel workspace)")
    _set_attention(encoder, "sdpa")
    ds = deepspeed.init_inference(encoder, config=cfg)  # moves the model to DeepSpeed's device, casts to dtype
    notes = ("DeepSpeed InferenceEngine around the transformers model (SDPA attention), no injection",)
    return Engine("ds", precision, dev, encode=_hf_encode(ds), heads=heads, notes=notes, **common)


def _build_ds_kernel(encoder, precision, dtype, dev, heads, common, *, ds_config_dir=None,
                     enable_cuda_graph=None, **_):
    from stilts_ds.inference import kernel_inject as ki

    cfg = load_ds_inference_config(precision, ds_config_dir)
    if enable_cuda_graph is not None:
        cfg["enable_cuda_graph"] = bool(enable_cuda_graph)
    graphs = bool(cfg.get("enable_cuda_graph", False))
    # DeepSpeed's next init_inference frees the process-wide kernel workspace: the engine
    # built before this one stops working, so close it explicitly.
    _close_live_kernel_engine("closed: another ds-kernel engine was built (one kernel workspace per process)")
    ds, report = ki.inject_kernels(encoder, cfg)

    def encode(inputs: dict) -> torch.Tensor:
        mask = inputs.get("attention_mask")
        if mask is None:
            mask = torch.ones_like(inputs["input_ids"])
        call = dict(inputs, attention_mask=ki.key_padding_mask(mask, dtype))
        hidden = ds(**call, return_dict=True).last_hidden_state
        # A CUDA graph replays into the same output buffer every call: copy it out.
        return hidden.clone() if graphs else hidden

    def release():
        from deepspeed.model_implementations.transformers.ds_transformer import DeepSpeedTransformerInference

        if DeepSpeedTransformerInference.workspace is not None and hasattr(ds, "destroy"):
            ds.destroy()

    notes = report.notes + (("CUDA graph: every batch is padded to the warm-up shape",) if graphs else ())
    engine = Engine("ds-kernel", precision, dev, encode=encode, heads=heads, replaced=report.replaced,
                    notes=notes, on_close=release, shape_limited=True, fixed_shape=graphs,
                    max_tokens=int(cfg.get("max_out_tokens", 1024)), **common)
    _register_live_kernel_engine(engine)
    return engine


_BUILDERS = {
    "torch-eager": _build_torch("eager"),
    "torch-sdpa": _build_torch("sdpa"),
    "torch-compile": _build_compile,
    "torch-compile-static": _build_compile_static,
    "ds": _build_ds,
    "ds-kernel": _build_ds_kernel,
    "unpadded": _build_unpadded,
}
