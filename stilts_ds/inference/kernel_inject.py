"""DeepSpeed-Inference kernel injection for XLM-R (deepspeed 0.19.8, transformers 5.x).

``deepspeed.init_inference(model, replace_with_kernel_inject=True)`` swaps every layer whose
class its policies know for a fused-kernel layer. Four things stand between that and a
correct XLM-R engine, and this module handles each of them explicitly:

1. **Matching.** The BERT policy (``HFBertLayerPolicy``) matches ``BertLayer`` and
   ``RobertaLayer`` only; transformers' ``XLMRobertaLayer`` is a separate class (same
   structure), so injection replaces nothing and raises nothing. ``layer_classes_registered``
   adds it to the policy's class list for the duration of one ``init_inference`` call and
   restores the list afterwards (``register_layer_class`` does it for good). This is the
   least invasive hook 0.19.8 has: ``replace_module`` reads ``policy._orig_layer_class`` (a
   class attribute the policy fills on first use) to build its class -> policy table, and
   maps a policy to its kernel container by exact policy type, so a subclassed policy
   would not be injected at all, and ``injection_policy={...}`` is refused together with
   kernel injection.
2. **Output type.** The injected BERT layer returns a tuple ``(hidden, mask)``; the
   transformers 5 encoder passes whatever a layer returns on as the next layer's hidden
   states. ``KernelLayerAdapter`` wraps every injected layer and returns the tensor.
3. **Mask.** The kernel's softmax adds the mask to the scores, reading the mask's memory
   as its own dtype (csrc/transformer/inference/csrc/softmax.cu, pt_binding.cpp): SDPA's
   boolean mask becomes garbage, and so would a float32 mask under an fp16 kernel. It
   takes a 4-D mask's row stride from dim 2, so ``[B, 1, L, L]`` and ``[B, 1, 1, L]``
   both index correctly once they are additive and in the kernel's dtype.
   ``force_eager_attention`` makes the model build eager's additive float masks (in the
   model's dtype), ``key_padding_mask`` builds the compact ``[B, 1, 1, L]`` mask an engine
   passes in (transformers hands a 4-D mask through as is), and the adapter converts
   whatever reaches a layer with ``kernel_attention_mask``.
4. **Accounting.** ``inject_kernels`` counts the layers of each matched class before and
   after, reports ``{class name: count}`` replaced, and raises ``NothingReplacedError``
   when nothing was: a silent no-op would time plain PyTorch under the kernel's name.

Two differences remain and are left to the parity gate (``stilts_ds.inference.parity``):
the fused GELU is the tanh approximation (XLM-R's ``hidden_act="gelu"`` is the erf form;
the two differ by at most 4.8e-4 per activation), and the kernel's own summation order.
The kernel workspace is sized for the first forward call's batch (and up to
``max_out_tokens`` tokens), so the first call must be at the largest batch
(``stilts_ds.inference.engines.Engine.warmup``). Intermediate hidden states are not
available through an injected model: transformers 5 records ``output_hidden_states`` with
hooks on ``XLMRobertaLayer`` modules, which are gone (retrieval's layer-14 embeddings need
a PyTorch engine). The kernels exist for CUDA only; on a CPU, ``kernels_available()`` says
so and nothing here is called.

Usage (what ``engines.build_engine("ds-kernel", ...)`` does)::

    from stilts_ds.inference import kernel_inject as ki

    ok, reason = ki.kernels_available()          # (False, "DeepSpeed inference kernels need CUDA") on a CPU
    engine, report = ki.inject_kernels(encoder, {"dtype": "fp16", "tensor_parallel": {"tp_size": 1}})
    report.replaced                               # {"XLMRobertaLayer": 24}
    mask = ki.key_padding_mask(batch["attention_mask"], torch.float16)   # [B, 1, 1, L] additive
    hidden = engine(input_ids=batch["input_ids"], attention_mask=mask).last_hidden_state

Using ``deepspeed.init_inference`` yourself: wrap the call in ``layer_classes_registered()``
and run ``adapt_injected_layers(engine.module)`` after it.
"""
from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import torch
from torch import nn

from stilts_ds.errors import StiltsError

KERNELS_NEED_CUDA = "DeepSpeed inference kernels need CUDA"

