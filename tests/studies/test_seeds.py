"""Training seeds (config ``seeds``) without Ray: what the config refuses, each seed's config,
the seeded study graph (ids, directories, dependencies, keys that do not depend on the other
seeds), the seedless graph pinned to the node ids and keys it had before seeds existed, the
combination (mean and sample std), the arms table with its spread, and `plan` counting every
seed's jobs. The real two-seed study on a Ray cluster: tests/studies/test_seeds_ray.py.

    .venv/bin/python -m pytest -q tests/studies/test_seeds.py
"""
import hashlib
import json
import math
import statistics
from pathlib import Path

import pytest

from stilts_ds.config import ConfigError, load_config
from stilts_ds.errors import StiltsError
from stilts_ds.studies.arms import comparison_markdown
from stilts_ds.studies.graph import build_graph
from stilts_ds.studies.results import load_results, write_results
from stilts_ds.studies.seeds import combine_seeds, score_with_spread

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "configs" / "quickstart.yaml"
PAPER = ROOT / "configs" / "paper.yaml"


# ----------------------------------------------------------------------------- the config
@pytest.mark.parametrize("sets, message", [
    ({"seeds": []}, "seeds is an empty list"),
    ({"seeds": [1, 2, 1]}, "seeds lists 1 more than once"),
    ({"seeds": [1, "2"]}, "seeds: expected a list of integers"),
    ({"seeds": [1.5]}, "seeds: expected a list of integers"),
    ({"seeds": [True]}, "seeds: expected a list of integers"),
    ({"seeds": 3}, "seeds: expected a list, got 3"),
    ({"seeds": [-1]}, "seeds: -1 is not an integer in [0, 2147483648)"),
    ({"seeds": [1], "intermediate.seed": 7}, "seeds and intermediate.seed are both set"),
    ({"seeds": [1], "finetune.defaults.seed": 7}, "seeds and finetune.defaults.seed are both set"),
    ({"seeds": [1], "finetune.per_task.xnli.seed": 7}, "seeds and finetune.per_task.xnli.seed are both set"),
    ({"seeds": [1], "arms.english.intermediate.seed": 7}, "seeds and arms.english.intermediate.seed are both set"),
    ({"arms.english.seeds": [1, 2]}, "arms.english: seeds cannot be set per arm"),
])
def test_bad_seeds_are_refused_naming_the_option(sets, message):
    with pytest.raises(ConfigError) as e:
        load_config(QUICKSTART, sets)
    assert message in str(e.value) and str(QUICKSTART) in str(e.value), str(e.value)


def test_each_seed_sets_every_training_seed_and_runs_in_its_own_dir(tmp_path):
    cfg = load_config(QUICKSTART, {"output_dir": str(tmp_path / "run"), "seeds": [3, 5],
                                   "finetune.tasks": ["xnli", "xcopa"], "evaluate.tasks": ["xnli", "xcopa"],
                                   "arms.baseline": {"intermediate": None}})
    assert cfg.seeds == (3, 5)
    for arm in cfg.arm_configs().values():  # every arm gets the study's seeds
        acfg = arm.config
        assert acfg.seeds == (3, 5)
        for seed in acfg.seeds:
            run = acfg.seed_config(seed)
            assert run.seeds is None and run.name == f"{acfg.name}-seed{seed}"
            assert run.run_dir == acfg.run_dir / "seeds" / str(seed)
            assert run.cache_dir() == cfg.cache_dir() and run.storage_path() == acfg.storage_path()
            if acfg.intermediate is not None:
                assert run.intermediate.seed == seed
            for task in ("xnli", "siqa", "xcopa"):  # xcopa's SIQA stage too
                assert run.finetune.recipe(task).seed == seed
            # Nothing else of the recipe moves.
            assert run.finetune.recipe("xnli").lr == acfg.finetune.recipe("xnli").lr
    assert load_config(QUICKSTART).seeds is None and load_config(QUICKSTART, {"seeds": None}).seeds is None


