"""Training for real: DeepSpeed engines in-process and under Ray Train on a two-node cluster.

In-process runs (world size 1) check the loop itself: loss falls on a learnable fixture,
TensorBoard event files hold the expected tags, stages are idempotent, bad input is caught
before any worker starts. The Ray tests put one worker on each of two raylets (ZeRO-2 and
ZeRO-3 over all nine intermediate tasks) and kill a worker mid-run to check that Ray
restarts it from the last checkpoint and the run still ends at the planned step.
"""
import json
from pathlib import Path

import pytest

from stilts_ds.config import load_config
from stilts_ds.engine.tb_logger import read_scalars
from stilts_ds.errors import StiltsError
from stilts_ds.studies.pipeline import Study

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "configs" / "quickstart.yaml"
INTERMEDIATE = ["anli_plus", "mnli", "qqp", "squad_v1", "squad_v2", "hellaswag", "cosmosqa", "commonsenseqa", "ccg"]


def _config(tmp_path, **sets):
    base = {"output_dir": str(tmp_path / "run"), "cluster.num_workers": 1, "finetune.tasks": ["xnli"],
            "evaluate.tasks": ["xnli"]}
    base.update(sets)
    return load_config(QUICKSTART, base)


def _losses(log_dir: Path, tag: str) -> list[float]:
    by_step = {}
    for line in (log_dir / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row["tag"] == tag:
            by_step[row["step"]] = row["value"]  # a resumed run re-logs steps: keep the last
    return [by_step[s] for s in sorted(by_step)]


def test_finetune_loss_falls_and_tensorboard_has_the_tags(tmp_path):
    cfg = _config(tmp_path, **{"finetune.defaults.epochs": 30, "finetune.defaults.log_every": 4,
                               "intermediate.max_steps": 4})
    study = Study(cfg, in_process=True, progress=False)
    model_dir = study.finetune("xnli")
    assert (model_dir / "heads.pt").is_file() and (model_dir / "config.json").is_file()
    stage = cfg.run_dir / "phase2" / "xnli"
    losses = _losses(stage / "tensorboard", "train/xnli/loss")
    assert len(losses) >= 10
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < 0.7 * first, losses  # the fixture's labels follow surface patterns
    tags = read_scalars(stage / "tensorboard")
    # xnli trains on MNLI and selects on MNLI's dev set (finetune.select_on: training_task): the
    # dev scores are named by the dev set they are, through xnli's head.
    for tag in ("train/xnli/loss", "train/lr", "train/samples_per_s", "train/tokens_per_s", "eval/mnli/en/accuracy"):
        assert tag in tags, sorted(tags)
    assert not any(t.startswith("eval/xnli/") for t in tags), sorted(tags)
    summary = json.loads((stage / "train_summary.json").read_text())
    assert summary["best_dev"]["score"] is not None
    assert summary["selected_on"] == {"xnli": "mnli"} and summary["sample_per"] == "step"
    best = max(v for _, v in tags["eval/mnli/en/accuracy"])
    assert summary["best_dev"]["score"] == pytest.approx(best)  # the model kept is the best on MNLI dev
    assert json.loads((stage / "ds_config.json").read_text())["train_micro_batch_size_per_gpu"] == 8


def test_pipeline_in_process_is_idempotent(tmp_path, capsys):
    cfg = _config(tmp_path, **{"intermediate.max_steps": 6, "finetune.defaults.max_steps": 4,
                               "evaluate.tasks": ["xnli", "tatoeba", "bucc", "lareqa", "mewslix"]})
    results = Study(cfg, in_process=True, progress=False).run()
    printed = capsys.readouterr().out  # rank 0's progress lines (Ray forwards them to the console)
    assert "[intermediate phase1] step 6/6 (100%)" in printed and "[finetune xnli] step 4/4 (100%)" in printed
    assert "[phase 3] xnli (" in printed and "[phase 3] tatoeba (" in printed
    assert set(results["tasks"]) == {"xnli", "tatoeba", "bucc", "lareqa", "mewslix"}
    assert set(results["tasks"]["xnli"]) == {"en", "ar", "hi", "ru", "zh"}
    # The shared-pool tasks go through eval_worker's memo path, one score per language.
    assert set(results["tasks"]["lareqa"]) == {"en", "de", "ru", "zh"}
    assert all(0 <= s["map@20"] <= 100 for s in results["tasks"]["mewslix"].values())
    assert 0 <= results["xtreme_average"] <= 100
    assert (cfg.run_dir / "results.md").read_text().count("| xnli |") == 1
    stamp = (cfg.run_dir / "phase1" / "encoder" / "model.safetensors").stat().st_mtime_ns
    again = Study(cfg, in_process=True, progress=True).run()  # every node done: nothing runs
    assert again["xtreme_average"] == results["xtreme_average"]
    assert (cfg.run_dir / "phase1" / "encoder" / "model.safetensors").stat().st_mtime_ns == stamp
    assert "nothing to do: every node is done" in capsys.readouterr().err


def test_staged_recipe_carries_the_siqa_model_and_head_into_xcopa(tmp_path, capsys):

    import torch
    from safetensors.torch import load_file

    # lr 1e-30 in the COPA stage (lr must be positive): no fp32 weight moves, so its exported
    # model must be exactly what the SIQA stage handed on.
    sets = {"intermediate.max_steps": 2, "finetune.tasks": ["xcopa"], "evaluate.tasks": ["xcopa"],
            "finetune.defaults.max_steps": 3, "finetune.per_task": {"xcopa": {"lr": 1e-30}}}
    cfg = _config(tmp_path, **sets)
    model_dir = Study(cfg, in_process=True, progress=True).finetune("xcopa")
    root = cfg.run_dir / "phase2" / "xcopa"
    siqa_dir = root / "stages" / "siqa" / "model"
    assert model_dir == root / "model" and (root / "stages" / "siqa" / "DONE.json").is_file()
    siqa_heads, xcopa_heads = torch.load(siqa_dir / "heads.pt"), torch.load(model_dir / "heads.pt")
    assert {k.replace("siqa.", "xcopa.", 1) for k in siqa_heads} == set(xcopa_heads)
    for key, value in siqa_heads.items():
        assert torch.equal(xcopa_heads[key.replace("siqa.", "xcopa.", 1)], value), key
    siqa_enc, xcopa_enc = load_file(siqa_dir / "model.safetensors"), load_file(model_dir / "model.safetensors")
    assert siqa_enc.keys() == xcopa_enc.keys() and all(torch.equal(siqa_enc[k], xcopa_enc[k]) for k in siqa_enc)
    encoder = load_file(cfg.run_dir / "phase1" / "encoder" / "model.safetensors")
    assert not all(torch.equal(encoder[k], siqa_enc[k]) for k in encoder)  # the SIQA stage trained
    summary = json.loads((root / "train_summary.json").read_text())
    assert summary["init_heads"] == {"from": str(siqa_dir.resolve()), "heads": {"xcopa": "siqa"}}
    done = json.loads((root / "DONE.json").read_text())
    assert [s["task"] for s in done["stages"]] == ["siqa"]
    assert done["recipe_wall_seconds"] > done["wall_seconds"] > 0
    err = capsys.readouterr().err
    assert err.index("start phase2/xcopa/stages/siqa") < err.index("done  phase2/xcopa/stages/siqa") \
        < err.index("start phase2/xcopa on")

    stamp = (model_dir / "heads.pt").stat().st_mtime_ns
    Study(cfg, in_process=True, progress=True).finetune("xcopa")  # both stages done: nothing runs
    assert (model_dir / "heads.pt").stat().st_mtime_ns == stamp
    assert "nothing to do" in capsys.readouterr().err

    # A SIQA stage with another recipe makes the COPA stage built on it stale, and only those two run.
    changed = _config(tmp_path, **{**sets, "finetune.per_task": {"xcopa": {"lr": 1e-30}, "siqa": {"max_steps": 2}}})
    rows = {r["node"]: r for r in Study(changed, progress=False).status()}
    assert rows["phase2/xcopa/stages/siqa"]["reasons"] == ["config key finetune[siqa].max_steps changed: 3 -> 2"]
    assert rows["phase2/xcopa"]["reasons"] == ["upstream phase 2 xcopa (stage siqa): config key "
                                               "finetune[siqa].max_steps changed: 3 -> 2"]
    assert rows["phase1"]["state"] == "done"
    Study(changed, in_process=True, progress=False).finetune("xcopa")
    assert json.loads((root / "stages" / "siqa" / "train_summary.json").read_text())["steps"] == 2
    assert (model_dir / "heads.pt").stat().st_mtime_ns != stamp


# Accumulation 2 with a task drawn per optimizer step (the default) and per micro-batch: the
# schedule's state is checkpointed between optimizer steps and continues the same sequence.
@pytest.mark.parametrize("batch", [{}, {"intermediate.micro_batch": 4, "intermediate.grad_accum": 2},
                                   {"intermediate.micro_batch": 4, "intermediate.grad_accum": 2,
                                    "intermediate.sample_per": "micro_batch"}],
                         ids=["accum1", "accum2-per-step", "accum2-per-micro-batch"])
def test_resumed_run_trains_exactly_as_the_uninterrupted_one(tmp_path, batch):
    """Phase 1 interrupted at step 5 resumes from its step-3 checkpoint and logs, step for
    step, the losses of a run never interrupted: data order, optimizer state and the dropout
    generators (engine.rng_state) all come back."""
    from stilts_ds.engine import faults

    sets = {"intermediate.max_steps": 8, "intermediate.checkpoint_every": 3, "intermediate.log_every": 1, **batch}
    whole = _config(tmp_path / "whole", **sets)
    Study(whole, in_process=True, progress=False).intermediate()
    cut = _config(tmp_path / "cut", **sets)
    faults.plant(cut.run_dir / "phase1", step=5, marker=tmp_path / "fault", mode="raise")
    with pytest.raises(StiltsError, match="phase1: InjectedFault: injected fault at step 5"):
        Study(cut, in_process=True, progress=False).intermediate()
    Study(cut, in_process=True, progress=False).intermediate()  # the marker stops a second fault
    stage = cut.run_dir / "phase1"
    assert json.loads((stage / "train_summary.json").read_text())["resumed_from"] == 3
    # In-process checkpoints: <run_dir>/checkpoints/step<N>, the newest two kept (3 gave way to 8).
    assert sorted(p.name for p in (stage / "checkpoints").iterdir()) == ["step6", "step8"]
    assert (stage / "checkpoints" / "step8" / "rng_state" / "rank0.pt").is_file()
    tags = [t for t in read_scalars(stage / "tensorboard") if t.startswith("train/") and t.endswith("/loss")]
    assert len(tags) >= 5
    for tag in tags:  # each task's losses at the steps it was sampled, the resumed run's last
        assert _losses(stage / "tensorboard", tag) == _losses(whole.run_dir / "phase1" / "tensorboard", tag), tag


def test_status_and_phase3_after_a_forced_fine_tune(tmp_path):
    """`stilts-ds status` reports each stage without running anything, and phase 3 does not
    keep the scores of a model that a forced fine-tune has replaced (same paths, same config)."""
    from click.testing import CliRunner

    from stilts_ds.cli import main

    sets = {"intermediate.max_steps": 2, "finetune.defaults.max_steps": 2, "evaluate.tasks": ["xnli"]}
    cfg = _config(tmp_path, **sets)
    nodes = ["phase1", "phase2/xnli", "phase3/xnli", "results"]
    states = lambda c: [(r["node"], r["state"]) for r in Study(c, progress=False).status()  # noqa: E731
                        if r["kind"] != "prepare"]
    assert states(cfg) == [(n, "pending") for n in nodes]
    Study(cfg, in_process=True, progress=False).run()
    assert states(cfg) == [(n, "done") for n in nodes]
    scored = (cfg.run_dir / "results.json").stat().st_mtime_ns

    Study(cfg, in_process=True, progress=False, force=True).finetune("xnli")
    assert states(cfg) == [("phase1", "done"), ("phase2/xnli", "done"), ("phase3/xnli", "stale"), ("results", "stale")]
    Study(cfg, in_process=True, progress=False).evaluate()  # not forced: it sees the new model
    assert (cfg.run_dir / "results.json").stat().st_mtime_ns != scored
    assert states(cfg)[-1] == ("results", "done")

    changed = _config(tmp_path, **sets, **{"finetune.defaults.lr": 0.002})
    assert states(changed) == [("phase1", "done"), ("phase2/xnli", "stale"), ("phase3/xnli", "stale"),
                               ("results", "stale")]
    args = ["status", "--config", str(QUICKSTART), "--set", f"output_dir={cfg.run_dir}", "--set", "cluster.num_workers=1",
            "--set", "finetune.tasks=[xnli]", "--set", "evaluate.tasks=[xnli]", "--set", "intermediate.max_steps=2",
            "--set", "finetune.defaults.max_steps=2", "--set", "arms={}"]  # the base study, as _config loads it
    out = CliRunner().invoke(main, args, catch_exceptions=False)
    assert out.exit_code == 0 and "| phase2/xnli | done |" in out.output, out.output


def test_bad_input_is_caught_before_workers_start(tmp_path):
    # A contradictory batch is refused when the config loads (before any stage), naming the phase.
    with pytest.raises(StiltsError, match="intermediate: contradictory batch settings"):
        _config(tmp_path, **{"intermediate.micro_batch": 8, "intermediate.grad_accum": 2,
                             "intermediate.global_batch": 100})
    assert not (tmp_path / "run" / "phase1").exists()

    cfg = _config(tmp_path, **{"deepspeed.base": str(tmp_path / "offload.json")})
    (tmp_path / "offload.json").write_text(json.dumps(
        {"zero_optimization": {"stage": 0, "offload_optimizer": {"device": "cpu"}}}))
    with pytest.raises(StiltsError, match="offload"):
        Study(cfg, in_process=True, progress=False).intermediate()


def test_checkpoint_of_another_architecture_is_refused(tmp_path):
    import transformers

    other = tmp_path / "bert"
    transformers.BertModel(transformers.BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1,
                                                   num_attention_heads=2, intermediate_size=37)).save_pretrained(other)
    cfg = _config(tmp_path, **{"intermediate.max_steps": 2})
    Study(cfg, in_process=True, progress=False).intermediate()
    # Phase 1's export replaced by another architecture (a copied-in directory, say): phase 2 refuses it.
    import shutil

    shutil.rmtree(cfg.run_dir / "phase1" / "encoder")
    shutil.copytree(other, cfg.run_dir / "phase1" / "encoder")
    with pytest.raises(StiltsError, match="bert"):
        Study(cfg, in_process=True, progress=False).finetune("xnli")


