"""Staged jobs for real: several stages (phase 1, a fine-tune from its encoder, an evaluation of
the fine-tuned model) run one after another by one worker group, in-process and in ONE Ray
Train fit on the two-node test cluster.

Each stage ends with ``<run_dir>/FINISHED.json``; after a restart (in-process: the same
StagedJob launched again; Ray: FailureConfig restarting the group after a worker is killed in
stage 2) a stage that finished in this attempt is skipped, and the stage that was cut short
resumes from its own checkpoint, never from another stage's (they share one Ray run).
"""
import json
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from stilts_ds.config import load_config
from stilts_ds.engine import checkpoints, faults
from stilts_ds.engine.job import EvalItem, EvalJob, Identity, StagedJob
from stilts_ds.engine.launch import launch
from stilts_ds.studies.pipeline import Study

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "configs" / "quickstart.yaml"


# In-process launches leave a one-rank gloo group behind (LocalRuntime): close it after each test.
pytestmark = pytest.mark.usefixtures("no_process_group_left_behind")


def _staged(tmp_path, workers: int, attempt: str):
    sets = {"output_dir": str(tmp_path / "run"), "cluster.num_workers": workers, "finetune.tasks": ["xnli"],
            "evaluate.tasks": ["xnli"], "intermediate.tasks": ["mnli", "qqp"], "intermediate.max_steps": 4,
            "intermediate.checkpoint_every": 2, "intermediate.log_every": 2, "finetune.defaults.max_steps": 8,
            "finetune.defaults.checkpoint_every": 4, "finetune.defaults.eval_every": 4,
            "finetune.defaults.log_every": 2, "evaluate.batch_size": 8}
    if workers > 1:
        sets.update({"cluster.placement_strategy": "STRICT_SPREAD", "deepspeed.base": "zero2",
                     "cluster.max_failures": 1})
    cfg = load_config(QUICKSTART, sets)
    study = Study(cfg, in_process=workers == 1, progress=False)
    p1_dir, ft_dir = cfg.run_dir / "phase1", cfg.run_dir / "phase2" / "xnli"
    p1 = study.build_job("intermediate", cfg.intermediate, p1_dir, cfg.model.encoder, p1_dir / "encoder",
                         with_dev=False)
    ft = study.build_job("finetune", cfg.finetune.recipe("xnli"), ft_dir, str(p1_dir / "encoder"),
                         ft_dir / "model", with_dev=True)
    langs = ("en", "ar")
    ev = EvalJob(run_dir=str((cfg.run_dir / "phase3").resolve()), batch_size=cfg.evaluate.batch_size,
                 evaluations=(EvalItem("xnli", str((ft_dir / "model").resolve()),
                                       tuple((lang, str(study.features("xnli", "test", lang))) for lang in langs)),))
    (cfg.run_dir / "phase3").mkdir(parents=True, exist_ok=True)
    job = StagedJob(stages=(replace(p1, identity=Identity("t/phase1", "p1-key", "{}")),
                            replace(ft, identity=Identity("t/phase2/xnli", "ft-key", "{}")),
                            replace(ev, identity=Identity("t/phase3", "ev-key", "{}"))), attempt=attempt)
    return cfg, job


def _launch(cfg, job):
    launch(job, asdict(cfg.cluster), name=f"{cfg.name}-staged", storage_path=str(cfg.run_dir / "ray"),
           in_process=cfg.cluster.num_workers == 1)


def _json(path) -> dict:
    return json.loads(Path(path).read_text())


def _check_finished(job):
    for stage in job.stages:
        record = _json(Path(stage.run_dir) / "FINISHED.json")
        assert (record["node"], record["key"], record["attempt"]) == (stage.identity.node, stage.identity.key,
                                                                     job.attempt)
        assert record["finished"] >= record["started"] > 0


