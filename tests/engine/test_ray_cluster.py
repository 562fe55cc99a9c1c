"""The local multi-node Ray cluster the engine tests run on (tests/engine/ray_cluster.py).

Real `ray start` processes, no mocks. Measured on a 2-core machine: the two-node cluster
starts in 8 s (up to 16 s when the machine is busy), the TorchTrainer fit takes 19 s
(up to 36 s), two single-node clusters start side by side in 9 s (up to 22 s), a stop
takes about 1 s; the file runs in 44 s (up to 85 s). Wall times are printed at the end
of the run ("ray cluster wall times").
"""
import json
import time
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.ray_cluster


def test_two_alive_nodes_with_distinct_ids(ray_cluster):
    import ray

    assert ray_cluster.address.startswith("127.0.0.1:")
    assert ray_cluster.env["RAY_ADDRESS"] == ray_cluster.address
    assert ray_cluster.env["RAY_AUTH_MODE"]  # always explicit (see ray_cluster.py)
    with ray_cluster.connected():
        alive = [n for n in ray.nodes() if n["Alive"]]
        assert len(alive) == 2
        assert len({n["NodeID"] for n in alive}) == 2
        # Distinct node IPs: what gives Ray Train distinct node ranks.
        assert len({n["NodeManagerAddress"] for n in alive}) == 2
        assert all(n["Resources"].get("CPU") == 1 for n in alive)
        assert ray.cluster_resources()["CPU"] == 2

        # One task pinned to each node really runs there.
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        @ray.remote(num_cpus=1)
        def where():
            return ray.get_runtime_context().get_node_id()

        ran_on = ray.get([
            where.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
                node_id=n["NodeID"], soft=False)).remote()
            for n in alive
        ], timeout=60)
        assert ran_on == [n["NodeID"] for n in alive]
    assert sorted(n["node_id"] for n in ray_cluster.nodes) == sorted(ran_on)


def _train_loop_per_worker(config):
    # Runs in the Ray Train worker actors: everything it needs is imported here, so the
    # function pickles by value (tests/ is no importable package on the workers' path).
    import json
    import os
    import tempfile

    import ray
    import ray.train
    import torch
    import torch.distributed as dist
    from ray.train import Checkpoint

    ctx = ray.train.get_context()
    rank = ctx.get_world_rank()
    summed = torch.tensor([float(rank + 1)])
    dist.all_reduce(summed)  # sum over ranks: 1 + 2
    info = {
        "world_rank": rank,
        "world_size": ctx.get_world_size(),
        "node_rank": ctx.get_node_rank(),
        "local_rank": ctx.get_local_rank(),
        "node_id": ray.get_runtime_context().get_node_id(),
        "backend": dist.get_backend(),
        "all_reduce_sum": summed.item(),
        "pid": os.getpid(),
    }
    with tempfile.TemporaryDirectory() as d:
        # One file per rank: Ray merges the ranks' files into one checkpoint dir.
        with open(os.path.join(d, f"rank_{rank}.json"), "w") as f:
            json.dump(info, f)
        # Train V2: without a checkpoint, Result.metrics comes back None.
        ray.train.report({k: v for k, v in info.items() if k != "node_id"},
                         checkpoint=Checkpoint.from_directory(d))


def test_torch_trainer_spreads_over_two_nodes(ray_cluster, tmp_path, ray_timings):
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    storage = tmp_path / "ray_results"
    with ray_cluster.connected():
        trainer = TorchTrainer(
            _train_loop_per_worker,
            scaling_config=ScalingConfig(
                num_workers=2,
                use_gpu=False,
                resources_per_worker={"CPU": 1},
                # One bundle per node, never two on one: fails to schedule, rather than
                # silently packing, if the cluster has one node only.
                placement_strategy="STRICT_SPREAD",
            ),
            # A local path is fine here: both "nodes" share this machine's filesystem.
            # On a real multi-node cluster storage_path must be shared (NFS/S3).
            run_config=RunConfig(storage_path=str(storage), name="two_node_smoke"),
        )
        t0 = time.monotonic()
        result = trainer.fit()
        ray_timings["TorchTrainer fit (2 workers, 2 nodes)"] = time.monotonic() - t0
        alive_ids = {n["NodeID"] for n in ray.nodes() if n["Alive"]}

    assert result.error is None
    assert result.metrics is not None and result.metrics["world_rank"] == 0
    assert result.checkpoint is not None
    with result.checkpoint.as_directory() as d:
        ranks = {int(p.stem.split("_")[1]): json.loads(p.read_text())
                 for p in Path(d).glob("rank_*.json")}
    assert sorted(ranks) == [0, 1], ranks
    assert {r["world_size"] for r in ranks.values()} == {2}
    assert {r["backend"] for r in ranks.values()} == {"gloo"}
    assert {r["all_reduce_sum"] for r in ranks.values()} == {3.0}
    # Two different nodes, node ranks 0 and 1, each worker alone on its node.
    assert ranks[0]["node_id"] != ranks[1]["node_id"]
    assert {ranks[0]["node_id"], ranks[1]["node_id"]} == alive_ids
    assert {r["node_rank"] for r in ranks.values()} == {0, 1}
    assert {r["local_rank"] for r in ranks.values()} == {0}
    # The checkpoint landed under the run's storage path.
    assert str(storage / "two_node_smoke") in result.checkpoint.path


def test_stop_kills_only_its_own_cluster(ray_cluster, ray_cluster_factory, ray_timings,
                                        tmp_path):
    import ray

    # The session cluster's GCS and raylets (idle workers come and go by themselves).
    shared_core = [p for p in ray_cluster.alive_pids()
                   if psutil.Process(p).name() in ("gcs_server", "raylet")]
    assert len(shared_core) == 3
    t0 = time.monotonic()
    # b's nodes see a ~/.ray/auth_token, this driver does not: with RAY_AUTH_MODE unset
    # b would turn token auth on and the ping below would fail with InvalidAuthToken.
    home = tmp_path / "home_with_token"
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text("0123456789abcdef0123456789abcdef")
    a, b = ray_cluster_factory([("a", dict(num_nodes=1)),
                                ("b", dict(num_nodes=1, node_env={"HOME": str(home)}))])
    ray_timings["two single-node clusters start"] = time.monotonic() - t0
    assert len({a.address, b.address, ray_cluster.address}) == 3
    assert a.pids and b.pids
    assert not set(a.pids) & set(b.pids)
    assert not set(a.pids) & set(ray_cluster.pids)
    a_temp = a.temp_dir
    assert a_temp.is_dir()

    t0 = time.monotonic()
    a.stop()
    ray_timings["single-node cluster stop"] = time.monotonic() - t0
    assert a.alive_pids() == []
    for pid in a.pids:  # not even as a zombie or under a reused pid of ours
        if psutil.pid_exists(pid):
            p = psutil.Process(pid)
            assert p.status() == psutil.STATUS_ZOMBIE or not str(a_temp) in " ".join(p.cmdline())
    assert not a_temp.exists()
    a.stop()  # idempotent

    # The neighbours are untouched: b answers a task, the session cluster keeps its processes.
    with b.connected():
        @ray.remote(num_cpus=1)
        def ping():
            return "pong"

        assert ray.get(ping.remote(), timeout=60) == "pong"
        assert len([n for n in ray.nodes() if n["Alive"]]) == 1
    assert set(shared_core) <= set(ray_cluster.alive_pids())
    b.stop()
    assert b.alive_pids() == []
