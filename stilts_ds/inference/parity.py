"""The parity gate: an engine is timed only after its outputs match PyTorch's.

The reference is fp32 ``torch-eager`` on the same device. Each engine runs the same
batches, at least one with padding (every row's padding must be masked: the kernel's mask
handling is where engines go wrong) and one without, and is compared on

* the last hidden state over non-padding positions,
* the head's outputs (logits; start/end logits) when a task is given: tagging logits over
  non-padding tokens; span-QA logits whole (the head sets padding to the dtype minimum),
* the predicted labels (argmax), which must agree wherever the reference is decisive.

``timing`` always adds ``with_padded_batch``'s synthetic padded batch (encoder only), so a
fixed-length workload, whose own batches have no padding, still tests the mask. A
random-weight preset is gated (and timed) with ``sharpen``ed weights: at the std-0.02
initialisation a wrong softmax scale or activation hides inside the bf16 tolerance; with
unit-gain weights it cannot (tests/inference/test_parity_sharp.py shows both).

Tolerances (``TOLERANCES``), elementwise ``|engine - ref| <= atol + rtol * |ref|``:

======  =======  =======  ===============================================================
prec.   atol     rtol     why
======  =======  =======  ===============================================================
fp32    5e-3     5e-3     PyTorch engines differ from eager by summation order only (under
                          1e-6 on the tiny model). The ds-kernel's tanh-GELU is up to
                          4.8e-4 off erf-GELU per activation; the LayerNorm closing every
                          layer keeps that from compounding far: 10x one activation's
                          error is the budget (an estimate until measured on a GPU:
                          test_ds_kernel_on_gpu prints the differences). A misread mask,
                          a skipped layer or a wrong weight moves O(1) hidden states by
                          1e-2 to 1.
fp16    5e-2     2e-2     unit roundoff 2^-11 = 4.9e-4 per operation; post-LN activations
                          are O(1), and a few dozen roundings per layer over 24 layers
                          accumulate to ~1e-2 (5.5e-3 measured on the tiny model), plus
                          the fp32 budget above.
bf16    2e-1     8e-2     unit roundoff 2^-8 = 3.9e-3, 8x fp16's; rounding errors grow
                          roughly with the square root of the operation count, so the fp16
                          bounds are scaled by 4 (4.3e-2 measured on the tiny model).
======  =======  =======  ===============================================================

Head logits are compared with the same tolerance (the head runs in fp32 on the engine's
hidden states, so its error is the hidden states' error carried through two linear layers).

Label agreement: a row whose engine label differs from the reference's fails the gate only
when the reference's margin between the two labels exceeds twice the logit tolerance at
that value (a near tie may flip under legitimate rounding; a decisive one may not). The
agreement rate is reported either way. Any NaN or Inf in compared positions fails.

Usage::

    from stilts_ds.inference import parity
    from stilts_ds.inference.engines import build_engine

    reference = parity.reference_engine(model, "cuda")
    batches = parity.parity_batches_from_features(features, batch_size=8)   # or synthetic_parity_batches(...)
    ref_out = parity.reference_outputs(reference, batches, task="xnli")
    report = parity.gate(engine, ref_out, batches, task="xnli")   # marks the engine failed if outside tolerance
    report.passed, report.reason, report.max_abs_diff
"""
from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

import numpy as np
import torch

from stilts_ds.inference.engines import Engine, build_engine
from stilts_ds.tasks.formats import format_of

HEAD_OUTPUT_KEYS = ("logits", "start_logits", "end_logits")
# The synthetic padded batch every gate adds (``with_padded_batch``): encoder only, whatever
# the task, so that a fixed-length workload (``--lengths fixed``) still tests padding.
SYNTHETIC_PADDED = "synthetic-padded"
# Q/K gain of ``sharpen``: attention logits with a standard deviation of about 2 (gain
# squared), so rows attend sharply and a wrong softmax scale moves outputs by O(1), while
# bf16 rounding of the correct model stays inside its tolerance (0.07 of 0.2 on the tiny
# preset, measured by tests/inference/test_parity_sharp.py).
SHARP_QK_GAIN = 1.5


@dataclass(frozen=True)
class Tolerance:
    atol: float
    rtol: float

    def bound(self, ref: torch.Tensor) -> torch.Tensor:
        return self.atol + self.rtol * ref.abs()


TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(atol=5e-3, rtol=5e-3),
    "fp16": Tolerance(atol=5e-2, rtol=2e-2),
    "bf16": Tolerance(atol=2e-1, rtol=8e-2),
}


