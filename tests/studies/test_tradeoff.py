"""The trade-off report joins accuracy (results.json per arm) with serving cost (bench.jsonl)."""
import json

from click.testing import CliRunner

from stilts_ds.cli import main
from stilts_ds.studies.results import write_results
from stilts_ds.studies.tradeoff import build_report, pareto_front


def _bench(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def _row(engine, dtype, bs, thr, p50=None, node="cluster", status="ok"):
    return {"engine": engine, "dtype": dtype, "batch_size": bs, "throughput_samples_per_s": thr,
            "latency_ms_p50": p50, "node_id": node, "status": status}


def test_report_rows_and_pareto(tmp_path):
    write_results(tmp_path / "a.json", {"xnli": {"en": {"accuracy": 80.0}, "de": {"accuracy": 70.0}}})
    write_results(tmp_path / "b.json", {"xnli": {"en": {"accuracy": 60.0}, "de": {"accuracy": 50.0}}})
    bench = _bench(tmp_path / "bench.jsonl", [
        _row("torch-sdpa", "fp16", 1, 100.0, 5.0), _row("torch-sdpa", "fp16", 32, 900.0),
        _row("ds-kernel", "fp16", 1, 150.0, 3.0), _row("ds-kernel", "fp16", 32, 1500.0),
        _row("ds-kernel", "fp16", 32, 800.0, node="n1"),  # node rows are not the cluster figure
        _row("ds-kernel", "bf16", 32, None, status="unavailable"),
    ])
    paths = build_report({"stilts": tmp_path / "a.json", "baseline": tmp_path / "b.json"}, [bench], tmp_path / "out")
    md = paths["md"].read_text()
    assert md.count("| stilts |") == 2 and md.count("| baseline |") == 2
    assert "1,500.0 (B=32)" in md and "900.0 (B=32)" in md
    rows = list(__import__("csv").DictReader(paths["csv"].open()))
    pareto = {(r["arm"], r["engine"]) for r in rows if r["pareto"] == "True"}
    assert pareto == {("stilts", "ds-kernel")}  # fastest engine on the most accurate arm
    png = paths["pareto_png"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_pareto_front():
    assert pareto_front([(1, 1), (2, 0.5), (0.5, 2), (0.4, 0.4)]) == [0, 1, 2]


def test_report_cli_errors(tmp_path):
    r = CliRunner().invoke(main, ["report", "--results", "nopath", "--output", str(tmp_path)])
    assert r.exit_code == 2 and "ARM=PATH" in r.output
    r = CliRunner().invoke(main, ["report", "--results", f"a={tmp_path / 'missing.json'}", "--output", str(tmp_path)])
    assert r.exit_code == 2 and "missing.json" in r.output