# ----------------------------------------------------------------------------- seedless: unchanged
# The quick start's node ids and keys as they were before `seeds` existed (commit 0cc3b38), with
# the data fingerprints made portable (below). If a change to a config slice, a fixture, a task
# head or ds_configs/ moves them on purpose, print the new ones with _portable_keys and paste.
SEEDLESS_KEYS = {
    "prepare/anli_plus": "c2521d60d0398b39", "prepare/mnli": "d038f3d48d1b8a4d",
    "prepare/qqp": "a6a3f9bc857e7be7", "prepare/squad_v1": "00f6c922ba8867ee",
    "prepare/squad_v2": "41cc8848391b88ac", "prepare/hellaswag": "3c33b913c22544fb",
    "prepare/cosmosqa": "d521e07aab784f2d", "prepare/commonsenseqa": "3a566a96222d62a4",
    "prepare/ccg": "515bae1de9f1e952", "prepare/xnli": "55e8022e427a2d68",
    "prepare/pawsx": "5536862c1c907976", "prepare/udpos": "ee8f1a4bab634379",
    "prepare/panx": "1ccbef082c426817", "prepare/xquad": "99b5a02e713c8a87",
    "prepare/mlqa": "15d6b0f69fc8bfcf", "prepare/tydiqa": "7287a8a94e12f800",
    "prepare/siqa": "c6c7ecf64bc4fbe8", "prepare/xcopa": "9b8e33c4e4f58e38",
    "prepare/bucc": "2dc0e987bce537ce", "prepare/tatoeba": "3198bf899f1aab65",
    "prepare/mewslix": "1ab325e2759df966", "prepare/lareqa": "62134a91e18fadbc",
    "prepare/mlm": "6b521f3443f9c198", "prepare/mnli@ar": "ecf7a85b331e8eb0",
    "prepare/mnli@de": "5ebeca343b247b28", "prepare/mnli@hi": "c04697d9673f0281",
    "prepare/mnli@ru": "c039e297300ed24d", "prepare/mnli@zh": "99540f1753e9aca3",
    "english/phase1": "275a9199758ea416", "english/phase2/xnli": "2145c557b08c440a",
    "english/phase2/pawsx": "f03780aaf062006b", "english/phase2/udpos": "72177e12f2d5d723",
    "english/phase2/panx": "4453fce0b13a836e", "english/phase2/xquad": "6593cf52221e22b6",
    "english/phase2/mlqa": "19c13b7b4c8dff50", "english/phase2/tydiqa": "3dc55b2fabbf7393",
    "english/phase2/xcopa/stages/siqa": "e3436cac022d3996", "english/phase2/xcopa": "f487a0463004ca81",
    "english/phase3/xnli": "e9f490d86dd7b5a6", "english/phase3/pawsx": "357e20d87bb7f908",
    "english/phase3/udpos": "0f791dbc1f35b205", "english/phase3/panx": "00f4bb2f52bd9880",
    "english/phase3/xquad": "d38801bf1972fea1", "english/phase3/mlqa": "b041ed0b711f5da9",
    "english/phase3/tydiqa": "8be72a2b7d244418", "english/phase3/bucc": "6d30ca3e22c55c23",
    "english/phase3/tatoeba": "da7587a8b8f8e5af", "english/phase3/xcopa": "80a63a1993998a4f",
    "english/phase3/mewslix": "89ca68aea2705e0f", "english/phase3/lareqa": "8b08ef9f0b1e550e",
    "english/results": "74ced13e343ee112", "multilingual/phase1": "42059cd0140daa90",
    "multilingual/phase2/xnli": "df5063603d416d23", "multilingual/phase2/pawsx": "f11c42919a253b3d",
    "multilingual/phase2/udpos": "6c347f7bd984b522", "multilingual/phase2/panx": "38e23c62844648b9",
    "multilingual/phase2/xquad": "e679ae658f9763de", "multilingual/phase2/mlqa": "c6f97e123517b44c",
    "multilingual/phase2/tydiqa": "0eeddcb2524dd9ee", "multilingual/phase2/xcopa/stages/siqa": "5c1da245d675d671",
    "multilingual/phase2/xcopa": "a5727e24a7eeb511", "multilingual/phase3/xnli": "59788758c660e7bf",
    "multilingual/phase3/pawsx": "6aea2dda7a79fef9", "multilingual/phase3/udpos": "d4878f7824973c1f",
    "multilingual/phase3/panx": "fb99d29ee428323a", "multilingual/phase3/xquad": "bbd5640c0cd637c3",
    "multilingual/phase3/mlqa": "d0c7d948b86a875a", "multilingual/phase3/tydiqa": "d1edadc6d6e51820",
    "multilingual/phase3/bucc": "b591ebed6c276067", "multilingual/phase3/tatoeba": "f8f070121a5d5f8e",
    "multilingual/phase3/xcopa": "dad7d3df34e98f4b", "multilingual/phase3/mewslix": "f59b2bb24ce6e705",
    "multilingual/phase3/lareqa": "624607ce62b29af2", "multilingual/results": "b38a177ee661fc68",
    # One bench node per arm and bench task (bench.tasks: xnli, udpos, xquad) since bench.tasks
    # (one per arm since bc92402); the report depends on them. Nothing above moved with them.
    "arms": "aa5a7d3a7149b8cf",
    "bench/english/xnli": "3078e948520ce807", "bench/english/udpos": "6ea799176dbf4794",
    "bench/english/xquad": "a46c0fd5af23b8b0", "bench/multilingual/xnli": "a2d6cc71b529fcb8",
    "bench/multilingual/udpos": "d4ff4ae417e08f9b", "bench/multilingual/xquad": "dd5c29b8fc1a62a3",
    "report": "09fb9cf158827034",
}


