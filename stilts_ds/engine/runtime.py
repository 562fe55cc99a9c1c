"""Where a worker runs: under Ray Train, or in-process at world size 1 (benchmarks, machines
without Ray). One interface for rank information, collectives, checkpoints and reports so
the training loop is the same code in both places.

    rt = Runtime.detect(launcher)       # RayRuntime inside TorchTrainer, else LocalRuntime
    rt.rank, rt.world_size
    rt.all_gather(obj)                  # list of every rank's obj
    rt.broadcast(obj)                   # rank 0's obj, on every rank
    store = rt.checkpoint_store(run_dir)    # one per job (a StagedJob's stages: one each)
    store.candidates()                  # checkpoints of the run, newest first (engine.checkpoints)
    with store.opened(candidate) as d:  # a local directory to load from
        ...
    target = store.begin(step)          # every rank: where to write this checkpoint
    store.commit(target, metrics)       # every rank, after every rank wrote its shard
    rt.report(metrics)                  # metrics without a checkpoint

Where checkpoints are written (no copy through $TMPDIR):

* Ray, storage on a local filesystem (a local directory, an NFS mount): every rank saves
  straight into ``<storage_path>/<run name>/checkpoint_<seq>/`` (the name chosen by rank 0),
  and reports it with ``CheckpointUploadMode.NO_UPLOAD``: Ray records it in place.
* Ray, other storage (s3://, gs://): each rank stages its files under
  ``<run_dir>/.staging/rank<r>/`` (cleared when the worker starts) and Ray uploads them
  (``SYNC``; the staging copy is deleted after the upload); Ray merges the ranks' files.
* In-process: ``<run_dir>/checkpoints/.step<N>.partial``, renamed to ``step<N>`` when
  complete; the newest two are kept (as Ray's ``num_to_keep=2``).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.distributed as dist

from stilts_ds.engine import checkpoints


def process_group_backend(cuda: bool | None = None) -> str:
    """The torch.distributed backend for this worker: ``nccl`` when it trains on a CUDA
    device (``cuda`` None: whether CUDA is available here), ``gloo`` otherwise.

    gloo on a GPU would move every ZeRO gradient bucket through host memory, even at world
    size 1, and a throughput or MFU figure would then time that copy instead of training."""
    if cuda is None:
        cuda = torch.cuda.is_available()
    return "nccl" if cuda else "gloo"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class SaveTarget:
    """Where this rank writes one checkpoint: ``dir`` (a local directory), the checkpoint's
    name, its step, and whether every rank writes into the same directory (``shared``) or
    each into its own (staging, merged by Ray on upload)."""

    dir: Path
    name: str
    step: int
    shared: bool


class CheckpointStore:
    """A run's checkpoints, seen from one rank (see the module docstring)."""

    def candidates(self) -> list[checkpoints.Candidate]:
        raise NotImplementedError

    @contextlib.contextmanager
    def opened(self, candidate: checkpoints.Candidate) -> Iterator[Path]:
        yield Path(candidate.fs_path)

    def begin(self, step: int) -> SaveTarget:
        raise NotImplementedError

    def commit(self, target: SaveTarget, metrics: dict) -> None:
        raise NotImplementedError


