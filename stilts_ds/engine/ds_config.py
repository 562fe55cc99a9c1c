"""Build the DeepSpeed config of a training run: base ZeRO JSON + experiment settings.

The JSON files in ``ds_configs/`` hold only ZeRO stage, offload and communication knobs.
Batch size, gradient accumulation, learning rate, warmup, schedule, precision and the
optimizer come from the experiment config, and ``merge_ds_config`` is the one function that
fills them in. It rejects contradictions instead of letting one source silently win.

Usage (inside a training worker)::

    from stilts_ds.engine.ds_config import load_base, merge_ds_config, write_merged, client_optimizer

    ds_cfg = merge_ds_config(
        "zero2", global_batch=32, micro_batch=8, world_size=2,   # grad_accum derived: 2
        lr=1e-5, warmup_ratio=0.1, total_steps=10_000, precision="bf16",
    )
    write_merged(ds_cfg, run_dir)                                 # run_dir/ds_config.json
    engine, *_ = deepspeed.initialize(
        model=model, optimizer=client_optimizer(model, lr=1e-5, weight_decay=0.01), config=ds_cfg,
    )

Rules ``merge_ds_config`` enforces (each failure is a ``StiltsError`` naming the numbers
and the fix):

- batch: any two of ``global_batch``, ``micro_batch`` (per rank), ``grad_accum`` determine
  the third by ``global = micro x accum x world_size``; all three must agree; the division
  must be exact. All three DeepSpeed keys are written, so DeepSpeed re-checks them against
  its own world size at ``initialize``.
- the base JSON may not set ``train_batch_size``, ``train_micro_batch_size_per_gpu``,
  ``gradient_accumulation_steps``, ``optimizer``, ``scheduler``, ``fp16``, ``bf16``
  (or the legacy ``bfloat16`` / ``amp``): those belong to the experiment config.
  ``gradient_clipping`` may live in either place, but not with two different values.
- offload: ``offload_optimizer`` needs ZeRO stage 1-3 and ``offload_param`` stage 3
  (DeepSpeed 0.19's ``DeepSpeedZeroOffloadParamConfig`` / ``...OptimizerConfig``).
  With optimizer offload DeepSpeed refuses a client torch optimizer (it wants
  DeepSpeedCPUAdam; ``zero_force_ds_cpu_optimizer``), so the config's ``optimizer``
  block is then required; ``ds_optimizer=None`` (default) adds it exactly then.
- schedule: ``linear`` = DeepSpeed ``WarmupDecayLR`` (linear warmup 0 -> lr, linear decay
  to 0 at ``total_steps``), ``constant`` = ``WarmupLR`` (warmup, then lr). Warmup comes
  from ``warmup_ratio`` (ceil(ratio x total_steps), as Hugging Face does) or
  ``warmup_steps``, not both. Steps are optimizer steps (DeepSpeed steps its scheduler
  once per accumulation boundary).
- precision: ``fp16`` adds a dynamic-loss-scaling ``fp16`` block, ``bf16`` adds
  ``{"bf16": {"enabled": true}}``, ``fp32`` adds neither.

Why a client optimizer by default: a ds_config ``optimizer`` block without offload makes
DeepSpeed JIT-build ``fused_adam`` (about 52 s on a CPU machine, cached afterwards), while a
``torch.optim.AdamW`` passed to ``deepspeed.initialize`` needs no build. ``client_optimizer``
builds that AdamW with the same betas/eps as the block, so both paths train the same.

This module needs no deepspeed import: it is dict manipulation, checked against the
DeepSpeed 0.19.8 sources (``runtime/config.py``, ``runtime/lr_schedules.py``,
``runtime/precision_config.py``, ``runtime/zero/offload_config.py``).
"""
from __future__ import annotations

import copy
import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping

from stilts_ds import shipped
from stilts_ds.atomic import write_atomic

# The batch arithmetic lives below config (which checks every arm's batches at load time);
# ds_config keeps its names so callers read one module.
from stilts_ds.batch import positive_int as _positive_int
from stilts_ds.batch import resolve_batch
from stilts_ds.errors import StiltsError
from stilts_ds.precision import PRECISIONS