def _portable_keys(monkeypatch, tmp_path, **sets) -> dict[str, str]:
    """The quick start graph's {node id: key}, the same on every machine: data read through a
    relative data_dir, and file fingerprints by size alone (not mtime or absolute path)."""
    from stilts_ds.data import cache
    from stilts_ds.studies import graph as graph_mod

    def data_fingerprint(source, path=None):
        if path is None:
            return source
        paths = [path] if isinstance(path, (str, Path)) else list(path)
        return hashlib.sha256("\n".join(f"{p}|{Path(p).stat().st_size}" for p in paths).encode()).hexdigest()[:12]

    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(cache, "data_fingerprint", data_fingerprint)
    monkeypatch.setattr(graph_mod, "file_fingerprint", lambda p: str(Path(p).stat().st_size))
    cfg = load_config(QUICKSTART, {"output_dir": str(tmp_path / "run"), "data.data_dir": "stilts_ds/resources/fixtures",
                                   **sets})
    graph = build_graph(cfg)
    return {nid: graph.nodes[nid].key for nid in graph.order()}, graph


def test_a_seedless_quickstart_graph_keeps_its_node_ids_and_keys(monkeypatch, tmp_path):
    keys, graph = _portable_keys(monkeypatch, tmp_path)
    assert list(keys) == list(SEEDLESS_KEYS)  # the same nodes, in the same order
    changed = {n: (SEEDLESS_KEYS[n], k) for n, k in keys.items() if SEEDLESS_KEYS[n] != k}
    assert not changed, changed
    run = tmp_path / "run"
    for node in graph.nodes.values():
        assert node.seed is None and "seed" not in node.config and "/seeds/" not in str(node.dir)
    assert graph.nodes["english/phase1"].dir == run / "arms" / "english" / "phase1"
    assert graph.nodes["english/results"].kind == "results"
    assert graph.nodes["english/results"].dir == run / "arms" / "english" / "phase3"


