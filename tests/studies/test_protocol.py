"""The training protocol of jiant's XTREME recipe (xtreme_runconfig_writer, runner.py), as the
study builds it: which dev set selects each phase-2 model (and that switching it can never leave
a stale result), and how many optimizer steps a phase trains when MLM text rides along.

    .venv/bin/python -m pytest -q tests/studies/test_protocol.py

The sampling schedule itself (a task per optimizer step, the same rows on any workers x
accumulation split) is pure numpy: tests/data/test_sampler.py.
"""
import dataclasses
import json
from pathlib import Path

import pytest

from stilts_ds.config import ConfigError, FinetuneConfig, TrainConfig, load_config
from stilts_ds.errors import StiltsError
from stilts_ds.studies.graph import build_graph
from stilts_ds.studies.pipeline import Study
from stilts_ds.studies.records import node_states, write_done
from stilts_ds.studies.runners import Runners
from stilts_ds.tasks.formats import FORMATS, format_of
from stilts_ds.tasks.registry import TASKS, get_task

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "configs" / "quickstart.yaml"
FIXTURES = ROOT / "stilts_ds" / "resources" / "fixtures"
# jiant/scripts/benchmarks/xtreme/xtreme_runconfig_writer.py TRAIN_TASK_DICT, in stilts-ds names:
# the task whose train split trains each XTREME task and whose dev split selects it.
TRAIN_TASK = {"xnli": "mnli", "xquad": "squad_v1", "mlqa": "squad_v1"}
TARGETS = ["xnli", "pawsx", "udpos", "panx", "xquad", "mlqa", "tydiqa", "xcopa"]


def _sets(tmp_path, **extra) -> dict:
    sets = {"output_dir": str(tmp_path / "run"), "cluster.num_workers": 1, "arms": {},
            "intermediate.tasks": ["mnli", "qqp"], "finetune.tasks": ["xnli", "pawsx", "mlqa"],
            "evaluate.tasks": ["xnli", "pawsx", "mlqa"], "bench.enabled": False}
    sets.update(extra)
    return sets


# ----------------------------------------------------------------------------- the options
def test_the_paper_recipe_is_the_default_and_the_old_behaviour_an_option(tmp_path):
    cfg = load_config(QUICKSTART, _sets(tmp_path))
    assert cfg.finetune.select_on == "training_task"
    assert cfg.intermediate.sample_per == "step" and cfg.intermediate.epoch_rows == "tasks"
    assert cfg.finetune.recipe("xnli").sample_per == "step"
    old = load_config(QUICKSTART, _sets(tmp_path, **{"finetune.select_on": "target", "intermediate.sample_per":
                                                     "micro_batch", "intermediate.epoch_rows": "all"}))
    assert (old.finetune.select_on, old.intermediate.sample_per, old.intermediate.epoch_rows) == (
        "target", "micro_batch", "all")
    for option, field_cls, name in (("finetune.select_on", FinetuneConfig, "select_on"),
                                    ("intermediate.sample_per", TrainConfig, "sample_per"),
                                    ("intermediate.epoch_rows", TrainConfig, "epoch_rows")):
        with pytest.raises(ConfigError, match=f"{name} must be one of"):
            load_config(QUICKSTART, _sets(tmp_path, **{option: "nonsense"}))
        help_text = next(f for f in dataclasses.fields(field_cls) if f.name == name).metadata["help"]
        assert "jiant" in help_text and "before this option" in help_text, name  # says which is which


def test_per_task_recipes_may_sample_per_micro_batch(tmp_path):
    cfg = load_config(QUICKSTART, _sets(tmp_path, **{"finetune.per_task": {"pawsx": {"sample_per": "micro_batch"}}}))
    assert cfg.finetune.recipe("pawsx").sample_per == "micro_batch" and cfg.finetune.recipe("xnli").sample_per == "step"