def test_staged_job_in_process_skips_finished_stages_and_resumes_its_own(tmp_path, capsys):
    cfg, job = _staged(tmp_path, workers=1, attempt="attempt-1")
    p1, ft, ev = (Path(s.run_dir) for s in job.stages)
    faults.plant(ft, step=6, marker=tmp_path / "fault", mode="raise")
    with pytest.raises(faults.InjectedFault):
        _launch(cfg, job)
    assert (p1 / "FINISHED.json").is_file() and not (ft / "FINISHED.json").exists()
    stamp = (p1 / "train_summary.json").stat().st_mtime_ns
    capsys.readouterr()

    _launch(cfg, job)  # the same attempt again, as after a restart
    assert "finished in this attempt before the restart, skipping" in capsys.readouterr().err
    assert (p1 / "train_summary.json").stat().st_mtime_ns == stamp  # phase 1 was not redone
    ft_summary = _json(ft / "train_summary.json")
    assert ft_summary["resumed_from"] == 4 and ft_summary["steps"] == 8
    assert ft_summary["resumed_checkpoint"] == str(ft / "checkpoints" / "step4")
    assert _json(p1 / "train_summary.json")["resumed_from"] is None
    scores = _json(ev / "scores.json")
    assert set(scores["xnli"]) == {"en", "ar"}
    _check_finished(job)
    # Each stage's in-process checkpoints in its own run directory; the evaluation keeps none.
    assert sorted(p.name for p in (p1 / "checkpoints").iterdir()) == ["step2", "step4"]
    assert sorted(p.name for p in (ft / "checkpoints").iterdir()) == ["step4", "step8"]
    assert not (ev / "checkpoints").exists()

    stamps = {s: (Path(s.run_dir) / "FINISHED.json").stat().st_mtime_ns for s in job.stages}
    _launch(cfg, job)  # everything finished in this attempt: nothing runs
    assert all((Path(s.run_dir) / "FINISHED.json").stat().st_mtime_ns == t for s, t in stamps.items())
    _launch(cfg, replace(job, attempt="attempt-2"))  # a new attempt runs every stage again
    assert all(_json(Path(s.run_dir) / "FINISHED.json")["attempt"] == "attempt-2" for s in job.stages)


def test_staged_job_is_one_ray_fit_and_a_restart_resumes_the_cut_stage(ray_cluster, tmp_path, ray_timings):
    """Phase 1, a fine-tune and an evaluation in one TorchTrainer fit over two nodes; rank 1 is
    killed at fine-tune step 6, Ray restarts the group: phase 1 is skipped (finished in this
    attempt), the fine-tune resumes from its own step-4 checkpoint (not phase 1's newer-looking
    ones in the same Ray run), the evaluation runs once."""
    import time

    cfg, job = _staged(tmp_path, workers=2, attempt="ray-attempt-1")
    p1, ft, ev = (Path(s.run_dir) for s in job.stages)
    marker = tmp_path / "fault" / "killed"
    faults.plant(ft, step=6, rank=1, marker=marker, delay_s=2.0)
    started = time.monotonic()
    # The controller polls its workers every RAY_TRAIN_HEALTH_CHECK_INTERVAL_S (2 s by default):
    # 0.5 s, as engine.dispatch sets for a study's fits, notices the kill and the end sooner.
    with ray_cluster.connected(runtime_env={"env_vars": {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5"}}):
        _launch(cfg, job)
    ray_timings["staged fit (3 stages, one restart)"] = time.monotonic() - started
    assert marker.read_text() == "6"  # the worker really died in stage 2

    storage = cfg.run_dir / "ray"
    assert [d.name for d in storage.iterdir() if d.is_dir()] == [f"{cfg.name}-staged"]  # one Ray run
    killed_at = marker.stat().st_mtime
    p1_summary = _json(p1 / "train_summary.json")
    assert (p1 / "train_summary.json").stat().st_mtime < killed_at  # phase 1 not redone after the restart
    assert _json(p1 / "FINISHED.json")["finished"] < killed_at
    assert p1_summary["steps"] == 4 and p1_summary["world_size"] == 2
    ft_summary = _json(ft / "train_summary.json")
    assert ft_summary["resumed_from"] == 4 and ft_summary["steps"] == 8 and ft_summary["skipped_checkpoints"] == []
    resumed = ft_summary["resumed_checkpoint"]
    assert _json(Path(resumed) / checkpoints.META)["node"] == "t/phase2/xnli"
    assert _json(ev / "FINISHED.json")["started"] > killed_at  # the evaluation ran once, after the restart
    assert set(_json(ev / "scores.json")["xnli"]) == {"en", "ar"}
    _check_finished(job)
    assert not list(cfg.run_dir.rglob(".staging"))  # local storage: no staging copies
