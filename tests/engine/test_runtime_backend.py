"""Which torch.distributed backend a worker's process group uses: nccl on a GPU, gloo on the
CPU (gloo on a GPU would move every ZeRO gradient bucket through host memory, and a training
throughput figure would time that copy).

    .venv/bin/python -m pytest -q tests/engine/test_runtime_backend.py
"""
from __future__ import annotations

import subprocess
import sys

import torch

from stilts_ds.engine.runtime import process_group_backend


def test_backend_follows_the_device():
    assert process_group_backend(cuda=True) == "nccl"
    assert process_group_backend(cuda=False) == "gloo"
    assert process_group_backend() == ("nccl" if torch.cuda.is_available() else "gloo")


_LOCAL_GROUP = """
import torch, torch.distributed as dist
from stilts_ds.engine.runtime import LocalRuntime
rt = LocalRuntime()
print(rt.backend, dist.get_backend(), dist.get_world_size())
"""


def test_in_process_runtime_starts_the_backend_for_its_device():
    # In a child process: the group outlives the runtime, and this test process may hold one.
    out = subprocess.run([sys.executable, "-c", _LOCAL_GROUP], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    want = "nccl" if torch.cuda.is_available() else "gloo"
    assert out.stdout.split() == [want, want, "1"]


def test_ray_workers_get_the_same_choice_stated():
    # The Ray path hands TorchTrainer this TorchConfig instead of relying on Ray's default.
    from stilts_ds.engine.launch import torch_config

    assert torch_config({"use_gpu": True}).backend == "nccl"
    assert torch_config({"use_gpu": False}).backend == "gloo"
