"""write_reports: every output of a benchmark run, read back (no Ray: rows are made here, in
the shape timing.BenchmarkResult.to_dict() + placement.run_per_node give them)."""
import csv
import json

import numpy as np
import pytest

from stilts_ds.engine.tb_logger import read_scalars
from stilts_ds.inference.report import COLUMNS, write_reports

CUDA_REASON = "DeepSpeed inference kernels need CUDA"
PARITY_REASON = "parity: max |diff| 0.31 > atol 0.05 | rtol 0.02"  # a "|" the Markdown must escape


def _node_rows(node, speed):
    place = {"node_id": f"{node:02d}" * 14, "node_index": node, "node_ip": f"127.0.0.{node + 1}",
             "host": f"vm (127.0.0.{node + 1})", "device": "cpu: AMD EPYC", "actor_index": node, "gpu_ids": [],
             "torch_device": "cpu"}
    rows = []
    for engine, precision, dtype, factor in (("torch-eager", "fp32", "float32", 1.0),
                                             ("torch-sdpa", "bf16", "bfloat16", 1.6)):
        for bs in (1, 8, 32):
            timed_latency = bs in (1, 8)
            base = 2.0 * bs ** 0.8 / (speed * factor)
            rows.append({"engine": engine, "status": "ok", "reason": None, "dtype": dtype, "precision": precision,
                         "workload": "synthetic", "batch_size": bs, "seq_len": 64, "mean_seq_len": 40.5,
                         "throughput_samples_per_s": 1000.0 * bs / base,
                         # latency only at batch 1 and the serving batch (8): the rest omitted
                         **({"latency_ms_p50": base, "latency_ms_p90": 1.2 * base, "latency_ms_p99": 1.5 * base,
                             "latency_requests": 100} if timed_latency else {}),
                         "parity_max_abs_diff": 1e-6 * (node + 1) * factor, "replaced": {}, "notes": [],
                         **place})
    rows.append({"engine": "ds-kernel", "status": "unavailable", "reason": CUDA_REASON, "dtype": "float16",
                 "precision": "fp16", "workload": "synthetic", "batch_size": None, "seq_len": 64, **place})
    if node == 1:  # ds fails its parity gate on node1 only; node0 has no ds row at all
        rows.append({"engine": "ds", "status": "failed", "reason": PARITY_REASON, "dtype": "bfloat16",
                     "precision": "bf16", "workload": "synthetic", "batch_size": None, "seq_len": 64,
                     "parity_max_abs_diff": 0.31, **place})
    return rows


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    rows = _node_rows(0, speed=1.0) + _node_rows(1, speed=1.25)
    paths = write_reports(rows, out, title="tiny bench")
    return out, rows, paths


def _jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_files_exist_and_nothing_else(report):
    out, _, paths = report
    assert set(paths) == {"jsonl", "csv", "md", "tensorboard", "throughput_png", "latency_png"}
    for key, p in paths.items():
        assert p.exists() and p.parent == out, key
        assert p.is_dir() if key == "tensorboard" else p.stat().st_size > 0
    # Atomic writes leave no temporary files or directories behind.
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in paths.values())


