"""RQ1 per arm: one bench node per arm (``bench/<arm>``) in the study graph, the config's
``bench.arms``/``repeats``/``languages`` and their refusals, and the report over literal
per-arm, per-language, repeated bench rows (the RQ1 sentence compares arms on English and
gives each arm's spread over the languages; the per-language table).

    pytest tests/studies/test_bench_per_arm.py -q
"""
import json
from pathlib import Path

import pytest

from stilts_ds.config import ConfigError, load_config
from stilts_ds.studies.graph import build_graph
from stilts_ds.studies.report import build_report
from stilts_ds.studies.tradeoff import study_inputs

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "configs" / "quickstart.yaml"


def _graph(tmp_path, **sets):
    return build_graph(load_config(QUICKSTART, {"output_dir": str(tmp_path / "run"), **sets}))


def _benches(graph):
    return {n.id: n for n in graph.nodes.values() if n.kind == "bench"}


def test_every_arm_is_served_by_its_own_bench_node(tmp_path):
    graph = _graph(tmp_path)
    benches = _benches(graph)
    assert sorted(benches) == ["bench/english", "bench/multilingual"]
    for arm, node in ((a, benches[f"bench/{a}"]) for a in ("english", "multilingual")):
        # Its own arm's fine-tuned model, the features it times, its own dir.
        assert node.deps == (f"{arm}/phase2/xnli", "prepare/xnli") and node.arm == arm
        assert node.dir == tmp_path / "run" / "bench" / arm
        assert node.config["served"] == f"{arm}/phase2/xnli" and node.config["languages"] == ["en", "hi", "zh"]
        assert sorted(Path(f).name.split(".")[1] for f in node.features) == ["en", "hi", "zh"]
    assert benches["bench/english"].key != benches["bench/multilingual"].key
    assert set(graph.nodes["report"].deps) >= {"bench/english", "bench/multilingual"}
    # Narrowing the served arms keeps the remaining node's key: it does not depend on the others.
    narrowed = _benches(_graph(tmp_path, **{"bench.arms": ["multilingual"]}))
    assert list(narrowed) == ["bench/multilingual"]
    assert narrowed["bench/multilingual"].key == benches["bench/multilingual"].key
    # The older one-arm spelling still loads and means just that arm.
    assert list(_benches(_graph(tmp_path, **{"bench.arm": "english"}))) == ["bench/english"]


def test_seeded_arms_serve_their_first_seed_and_all_languages_read_every_prepared_split(tmp_path):
    graph = _graph(tmp_path, seeds=[7, 3], **{"bench.languages": "all", "bench.repeats": 2})
    node = _benches(graph)["bench/english"]
    assert node.deps[0] == "english/seed7/phase2/xnli"
    assert node.config["languages"] == ["ar", "en", "hi", "ru", "zh"]
    assert node.config["bench.repeats"] == 2
    assert sorted(Path(f).name.split(".")[1] for f in node.features) == ["ar", "en", "hi", "ru", "zh"]
    # The prepare node featurizes what the bench reads.
    assert {("test", l) for l in ("ar", "en", "hi", "ru", "zh")} <= set(graph.nodes["prepare/xnli"].needs)


@pytest.mark.parametrize("sets, message", [
    ({"bench.arm": "english", "bench.arms": ["english"]}, "bench.arm and bench.arms are both set"),
    ({"bench.arms": ["englsh"]}, "bench.arms: 'englsh' is not an arm of this config (english, multilingual)"),
    ({"bench.arm": "nope"}, "bench.arm: 'nope' is not an arm"),
    ({"bench.arms": []}, "bench.arms is empty"),
    ({"bench.lang": "zh", "bench.languages": ["en"]}, "bench.lang and bench.languages are both set"),
    ({"bench.languages": ["all", "en"]}, "'all' already means every language"),
    ({"bench.languages": 3}, "bench.languages: expected a list of language codes or 'all'"),
    ({"bench.repeats": 0}, "bench.repeats must be an integer of at least 1"),
])
def test_bench_options_are_refused_naming_them(tmp_path, sets, message):
    with pytest.raises(ConfigError) as e:
        load_config(QUICKSTART, {"output_dir": str(tmp_path / "run"), **sets})
    assert message in str(e.value)


def test_a_language_the_task_does_not_have_is_named(tmp_path):
    with pytest.raises(Exception, match=r"bench.languages: xnli has no test split in th here \(it has ar, en"):
        _graph(tmp_path, **{"bench.languages": ["en", "th"]})


