"""Local loading: bad lines are named by file and line; labels are checked."""
import json

import pytest

from stilts_ds.data import sources
from stilts_ds.data.sources import load_examples
from stilts_ds.errors import DataFileError
from stilts_ds.tasks.registry import get_task


def _write(root, rel, lines):
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


GOOD = json.dumps({"premise": "A man sleeps.", "hypothesis": "A man rests.", "label": 0, "idx": 0})


def test_malformed_json_line_is_named(tmp_path):
    path = _write(tmp_path, "mnli/train.jsonl", [GOOD, "", '{"premise": "x", "hypothesis": ', GOOD])
    with pytest.raises(DataFileError, match=rf"{path}:3: not valid JSON"):
        load_examples(get_task("mnli"), "train", data_dir=tmp_path)


def test_non_object_line_is_named(tmp_path):
    path = _write(tmp_path, "mnli/train.jsonl", [GOOD, "[1, 2]"])
    with pytest.raises(DataFileError, match=rf"{path}:2: expected a JSON object, got list"):
        load_examples(get_task("mnli"), "train", data_dir=tmp_path)


def test_missing_field_is_named(tmp_path):
    path = _write(tmp_path, "mnli/train.jsonl", [json.dumps({"premise": "x", "label": 1})])
    with pytest.raises(DataFileError, match=rf"{path}:1: missing field 'hypothesis'"):
        load_examples(get_task("mnli"), "train", data_dir=tmp_path)


@pytest.mark.parametrize("label", [3, "maybe"])
def test_label_outside_the_label_set(tmp_path, label):
    row = json.dumps({"premise": "x", "hypothesis": "y", "label": label})
    path = _write(tmp_path, "mnli/validation.jsonl", [GOOD, row])
    with pytest.raises(DataFileError, match=rf"{path}:2: task 'mnli': label"):
        load_examples(get_task("mnli"), "validation", data_dir=tmp_path)


def test_pawsx_label_outside_set(tmp_path):
    row = json.dumps({"sentence1": "a", "sentence2": "b", "label": "2"})
    path = _write(tmp_path, "pawsx/test.de.jsonl", [row])
    with pytest.raises(DataFileError, match=rf"{path}:1: .*'2' is not one of"):
        load_examples(get_task("pawsx"), "test", "de", data_dir=tmp_path)


def test_missing_local_file_says_where_and_what(tmp_path):
    with pytest.raises(DataFileError, match=r"xnli/test\.de\.jsonl: missing.*google/xtreme"):
        load_examples(get_task("xnli"), "test", "de", data_dir=tmp_path)


def test_hub_ids_are_mapped_to_label_names(tmp_path):
    _write(tmp_path, "udpos/test.de.jsonl", [json.dumps({"tokens": ["Hallo", "."], "pos_tags": [5, "PUNCT"]})])
    (ex,) = load_examples(get_task("udpos"), "test", "de", data_dir=tmp_path)
    assert ex.tags == ("DET", "PUNCT")


def test_every_fixture_split_loads(fixtures_dir):
    from stilts_ds.data.sources import local_splits
    from stilts_ds.tasks.registry import TASKS

    for spec in TASKS.values():
        pairs = local_splits(spec, fixtures_dir)
        assert pairs, spec.name
        for split, lang in pairs:
            assert load_examples(spec, split, lang), (spec.name, split, lang)
        if spec.kind == "xtreme" and spec.name != "xcopa":  # no XCOPA language but zh is renderable
            langs = {lang for _, lang in pairs if lang != "en"}
            assert len(langs) >= 3, (spec.name, langs)


def test_hub_part_reads_one_config_folder_of_a_parquet_conversion(tmp_path, monkeypatch):
    # The layout of a repository's refs/convert/parquet branch: <config>/<split>/*.parquet and
    # no config list. aps/super_glue's COPA is read there by folder (HubPart.data_dir); a
    # local directory in that layout goes through the same datasets code path.
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    from stilts_ds.tasks.spec import HubPart
    from stilts_ds.tasks.xtreme_r import xcopa

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    copa = {"premise": ["The man fell.", "It rained."], "choice1": ["He slipped.", "We stayed in."],
            "choice2": ["He sang.", "We swam."], "question": ["cause", "effect"], "idx": [0, 1], "label": [0, 0]}
    for folder, table in (("copa/train", copa), ("boolq/train", {"question": ["q"], "passage": ["p"], "label": [1]})):
        (tmp_path / "repo" / folder).mkdir(parents=True)
        pq.write_table(pa.table(table), tmp_path / "repo" / folder / "0000.parquet")
    part = HubPart(str(tmp_path / "repo"), None, "train", data_dir="copa")
    rows = list(sources._hub_rows(part))
    assert [r["premise"] for _, r in rows] == copa["premise"]
    assert xcopa(rows[0][1], "train", "en", 0).prompt == "The man fell. What was the cause?"


