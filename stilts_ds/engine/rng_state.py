"""Random-number state saved with every checkpoint, so that a resumed run draws what the
uninterrupted run would have drawn: torch's CPU and CUDA generators (dropout), numpy's and
Python's, one file per rank beside the DeepSpeed shards.

    rng_state.save(checkpoint_dir, rank)   # in the checkpoint hook, before the directory is reported
    rng_state.load(checkpoint_dir, rank)   # after engine.load_checkpoint; False when the file is absent

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


def _path(checkpoint_dir, rank: int) -> Path:
    return Path(checkpoint_dir) / DIRNAME / f"rank{rank}.pt"


def capture() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()  # the current device's generator
    return state


def restore(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def save(checkpoint_dir, rank: int) -> Path:
    path = _path(checkpoint_dir, rank)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(capture(), path)
    return path


def load(checkpoint_dir, rank: int) -> bool:
    path = _path(checkpoint_dir, rank)
    if not path.is_file():
        return False
    restore(torch.load(path, weights_only=False))  # our own file: numpy's state is a tuple
    return True