class Runtime:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    node_rank: int = 0
    node_id: str = "local"

    @staticmethod
    def detect(launcher: str, run_dir=None) -> "Runtime":
        """RayRuntime inside a TorchTrainer (``launcher == "ray"``), else a LocalRuntime.
        (``run_dir`` is accepted for old callers; checkpoints are per job: ``checkpoint_store``.)"""
        return RayRuntime() if launcher == "ray" else LocalRuntime()

    def device(self) -> torch.device:
        if torch.cuda.is_available():
            return torch.device("cuda", self.local_rank % torch.cuda.device_count())
        return torch.device("cpu")

    def barrier(self) -> None:
        if dist.is_initialized() and self.world_size > 1:
            dist.barrier()

    def all_gather(self, obj: Any) -> list:
        if not dist.is_initialized() or self.world_size == 1:
            return [obj]
        out: list = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (the others' are ignored)."""
        return self.all_gather(obj if self.rank == 0 else None)[0]

    def checkpoint_store(self, run_dir) -> CheckpointStore:
        raise NotImplementedError

    def report(self, metrics: dict) -> None:
        raise NotImplementedError


class RayRuntime(Runtime):
    """Inside a Ray Train worker: TorchTrainer already created the process group."""

    def __init__(self):
        import ray.train

        ctx = ray.train.get_context()
        self.rank = ctx.get_world_rank()
        self.world_size = ctx.get_world_size()
        self.local_rank = ctx.get_local_rank()
        self.node_rank = ctx.get_node_rank()
        self.node_id = ray.get_runtime_context().get_node_id()

    def checkpoint_store(self, run_dir) -> CheckpointStore:
        return RayStore(self, Path(run_dir))

    def report(self, metrics: dict) -> None:
        import ray.train

        ray.train.report(metrics)


class RayStore(CheckpointStore):
    """The checkpoints of the Ray run this worker group belongs to (its experiment directory,
    shared by every stage of a StagedJob)."""

    def __init__(self, rt: RayRuntime, run_dir: Path):
        import pyarrow.fs
        import ray.train

        self.rt = rt
        self.storage = ray.train.get_context().get_storage()
        self.fs = self.storage.storage_filesystem
        self.experiment = self.storage.experiment_fs_path
        self.local = isinstance(self.fs, pyarrow.fs.LocalFileSystem)
        self.staging = run_dir / checkpoints.STAGING_DIR / f"rank{rt.rank}"
        self._seq = 0
        if not self.local:  # what a killed worker left on its way to storage
            shutil.rmtree(self.staging, ignore_errors=True)

    def candidates(self) -> list[checkpoints.Candidate]:
        return checkpoints.ray_checkpoints(self.fs, self.experiment)

    @contextlib.contextmanager
    def opened(self, candidate: checkpoints.Candidate) -> Iterator[Path]:
        if self.local:
            yield Path(candidate.fs_path)
            return
        import ray.train

        with ray.train.Checkpoint(path=candidate.fs_path, filesystem=candidate.fs).as_directory() as d:
            yield Path(d)

    def begin(self, step: int) -> SaveTarget:
        # One name per checkpoint, never reused (a step redone after a fallback gets a new
        # one): Ray deletes old checkpoints by path, and must never delete a newer one.
        choice = None
        if self.rt.rank == 0:
            choice = checkpoints.next_ray_name(self.fs, self.experiment, after=self._seq)
        name, self._seq = self.rt.broadcast(choice)
        if self.local:
            path = Path(self.storage.build_checkpoint_path_from_name(name))
            path.mkdir(parents=True, exist_ok=True)
            return SaveTarget(path, name, step, shared=True)
        shutil.rmtree(self.staging, ignore_errors=True)
        self.staging.mkdir(parents=True)
        return SaveTarget(self.staging, name, step, shared=False)

    def commit(self, target: SaveTarget, metrics: dict) -> None:
        import ray.train

        if self.local:
            ckpt = ray.train.Checkpoint(path=str(target.dir), filesystem=self.fs)
            ray.train.report(metrics, checkpoint=ckpt, checkpoint_dir_name=target.name,
                             checkpoint_upload_mode=ray.train.CheckpointUploadMode.NO_UPLOAD)
        else:
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(str(target.dir)),
                             checkpoint_dir_name=target.name,
                             checkpoint_upload_mode=ray.train.CheckpointUploadMode.SYNC,
                             delete_local_checkpoint_after_upload=True)


class LocalRuntime(Runtime):
    """World size 1 in this process. Checkpoints live in each job's ``<run_dir>/checkpoints``,
    so an interrupted in-process run resumes like a Ray one."""

    def __init__(self, run_dir=None):
        self.last_metrics: dict = {}
        if not dist.is_initialized():
            # DeepSpeed needs a process group even alone (nccl on a GPU, gloo on the CPU:
            # process_group_backend). Its store gets a fresh port, never an inherited
            # MASTER_PORT: a parent process (a test run, a Ray job's driver) may hold that port
            # with its own group.
            port = _free_port()
            os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
            os.environ.setdefault("RANK", "0")
            os.environ.setdefault("LOCAL_RANK", "0")
            os.environ.setdefault("WORLD_SIZE", "1")
            backend = process_group_backend()
            if backend == "nccl":
                torch.cuda.set_device(self.device())  # nccl binds the group to the current device
            dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
        self.backend = dist.get_backend()

    def checkpoint_store(self, run_dir) -> CheckpointStore:
        return LocalStore(self, Path(run_dir))

    def report(self, metrics: dict) -> None:
        self.last_metrics = dict(metrics)


class LocalStore(CheckpointStore):
    def __init__(self, rt: LocalRuntime, run_dir: Path):
        self.rt = rt
        self.run_dir = run_dir
        checkpoints.clear_partials(run_dir)  # what an interrupted save left

    def candidates(self) -> list[checkpoints.Candidate]:
        return checkpoints.local_checkpoints(self.run_dir)

    def begin(self, step: int) -> SaveTarget:
        path = checkpoints.local_partial(self.run_dir, step)
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return SaveTarget(path, f"step{step}", step, shared=True)

    def commit(self, target: SaveTarget, metrics: dict) -> None:
        checkpoints.commit_local(self.run_dir, target.step)
        self.rt.last_metrics = dict(metrics)
