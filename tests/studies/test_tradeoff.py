"""The report's data joins (stilts_ds.studies.tradeoff): bench rows per arm or per served
checkpoint with the spread of repeated timings, accuracy with its interval or seeds' std,
training cost in worker-seconds from DONE.json, the Pareto front, tradeoff.csv's rows.

    pytest tests/studies/test_tradeoff.py -q
"""
import json

import pytest
from click.testing import CliRunner

from stilts_ds.cli import main
from stilts_ds.studies.results import write_results
from stilts_ds.studies.tradeoff import (arm_scores, pareto_front, read_bench, serving_costs, tradeoff_rows,
                                        training_cost, training_front)


def _bench(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def _row(engine, dtype, bs, thr, p50=None, node="cluster", status="ok", **extra):
    return {"engine": engine, "dtype": dtype, "batch_size": bs, "throughput_samples_per_s": thr,
            "latency_ms_p50": p50, "node_id": node, "status": status, "task": "xnli", "lang": "en", **extra}


def _results(path, xnli=80.0, pawsx=70.0, **extra):
    out = write_results(path, {"xnli": {"en": {"accuracy": xnli}}, "pawsx": {"en": {"accuracy": pawsx}}})
    if extra:
        out.update(extra)
        path.write_text(json.dumps(out))
    return path


def test_one_checkpoint_best_batch_repeats_and_unavailable(tmp_path):
    bench = _bench(tmp_path / "bench" / "bench.jsonl", [
        _row("ds", "fp16", 1, 100.0, 5.0), _row("ds", "fp16", 1, 110.0, 4.0), _row("ds", "fp16", 1, 90.0, 6.0),
        _row("ds", "fp16", 32, 900.0), _row("ds", "fp16", 32, 1000.0), _row("ds", "fp16", 32, 950.0),
        _row("ds", "fp16", 32, 800.0, node="n1"),  # a node's row is not the cluster figure
        _row("ds-kernel", "fp16", None, None, status="unavailable", reason="needs CUDA"),
    ])
    (tmp_path / "bench" / "DONE.json").write_text(json.dumps({"config": {"served": "english/phase2/xnli"}}))
    b = read_bench([bench])
    (s,) = b.servings
    assert (s.arm, s.workload, s.engine, s.best_batch_size) == (None, "xnli/en", "ds", 32)
    assert (s.throughput_samples_per_s, s.throughput_low, s.throughput_high, s.timings) == (950.0, 900.0, 1000.0, 3)
    assert (s.latency_ms_p50_batch1, s.latency_low, s.latency_high, s.latency_timings) == (5.0, 4.0, 6.0, 3)
    assert b.unavailable == [("ds-kernel", "fp16", "needs CUDA")]
    assert not b.per_arm and b.checkpoint == "english/phase2/xnli" and b.unattributed == [s]
    assert serving_costs([bench]) == b.servings


def test_rows_with_an_arm_are_that_arms(tmp_path):
    bench = _bench(tmp_path / "bench.jsonl", [
        _row("ds", "fp16", 8, 1000.0, arm="english"), _row("ds", "fp16", 8, 990.0, arm="multilingual"),
        _row("ds", "fp16", 1, 100.0, 5.0, arm="english", checkpoint="arms/english/phase2/xnli/model")])
    b = read_bench([bench])
    assert b.per_arm and b.checkpoint is None
    assert [s.throughput_samples_per_s for s in b.of_arm("english")] == [1000.0]
    assert [s.throughput_samples_per_s for s in b.of_arm("multilingual")] == [990.0]
    # An unnamed checkpoint is said to be unnamed, not given a made-up name.
    other = _bench(tmp_path / "other" / "bench.jsonl", [_row("ds", "fp16", 8, 1000.0)])
    assert "do not name it" in read_bench([other]).checkpoint


def test_uncertainty_then_seeds_then_nothing(tmp_path):
    iv = {"method": "paired bootstrap", "resamples": 1000, "seed": 0, "level": 0.95,
          "task_scores": {"xnli": {"low": 78.0, "high": 82.0}},
          "xtreme_average": {"low": 73.0, "high": 77.0}, "xtreme_r_average": {"low": 1.0, "high": 2.0}}
    a = arm_scores("a", _results(tmp_path / "a.json", uncertainty=iv))
    assert a.uncertainty.kind == "interval" and a.uncertainty.level == 0.95
    assert (a.xtreme.value, a.xtreme.low, a.xtreme.high) == (75.0, 73.0, 77.0)
    assert a.tasks["xnli"].bounds() == (78.0, 82.0) and a.tasks["pawsx"].bounds() == (70.0, 70.0)
    seeds = {"values": [1, 2, 3], "runs": [], "std": {"xtreme_average": 0.5, "task_scores": {"xnli": 0.3}}}
    b = arm_scores("b", _results(tmp_path / "b.json", seeds=seeds))
    assert b.uncertainty.kind == "seeds" and b.uncertainty.seeds == 3
    assert b.xtreme.bounds() == (74.5, 75.5) and b.tasks["xnli"].yerr() == pytest.approx((0.3, 0.3))
    c = arm_scores("c", _results(tmp_path / "c.json"))
    assert c.uncertainty.kind == "none" and c.xtreme.yerr() == (0.0, 0.0)


def _done(path, wall, workers):
    path.mkdir(parents=True, exist_ok=True)
    (path / "DONE.json").write_text(json.dumps({"wall_seconds": wall, "world_size": workers}))


def test_training_cost_in_worker_seconds_from_done_files(tmp_path):
    arm = tmp_path / "arm"
    _done(arm / "phase1", 10.0, 2)
    _done(arm / "phase2" / "xnli", 3.0, 2)
    _done(arm / "phase2" / "xcopa", 1.0, 4)
    _done(arm / "phase2" / "xcopa" / "stages" / "siqa", 2.0, 4)  # a staged recipe's earlier stage counts
    cost = training_cost(arm, {"phase1_wall_s": 99.0, "phase2_wall_s": 99.0})
    assert (cost.phase1, cost.phase2, cost.total, cost.unit) == (20.0, 18.0, 38.0, "worker-s")
    # Without DONE.json: arms.json's wall seconds, said to be wall seconds.
    cost = training_cost(tmp_path / "gone", {"phase1_wall_s": 8.0, "phase2_wall_s": 18.0})
    assert (cost.phase1, cost.phase2, cost.unit) == (8.0, 18.0, "wall-s")
    # No phase 1 at all (the no-intermediate baseline) costs nothing there.
    assert training_cost(tmp_path / "gone", {"data": "none", "phase2_wall_s": 5.0}).phase1 == 0.0
    assert training_cost(tmp_path / "gone").total is None


def test_pareto_front():
    assert pareto_front([(1, 1), (2, 0.5), (0.5, 2), (0.4, 0.4)]) == [0, 1, 2]


def test_tradeoff_rows_do_not_copy_one_checkpoint_onto_every_arm(tmp_path):
    a = arm_scores("stilts", _results(tmp_path / "a.json", 80.0, 70.0))
    b = arm_scores("baseline", _results(tmp_path / "b.json", 60.0, 50.0))
    bench = read_bench([_bench(tmp_path / "bench.jsonl", [_row("ds", "fp16", 32, 1500.0),
                                                          _row("torch-sdpa", "fp16", 32, 900.0)])])
    rows = tradeoff_rows([a, b], bench)
    assert [r["arm"] for r in rows] == ["stilts", "baseline"]
    assert all(r["throughput_samples_per_s"] is None and r["serving_per_arm"] is False for r in rows)
    assert all("do not name it" in r["served_checkpoint"] for r in rows)
    # Per-arm rows: one row per (arm, engine), and the front over accuracy and samples/s.
    bench = read_bench([_bench(tmp_path / "arm.jsonl", [
        _row("ds", "fp16", 32, 1500.0, arm="stilts"), _row("torch-sdpa", "fp16", 32, 900.0, arm="stilts"),
        _row("ds", "fp16", 32, 1600.0, arm="baseline")])])
    rows = tradeoff_rows([a, b], bench)
    assert [(r["arm"], r["engine"]) for r in rows] == [("stilts", "ds"), ("stilts", "torch-sdpa"), ("baseline", "ds")]
    assert {(r["arm"], r["engine"]) for r in rows if r["pareto_serving"]} == {("stilts", "ds"), ("baseline", "ds")}
    assert training_front([a, b]) == set()  # no training cost known: no frontier made up


def test_report_cli_errors(tmp_path):
    r = CliRunner().invoke(main, ["report", "--results", "nopath", "--output", str(tmp_path)])
    assert r.exit_code == 2 and "ARM=PATH" in r.output
    r = CliRunner().invoke(main, ["report", "--results", f"a={tmp_path / 'missing.json'}", "--output", str(tmp_path)])
    assert r.exit_code == 2 and "missing.json" in r.output