def test_jsonl_and_csv_have_every_field(report):
    _, rows, paths = report
    lines = _jsonl(paths["jsonl"])
    # 2 nodes x (2 engines x 3 batch sizes + ds-kernel) + node1's ds = 15 node rows; cluster: 6 + ds-kernel + ds
    assert len(lines) == len(rows) + 8
    for line in lines:
        assert set(COLUMNS) <= set(line)
        assert list(line)[: len(COLUMNS[:3])] == list(COLUMNS[:3])
    by = {(r["engine"], r["batch_size"], r["node"]): r for r in lines}
    assert by[("torch-eager", 32, "node0")]["latency_ms_p99"] is None  # omitted -> null
    assert by[("ds-kernel", None, "node1")]["throughput_samples_per_s"] is None
    assert by[("ds-kernel", None, "node1")]["reason"] == CUDA_REASON
    cl = by[("torch-eager", 8, "cluster")]
    assert cl["node_id"] == "cluster" and cl["status"] == "ok"
    assert cl["throughput_samples_per_s"] == pytest.approx(
        by[("torch-eager", 8, "node0")]["throughput_samples_per_s"] + by[("torch-eager", 8, "node1")]["throughput_samples_per_s"])
    assert cl["latency_ms_p99"] == pytest.approx(max(by[("torch-eager", 8, n)]["latency_ms_p99"] for n in ("node0", "node1")))
    assert by[("ds", None, "cluster")]["status"] == "failed"

    with open(paths["csv"], newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(lines)
    assert set(COLUMNS) <= set(table[0])
    assert list(table[0]) == list(lines[0])  # same columns, same order
    for line, crow in zip(lines, table):
        assert crow["engine"] == line["engine"] and crow["node_id"] == line["node_id"]
        for col in ("throughput_samples_per_s", "latency_ms_p50", "batch_size"):
            if line[col] is None:
                assert crow[col] == ""
            else:
                assert float(crow[col]) == pytest.approx(line[col])
    assert {c["gpu_ids"] for c in table if c["node"] != "cluster"} == {"[]"}  # lists as JSON


def test_markdown_rows_per_node_cluster_and_reasons(report):
    _, _, paths = report
    md = paths["md"].read_text()
    assert md.startswith("# tiny bench\n")
    results = md.split("## Results")[1].split("## Unavailable or failed")[0]
    eager8 = [line for line in results.splitlines() if line.startswith("| torch-eager | float32 | 8 |")]
    assert [line.split("|")[5].strip() for line in eager8] == ["node0", "node1", "**cluster**"]
    assert len([line for line in results.splitlines() if line.startswith("| ")]) == 1 + 2 * 3 * 3  # header + rows
    nodes = md.split("## Nodes")[1].split("## Results")[0]
    assert "| node0 | vm (127.0.0.1) | cpu: AMD EPYC |" in nodes and "| node1 | vm (127.0.0.2) |" in nodes
    failed = md.split("## Unavailable or failed")[1]
    assert f"| ds-kernel | float16 | – | unavailable | node0, node1 | {CUDA_REASON} |" in failed
    assert "| ds | bfloat16 | – | failed | node1 | " + PARITY_REASON.replace("|", "\\|") + " |" in failed
    assert "ds-kernel" not in results and "| ds |" not in results


def _assert_real_image(path):
    import matplotlib.image as mpimg

    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    flat = img.reshape(-1, img.shape[2])
    assert len(np.unique(flat, axis=0)) > 10  # not one flat colour: lines/bars/text drawn
    assert flat.std() > 0.01


def test_pngs_are_real_images(report):
    _, _, paths = report
    with open(paths["throughput_png"], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    _assert_real_image(paths["throughput_png"])
    _assert_real_image(paths["latency_png"])


def test_tensorboard_scalars_read_back(report):
    _, rows, paths = report
    scalars = read_scalars(paths["tensorboard"])
    thr = scalars["bench/torch-eager_fp32/node0/throughput_samples_per_s"]
    assert [s for s, _ in thr] == [1, 8, 32]  # step = batch size
    expected = {r["batch_size"]: r["throughput_samples_per_s"] for r in rows
                if r["engine"] == "torch-eager" and r["node_index"] == 0}
    for step, value in thr:
        assert value == pytest.approx(expected[step], rel=1e-6)  # event files hold float32
    assert [s for s, _ in scalars["bench/torch-sdpa_bf16/cluster/latency_ms/p99"]] == [1, 8]
    assert "bench/torch-sdpa_bf16/node1/latency_ms/p50" in scalars
    assert "bench/torch-eager_fp32/cluster/parity_max_abs_diff" in scalars
    assert not any(tag.startswith(("bench/ds-kernel", "bench/ds_")) for tag in scalars)  # nothing was timed
    # 2 engines x (2 nodes + cluster) x (throughput + parity at 3 sizes, 3 latencies at 2 sizes)
    assert len(scalars) == 2 * 3 * 5


def test_rewrite_replaces_instead_of_appending(tmp_path):
    rows = _node_rows(0, speed=1.0)
    write_reports(rows, tmp_path, title="first")
    paths = write_reports(rows, tmp_path, title="second")
    assert paths["md"].read_text().startswith("# second\n")
    thr = read_scalars(paths["tensorboard"])["bench/torch-eager_fp32/node0/throughput_samples_per_s"]
    assert [s for s, _ in thr] == [1, 8, 32]  # not [1, 1, 8, 8, 32, 32]
    assert len(list(paths["tensorboard"].glob("events.out.tfevents*"))) == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_single_local_node_and_nothing_timed(tmp_path):
    """Rows that never went through run_per_node (one process, no node fields), all
    unavailable: the report still says why, and the plots still say so."""
    rows = [{"engine": "ds-kernel", "status": "unavailable", "reason": CUDA_REASON, "dtype": "float16"},
            {"engine": "torch-compile", "status": "failed", "reason": "dynamo recompile limit", "dtype": "float32"}]
    paths = write_reports(rows, tmp_path, title="nothing ran")
    md = paths["md"].read_text()
    assert "No engine was timed." in md
    assert f"| ds-kernel | float16 | – | unavailable | local | {CUDA_REASON} |" in md
    assert "dynamo recompile limit" in md
    lines = _jsonl(paths["jsonl"])
    assert {line["node"] for line in lines} == {"local", "cluster"}
    assert all(line["node_id"] is None for line in lines if line["node"] == "local")
    _assert_real_image(paths["throughput_png"])
    _assert_real_image(paths["latency_png"])
    assert read_scalars(paths["tensorboard"]) == {}


def test_rows_need_engine_and_status(tmp_path):
    with pytest.raises(ValueError, match="no status"):
        write_reports([{"engine": "torch-eager"}], tmp_path, title="x")


def test_per_gpu_actors_are_labelled_per_actor(tmp_path):
    """Two actors on one node (run_per_node(per_gpu=True) on a 2-GPU node): one label each,
    so their rows and TensorBoard tags stay apart, and the cluster sums both."""
    base = {"engine": "torch-sdpa", "status": "ok", "reason": None, "dtype": "float16", "precision": "fp16",
            "batch_size": 8, "seq_len": 64, "node_id": "ab" * 28, "node_index": 0, "host": "gpu-box (10.0.0.5)",
            "actors_on_node": 2, "latency_ms_p50": 1.0, "latency_ms_p90": 1.1, "latency_ms_p99": 1.3}
    rows = [{**base, "local_rank": 0, "actor_index": 0, "device": "NVIDIA H100", "throughput_samples_per_s": 900.0},
            {**base, "local_rank": 1, "actor_index": 1, "device": "NVIDIA H100", "throughput_samples_per_s": 1000.0}]
    paths = write_reports(rows, tmp_path, title="per gpu")
    md = paths["md"].read_text()
    assert "1 node, 2 actors" in md and "| node0.0 |" in md and "| node0.1 |" in md
    scalars = read_scalars(paths["tensorboard"])
    assert scalars["bench/torch-sdpa_fp16/cluster/throughput_samples_per_s"][0][1] == pytest.approx(1900.0)
    assert {"bench/torch-sdpa_fp16/node0.0/throughput_samples_per_s",
            "bench/torch-sdpa_fp16/node0.1/throughput_samples_per_s"} <= set(scalars)