@dataclass
class ParityReport:
    """The gate's verdict for one engine. Differences are max absolute differences over
    the compared positions of every batch; ``label_agreement`` is the fraction of rows
    (tokens, for token-level heads) whose predicted label matches the reference's."""

    engine: str
    precision: str
    passed: bool
    reason: str | None
    max_abs_diff: float | None
    hidden_max_abs_diff: float | None
    logits_max_abs_diff: float | None
    label_agreement: float | None
    decisive_disagreements: int
    tolerance: Tolerance
    batches: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------ batches

def synthetic_parity_batches(vocab_size: int, batch_size: int = 4, seq_len: int = 16, *, seed: int = 0,
                             pad_token_id: int = 1, bos_token_id: int = 0, eos_token_id: int = 2) -> dict[str, dict]:
    """Two batches of random tokens: "padded" (lengths spread from seq_len/4 to seq_len,
    so all rows but one are padded) and "unpadded" (every row seq_len long)."""
    if batch_size < 2 or seq_len < 4:
        raise ValueError("parity batches need batch_size >= 2 and seq_len >= 4")
    gen = torch.Generator().manual_seed(seed)
    lengths = np.linspace(max(3, seq_len // 4), seq_len, batch_size).round().astype(int)
    return {
        "padded": _token_batch(lengths, seq_len, vocab_size, gen, pad_token_id, bos_token_id, eos_token_id),
        "unpadded": _token_batch([seq_len] * batch_size, seq_len, vocab_size, gen, pad_token_id, bos_token_id, eos_token_id),
    }


def _token_batch(lengths, seq_len, vocab_size, gen, pad, bos, eos) -> dict[str, torch.Tensor]:
    low = min(5, vocab_size - 1)  # above XLM-R's special tokens
    ids = torch.full((len(lengths), seq_len), pad, dtype=torch.long)
    mask = torch.zeros((len(lengths), seq_len), dtype=torch.long)
    for i, n in enumerate(lengths):
        ids[i, :n] = torch.randint(low, vocab_size, (n,), generator=gen)
        ids[i, 0], ids[i, n - 1] = bos, eos
        mask[i, :n] = 1
    return {"input_ids": ids, "attention_mask": mask}


def with_padded_batch(batches: Mapping[str, Mapping[str, torch.Tensor]], vocab_size: int, *, seq_len: int,
                      batch_size: int = 8, seed: int = 0, pad_token_id: int = 1) -> dict[str, dict]:
    """``batches`` plus ``SYNTHETIC_PADDED``: random tokens in rows of spread lengths (all but
    one padded), ``seq_len`` wide (at least 8). It runs through the encoder alone (no head),
    so any task's gate can carry it: the workload's own batches may have no padding at all
    (fixed-length rows) and padding is where engines go wrong."""
    width = max(8, int(seq_len))
    synthetic = synthetic_parity_batches(vocab_size, max(2, batch_size), width, seed=seed,
                                         pad_token_id=pad_token_id)["padded"]
    return {**{k: dict(v) for k, v in batches.items()}, SYNTHETIC_PADDED: synthetic}


def _task_of(batch_name: str, task: str | None) -> str | None:
    return None if batch_name == SYNTHETIC_PADDED else task


def sharpen(model, qk_gain: float = SHARP_QK_GAIN, seed: int = 0):
    """Re-draw the transformer layers' linear weights of ``model`` (in place; returned) so
    that the parity gate can see a wrong engine: each weight N(0, 1 / fan_in), the query
    and key projections ``qk_gain`` times that.

    Why: at the std-0.02 initialisation of a random-weight preset every sublayer adds little
    to the residual stream and attention is nearly uniform, so an engine with a wrong
    softmax scale or a ReLU for the GELU stays inside the bf16 tolerance. With unit-gain
    weights each sublayer moves the hidden state by O(1) and attention is sharp. Only for
    models whose weights carry no meaning (presets): timing does not depend on the values,
    and a trained checkpoint is already sharp. Biases, embeddings and LayerNorms are kept."""
    import math

    from torch import nn

    encoder = getattr(model, "encoder", model)  # MultiTaskModel -> the HF encoder
    stack = getattr(encoder, "encoder", encoder)  # the HF encoder -> its layer stack
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, module in stack.named_modules():
            if isinstance(module, nn.Linear):
                gain = qk_gain if name.rsplit(".", 1)[-1] in ("query", "key") else 1.0
                std = gain / math.sqrt(module.weight.shape[1])
                module.weight.copy_(torch.randn(module.weight.shape, generator=gen) * std)
    return model


def parity_batches_from_features(features, batch_size: int = 8) -> dict[str, dict]:
    """Two batches from a task's featurized split (``stilts_ds.tasks.features.Features``),
    collated by the task's format: "padded" (rows of spread lengths, shortest to longest)
    and "unpadded" (rows of the most common length; one row if no length repeats). For
    multiple choice a row's choices may still differ in length."""
    lengths = np.asarray(features.columns["lengths"])
    if len(lengths) == 0:
        raise ValueError("no rows to build parity batches from")
    collate = format_of(features).collate
    order = np.argsort(lengths, kind="stable")
    picks = np.unique(np.linspace(0, len(order) - 1, min(batch_size, len(order))).round().astype(int))
    padded_rows = order[picks].tolist()
    common_len, _ = Counter(lengths.tolist()).most_common(1)[0]
    same = np.flatnonzero(lengths == common_len)[:batch_size].tolist()
    return {"padded": dict(collate(features, padded_rows).tensors), "unpadded": dict(collate(features, same).tensors)}


# ------------------------------------------------------------------ comparison

def reference_engine(model, device="cpu") -> Engine:
    """The fp32 torch-eager engine every other engine is compared with."""
    return build_engine("torch-eager", model, "fp32", device)


def reference_outputs(reference: Engine, batches: Mapping[str, Mapping[str, torch.Tensor]],
                      task: str | None = None) -> dict[str, dict[str, torch.Tensor]]:
    """The reference's outputs per batch, in fp32 on the CPU (computed once, compared with
    every engine)."""
    if reference.precision != "fp32":
        raise ValueError(f"the parity reference must be fp32, not {reference.precision}")
    return {name: _to_cpu_float(reference.forward(b, task=_task_of(name, task))) for name, b in batches.items()}


def _to_cpu_float(out: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().float().cpu() for k, v in out.items() if torch.is_tensor(v) and k != "loss"}


def _flat_mask(tensors: Mapping[str, torch.Tensor], hidden: torch.Tensor) -> torch.Tensor:
    mask = tensors.get("attention_mask")
    if mask is None:
        return torch.ones(hidden.shape[:2], dtype=torch.bool)
    return mask.reshape(-1, mask.shape[-1]).bool().cpu()  # multiple choice: [B, C, L] -> [B*C, L]


def compare_outputs(ref: Mapping[str, torch.Tensor], out: Mapping[str, torch.Tensor], mask: torch.Tensor,
                    tolerance: Tolerance, token_level: bool = False) -> dict[str, Any]:
    """Compare one batch's outputs (fp32, CPU). ``mask`` [N, L] marks the hidden-state
    positions that count (non-padding); ``token_level``: head outputs have one value per
    token; tagging logits [B, L, K] are compared only where ``mask`` is set.

    Returns hidden/logits max abs diffs, whether each is within ``tolerance``, label
    agreement counts and problems found (strings)."""
    problems: list[str] = []
    result: dict[str, Any] = {"hidden_max_abs_diff": None, "logits_max_abs_diff": None,
                              "label_rows": 0, "label_agree": 0, "decisive_disagreements": 0}
    hidden_r, hidden_o = ref["last_hidden_state"], out["last_hidden_state"]
    if hidden_r.shape != hidden_o.shape:
        problems.append(f"last_hidden_state shape {tuple(hidden_o.shape)} != reference {tuple(hidden_r.shape)}")
        result["problems"] = problems
        return result
    r, o = hidden_r[mask], hidden_o[mask]
    _compare_values("last_hidden_state", r, o, tolerance, problems, result, "hidden_max_abs_diff")

    for key in HEAD_OUTPUT_KEYS:
        if key not in ref:
            continue
        if key not in out:
            problems.append(f"engine output lacks {key}")
            continue
        lr, lo = ref[key], out[key]
        if lr.shape != lo.shape:
            problems.append(f"{key} shape {tuple(lo.shape)} != reference {tuple(lr.shape)}")
            continue
        if token_level and lr.dim() == 3:
            # Tagging [B, L, K]: padding positions do not count; each token is a row.
            # (Span QA [B, L]: the head already sets padding to the dtype minimum in both,
            # so whole rows compare, and the label is the argmax position.)
            lr, lo = lr[mask], lo[mask]
        _compare_values(key, lr, lo, tolerance, problems, result, "logits_max_abs_diff")
        _compare_labels(key, lr, lo, tolerance, problems, result)
    result["problems"] = problems
    return result


def _compare_values(key, r, o, tolerance, problems, result, slot) -> None:
    if r.numel() == 0:
        return
    if not torch.isfinite(o).all():
        problems.append(f"{key}: engine produced NaN/Inf")
        result[slot] = float("inf")
        return
    diff = (o - r).abs()
    worst = float(diff.max())
    result[slot] = worst if result[slot] is None else max(result[slot], worst)
    excess = diff - tolerance.bound(r)
    if float(excess.max()) > 0:
        i = int(excess.argmax())
        problems.append(f"{key}: max abs diff {worst:.3g} (at a reference value of {float(r.flatten()[i]):.3g}) "
                        f"exceeds atol {tolerance.atol:g} + rtol {tolerance.rtol:g} x |ref|")


def _compare_labels(key, lr, lo, tolerance, problems, result) -> None:
    # Labels along the last axis; every other axis is a row (token-level heads: tokens).
    lr2, lo2 = lr.reshape(-1, lr.shape[-1]), lo.reshape(-1, lo.shape[-1])
    if lr2.shape[-1] < 2:
        return
    ref_label, eng_label = lr2.argmax(-1), lo2.argmax(-1)
    rows = torch.arange(lr2.shape[0])
    top = lr2[rows, ref_label]
    margin = top - lr2[rows, eng_label]  # how much the reference prefers its own label
    disagree = ref_label != eng_label
    decisive = disagree & (margin > 2 * tolerance.bound(top))
    result["label_rows"] += int(lr2.shape[0])
    result["label_agree"] += int((~disagree).sum())
    n = int(decisive.sum())
    result["decisive_disagreements"] += n
    if n:
        problems.append(f"{key}: {n} of {lr2.shape[0]} predicted labels differ from the reference where it is decisive")


def check_parity(engine: Engine, reference, batches: Mapping[str, Mapping[str, torch.Tensor]],
                 task: str | None = None, tolerance: Tolerance | None = None) -> ParityReport:
    """Compare ``engine`` with ``reference`` (an fp32 Engine, or ``reference_outputs(...)``)
    on ``batches`` ({name: tensors}). Does not change the engine; see ``gate``."""
    tol = tolerance or TOLERANCES[engine.precision]
    fail = dict(engine=engine.name, precision=engine.precision, passed=False, max_abs_diff=None,
                hidden_max_abs_diff=None, logits_max_abs_diff=None, label_agreement=None,
                decisive_disagreements=0, tolerance=tol)
    if engine.status != "ok":
        return ParityReport(reason=f"engine is {engine.status}: {engine.reason}", **fail)
    ref_out = reference_outputs(reference, batches, task) if isinstance(reference, Engine) else reference
    token_level = engine.task_format(task) is not None and format_of(engine.task_format(task)).token_outputs
    per_batch: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    for name, tensors in batches.items():
        try:
            out = _to_cpu_float(engine.forward(tensors, task=_task_of(name, task)))
        except Exception as e:  # noqa: BLE001 - an engine that cannot run the batch fails the gate
            return ParityReport(reason=f"{name} batch: forward raised {type(e).__name__}: {e}", batches=per_batch, **fail)
        mask = _flat_mask(tensors, out["last_hidden_state"])
        res = compare_outputs(ref_out[name], out, mask, tol, token_level and name != SYNTHETIC_PADDED)
        per_batch[name] = res
        problems += [f"{name} batch: {p}" for p in res["problems"]]

    def worst(slot):
        vals = [b[slot] for b in per_batch.values() if b.get(slot) is not None]
        return max(vals) if vals else None

    hidden, logits = worst("hidden_max_abs_diff"), worst("logits_max_abs_diff")
    rows = sum(b["label_rows"] for b in per_batch.values())
    agree = sum(b["label_agree"] for b in per_batch.values())
    overall = max(v for v in (hidden, logits) if v is not None) if (hidden is not None or logits is not None) else None
    return ParityReport(
        engine=engine.name, precision=engine.precision, passed=not problems,
        reason="; ".join(problems) if problems else None, max_abs_diff=overall,
        hidden_max_abs_diff=hidden, logits_max_abs_diff=logits,
        label_agreement=(agree / rows) if rows else None,
        decisive_disagreements=sum(b["decisive_disagreements"] for b in per_batch.values()),
        tolerance=tol, batches=per_batch,
    )


def gate(engine: Engine, reference, batches: Mapping[str, Mapping[str, torch.Tensor]],
         task: str | None = None, tolerance: Tolerance | None = None) -> ParityReport:
    """``check_parity``, then mark the engine failed (with the reason) if it did not pass:
    a failed engine refuses ``forward`` and is never timed."""
    report = check_parity(engine, reference, batches, task=task, tolerance=tolerance)
    if not report.passed and engine.status == "ok":
        engine.mark_failed(f"parity: {report.reason}")
    return report