# ----------------------------------------------------------------------------- model selection
def test_the_task_layer_names_each_xtreme_tasks_training_task():
    for task in TARGETS:
        assert get_task(task).selected_on == TRAIN_TASK.get(task), task
    for task, train_task in TRAIN_TASK.items():  # a dev set the target's head can score, in English
        target, source = get_task(task), get_task(train_task)
        assert source.format == target.format and source.labels == target.labels, task
        assert "en" in source.splits["validation"], task
    # MNLI's dev set is validation_matched on the hub, SQuAD's its validation split
    assert [p.split for p in get_task("mnli").hub_parts("validation", "en")] == ["validation_matched"]
    assert [(p.path, p.split) for p in get_task("squad_v1").hub_parts("validation", "en")] == [
        ("rajpurkar/squad", "validation")]
    assert all(get_task(t).selected_on is None for t in TASKS if t not in TRAIN_TASK)


@pytest.mark.parametrize("select_on, expected", [
    ("training_task", {"xnli": "mnli", "xquad": "squad_v1", "mlqa": "squad_v1", "pawsx": "pawsx",
                       "tydiqa": "tydiqa", "xcopa": "xcopa", "siqa": "siqa"}),
    ("target", {t: t for t in ("xnli", "xquad", "mlqa", "pawsx", "tydiqa", "xcopa", "siqa")}),
])
def test_finetune_select_on_picks_the_dev_task(select_on, expected):
    finetune = FinetuneConfig(tasks=tuple(TARGETS), select_on=select_on)
    assert {t: finetune.selection_task(t) for t in expected} == expected


def test_switching_select_on_changes_exactly_the_affected_phase2_keys(tmp_path):
    """The worst defect here is a stale result: a model selected on XNLI's dev set reported as
    done after the config asks for MNLI's. The phase-2 node reads the selection dev split like
    its training split, so its key, deps and prepare node follow the option."""
    paper = build_graph(load_config(QUICKSTART, _sets(tmp_path)))
    target = build_graph(load_config(QUICKSTART, _sets(tmp_path, **{"finetune.select_on": "target"})))
    xnli, xnli_t = paper.nodes["phase2/xnli"], target.nodes["phase2/xnli"]
    assert xnli.key != xnli_t.key
    assert xnli.deps == ("phase1", "prepare/xnli", "prepare/mnli") and xnli_t.deps == ("phase1", "prepare/xnli")
    assert [Path(f).name.split(".")[0] for f in xnli.features] == ["train", "validation"]
    assert Path(xnli.features[1]).parent.name == "mnli" and Path(xnli_t.features[1]).parent.name == "xnli"
    assert str(FIXTURES / "mnli" / "validation.jsonl") in xnli.data
    assert str(FIXTURES / "xnli" / "validation.en.jsonl") in xnli_t.data
    assert str(FIXTURES / "xnli" / "validation.en.jsonl") not in xnli.data
    assert xnli.config["selection.task"] == "mnli" and xnli_t.config["selection.task"] == "xnli"
    assert paper.nodes["phase2/mlqa"].key != target.nodes["phase2/mlqa"].key
    assert paper.nodes["phase2/mlqa"].config["selection.task"] == "squad_v1"
    assert "prepare/squad_v1" in paper.nodes["phase2/mlqa"].deps
    # The nodes the option does not touch keep their keys (phase 1 reads mnli's train split only).
    for nid in ("phase1", "phase2/pawsx", "phase3/pawsx"):
        assert paper.nodes[nid].key == target.nodes[nid].key, nid
    # The prepare nodes featurize the dev splits the fine-tunes now read.
    assert paper.nodes["prepare/mnli"].needs == (("train", "en"), ("validation", "en"))
    assert target.nodes["prepare/mnli"].needs == (("train", "en"),)
    assert ("validation", "en") in paper.nodes["prepare/squad_v1"].needs
    assert "prepare/squad_v1" not in target.nodes