# ----------------------------------------------------------------------------- the seeded graph
def _seeded(tmp_path, seeds, **sets):
    return load_config(QUICKSTART, {"output_dir": str(tmp_path / "run"), "seeds": seeds,
                                    "finetune.tasks": ["xnli", "xcopa"],
                                    "evaluate.tasks": ["xnli", "tatoeba", "xcopa"], **sets})


def test_the_seeded_graph_runs_each_arm_once_per_seed_and_combines_them(tmp_path):
    graph = build_graph(_seeded(tmp_path, [1, 2]))
    nodes, run = graph.nodes, tmp_path / "run" / "arms"
    per_seed = ["phase1", "phase2/xnli", "phase2/xcopa/stages/siqa", "phase2/xcopa", "phase3/xnli", "phase3/tatoeba",
                "phase3/xcopa", "results"]
    for arm in ("english", "multilingual"):
        for seed in (1, 2):
            for rel in per_seed:
                node = nodes[f"{arm}/seed{seed}/{rel}"]
                assert node.seed == seed and node.arm == arm and node.config["seed"] == seed
            base = run / arm / "seeds" / str(seed)
            assert nodes[f"{arm}/seed{seed}/phase1"].dir == base / "phase1"
            assert nodes[f"{arm}/seed{seed}/phase2/xcopa/stages/siqa"].dir == base / "phase2" / "xcopa" / "stages" / "siqa"
            assert nodes[f"{arm}/seed{seed}/phase3/tatoeba"].dir == base / "phase3" / "tatoeba"
            assert nodes[f"{arm}/seed{seed}/results"].dir == base / "phase3"
            # Each seed's chain reads its own upstream: tatoeba is scored from that seed's phase 1.
            assert f"{arm}/seed{seed}/phase1" in nodes[f"{arm}/seed{seed}/phase3/tatoeba"].deps
            assert f"{arm}/seed{seed}/phase1" in nodes[f"{arm}/seed{seed}/phase2/xnli"].deps
            assert f"{arm}/seed{seed}/phase2/xcopa/stages/siqa" in nodes[f"{arm}/seed{seed}/phase2/xcopa"].deps
            assert nodes[f"{arm}/seed{seed}/phase1"].config["intermediate.seed"] == seed
            assert nodes[f"{arm}/seed{seed}/phase2/xnli"].config["finetune[xnli].seed"] == seed
            assert graph.config_of(nodes[f"{arm}/seed{seed}/phase1"]).run_dir == base
        combined = nodes[f"{arm}/results"]
        assert combined.kind == "combine" and combined.seed is None and combined.dir == run / arm
        assert combined.deps == (f"{arm}/seed1/results", f"{arm}/seed2/results")
        assert f"{arm}/phase1" not in nodes
    # Features do not depend on the seed: the prepare nodes are the seedless graph's.
    seedless = build_graph(load_config(QUICKSTART, {"output_dir": str(tmp_path / "run"),
                                                    "finetune.tasks": ["xnli", "xcopa"],
                                                    "evaluate.tasks": ["xnli", "tatoeba", "xcopa"]}))
    prepares = {n: nodes[n].key for n in nodes if n.startswith("prepare/")}
    assert prepares == {n: seedless.nodes[n].key for n in seedless.nodes if n.startswith("prepare/")}
    # The comparison reads each arm's combination (and every seed's costs); the bench serves seed 1.
    assert {"english/results", "multilingual/results"} <= set(nodes["arms"].deps)
    assert not [d for d in nodes["arms"].deps if d.endswith("/results") and "/seed" in d]
    assert "english/seed2/phase1" in nodes["arms"].deps
    for arm in ("english", "multilingual"):  # each arm serves its own checkpoint: the first seed's
        assert f"{arm}/seed1/phase2/xnli" in nodes[f"bench/{arm}/xnli"].deps
        assert not [d for d in nodes[f"bench/{arm}/xnli"].deps if "/seed2/" in d]
        # udpos, a bench task the seeded config does not fine-tune, is left out (and noted).
        assert f"bench/{arm}/udpos" not in nodes and f"bench/{arm}/xquad" not in nodes
    assert "udpos: not timed for arm english: not fine-tuned (finetune.tasks)" in graph.bench_notes
    # An id without its seed (what `stilts-ds train` targets) names every seed's.
    assert graph.resolve(["english/phase1", "english/results"]) == \
        ["english/seed1/phase1", "english/seed2/phase1", "english/results"]
    with pytest.raises(StiltsError, match="no node 'english/phase9'"):
        graph.resolve(["english/phase9"])


