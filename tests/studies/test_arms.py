"""Study arms: config validation, each arm's three phases for real (in-process DeepSpeed),
the side-by-side comparison, and `stilts-ds report --study` over it with the per-arm, per-task bench files its
graph wrote."""
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from stilts_ds.cli import main
from stilts_ds.config import ConfigError, load_config
from stilts_ds.studies.arms import run_arms, select_arms, write_comparison
from stilts_ds.studies.tradeoff import study_inputs

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "configs" / "quickstart.yaml"
PNG = b"\x89PNG\r\n\x1a\n"


def _config(tmp_path, arms, **sets):
    base = {"output_dir": str(tmp_path / "run"), "cluster.num_workers": 1, "finetune.tasks": ["xnli"],
            "evaluate.tasks": ["xnli"], "intermediate.max_steps": 3, "finetune.defaults.max_steps": 3,
            "finetune.defaults.eval_every": 3, "arms": arms}
    base.update(sets)
    return load_config(QUICKSTART, base)


@pytest.mark.parametrize("arms, message", [
    ({"two words": {}}, "arm name 'two words'"),
    ({"a": {"intermediate": {"tasks": ["mnlii"]}}}, "arms.a: intermediate.tasks: unknown task 'mnlii'"),
    ({"a": {"output_dir": "x"}}, "arms.a: ['output_dir'] cannot be set per arm"),
    ({"a": {"intermdiate": {}}}, "arms.a: unknown option 'intermdiate'"),
    ({"a": {"finetune": {"defaults": {"lr": "fast"}}}}, "arms.a: finetune.defaults.lr: expected a number"),
    ({"a": ["mnli"]}, "arms.a: expected a mapping"),
])
def test_bad_arms_are_named_at_load_time(tmp_path, arms, message):
    with pytest.raises(ConfigError, match=None) as e:
        _config(tmp_path, arms)
    assert message in str(e.value)
    assert str(QUICKSTART) in str(e.value)


def test_arms_override_the_base_and_share_the_cache(tmp_path):
    cfg = _config(tmp_path, {"single": {"description": "MNLI only", "intermediate": {"tasks": ["mnli"]}},
                             "multi": {}, "bf16": {"deepspeed": {"precision": "bf16"}}})
    arms = cfg.arm_configs()
    assert list(arms) == ["single", "multi", "bf16"]
    assert arms["single"].config.intermediate.tasks == ("mnli",)
    assert arms["single"].config.intermediate.max_steps == 3  # the rest of the section is kept
    assert arms["multi"].config.intermediate.tasks == cfg.intermediate.tasks
    assert arms["bf16"].config.deepspeed.precision == "bf16" and arms["bf16"].config.deepspeed.base == "zero2"
    assert arms["single"].description == "MNLI only"
    for arm in arms.values():
        assert arm.config.run_dir == cfg.run_dir / "arms" / arm.name
        assert arm.config.cache_dir() == cfg.cache_dir()
        assert arm.config.name == f"quickstart-{arm.name}"
        assert not arm.multilingual
    with pytest.raises(Exception, match="no such arm; the config declares: single, multi, bf16"):
        select_arms(cfg, ["nope"])


@pytest.mark.parametrize("tasks, data", [
    (["mnli", "qqp"], ()),
    (["mnli", "mlm"], ("MLM",)),
    (["mnli", "mlm@de+zh"], ("MLM",)),  # continued MLM on chosen languages is MLM, not a translation
    (["mnli", "mnli@de"], ("translated",)),
    (["mnli@en+de", "mlm"], ("MLM", "translated")),
    (None, ()),  # no phase 1 (the baseline arm)
])
def test_an_arms_multilingual_data_comes_from_the_task_registry(tmp_path, tasks, data):
    arm = {"intermediate": None} if tasks is None else {"intermediate": {"tasks": tasks}}
    (a,) = _config(tmp_path, {"a": arm}).arm_configs().values()
    assert a.multilingual_data == data and a.multilingual == bool(data)