SQUAD_ROW = {"id": "q-1", "title": "Ana", "context": "Ana paid $4 in 北京.", "question": "How much?",
             "answers": {"text": ["4"], "answer_start": [10]}}


def test_a_byte_order_mark_is_accepted(tmp_path):
    """Windows editors start UTF-8 files with a BOM: it is not part of the first row."""
    path = tmp_path / "squad_v1" / "validation.jsonl"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(SQUAD_ROW, ensure_ascii=False).encode("utf-8") + b"\n")
    (ex,) = load_examples(get_task("squad_v1"), "validation", data_dir=tmp_path)
    assert ex.guid == "q-1" and ex.answers == ("4",) and ex.context.endswith("北京.")


def test_bytes_that_are_not_utf8_are_named_with_their_line(tmp_path):
    path = tmp_path / "squad_v1" / "validation.jsonl"
    path.parent.mkdir(parents=True)
    latin1 = json.dumps({**SQUAD_ROW, "id": "q-2", "context": "Caf\u00e9 4"}, ensure_ascii=False).encode("latin-1")
    path.write_bytes(json.dumps(SQUAD_ROW).encode() + b"\n" + latin1 + b"\n")
    with pytest.raises(DataFileError, match=r"validation.jsonl:2: not UTF-8 \(byte 0xe9 .*iconv"):
        load_examples(get_task("squad_v1"), "validation", data_dir=tmp_path)


def test_a_null_field_is_named_with_its_line(tmp_path):
    _write(tmp_path, "mnli/train.jsonl", [GOOD, json.dumps({"premise": None, "hypothesis": "y", "label": 1})])
    with pytest.raises(DataFileError, match=r"train.jsonl:2: task 'mnli': null field\(s\) \['premise'\] for \['text_a'\]"):
        load_examples(get_task("mnli"), "train", data_dir=tmp_path)


def test_duplicate_ids_are_refused_however_far_apart(tmp_path):
    """A later row with an earlier row's id used to overwrite its context and references
    when the two fell in different 2,000-row featurizing chunks; now the split is refused,
    naming both lines."""
    rows = [json.dumps({**SQUAD_ROW, "id": f"q-{i}"}, ensure_ascii=False) for i in range(2500)]
    rows.append(json.dumps({**SQUAD_ROW, "id": "q-7", "context": "Other text, 4 here."}, ensure_ascii=False))
    _write(tmp_path, "squad_v1/validation.jsonl", rows)
    with pytest.raises(DataFileError, match=r"validation.jsonl:2501: duplicate id 'q-7' \(first read at 8\)"):
        load_examples(get_task("squad_v1"), "validation", data_dir=tmp_path)


def test_a_line_of_megabytes_is_named_not_cut_unseen(tmp_path):
    """A 10 MB line (line breaks lost in a conversion) loads as one example, with a warning
    naming file:line and its size; `stilts-ds prepare` prints it on stderr."""
    import subprocess
    import sys

    from stilts_ds.errors import DataWarning

    (tmp_path / "xnli").mkdir()
    huge = {"sentence1": "word " * (2 * 1024 * 1024), "sentence2": "short", "gold_label": "neutral"}
    path = tmp_path / "xnli" / "test.en.jsonl"
    path.write_text(json.dumps({"sentence1": "a", "sentence2": "b", "gold_label": "neutral"}) + "\n"
                    + json.dumps(huge) + "\n")
    with pytest.warns(DataWarning, match=rf"{path}:2: a line of 10.0 MiB: one example only keeps its first "
                                         r"max_length tokens.*line breaks were lost"):
        examples = load_examples(get_task("xnli"), "test", "en", source="local", data_dir=tmp_path)
    assert len(examples) == 2 and len(examples[1].text_a) == 10 * 2**20
    done = subprocess.run([sys.executable, "-m", "stilts_ds.cli", "prepare", "--task", "xnli", "--split", "test",
                           "--lang", "en", "--data-dir", str(tmp_path), "--cache-dir", str(tmp_path / "cache"),
                           "--max-length", "16", "--json"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"WARNING: {path}:2: a line of 10.0 MiB" in done.stderr
    (row,) = json.loads(done.stdout)
    assert row["truncated"] == 1 and row["examples"] == 2
