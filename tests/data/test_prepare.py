"""The prepare stage: cached by key, reused, forced, and never half-written."""
import os

import pytest

from stilts_ds.data import cache
from stilts_ds.data.prepare import prepare
from stilts_ds.errors import StiltsError
from stilts_ds.tasks.registry import get_task


def test_prepare_writes_then_reuses(tmp_path, tokenizer):
    spec = get_task("xnli")
    first = prepare([spec], tokenizer=tokenizer, cache_dir=tmp_path, splits=["test"], langs=["zh"],
                    max_length=64, progress=False)
    (item,) = first
    assert not item.reused and item.path.is_file() and item.rows == item.examples
    assert "len64" in item.path.name and item.path.name.startswith("test.zh.")
    again = prepare([spec], tokenizer=tokenizer, cache_dir=tmp_path, splits=["test"], langs=["zh"],
                    max_length=64, progress=False)
    assert again[0].reused and again[0].path == item.path
    forced = prepare([spec], tokenizer=tokenizer, cache_dir=tmp_path, splits=["test"], langs=["zh"],
                     max_length=64, force=True, progress=False)
    assert not forced[0].reused
    other = prepare([spec], tokenizer=tokenizer, cache_dir=tmp_path, splits=["test"], langs=["zh"],
                    max_length=32, progress=False)
    assert other[0].path != item.path  # max length is part of the key
    assert list(tmp_path.rglob("*.tmp")) == []


def test_interrupted_write_leaves_no_partial_entry(tmp_path, tokenizer, monkeypatch):
    spec = get_task("mnli")
    (good,) = prepare([spec], tokenizer=tokenizer, cache_dir=tmp_path, splits=["train"], max_length=32,
                      progress=False)
    before = good.path.read_bytes()

    def die_before_rename(fd):  # the bytes are in the temporary file, the rename never happens
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", die_before_rename)
    with pytest.raises(KeyboardInterrupt):
        prepare([spec], tokenizer=tokenizer, cache_dir=tmp_path, splits=["train"], max_length=32,
                force=True, progress=False)
    assert good.path.read_bytes() == before  # the previous entry is intact
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == [good.path]  # no temp file left


def test_bad_label_fails_before_anything_is_written(tmp_path, tokenizer):
    data = tmp_path / "data"
    (data / "ccg").mkdir(parents=True)
    (data / "ccg" / "tags.txt").write_text("N\nNP\n")
    (data / "ccg" / "train.jsonl").write_text('{"tokens": ["dogs", "bark"], "tags": ["N", "S\\\\NP"]}\n')
    with pytest.raises(StiltsError, match=r"ccg.*tag 'S\\\\NP' is not in the task's label set"):
        prepare([get_task("ccg")], tokenizer=tokenizer, cache_dir=tmp_path / "cache", data_dir=data,
                progress=False)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.pkl"))


def test_unknown_split_for_a_named_task(tmp_path, tokenizer):
    with pytest.raises(StiltsError, match="has no split 'train'"):
        prepare([get_task("tatoeba")], tokenizer=tokenizer, cache_dir=tmp_path, splits=["train"], progress=False)


def test_cache_key_depends_on_the_tokenizer_definition(tokenizer):
    fp = cache.tokenizer_fingerprint(tokenizer)
    assert len(fp) == 12 and fp == cache.tokenizer_fingerprint(tokenizer)
    tokenizer(["a b"], ["c"], truncation="longest_first", max_length=8, padding="max_length")
    assert cache.tokenizer_fingerprint(tokenizer) == fp  # call-time truncation/padding state is not identity
