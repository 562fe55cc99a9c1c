"""`stilts-ds plan` as a user runs it: the paper's study on 8 x 8 GPUs predicted from its config
alone (no data, no tokenizer, no network), the quick start from its local files, and the
errors that say what to add."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from stilts_ds.cli import main

ROOT = Path(__file__).resolve().parents[2]
PAPER = ROOT / "configs" / "paper.yaml"
QUICKSTART = ROOT / "configs" / "quickstart.yaml"


def test_paper_plan_on_eight_nodes_runs_offline_and_beats_running_one_job_at_a_time(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    # The bench of XNLI alone: the serving benchmark of every XTREME-R task runs alone on the
    # cluster for tens of hours (tests/studies/test_seeds.py counts its nodes), and this checks
    # how the scheduler packs the training around it.
    out = subprocess.run([sys.executable, "-m", "stilts_ds.cli", "plan", "--config", str(PAPER), "--nodes", "8",
                          "--gpus-per-node", "8", "--json", "--output", str(tmp_path / "plan"),
                          "--set", "bench.tasks=[xnli]"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    plan = json.loads(out.stdout)
    for key in ("gpu_hours", "sequential_wall_h", "scheduled_wall_h", "lower_bound_wall_h", "critical_path"):
        assert key in plan, key
    assert plan["gpu_hours"] > 0 and plan["nodes"] == 8 and plan["gpus_per_node"] == 8
    # 13 arms x 3 seeds: phase 1 for each but the baseline, nine phase-2 runs (xcopa's SIQA stage
    # too), ten phase-3 evaluations, results; one combination of the seeds per arm; then the
    # comparison, one bench node per arm (each serves its own checkpoint) and the report.
    kinds = {}
    for job in plan["jobs"]:
        kinds[job["kind"]] = kinds.get(job["kind"], 0) + 1
    assert kinds["phase1"] == 3 * 12 and kinds["phase2"] == 3 * 13 * 9 and kinds["phase3"] == 3 * 13 * 10
    assert kinds["results"] == 3 * 13 and kinds["combine"] == 13
    assert kinds["arms"] == 1 and kinds["bench"] == 13 and kinds["report"] == 1
    assert plan["lower_bound_wall_h"] <= plan["scheduled_wall_h"] <= 1.3 * plan["lower_bound_wall_h"]
    assert plan["scheduled_wall_h"] < 0.5 * plan["sequential_wall_h"]
    assert all("estimate" in s for s in plan["throughput_sources"])  # every number says where it is from
    jobs = {j["id"]: j for j in plan["jobs"]}
    for job in plan["jobs"]:  # the simulated schedule respects every dependency
        for dep in job["deps"]:
            assert job["start"] >= jobs[dep]["end"] - 1e-6, (job["id"], dep)
    assert (tmp_path / "plan" / "plan.png").read_bytes()[:4] == b"\x89PNG"
    assert "Critical path" in (tmp_path / "plan" / "plan.md").read_text()


def test_quickstart_plan_counts_the_local_rows(tmp_path):
    out = CliRunner().invoke(main, ["plan", "--config", str(QUICKSTART), "--nodes", "1", "--gpus-per-node", "2",
                                    "--json", "--set", f"output_dir={tmp_path}/run"], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    plan = json.loads(out.output)
    jobs = {j["id"]: j for j in plan["jobs"]}
    assert jobs["english/phase1"]["rows_source"] == "local data files"
    assert "54 steps" in jobs["english/phase1"]["detail"]  # 3 epochs of the nine fixtures' rows at 16 per step
    # Two CPU slots and two workers per job: one job at a time, every fit of an arm in one worker group.
    assert plan["scheduled_wall_h"] >= plan["lower_bound_wall_h"]


@pytest.mark.parametrize("sets, message", [
    (["--set", "model.encoder=FacebookAI/xlm-roberta-base"], "plan.throughput has no entry for model"),
    (["--set", "plan.throughput=[{model: tiny, length: 64}]"], "plan.throughput[0]: missing ['samples_per_s', 'source']"),
])
def test_plan_errors_say_what_to_add(tmp_path, sets, message):
    out = CliRunner().invoke(main, ["plan", "--config", str(QUICKSTART), "--nodes", "1", "--gpus-per-node", "2",
                                    "--set", f"output_dir={tmp_path}/run", *sets])
    assert out.exit_code == 2 and message in out.output, out.output