# Added to the score of a padded key. DeepSpeed's attention uses the same value when it
# builds a mask from integer 0/1 masks (ds_attention.minus_inf). It is finite in fp16 and
# bf16, so a row with every key padded (the padding rows of a CUDA-graph batch) gets a
# uniform softmax instead of NaN, and exp(-10000) underflows to exactly 0 in every dtype.
MASK_VALUE = -10000.0

# Largest |gelu_erf(x) - gelu_tanh(x)| over all x (at |x| ~ 2.7), computed in float64.
GELU_TANH_MAX_ERROR = 4.8e-4

# hidden_act values the fused MLP can stand in for: it computes the tanh-form GELU.
_GELU_ACTS = {"gelu", "gelu_new", "gelu_pytorch_tanh", "gelu_fast", "gelu_python"}


class KernelInjectionError(StiltsError, RuntimeError):
    """Kernel injection cannot run on this model/config, or did something unexpected."""


class NothingReplacedError(KernelInjectionError):
    """``replace_with_kernel_inject`` ran and replaced no module."""


@dataclass(frozen=True)
class InjectionReport:
    """What ``inject_kernels`` did. ``replaced``: original layer class name -> how many
    instances were swapped out; ``injected``: kernel layer class name -> how many are now in
    the model; ``adapted``: layers wrapped by ``KernelLayerAdapter``; ``notes``: known
    numeric differences from the original model."""

    replaced: dict[str, int]
    injected: dict[str, int]
    adapted: int
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def total(self) -> int:
        return sum(self.replaced.values())


def kernels_available() -> tuple[bool, str | None]:
    """(True, None) where DeepSpeed's fused inference kernels can run, else (False, why).

    They are CUDA kernels: DeepSpeed's CPU accelerator builds no inference op (loading one
    raises "This op had not been implemented on CPU backend")."""
    if not torch.cuda.is_available():
        return False, KERNELS_NEED_CUDA
    from deepspeed.accelerator import get_accelerator

    if get_accelerator().device_name() != "cuda":
        return False, f"{KERNELS_NEED_CUDA}; DeepSpeed's accelerator here is {get_accelerator().device_name()!r}"
    return True, None


# ---------------------------------------------------------------- policy registration

def default_layer_classes() -> tuple[type, ...]:
    """The layer classes stilts-ds registers with the BERT policy: XLM-R's."""
    from transformers.models.xlm_roberta.modeling_xlm_roberta import XLMRobertaLayer

    return (XLMRobertaLayer,)


def _bert_policy():
    from deepspeed.module_inject.containers.bert import HFBertLayerPolicy

    return HFBertLayerPolicy


def bert_policy_layer_classes() -> list[type]:
    """The layer classes DeepSpeed's BERT policy matches now (0.19.8 by default: BertLayer,
    RobertaLayer). The policy fills its class list the first time it is instantiated, as
    ``replace_module`` does; a throw-away instance does the same here."""
    policy = _bert_policy()
    if not hasattr(policy, "_orig_layer_class"):
        raise KernelInjectionError(_layout_changed("HFBertLayerPolicy has no _orig_layer_class"))
    if policy._orig_layer_class is None:
        policy(None)
    classes = policy._orig_layer_class
    if classes is None:
        # transformers' BERT/RoBERTa modules failed to import inside the policy.
        return []
    if isinstance(classes, type):
        return [classes]
    if not isinstance(classes, (list, tuple)):
        raise KernelInjectionError(_layout_changed(f"HFBertLayerPolicy._orig_layer_class is a {type(classes).__name__}"))
    return list(classes)


def _layout_changed(what: str) -> str:
    import deepspeed

    return (f"{what} (deepspeed {deepspeed.__version__}); stilts_ds.inference.kernel_inject was written "
            "against deepspeed 0.19.8's module_inject/containers/bert.py and needs updating")


def register_layer_class(*classes: type) -> list[type]:
    """Add ``classes`` (default: XLMRobertaLayer) to the BERT policy for the rest of the
    process. Idempotent. Returns the classes the policy matches now. Prefer
    ``layer_classes_registered``, which restores the policy afterwards."""
    classes = classes or default_layer_classes()
    current = bert_policy_layer_classes()
    # A new list, never an in-place append: a caller holding the old list keeps its view.
    _bert_policy()._orig_layer_class = current + [c for c in classes if c not in current]
    return list(_bert_policy()._orig_layer_class)