DS_CONFIG_DIR = shipped.ds_config_dir()  # the checkout's ds_configs/, or the wheel's copy
MERGED_NAME = "ds_config.json"

Precision = Literal["fp32", "fp16", "bf16"]
Schedule = Literal["linear", "constant"]
SCHEDULES = {"linear": "WarmupDecayLR", "constant": "WarmupLR"}

# AdamW hyper-parameters shared by the ds_config block and client_optimizer (XLM-R /
# Hugging Face fine-tuning defaults, which the paper's jiant runs used).
ADAMW_BETAS = (0.9, 0.999)
ADAMW_EPS = 1e-8

# Dynamic loss scaling (loss_scale 0) with DeepSpeed's documented defaults.
FP16_BLOCK = {
    "enabled": True,
    "loss_scale": 0,
    "initial_scale_power": 16,
    "loss_scale_window": 1000,
    "hysteresis": 2,
    "min_loss_scale": 1,
}

# Keys the experiment config owns, with the merge_ds_config argument that sets each.
OWNED_KEYS = {
    "train_batch_size": "global_batch",
    "train_micro_batch_size_per_gpu": "micro_batch",
    "gradient_accumulation_steps": "grad_accum",
    "optimizer": "lr / weight_decay (and ds_optimizer)",
    "scheduler": "schedule / warmup_ratio / warmup_steps / total_steps",
    "fp16": "precision",
    "bf16": "precision",
    "bfloat16": "precision",
    "amp": "precision",
}

_OFFLOAD_DEVICES = ("cpu", "nvme")


def available_bases() -> list[str]:
    """Names accepted by ``load_base``: the training (ZeRO) configs in ``ds_configs/``;
    ``inference_*.json`` hold DeepSpeed-Inference settings and are not training bases."""
    return sorted(p.stem for p in DS_CONFIG_DIR.glob("*.json") if not p.stem.startswith("inference_"))


def load_base(name_or_path: str | os.PathLike) -> dict:
    """Read a base DeepSpeed JSON: a name such as ``"zero2"`` (``ds_configs/zero2.json``)
    or a path to a JSON file."""
    raw = os.fspath(name_or_path)
    as_name = DS_CONFIG_DIR / (raw if raw.endswith(".json") else f"{raw}.json")
    looks_like_name = os.sep not in raw and "/" not in raw
    if looks_like_name and as_name.stem.startswith("inference_"):
        raise StiltsError(f"{raw!r} is a DeepSpeed-Inference config (for stilts-ds bench), not a training "
                          f"base; use one of {', '.join(available_bases())}")
    if looks_like_name and as_name.is_file():
        path = as_name
    elif Path(raw).is_file():
        path = Path(raw)
    else:
        raise StiltsError(
            f"unknown DeepSpeed base config {raw!r}: no such file, and not one of "
            f"{', '.join(available_bases()) or '(none)'} in {DS_CONFIG_DIR}"
        )
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise StiltsError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from exc
    if not isinstance(cfg, dict):
        raise StiltsError(f"{path}: a DeepSpeed config must be a JSON object, got {type(cfg).__name__}")
    return cfg


def resolve_warmup(warmup_ratio: float | None, warmup_steps: int | None, total_steps: int) -> int:
    """Number of warmup optimizer steps (0 when neither is given)."""
    if warmup_ratio is not None and warmup_steps is not None:
        raise StiltsError(
            f"both warmup_ratio={warmup_ratio} and warmup_steps={warmup_steps} are set; set only one"
        )
    if warmup_ratio is not None:
        if isinstance(warmup_ratio, bool) or not isinstance(warmup_ratio, (int, float)) or not 0 <= warmup_ratio <= 1:
            raise StiltsError(f"warmup_ratio must be a fraction of total_steps in [0, 1], got {warmup_ratio!r}")
        return math.ceil(warmup_ratio * total_steps)
    if warmup_steps is not None:
        if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
            raise StiltsError(f"warmup_steps must be a non-negative integer, got {warmup_steps!r}")
        if warmup_steps > total_steps:
            raise StiltsError(
                f"warmup_steps {warmup_steps} exceeds total_steps {total_steps}; lower warmup_steps or train longer"
            )
        return warmup_steps
    return 0


