"""Fault injection for tests, kept out of the job description: a test writes
``<run_dir>/.stilts-test-fault.json`` before the run starts, and the training loop of that run
directory kills (or, in-process, raises in) the named rank once at the named step.

    faults.plant(run_dir, step=6, rank=1, marker=tmp / "killed")          # Ray: SIGKILL itself
    faults.plant(run_dir, step=5, marker=tmp / "fault", mode="raise")     # in-process: InjectedFault

The marker file (on storage every worker sees) makes it happen once per run, across
restarts. Nothing in a study writes this file; without it ``maybe_fail`` does nothing.
"""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

FAULT_FILE = ".stilts-test-fault.json"


class InjectedFault(RuntimeError):
    """The fault raised in mode "raise" (in-process tests)."""


def plant(run_dir, *, step: int, marker, rank: int = 0, mode: str = "kill", delay_s: float = 5.0) -> Path:
    path = Path(run_dir) / FAULT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"step": step, "rank": rank, "marker": str(marker), "mode": mode,
                                "delay_s": delay_s}))
    return path


def load(run_dir) -> dict | None:
    path = Path(run_dir) / FAULT_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def maybe_fail(fault: dict | None, step: int, rank: int) -> None:
    if not fault or fault["step"] != step or fault.get("rank", 0) != rank:
        return
    marker = Path(fault["marker"])
    if marker.exists():
        return
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(str(step))
    if fault.get("mode") == "raise":
        raise InjectedFault(f"injected fault at step {step} on rank {rank}")
    # Ray Train V2 records a reported checkpoint when its controller next polls the workers;
    # on a toy run steps take milliseconds, so give it time to see the last one first.
    time.sleep(float(fault.get("delay_s", 5.0)))
    os.kill(os.getpid(), signal.SIGKILL)
