"""A real two-seed study on the session's two-node Ray cluster (tests/conftest.py): one arm,
one intermediate task, one fine-tune task, a few steps. Both seeds' chains run, side by side;
the seeds train different weights; the arm's results.json is their mean with the sample std;
the comparison shows the spread; `stilts-ds status` reports every node done; and the keys
behave: fewer seeds keeps seed 1's nodes done (only the combination is stale), one more seed
would run that seed's nodes and the combination only.

    .venv/bin/python -m pytest -q tests/studies/test_seeds_ray.py     # about 2-4 minutes on 2 cores
"""
import json
import math
import statistics
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from stilts_ds.cli import main
from stilts_ds.config import load_config
from stilts_ds.studies.graph import build_graph
from stilts_ds.studies.records import node_states
from stilts_ds.studies.scheduler import SCHEDULE, Scheduler

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "configs" / "quickstart.yaml"
PER_SEED = ["phase1", "phase2/xnli", "phase3/xnli", "phase3/tatoeba", "results"]


def _sets(tmp_path, seeds) -> dict:
    # arms first: the quick start's own arms go before the overrides below could miss them.
    return {"arms": {"a": {"description": "MNLI alone"}}, "output_dir": str(tmp_path / "run"),
            "cluster.num_workers": 1, "cluster.cpus_per_worker": 1, "cluster.fuse_stages": "never",
            "intermediate.tasks": ["mnli"], "intermediate.max_steps": 3, "finetune.tasks": ["xnli"],
            "finetune.defaults.max_steps": 3, "finetune.defaults.eval_every": 3,
            "evaluate.tasks": ["xnli", "tatoeba"], "bench.enabled": False, "seeds": seeds}


def _weights(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


@pytest.mark.ray_cluster
def test_two_seeds_run_side_by_side_and_the_arm_reports_their_mean_and_spread(ray_cluster, tmp_path, ray_timings):
    sets = _sets(tmp_path, [1, 2])
    graph = build_graph(load_config(QUICKSTART, sets))
    lines = []
    t0 = time.time()
    with ray_cluster.connected():
        summary = Scheduler(graph, say=lines.append).run()
    ray_timings["seeds: 1 arm x 2 seeds, 6 fits on 2 slots"] = time.time() - t0
    assert not summary.failed, "\n".join(lines)
    ids = [f"a/seed{s}/{rel}" for s in (1, 2) for rel in PER_SEED] + ["a/results", "arms", "report"]
    assert set(ids) <= set(summary.ran), summary.ran
    arm = tmp_path / "run" / "arms" / "a"

    # Side by side: the two seeds' phase 1 overlap in time, each on a node of its own.
    rows = [json.loads(line) for line in (tmp_path / "run" / SCHEDULE).read_text().splitlines()]
    fits = {r["id"]: r for r in rows if r["workers"]}
    one, two = fits["a/seed1/phase1"], fits["a/seed2/phase1"]
    assert min(one["end"], two["end"]) - max(one["start"], two["start"]) > 0, (one, two)

    # Different seeds train different weights (head init, data order, dropout).
    for rel in ("phase1/encoder", "phase2/xnli/model"):
        w1, w2 = (_weights(arm / "seeds" / s / rel / "model.safetensors") for s in ("1", "2"))
        assert w1.keys() == w2.keys()
        assert any(not (w1[k] == w2[k]).all() for k in w1), rel
    for s in (1, 2):
        done = json.loads((arm / "seeds" / str(s) / "phase1" / "DONE.json").read_text())
        assert done["config"]["intermediate.seed"] == s and done["config"]["seed"] == s

    # The arm's results.json: every score the mean of the seeds', with their sample std.
    seeds = [json.loads((arm / "seeds" / s / "results.json").read_text()) for s in ("1", "2")]
    combined = json.loads((arm / "results.json").read_text())
    record = combined["seeds"]
    assert record["values"] == [1, 2] and record["runs"] == [str(arm / "seeds" / "1"), str(arm / "seeds" / "2")]
    for task, per_lang in combined["tasks"].items():
        for lang, metrics in per_lang.items():
            for metric, value in metrics.items():
                values = [s["tasks"][task][lang][metric] for s in seeds]
                assert math.isclose(value, statistics.fmean(values), abs_tol=1e-9)
                assert math.isclose(record["std"]["tasks"][task][lang][metric], statistics.stdev(values),
                                    abs_tol=1e-9)
    for task in ("xnli", "tatoeba"):
        values = [s["task_scores"][task] for s in seeds]
        assert math.isclose(combined["task_scores"][task], statistics.fmean(values), abs_tol=1e-9)
        assert math.isclose(record["std"]["task_scores"][task], statistics.stdev(values), abs_tol=1e-9)
    values = [s["xtreme_average"] for s in seeds]
    assert math.isclose(combined["xtreme_average"], statistics.fmean(values), abs_tol=1e-9)
    assert math.isclose(record["std"]["xtreme_average"], statistics.stdev(values), abs_tol=1e-9)
    assert "**Mean over 2 seeds** (1, 2)" in (arm / "results.md").read_text()
    # 95% intervals of the mean, from both seeds' per-example statistics (one draw for both).
    assert "pooled over 2 seeds" in combined["uncertainty"]["method"]
    for task in ("xnli", "tatoeba"):
        bars = combined["uncertainty"]["task_scores"][task]
        assert bars["low"] <= combined["task_scores"][task] <= bars["high"]

    # The comparison reads the combination and shows the spread; costs over both seeds.
    (row,) = json.loads((tmp_path / "run" / "arms.json").read_text())["arms"]
    assert row["seeds"] == [1, 2] and row["averages"]["xtreme_average"] == combined["xtreme_average"]
    assert row["train_wall_s_all_seeds"] > row["phase1_wall_s"] > 0
    md = (tmp_path / "run" / "arms.md").read_text()
    assert f"± {record['std']['xtreme_average']:.1f} (2 seeds)" in md and "sum of seeds" in md

    # `stilts-ds status` lists every seed's node, all done.
    cli = [a for k, v in sets.items() for a in ("--set", f"{k}={json.dumps(v)}")]
    out = CliRunner().invoke(main, ["status", "--config", str(QUICKSTART), *cli], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    n = sum(1 for line in out.output.splitlines() if line.startswith(("| a/", "| arms")))
    assert n == len(ids) - 1 and "| a/seed2/phase3/tatoeba | done |" in out.output, out.output
    assert f"nodes ({len(graph.nodes)} done)" in out.output, out.output

    # Keys: seed 1's nodes do not depend on seed 2. With seeds [1] they are done as they are,
    # and only the combination (now over other seeds) and what reads it are stale.
    states = node_states(build_graph(load_config(QUICKSTART, _sets(tmp_path, [1]))))
    assert all(states[f"a/seed1/{rel}"].state == "done" for rel in PER_SEED)
    assert states["a/results"].state == "stale"
    assert states["a/results"].reasons[0] == "config key seeds changed: [1, 2] -> [1]"
    # A third seed: the next run trains seed 3 and combines again, nothing else.
    graph3 = build_graph(load_config(QUICKSTART, _sets(tmp_path, [1, 2, 3])))
    todo, _ = Scheduler(graph3, say=None).plan()
    assert {n for n in todo if not n.startswith("prepare/")} == \
        {*(f"a/seed3/{rel}" for rel in PER_SEED), "a/results", "arms", "report"}
