"""Launching a worker function: Ray Train's TorchTrainer, or in-process at world size 1.

    launch(job, cluster_cfg, name="quickstart-intermediate", storage_path=...)   # job: engine.job.*

With Ray: ``TorchTrainer(run_job, train_loop_config={"job": job}, scaling_config=ScalingConfig(...),
run_config=RunConfig(name, storage_path, CheckpointConfig, FailureConfig))``. The same
run name and storage path resume a run from its last checkpoint (Train V2 hands it to the
restarted workers through ``ray.train.get_checkpoint()``). In-process (``cluster.num_workers
== 1`` and ``in_process``) the worker runs here, with a LocalRuntime.
"""
from __future__ import annotations

import logging
import os
from stilts_ds.engine.job import Job
from stilts_ds.errors import StiltsError

log = logging.getLogger(__name__)


def _connect(address: str | None) -> None:
    import ray

    if ray.is_initialized():
        return
    # An explicit address wins; otherwise RAY_ADDRESS (set by `ray submit`/`ray job submit`)
    # or a fresh local cluster.
    address = address or os.environ.get("RAY_ADDRESS")
    ray.init(address=address, log_to_driver=True, ignore_reinit_error=True)


def launch(job: Job, cluster: dict, *, name: str, storage_path: str, in_process: bool = False) -> None:
    from stilts_ds.engine.worker import run_job

    if in_process:
        if cluster["num_workers"] != 1:
            raise StiltsError("in-process runs have world size 1: set cluster.num_workers to 1")
        run_job({"job": job, "launcher": "local"})
        return
    import ray.train
    from ray.train.torch import TorchTrainer

    _connect(cluster.get("ray_address"))
    resources = {"CPU": cluster["cpus_per_worker"]}
    if cluster["use_gpu"]:
        resources["GPU"] = 1
    trainer = TorchTrainer(
        run_job,
        train_loop_config={"job": job, "launcher": "ray"},
        scaling_config=ray.train.ScalingConfig(
            num_workers=cluster["num_workers"], use_gpu=cluster["use_gpu"], resources_per_worker=resources,
            placement_strategy=cluster["placement_strategy"]),
        run_config=ray.train.RunConfig(
            name=name, storage_path=storage_path,
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
            failure_config=ray.train.FailureConfig(max_failures=cluster["max_failures"])),
    )
    log.info("launching %s: %d workers", name, cluster["num_workers"])
    result = trainer.fit()
    if result.error is not None:
        raise result.error
