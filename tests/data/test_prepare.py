"""The prepare stage: cached by key, reused, forced, and never half-written."""
import os
from pathlib import Path

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
    assert not item.reused and cache.exists(item.path) and item.rows == item.examples
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
    assert list(tmp_path.rglob("*.tmp")) == [] and list(tmp_path.rglob(".*partial*")) == []


def test_interrupted_write_leaves_no_partial_entry(tmp_path, tokenizer, monkeypatch):
    spec = get_task("mnli")
    (good,) = prepare([spec], tokenizer=tokenizer, cache_dir=tmp_path, splits=["train"], max_length=32,
                      progress=False)
    before = {p.name: p.read_bytes() for p in good.path.iterdir()}

    def die_before_rename(fd):  # the files are in the temporary directory, the rename never happens
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", die_before_rename)
    with pytest.raises(KeyboardInterrupt):
        prepare([spec], tokenizer=tokenizer, cache_dir=tmp_path, splits=["train"], max_length=32,
                force=True, progress=False)
    assert {p.name: p.read_bytes() for p in good.path.iterdir()} == before  # the previous entry is intact
    assert sorted(p for p in tmp_path.rglob("*") if p.is_file()) == sorted(good.path.iterdir())  # nothing left over


def test_bad_label_fails_before_anything_is_written(tmp_path, tokenizer):
    data = tmp_path / "data"
    (data / "ccg").mkdir(parents=True)
    (data / "ccg" / "tags.txt").write_text("N\nNP\n")
    (data / "ccg" / "train.jsonl").write_text('{"tokens": ["dogs", "bark"], "tags": ["N", "S\\\\NP"]}\n')
    with pytest.raises(StiltsError, match=r"ccg.*tag 'S\\\\NP' is not in the task's label set"):
        prepare([get_task("ccg")], tokenizer=tokenizer, cache_dir=tmp_path / "cache", data_dir=data,
                progress=False)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.features"))


def test_unknown_split_for_a_named_task(tmp_path, tokenizer):
    with pytest.raises(StiltsError, match="has no split 'train'"):
        prepare([get_task("tatoeba")], tokenizer=tokenizer, cache_dir=tmp_path, splits=["train"], progress=False)


def test_cache_key_depends_on_the_tokenizer_definition(tokenizer):
    fp = cache.tokenizer_fingerprint(tokenizer)
    assert len(fp) == 12 and fp == cache.tokenizer_fingerprint(tokenizer)
    tokenizer(["a b"], ["c"], truncation="longest_first", max_length=8, padding="max_length")
    assert cache.tokenizer_fingerprint(tokenizer) == fp  # call-time truncation/padding state is not identity


def test_quality_figures_name_what_to_look_at(tmp_path, tokenizer):
    """Each prepared split carries its format's quality figures, fresh or from the cache:
    rows cut at max length, sentences split into several rows; `stilts-ds prepare` prints
    them as a table."""
    from click.testing import CliRunner

    from stilts_ds.cli import main

    short = prepare([get_task("squad_v1"), get_task("panx"), get_task("xnli")], tokenizer=tokenizer,
                    cache_dir=tmp_path, splits=["validation"], langs=["en"], max_length=16, progress=False)
    by_task = {d.task: d.quality for d in short}
    assert by_task["xnli"]["rows"] == by_task["xnli"]["examples"] == 24 and by_task["xnli"]["truncated"] == 24
    assert by_task["panx"]["truncated"] == 0 and by_task["panx"]["split_examples"] > 0  # no word dropped
    squad = by_task["squad_v1"]  # windows cover every context: nothing truncated, every answer held
    assert squad["truncated"] == 0 and squad["answerable"] == 24 and squad["unlabelled_answers"] == 0
    again = prepare([get_task("xnli")], tokenizer=tokenizer, cache_dir=tmp_path, splits=["validation"],
                    langs=["en"], max_length=16, progress=False)
    assert again[0].reused and again[0].quality == by_task["xnli"]
    out = CliRunner().invoke(main, ["prepare", "--task", "panx", "--split", "validation", "--lang", "en",
                                    "--max-length", "16", "--cache-dir", str(tmp_path)])
    assert out.exit_code == 0, out.output
    assert f"| panx | validation | en | 24 | 30 | 0 | – | {by_task['panx']['split_examples']} | 0.0% |" in out.output


