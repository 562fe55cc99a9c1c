"""`stilts-ds bench` end to end: engines behind the parity gate, timed per node, scored
through the same engine, reported."""
import json

import pytest
import torch
from click.testing import CliRunner

from stilts_ds.cli import main
from stilts_ds.inference.bench import BenchSpec, run_bench
from stilts_ds.modeling import export
from stilts_ds.modeling.multitask import HeadSpec, MultiTaskModel
from stilts_ds.modeling.presets import load_tokenizer, model_config


def test_tiny_preset_on_two_nodes_one_row_per_node_and_engine(ray_cluster, tmp_path):
    spec = BenchSpec(engines=("torch-eager", "torch-sdpa", "ds-kernel"), batch_sizes=(1, 4), seq_len=32,
                     preset="tiny", synthetic_rows=32)
    with ray_cluster.connected():
        rows, paths = run_bench(spec, tmp_path)
    timed = [r for r in rows if r["status"] == "ok"]
    assert {(r["engine"], r["node_id"]) for r in timed} == {
        (e, n) for e in ("torch-eager", "torch-sdpa") for n in {r["node_id"] for r in rows}}
    assert len({r["node_id"] for r in rows}) == 2
    for r in timed:
        assert r["throughput_samples_per_s"] > 0
        if r["latency_ms_p50"] is not None:
            assert r["latency_ms_p50"] <= r["latency_ms_p90"] <= r["latency_ms_p99"]
    kernel = [r for r in rows if r["engine"] == "ds-kernel"]
    assert kernel and all(r["status"] == "unavailable" and "CUDA" in r["reason"] for r in kernel)
    lines = [json.loads(x) for x in paths["jsonl"].read_text().splitlines()]
    cluster = [x for x in lines if x["node_id"] == "cluster" and x["status"] == "ok"]
    assert len(cluster) == 2 * 2  # two timed engines x two batch sizes
    for c in cluster:  # the cluster's capacity is the sum of its nodes'
        nodes = [r for r in timed if (r["engine"], r["batch_size"]) == (c["engine"], c["batch_size"])]
        assert abs(c["throughput_samples_per_s"] - sum(r["throughput_samples_per_s"] for r in nodes)) < 1e-6


def test_accuracy_through_the_engine_with_a_checkpoint(tmp_path):
    tok = load_tokenizer("bundled")
    model = MultiTaskModel.build(model_config("tiny", vocab_size=len(tok)), {"xnli": HeadSpec("pair_classification", 3)})
    export.save_model(model, tmp_path / "model", tok)
    result = CliRunner().invoke(main, [
        "bench", "--checkpoint", str(tmp_path / "model"), "--task", "xnli", "--lang", "zh",
        "--engines", "torch-eager,torch-sdpa", "--batch-sizes", "1,8", "--seq-len", "64", "--no-ray",
        "--output", str(tmp_path / "out")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rows = [json.loads(x) for x in (tmp_path / "out" / "bench.jsonl").read_text().splitlines()]
    scored = [r for r in rows if r.get("accuracy") is not None]
    assert {r["engine"] for r in scored} >= {"torch-eager", "torch-sdpa"}
    # Same fp32 weights through two attention implementations: the same predictions.
    assert len({round(r["accuracy"], 6) for r in scored}) == 1
    # Each score has its 95% bootstrap interval over the test examples (phase 3's method and
    # stream): the same predictions give the same interval, around the score.
    assert len({(r["accuracy_low"], r["accuracy_high"]) for r in scored}) == 1
    assert all(r["accuracy_low"] <= r["accuracy"] <= r["accuracy_high"] for r in scored)
    assert scored[0]["accuracy_high"] - scored[0]["accuracy_low"] > 0  # 24 rows: a real spread
    # bench.md shows the score beside the speed, and TensorBoard has it per engine and batch.
    md = (tmp_path / "out" / "bench.md").read_text()
    assert "| xnli/zh accuracy |" in md.splitlines()[md.splitlines().index("## Results") + 2]
    from stilts_ds.engine.tb_logger import read_scalars

    tags = read_scalars(tmp_path / "out" / "tensorboard")
    assert [step for step, _ in tags["bench/torch-sdpa_fp32/node0/accuracy"]] == [1, 8]


def test_bench_refuses_a_task_the_checkpoint_cannot_score(tmp_path):
    tok = load_tokenizer("bundled")
    model = MultiTaskModel.build(model_config("tiny", vocab_size=len(tok)), {"xnli": HeadSpec("pair_classification", 3)})
    export.save_model(model, tmp_path / "model", tok)
    export.save_encoder(model, tmp_path / "encoder", tok)
    runner = CliRunner()
    base = ["bench", "--no-ray", "--output", str(tmp_path / "out")]
    r = runner.invoke(main, [*base, "--checkpoint", str(tmp_path / "model"), "--task", "pawsx"])
    assert r.exit_code == 2 and "has heads for xnli; give the phase2/pawsx/model checkpoint" in r.output
    r = runner.invoke(main, [*base, "--checkpoint", str(tmp_path / "encoder"), "--task", "xnli"])
    assert r.exit_code == 2 and "no trained heads (an encoder export)" in r.output
    r = runner.invoke(main, [*base, "--checkpoint", str(tmp_path / "encoder"), "--task", "tatoeba"])
    assert r.exit_code == 2 and "retrieval tasks are scored in phase 3" in r.output
    assert not (tmp_path / "out").exists()  # refused before anything was featurized or timed


def test_bench_rejects_bad_options(tmp_path):
    runner = CliRunner()
    r = runner.invoke(main, ["bench", "--preset", "tiny", "--engines", "torch-turbo", "--output", str(tmp_path)])
    assert r.exit_code == 2 and "unknown engine" in r.output
    r = runner.invoke(main, ["bench", "--output", str(tmp_path)])
    assert r.exit_code == 2 and "exactly one of --preset" in r.output


@pytest.mark.parametrize("task, lang", [("tatoeba", "de"), ("lareqa", "zh")])
def test_a_task_scored_from_embeddings_is_timed_on_the_encoder_without_a_score(tmp_path, task, lang):
    """The study serves a retrieval task's phase-1 encoder (phase 3 embeds it; no head): its
    rows are timed encoder-only and labelled with the task and language, with no score."""
    from transformers import AutoModel

    from stilts_ds.inference.bench import eval_features

    tok = load_tokenizer("bundled")
    torch.manual_seed(0)
    AutoModel.from_config(model_config("tiny", vocab_size=len(tok))).save_pretrained(tmp_path / "encoder")
    tok.save_pretrained(tmp_path / "encoder")
    feats = eval_features(task, tmp_path / "encoder", split="test", lang=lang, max_length=64,
                          cache_dir=tmp_path / "cache")
    spec = BenchSpec(engines=("torch-sdpa",), batch_sizes=(4,), checkpoint=str(tmp_path / "encoder"), task=task,
                     lang_features=((lang, feats),), extra={"arm": "english"})
    rows, _ = run_bench(spec, tmp_path / "out", use_ray=False)
    local = [r for r in rows if r["node_id"] == "local"]
    assert {(r["task"], r["lang"], r["workload"], r["arm"]) for r in local} == {(task, lang, f"{task}/{lang}", "english")}
    assert all(r["status"] == "ok" and r["throughput_samples_per_s"] > 0 and r["tokens_per_example"] > 0 for r in local)
    assert all(r.get("accuracy") is None for r in local)