def test_a_study_done_under_target_selection_is_stale_under_the_paper_recipe(tmp_path):
    """Record every node as done under `select_on: target`, then ask for the default: the
    fine-tunes that change (and what scored them) are stale, naming why; the others are not."""
    target = build_graph(load_config(QUICKSTART, _sets(tmp_path, **{"finetune.select_on": "target"})))
    for nid in target.order():
        if target.nodes[nid].kind != "prepare":
            target.nodes[nid].dir.mkdir(parents=True, exist_ok=True)
            write_done(target.nodes[nid], target, node_states(target, leases=False), started=0.0, finished=1.0)
    assert all(s.state == "done" for n, s in node_states(target, leases=False).items() if not n.startswith("prepare/"))

    states = node_states(build_graph(load_config(QUICKSTART, _sets(tmp_path))), leases=False)
    assert states["phase2/xnli"].state == "stale"
    reasons = states["phase2/xnli"].reasons
    assert 'config key selection.task changed: "xnli" -> "mnli"' in reasons, reasons
    assert f"data file {FIXTURES / 'mnli' / 'validation.jsonl'} is new" in reasons
    assert f"data file {FIXTURES / 'xnli' / 'validation.en.jsonl'} is no longer read" in reasons
    assert states["phase2/mlqa"].state == "stale" and 'config key selection.task changed: "mlqa" -> "squad_v1"' in \
        states["phase2/mlqa"].reasons
    for nid in ("phase3/xnli", "phase3/mlqa", "results"):
        assert states[nid].state == "stale", nid
    for nid in ("phase1", "phase2/pawsx", "phase3/pawsx"):
        assert (states[nid].state, states[nid].reasons) == ("done", []), nid


@pytest.mark.parametrize("select_on", ["training_task", "target"])
def test_the_phase2_job_selects_on_the_dev_entry_its_node_is_keyed_by(tmp_path, select_on):
    cfg = load_config(QUICKSTART, _sets(tmp_path, **{"finetune.select_on": select_on}))
    graph = build_graph(cfg)
    runners = Runners(graph, say=lambda _: None, in_process=True, progress=False)
    study = Study(cfg, progress=False)
    expected = {"xnli": "mnli", "mlqa": "squad_v1", "pawsx": "pawsx"} if select_on == "training_task" else {
        "xnli": "xnli", "mlqa": "mlqa", "pawsx": "pawsx"}
    for task, dev_task in expected.items():
        node = graph.nodes[f"phase2/{task}"]
        job = runners.job(node, check_encoder=False)
        (inp,) = job.tasks
        assert (inp.name, inp.dev_task, inp.dev_spec_name) == (task, dev_task, dev_task)
        assert inp.dev == str(study.features(dev_task, "validation", "en"))  # the mnli / squad_v1 entry
        assert inp.dev in node.features  # the entry the node's key hashes: no stale selection possible
        assert Path(inp.dev).parent.name == dev_task and Path(inp.dev).name.startswith("validation.en.")
        assert inp.head.format == get_task(task).format  # trained through the target's own head
        assert job.eval_every == 15  # quickstart's finetune.defaults.eval_every


def test_a_dev_set_the_head_cannot_score_is_refused_before_training(tmp_path, monkeypatch):
    cfg = load_config(QUICKSTART, _sets(tmp_path))
    monkeypatch.setattr(FinetuneConfig, "selection_task", lambda self, task: "squad_v1")
    with pytest.raises(StiltsError, match="xnli would select its model on squad_v1's dev set, but squad_v1 is "
                                          "span_qa .* finetune.select_on: target"):
        Study(cfg, progress=False).selection_task("xnli")


# ----------------------------------------------------------------------------- steps
def test_only_mlm_text_does_not_count_toward_epochs():
    assert [name for name in FORMATS if not format_of(name).counts_toward_epochs] == ["mlm"]
    assert not get_task("mlm").counts_toward_epochs and not get_task("mlm@de+fr").counts_toward_epochs
    assert get_task("mnli").counts_toward_epochs and get_task("mnli@de").counts_toward_epochs
    assert format_of(get_task("xnli")).counts_toward_epochs


ROWS = {"mnli": 1000, "qqp": 600, "mlm": 5000}


