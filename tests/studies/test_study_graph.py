"""The study graph for real (DeepSpeed in-process, the CLI as a user runs it): each case that
used to leave a result silently stale now shows the right `status`, with the reason, and the
next `pipeline` reruns exactly the nodes downstream of the change; a failed node fails only
its dependents; a second driver on a busy output_dir stops naming the holder."""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from stilts_ds.cli import main
from stilts_ds.config import load_config
from stilts_ds.studies.graph import build_graph
from stilts_ds.studies.records import node_states
from stilts_ds.studies.scheduler import Scheduler, StudyFailed

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "configs" / "quickstart.yaml"
FIXTURES = ROOT / "stilts_ds" / "resources" / "fixtures"


def _sets(tmp_path, **extra) -> dict:
    sets = {"output_dir": str(tmp_path / "run"), "cluster.num_workers": 1, "arms": {},
            "intermediate.tasks": ["mnli", "qqp"], "intermediate.max_steps": 4, "intermediate.checkpoint_every": 2,
            "finetune.tasks": ["xnli", "pawsx"], "finetune.defaults.max_steps": 4,
            "finetune.defaults.eval_every": 2, "evaluate.tasks": ["xnli", "pawsx", "tatoeba"],
            "bench.enabled": False}
    sets.update(extra)
    return sets


def _cli_sets(sets: dict) -> list[str]:
    out = []
    for k, v in sets.items():
        out += ["--set", f"{k}={json.dumps(v)}"]
    return out


def _states(sets) -> dict[str, tuple[str, list[str]]]:
    graph = build_graph(load_config(QUICKSTART, sets))
    return {n: (s.state, s.reasons) for n, s in node_states(graph).items() if not n.startswith("prepare/")}


def _run(sets, *, targets=None, force=()):
    graph = build_graph(load_config(QUICKSTART, sets))
    return Scheduler(graph, in_process=True, force=force, say=None).run(targets)


STUDY = ["phase1", "phase2/xnli", "phase2/pawsx", "phase3/xnli", "phase3/pawsx", "phase3/tatoeba", "results",
         "report"]