def test_the_config_defaults_and_the_shipped_configs():
    from stilts_ds.config import BenchConfig

    assert BenchConfig().langs(["en", "zh"]) == ("en",) and BenchConfig().repeats == 3
    cfg = load_config(QUICKSTART)
    assert cfg.bench.served_arms() is None and cfg.bench.langs(["en", "zh"]) == ("en", "hi", "zh")
    paper = load_config(ROOT / "configs" / "paper.yaml", {"data.local_tasks": {}})
    assert paper.bench.repeats == 3 and paper.bench.served_arms() is None
    assert paper.bench.langs(["en", "th"]) == ("en", "th")  # languages: all
    assert BenchConfig(lang="zh").langs(["en", "zh"]) == ("zh",)  # the older spelling still loads


# ----------------------------------------------------------------------------- the report
def _results(path, xnli):
    from stilts_ds.studies.results import write_results

    path.parent.mkdir(parents=True, exist_ok=True)
    return write_results(path, {"xnli": {"en": {"accuracy": xnli}}, "pawsx": {"en": {"accuracy": xnli - 10}}}) and path


def _rows(arm, lang, tokens, thr, ms):
    """Three repeats of one engine at batches 1 and 8 (8: the serving batch), cluster rows."""
    out = []
    for repeat, f in enumerate((0.95, 1.0, 1.05)):
        for bs, scale in ((1, 0.25), (8, 1.0)):
            out.append({"engine": "torch-sdpa", "dtype": "fp32", "batch_size": bs, "node_id": "cluster",
                        "status": "ok", "task": "xnli", "lang": lang, "workload": f"xnli/{lang}", "arm": arm,
                        "repeat": repeat, "serving_batch_size": 8, "tokens_per_example": tokens,
                        "throughput_samples_per_s": thr * scale * f, "latency_ms_p50": ms * (bs / 8 + 0.5) * f})
    return out


def test_report_compares_arms_on_english_and_tabulates_each_language(tmp_path):
    run = tmp_path / "run"
    results = {a: _results(run / "arms" / a / "results.json", x) for a, x in (("english", 80.0),
                                                                              ("multilingual", 81.0))}
    for arm, scale in (("english", 1.0), ("multilingual", 0.98)):
        rows = (_rows(arm, "en", 20.0, 1000.0 * scale, 4.0) + _rows(arm, "hi", 40.0, 520.0 * scale, 7.5)
                + _rows(arm, "th", 33.0, 610.0 * scale, 6.0))
        path = run / "bench" / arm / "bench.jsonl"
        path.parent.mkdir(parents=True)
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run / "results.json").write_text("{}")  # a run dir study_inputs accepts
    _, benches, _ = study_inputs(run)
    assert benches == [run / "bench" / "english" / "bench.jsonl", run / "bench" / "multilingual" / "bench.jsonl"]
    md = build_report(results, benches, tmp_path / "out")["md"].read_text()
    answers = md.split("## Answers", 1)[1].split("\n## ", 1)[0]
    # Compared on English only: the gap is the arms' (2%), not English against Hindi (~50%).
    assert "served per arm: english: 1,000.0 samples/s (torch-sdpa fp32, batch 8, 950.0 – 1,050.0 over 3 timings)" \
        in answers
    assert "serving cost equal within 2% in samples/s over 1 engine/precision config" in answers
    assert "Arms compared on xnli/en; per language, over 3 languages at torch-sdpa fp32, batch 8: " \
           "english 1,000.0 samples/s (en, 20.0 tokens/example) to 520.0 (hi, 40.0)" in answers
    assert "multilingual 980.0 samples/s (en, 20.0 tokens/example) to 509.6 (hi, 40.0)" in answers
    # The per-language table: English first, then the others, median and range of the repeats.
    assert "**Per language**, at torch-sdpa fp32 and the serving batch size (8)" in md
    table = md.split("**Per language**", 1)[1]
    assert "| english | xnli/en | 20.0 | 1,000.0 | 950.0 – 1,050.0 | 3 | 6.00 | 5.70 – 6.30 |" in table
    assert "| english | xnli/hi | 40.0 | 520.0 | 494.0 – 546.0 | 3 | 11.25 | 10.69 – 11.81 |" in table
    assert table.index("| english | xnli/en |") < table.index("| english | xnli/hi |") \
        < table.index("| english | xnli/th |") < table.index("| multilingual | xnli/en |")
