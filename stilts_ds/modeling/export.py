"""Phase hand-off: the trained encoder as a plain Hugging Face directory, heads left behind.

Phase 1 ends with an export of its encoder; phase 2 builds a fresh-headed model from it;
phase 3 (retrieval) and the inference stage load it as any transformers model. An export
is written to a temporary directory beside its destination and renamed into place, so a
crash or an exception never leaves a half-written export under the final name.

Usage::

    from stilts_ds.modeling import export
    from stilts_ds.modeling.multitask import HeadSpec, MultiTaskModel

    # rank 0, after phase 1 (weights whole on this process: ZeRO stage 0-2, or gathered)
    export.save_encoder(model, run_dir / "encoder", tokenizer=tokenizer)

    # ZeRO-3: consolidate first (DeepSpeed's zero_to_fp32 gives a flat state dict with
    # 'encoder.' / 'heads.' keys), then
    export.state_dict_to_encoder_dir(state_dict, model.config, run_dir / "encoder", tokenizer)

    # phase 2: refuse an export of the wrong model, then load it with fresh heads
    export.check_compatible(run_dir / "encoder", "xlm-roberta", hidden_size=1024)
    model = MultiTaskModel.build(run_dir / "encoder", {"xnli": HeadSpec("pair_classification", 3)})

The directory holds what ``save_pretrained`` writes (``config.json``, ``model.safetensors``),
the tokenizer files when a tokenizer is given, and ``stilts_export.json`` (which heads were
trained on top of it; provenance only, nothing loads it back). Call the writers on one
process only (rank 0); they are not collective.
"""
from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Mapping

import torch

from stilts_ds import atomic
from stilts_ds.errors import StiltsError

EXPORT_INFO = "stilts_export.json"
EXPORT_VERSION = 1
HEADS_FILE = "heads.pt"  # save_model: the trained heads' state dict
HEADS_SPEC = "heads.json"  # save_model: task -> {format, num_labels, head}


class ExportError(StiltsError, ValueError):
    """An export is missing, unreadable, or not the model a phase expects."""


# --------------------------------------------------------------------------- writing


@contextmanager
def atomic_directory(out_dir, overwrite: bool = False):
    """``stilts_ds.atomic.atomic_directory``, with an existing export reported as ExportError."""
    try:
        with atomic.atomic_directory(out_dir, overwrite=overwrite) as tmp:
            yield tmp
    except atomic.DirectoryExistsError as e:
        raise ExportError(str(e)) from None


def _unwrap(model):
    """(encoder, outer model). DeepSpeed engines and DDP keep the real model in .module;
    a bare transformers model is its own encoder (its .encoder is the layer stack)."""
    from transformers import PreTrainedModel

    model = getattr(model, "module", model)
    if isinstance(model, PreTrainedModel):
        return model, model
    encoder = getattr(model, "encoder", None)
    if not isinstance(encoder, PreTrainedModel):
        raise TypeError(f"cannot find a transformers encoder in {type(model).__name__}")
    return encoder, model


def _write_info(directory: Path, config, heads: Mapping | None) -> None:
    info = {
        "stilts_export_version": EXPORT_VERSION,
        "model_type": config.model_type,
        "hidden_size": config.hidden_size,
        "num_hidden_layers": getattr(config, "num_hidden_layers", None),
        "trained_heads": dict(heads or {}),
    }
    (directory / EXPORT_INFO).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _heads_info(model) -> dict:
    specs = getattr(model, "task_specs", {}) or {}
    heads = getattr(model, "task_heads", {}) or {}
    return {t: {"format": s.format, "num_labels": s.num_labels, "head": heads.get(t, t)} for t, s in specs.items()}


def save_encoder(model, out_dir, tokenizer=None, *, overwrite: bool = False) -> Path:
    """Write ``model``'s encoder (a ``MultiTaskModel``, a wrapper holding one in
    ``.module``, or a bare transformers encoder) to ``out_dir`` as a Hugging Face
    directory, with ``tokenizer`` if given. Heads are not saved. Returns ``out_dir``."""
    return _save(model, out_dir, tokenizer, overwrite=overwrite, with_heads=False)


