"""Launching a worker function: Ray Train's TorchTrainer, or in-process at world size 1.

    launch(job, cluster_cfg, name="quickstart-intermediate", storage_path=...)   # job: engine.job.*

With Ray: ``TorchTrainer(run_job, train_loop_config={"job": job}, scaling_config=ScalingConfig(...),
run_config=RunConfig(name, storage_path, CheckpointConfig, FailureConfig))``. The same
run name and storage path resume a run from its last checkpoint (Train V2 hands it to the
restarted workers, which list its checkpoints themselves: ``engine.checkpoints``). In-process
(``cluster.num_workers == 1`` and ``in_process``) the worker runs here, with a LocalRuntime, and
checkpoints in each job's ``<run_dir>/checkpoints``.

Before anything starts, the checkpoints the run would resume from are checked against the
job's identity (``checkpoints.check_job``: CheckpointMismatch names the config keys that
changed); ``force=True`` deletes them instead (``checkpoints.clear_job``) and the run starts
over.
"""
from __future__ import annotations

import logging

from stilts_ds.engine import checkpoints
from stilts_ds.engine.job import Job
from stilts_ds.engine.runtime import process_group_backend
from stilts_ds.errors import StiltsError

log = logging.getLogger(__name__)


def torch_config(cluster: dict):
    """Ray Train's process-group settings for ``cluster``: the backend is stated rather than
    left to Ray's default, from the same rule as the in-process runtime (nccl for GPU
    workers, gloo for CPU ones)."""
    from ray.train.torch import TorchConfig

    return TorchConfig(backend=process_group_backend(bool(cluster["use_gpu"])))


def launch(job: Job, cluster: dict, *, name: str, storage_path: str, in_process: bool = False,
           force: bool = False, storage_filesystem=None) -> None:
    """Run ``job`` to the end (raises what the run raised). ``storage_filesystem``: a pyarrow
    filesystem that ``storage_path`` is a path on (``RunConfig.storage_filesystem``)."""
    from stilts_ds.engine.worker import run_job

    if in_process and cluster["num_workers"] != 1:
        raise StiltsError("in-process runs have world size 1: set cluster.num_workers to 1")
    if force:
        for gone in checkpoints.clear_job(job, storage_path, name, storage_filesystem):
            log.info("--force: deleted %s", gone)
    else:
        checkpoints.check_job(job, storage_path, name, storage_filesystem)
    if in_process:
        run_job({"job": job, "launcher": "local"})
        return
    import ray.train
    from ray.train.torch import TorchTrainer

    from stilts_ds.engine.dispatch import connect

    connect(cluster.get("ray_address"))
    resources = {"CPU": cluster["cpus_per_worker"]}
    if cluster["use_gpu"]:
        resources["GPU"] = 1
    trainer = TorchTrainer(
        run_job,
        train_loop_config={"job": job, "launcher": "ray"},
        torch_config=torch_config(cluster),
        scaling_config=ray.train.ScalingConfig(
            num_workers=cluster["num_workers"], use_gpu=cluster["use_gpu"], resources_per_worker=resources,
            placement_strategy=cluster["placement_strategy"]),
        run_config=ray.train.RunConfig(
            name=name, storage_path=storage_path, storage_filesystem=storage_filesystem,
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=checkpoints.KEEP),
            failure_config=ray.train.FailureConfig(max_failures=cluster["max_failures"])),
    )
    log.info("launching %s: %d workers", name, cluster["num_workers"])
    result = trainer.fit()
    if result.error is not None:
        raise result.error
