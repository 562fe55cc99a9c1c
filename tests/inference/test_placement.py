"""run_per_node on a real two-node local Ray cluster (tests/engine/ray_cluster.py), and
cluster_total's arithmetic.

The measure functions are closures built by ``_tiny_forward_measure``: Ray pickles closures
by value, while a module-level function of this file would be pickled by reference and the
workers cannot import a test module (tests/ is no package).
"""
import time

import pytest

from stilts_ds.inference.placement import PlacementError, cluster_total, node_label, run_per_node


def _tiny_forward_measure(engine="torch-tiny", batch_size=4, hidden=32, iters=20):
    def measure():
        import numpy as np
        import torch

        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(hidden, hidden), torch.nn.GELU(),
                                    torch.nn.Linear(hidden, 2)).eval()
        x = torch.randn(batch_size, hidden)
        with torch.inference_mode():
            model(x)  # warm-up
            ms = []
            for _ in range(iters):
                t0 = time.perf_counter()
                model(x)
                ms.append((time.perf_counter() - t0) * 1000.0)
        ms = np.array(ms)
        p50, p90, p99 = (float(v) for v in np.percentile(ms, [50, 90, 99]))
        return [{"engine": engine, "status": "ok", "reason": None, "dtype": "float32",
                 "batch_size": batch_size, "seq_len": hidden, "device": "cpu",
                 "throughput_samples_per_s": batch_size * iters / (ms.sum() / 1000.0),
                 "latency_ms_p50": p50, "latency_ms_p90": p90, "latency_ms_p99": p99,
                 "parity_max_abs_diff": 0.0}]

    return measure


@pytest.mark.ray_cluster
def test_one_row_per_node_with_distinct_nodes(ray_cluster, ray_timings):
    with ray_cluster.connected():
        import ray

        alive = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
        t0 = time.monotonic()
        rows = run_per_node(_tiny_forward_measure(), num_nodes=2)
        ray_timings["run_per_node, 2 nodes"] = time.monotonic() - t0
        # The placement group is gone afterwards (removed, not just idle). The state API
        # needs the dashboard, which the fixture does not run; the GCS table does not.
        from ray.util import placement_group_table

        states = [pg["state"] for pg in placement_group_table().values()]
        assert states and all(s == "REMOVED" for s in states)
    assert len(rows) == 2
    assert {r["node_id"] for r in rows} == alive
    assert sorted(r["node_index"] for r in rows) == [0, 1]
    assert sorted(r["node_ip"] for r in rows) == sorted(n["ip"] for n in ray_cluster.nodes)
    for r in rows:
        assert r["throughput_samples_per_s"] > 0
        assert r["device"].startswith("cpu: ") and len(r["device"]) > len("cpu: ")
        assert r["torch_device"] == "cpu"  # measure's own "device" kept aside
        assert r["node_ip"] in r["host"] and r["gpu_ids"] == []

    total = cluster_total(rows)
    assert len(total) == 1 and total[0]["status"] == "ok" and total[0]["nodes"] == 2
    assert total[0]["throughput_samples_per_s"] == pytest.approx(sum(r["throughput_samples_per_s"] for r in rows))


@pytest.mark.ray_cluster
def test_too_many_nodes_requested_says_how_many_are_alive(ray_cluster):
    with ray_cluster.connected():
        with pytest.raises(PlacementError, match=r"3 nodes requested, but only 2 Ray nodes are alive"):
            run_per_node(_tiny_forward_measure(), num_nodes=3)


