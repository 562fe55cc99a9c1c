"""Checkpoints that are checked before they are trusted (engine.checkpoints), for real:
DeepSpeed engines in-process and under Ray Train on the two-node test cluster.

* The random-number state loads with ``torch.load(weights_only=True)`` and restores exactly.
* A checkpoint that is not intact (a truncated shard, a missing rank manifest) is skipped with
  a warning naming the file, and the run resumes from the next older one, in-process and under
  Ray (where Train V2 would otherwise hand the same broken checkpoint back on every try).
* A checkpoint made under another configuration (key) is refused before anything starts,
  naming the config keys that changed; ``clear`` starts the node over, on any storage
  (a plain directory, a ``file://`` URI, a ``storage_filesystem``).

    .venv/bin/python -m pytest tests/engine/test_checkpoints.py -q
    .venv/bin/python -m pytest tests/engine/test_checkpoints.py -q -k clear_deletes   # no DeepSpeed, no Ray
"""
import json
import random
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import torch

from stilts_ds.config import load_config
from stilts_ds.engine import checkpoints, faults, rng_state
from stilts_ds.engine.job import Identity
from stilts_ds.engine.launch import launch
from stilts_ds.studies.pipeline import Study

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "configs" / "quickstart.yaml"
TASKS = ["mnli", "qqp"]  # two intermediate tasks: featurizing nine would cost more than training


# In-process launches leave a one-rank gloo group behind (LocalRuntime): close it after each test.
pytestmark = pytest.mark.usefixtures("no_process_group_left_behind")


def _draws():
    return (random.random(), random.gauss(0, 1), np.random.rand(4).tolist(), np.random.normal(),
            torch.rand(4).tolist(), torch.randn(2).tolist())


