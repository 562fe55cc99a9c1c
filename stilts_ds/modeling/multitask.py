"""One encoder, one head per task (or per shared head name): the model of all three phases.

Phase 1 builds it from the pretrained encoder with a head for each intermediate task;
phase 2 builds it from the phase-1 export (``stilts_ds.modeling.export``) with fresh heads
for the target task; phase 3 runs it, or only its encoder (``embed``) for retrieval.

Usage::

    from stilts_ds.modeling.multitask import HeadSpec, MultiTaskModel
    from stilts_ds.tasks.registry import get_task

    model = MultiTaskModel.build(
        "FacebookAI/xlm-roberta-large",       # hub id, local HF directory, phase-1 export,
                                              # or a config for random weights
        {
            "mnli": HeadSpec("pair_classification", 3, head="nli"),
            "anli_plus": HeadSpec("pair_classification", 3, head="nli"),   # same module as mnli
            "hellaswag": HeadSpec.from_task(get_task("hellaswag")),        # multiple_choice, 4
            "squad_v1": HeadSpec("span_qa", 2),
        },
    )
    out = model("mnli", batch.tensors)        # {"loss", "logits"}; loss only with labels
    out = model("squad_v1", batch.tensors)    # {"loss", "start_logits", "end_logits"}
    emb = model.embed(batch.tensors, layer=14)   # [B, H] mean-pooled hidden layer 14

Masked language modelling (``HeadSpec("mlm", 0)``, the ``mlm`` task) uses the checkpoint's
own LM head: with an mlm task, ``build`` loads the encoder through ``AutoModelForMaskedLM``
(``load_masked_lm``) and keeps its LM head, whose decoder stays tied to the encoder's input
embeddings (one parameter); random-weight configs get a fresh, tied head. Every mlm task
shares the head named ``mlm``'s module when they share the head name, as ``mlm@de`` does.

Heads live in ``model.heads`` (an ``nn.ModuleDict`` keyed by head name) and the encoder in
``model.encoder`` (a transformers ``AutoModel``, any architecture: XLM-R, BERT, ...), so a
state dict has ``encoder.*`` and ``heads.<head name>.*`` keys; a shared head appears once.

Distributed note: in multi-task training every rank must run the same task in a step under
ZeRO stage 3 (a head's parameters are gathered collectively when it runs). Heads that a
step does not use get no gradient; the engine must tolerate that (DeepSpeed does by
default, ``ignore_unused_parameters``).
"""
from __future__ import annotations

import inspect
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from stilts_ds.errors import StiltsError
from stilts_ds.modeling.heads import HEADS, MaskedLMHead, make_head
from stilts_ds.tasks.formats import format_of
from stilts_ds.tasks.formats.retrieval import default_layer, mean_pool

# The inputs a transformers encoder takes from a batch; everything else in Batch.tensors
# (labels, positions, word_index) belongs to the head.
ENCODER_INPUTS = ("input_ids", "attention_mask", "token_type_ids")

log = logging.getLogger(__name__)


class UnknownTaskError(StiltsError, KeyError):
    """A task the model has no head for. A KeyError (lookup failed) and a StiltsError (the
    CLI reports it as bad input)."""

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class HeadSpec:
    """What head a task needs.

    ``num_labels`` is the label count (classification, tagging), the number of choices
    (multiple choice) or ignored (span QA: always start/end). Tasks whose ``head`` names
    agree share one head module; ``head=None`` means the task's own name.
    """

    format: str
    num_labels: int
    head: str | None = None

    def __post_init__(self):
        try:
            fmt = format_of(self.format)
        except KeyError:
            raise StiltsError(f"no head for format {self.format!r}; known: {', '.join(HEADS)}") from None
        if not fmt.has_head:
            raise StiltsError(f"no head for format {self.format!r}: {self.format} tasks need no head "
                              "(use MultiTaskModel.embed)")
        if self.head is not None and (not self.head or "." in self.head):
            raise StiltsError(f"head name {self.head!r} must be non-empty and contain no '.'")

    @classmethod
    def from_task(cls, spec, num_labels: int | None = None, head: str | None = None) -> "HeadSpec":
        """The head for a registry ``TaskSpec``: its size from the task's format (the label
        set's size, the number of choices, ...). Tasks whose labels come from the user's data
        (ccg's tags.txt) need ``num_labels``."""
        if num_labels is None:
            try:
                num_labels = format_of(spec).num_labels(spec, spec.labels)
            except ValueError:
                raise StiltsError(
                    f"task {spec.name!r} reads its label set from the data; pass num_labels "
                    "(e.g. len(stilts_ds.data.sources.load_labels(...)))"
                ) from None
        return cls(spec.format, num_labels, head)