def _offload_device(zero: Mapping[str, Any], key: str) -> str | None:
    block = zero.get(key)
    if isinstance(block, Mapping) and str(block.get("device", "none")).lower() in _OFFLOAD_DEVICES:
        return str(block["device"]).lower()
    return None


def merge_ds_config(
    base: Mapping[str, Any] | str | os.PathLike,
    *,
    global_batch: int | None = None,
    micro_batch: int | None = None,
    grad_accum: int | None = None,
    world_size: int,
    lr: float,
    warmup_ratio: float | None = None,
    warmup_steps: int | None = None,
    total_steps: int,
    precision: Precision,
    schedule: Schedule = "linear",
    weight_decay: float = 0.01,
    grad_clip: float | None = None,
    ds_optimizer: bool | None = None,
) -> dict:
    """The full DeepSpeed config: ``base`` (dict, name or path) plus the experiment's
    batch/lr/schedule/precision. ``base`` is not modified.

    ``ds_optimizer``: True writes an ``AdamW`` optimizer block; False writes none (pass a
    torch optimizer, e.g. ``client_optimizer``, to ``deepspeed.initialize``); None (default)
    writes one only when optimizer offload requires it. ``weight_decay`` goes into that
    block; with a client optimizer pass the same value to ``client_optimizer``. ``lr``
    is the scheduler's peak either way (DeepSpeed's scheduler overwrites the optimizer's lr).
    """
    source = os.fspath(base) if isinstance(base, (str, os.PathLike)) else "base DeepSpeed config"
    cfg = load_base(base) if isinstance(base, (str, os.PathLike)) else copy.deepcopy(dict(base))

    for key, option in OWNED_KEYS.items():
        if key in cfg:
            raise StiltsError(
                f"{source}: {key!r} must not be in the DeepSpeed JSON; set it in the experiment config "
                f"({option}) and remove it from the JSON"
            )

    global_batch, micro_batch, grad_accum = resolve_batch(global_batch, micro_batch, grad_accum, world_size)

    total_steps = _positive_int("total_steps", total_steps)
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        raise StiltsError(f"lr must be a positive number, got {lr!r}")
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)) or not weight_decay >= 0:
        raise StiltsError(f"weight_decay must be a non-negative number, got {weight_decay!r}")
    if precision not in PRECISIONS:
        raise StiltsError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    if schedule not in SCHEDULES:
        raise StiltsError(f"unknown schedule {schedule!r}; use one of {', '.join(SCHEDULES)}")
    n_warmup = resolve_warmup(warmup_ratio, warmup_steps, total_steps)

    # ZeRO stage and offload.
    zero = cfg.get("zero_optimization", {})
    if not isinstance(zero, Mapping):
        raise StiltsError(f"{source}: 'zero_optimization' must be an object, got {zero!r}")
    stage = zero.get("stage", 0)
    if stage not in (0, 1, 2, 3):
        raise StiltsError(f"{source}: zero_optimization.stage must be 0, 1, 2 or 3, got {stage!r}")
    opt_offload = _offload_device(zero, "offload_optimizer")
    param_offload = _offload_device(zero, "offload_param")
    if opt_offload and stage < 1:
        raise StiltsError(
            f"{source}: offload_optimizer (device {opt_offload}) needs ZeRO stage 1, 2 or 3, but stage is {stage}; "
            "raise zero_optimization.stage or remove offload_optimizer"
        )
    if param_offload and stage != 3:
        raise StiltsError(
            f"{source}: offload_param (device {param_offload}) needs ZeRO stage 3, but stage is {stage}; "
            "use a stage-3 base (zero3) or remove offload_param"
        )

    # Optimizer. DeepSpeed raises at initialize when optimizer offload meets a client torch
    # optimizer, unless the JSON opts out with zero_force_ds_cpu_optimizer: false.
    offload_needs_block = bool(opt_offload) and cfg.get("zero_force_ds_cpu_optimizer", True) is not False
    if ds_optimizer is None:
        ds_optimizer = offload_needs_block
    elif not ds_optimizer and offload_needs_block:
        raise StiltsError(
            f"{source}: offload_optimizer (device {opt_offload}) runs the optimizer as DeepSpeedCPUAdam, which "
            "DeepSpeed builds only from the config's optimizer block; leave ds_optimizer unset (or True), "
            "or use a base without offload_optimizer"
        )
    if ds_optimizer:
        cfg["optimizer"] = {
            "type": "AdamW",
            "params": {
                "lr": float(lr),
                "betas": list(ADAMW_BETAS),
                "eps": ADAMW_EPS,
                "weight_decay": float(weight_decay),
            },
        }

    # Batch: write all three so DeepSpeed re-asserts them against its own world size.
    cfg["train_batch_size"] = global_batch
    cfg["train_micro_batch_size_per_gpu"] = micro_batch
    cfg["gradient_accumulation_steps"] = grad_accum

    # Schedule. DeepSpeed's WarmupLR rejects warmup_num_steps <= 0 (and warms up over at
    # least 2 steps internally), so "no warmup" is written as 1 step; for the constant
    # schedule the warmup then starts at lr itself, making it exactly constant.
    params: dict[str, Any] = {
        "warmup_min_lr": 0.0,
        "warmup_max_lr": float(lr),
        "warmup_num_steps": max(n_warmup, 1),
        "warmup_type": "linear",  # DeepSpeed's default is "log"; the paper warms up linearly
    }
    if schedule == "constant" and n_warmup == 0:
        params["warmup_min_lr"] = float(lr)
    if schedule == "linear":
        params["total_num_steps"] = total_steps
    cfg["scheduler"] = {"type": SCHEDULES[schedule], "params": params}

    if precision == "fp16":
        cfg["fp16"] = dict(FP16_BLOCK)
    elif precision == "bf16":
        cfg["bf16"] = {"enabled": True}

    if grad_clip is not None:
        if isinstance(grad_clip, bool) or not isinstance(grad_clip, (int, float)) or not grad_clip >= 0:
            raise StiltsError(f"grad_clip must be a non-negative number (0 = off) or None, got {grad_clip!r}")
        in_base = cfg.get("gradient_clipping")
        if in_base is not None and float(in_base) != float(grad_clip):
            raise StiltsError(
                f"{source}: gradient_clipping is {in_base} there but grad_clip is {grad_clip} in the experiment "
                "config; set grad_clip to None to keep the JSON's value, or remove gradient_clipping from the JSON"
            )
        cfg["gradient_clipping"] = float(grad_clip)
    return cfg


