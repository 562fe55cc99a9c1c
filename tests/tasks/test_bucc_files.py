"""The official BUCC 2018 files -> local bucc rows (every sentence, not only the gold pairs),
read back through the bucc reader; and the caveat a hub-sourced study prints for bucc.

    .venv/bin/python -m pytest -q tests/tasks/test_bucc_files.py
"""
import json
from pathlib import Path

import pytest

from stilts_ds.data.sources import load_examples
from stilts_ds.errors import StiltsError
from stilts_ds.tasks import bucc_files
from stilts_ds.tasks.formats import retrieval
from stilts_ds.tasks.registry import get_task

ROOT = Path(__file__).resolve().parents[2]


def _write(path: Path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def test_official_files_become_rows_with_every_sentence(tmp_path):
    official = tmp_path / "bucc2018" / "de-en"
    _write(official / "de-en.training.de", ["de-000001\tDas Haus ist alt.", "de-000002\tEin Satz ohne Paar.",
                                           "de-000003\tDer Hund schläft."])
    _write(official / "de-en.training.en", ["en-000001\tThe dog sleeps.", "en-000002\tAn English distractor.",
                                           "en-000003\tThe house is old."])
    _write(official / "de-en.training.gold", ["de-000001\ten-000003", "de-000003\ten-000001"])
    (out,) = bucc_files.convert(tmp_path / "bucc2018", tmp_path / "data")
    assert out == tmp_path / "data" / "bucc" / "test.de.jsonl"
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [(r["source_id"], r["target_id"]) for r in rows] == [
        ("de-000001", "en-000003"), ("de-000003", "en-000001"), ("de-000002", ""), ("", "en-000002")]
    assert rows[0]["source_sentence"] == "Das Haus ist alt." and rows[0]["target_sentence"] == "The house is old."
    # The bucc reader takes them as they are: 3 sources (2 with gold), 3 targets.
    examples = load_examples(get_task("bucc"), "test", "de", source="local", data_dir=tmp_path / "data")
    sources = [e for e in examples if e.side == retrieval.SOURCE]
    assert len(sources) == 3 and len([e for e in examples if e.side == retrieval.TARGET]) == 3
    assert {e.guid: e.gold for e in sources} == {"de-000001": "en-000003", "de-000002": None,
                                                 "de-000003": "en-000001"}


def test_bad_official_files_are_named(tmp_path):
    _write(tmp_path / "x" / "fr-en.sample.fr", ["fr-000001\tUne phrase."])
    with pytest.raises(StiltsError, match=r"found fr-en.sample.fr but not fr-en.sample.en, fr-en.sample.gold"):
        bucc_files.convert(tmp_path / "x", tmp_path / "data")
    _write(tmp_path / "x" / "fr-en.sample.en", ["en-000001 no tab here"])
    _write(tmp_path / "x" / "fr-en.sample.gold", [])
    with pytest.raises(StiltsError, match=r"fr-en.sample.en:1: expected '<id>\\t<sentence>'"):
        bucc_files.convert(tmp_path / "x", tmp_path / "data")
    _write(tmp_path / "x" / "fr-en.sample.en", ["en-000001\tA sentence."])
    _write(tmp_path / "x" / "fr-en.sample.gold", ["fr-000009\ten-000001"])
    with pytest.raises(StiltsError, match="gold pair fr-000009"):
        bucc_files.convert(tmp_path / "x", tmp_path / "data")
    with pytest.raises(StiltsError, match="no BUCC 2018 files"):
        bucc_files.convert(tmp_path / "empty", tmp_path / "data")


def test_a_hub_sourced_study_says_bucc_is_not_the_official_protocol(tmp_path, capsys):
    from stilts_ds.config import load_config
    from stilts_ds.studies.pipeline import Study

    hub = Study(load_config(ROOT / "configs" / "paper.yaml", {"data.local_tasks": {}}))
    hub._langs("bucc", "test")
    hub._langs("bucc", "validation")
    err = capsys.readouterr().err
    assert err.count("bucc: the hub's bucc18 configs hold only the gold pairs") == 1
    assert "stilts-ds convert bucc DIR --data-dir DATA_DIR" in err
    local = Study(load_config(ROOT / "configs" / "paper.yaml", {"data.local_tasks": {"bucc": str(tmp_path)}}))
    local._langs("bucc", "test")
    assert "gold pairs" not in capsys.readouterr().err
