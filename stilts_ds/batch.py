"""Batch arithmetic shared by the config check and the DeepSpeed config: any two of
global batch, micro-batch (rows per rank per forward) and gradient accumulation give the
third, by ``global = micro x accum x world_size``, and the division must be exact; and the
number of optimizer steps a phase trains (``train_steps``, through ``TrainConfig.steps``, for
the study's jobs and for `stilts-ds plan` alike).

    from stilts_ds.batch import resolve_batch, train_steps
    resolve_batch(global_batch=32, micro_batch=4, grad_accum=None, world_size=4)   # (32, 4, 2)
    train_steps(rows=1000, global_batch=32, epochs=3, max_steps=None, share=0.8)  # (120, 40)

It sits below ``config`` so that a config can reject, at load time, a batch that no worker
count divides (every arm, every phase-2 recipe), instead of failing at the first launch.
"""
from __future__ import annotations

import math
from typing import Any

from stilts_ds.errors import StiltsError


def positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise StiltsError(f"{name} must be a positive integer, got {value!r}")
    return value


def resolve_batch(
    global_batch: int | None, micro_batch: int | None, grad_accum: int | None, world_size: int
) -> tuple[int, int, int]:
    """(global, micro, accum) from any two of them and the world size; see module doc."""
    world_size = positive_int("world_size", world_size)
    given = {k: v for k, v in (("global_batch", global_batch), ("micro_batch", micro_batch), ("grad_accum", grad_accum)) if v is not None}
    for k, v in given.items():
        positive_int(k, v)
    if len(given) < 2:
        raise StiltsError(
            f"batch size underdetermined: got only {given or 'nothing'}; set two of global_batch, "
            f"micro_batch (per rank), grad_accum (global = micro x accum x world_size={world_size})"
        )
    if global_batch is None:
        return micro_batch * grad_accum * world_size, micro_batch, grad_accum
    if micro_batch is None:
        per = grad_accum * world_size
        if global_batch % per:
            raise StiltsError(
                f"global_batch {global_batch} is not divisible by grad_accum {grad_accum} x world_size "
                f"{world_size} = {per}; choose a global_batch that is a multiple of {per}, or set micro_batch instead"
            )
        return global_batch, global_batch // per, grad_accum
    per = micro_batch * world_size
    if grad_accum is None:
        if global_batch % per:
            raise StiltsError(
                f"global_batch {global_batch} is not divisible by micro_batch {micro_batch} x world_size "
                f"{world_size} = {per}; choose a global_batch that is a multiple of {per}, or change micro_batch"
            )
        return global_batch, micro_batch, global_batch // per
    if micro_batch * grad_accum * world_size != global_batch:
        raise StiltsError(
            f"contradictory batch settings: micro_batch {micro_batch} x grad_accum {grad_accum} x world_size "
            f"{world_size} = {micro_batch * grad_accum * world_size}, not global_batch {global_batch}; "
            "set only two of the three and let the third be derived"
        )
    return global_batch, micro_batch, grad_accum


def train_steps(*, rows: int, global_batch: int, epochs: float, max_steps: int | None,
                share: float = 1.0) -> tuple[int, int]:
    """(total optimizer steps, steps per epoch) to pass ``epochs`` times over ``rows`` rows
    that get ``share`` of the draws, ``global_batch`` rows per step: steps per epoch =
    ceil(rows / global_batch / share), total = ceil(epochs x steps per epoch), or
    ``max_steps`` when set. ``share`` < 1 when other data (MLM text) takes the rest of the
    draws, so that the counted rows still see ``epochs`` epochs in expectation."""
    positive_int("global_batch", global_batch)
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 0:
        raise StiltsError(f"rows must be a row count, got {rows!r}")
    if not 0 < share <= 1:
        raise StiltsError(f"the counted tasks' sampling share must be in (0, 1], got {share!r}")
    # Rounded to 9 digits first: a share of 1 - 0.2 summed from float probabilities must not
    # turn an exact number of steps into one more.
    per_epoch = max(1, math.ceil(round(rows / global_batch / share, 9)))
    if max_steps is not None:
        return positive_int("max_steps", max_steps), per_epoch
    return max(1, math.ceil(round(epochs * per_epoch, 9))), per_epoch