@pytest.mark.parametrize("changes, total, per_epoch", [
    # MLM a fixed fifth of the draws: ceil(1600 / 32 / 0.8) = 63 steps an epoch, 3 epochs
    ({"weights": {"mlm": 0.2}}, 189, 63),
    # the old count: every row, MLM blocks included: ceil(6600 / 32) = 207 an epoch
    ({"weights": {"mlm": 0.2}, "epoch_rows": "all"}, 621, 207),
    # MLM drawn by size (no fixed share): the tasks get 1600/6600 of the draws, so an epoch of
    # their rows takes as many steps as one of all rows
    ({}, 621, 207),
    ({"weights": {"mlm": 0.2}, "max_steps": 50}, 50, 63),
    ({"weights": {"mlm": 0.2}, "epochs": 2.5}, 158, 63),
])
def test_steps_count_the_tasks_rows_with_mlm_a_share_on_top(changes, total, per_epoch):
    train = TrainConfig(tasks=tuple(ROWS), micro_batch=16, **{"epochs": 3, **changes})
    steps = train.steps(ROWS, world_size=2)
    assert (steps.total, steps.per_epoch, steps.global_batch) == (total, per_epoch, 32)
    if changes.get("weights") and "max_steps" not in changes:  # the passes each task gets, in expectation
        shares = train.sampling_weights(ROWS)
        for task in ("mnli", "qqp"):
            epochs_seen = steps.total * 32 * shares[task] / ROWS[task]
            if train.epoch_rows == "tasks":
                assert train.epochs <= epochs_seen < train.epochs * 1.02, task
            else:  # the defect the default fixes: MLM's blocks bought every task 3.3x its epochs
                assert epochs_seen == pytest.approx(621 * 32 * 0.8 / 1600), task


def test_steps_without_mlm_are_unchanged_and_an_mlm_only_phase_counts_its_text():
    rows = {"mnli": 1000, "qqp": 600}
    for epoch_rows in ("tasks", "all"):
        assert TrainConfig(tasks=tuple(rows), micro_batch=16, epoch_rows=epoch_rows).steps(rows, 2).total == 3 * 50
    assert TrainConfig(tasks=("mlm",), micro_batch=16).steps({"mlm": 5000}, 2).total == 3 * 157


def test_the_study_and_the_planner_count_the_same_steps(tmp_path):
    """Study.build_job and `stilts-ds plan` both ask TrainConfig.steps: the quick start's
    multilingual arm (MLM a fixed fifth) trains 3 x ceil(446 task rows / 16 / 0.8) = 105 steps,
    where counting its 123 MLM blocks too gave 3 x ceil(569 / 16) = 108."""
    from stilts_ds.data import cache
    from stilts_ds.studies.plan import predict

    root = load_config(QUICKSTART, {"output_dir": str(tmp_path / "run")})
    plan = predict(root, nodes=1, gpus_per_node=2)
    seen = {}
    for name, arm in root.arm_configs().items():
        cfg = arm.config
        run = tmp_path / name
        job = Study(cfg, progress=False).build_job("intermediate", cfg.intermediate, run, cfg.model.encoder,
                                                   run / "encoder", with_dev=False)
        rows = {t.name: len(cache.read(Path(t.train))) for t in job.tasks}
        assert f"{job.total_steps} steps x 16 rows" in plan.estimates[f"{name}/phase1"].detail
        assert json.loads((run / "ds_config.json").read_text())["scheduler"]["params"]["total_num_steps"] == \
            job.total_steps
        seen[name] = (job.total_steps, rows)
    assert seen["english"][0] == 3 * -(-sum(seen["english"][1].values()) // 16) == 54
    rows = seen["multilingual"][1]
    assert rows["mlm"] == 123 and sum(rows.values()) - rows["mlm"] == 446
    assert seen["multilingual"][0] == 105
    old = root.arm_configs()["multilingual"].config.intermediate.override(epoch_rows="all")
    assert old.steps(rows, 2).total == 108
