"""`stilts-ds convert`: the registry, the command line, finding official files, and the
converters that moved into stilts_ds.tasks.convert (BUCC 2018, XQuAD-R, Mewsli-X) with their
old entry points. The per-format tests are test_convert_qa.py, test_convert_tagging.py and
test_convert_pairs.py.

    .venv/bin/python -m pytest -q tests/tasks/test_convert*.py
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from stilts_ds.cli import main
from stilts_ds.data.sources import load_examples
from stilts_ds.errors import StiltsError
from stilts_ds.tasks import bucc_files, xtreme_r
from stilts_ds.tasks.convert import CONVERTERS, convert, converter_rows, get_converter
from stilts_ds.tasks.formats import retrieval
from stilts_ds.tasks.registry import TASKS, get_task

ROOT = Path(__file__).resolve().parents[2]
OFFICIAL = ROOT / "tests" / "official"


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line]


def test_every_converter_is_a_task_and_writes_its_files():
    assert list(CONVERTERS) == ["squad_v1", "squad_v2", "xquad", "mlqa", "tydiqa", "udpos", "panx", "tatoeba",
                                "xnli", "pawsx", "xcopa", "bucc", "lareqa", "mewslix"]
    for name, conv in CONVERTERS.items():
        assert name in TASKS
        assert conv.reads and conv.get and all(w.startswith(f"{name}/") for w in conv.writes), name
    by_name = {r["name"]: r for r in converter_rows()}
    assert by_name["xquad"]["reads"][0] == "xquad.<lang>.json"
    assert by_name["udpos"]["writes"] == ["udpos/train.en.jsonl", "udpos/validation.<lang>.jsonl",
                                          "udpos/test.<lang>.jsonl"]
    with pytest.raises(StiltsError, match=r"no converter for 'xqad'\. Did you mean 'xquad'\?"):
        get_converter("xqad")


def test_no_matching_files_says_what_was_looked_for(tmp_path):
    with pytest.raises(StiltsError, match=r"no PAWS-X files found: looked for <lang>/dev_2k\.tsv; <lang>/test_2k\.tsv; "
                                          r"en/train\.tsv \(none under .*official/xnli\)"):
        convert("pawsx", OFFICIAL / "xnli", tmp_path)
    with pytest.raises(StiltsError, match=r"xnli\.dev\.tsv is not one of them"):
        convert("tatoeba", OFFICIAL / "xnli" / "XNLI-1.0" / "xnli.dev.tsv", tmp_path)
    with pytest.raises(StiltsError, match=r"nope does not exist: no XNLI files to read there"):
        convert("xnli", tmp_path / "nope", tmp_path)
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- the command line
def test_cli_list_convert_and_prepare(tmp_path):
    runner = CliRunner()
    listed = runner.invoke(main, ["convert", "--list"])
    assert listed.exit_code == 0, listed.output
    lines = listed.stdout.splitlines()
    assert lines[0] == "| task | distribution | reads | writes | get |" and len(lines) == 2 + len(CONVERTERS)
    assert any(line.startswith("| udpos | Universal Dependencies CoNLL-U | <lang>_<treebank>-ud-") for line in lines)
    one = runner.invoke(main, ["convert", "tatoeba", "--list"])
    assert one.exit_code == 0 and len(one.stdout.splitlines()) == 3 and "tatoeba.<iso3>-eng.<iso3>" in one.stdout

    data = tmp_path / "data"
    done = runner.invoke(main, ["convert", "xquad", str(OFFICIAL / "xquad"), "--data-dir", str(data)])
    assert done.exit_code == 0, done.output
    assert done.stdout.splitlines() == [str(data / "xquad" / f"test.{lang}.jsonl") for lang in ("de", "th", "zh")]
    notes = runner.invoke(main, ["convert", "mlqa", str(OFFICIAL / "mlqa"), "--data-dir", str(data)])
    assert notes.exit_code == 0 and notes.stderr.startswith("note: left out 1 cross-lingual MLQA files")
    assert len(notes.stdout.splitlines()) == 5
    # What --data-dir then reads.
    prepared = runner.invoke(main, ["prepare", "--task", "xquad", "--data-dir", str(data), "--cache-dir",
                                    str(tmp_path / "cache"), "--json"])
    assert prepared.exit_code == 0, prepared.output
    got = {(r["split"], r["lang"]): r["examples"] for r in json.loads(prepared.stdout)}
    assert got == {("test", "de"): 3, ("test", "th"): 3, ("test", "zh"): 3}


def test_cli_bad_input_exits_2_naming_file_and_line(tmp_path):
    path = OFFICIAL / "bad" / "tatoeba_mismatch" / "tatoeba.deu-eng.deu"
    out = CliRunner().invoke(main, ["convert", "tatoeba", str(path.parent), "--data-dir", str(tmp_path)])
    assert out.exit_code == 2 and out.stderr.startswith(f"error: {path}:3: 3 lines but tatoeba.deu-eng.eng has 2")
    assert out.stdout == "" and list(tmp_path.iterdir()) == []
    missing = CliRunner().invoke(main, ["convert", "xquad", str(OFFICIAL / "xquad")])
    assert missing.exit_code == 2 and "usage: stilts-ds convert TASK SOURCE --data-dir DIR" in missing.stderr


# ----------------------------------------------------------------------------- BUCC 2018
def test_bucc_rows_and_the_old_entry_point(tmp_path):
    done = convert("bucc", OFFICIAL / "bucc", tmp_path / "a")
    assert [p.relative_to(tmp_path / "a").as_posix() for p in done.written] == ["bucc/validation.de.jsonl",
                                                                                "bucc/test.zh.jsonl"]
    de = rows(done.written[0])
    assert [(r["source_id"], r["target_id"]) for r in de] == [
        ("de-000001", "en-000003"), ("de-000003", "en-000001"), ("de-000002", ""), ("", "en-000002")]
    # zh-en.training.zh: a BOM and CRLF, neither in the ids nor the sentences.
    assert rows(done.written[1])[0] == {"source_sentence": "房子很旧。", "target_sentence": "The house is old.",
                                        "source_lang": "zh", "target_lang": "en", "source_id": "zh-000001",
                                        "target_id": "en-000002"}
    examples = load_examples(get_task("bucc"), "test", "zh", source="local", data_dir=tmp_path / "a")
    assert {e.guid: e.gold for e in examples if e.side == retrieval.SOURCE} == {"zh-000001": "en-000002",
                                                                               "zh-000002": "en-000001"}
    # python -m stilts_ds.tasks.bucc_files and bucc_files.convert: the same files.
    assert bucc_files.convert(OFFICIAL / "bucc", tmp_path / "b") == [tmp_path / "b" / "bucc" / "validation.de.jsonl",
                                                                    tmp_path / "b" / "bucc" / "test.zh.jsonl"]
    run = subprocess.run([sys.executable, "-m", "stilts_ds.tasks.bucc_files", str(OFFICIAL / "bucc"),
                          str(tmp_path / "c")], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [str(tmp_path / "c" / "bucc" / "validation.de.jsonl"),
                                       str(tmp_path / "c" / "bucc" / "test.zh.jsonl")]
    assert (tmp_path / "c" / "bucc" / "test.zh.jsonl").read_bytes() == done.written[1].read_bytes()


# ----------------------------------------------------------------------------- XQuAD-R, Mewsli-X
def test_lareqa_every_file_holds_the_whole_pool(tmp_path):
    done = convert("lareqa", OFFICIAL / "lareqa", tmp_path)
    assert [p.name for p in done.written] == [f"test.{lang}.jsonl" for lang in xtreme_r.LAREQA_LANGS]
    first = rows(done.written[0])
    assert [r["context_id"] for r in first] == [f"{lang}_1" for lang in xtreme_r.LAREQA_LANGS]
    assert all(rows(p) == first for p in done.written)
    th = next(r for r in first if r["lang"] == "th")
    assert th["context"] == "ประภาคารสร้างในปี 1874 สูง 31 เมตร" and th["sentence_breaks"] == [[0, 22], [23, 34]]
    examples = load_examples(get_task("lareqa"), "test", "de", source="local", data_dir=tmp_path)
    queries = [e for e in examples if e.side == retrieval.SOURCE]
    assert [(q.guid, q.text, q.wants) for q in queries] == [("lq-1_de", "Wie hoch ist der Leuchtturm?", "lq-1")]
    assert len([e for e in examples if e.side == retrieval.TARGET]) == 22  # 2 sentences x 11 languages
    assert xtreme_r.convert("lareqa", OFFICIAL / "lareqa", tmp_path / "old") == [
        tmp_path / "old" / "lareqa" / f"test.{lang}.jsonl" for lang in xtreme_r.LAREQA_LANGS]
    with pytest.raises(StiltsError, match=r"de\.json: no ar\.json, el\.json, en\.json, .*, zh\.json; the answer pool "
                                          r"spans all eleven"):
        convert("lareqa", OFFICIAL / "lareqa" / "xquad-r" / "de.json", tmp_path / "one")


def test_mewslix_mentions_per_language_then_all_candidates(tmp_path):
    done = convert("mewslix", OFFICIAL / "mewslix", tmp_path)
    assert [p.name for p in done.written] == [f"test.{lang}.jsonl" for lang in xtreme_r.MEWSLIX_LANGS]
    de = rows(tmp_path / "mewslix" / "test.de.jsonl")
    assert [r.get("entity_id") or r["context"]["language"] for r in de] == ["de", "Q900001", "Q900002"]
    assert [r.get("entity_id") for r in rows(tmp_path / "mewslix" / "test.en.jsonl")] == ["Q900001", "Q900002"]
    assert any("left out 1 rows" in n for n in done.notes)  # the nl mention
    examples = load_examples(get_task("mewslix"), "test", "ja", source="local", data_dir=tmp_path)
    query = next(e for e in examples if e.side == retrieval.SOURCE)
    assert (query.guid, query.wants, query.text) == ("m-ja-1", "Q900001", "レイヴンポート: 灯台は { レイヴンポート } にある。")
    run = subprocess.run([sys.executable, "-m", "stilts_ds.tasks.xtreme_r", "mewslix", str(OFFICIAL / "mewslix"),
                          str(tmp_path / "old")], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert len(run.stdout.splitlines()) == 11
    with pytest.raises(ValueError, match="convert lareqa or mewslix"):
        xtreme_r.convert("xquad", OFFICIAL / "xquad", tmp_path)


def test_local_only_help_names_the_convert_command():
    for name in ("lareqa", "mewslix"):
        help_text = get_task(name).local_only_help
        assert f"`stilts-ds convert {name} " in help_text and "--data-dir" in help_text
        assert "python -m" not in help_text