def test_a_seeds_keys_do_not_depend_on_the_other_seeds(tmp_path):
    one = build_graph(_seeded(tmp_path, [1])).nodes
    two = build_graph(_seeded(tmp_path, [1, 2])).nodes
    seed1 = [n for n in one if "/seed1/" in n]
    assert len(seed1) == 2 * 8
    assert {n: one[n].key for n in seed1} == {n: two[n].key for n in seed1}
    # Another seed is another run: every one of its nodes has its own key.
    for n in seed1:
        assert two[n.replace("/seed1/", "/seed2/")].key != two[n].key, n
    # The combination is over other seeds now: it runs again.
    assert one["english/results"].key != two["english/results"].key
    assert one["english/results"].deps == ("english/seed1/results",)


# ----------------------------------------------------------------------------- combining
def _write_seed(run: Path, xnli: dict, xquad: dict) -> dict:
    return write_results(run / "results.json", {
        "xnli": {lang: {"accuracy": v} for lang, v in xnli.items()},
        "xquad": {lang: {"exact_match": em, "f1": f1} for lang, (em, f1) in xquad.items()}})


def test_the_combination_is_the_mean_with_the_sample_std(tmp_path):
    runs = {1: tmp_path / "seeds" / "1", 2: tmp_path / "seeds" / "2", 3: tmp_path / "seeds" / "3"}
    seeds = {1: _write_seed(runs[1], {"en": 80.0, "de": 70.0}, {"en": (60.0, 70.0), "de": (50.0, 60.0)}),
             2: _write_seed(runs[2], {"en": 82.0, "de": 71.0}, {"en": (62.0, 71.0), "de": (49.0, 61.0)}),
             3: _write_seed(runs[3], {"en": 81.0, "de": 75.0}, {"en": (61.0, 75.0), "de": (52.0, 65.0)})}
    out = combine_seeds(runs, tmp_path, extra={"name": "arm", "split": "test"})
    assert load_results(tmp_path / "results.json") == out
    record = out["seeds"]
    assert record["values"] == [1, 2, 3] and record["runs"] == [str(r) for r in runs.values()]
    for task, per_lang in out["tasks"].items():
        for lang, metrics in per_lang.items():
            for metric, value in metrics.items():
                values = [s["tasks"][task][lang][metric] for s in seeds.values()]
                assert math.isclose(value, statistics.fmean(values))
                assert math.isclose(record["std"]["tasks"][task][lang][metric], statistics.stdev(values))
    for task in ("xnli", "xquad"):
        values = [s["task_scores"][task] for s in seeds.values()]
        assert math.isclose(out["task_scores"][task], statistics.fmean(values))
        assert math.isclose(record["std"]["task_scores"][task], statistics.stdev(values))
        assert record["per_seed"]["task_scores"][task] == values
    averages = [s["xtreme_average"] for s in seeds.values()]
    assert math.isclose(out["xtreme_average"], statistics.fmean(averages))
    assert math.isclose(record["std"]["xtreme_average"], statistics.stdev(averages))
    assert record["std"]["xtreme_r_average"] is None  # no XTREME-R task scored: no average to spread
    assert out["name"] == "arm" and out["split"] == "test"
    md = (tmp_path / "results.md").read_text()
    assert "**Mean over 3 seeds** (1, 2, 3)" in md and "| xnli | metric" not in md
    assert f"| xnli | {out['task_scores']['xnli']:.1f} | {record['std']['task_scores']['xnli']:.1f} |" in md

    # One seed: the mean is that seed's, and the spread is undefined (null), never 0.
    single = combine_seeds({2: runs[2]}, tmp_path / "one")
    assert single["task_scores"] == seeds[2]["task_scores"]
    assert single["seeds"]["std"]["xtreme_average"] is None
    assert single["seeds"]["std"]["tasks"]["xnli"]["en"]["accuracy"] is None


