"""Fault injection for tests, kept out of the job description: a test writes
``<run_dir>/.stilts-test-fault.json`` before the run starts, and the training loop of that run
directory kills (or, in-process, raises in) the named rank once at the named step.

    faults.plant(run_dir, step=6, rank=1, marker=tmp / "killed")          # Ray: SIGKILL itself
    faults.plant(run_dir, step=5, marker=tmp / "fault", mode="raise")     # in-process: InjectedFault

The marker file (on storage every worker sees) makes it happen once per run, across
restarts. Nothing in a study writes this file; without it ``maybe_fail`` does nothing.

Under Ray Train, mode "kill" first waits until the controller has *registered* this run's
newest checkpoint (it is named in Ray's checkpoint manager record,
``<experiment>/checkpoint_manager_snapshot.json``), then kills. Ray Train V2 registers a
reported checkpoint only when its controller next polls the workers (every
RAY_TRAIN_HEALTH_CHECK_INTERVAL_S); on a toy run steps take milliseconds, so a kill right
after the report could come before it. What the hook saw is written next to the marker
(``registered(marker)``): the test asserts the run resumed from exactly that checkpoint,
with no guess at how long the controller takes.
"""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path, PurePosixPath

FAULT_FILE = ".stilts-test-fault.json"
REGISTERED_SUFFIX = ".registered.json"
SNAPSHOT_FILE = "checkpoint_manager_snapshot.json"  # Ray Train V2's record of a run's checkpoints


class InjectedFault(RuntimeError):
    """The fault raised in mode "raise" (in-process tests)."""


def plant(run_dir, *, step: int, marker, rank: int = 0, mode: str = "kill", register_timeout_s: float = 300.0,
          delay_s: float = 0.0) -> Path:
    """``register_timeout_s``: how long mode "kill" waits for Ray to register the newest
    checkpoint (then it kills anyway and ``registered(marker)`` says so). ``delay_s``: an
    extra pause before the kill; no test needs one to be deterministic any more."""
    path = Path(run_dir) / FAULT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"step": step, "rank": rank, "marker": str(marker), "mode": mode,
                                "register_timeout_s": register_timeout_s, "delay_s": delay_s}))
    return path


def load(run_dir) -> dict | None:
    path = Path(run_dir) / FAULT_FILE
    if not path.is_file():
        return None
    fault = json.loads(path.read_text())
    # The run directory as the job names it: its checkpoints' metas carry the same string.
    fault["run_dir"] = str(run_dir)
    return fault


def registered_path(marker) -> Path:
    marker = Path(marker)
    return marker.with_name(marker.name + REGISTERED_SUFFIX)


def registered(marker) -> dict:
    """What the killed rank saw before the kill: ``checkpoint`` (the directory name of the
    newest checkpoint of its run, registered by Ray; None when the run had none yet), ``uri``,
    ``step``, ``waited_s``; ``error`` when Ray had not registered it in time."""
    return json.loads(registered_path(marker).read_text())


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
    seen = _wait_until_registered(fault)
    tmp = registered_path(marker).with_suffix(".tmp")
    tmp.write_text(json.dumps(seen, indent=2, sort_keys=True))
    os.replace(tmp, registered_path(marker))
    if float(fault.get("delay_s") or 0.0) > 0:
        time.sleep(float(fault["delay_s"]))
    os.kill(os.getpid(), signal.SIGKILL)


def _registered_names(fs, snapshot: str) -> set[str] | None:
    """The checkpoint directory names in Ray's record, or None while there is none (or it is
    being rewritten: the controller does not write it atomically)."""
    try:
        with fs.open_input_stream(snapshot) as f:
            state = json.loads(f.read().decode("utf-8"))
    except (FileNotFoundError, OSError, ValueError):
        return None
    results = list(state.get("checkpoint_results") or [])
    if state.get("latest_checkpoint_result"):
        results.append(state["latest_checkpoint_result"])
    return {r["checkpoint_dir_name"] for r in results if r and r.get("checkpoint_dir_name")}


def _wait_until_registered(fault: dict) -> dict:
    """Block until Ray's checkpoint manager record names the newest intact checkpoint of this
    run directory (see the module docstring); what was seen, for the test."""
    try:
        import ray.train

        storage = ray.train.get_context().get_storage()
        fs, experiment = storage.storage_filesystem, storage.experiment_fs_path
    except Exception as e:  # noqa: BLE001 - not a Ray Train worker: nothing registers checkpoints
        return {"checkpoint": None, "error": f"not in a Ray Train worker ({type(e).__name__}: {e})"}
    from stilts_ds.engine import checkpoints

    newest = None
    for c in checkpoints.ray_checkpoints(fs, experiment):  # newest first
        meta = checkpoints.read_meta(c)
        # This run's own (a staged job's stages share the Ray run) and whole: the checkpoints
        # this rank saved have all finished (the save ends in a barrier before its report).
        if meta and str(meta.get("run_dir")) == fault["run_dir"] and checkpoints.problem(c, meta) is None:
            newest = (c, meta)
            break
    if newest is None:
        return {"checkpoint": None, "uri": None, "step": None, "waited_s": 0.0}
    c, meta = newest
    name = PurePosixPath(c.fs_path).name
    snapshot = (getattr(storage, "checkpoint_manager_snapshot_path", None)
                or PurePosixPath(experiment, SNAPSHOT_FILE).as_posix())
    timeout = float(fault.get("register_timeout_s", 300.0))
    t0 = time.monotonic()
    while True:
        names = _registered_names(fs, snapshot)
        waited = time.monotonic() - t0
        if names is not None and name in names:
            return {"checkpoint": name, "uri": c.uri, "step": int(meta["step"]), "waited_s": waited}
        if waited > timeout:
            return {"checkpoint": name, "uri": c.uri, "step": int(meta["step"]), "waited_s": waited,
                    "error": f"Ray had not registered {name} after {timeout:.0f} s; its record "
                             f"{snapshot} names {sorted(names) if names is not None else 'nothing yet'}"}
        time.sleep(0.1)
