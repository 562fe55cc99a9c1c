"""Where a worker runs: under Ray Train, or in-process at world size 1 (benchmarks, machines
without Ray). One interface for rank information, collectives, checkpoints and reports so
the training loop is the same code in both places.

    rt = Runtime.detect(launcher, run_dir)   # RayRuntime inside TorchTrainer, else LocalRuntime
    rt.rank, rt.world_size
    rt.all_gather(obj)                  # list of every rank's obj
    with rt.restored_checkpoint() as d: # latest checkpoint dir or None
        ...
    rt.report(metrics, checkpoint_dir)  # every rank, after every rank wrote its shard

Ray's checkpoint protocol (FACTS.md): every rank writes its shard into its own local
directory, a barrier, then every rank calls ``ray.train.report(metrics,
checkpoint=Checkpoint.from_directory(dir))``; Ray merges the ranks' files into one
checkpoint in ``storage_path`` and hands it back after a restart.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.distributed as dist


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Runtime:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    node_rank: int = 0
    node_id: str = "local"

    @staticmethod
    def detect(launcher: str, run_dir: str | None) -> "Runtime":
        """RayRuntime inside a TorchTrainer (``launcher == "ray"``), else a LocalRuntime whose
        checkpoints live under ``run_dir``."""
        return RayRuntime() if launcher == "ray" else LocalRuntime(Path(run_dir))

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

    def restored_checkpoint(self):
        raise NotImplementedError

    def report(self, metrics: dict, checkpoint_dir: Path | None) -> None:
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

    @contextlib.contextmanager
    def restored_checkpoint(self) -> Iterator[Path | None]:
        import ray.train

        ckpt = ray.train.get_checkpoint()
        if ckpt is None:
            yield None
            return
        with ckpt.as_directory() as d:
            yield Path(d)

    def report(self, metrics: dict, checkpoint_dir: Path | None) -> None:
        import ray.train

        ckpt = ray.train.Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir else None
        ray.train.report(metrics, checkpoint=ckpt)


class LocalRuntime(Runtime):
    """World size 1 in this process. Checkpoints live in ``<run_dir>/checkpoint`` (replaced
    atomically), so an interrupted in-process run resumes like a Ray one."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.last_metrics: dict = {}
        if not dist.is_initialized():
            # DeepSpeed needs a process group even alone; gloo on one rank costs nothing. Its
            # store gets a fresh port, never an inherited MASTER_PORT: a parent process (a test
            # run, a Ray job's driver) may hold that port with its own group.
            port = _free_port()
            os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
            os.environ.setdefault("RANK", "0")
            os.environ.setdefault("LOCAL_RANK", "0")
            os.environ.setdefault("WORLD_SIZE", "1")
            dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoint"

    @contextlib.contextmanager
    def restored_checkpoint(self) -> Iterator[Path | None]:
        yield self.checkpoint_path if self.checkpoint_path.is_dir() else None

    def report(self, metrics: dict, checkpoint_dir: Path | None) -> None:
        self.last_metrics = dict(metrics)
        if checkpoint_dir is None:
            return
        staged = self.run_dir / ".checkpoint.new"
        shutil.rmtree(staged, ignore_errors=True)
        shutil.copytree(checkpoint_dir, staged)
        old = self.run_dir / ".checkpoint.old"
        if self.checkpoint_path.exists():
            os.replace(self.checkpoint_path, old)
        os.replace(staged, self.checkpoint_path)
        shutil.rmtree(old, ignore_errors=True)