def _seed_with_examples(run: Path, stats: dict) -> dict:
    """A seed's run dir as its nodes leave it: phase3/<task>/scores.json and
    examples/<lang>.json per task, and results.json with its own intervals."""
    for task, per_lang in stats.items():
        task_dir = run / "phase3" / task
        (task_dir / "examples").mkdir(parents=True, exist_ok=True)
        (task_dir / "scores.json").write_text(json.dumps({task: {l: s.score() for l, s in per_lang.items()}}))
        for lang, s in per_lang.items():
            (task_dir / "examples" / f"{lang}.json").write_text(json.dumps({"task": task, "lang": lang,
                                                                             **s.to_json()}))
    scores = {t: {l: s.score() for l, s in per_lang.items()} for t, per_lang in stats.items()}
    return write_results(run / "results.json", scores, example_stats=stats)


def _stats(seed: int, p: float = 0.7) -> dict:
    import numpy as np

    from stilts_ds.metrics import ExampleStats

    rng = np.random.default_rng(seed)

    def acc(n, q):
        correct = (rng.random(n) < q).astype(float)
        return ExampleStats("accuracy", [f"x{i}" for i in range(n)], np.column_stack([correct, np.ones(n)]))

    em = (rng.random(300) < p - 0.1).astype(float)
    f1 = np.clip(em + 0.4 * rng.random(300), 0, 1)
    qa = ExampleStats("squad_v1", [f"q{i}" for i in range(300)], np.column_stack([em, f1, np.ones(300)]))
    return {"xnli": {"en": acc(800, p), "de": acc(600, p - 0.1)}, "xquad": {"en": qa}}