# ---------------------------------------------------------------------------- Ray Train


def _phase1_on_ray(ray_cluster, tmp_path, base: str, fault=None, **sets):
    from stilts_ds.engine import faults

    cfg = load_config(QUICKSTART, {
        "output_dir": str(tmp_path / base), "cluster.num_workers": 2, "cluster.placement_strategy": "STRICT_SPREAD",
        "deepspeed.base": base, "intermediate.max_steps": 12, "intermediate.checkpoint_every": 4,
        "intermediate.log_every": 2, **sets})
    if fault:
        faults.plant(cfg.run_dir / "phase1", **fault)
    with ray_cluster.connected():
        Study(cfg, progress=False).intermediate()
    return cfg.run_dir / "phase1"


@pytest.mark.parametrize("base", ["zero2", "zero3"])
def test_two_node_zero_training_over_all_intermediate_tasks(ray_cluster, tmp_path, base):
    stage = _phase1_on_ray(ray_cluster, tmp_path, base)
    summary = json.loads((stage / "train_summary.json").read_text())
    assert summary["steps"] == 12 and summary["world_size"] == 2
    nodes = {w["node_id"] for w in summary["workers"]}
    assert len(nodes) == 2 and {w["node_rank"] for w in summary["workers"]} == {0, 1}  # one worker per node
    assert (stage / "encoder" / "model.safetensors").is_file()
    assert json.loads((stage / "ds_config.json").read_text())["zero_optimization"]["stage"] == int(base[-1])
    logged = {t.split("/")[1] for t in read_scalars(stage / "tensorboard") if t.endswith("/loss")}
    assert logged <= set(INTERMEDIATE) and len(logged) >= 6