def test_span_qa_counts_answers_no_window_holds(tokenizer):
    """An answer longer than a window's context span labels no window: the question trains
    on nothing, and the quality figures say so (SQuAD JSON shape, one long answer, one
    one-character answer, Thai and CJK text)."""
    from stilts_ds.tasks.formats import format_of
    from stilts_ds.tasks.formats.span_qa import Example

    context = "กรุงเทพมหานคร คือ เมืองหลวง ของ ประเทศไทย และ 北京 是 中国 的 首都 . A B C D E F G H I J K L M N"
    long_answer = "A B C D E F G H I J K L M N"
    examples = [
        Example("q-long", "Which letters?", context, (long_answer,), (context.index(long_answer),)),
        Example("q-one", "Which letter first?", context, ("A",), (context.index("A "),)),
    ]
    fmt = format_of(get_task("squad_v1"))
    feats = fmt.featurize(get_task("squad_v1"), examples, tokenizer, 32)
    quality = fmt.quality(feats, 32)
    assert quality["answerable"] == 2 and quality["unlabelled_answers"] == 1, quality


def test_an_empty_answer_list_is_refused_at_prepare(tmp_path, tokenizer):
    """A SQuAD v1.1-style question with no answer is broken data: refused when featurized,
    naming the task, split, language and question, not after training when scoring fails.
    SQuAD v2 keeps its unanswerable questions."""
    import json

    row = {"id": "q-1", "title": "t", "context": "Ana paid 4 euros.", "question": "How much?",
           "answers": {"text": ["4"], "answer_start": [9]}}
    empty = {**row, "id": "q-2", "answers": {"text": [], "answer_start": []}}
    for task in ("squad_v1", "squad_v2"):
        (tmp_path / task).mkdir()
        (tmp_path / task / "validation.jsonl").write_text(json.dumps(row) + "\n" + json.dumps(empty) + "\n")
    with pytest.raises(StiltsError, match=r"task 'squad_v1' split 'validation' language 'en': 1 question\(s\) "
                                          r"have no answer, e.g. \['q-2'\]"):
        prepare([get_task("squad_v1")], tokenizer=tokenizer, cache_dir=tmp_path / "c", data_dir=tmp_path,
                splits=["validation"], progress=False)
    assert not list((tmp_path / "c").rglob("*.features"))
    (done,) = prepare([get_task("squad_v2")], tokenizer=tokenizer, cache_dir=tmp_path / "c", data_dir=tmp_path,
                      splits=["validation"], progress=False)
    assert done.examples == 2


def test_prepare_json_reports_quality_and_warns_on_unknown_tokens(tmp_path):
    """`stilts-ds prepare --json`: one object per split with the quality figures, also kept
    in the cache entry. Thai text through the bundled tokenizer (built from the fixtures,
    which hold no Thai) is mostly <unk>: a loud warning names the split."""
    import json

    from click.testing import CliRunner

    from stilts_ds.cli import main

    thai = [{"language": "th", "sentence1": "แมวนอนอยู่บนเสื่อสีแดงในบ้านหลังใหญ่",
             "sentence2": "แมวกำลังนอนหลับ", "gold_label": label}
            for label in ("entailment", "neutral", "contradiction")]
    (tmp_path / "data" / "xnli").mkdir(parents=True)
    (tmp_path / "data" / "xnli" / "test.th.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in thai), encoding="utf-8")
    out = CliRunner().invoke(main, ["prepare", "--task", "xnli", "--split", "test", "--lang", "th", "--json",
                                    "--data-dir", str(tmp_path / "data"), "--cache-dir", str(tmp_path / "c")])
    assert out.exit_code == 0, out.output
    (row,) = json.loads(out.stdout)
    assert {"task", "split", "lang", "examples", "rows", "truncated", "unlabelled_answers", "unk_rate"} <= set(row)
    assert (row["task"], row["lang"], row["examples"], row["unlabelled_answers"]) == ("xnli", "th", 3, None)
    assert row["unk_rate"] > 0.05
    assert "WARNING: xnli/test/th:" in out.stderr and "does not cover this language" in out.stderr
    assert cache.read(Path(row["path"])).extras["quality"]["unk_rate"] == row["unk_rate"]


def test_a_damaged_cache_entry_is_named_with_the_fix(tmp_path, tokenizer):
    """Entries may sit on shared storage that others write to: a truncated or foreign file is
    refused with its path and what to do, never half-read."""
    (entry,) = prepare([get_task("xnli")], tokenizer=tokenizer, cache_dir=tmp_path, splits=["test"], langs=["zh"],
                       progress=False)
    assert len(cache.read(entry.path)) == entry.rows  # a real entry reads
    rows = entry.path / cache.ROWS_FILE
    rows.write_bytes(rows.read_bytes()[:200])
    with pytest.raises(StiltsError, match=r"unreadable feature cache entry .*run `stilts-ds prepare` again"):
        cache.read(entry.path)
    rows.unlink()
    with pytest.raises(StiltsError, match=r"not a stilts-ds feature cache entry"):
        cache.read(entry.path)