@contextlib.contextmanager
def layer_classes_registered(classes: Sequence[type] | None = None) -> Iterator[list[type]]:
    """Within the block the BERT policy also matches ``classes`` (default: XLMRobertaLayer);
    yields the full list it matches. The policy's previous list is restored on exit, so
    other code in the process (BERT models injected elsewhere) sees stock DeepSpeed."""
    policy = _bert_policy()
    saved = policy._orig_layer_class if hasattr(policy, "_orig_layer_class") else None
    matched = register_layer_class(*(classes or default_layer_classes()))
    try:
        yield matched
    finally:
        policy._orig_layer_class = saved


# ---------------------------------------------------------------- masks

def force_eager_attention(model: nn.Module) -> None:
    """Make a transformers model build eager attention's additive float masks (and compute
    any layer left un-replaced with eager attention). SDPA's masks are boolean."""
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation("eager")
    else:  # not a PreTrainedModel: set the config field the mask builders read
        model.config._attn_implementation = "eager"
    if getattr(model.config, "_attn_implementation", None) != "eager":
        raise KernelInjectionError(f"could not switch {type(model).__name__} to eager attention")


def key_padding_mask(attention_mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """``[B, L]`` keep-mask (1 = token, 0 = padding) -> ``[B, 1, 1, L]`` additive mask in
    ``dtype`` (0 for tokens, ``MASK_VALUE`` for padding), contiguous.

    Passed to a transformers 5 encoder as ``attention_mask`` it is used as is (a 4-D mask is
    never rebuilt), broadcasts over heads and queries in eager attention, and the kernel
    reads it as one row per sequence (row stride = dim 2 = 1). Always materialised, even
    without padding: a mask that is sometimes None changes the work from batch to batch
    (and cannot be replayed by a CUDA graph)."""
    if attention_mask is None:
        return None
    if attention_mask.dim() != 2:
        raise ValueError(f"expected a [batch, length] attention mask, got shape {tuple(attention_mask.shape)}")
    keep = attention_mask.to(torch.bool)
    out = torch.zeros(keep.shape, dtype=dtype, device=attention_mask.device)
    out.masked_fill_(~keep, MASK_VALUE)
    return out[:, None, None, :].contiguous()


def kernel_attention_mask(mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """Any mask a transformers 5 encoder hands a layer -> what the kernel reads.

    * ``None`` -> ``None`` (the kernel then skips masking).
    * ``[B, L]`` keep-mask (int/bool/float, 1 = token) -> additive ``[B, 1, 1, L]``.
    * ``[B, 1|H, Lq, L]`` boolean (SDPA: True = attend) or float additive (eager) ->
      additive ``[B, 1, 1, L]`` from query row 0, L times less to read and cast. An
      encoder's padding mask is the same for every query (transformers' bidirectional mask
      depends on the key only); that is not checked here, as checking would synchronise
      the device in every layer.
    Additive values are clamped to ``MASK_VALUE`` before the cast, so eager's
    ``finfo(float32).min`` does not become -inf in fp16.
    """
    if mask is None:
        return None
    if mask.dim() == 2:
        return key_padding_mask(mask, dtype)
    if mask.dim() != 4:
        raise ValueError(f"cannot give the kernel an attention mask of shape {tuple(mask.shape)}")
    row = mask[:, :1, :1, :]
    if row.dtype == torch.bool:
        out = torch.zeros(row.shape, dtype=dtype, device=row.device)
        out.masked_fill_(~row, MASK_VALUE)
        return out.contiguous()
    if not row.is_floating_point():
        raise ValueError(f"a 4-D attention mask must be boolean or additive float, got {row.dtype}")
    return row.clamp(min=MASK_VALUE).to(dtype).contiguous()


# ---------------------------------------------------------------- output adapter

class KernelLayerAdapter(nn.Module):
    """Wraps one injected kernel layer so it fits a transformers 5 encoder.

    The encoder calls ``layer(hidden_states, attention_mask, encoder_hidden_states,
    encoder_attention_mask=..., past_key_values=..., position_ids=...)`` and uses the return
    value as the next layer's hidden states. The adapter converts the mask
    (``kernel_attention_mask``), calls the kernel layer with hidden states and mask only
    (the other arguments are decoder features XLM-R's encoder does not use), and returns the
    first element when the kernel returns a tuple (DeepSpeed's BERT container sets
    ``return_tuple=True``: ``(hidden, mask)``)."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                encoder_hidden_states: torch.Tensor | None = None, **unused: Any) -> torch.Tensor:
        if encoder_hidden_states is not None:
            raise KernelInjectionError("the injected BERT kernel has no cross-attention; decoder use is not supported")
        mask = kernel_attention_mask(attention_mask, hidden_states.dtype)
        out = self.layer(hidden_states, input_mask=mask)
        if isinstance(out, (tuple, list)):
            out = out[0]
        if not torch.is_tensor(out):
            raise KernelInjectionError(f"injected layer {type(self.layer).__name__} returned {type(out).__name__}, not a tensor")
        return out


def adapt_injected_layers(root: nn.Module, injected_types: Sequence[type] | None = None) -> int:
    """Wrap every module of ``injected_types`` (default: DeepSpeed's
    ``DeepSpeedTransformerInference`` and subclasses) under ``root`` in a
    ``KernelLayerAdapter``, in place. Returns how many were wrapped; layers already wrapped
    are left alone, so calling it twice is harmless."""
    types = tuple(injected_types) if injected_types is not None else _injected_types()
    count = 0
    for parent in list(root.modules()):
        if isinstance(parent, KernelLayerAdapter):
            continue
        for name, child in list(parent.named_children()):
            if isinstance(child, types):
                setattr(parent, name, KernelLayerAdapter(child))  # ModuleList accepts "0", "1", ...
                count += 1
    return count


def _injected_types() -> tuple[type, ...]:
    from deepspeed.model_implementations.transformers.ds_transformer import DeepSpeedTransformerInference

    return (DeepSpeedTransformerInference,)


# ---------------------------------------------------------------- accounting

def _modules_outside(model: nn.Module, opaque: tuple[type, ...]) -> Iterator[nn.Module]:
    """``model.modules()`` without descending into modules of the ``opaque`` types."""
    stack = [model]
    while stack:
        m = stack.pop()
        yield m
        if not (opaque and isinstance(m, opaque)):
            stack.extend(reversed(list(m.children())))


def count_layers(model: nn.Module, classes: Iterable[type], inside_of: Sequence[type] = ()) -> Counter:
    """Instances of exactly these classes under ``model``, by class name (DeepSpeed matches
    exact classes: ``child.__class__ in policies``), not counting any held inside a module
    of the ``inside_of`` types (a replacement that keeps the original layer inside it has
    still replaced it)."""
    wanted = set(classes)
    return Counter(type(m).__name__ for m in _modules_outside(model, tuple(inside_of)) if type(m) in wanted)


def count_instances(model: nn.Module, types: Iterable[type]) -> Counter:
    """Instances of ``types`` or subclasses under ``model``, by class name."""
    types = tuple(types)
    return Counter(type(m).__name__ for m in model.modules() if isinstance(m, types))


def stacked_layer_classes(model: nn.Module) -> Counter:
    """Class names of the modules held in ``nn.ModuleList``s: a model's transformer layers."""
    return Counter(type(m).__name__ for lst in model.modules() if isinstance(lst, nn.ModuleList) for m in lst)


def replaced_counts(before: Mapping[str, int], after: Mapping[str, int]) -> dict[str, int]:
    """Per class name, how many instances disappeared."""
    return {name: n - after.get(name, 0) for name, n in sorted(before.items()) if n - after.get(name, 0) > 0}


def require_replacements(replaced: Mapping[str, int], model: nn.Module, matched: Iterable[type]) -> None:
    """Raise ``NothingReplacedError`` when ``replaced`` is empty, naming what the policy
    matches and what layers the model has."""
    if sum(replaced.values()) > 0:
        return
    import deepspeed

    names = ", ".join(sorted({c.__name__ for c in matched})) or "nothing"
    layers = dict(stacked_layer_classes(model)) or "none found"
    raise NothingReplacedError(
        f"kernel injection replaced no module: deepspeed {deepspeed.__version__}'s BERT policy matches "
        f"{names}; this model's layers are {layers}. Register the layer class "
        "(stilts_ds.inference.kernel_inject.register_layer_class) or use the 'ds' engine, which runs "
        "without injection; timing it as 'ds-kernel' would report PyTorch under the kernel's name"
    )


# ---------------------------------------------------------------- the injection

def kernel_compatibility_problems(config, tp_size: int = 1) -> list[str]:
    """Why DeepSpeed 0.19.8's BERT kernel cannot reproduce a model with this config
    (empty list: it can)."""
    problems = []
    if getattr(config, "is_decoder", False) or getattr(config, "add_cross_attention", False):
        problems.append("the BERT kernel is an encoder layer (no causal mask, no cross-attention)")
    hidden, inter = getattr(config, "hidden_size", None), getattr(config, "intermediate_size", None)
    if hidden is None or inter != 4 * hidden:
        # HFBertLayerPolicy.get_hidden_heads returns DEFAULT_INTERMEDIATE_SIZE, which the
        # container reads as 4 x hidden: the kernel's MLP would have the wrong shape.
        problems.append(f"DeepSpeed's BERT policy assumes intermediate_size = 4 x hidden_size; this model has "
                        f"hidden_size={hidden}, intermediate_size={inter}")
    act = getattr(config, "hidden_act", None)
    if act not in _GELU_ACTS:
        problems.append(f"the fused MLP computes GELU; this model's hidden_act is {act!r}")
    pos = getattr(config, "position_embedding_type", "absolute") or "absolute"
    if pos != "absolute":
        problems.append(f"relative position embeddings ({pos!r}) live in the attention the kernel replaces")
    if tp_size != 1:
        problems.append(f"tensor_parallel.tp_size={tp_size}: stilts-ds runs one engine per GPU (tp_size 1)")
    return problems


def numeric_notes(config) -> tuple[str, ...]:
    notes = []
    if getattr(config, "hidden_act", None) in ("gelu", "gelu_python"):
        notes.append(f"hidden_act {config.hidden_act!r} is erf-GELU; the fused kernel computes tanh-GELU "
                     f"(at most {GELU_TANH_MAX_ERROR:g} apart per activation)")
    return tuple(notes)


def inject_kernels(model: nn.Module, ds_config: Mapping[str, Any], *,
                   layer_classes: Sequence[type] | None = None,
                   register: bool = True,
                   init_inference: Callable[..., Any] | None = None,
                   injected_types: Sequence[type] | None = None) -> tuple[Any, InjectionReport]:
    """Inject DeepSpeed's fused kernels into a transformers encoder, in place.

    ``ds_config`` is a DeepSpeed inference config (``ds_configs/inference_*.json``);
    ``replace_with_kernel_inject`` is forced on. The model is switched to eager attention
    masks, ``layer_classes`` (default: XLMRobertaLayer) are registered with the BERT policy
    for the call (``register=False`` shows stock DeepSpeed's behaviour), replaced layers
    are counted and every injected layer is wrapped in a ``KernelLayerAdapter``.

    Returns ``(engine, report)``: the DeepSpeed ``InferenceEngine`` (call it like the model)
    and an ``InjectionReport``. Raises ``KernelInjectionError`` for a model the kernel
    cannot reproduce and ``NothingReplacedError`` when nothing was replaced.
    ``init_inference`` and ``injected_types`` replace ``deepspeed.init_inference`` and the
    kernel layer types (tests drive DeepSpeed's real matching on a CPU with a stand-in
    kernel layer)."""
    config = dict(ds_config)
    config["replace_with_kernel_inject"] = True
    tp = config.get("tensor_parallel", {}) or {}
    problems = kernel_compatibility_problems(model.config, int(tp.get("tp_size", 1)))
    if problems:
        raise KernelInjectionError("DeepSpeed kernel injection cannot reproduce this model: " + "; ".join(problems))
    if init_inference is None:
        import deepspeed

        init_inference = deepspeed.init_inference
    force_eager_attention(model)

    classes = list(layer_classes or default_layer_classes())
    registration = layer_classes_registered(classes) if register else contextlib.nullcontext(bert_policy_layer_classes())
    with registration as matched:
        matched = list(matched)
        before = count_layers(model, matched)
        engine = init_inference(model, config=config)
    module = getattr(engine, "module", engine)
    types = tuple(injected_types) if injected_types is not None else _injected_types()
    after = count_layers(module, matched, inside_of=types)
    replaced = replaced_counts(before, after)
    require_replacements(replaced, module, matched)

    injected = dict(count_instances(module, types))
    adapted = adapt_injected_layers(module, types)
    if adapted != sum(replaced.values()):
        raise KernelInjectionError(
            f"replaced {replaced} but found {adapted} injected layers to adapt ({injected}); "
            "the model now mixes layer kinds in a way stilts-ds does not expect")
    return engine, InjectionReport(replaced=replaced, injected=injected, adapted=adapted, notes=numeric_notes(model.config))
