"""``--force`` redoes a training stage whatever the storage: here Ray Train's storage is a
``file://`` URI (a pyarrow filesystem reached by URI, as s3:// or gs:// would be), not the
default plain directory under the run.

Real components only: the two-node local Ray cluster of tests/conftest.py, Ray Train fits of
the tiny encoder on the bundled fixtures, the study scheduler. Run it alone with

    .venv/bin/python -m pytest tests/engine/test_force_remote_storage.py -q

What would go wrong without the clear: Ray Train V2 resumes a run name whose experiment
directory exists, handing the workers its last checkpoint; a stage whose final checkpoint is
at the last step would then "rerun" zero steps and keep its old weights. Step 3 below shows
that hazard is real on this storage, so the forced reruns after it (through the scheduler, as
`stilts-ds train --force` runs, and through ``launch(force=True)``) prove the clear.
"""
import json
from dataclasses import asdict
from pathlib import Path

import pytest

from stilts_ds.config import load_config
from stilts_ds.engine import checkpoints
from stilts_ds.engine.launch import launch
from stilts_ds.studies.pipeline import Study
from stilts_ds.studies.runners import Runners, identity, run_name

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "configs" / "quickstart.yaml"
STEPS = 4

pytestmark = pytest.mark.ray_cluster


def _config(tmp_path, **sets):
    # One worker keeps each fit cheap; it still runs under Ray Train (not in-process), which
    # is where the storage path matters. The final checkpoint lands at the last step.
    return load_config(QUICKSTART, {
        "output_dir": str(tmp_path / "run"), "cluster.num_workers": 1, "arms": {},
        "cluster.storage_path": (tmp_path / "storage").as_uri(),  # file:///...
        "finetune.tasks": ["xnli"], "evaluate.tasks": ["xnli"], "intermediate.tasks": ["mnli", "qqp"],
        "intermediate.max_steps": STEPS, "intermediate.checkpoint_every": 2, "intermediate.log_every": 1,
        **sets})


def _summary(stage: Path) -> dict:
    return json.loads((stage / "train_summary.json").read_text())


def _lr_rows(stage: Path) -> list[int]:
    """The steps of every ``train/lr`` row of metrics.jsonl (appended across runs)."""
    rows = [json.loads(line) for line in (stage / "tensorboard" / "metrics.jsonl").read_text().splitlines()]
    return [r["step"] for r in rows if r["tag"] == "train/lr"]


def _checkpoint_steps(cfg, name: str) -> list[int]:
    kept = checkpoints.candidates(storage_path=cfg.storage_path(), run_name=name)
    return [checkpoints.read_meta(c)["step"] for c in kept]


def test_force_retrains_from_step_zero_on_file_uri_storage(ray_cluster, tmp_path):
    cfg = _config(tmp_path)
    assert cfg.storage_path().startswith("file://")
    stage = cfg.run_dir / "phase1"
    graph = Study(cfg, progress=False).graph()
    node = graph.nodes["phase1"]
    name = run_name(graph, node)
    experiment = tmp_path / "storage" / name  # where the file:// URI puts Ray's experiment directory

    with ray_cluster.connected():
        # 1. The stage trains: Ray keeps its checkpoints under the file:// storage.
        Study(cfg, progress=False).intermediate()
        first = _summary(stage)
        assert first["resumed_from"] is None and first["loop"]["steps"] == STEPS
        assert _checkpoint_steps(cfg, name) == [STEPS, STEPS - 2]
        sentinel = experiment / "left-by-the-first-run"
        sentinel.write_text("the first run's experiment directory")
        weights = (stage / "encoder" / "model.safetensors").read_bytes()

        # 2. Unforced, the finished stage does not run again.
        Study(cfg, progress=False).intermediate()
        assert _summary(stage)["finished"] == first["finished"]

        # 3. The hazard: the same run name launched without clearing resumes from Ray's final
        #    checkpoint and trains nothing.
        job = Runners(graph, say=print).job(node)
        launch(job, asdict(cfg.cluster), name=name, storage_path=cfg.storage_path())
        restored = _summary(stage)
        assert restored["resumed_from"] == STEPS and restored["loop"]["steps"] == 0
        assert restored["resumed_checkpoint"].startswith(str(experiment))

        # 4. --force through the scheduler (what `stilts-ds train --force` runs): the experiment
        #    directory is deleted first, and the stage trains again from step 0.
        lr_rows = len(_lr_rows(stage))
        Study(cfg, progress=False, force=True).intermediate()
        forced = _summary(stage)
        assert forced["resumed_from"] is None and forced["resumed_checkpoint"] is None
        assert forced["loop"]["steps"] == STEPS and forced["steps"] == STEPS
        assert _lr_rows(stage)[lr_rows:] == list(range(1, STEPS + 1))  # every step logged again
        assert not sentinel.exists()  # the old experiment directory went as a whole
        assert _checkpoint_steps(cfg, name) == [STEPS, STEPS - 2]
        # Same config, same seed, trained from scratch: the same weights as the first run.
        assert (stage / "encoder" / "model.safetensors").read_bytes() == weights

        # 5. launch(force=True) with another learning rate under the same identity node: without
        #    force it is refused (CheckpointMismatch); forced, it clears and trains from step 0,
        #    and the other learning rate gives other weights.
        changed = _config(tmp_path, **{"intermediate.lr": 5e-3})
        cgraph = Study(changed, progress=False).graph()
        cjob = Runners(cgraph, say=print).job(cgraph.nodes["phase1"])
        assert cjob.identity.key != identity(node).key
        with pytest.raises(checkpoints.CheckpointMismatch, match="intermediate.lr"):
            launch(cjob, asdict(changed.cluster), name=name, storage_path=changed.storage_path())
        launch(cjob, asdict(changed.cluster), name=name, storage_path=changed.storage_path(), force=True)
        relaunched = _summary(stage)
        assert relaunched["resumed_from"] is None and relaunched["loop"]["steps"] == STEPS
        assert (stage / "encoder" / "model.safetensors").read_bytes() != weights
        metas = [checkpoints.read_meta(c) for c in checkpoints.candidates(storage_path=changed.storage_path(),
                                                                          run_name=name)]
        assert [(m["step"], m["key"]) for m in metas] == [(STEPS, cjob.identity.key), (STEPS - 2, cjob.identity.key)]

