"""Several jobs at once on a Ray cluster: each a TorchTrainer fit driven by its own Ray task.

    pool = FitPool(asdict(cfg.cluster), in_process=False)
    pool.slots()                              # worker slots: GPUs, or CPUs / cpus_per_worker, per node
    pool.submit("english/phase1", job, name="quickstart-english-phase1", storage_path=...)
    for done in pool.wait(timeout=1.0):       # FitDone(handle, error) as fits end
        ...

With Ray, a submitted job runs in a ``num_cpus=0`` remote task that calls ``engine.launch``:
Train V2 runs each fit's controller as its own actor, so a fit inside a task is supported and
holds its own placement group (its workers packed by the cluster's placement strategy); the
task itself reserves nothing. ``ray.wait`` collects the fits as they end, so the caller can
start the next ones. In-process (``in_process``), ``submit`` runs the job in this process at
once and ``wait`` hands back its result.

The pool joins the cluster through ``engine.connection.connect`` (the one ``ray.init``, which
also sets the faster Ray Train health check for the fits started here); ``connect`` and
``alive_nodes`` are importable from here too, as ``engine.launch`` does.
"""
from __future__ import annotations

import math
import traceback
from dataclasses import dataclass
from typing import Any

from stilts_ds.engine.connection import alive_nodes, connect, train_env
from stilts_ds.engine.job import Job
from stilts_ds.errors import StiltsError


@dataclass
class FitDone:
    handle: str
    error: str | None  # None: the fit succeeded; else the error in a few lines


def _drive(job: Job, cluster: dict, name: str, storage_path: str) -> None:
    """Runs in a Ray task: one fit, start to end."""
    from stilts_ds.engine.launch import launch

    launch(job, cluster, name=name, storage_path=storage_path)


def _message(err: BaseException) -> str:
    """The root error of a failed fit in a few lines (Ray wraps it in RayTaskError and
    TrainingFailedError, each with its own long traceback)."""
    cause = err
    seen = set()
    while id(cause) not in seen:
        seen.add(id(cause))
        nxt = getattr(cause, "cause", None) or cause.__cause__
        if nxt is None:
            break
        cause = nxt
    text = f"{type(cause).__name__}: {cause}".strip()
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) > 12:
        lines = lines[:4] + ["..."] + lines[-7:]
    return "\n".join(lines)


class FitPool:
    def __init__(self, cluster: dict, *, in_process: bool = False):
        self.cluster = dict(cluster)
        self.in_process = in_process
        self._refs: dict[Any, str] = {}
        self._done: list[FitDone] = []
        self._remote = None
        if not in_process:
            connect(self.cluster.get("ray_address"))

    # ----------------------------------------------------------- capacity
    def slots(self) -> int:
        """Worker slots of the cluster as it is now: per node, GPUs (when workers use one each)
        or CPUs divided by ``cpus_per_worker``; a worker never spans nodes."""
        if self.in_process:
            return 1
        per_cpu = float(self.cluster.get("cpus_per_worker") or 1.0)
        total = 0
        for node in alive_nodes():
            res = node.get("Resources", {})
            cpu_slots = math.floor(res.get("CPU", 0.0) / per_cpu + 1e-9) if per_cpu > 0 else 10**6
            total += min(cpu_slots, int(res.get("GPU", 0.0))) if self.cluster.get("use_gpu") else cpu_slots
        return total

    # ----------------------------------------------------------- jobs
    def submit(self, handle: str, job: Job, *, name: str, storage_path: str) -> None:
        if self.in_process:
            try:
                from stilts_ds.engine.launch import launch

                launch(job, self.cluster, name=name, storage_path=storage_path, in_process=True)
                error = None
            except StiltsError as e:
                error = f"{type(e).__name__}: {e}"
            except Exception as e:  # noqa: BLE001 - a failed job fails only its dependents
                error = f"{type(e).__name__}: {e}"
                traceback.print_exc()
            self._done.append(FitDone(handle, error))
            return
        import ray

        if self._remote is None:
            self._remote = ray.remote(num_cpus=0, max_retries=0)(_drive)
        ref = self._remote.options(runtime_env={"env_vars": train_env()}, name=f"stilts-ds {handle}").remote(
            job, self.cluster, name, storage_path)
        self._refs[ref] = handle

    def cancel_all(self) -> None:
        """End every running fit: cancelling the task that drives a fit ends its controller
        (an actor the task owns) and with it the fit's workers."""
        if not self._refs:
            return
        import ray

        for ref in list(self._refs):
            try:
                ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - already ended
                pass
        self._refs.clear()

    def wait(self, timeout: float | None = None) -> list[FitDone]:
        """Fits that ended (at least one if any is running and ``timeout`` is None)."""
        out, self._done = self._done, []
        if out or not self._refs:
            return out
        import ray

        ready, _ = ray.wait(list(self._refs), num_returns=1, timeout=timeout)
        others = [r for r in self._refs if r not in ready]
        if ready and others:  # collect every other fit that ended meanwhile too
            more, _ = ray.wait(others, num_returns=len(others), timeout=0)
            ready = list(ready) + list(more)
        for ref in ready:
            handle = self._refs.pop(ref)
            try:
                ray.get(ref)
                out.append(FitDone(handle, None))
            except Exception as e:  # noqa: BLE001 - reported per job
                out.append(FitDone(handle, _message(e)))
        return out