def _tasks_by_step(stage: Path) -> list[list[str]]:
    """The tasks whose loss was logged at each step (log_every 1: the tasks the step trained)."""
    by_step: dict = {}
    for line in (stage / "tensorboard" / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row["tag"].startswith("train/") and row["tag"].endswith("/loss"):
            by_step.setdefault(row["step"], []).append(row["tag"].split("/")[1])
    return [sorted(by_step[s]) for s in sorted(by_step)]


def test_one_worker_accumulating_two_trains_each_step_on_the_task_two_workers_do(ray_cluster, tmp_path):
    """The real loop: global batch 8 as 1 in-process worker x micro 4 x accumulation 2, and as 2
    Ray workers x micro 4 x accumulation 1. With a task drawn per optimizer step (the default)
    both train the same task at every step, one task per step; drawn per micro-batch, the
    one-worker run mixes tasks within steps and the sequences part."""
    sets = {"intermediate.micro_batch": 4, "intermediate.global_batch": 8, "intermediate.log_every": 1}
    two = _tasks_by_step(_phase1_on_ray(ray_cluster, tmp_path, "zero2", **sets))
    one = _config(tmp_path / "one", **{**sets, "intermediate.max_steps": 12})
    assert one.intermediate.batch(1) == (8, 4, 2)
    Study(one, in_process=True, progress=False).intermediate()
    assert _tasks_by_step(one.run_dir / "phase1") == two
    assert len(two) == 12 and all(len(tasks) == 1 for tasks in two) and len({t[0] for t in two}) >= 4

    mixed = _config(tmp_path / "mixed", **{**sets, "intermediate.max_steps": 12,
                                           "intermediate.sample_per": "micro_batch"})
    Study(mixed, in_process=True, progress=False).intermediate()
    per_micro = _tasks_by_step(mixed.run_dir / "phase1")
    assert any(len(tasks) == 2 for tasks in per_micro) and per_micro != two


def test_worker_killed_mid_run_resumes_from_checkpoint(ray_cluster, tmp_path):
    from stilts_ds.engine import faults

    marker = tmp_path / "fault" / "killed"
    stage = _phase1_on_ray(ray_cluster, tmp_path, "zero2", fault={"step": 6, "rank": 1, "marker": marker})
    assert marker.read_text() == "6"  # the worker really died at step 6
    # No sleep before the kill: the fault hook killed rank 1 only once Ray's checkpoint manager
    # record named the run's newest checkpoint (engine/faults.py), and wrote down which.
    seen = faults.registered(marker)
    assert "error" not in seen, seen
    registered_at = Path(seen["uri"])  # a checkpoint_<seq> directory of this run's Ray storage
    assert registered_at.name == seen["checkpoint"] and registered_at.parent.parent == tmp_path / "zero2" / "ray", seen
    # Saves at steps 4, 8 (checkpoint_every 4): before step 6 the newest can only be step 4's.
    assert seen["step"] == 4, seen
    summary = json.loads((stage / "train_summary.json").read_text())
    # Ray restarted the workers, which resumed from exactly the checkpoint registered before the kill.
    assert summary["resumed_checkpoint"] == seen["uri"] and summary["resumed_from"] == seen["step"]
    assert summary["skipped_checkpoints"] == []
    assert summary["steps"] == 12  # and the run finished the planned number of optimizer steps
    steps = [json.loads(line)["step"] for line in (stage / "tensorboard" / "metrics.jsonl").read_text().splitlines()
             if json.loads(line)["tag"] == "train/lr"]
    assert steps[:2] == [2, 4] and steps[-1] == 12  # logs flushed at the checkpoint survive the kill
    # Ray merges the ranks' checkpoint directories: each rank's generator state is in them.
    saved = sorted((tmp_path / "zero2" / "ray").glob("*phase1/checkpoint_*/rng_state"))
    assert saved and all(sorted(p.name for p in d.iterdir()) == ["rank0.pt", "rank1.pt"] for d in saved), saved


def test_distributed_evaluation_matches_one_process(ray_cluster, tmp_path):
    """Two workers sharing the rows (rank r takes rows r::2, in batches of 5 with short last
    batches) score exactly what one process scores: no example lost or counted twice."""
    cfg = _config(tmp_path, **{"intermediate.max_steps": 4, "finetune.defaults.max_steps": 6,
                               "evaluate.tasks": ["xnli", "tatoeba"], "evaluate.batch_size": 5})
    from dataclasses import asdict

    from stilts_ds.engine.launch import launch
    from stilts_ds.studies.runners import Runners

    single = Study(cfg, in_process=True, progress=False).run()
    # The same phase-3 jobs (the same models and features), run by two Ray workers.
    graph = Study(cfg, progress=False).graph()
    runners = Runners(graph, say=print)
    two = load_config(QUICKSTART, {"output_dir": str(tmp_path / "two"), "cluster.num_workers": 2,
                                   "cluster.placement_strategy": "STRICT_SPREAD"})
    distributed = {}
    with ray_cluster.connected():
        for task in ("xnli", "tatoeba"):
            job = runners.job(graph.nodes[f"phase3/{task}"])
            job = type(job)(**{**job.__dict__, "run_dir": str(tmp_path / "two" / task)})
            launch(job, asdict(two.cluster), name=f"two-{task}", storage_path=str(tmp_path / "two" / "ray"))
            distributed.update(json.loads((tmp_path / "two" / task / "scores.json").read_text()))
    assert distributed == single["tasks"]


def test_relative_output_dir_reaches_workers_as_absolute_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(QUICKSTART, {"output_dir": "rel/run", "cluster.num_workers": 1})
    assert cfg.run_dir.is_absolute() and cfg.cache_dir().is_absolute()
    job = Study(cfg, in_process=True, progress=False).build_job(
        "intermediate", cfg.intermediate, cfg.run_dir / "phase1", "tiny", cfg.run_dir / "phase1" / "encoder",
        with_dev=False)
    assert all(Path(t.train).is_absolute() for t in job.tasks)
    assert Path(job.run_dir).is_absolute() and Path(job.export_dir).is_absolute()


def test_zero2_with_cpu_optimizer_offload_trains(tmp_path):
    """ZeRO-2 + offload_optimizer: the merged config carries DeepSpeed's AdamW (DeepSpeedCPUAdam,
    JIT-built on first use), which a torch optimizer cannot replace."""
    cfg = _config(tmp_path, **{"deepspeed.base": "zero2_offload", "intermediate.max_steps": 3})
    Study(cfg, in_process=True, progress=False).intermediate()
    stage = cfg.run_dir / "phase1"
    merged = json.loads((stage / "ds_config.json").read_text())
    assert merged["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
    assert merged["optimizer"]["type"] == "AdamW"
    assert json.loads((stage / "train_summary.json").read_text())["steps"] == 3
