"""`stilts-ds scale`: sweep spec validation, point expansion, resume after an interruption,
the study table and its reports, and real sweeps (inference and DeepSpeed training) on a
two-node local Ray cluster."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from stilts_ds.cli import main
from stilts_ds.engine.tb_logger import read_scalars
from stilts_ds.studies import scale_report
from stilts_ds.studies.comm_model import predict_step
from stilts_ds.studies.scale import PointRunner, StudyTable, run_sweep
from stilts_ds.studies.sweep_spec import SweepError, expand, load_sweep, sweep_from_mapping


def _yaml(tmp_path, text):
    path = tmp_path / "sweep.yaml"
    path.write_text(text)
    return path


def _quiet(msg):
    pass


# ----------------------------------------------------------------------------- the spec

@pytest.mark.parametrize("text, match", [
    ("name: a\ninference:\n  nodes: [1, 2]\n  enginez: [torch-eager]\n",
     r"sweep.yaml:4: inference.enginez: unknown key 'enginez'; did you mean 'engines'"),
    ("training:\n  zero_stages:\n    - 1\n    - 4\n", r"sweep.yaml:4: training.zero_stages.1: 4 is not a ZeRO stage; use 1, 2 or 3"),
    ("inference:\n  zero_stages: [1]\n", r"sweep.yaml:2: inference.zero_stages: .*'zero_stages' is a training axis"),
    ("training:\n  batch_sizes: [6]\n  nodes: [1, 4]\n  scaling: strong\n",
     r"sweep.yaml:2: training.batch_sizes: strong scaling .* 6 must divide among 4 workers.*multiple of 4"),
    ("ray: false\ninference:\n  nodes: [1, 2]\n", r"sweep.yaml:3: inference.nodes: without Ray"),
    ("training:\n  steps: 3\n  warmup_steps: 3\n", r"sweep.yaml:3: training.warmup_steps: .*set warmup_steps < steps"),
    ("training:\n  task: squad_v1\n", r"sweep.yaml:2: training.task: .*use mnli.*or set training.data: fixture"),
    ("training:\n  nodes: [1]\n  nodes: [2]\n", r"sweep.yaml:3: duplicate key training.nodes"),
    ("inference:\n  precisions: [fp8]\n", r"sweep.yaml:2: inference.precisions.0: 'fp8' is not one of fp32, fp16, bf16"),
    ("bandwidth_gbps: -1\ninference: {}\n", r"sweep.yaml:1: bandwidth_gbps: must be a positive number"),
    ("name: empty\n", r"nothing to run"),
    ("inference: [1\n", r"sweep.yaml:\d+: not valid YAML"),
])
def test_spec_errors_name_the_key_line_and_fix(tmp_path, text, match):
    with pytest.raises(SweepError, match=match):
        load_sweep(_yaml(tmp_path, text))


def test_quickstart_sweep_loads():
    from pathlib import Path

    spec = load_sweep(Path(__file__).resolve().parents[2] / "configs" / "sweeps" / "quickstart.yaml")
    assert spec.inference and spec.training and spec.bandwidth_gbps == 100


def test_points_expand_with_baselines_and_stable_ids():
    spec = sweep_from_mapping({
        "inference": {"nodes": [2, 4], "batch_sizes": "1,8", "engines": ["torch-eager"]},
        "training": {"nodes": [1, 2], "workers_per_node": [1, 2], "batch_sizes": [8], "zero_stages": [1, 3],
                     "scaling": ["weak", "strong"]}})
    points = expand(spec)
    inf = [p for p in points if p.mode == "inference"]
    # The one-node baseline is added; nodes ascend within a configuration.
    assert [(p.batch_size, p.nodes) for p in inf] == [(1, 1), (1, 2), (1, 4), (8, 1), (8, 2), (8, 4)]
    tr = [p for p in points if p.mode == "training"]
    shapes = [(1, 1), (2, 1), (1, 2), (2, 2)]
    # Weak and strong share the one-worker point: 1 + 3 + 3 per stage.
    assert len(tr) == 2 * 7
    zero1 = [p for p in tr if p.zero_stage == 1]
    assert zero1[0].scaling == "weak+strong" and (zero1[0].nodes, zero1[0].workers_per_node) == (1, 1)
    weak = [(p.nodes, p.workers_per_node, p.batch_size, p.global_batch) for p in zero1 if p.scaling == "weak"]
    strong = [(p.nodes, p.workers_per_node, p.batch_size, p.global_batch) for p in zero1 if p.scaling == "strong"]
    assert weak == [(n, w, 8, 8 * n * w) for n, w in shapes[1:]]
    assert strong == [(n, w, 8 // (n * w), 8) for n, w in shapes[1:]]
    ids = [p.point_id for p in points]
    assert len(set(ids)) == len(ids)
    assert ids == [p.point_id for p in expand(spec)]  # stable
    # A setting that changes the measurement changes the id; the sweep's name does not.
    renamed = sweep_from_mapping({"name": "other", "training": {"nodes": [1, 2], "zero_stages": [1]}})
    longer = sweep_from_mapping({"training": {"nodes": [1, 2], "zero_stages": [1], "steps": 9}})
    base = sweep_from_mapping({"training": {"nodes": [1, 2], "zero_stages": [1]}})
    assert [p.point_id for p in expand(renamed)] == [p.point_id for p in expand(base)]
    assert not {p.point_id for p in expand(longer)} & {p.point_id for p in expand(base)}


# ----------------------------------------------------------------------------- resume

def test_interrupted_sweep_resumes_without_redoing_finished_points(tmp_path):
    """Real in-process inference points (tiny model, torch engines); the sweep is interrupted
    by a KeyboardInterrupt inside the third point, then a rerun runs only what is left."""
    spec = sweep_from_mapping({"name": "resume", "ray": False, "inference": {
        "batch_sizes": [1], "seq_lens": [8, 12, 16], "engines": ["torch-eager"], "synthetic_rows": 8}})
    points = expand(spec)
    assert len(points) == 3
    calls = []

    def counting(interrupt_at=None):
        real = PointRunner(spec, tmp_path, _quiet)

        def run(point):
            calls.append(point.point_id)
            if len(calls) == interrupt_at:
                raise KeyboardInterrupt  # Ctrl-C in the middle of a point
            return real(point)
        return run

    with pytest.raises(KeyboardInterrupt):
        run_sweep(spec, tmp_path, runner=counting(interrupt_at=2), say=_quiet)
    table = StudyTable(tmp_path)
    assert table.finished_ids() == {points[0].point_id}
    # The interrupted point left no row, and the CSV covers what finished.
    assert {r["point_id"] for r in table.rows()} == {points[0].point_id}
    assert len((tmp_path / "scale.csv").read_text().splitlines()) == 1 + 2  # node + cluster row
    # A crash in the middle of an append leaves a cut line: ignored, and repaired before the next append.
    with open(tmp_path / "scale.jsonl", "a") as f:
        f.write('{"point_id": "' + points[1].point_id + '", "row": "clus')

    calls.clear()
    messages = []
    result = run_sweep(spec, tmp_path, runner=counting(), say=messages.append)
    assert calls == [p.point_id for p in points[1:]]  # the finished point was not run again
    assert result.skipped == [points[0].point_id] and result.ran == calls
    assert sum("finished earlier, skipped" in m for m in messages) == 1
    assert table.finished_ids() == {p.point_id for p in points}
    rows = table.rows()  # every line parses again
    assert [r["point_id"] for r in rows if r["row"] == "cluster"] == [p.point_id for p in points]

    calls.clear()
    run_sweep(spec, tmp_path, runner=counting(), say=_quiet)
    assert calls == []  # all done: nothing runs, reports are rewritten


def test_a_failing_point_is_recorded_and_retried(tmp_path):
    spec = sweep_from_mapping({"ray": False, "inference": {"batch_sizes": [1, 2], "engines": ["torch-eager"]}})
    attempts = []

    def flaky(point):
        attempts.append(point.batch_size)
        if point.batch_size == 2 and attempts.count(2) == 1:
            raise RuntimeError("node went away")
        return [{**point.fields(), "row": "cluster", "status": "ok", "throughput_samples_per_s": 10.0}]

    result = run_sweep(spec, tmp_path, runner=flaky, say=_quiet)
    assert len(result.failed) == 1
    assert "RuntimeError: node went away" in (tmp_path / "scale.md").read_text()
    result = run_sweep(spec, tmp_path, runner=flaky, say=_quiet)
    assert attempts == [1, 2, 2] and not result.failed
    run_sweep(spec, tmp_path, runner=flaky, say=_quiet)
    assert attempts == [1, 2, 2]  # everything finished
    run_sweep(spec, tmp_path, runner=flaky, say=_quiet, force=True)
    assert attempts == [1, 2, 2, 1, 2]  # --force reruns all; the newest rows count
    assert len(StudyTable(tmp_path).latest()) == 2


# ----------------------------------------------------------------------------- reports

def _assert_real_png(path):
    import matplotlib.image as mpimg

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    flat = img.reshape(-1, img.shape[2])
    assert len(np.unique(flat, axis=0)) > 10 and flat.std() > 0.01  # lines and text, not one colour


def _rows():
    """Table rows as `scale` records them: two inference configurations on 1/2 nodes, and
    ZeRO-2 training on 1/2 nodes (weak scaling)."""
    spec = sweep_from_mapping({"inference": {"nodes": [1, 2], "batch_sizes": [1], "engines": ["torch-sdpa"]},
                               "training": {"nodes": [1, 2], "batch_sizes": [8], "zero_stages": [2]}})
    rows = []
    for p in expand(spec):
        if p.mode == "inference":
            thr = 100.0 if p.nodes == 1 else 180.0
            for i in range(p.nodes):
                rows.append({**p.fields(), "row": "node", "status": "ok", "node": f"node{i}",
                             "throughput_samples_per_s": thr / p.nodes, "latency_ms_p50": 1.0 + i,
                             "latency_ms_p90": 2.0 + i, "latency_ms_p99": 3.0 + i})
            rows.append({**p.fields(), "row": "cluster", "status": "ok", "node": "cluster", "actual_nodes": p.nodes,
                         "throughput_samples_per_s": thr, "latency_ms_p50": 1.0 + p.nodes - 1,
                         "latency_ms_p90": 2.0 + p.nodes - 1, "latency_ms_p99": 3.0 + p.nodes - 1})
        else:
            tok = 1000.0 if p.workers == 1 else 1500.0
            rows.append({**p.fields(), "row": "training", "status": "ok", "tokens_per_s": tok,
                         "step_s": p.global_batch * 64 / tok, "params": 300_000, "bytes_per_param": 4})
    return spec, rows


def test_reports_plots_tensorboard_and_the_comm_model(tmp_path):
    spec, rows = _rows()
    paths = scale_report.write_reports(rows, tmp_path, spec)
    for key in ("throughput_png", "efficiency_png", "latency_png"):
        _assert_real_png(paths[key])
    derived = scale_report.derive(rows, bandwidth_gbps=spec.bandwidth_gbps)
    two = next(r for r in derived if r["mode"] == "inference" and r["row"] == "cluster" and r["nodes"] == 2)
    assert two["efficiency"] == pytest.approx(180 / (2 * 100)) and two["per_node_samples_per_s"] == 90
    tr2 = next(r for r in derived if r["mode"] == "training" and r["workers"] == 2)
    assert tr2["efficiency"] == pytest.approx(1500 / 2000)
    expected = predict_step(params=300_000, bytes_per_param=4, world_size=2, stage=2, link_gb_per_s=12.5,
                            compute_s=8 * 64 / 1000.0)
    assert tr2["predicted_comm_s"] == pytest.approx(expected.comm_s)
    assert tr2["predicted_comm_gb"] == pytest.approx(2 * 0.5 * 300_000 * 4 / 1e9)  # ~2x the parameter bytes
    assert tr2["predicted_step_s_no_overlap"] == pytest.approx(expected.step_s_no_overlap)
    md = paths["md"].read_text()
    assert "## Communication model" in md and "| ZeRO-3 | 2 |" in md and "| DP | 2 |" in md
    csv_head = paths["csv"].read_text().splitlines()[0].split(",")
    assert {"efficiency", "predicted_step_s_no_overlap", "comm_share", "bound_by"} <= set(csv_head)

    assert tr2["link"] == "inter-node" and tr2["bandwidth_gbps"] == 100

    tags = read_scalars(paths["tensorboard"])
    inf = "scale/inference/torch-sdpa_fp32_b1_l128_w1"
    assert tags[f"{inf}/samples_per_s"] == [(1, 100.0), (2, 180.0)]
    assert tags[f"{inf}/efficiency"][1] == (2, pytest.approx(0.9))
    assert f"{inf}/latency_ms/p99" in tags
    train = "scale/training/zero2_fp32_weak_b8_l128_w1"
    assert tags[f"{train}/tokens_per_s"] == [(1, 1000.0), (2, 1500.0)]
    assert f"{train}/predicted_step_s/no_overlap" in tags
    # Rewriting the reports replaces the scalars rather than appending a second copy.
    scale_report.write_reports(rows, tmp_path, spec)
    assert read_scalars(paths["tensorboard"])[f"{train}/tokens_per_s"] == [(1, 1000.0), (2, 1500.0)]


def test_cli_errors(tmp_path):
    runner = CliRunner()
    r = runner.invoke(main, ["scale", "--output", str(tmp_path)])
    assert r.exit_code == 2 and "--sweep" in r.output and "--mode" in r.output
    r = runner.invoke(main, ["scale", "--mode", "training", "--engines", "ds", "--output", str(tmp_path)])
    assert r.exit_code == 2 and "--engines: an inference option" in r.output
    r = runner.invoke(main, ["scale", "--mode", "training", "--zero-stages", "0", "--output", str(tmp_path)])
    assert r.exit_code == 2 and "--zero-stages" in r.output and "use 1, 2 or 3" in r.output
    sweep = _yaml(tmp_path, "inference: {}\n")
    r = runner.invoke(main, ["scale", "--sweep", str(sweep), "--nodes", "2", "--output", str(tmp_path)])
    assert r.exit_code == 2 and "not both" in r.output


# ----------------------------------------------------------------------------- for real, on Ray

def test_inference_sweep_on_two_nodes(ray_cluster, tmp_path):
    out = tmp_path / "inf"
    with ray_cluster.connected():
        r = CliRunner().invoke(main, [
            "scale", "--mode", "inference", "--nodes", "1,2", "--batch-sizes", "4", "--seq-lens", "16",
            "--engines", "torch-eager", "--output", str(out)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    rows = StudyTable(out).rows()
    two = [x for x in rows if x["nodes"] == 2]
    per_node = [x for x in two if x["row"] == "node"]
    cluster = next(x for x in two if x["row"] == "cluster")
    assert len({x["node_id"] for x in per_node}) == 2 and cluster["actual_nodes"] == 2
    assert cluster["status"] == "ok"
    assert cluster["throughput_samples_per_s"] == pytest.approx(sum(x["throughput_samples_per_s"] for x in per_node))
    assert cluster["latency_ms_p99"] == max(x["latency_ms_p99"] for x in per_node)
    assert "| torch-eager | fp32 | 4 | 16 | 1 | 2 |" in r.output  # the cluster row of 2 nodes, printed
    derived = scale_report.derive(rows, bandwidth_gbps=100)
    assert next(x for x in derived if x["row"] == "cluster" and x["nodes"] == 2)["efficiency"] > 0
    _assert_real_png(out / "throughput_vs_nodes.png")
    tags = read_scalars(out / "tensorboard")
    assert [s for s, _ in tags["scale/inference/torch-eager_fp32_b4_l16_w1/samples_per_s"]] == [1, 2]


def test_training_sweep_zero1_zero2_on_two_nodes(ray_cluster, tmp_path):
    spec = sweep_from_mapping({"name": "train", "training": {
        "nodes": [1, 2], "batch_sizes": [4], "seq_lens": [32], "zero_stages": [1, 2], "steps": 3,
        "warmup_steps": 1}})
    with ray_cluster.connected():
        result = run_sweep(spec, tmp_path, say=_quiet)
    assert not result.failed and len(result.ran) == 4
    rows = StudyTable(tmp_path).rows()
    assert {(r["zero_stage"], r["nodes"]) for r in rows} == {(1, 1), (1, 2), (2, 1), (2, 2)}
    for r in rows:
        assert r["status"] == "ok" and r["actual_nodes"] == r["nodes"] and r["loop_steps"] == 3
        assert r["timed_steps"] == 2 and r["tokens_per_s"] > 0
        # Synthetic rows hold exactly seq_len tokens: a step is micro x seq x workers tokens.
        assert r["tokens_per_step"] == pytest.approx(4 * 32 * r["workers"])
        merged = json.loads((tmp_path / "points" / r["point_id"] / "ds_config.json").read_text())
        assert merged["zero_optimization"]["stage"] == r["zero_stage"]
        assert merged["train_batch_size"] == 4 * r["workers"]
    derived = scale_report.derive(rows, bandwidth_gbps=100)
    two = [r for r in derived if r["nodes"] == 2]
    assert all(r["efficiency"] > 0 and r["predicted_step_s_no_overlap"] > r["predicted_compute_s"] for r in two)
    md = (tmp_path / "scale.md").read_text()
    assert "## Training: tokens/s by ZeRO stage and node count" in md and "## Communication model" in md
    tags = read_scalars(tmp_path / "tensorboard")
    assert [s for s, _ in tags["scale/training/zero2_fp32_weak_b4_l32_w1/tokens_per_s"]] == [1, 2]
    _assert_real_png(tmp_path / "efficiency.png")


def test_single_node_points_use_the_intra_node_link(tmp_path):
    """W workers on one node talk over NVLink/PCIe, not the network: with
    intra_node_bandwidth_gbps the model times those points on it; multi-node points keep the
    inter-node link (the slowest link their ring crosses)."""
    spec = sweep_from_mapping({"intra_node_bandwidth_gbps": 3600, "training": {
        "nodes": [1, 2], "workers_per_node": [1, 2], "batch_sizes": [8], "zero_stages": [2]}})
    assert spec.intra_node_bandwidth_gbps == 3600 and spec.bandwidth_gbps == 100
    rows = [{**p.fields(), "row": "training", "status": "ok", "actual_nodes": p.nodes, "tokens_per_s": 1000.0 * p.workers,
             "step_s": 0.5, "params": 300e6, "bytes_per_param": 2} for p in expand(spec)]
    derived = scale_report.derive(rows, bandwidth_gbps=spec.bandwidth_gbps,
                                  intra_node_bandwidth_gbps=spec.intra_node_bandwidth_gbps)
    by = {(r["nodes"], r["workers_per_node"]): r for r in derived}
    one_node, two_nodes = by[(1, 2)], by[(2, 1)]  # both W = 2: same bytes, other links
    assert one_node["link"] == "intra-node" and two_nodes["link"] == "inter-node"
    assert one_node["predicted_comm_gb"] == pytest.approx(two_nodes["predicted_comm_gb"])
    assert two_nodes["predicted_comm_s"] == pytest.approx(36 * one_node["predicted_comm_s"])
    md = scale_report.write_tables(rows, tmp_path, spec)["md"].read_text()
    assert "points on one node use the intra-node link, 3600 Gbit/s" in md
    assert "intra-node 3600 Gbit/s" in md and "inter-node 100 Gbit/s" in md
    with pytest.raises(SweepError, match="intra_node_bandwidth_gbps: must be a positive number"):
        sweep_from_mapping({"intra_node_bandwidth_gbps": 0, "training": {}})