def test_the_combination_carries_intervals_of_the_seeds_mean(tmp_path):
    from stilts_ds.studies.tradeoff import arm_scores

    one = _seed_with_examples(tmp_path / "seeds" / "1", _stats(1))
    _seed_with_examples(tmp_path / "seeds" / "2", _stats(1))  # the same predictions again
    # Two identical seeds: the interval of one run, bit for bit; the method says it pools.
    twin = combine_seeds({1: tmp_path / "seeds" / "1", 2: tmp_path / "seeds" / "2"}, tmp_path / "twin")
    bars = twin["uncertainty"]
    assert bars["method"].startswith("percentile bootstrap over test examples, pooled over 2 seeds")
    assert {k: v for k, v in bars.items() if k != "method"} == \
        {k: v for k, v in one["uncertainty"].items() if k != "method"}
    assert load_results(tmp_path / "twin" / "results.json")["uncertainty"] == bars
    # One seed: its own results' intervals (pooled over 1 seed).
    single = combine_seeds({1: tmp_path / "seeds" / "1"}, tmp_path / "single")
    assert single["uncertainty"]["tasks"] == one["uncertainty"]["tasks"]
    assert "pooled over 1 seed " in single["uncertainty"]["method"]

    # Three different seeds: every interval lies around the mean it belongs to, and the
    # average's interval is narrower than any one seed's (test noise averages over seeds).
    runs = {s: tmp_path / "seeds" / str(s) for s in (3, 4, 5)}
    own = {s: _seed_with_examples(runs[s], _stats(s)) for s in runs}
    out = combine_seeds(runs, tmp_path / "arm", extra={"name": "arm"})
    bars = out["uncertainty"]
    assert list(bars) == ["method", "resamples", "seed", "level", "tasks", "task_scores", "xtreme_average"]
    assert "pooled over 3 seeds" in bars["method"]
    for task, per_lang in out["tasks"].items():
        for lang, metrics in per_lang.items():
            assert set(bars["tasks"][task][lang]) == set(metrics)
            for metric, value in metrics.items():
                assert bars["tasks"][task][lang][metric]["low"] <= value <= bars["tasks"][task][lang][metric]["high"]
        assert bars["task_scores"][task]["low"] < out["task_scores"][task] < bars["task_scores"][task]["high"]
    width = bars["xtreme_average"]["high"] - bars["xtreme_average"]["low"]
    assert bars["xtreme_average"]["low"] < out["xtreme_average"] < bars["xtreme_average"]["high"]
    assert all(width < r["uncertainty"]["xtreme_average"]["high"] - r["uncertainty"]["xtreme_average"]["low"]
               for r in own.values())
    # The report reads it as any interval, naming the pooling; results.md shows it.
    scored = arm_scores("arm", tmp_path / "arm" / "results.json")
    assert scored.uncertainty.kind == "interval" and "pooled over 3 seeds" in scored.uncertainty.describe()
    assert scored.xtreme.low == bars["xtreme_average"]["low"]
    # What the bench's scores through each engine are set against: the first seed's own phase 3
    # (its model is the one served), not the seeds' mean.
    assert scored.per_lang["xnli"]["de"] == own[3]["tasks"]["xnli"]["de"]["accuracy"]
    xquad_en = own[3]["tasks"]["xquad"]["en"]
    assert scored.per_lang["xquad"]["en"] == (xquad_en["exact_match"] + xquad_en["f1"]) / 2
    md = (tmp_path / "arm" / "results.md").read_text()
    assert "score [95% CI]" in md and "pooled over 3 seeds" in md and "not of the seeds' spread" in md


def test_a_seed_without_per_example_files_gives_means_without_intervals(tmp_path):
    _seed_with_examples(tmp_path / "1", _stats(1))
    _seed_with_examples(tmp_path / "2", _stats(2))
    (tmp_path / "2" / "phase3" / "xquad" / "examples" / "en.json").unlink()
    said = []
    out = combine_seeds({1: tmp_path / "1", 2: tmp_path / "2"}, tmp_path / "arm", say=said.append)
    assert "uncertainty" not in out and out["seeds"]["std"]["xtreme_average"] is not None
    assert said == [f"no intervals over the seeds: seed 2: {tmp_path / '2' / 'phase3' / 'xquad' / 'examples'} has "
                    "no per-example statistics for xquad en"]
    # Seeds scored on other test examples cannot be paired: no intervals, said so.
    other = _stats(2)
    other["xnli"]["de"] = other["xnli"]["de"].select(other["xnli"]["de"].guids[1:])
    _seed_with_examples(tmp_path / "3", other)
    said.clear()
    out = combine_seeds({1: tmp_path / "1", 3: tmp_path / "3"}, tmp_path / "arm2", say=said.append)
    assert "uncertainty" not in out and out["tasks"]["xnli"]["de"]["accuracy"] is not None
    assert len(said) == 1 and "cannot pool the seeds' intervals: xnli de: runs 1 and 2 were scored on different " \
        "test examples (600 and 599, 1 not in both)" in said[0]


def test_seeds_scored_on_different_languages_are_refused(tmp_path):
    _write_seed(tmp_path / "a", {"en": 80.0, "de": 70.0}, {"en": (60.0, 70.0)})
    _write_seed(tmp_path / "b", {"en": 80.0}, {"en": (60.0, 70.0)})
    with pytest.raises(StiltsError, match="seeds 1 and 2 score xnli de differently"):
        combine_seeds({1: tmp_path / "a", 2: tmp_path / "b"}, tmp_path / "out")
    assert not (tmp_path / "out" / "results.json").exists()