def test_a_retrained_phase1_makes_exactly_its_downstream_stale(tmp_path):
    sets = _sets(tmp_path)
    first = _run(sets)
    assert set(STUDY) <= set(first.ran) and not first.failed
    assert all(state == "done" for state, _ in _states(sets).values())

    # `stilts-ds train --force` with another learning rate: before, phase 2 and 3 stayed "done"
    # and kept scores of models fine-tuned from the old encoder.
    changed = {**sets, "intermediate.lr": 0.002}
    out = CliRunner().invoke(main, ["train", "--config", str(QUICKSTART), "--in-process", "--force",
                                    *_cli_sets(changed)], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    states = _states(changed)
    assert states["phase1"] == ("done", [])
    for node in ("phase2/xnli", "phase2/pawsx", "phase3/tatoeba"):
        assert states[node][0] == "stale"
        assert states[node][1] == ["phase 1 was retrained under another configuration"], states[node]
    assert states["phase3/xnli"][0] == "stale" and states["results"][0] == "stale"

    status = CliRunner().invoke(main, ["status", "--config", str(QUICKSTART), *_cli_sets(changed)],
                                catch_exceptions=False)
    assert "| phase2/xnli | stale |" in status.output and "phase 1 was retrained" in status.output
    assert "| phase1 | done |" in status.output

    rerun = _run(changed)
    assert set(rerun.ran) == set(STUDY) - {"phase1"}  # exactly the downstream, phase 1 kept
    assert all(state == "done" for state, _ in _states(changed).values())
    done = json.loads((tmp_path / "run" / "phase2" / "xnli" / "DONE.json").read_text())
    phase1 = json.loads((tmp_path / "run" / "phase1" / "DONE.json").read_text())
    assert {d["id"]: d["run_id"] for d in done["deps"]}["phase1"] == phase1["run_id"]

    # A node some driver is running shows as running, with that driver's host and pid.
    from stilts_ds.lease import Lease

    with Lease(tmp_path / "run" / "phase2" / "xnli" / ".lease", what="node phase2/xnli"):
        status = CliRunner().invoke(main, ["status", "--config", str(QUICKSTART), *_cli_sets(changed)],
                                    catch_exceptions=False)
    assert "| phase2/xnli | running |" in status.output and f"pid {os.getpid()}" in status.output, status.output

    # The same config, phase 1 forced again: same key, another run. Downstream must know.
    CliRunner().invoke(main, ["train", "--config", str(QUICKSTART), "--in-process", "--force", *_cli_sets(changed)],
                       catch_exceptions=False)
    assert _states(changed)["phase2/xnli"] == ("stale", ["phase 1 was retrained"])
    assert _states(changed)["phase1"][0] == "done"


def test_a_changed_config_key_and_a_grown_data_file_are_named(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(FIXTURES, data)
    sets = _sets(tmp_path, **{"data.data_dir": str(data)})
    _run(sets)

    train_file = data / "xnli" / "train.en.jsonl"
    line = train_file.read_text(encoding="utf-8").splitlines()[0]
    with open(train_file, "a", encoding="utf-8") as f:  # a user appends rows to a training file
        f.write(line + "\n")
    states = _states(sets)
    assert states["phase2/xnli"] == ("stale", [f"data file {train_file} changed"])
    assert states["phase3/xnli"][0] == "stale" and "upstream phase 2 xnli: data file" in states["phase3/xnli"][1][0]
    for node in ("phase1", "phase2/pawsx", "phase3/pawsx", "phase3/tatoeba"):
        assert states[node] == ("done", []), node
    rerun = _run(sets)
    assert set(rerun.ran) == {"prepare/xnli", "phase2/xnli", "phase3/xnli", "results", "report"}

    changed = {**sets, "finetune.per_task": {"pawsx": {"lr": 0.003}}}
    states = _states(changed)
    assert states["phase2/pawsx"] == ("stale", ["config key finetune[pawsx].lr changed: 0.001 -> 0.003"])
    assert states["phase2/xnli"] == ("done", [])

    # Scoring another split changes what phase 3 reads, not what phase 2 trained on.
    states = _states({**sets, "evaluate.split": "validation"})
    assert states["phase2/xnli"] == ("done", []) and states["phase1"] == ("done", [])
    assert states["phase3/xnli"][0] == "stale" and "config key evaluate.split changed" in states["phase3/xnli"][1][0]


def test_a_changed_tokenizer_changes_the_node_keys_and_an_unchanged_one_keeps_them(tmp_path):
    """The tokenizer is in every key by its content (Study.tokenizer_fp), not only by its name:
    a tokenizer edited in place, under the same path, must change the keys of the features and
    of everything trained or scored on them. Nothing here trains: keys come from the graph."""
    from transformers import AutoTokenizer

    from stilts_ds.data import cache
    from stilts_ds.modeling.presets import BUNDLED_TOKENIZER_DIR

    tok_dir = tmp_path / "tokenizer"
    shutil.copytree(BUNDLED_TOKENIZER_DIR, tok_dir)
    sets = _sets(tmp_path, **{"model.tokenizer": str(tok_dir)})

    def graph():
        return build_graph(load_config(QUICKSTART, sets)).nodes

    before = graph()
    keys = {n: node.key for n, node in before.items()}
    assert {n for n in keys if n.startswith("prepare/")} and "phase1" in keys and "results" in keys
    fp = cache.tokenizer_fingerprint(AutoTokenizer.from_pretrained(str(tok_dir)))
    assert {node.config["tokenizer_fingerprint"] for n, node in before.items() if n.startswith("prepare/")} == {fp}

    # Unchanged (same files, newer modification times): the same keys.
    later = time.time() + 60
    for f in tok_dir.iterdir():
        os.utime(f, (later, later))
    assert {n: node.key for n, node in graph().items()} == keys

    # A real change under the same path: one new token. It tokenizes differently...
    word = "stiltsdsnewword"
    edited = AutoTokenizer.from_pretrained(str(tok_dir))
    old_ids = edited(word, add_special_tokens=False)["input_ids"]
    assert edited.add_tokens([word]) == 1
    edited.save_pretrained(str(tok_dir))
    reloaded = AutoTokenizer.from_pretrained(str(tok_dir))
    new_ids = reloaded(word, add_special_tokens=False)["input_ids"]
    assert len(old_ids) > 1 and new_ids == [len(reloaded) - 1], (old_ids, new_ids)
    new_fp = cache.tokenizer_fingerprint(reloaded)
    assert new_fp != fp

    # ...so every node's key changes: the features (their fingerprint and cache entries), the
    # phases trained and scored on them, and the results and report built from those.
    after = graph()
    assert set(after) == set(keys)
    assert [n for n, node in after.items() if node.key == keys[n]] == []
    for n, node in after.items():
        if n.startswith("prepare/"):
            assert node.config["tokenizer_fingerprint"] == new_fp, n
            assert set(node.features).isdisjoint(before[n].features), n  # new cache entries, not the old ones

def test_an_interrupted_rerun_never_reads_as_done(tmp_path):
    """A forced rerun rewrites its outputs as it goes (phase 2 exports every better dev score):
    cut short, the node must read as failed, not keep vouching with its old record."""
    from stilts_ds.engine import faults

    sets = _sets(tmp_path, **{"finetune.defaults.max_steps": 6, "finetune.defaults.checkpoint_every": 2})
    _run(sets)
    faults.plant(tmp_path / "run" / "phase2" / "xnli", step=5, marker=tmp_path / "fault", mode="raise")
    with pytest.raises(StudyFailed, match="phase2/xnli: InjectedFault"):
        _run(sets, targets=["phase2/xnli"], force=["phase2/xnli"])
    states = _states(sets)
    assert states["phase2/xnli"][0] == "failed"
    assert states["phase3/xnli"][0] == "stale" and states["results"][0] == "stale"
    assert states["phase2/pawsx"] == ("done", [])
    rerun = _run(sets)  # resumes phase 2 xnli from its step-4 checkpoint, then what reads it
    assert set(rerun.ran) == {"phase2/xnli", "phase3/xnli", "results", "report"}
    summary = json.loads((tmp_path / "run" / "phase2" / "xnli" / "train_summary.json").read_text())
    assert summary["resumed_from"] == 4 and summary["steps"] == 6


def test_an_interrupted_run_is_not_resumed_under_another_config(tmp_path):
    from stilts_ds.engine import faults

    sets = _sets(tmp_path, **{"intermediate.max_steps": 6})
    faults.plant(tmp_path / "run" / "phase1", step=5, marker=tmp_path / "fault", mode="raise")
    with pytest.raises(StudyFailed, match="phase1: InjectedFault"):
        _run(sets)
    states = _states(sets)
    assert states["phase1"][0] == "failed" and "injected fault at step 5" in states["phase1"][1][0]

    edited = {**sets, "intermediate.lr": 0.005}
    with pytest.raises(StudyFailed) as e:
        _run(edited)
    message = str(e.value)
    assert "intermediate.lr: 0.001 -> 0.005" in message and "--force" in message, message
    assert not (tmp_path / "run" / "phase1" / "DONE.json").exists()  # nothing stamped under the new config

    _run(edited, targets=["phase1"], force=["phase1"])  # --force starts over
    summary = json.loads((tmp_path / "run" / "phase1" / "train_summary.json").read_text())
    assert summary["resumed_from"] is None and summary["steps"] == 6
    done = json.loads((tmp_path / "run" / "phase1" / "DONE.json").read_text())
    assert done["config"]["intermediate.lr"] == 0.005


def test_a_failed_node_fails_only_its_dependents_and_a_rerun_resumes(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(FIXTURES, data)
    sets = _sets(tmp_path, **{"data.data_dir": str(data)})
    good = (data / "pawsx" / "train.en.jsonl").read_text(encoding="utf-8")
    (data / "pawsx" / "train.en.jsonl").write_text(good + "{not json\n", encoding="utf-8")
    with pytest.raises(StudyFailed) as e:
        _run(sets)
    assert "prepare/pawsx" in str(e.value) and "train.en.jsonl:" in str(e.value)
    states = _states(sets)
    for node in ("phase1", "phase2/xnli", "phase3/xnli", "phase3/tatoeba"):
        assert states[node][0] == "done", node  # the rest of the study finished
    assert states["phase2/pawsx"][0] == "pending" and states["results"][0] == "pending"

    (data / "pawsx" / "train.en.jsonl").write_text(good, encoding="utf-8")
    rerun = _run(sets)
    assert set(rerun.ran) == {"prepare/pawsx", "phase2/pawsx", "phase3/pawsx", "results", "report"}


def test_a_second_driver_on_a_busy_output_dir_stops_naming_the_holder(tmp_path):
    sets = _sets(tmp_path, **{"intermediate.max_steps": 40})
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    first = subprocess.Popen([sys.executable, "-m", "stilts_ds.cli", "pipeline", "--config", str(QUICKSTART),
                              "--in-process", *_cli_sets(sets)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, env=env)
    lease = tmp_path / "run" / ".stilts" / "lease"
    try:
        deadline = time.time() + 120
        while not lease.exists() and first.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        assert lease.exists(), first.communicate()[0]
        out = CliRunner().invoke(main, ["pipeline", "--config", str(QUICKSTART), "--in-process", *_cli_sets(sets)])
        assert out.exit_code == 2
        assert f"pid {first.pid}" in out.output and str(lease) in out.output and "--wait" in out.output
        status = CliRunner().invoke(main, ["status", "--config", str(QUICKSTART), *_cli_sets(sets)])
        assert status.exit_code == 0
        # The second driver waits for the first, then finds everything done.
        waited = CliRunner().invoke(main, ["pipeline", "--config", str(QUICKSTART), "--in-process", "--wait",
                                           *_cli_sets(sets)], catch_exceptions=False)
        assert waited.exit_code == 0
        assert first.wait(timeout=300) == 0
    finally:
        if first.poll() is None:
            first.kill()
    assert all(state == "done" for state, _ in _states(sets).values())
    assert not lease.exists()