def write_merged(config: Mapping[str, Any], run_dir: str | os.PathLike) -> Path:
    """Write ``run_dir/ds_config.json`` atomically (temporary file, fsync, rename)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    target = run_dir / MERGED_NAME
    text = json.dumps(config, indent=2, sort_keys=True) + "\n"
    write_atomic(target, text)
    return target


def param_groups(model_or_params: Any, weight_decay: float) -> list[dict]:
    """Two AdamW groups: decay on weight matrices, none on biases and norm weights (ndim < 2),
    as BERT/XLM-R fine-tuning does. Pass as ``model_parameters`` to ``deepspeed.initialize``
    (ds_optimizer path) or to ``client_optimizer``."""
    named: Iterable = (
        model_or_params.named_parameters() if hasattr(model_or_params, "named_parameters") else enumerate(model_or_params)
    )
    decay, no_decay = [], []
    for _, p in named:
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": float(weight_decay)}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def client_optimizer(model_or_params: Any, *, lr: float, weight_decay: float):
    """``torch.optim.AdamW`` matching the ds_config block (same betas/eps, grouped decay).

    Pass it as ``optimizer=`` to ``deepspeed.initialize`` with a config merged with
    ``ds_optimizer=False``; DeepSpeed's scheduler then drives its learning rate.
    """
    import torch  # here, so reading/merging configs never needs torch

    return torch.optim.AdamW(param_groups(model_or_params, weight_decay), lr=lr, betas=ADAMW_BETAS, eps=ADAMW_EPS)