# ----------------------------------------------------------------------------- the arms table
def _row(arm, seeds=None, std=None, **costs):
    row = {"arm": arm, "description": "", "intermediate_tasks": ["mnli"], "data": "English-only",
           "results": f"/r/{arm}/results.json", "task_scores": {"xnli": 71.25}, "averages": {"xtreme_average": 71.25},
           "phase1_samples_per_s": 10.0, "phase1_wall_s": 100.0, "phase2_wall_s": 50.0, **costs}
    if seeds:
        row.update(seeds=seeds, std={"task_scores": {"xnli": std}, "averages": {"xtreme_average": std}})
    return row


def test_the_arms_table_shows_the_spread_and_says_how_costs_combine_seeds():
    assert score_with_spread(71.25, 0.42, 3) == "71.2 ± 0.4 (3 seeds)"
    assert score_with_spread(71.25, None, 1) == "71.2 (1 seed)"
    assert score_with_spread(71.25, None, None) == "71.2"
    md = comparison_markdown([_row("a", [1, 2, 3], 0.42, train_wall_s_all_seeds=450.0),
                              _row("b", [1, 2, 3], 1.5, train_wall_s_all_seeds=420.0)], title="t")
    assert "| **XTREME average** | **71.2 ± 0.4 (3 seeds)** | **71.2 ± 1.5 (3 seeds)** |" in md
    assert "| xnli | 71.2 ± 0.4 (3 seeds) | 71.2 ± 1.5 (3 seeds) |" in md
    assert "phase-1 wall s (mean of seeds)" in md and "phase 1 + 2 wall s (sum of seeds)" in md
    assert "| a | – | mnli | 10.0 | 100.0 | 50.0 | 450.0 |" in md
    assert "averaged over the seeds; the last column sums phases 1 and 2 over every seed" in md
    plain = comparison_markdown([_row("a"), _row("b")], title="t")  # without seeds: as it always was
    assert "±" not in plain and "seeds" not in plain
    assert "| a | – | mnli | 10.0 | 100.0 | 50.0 |" in plain


# ----------------------------------------------------------------------------- plan
def test_plan_counts_every_seeds_jobs(monkeypatch):
    from stilts_ds.studies.plan import predict

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    paper = load_config(PAPER)
    assert paper.seeds == (1, 2, 3)
    seeded = predict(paper, nodes=8, gpus_per_node=8).as_json()
    single = predict(load_config(PAPER, {"seeds": None}), nodes=8, gpus_per_node=8).as_json()

    def kinds(plan):
        out = {}
        for job in plan["jobs"]:
            out[job["kind"]] = out.get(job["kind"], 0) + 1
        return out

    # 13 arms, 12 with a phase 1; 9 phase-2 runs (xcopa's SIQA stage too) and 10 evaluations each;
    # a bench node per arm and XTREME-R task it can time: every arm times English, so the six
    # tasks with a head and an English test set (xnli, udpos, panx, xquad, mlqa, tydiqa); xcopa and
    # tatoeba (no English test set; tatoeba on phase 1's encoder) only on bench.languages_arms'
    # arm, which times every language.
    assert kinds(single) == {"prepare": 35, "phase1": 12, "phase2": 13 * 9, "phase3": 13 * 10, "results": 13,
                             "arms": 1, "bench": 13 * 6 + 2, "report": 1}
    assert kinds(seeded) == {"prepare": 35, "phase1": 3 * 12, "phase2": 3 * 13 * 9, "phase3": 3 * 13 * 10,
                             "results": 3 * 13, "combine": 13, "arms": 1, "bench": 13 * 6 + 2, "report": 1}
    assert math.isclose(seeded["gpu_hours"], 3 * single["gpu_hours"], rel_tol=1e-9)
    # The seeds' chains run side by side: on 64 GPUs the wall clock barely moves.
    assert seeded["scheduled_wall_h"] < 1.1 * single["scheduled_wall_h"]
    assert seeded["gpu_hours"] > 0
    assert json.dumps(seeded)  # plain JSON