def test_phase_commands_act_on_every_arm_unless_named(tmp_path):
    """`stilts-ds train` on a config with arms trains every arm that has a phase 1 (the
    baseline has none and is passed over); --arm narrows it; naming the baseline is an error."""
    cfg_file = tmp_path / "study.yaml"
    cfg_file.write_text(QUICKSTART.read_text() + "\narms:\n  a: {intermediate: {tasks: [mnli]}}\n"
                        "  b: {intermediate: {tasks: [qqp]}}\n  base: {intermediate: null}\n")
    sets = ["--set", f"output_dir={tmp_path}/r", "--set", "cluster.num_workers=1",
            "--set", "intermediate.max_steps=2", "--set", "finetune.tasks=[xnli]", "--set", "evaluate.tasks=[xnli]"]
    out = CliRunner().invoke(main, ["train", "--config", str(cfg_file), "--in-process", *sets])
    assert out.exit_code == 0, out.output
    for arm in ("a", "b"):
        assert f"{arm}: encoder: {tmp_path}/r/arms/{arm}/phase1/encoder" in out.output
        assert (tmp_path / "r" / "arms" / arm / "phase1" / "DONE.json").is_file()
    assert not (tmp_path / "r" / "arms" / "base" / "phase1").exists()
    out = CliRunner().invoke(main, ["train", "--config", str(cfg_file), "--in-process", "--arm", "base", *sets])
    assert out.exit_code == 2 and "arm base has no intermediate section" in out.output
    out = CliRunner().invoke(main, ["pipeline", "--config", str(cfg_file), "--arm", "c"])
    assert out.exit_code == 2 and "--arm 'c': no such arm" in out.output


def test_two_arms_run_compare_and_report(tmp_path):
    cfg = _config(tmp_path, {"mnli-only": {"description": "MNLI alone", "intermediate": {"tasks": ["mnli"]}},
                             "multi": {"intermediate": {"tasks": ["mnli", "qqp"]}}})
    results = run_arms(cfg, in_process=True, progress=False)
    assert set(results) == {"mnli-only", "multi"}
    for arm in ("mnli-only", "multi"):
        arm_dir = cfg.run_dir / "arms" / arm
        assert (arm_dir / "results.json").is_file() and (arm_dir / "phase1" / "encoder" / "config.json").is_file()
        done = json.loads((arm_dir / "phase1" / "DONE.json").read_text())
        assert done["wall_seconds"] > 0 and done["train_samples"] == 3 * 8 and done["train_samples_per_s"] > 0
    rows = json.loads((cfg.run_dir / "arms.json").read_text())["arms"]
    assert [r["arm"] for r in rows] == ["mnli-only", "multi"]
    assert rows[0]["intermediate_tasks"] == ["mnli"] and rows[0]["data"] == "English-only"
    assert rows[0]["averages"]["xtreme_average"] == results["mnli-only"]["xtreme_average"]
    md = (cfg.run_dir / "arms.md").read_text()
    assert "| | mnli-only | multi |" in md and "| xnli |" in md and "MNLI alone" in md
    assert (cfg.run_dir / "arms.png").read_bytes().startswith(PNG)

    # Rerunning skips every stage and rewrites the same comparison.
    again = run_arms(cfg, ["multi"], in_process=True, progress=False)
    assert again["multi"]["xtreme_average"] == results["multi"]["xtreme_average"]
    assert write_comparison(cfg)["md"].read_text() == md

    # Serving cost per arm from the study's own bench nodes (bench/<arm>/<task>: each arm's own
    # checkpoint, rows tagged with the arm), joined in the report. Of the quick start's bench
    # tasks only xnli is fine-tuned here: the others are left out.
    found, benches, info = study_inputs(cfg.run_dir)
    assert set(found) == {"mnli-only", "multi"}
    assert benches == [cfg.run_dir / "bench" / arm / "xnli" / "bench.jsonl" for arm in ("mnli-only", "multi")]
    rows = [json.loads(line) for path in benches for line in path.read_text().splitlines() if line.strip()]
    assert {r["arm"] for r in rows} == {"mnli-only", "multi"}
    out = CliRunner().invoke(main, ["report", "--study", str(cfg.run_dir), "--output", str(tmp_path / "report")])
    assert out.exit_code == 0, out.output
    table = (tmp_path / "report" / "tradeoff.md").read_text()
    assert table.count("| mnli-only | English-only |") == 1 and table.count("| multi | English-only |") == 1
    assert "Arms side by side" in table
    for png in ("pareto.png", "arms.png"):
        data = (tmp_path / "report" / png).read_bytes()
        assert data.startswith(PNG) and len(data) > 5000


def test_report_without_a_study_says_what_to_give(tmp_path):
    out = CliRunner().invoke(main, ["report", "--output", str(tmp_path)])
    assert out.exit_code == 2 and "--study DIR" in out.output
    out = CliRunner().invoke(main, ["report", "--study", str(tmp_path), "--output", str(tmp_path / "r")])
    assert out.exit_code == 2 and "holds neither arms.json nor results.json" in out.output
