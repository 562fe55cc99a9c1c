"""Random-number state saved with every checkpoint, so that a resumed run draws what the
uninterrupted run would have drawn: torch's CPU and CUDA generators (dropout), numpy's and
Python's, one file per rank beside the DeepSpeed shards.

    rng_state.save(checkpoint_dir, rank)   # in the checkpoint hook, before the directory is reported
    rng_state.load(checkpoint_dir, rank)   # after engine.load_checkpoint; False when the file is absent

The file holds only tensors, ints, floats, strings and None (numpy's MT19937 key array and
Python's Mersenne Twister state as int64 tensors), so it loads with
``torch.load(path, weights_only=True)``: checkpoints come from shared storage, and a file
there must not be able to run code when it is read.

Without it a resumed run starts from the seed's state again: its dropout masks differ from
the run it replaces, and so do its losses from the first step after the restart. Data order
and MLM masks do not depend on this (the sampler and batchers are checkpointed; masks are
seeded per step). A checkpoint written with another world size has no file for some ranks:
those keep their seeded state, as before this existed.
"""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

DIRNAME = "rng_state"
FORMAT = 2  # 1: numpy's state tuple pickled (needed weights_only=False)


def path(checkpoint_dir, rank: int) -> Path:
    return Path(checkpoint_dir) / DIRNAME / f"rank{rank}.pt"


def capture() -> dict:
    """The generators' state as tensors and plain values (``torch.load(weights_only=True)``)."""
    algo, keys, pos, has_gauss, cached = np.random.get_state()
    version, mt, gauss_next = random.getstate()
    state = {
        "format": FORMAT,
        "torch": torch.get_rng_state(),
        "numpy": {"algorithm": str(algo), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        # Python's state: 624 words of 32 bits and the position (< 2**32: fits int64).
        "python": {"version": int(version), "state": torch.tensor(mt, dtype=torch.int64),
                   "gauss_next": None if gauss_next is None else float(gauss_next)},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()  # the current device's generator
    return state


def restore(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["algorithm"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(x) for x in p["state"].tolist()), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def save(checkpoint_dir, rank: int) -> Path:
    target = path(checkpoint_dir, rank)
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(capture(), target)
    return target


def load(checkpoint_dir, rank: int) -> bool:
    target = path(checkpoint_dir, rank)
    if not target.is_file():
        return False
    state = torch.load(target, weights_only=True)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{target}: not a stilts-ds random-number state of format {FORMAT}")
    restore(state)
    return True