def test_rng_state_loads_weights_only_and_restores_exactly(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    random.gauss(0, 1)  # Python and numpy cache the second Gaussian of a pair: that is state too
    np.random.normal()
    path = rng_state.save(tmp_path, rank=1)
    expected = _draws()
    state = torch.load(path, weights_only=True)  # no pickled numpy objects, nothing that runs code
    assert isinstance(state["numpy"]["keys"], torch.Tensor) and isinstance(state["python"]["state"], torch.Tensor)
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    assert rng_state.load(tmp_path, rank=1)
    assert _draws() == expected
    assert not rng_state.load(tmp_path, rank=0)  # no file for that rank: generators left as they are


def _meta_dir(root: Path, node: str | None, key: str | None, config: dict, step: int, run_dir="x") -> Path:
    root.mkdir(parents=True)
    ident = Identity(node, key, json.dumps(config)) if node else None
    checkpoints.write_meta(root, identity=ident, step=step, world_size=1, run_dir=run_dir, tag=f"step{step}")
    (root / "w.bin").write_bytes(b"x" * 10)
    checkpoints.write_manifest(root, 0, ["w.bin"])
    return root


def test_check_resumable_judges_only_this_nodes_newest_checkpoint(tmp_path):
    """Ray layout by hand (no training): a staged run's experiment directory holds checkpoints
    of two nodes; only the node's own newest one decides, and clear removes the run."""
    storage, run = tmp_path / "ray", "study-staged"
    exp = storage / run
    _meta_dir(exp / "checkpoint_000001", "a/phase1", "k1", {"intermediate.lr": 0.001}, 3)
    _meta_dir(exp / "checkpoint_000002", "a/phase2/xnli", "f1", {"finetune.lr": 0.1}, 4)
    (exp / "checkpoint_000003").mkdir()  # a save cut short before rank 0 wrote the meta
    cands = checkpoints.candidates(storage_path=str(storage), run_name=run)
    assert [c.name for c in cands] == ["checkpoint_000003", "checkpoint_000002", "checkpoint_000001"]
    assert "stilts_checkpoint.json is missing" in checkpoints.problem(cands[0])
    assert checkpoints.problem(cands[1]) is None

    same = Identity("a/phase1", "k1", json.dumps({"intermediate.lr": 0.001}))
    assert checkpoints.check_resumable(str(storage), run, tmp_path / "p1", same).name == "checkpoint_000001"
    other_node = Identity("a/phase3", "zz", "{}")  # nothing of its own: nothing to refuse
    assert checkpoints.check_resumable(str(storage), run, tmp_path / "p3", other_node) is None
    changed = Identity("a/phase1", "k2", json.dumps({"intermediate.lr": 0.002, "intermediate.seed": 1}))
    with pytest.raises(checkpoints.CheckpointMismatch) as err:
        checkpoints.check_resumable(str(storage), run, tmp_path / "p1", changed)
    msg = str(err.value)
    assert str(exp / "checkpoint_000001") in msg and "--force" in msg
    assert "intermediate.lr: 0.001 -> 0.002" in msg and "intermediate.seed: <unset> -> 1" in msg

    (exp / "checkpoint_000002" / "w.bin").write_bytes(b"x" * 4)
    assert checkpoints.problem(cands[1]).endswith("w.bin is 4 bytes, 10 expected (truncated)")
    assert checkpoints.clear(str(storage), run, tmp_path / "p1") == [str(exp)]
    assert not exp.exists() and checkpoints.check_resumable(str(storage), run, tmp_path / "p1", changed) is None


def test_clear_deletes_the_run_on_file_uri_and_filesystem_storage(tmp_path):
    """--force must start over whatever the storage: a ``file://`` URI (resolved by pyarrow, as
    s3:// or gs:// are) and a storage filesystem given as ``RunConfig.storage_filesystem`` (here
    a Python-defined one over local disk) lose the whole run directory, and nothing else."""
    import pyarrow.fs
    from fsspec.implementations.local import LocalFileSystem

    storage, run = tmp_path / "storage", "study-phase1"
    exp = storage / run
    _meta_dir(exp / "checkpoint_000001", "a/phase1", "k1", {"intermediate.lr": 0.001}, 2)
    (exp / "checkpoint_manager_snapshot.json").write_text("{}")  # Ray's record of the run goes too
    (storage / "other-run" / "checkpoint_000001").mkdir(parents=True)
    (tmp_path / "p1" / checkpoints.LOCAL_DIR / "step2").mkdir(parents=True)
    uri = storage.as_uri()
    assert uri.startswith("file:///")
    assert [c.name for c in checkpoints.candidates(storage_path=uri, run_name=run)] == ["checkpoint_000001"]

    gone = checkpoints.clear(uri, run, tmp_path / "p1")
    assert gone == [str(exp), str(tmp_path / "p1" / checkpoints.LOCAL_DIR)]
    assert not exp.exists() and (storage / "other-run" / "checkpoint_000001").is_dir()
    assert checkpoints.candidates(storage_path=uri, run_name=run) == []
    assert checkpoints.clear(uri, run, tmp_path / "p1") == []  # nothing left: a no-op

    fs = pyarrow.fs.PyFileSystem(pyarrow.fs.FSSpecHandler(LocalFileSystem()))
    _meta_dir(exp / "checkpoint_000002", "a/phase1", "k1", {}, 4)
    assert checkpoints.clear(str(storage), run, None, filesystem=fs) == [str(exp)]
    assert not exp.exists() and (storage / "other-run").is_dir()


# ------------------------------------------------------------------ real DeepSpeed runs


def _config(tmp_path, workers: int = 1, **sets):
    base = {"output_dir": str(tmp_path / "run"), "cluster.num_workers": workers, "finetune.tasks": ["xnli"],
            "evaluate.tasks": ["xnli"], "intermediate.tasks": TASKS, "intermediate.log_every": 1}
    if workers > 1:
        base.update({"cluster.placement_strategy": "STRICT_SPREAD", "deepspeed.base": "zero2"})
    return load_config(QUICKSTART, {**base, **sets})


def _phase1(cfg, identity: Identity | None = None):
    stage = cfg.run_dir / "phase1"
    job = Study(cfg, in_process=cfg.cluster.num_workers == 1, progress=False).build_job(
        "intermediate", cfg.intermediate, stage, cfg.model.encoder, stage / "encoder", with_dev=False)
    return replace(job, identity=identity) if identity else job


def _launch(cfg, job, **kwargs):
    launch(job, asdict(cfg.cluster), name=f"{cfg.name}-phase1", storage_path=str(cfg.run_dir / "ray"),
           in_process=cfg.cluster.num_workers == 1, **kwargs)


def _summary(job) -> dict:
    return json.loads((Path(job.run_dir) / "train_summary.json").read_text())


@pytest.mark.parametrize("damage", ["truncated shard", "missing manifest", "shard that fails to load"])
def test_in_process_run_falls_back_past_a_broken_checkpoint(tmp_path, capsys, damage):
    cfg = _config(tmp_path, **{"intermediate.max_steps": 8, "intermediate.checkpoint_every": 3})
    job = _phase1(cfg)
    stage = Path(job.run_dir)
    faults.plant(stage, step=7, marker=tmp_path / "fault", mode="raise")
    with pytest.raises(faults.InjectedFault):
        _launch(cfg, job)
    saved = stage / "checkpoints"
    assert sorted(p.name for p in saved.iterdir()) == ["step3", "step6"]
    assert all(checkpoints.problem(c) is None for c in checkpoints.candidates(run_dir=stage))
    meta = json.loads((saved / "step6" / checkpoints.META).read_text())
    assert meta["step"] == 6 and meta["world_size"] == 1 and meta["node"] is None
    if damage == "truncated shard":
        broken = saved / "step6" / "step6" / "mp_rank_00_model_states.pt"
        size = broken.stat().st_size
        broken.write_bytes(broken.read_bytes()[: size // 2])
        why = f"{broken} is {size // 2} bytes, {size} expected (truncated)"
    elif damage == "missing manifest":
        broken = saved / "step6" / "manifest" / "rank0.json"
        broken.unlink()
        why = f"{broken} is missing or unreadable (rank 0 did not finish its save)"
    else:  # same size, so the manifest cannot tell: torch.load finds no zip directory at its end
        broken = saved / "step6" / "step6" / "mp_rank_00_model_states.pt"
        data = bytearray(broken.read_bytes())
        data[-200:] = bytes(200)
        broken.write_bytes(bytes(data))
        why = None
    capsys.readouterr()

    _launch(cfg, job)
    err = capsys.readouterr().err
    summary = _summary(job)
    assert summary["resumed_from"] == 3 and summary["steps"] == 8
    assert summary["resumed_checkpoint"] == str(saved / "step3")
    (skip,) = summary["skipped_checkpoints"]
    assert skip["path"] == str(saved / "step6")
    if why is None:
        assert skip["why"].startswith("loading it failed: rank 0: RuntimeError:"), skip
        why = skip["why"]
    assert skip["why"] == why
    assert f"checkpoint {saved / 'step6'} skipped: {why}; trying the next older checkpoint" in err
    # The redone step 6 replaced the broken one; the newest two are kept.
    assert sorted(p.name for p in saved.iterdir()) == ["step6", "step8"]
    assert all(checkpoints.problem(c) is None for c in checkpoints.candidates(run_dir=stage))
    assert (stage / "FINISHED.json").is_file()


def test_resume_under_another_config_is_refused_until_cleared(tmp_path, capsys):
    sets = {"intermediate.max_steps": 6, "intermediate.checkpoint_every": 3}
    cfg = _config(tmp_path, **sets)
    node = "english/phase1"
    first = _phase1(cfg, Identity(node, "key-lr-0.001", json.dumps({"intermediate.lr": 0.001, "data.source": "local"})))
    faults.plant(first.run_dir, step=4, marker=tmp_path / "fault", mode="raise")
    with pytest.raises(faults.InjectedFault):
        _launch(cfg, first)

    second = replace(first, identity=Identity(node, "key-lr-0.002",
                                              json.dumps({"intermediate.lr": 0.002, "data.source": "local"})))
    storage, run_name = str(cfg.run_dir / "ray"), f"{cfg.name}-phase1"
    with pytest.raises(checkpoints.CheckpointMismatch) as err:
        checkpoints.check_resumable(storage, run_name, second.run_dir, second.identity)
    msg = str(err.value)
    assert str(Path(first.run_dir) / "checkpoints" / "step3") in msg
    assert "intermediate.lr: 0.001 -> 0.002" in msg and "data.source" not in msg and "--force" in msg
    with pytest.raises(checkpoints.CheckpointMismatch):  # launch checks before anything starts
        _launch(cfg, second)
    # The same node with its own key resumes (defence in depth: the worker checks too).
    assert checkpoints.check_resumable(storage, run_name, first.run_dir, first.identity) is not None

    assert checkpoints.clear(storage, run_name, second.run_dir) == [str(Path(second.run_dir) / "checkpoints")]
    _launch(cfg, second)
    summary = _summary(second)
    assert summary["resumed_from"] is None and summary["steps"] == 6
    meta = json.loads((Path(second.run_dir) / "checkpoints" / "step6" / checkpoints.META).read_text())
    assert (meta["node"], meta["key"], meta["config"]["intermediate.lr"]) == (node, "key-lr-0.002", 0.002)
    finished = json.loads((Path(second.run_dir) / "FINISHED.json").read_text())
    assert (finished["node"], finished["key"], finished["attempt"]) == (node, "key-lr-0.002", "")
    assert finished["finished"] >= finished["started"] > 0


def test_ray_run_falls_back_past_a_truncated_checkpoint(ray_cluster, tmp_path):
    """Run 1 dies at step 10 with no retries left (checkpoints at 4 and 8 in the Ray run); the
    step-8 checkpoint is then truncated. Run 2 (same run name and storage, as a study's rerun)
    skips it, resumes from step 4 and finishes at step 12."""
    cfg = _config(tmp_path, workers=2, **{"intermediate.max_steps": 12, "intermediate.checkpoint_every": 4,
                                          "intermediate.log_every": 2, "cluster.max_failures": 0})
    job = _phase1(cfg, Identity("english/phase1", "k", "{}"))
    faults.plant(job.run_dir, step=10, rank=1, marker=tmp_path / "fault" / "killed", delay_s=2.0)
    # 0.5 s between the controller's polls of its workers (2 s by default), as engine.dispatch
    # sets for a study's fits: Ray notices the kill and the end of each fit sooner.
    with ray_cluster.connected(runtime_env={"env_vars": {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5"}}):
        with pytest.raises(Exception):  # noqa: B017 - Ray's TrainingFailedError: no retries left
            _launch(cfg, job)
        exp = cfg.run_dir / "ray" / f"{cfg.name}-phase1"
        by_step = {json.loads((d / checkpoints.META).read_text())["step"]: d for d in exp.glob("checkpoint_0*")}
        assert sorted(by_step) == [4, 8]
        assert not list(cfg.run_dir.rglob("stilts-ckpt-*")) and not (cfg.run_dir / "phase1" / ".staging").exists()
        shard = by_step[8] / "step8" / "mp_rank_00_model_states.pt"
        size = shard.stat().st_size
        with open(shard, "r+b") as f:
            f.truncate(size - 100)
        _launch(cfg, job)
    summary = _summary(job)
    assert summary["resumed_from"] == 4 and summary["steps"] == 12 and summary["world_size"] == 2
    assert summary["resumed_checkpoint"] == str(by_step[4])
    assert summary["skipped_checkpoints"] == [
        {"path": str(by_step[8]), "why": f"{shard} is {size - 100} bytes, {size} expected (truncated)"}]
    # Ray keeps the newest two: the redone step 8 (a new directory) and the final one.
    kept = {json.loads((d / checkpoints.META).read_text())["step"]: d for d in exp.glob("checkpoint_0*")}
    assert sorted(kept) == [8, 12] and kept[8] != by_step[8]
    assert all(sorted(p.name for p in (d / "manifest").iterdir()) == ["rank0.json", "rank1.json"]
               for d in kept.values())


def test_ray_run_on_non_local_storage_stages_and_uploads(ray_cluster, tmp_path):
    """Storage that is not a pyarrow LocalFileSystem (here a Python-defined one over local disk,
    standing in for s3:// or gs://): each rank stages its files under <run_dir>/.staging/rank<r>,
    Ray uploads them into one checkpoint, the staging copy goes; a worker killed at step 6
    restarts from the uploaded step-4 checkpoint (downloaded back)."""
    import pyarrow.fs
    from fsspec.implementations.local import LocalFileSystem

    fs = pyarrow.fs.PyFileSystem(pyarrow.fs.FSSpecHandler(LocalFileSystem()))
    cfg = _config(tmp_path, workers=2, **{"intermediate.max_steps": 8, "intermediate.checkpoint_every": 4,
                                          "intermediate.log_every": 2})
    job = _phase1(cfg, Identity("english/phase1", "k", "{}"))
    stage = Path(job.run_dir)
    faults.plant(stage, step=6, rank=1, marker=tmp_path / "fault" / "killed", delay_s=2.0)
    storage, name = str(cfg.run_dir / "ray"), f"{cfg.name}-phase1"
    with ray_cluster.connected(runtime_env={"env_vars": {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5"}}):
        launch(job, asdict(cfg.cluster), name=name, storage_path=storage, storage_filesystem=fs)
    summary = _summary(job)
    assert summary["resumed_from"] == 4 and summary["steps"] == 8 and summary["skipped_checkpoints"] == []
    kept = checkpoints.candidates(storage_path=storage, run_name=name, filesystem=fs)
    assert [checkpoints.read_meta(c)["step"] for c in kept] == [8, 4]
    assert all(checkpoints.problem(c) is None for c in kept)  # both ranks' files merged, sizes as listed
    staging = stage / checkpoints.STAGING_DIR
    assert staging.is_dir() and not [p for p in staging.rglob("*") if p.is_file()]  # used, and emptied