@pytest.mark.ray_cluster
def test_several_actors_per_node_pinned_and_errors_named(ray_cluster):
    """The per-GPU path (SPREAD, bundles pinned by node-id label) with CPU bundles: two
    half-CPU actors on each 1-CPU node, sequentially; then a measure that raises."""
    with ray_cluster.connected():
        rows = run_per_node(_tiny_forward_measure(iters=5), actors_per_node=2, cpus_per_actor=0.5,
                            sequential=True)

        def broken():
            raise ValueError("boom")

        with pytest.raises(RuntimeError, match=r"measure failed in actor \d on node\d .*boom"):
            run_per_node(broken, num_nodes=1)
        import ray

        # Nothing left holding resources after the failure (actors killed, group removed).
        deadline = time.monotonic() + 20
        while ray.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert ray.available_resources().get("CPU", 0) == pytest.approx(2)
    assert len(rows) == 4
    assert [r["node_index"] for r in rows] == [0, 0, 1, 1]  # each node got exactly its two
    assert sorted(r["actor_index"] for r in rows) == [0, 1, 2, 3]
    assert [node_label(r) for r in rows] == ["node0.0", "node0.1", "node1.0", "node1.1"]
    assert all(r["actors_on_node"] == 2 for r in rows)
    total = cluster_total(rows)  # summed over the four actors (per-GPU: every GPU)
    assert len(total) == 1 and total[0]["nodes"] == 2 and total[0]["actors"] == 4
    assert total[0]["host"] == "2 nodes, 4 actors"
    assert total[0]["throughput_samples_per_s"] == pytest.approx(sum(r["throughput_samples_per_s"] for r in rows))


def _row(node, engine="torch-sdpa", bs=8, thr=100.0, lat=(1.0, 2.0, 3.0), status="ok", reason=None, parity=1e-5):
    return {"engine": engine, "dtype": "float16", "precision": "fp16", "batch_size": bs, "seq_len": 128,
            "status": status, "reason": reason, "node_id": f"id{node}", "node_index": node,
            "host": f"h ({node})", "device": "cpu: X",
            "throughput_samples_per_s": thr if status == "ok" else None,
            "latency_ms_p50": lat[0] if status == "ok" else None,
            "latency_ms_p90": lat[1] if status == "ok" else None,
            "latency_ms_p99": lat[2] if status == "ok" else None,
            "parity_max_abs_diff": parity if status == "ok" else None}


def test_cluster_total_sums_throughput_and_takes_worst_latency():
    rows = [_row(0, thr=100.0, lat=(1.0, 2.0, 9.0), parity=1e-5),
            _row(1, thr=150.0, lat=(1.5, 1.8, 4.0), parity=3e-5),
            _row(0, bs=1, thr=10.0), _row(1, bs=1, thr=12.0)]
    total = {r["batch_size"]: r for r in cluster_total(rows)}
    t8 = total[8]
    assert t8["status"] == "ok" and t8["reason"] is None and t8["node_id"] == "cluster"
    assert t8["throughput_samples_per_s"] == pytest.approx(250.0)
    assert (t8["latency_ms_p50"], t8["latency_ms_p90"], t8["latency_ms_p99"]) == (1.5, 2.0, 9.0)
    assert t8["parity_max_abs_diff"] == pytest.approx(3e-5)
    assert t8["precision"] == "fp16" and t8["device"] == "cpu: X" and t8["nodes"] == 2
    assert total[1]["throughput_samples_per_s"] == pytest.approx(22.0)
    assert node_label(t8) == "cluster" and node_label(rows[1]) == "node1"
    # Idempotent on its own output: cluster rows passed back in are ignored.
    assert len(cluster_total(rows + list(total.values()))) == 2
    with pytest.raises(ValueError, match="two rows for node1"):
        cluster_total(rows + [_row(1)])  # one node twice at one key is not two nodes


def test_cluster_total_not_ok_unless_every_node_ok():
    rows = [_row(0), _row(1, status="failed", reason="parity: max |diff| 0.3 > 0.05"),
            _row(0, engine="ds-kernel", bs=None, status="unavailable", reason="needs CUDA"),
            _row(1, engine="ds-kernel", bs=None, status="unavailable", reason="needs CUDA"),
            _row(0, engine="ds", bs=4)]  # node1 never reported ds at batch 4
    total = {r["engine"]: r for r in cluster_total(rows)}
    assert total["torch-sdpa"]["status"] == "failed"
    assert "node1" in total["torch-sdpa"]["reason"] and "0.3" in total["torch-sdpa"]["reason"]
    assert total["torch-sdpa"]["throughput_samples_per_s"] is None
    assert total["torch-sdpa"]["latency_ms_p99"] is None
    assert total["ds-kernel"]["status"] == "unavailable" and total["ds-kernel"]["reason"] == "needs CUDA"
    assert total["ds"]["status"] == "failed" and "node1" in total["ds"]["reason"]
