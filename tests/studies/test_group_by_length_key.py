"""`group_by_length` (length-grouped micro-batches) in a study: off, the node keys are the
ones studies had before the option existed (their checkpoints and results stay current); on,
the training nodes it touches and everything downstream are new, and the job carries it to the
workers.

    .venv/bin/python -m pytest -q tests/studies/test_group_by_length_key.py
"""
from pathlib import Path

from stilts_ds.config import load_config
from stilts_ds.studies.graph import build_graph
from stilts_ds.studies.runners import Runners

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "configs" / "quickstart.yaml"


def _sets(tmp_path, **extra):
    return {"output_dir": str(tmp_path / "run"), "cluster.num_workers": 1, "arms": {},
            "intermediate.tasks": ["mnli", "qqp"], "finetune.tasks": ["xnli", "pawsx"],
            "evaluate.tasks": ["xnli", "pawsx"], "bench.enabled": False, **extra}


def test_off_keeps_every_key_and_on_changes_the_phase_it_is_set_for(tmp_path):
    plain = build_graph(load_config(QUICKSTART, _sets(tmp_path)))
    off = build_graph(load_config(QUICKSTART, _sets(tmp_path, **{"intermediate.group_by_length": False})))
    on = build_graph(load_config(QUICKSTART, _sets(tmp_path, **{"intermediate.group_by_length": True})))
    assert {n: plain.nodes[n].key for n in plain.nodes} == {n: off.nodes[n].key for n in off.nodes}
    assert "group_by_length" not in str(plain.nodes["phase1"].config)
    # Phase 1 trains in another order: it and everything built on it are new.
    for nid in ("phase1", "phase2/xnli", "phase3/xnli", "phase3/pawsx", "results"):
        assert on.nodes[nid].key != plain.nodes[nid].key, nid
    for nid in ("prepare/mnli", "prepare/xnli"):
        assert on.nodes[nid].key == plain.nodes[nid].key, nid


def test_the_training_job_carries_the_option(tmp_path):
    cfg = load_config(QUICKSTART, _sets(tmp_path, **{"finetune.defaults.group_by_length": True}))
    graph = build_graph(cfg)
    runners = Runners(graph, say=lambda _: None, in_process=True, progress=False)
    assert runners.job(graph.nodes["phase2/xnli"], check_encoder=False).optim.group_by_length is True
    assert runners.job(graph.nodes["phase1"], check_encoder=False).optim.group_by_length is False