def _encoder_class(config):
    from transformers import MODEL_MAPPING

    try:
        return MODEL_MAPPING[type(config)]
    except KeyError:
        return None


def _encoder_init_kwargs(config, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults for building an encoder.

    * No pooler: BERT-style encoders add a dense+tanh pooler that no stilts-ds head uses
      (the first-token heads carry their own). Left in, it would take optimizer state and be
      shrunk by weight decay without ever being trained, then be exported as if it were.
      Only passed to classes whose constructor takes ``add_pooling_layer``.
    * float32 weights: transformers 5 loads checkpoints in their stored dtype by default
      (``dtype="auto"``); training needs fp32 master weights whatever the export holds.
      DeepSpeed/autocast choose the compute precision.
    """
    out = dict(kwargs)
    cls = _encoder_class(config)
    if cls is not None and "add_pooling_layer" in inspect.signature(cls.__init__).parameters:
        out.setdefault("add_pooling_layer", False)
    out.setdefault("dtype", torch.float32)
    return out


def _checkpoint_name(encoder) -> str:
    """A hub id or local directory as transformers wants it; a missing directory or one that
    is no Hugging Face model is refused here, with the fix."""
    if not isinstance(encoder, (str, os.PathLike)):
        raise TypeError(f"encoder must be a hub id, a directory, a PretrainedConfig or a module, not {type(encoder).__name__}")
    path = Path(encoder).expanduser()
    name = str(path) if path.exists() else str(encoder)
    looks_like_path = isinstance(encoder, os.PathLike) or name.startswith(("/", ".", "~")) or "\\" in name
    if looks_like_path and not path.exists():
        raise StiltsError(f"no encoder directory at {name}; run the phase that exports it first, or fix the path")
    if path.is_dir() and not (path / "config.json").is_file():
        raise StiltsError(f"{name} is not a Hugging Face model directory (no config.json); pass an export written by save_encoder")
    return name


def _load_error(name: str, e: Exception) -> StiltsError:
    return StiltsError(
        f"could not load encoder {name!r} ({type(e).__name__}: {e}); pass a local directory "
        "(a save_encoder export or save_pretrained output), or a hub id on a machine with hub access"
    )


def load_encoder(encoder, **kwargs) -> nn.Module:
    """A transformers encoder from a hub id or local directory (pretrained weights), a
    config (random weights), or an already built module (returned as is)."""
    from transformers import AutoConfig, AutoModel, PretrainedConfig

    if isinstance(encoder, nn.Module):
        return encoder
    if isinstance(encoder, PretrainedConfig):
        return AutoModel.from_config(encoder, **_encoder_init_kwargs(encoder, kwargs))
    name = _checkpoint_name(encoder)
    try:
        config = AutoConfig.from_pretrained(name)
        return AutoModel.from_pretrained(name, config=config, **_encoder_init_kwargs(config, kwargs))
    except (OSError, ValueError) as e:  # transformers: missing repo/file, no hub access, bad config
        raise _load_error(name, e) from e


def _split_masked_lm(model) -> tuple[nn.Module, nn.Module, str]:
    """(encoder, LM head module, the head's attribute name) of an ``AutoModelForMaskedLM``:
    the encoder sits under ``base_model_prefix`` (XLM-R: ``roberta``), the head is the one
    other child (XLM-R: ``lm_head``; BERT: ``cls``)."""
    prefix = model.base_model_prefix
    others = [(n, m) for n, m in model.named_children() if n != prefix]
    if not hasattr(model, prefix) or len(others) != 1:
        raise StiltsError(f"cannot find the encoder and the MLM head of {type(model).__name__} "
                          f"(children: {[n for n, _ in model.named_children()]}); the mlm task needs a "
                          "masked-LM architecture with one head module")
    return getattr(model, prefix), others[0][1], others[0][0]


def load_masked_lm(encoder, **kwargs) -> tuple[nn.Module, nn.Module]:
    """(encoder, LM head) from ``AutoModelForMaskedLM``: a hub id or directory keeps the
    checkpoint's pretrained LM head (XLM-R's ``lm_head``); a config builds both at random.
    The head's decoder stays tied to the encoder's input embeddings (the same parameter),
    as in the pretrained model. A checkpoint without LM head weights (a phase-1 encoder
    export) gets a fresh head, with a warning."""
    from transformers import AutoConfig, AutoModelForMaskedLM, PretrainedConfig

    init = {k: v for k, v in kwargs.items() if k != "add_pooling_layer"}  # masked-LM classes build no pooler
    init.setdefault("dtype", torch.float32)
    if isinstance(encoder, PretrainedConfig):
        model = AutoModelForMaskedLM.from_config(encoder, **init)
        base, head, _ = _split_masked_lm(model)
        return base, head
    name = _checkpoint_name(encoder)
    try:
        config = AutoConfig.from_pretrained(name)
        model, info = AutoModelForMaskedLM.from_pretrained(name, config=config, output_loading_info=True, **init)
    except (OSError, ValueError) as e:
        raise _load_error(name, e) from e
    base, head, head_attr = _split_masked_lm(model)
    missing = [k for k in info.get("missing_keys", ()) if k.startswith(f"{head_attr}.")]
    if missing:
        log.warning("%s has no trained MLM head (%s missing): the mlm task starts from a fresh LM head "
                    "(expected for a phase-1 encoder export, not for a pretrained checkpoint)", name, missing[0])
    return base, head


def fresh_lm_head(encoder: nn.Module) -> nn.Module:
    """A randomly initialised LM head for a built encoder, its decoder tied to the encoder's
    input embeddings (for encoders passed in as modules)."""
    from transformers import AutoModelForMaskedLM

    model = AutoModelForMaskedLM.from_config(encoder.config, dtype=next(encoder.parameters()).dtype)
    _, head, _ = _split_masked_lm(model)
    output = model.get_output_embeddings()
    if getattr(encoder.config, "tie_word_embeddings", True) and output is not None:
        output.weight = encoder.get_input_embeddings().weight
    return head


def _default_dropout(config) -> float:
    # RoBERTa's heads use classifier_dropout when the config sets it, else hidden dropout.
    for key in ("classifier_dropout", "hidden_dropout_prob", "dropout"):
        value = getattr(config, key, None)
        if value is not None:
            return float(value)
    return 0.1


class MultiTaskModel(nn.Module):
    """A shared encoder and task heads; ``forward(task, tensors)`` runs one task's batch."""

    def __init__(self, encoder: nn.Module, tasks: Mapping[str, HeadSpec], *, head_dropout: float | None = None,
                 lm_head: nn.Module | None = None):
        super().__init__()
        if not tasks:
            raise StiltsError("a MultiTaskModel needs at least one task")
        config = encoder.config
        self.encoder = encoder
        self.heads = nn.ModuleDict()
        self.task_specs: dict[str, HeadSpec] = {}
        self.task_heads: dict[str, str] = {}  # task name -> head name (key of self.heads)
        dropout = _default_dropout(config) if head_dropout is None else head_dropout
        init_range = float(getattr(config, "initializer_range", 0.02))
        owner: dict[str, str] = {}  # head name -> first task that declared it
        for task, spec in tasks.items():
            if not isinstance(spec, HeadSpec):
                raise TypeError(f"task {task!r}: expected a HeadSpec, got {type(spec).__name__}")
            head_name = spec.head or task
            if "." in head_name or not head_name:
                raise StiltsError(f"task name {task!r} cannot name a head; give it head=<name without '.'>")
            if head_name in owner:
                _check_shareable(head_name, owner[head_name], tasks[owner[head_name]], task, spec)
            elif format_of(spec.format).pretrained_head:
                # The checkpoint's LM head (load_masked_lm), else a fresh one tied to this encoder.
                lm_head = lm_head if lm_head is not None else fresh_lm_head(encoder)
                self.heads[head_name] = MaskedLMHead(lm_head)
                owner[head_name] = task
            else:
                try:
                    self.heads[head_name] = make_head(spec.format, config.hidden_size, spec.num_labels, dropout, init_range)
                except KeyError as e:  # ModuleDict refuses names of its own attributes ("keys", ...)
                    raise StiltsError(f"head name {head_name!r} is reserved; choose another head name") from e
                owner[head_name] = task
            self.task_specs[task] = spec
            self.task_heads[task] = head_name

    @classmethod
    def build(cls, encoder, tasks: Mapping[str, HeadSpec], *, head_dropout: float | None = None, **encoder_kwargs) -> "MultiTaskModel":
        """Build from ``encoder``: a hub id or local directory (pretrained weights, e.g. a
        phase-1 export), a ``PretrainedConfig`` (random weights), or an encoder module.
        Heads are always fresh. ``encoder_kwargs`` go to ``from_pretrained``/``from_config``
        (e.g. ``attn_implementation="eager"``). With an ``mlm`` task the encoder comes with
        the checkpoint's LM head (``load_masked_lm``)."""
        if any(format_of(spec.format).pretrained_head for spec in tasks.values()) and not isinstance(encoder, nn.Module):
            enc, lm_head = load_masked_lm(encoder, **encoder_kwargs)
            return cls(enc, tasks, head_dropout=head_dropout, lm_head=lm_head)
        return cls(load_encoder(encoder, **encoder_kwargs), tasks, head_dropout=head_dropout)

    @property
    def config(self):
        """The encoder's transformers config."""
        return self.encoder.config

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(self.task_specs)

    def head_for(self, task: str) -> nn.Module:
        try:
            return self.heads[self.task_heads[task]]
        except KeyError:
            raise UnknownTaskError(f"no head for task {task!r}; this model knows: {', '.join(self.task_specs)}") from None

    def _encode(self, tensors: Mapping[str, torch.Tensor], **kwargs):
        inputs = {k: tensors[k] for k in ENCODER_INPUTS if k in tensors}
        if "input_ids" not in inputs:
            raise ValueError(f"batch has no input_ids (keys: {', '.join(tensors)})")
        return self.encoder(**inputs, return_dict=True, **kwargs)

    def forward(self, task: str, tensors) -> dict[str, torch.Tensor]:
        """Run ``task``'s batch: ``tensors`` is ``Batch.tensors`` of the task's format (or a
        ``Batch``). Returns the head's dict: logits (start/end logits for span QA) and
        ``loss`` when the batch carries targets."""
        tensors = getattr(tensors, "tensors", tensors)
        head = self.head_for(task)
        # Shaped as the encoder takes them (multiple choice: [B, C, L] -> [B*C, L]).
        inputs = format_of(self.task_specs[task].format).model_inputs(
            {k: tensors[k] for k in ENCODER_INPUTS if k in tensors})
        hidden = self._encode(inputs).last_hidden_state
        return head(hidden, tensors)

    def embed(self, tensors, layer: int | None = None) -> torch.Tensor:
        """Sentence embeddings [B, H]; see ``encoder_embed``."""
        return encoder_embed(self.encoder, tensors, layer)


def encoder_embed(encoder: nn.Module, tensors, layer: int | None = None) -> torch.Tensor:
    """Sentence embeddings [B, H] from a bare encoder: the mean over non-pad tokens of hidden
    layer ``layer`` (0 = embedding output, N = last layer; default: 14 of 24 scaled to this
    depth, as XTREME scores BUCC and Tatoeba). Call under ``torch.no_grad()`` for evaluation."""
    tensors = getattr(tensors, "tensors", tensors)
    n_layers = encoder.config.num_hidden_layers
    if layer is None:
        layer = default_layer(n_layers)
    if not 0 <= layer <= n_layers:
        raise ValueError(f"layer {layer} out of range: this encoder has hidden states 0..{n_layers}")
    inputs = {k: tensors[k] for k in ENCODER_INPUTS if k in tensors}
    hidden = encoder(**inputs, return_dict=True, output_hidden_states=True).hidden_states[layer]
    mask = tensors.get("attention_mask")
    if mask is None:
        mask = torch.ones(hidden.shape[:2], dtype=hidden.dtype, device=hidden.device)
    return mean_pool(hidden, mask)


def _check_shareable(head: str, first_task: str, first: HeadSpec, task: str, spec: HeadSpec) -> None:
    """Tasks may share a head only when one module fits both: same format, and the same
    label count where it sets the output size (not for multiple choice or span QA, whose
    outputs do not depend on it)."""
    same_size = not format_of(spec.format).sized_by_labels or spec.num_labels == first.num_labels
    if spec.format != first.format or not same_size:
        raise StiltsError(
            f"tasks {first_task!r} ({first.format}, {first.num_labels} labels) and {task!r} "
            f"({spec.format}, {spec.num_labels} labels) cannot share head {head!r}"
        )