def _save(model, out_dir, tokenizer, *, overwrite: bool, with_heads: bool) -> Path:
    encoder, outer = _unwrap(model)
    empty = [n for n, p in encoder.named_parameters() if p.numel() == 0]
    if empty:
        # ZeRO-3 leaves each rank with placeholder (empty) parameters; saving them would
        # write an export with no weights in it.
        raise ExportError(
            f"encoder parameters are partitioned ({empty[0]} has no elements): gather them "
            "(deepspeed.zero.GatheredParameters) or consolidate the ZeRO-3 checkpoint and call "
            "state_dict_to_encoder_dir instead"
        )
    out_dir = Path(out_dir)
    with atomic_directory(out_dir, overwrite=overwrite) as tmp:
        encoder.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        _write_info(tmp, encoder.config, _heads_info(outer))
        if with_heads:
            torch.save({k: v.detach().cpu() for k, v in outer.heads.state_dict().items()}, tmp / HEADS_FILE)
            (tmp / HEADS_SPEC).write_text(json.dumps(_heads_info(outer), indent=2, sort_keys=True) + "\n",
                                          encoding="utf-8")
    return out_dir


def _encoder_state(state_dict: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Split a MultiTaskModel state dict into encoder weights (prefix removed) and the
    names of the heads it held."""
    encoder, heads, other = {}, set(), []
    for key, value in state_dict.items():
        name = key[len("module."):] if key.startswith("module.") else key
        if name.startswith("encoder."):
            encoder[name[len("encoder."):]] = value
        elif name.startswith("heads."):
            heads.add(name.split(".")[1])
        else:
            other.append(key)
    if other:
        raise ExportError(
            f"state dict has {len(other)} keys outside 'encoder.'/'heads.' (e.g. {other[:3]}); "
            "expected a MultiTaskModel state dict"
        )
    if not encoder:
        raise ExportError("state dict has no 'encoder.' keys; expected a MultiTaskModel state dict")
    return encoder, sorted(heads)


def state_dict_to_encoder_dir(
    state_dict: Mapping[str, torch.Tensor], config, out_dir, tokenizer=None, *, overwrite: bool = False
) -> Path:
    """Export from a flat ``MultiTaskModel`` state dict (e.g. consolidated from ZeRO-3):
    keys ``encoder.*`` become the encoder's weights, ``heads.*`` are dropped, a leading
    ``module.`` is ignored. ``config`` is the encoder's transformers config. Weights must
    match it exactly (a missing or extra key is an error, not random init)."""
    from stilts_ds.modeling.multitask import load_encoder

    weights, heads = _encoder_state(state_dict)
    kwargs = {}
    if any(k.startswith("pooler.") for k in weights):
        kwargs["add_pooling_layer"] = True  # the model was built with its pooler; keep it
    encoder = load_encoder(config, **kwargs)
    expected = set(encoder.state_dict())
    missing = sorted(expected - set(weights))
    unexpected = sorted(set(weights) - expected)
    if missing or unexpected:
        raise ExportError(
            f"state dict does not fit a {config.model_type} encoder of this config: "
            f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
        )
    try:
        encoder.load_state_dict(weights, strict=True)
    except RuntimeError as e:  # shape mismatch: another hidden size / vocab
        raise ExportError(f"state dict does not fit a {config.model_type} encoder of this config: {e}") from e
    out_dir = Path(out_dir)
    with atomic_directory(out_dir, overwrite=overwrite) as tmp:
        encoder.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        _write_info(tmp, encoder.config, {h: {"head": h} for h in heads})
    return out_dir


# --------------------------------------------------------------------------- reading


def load_encoder_config(out_dir):
    """The transformers config of an export (or any Hugging Face model directory)."""
    from transformers import AutoConfig

    path = Path(out_dir)
    if not path.is_dir():
        raise ExportError(f"no encoder export at {path} (directory does not exist); run the phase that writes it first")
    if not (path / "config.json").is_file():
        raise ExportError(f"{path} is not an encoder export: it has no config.json")
    try:
        return AutoConfig.from_pretrained(str(path))
    except (OSError, ValueError, KeyError) as e:
        raise ExportError(f"{path}/config.json could not be read ({type(e).__name__}: {e})") from e


def _norm(model_type: str) -> str:
    return model_type.replace("_", "-").lower()


def check_compatible(out_dir, expected, hidden_size: int | None = None):
    """Raise ``ExportError`` unless the export at ``out_dir`` is of the architecture a phase
    expects. ``expected`` is a model type (``"xlm-roberta"``) or a config, whose
    ``model_type`` and ``hidden_size`` are then both checked. Returns the export's config."""
    from transformers import PretrainedConfig

    config = load_encoder_config(out_dir)
    if isinstance(expected, PretrainedConfig):
        model_type = expected.model_type
        hidden_size = expected.hidden_size if hidden_size is None else hidden_size
    else:
        model_type = str(expected)
    actual = config.model_type
    actual_hidden = getattr(config, "hidden_size", None)
    if _norm(actual) != _norm(model_type) or (hidden_size is not None and actual_hidden != hidden_size):
        want = f"{model_type}" + (f" with hidden size {hidden_size}" if hidden_size is not None else "")
        raise ExportError(
            f"the export at {out_dir} holds a {actual} encoder with hidden size {actual_hidden}, "
            f"but this phase expects {want}; point the phase at the export of a run with the same "
            "model, or change the model in the experiment config"
        )
    return config


def read_export_info(out_dir) -> dict | None:
    """``stilts_export.json`` of an export (which heads were trained on it), or None for a
    plain Hugging Face directory."""
    path = Path(out_dir) / EXPORT_INFO
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def save_model(model, out_dir, tokenizer=None, *, overwrite: bool = False) -> Path:
    """Encoder (Hugging Face directory) plus the trained heads (``heads.pt`` and their specs
    in ``heads.json``): a phase-2 model that phase 3 evaluates. Atomic, like save_encoder."""
    return _save(model, out_dir, tokenizer, overwrite=overwrite, with_heads=True)


def load_model(out_dir, **encoder_kwargs):
    """A MultiTaskModel with the encoder and heads saved by ``save_model``."""
    from stilts_ds.modeling.multitask import HeadSpec, MultiTaskModel

    out_dir = Path(out_dir)
    spec_path = out_dir / HEADS_SPEC
    if not spec_path.is_file():
        raise ExportError(f"{out_dir} holds no trained heads ({HEADS_SPEC} missing): it is an encoder export, "
                          "not a fine-tuned model")
    specs = json.loads(spec_path.read_text(encoding="utf-8"))
    tasks = {t: HeadSpec(s["format"], int(s["num_labels"]), s["head"]) for t, s in specs.items()}
    model = MultiTaskModel.build(out_dir, tasks, **encoder_kwargs)
    model.heads.load_state_dict(torch.load(out_dir / HEADS_FILE, map_location="cpu", weights_only=True))
    return model


def load_heads(model, out_dir, mapping: Mapping[str, str]) -> None:
    """Start heads of ``model`` from heads trained in ``out_dir`` (a ``save_model`` export):
    ``mapping`` is {head of model: head saved there}, e.g. {"xcopa": "siqa"} when a staged
    recipe carries SIQA's multiple-choice head on to COPA. Formats must match; so must shapes
    (checked by ``load_state_dict``, and reported naming both heads)."""
    out_dir = Path(out_dir)
    spec_path = out_dir / HEADS_SPEC
    if not spec_path.is_file():
        raise ExportError(f"{out_dir} holds no trained heads ({HEADS_SPEC} missing): a staged recipe starts "
                          "from the previous stage's fine-tuned model")
    saved = {info["head"]: info for info in json.loads(spec_path.read_text(encoding="utf-8")).values()}
    state = torch.load(out_dir / HEADS_FILE, map_location="cpu", weights_only=True)
    formats = {model.task_heads[t]: s.format for t, s in model.task_specs.items()}
    for target, source in mapping.items():
        if target not in model.heads:
            raise ExportError(f"the model has no head {target!r} to start from {out_dir}; it has {sorted(model.heads)}")
        if source not in saved:
            raise ExportError(f"{out_dir} has no head {source!r}; it has {sorted(saved)}")
        if saved[source]["format"] != formats[target]:
            raise ExportError(f"head {target!r} ({formats[target]}) cannot start from {source!r} "
                              f"({saved[source]['format']}) of {out_dir}: the formats differ")
        prefix = source + "."
        weights = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        try:
            model.heads[target].load_state_dict(weights)
        except RuntimeError as e:
            raise ExportError(f"head {target!r} cannot start from {source!r} of {out_dir}: {e}") from e
