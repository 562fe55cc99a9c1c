"""`stilts-ds convert` for XNLI and PAWS-X (TSV), LASER Tatoeba (line-aligned pairs) and XCOPA.

The samples hold literal and unbalanced quote characters, a line separator (U+2028) inside a
sentence, BOMs and CRLF, PAWS-X's "NS" and empty rows, XTREME-R's Tatoeba languages, XCOPA's
val files beside its data-gmt translations, and English COPA.

    .venv/bin/python -m pytest -q tests/tasks/test_convert_pairs.py
"""
import json
import shutil
from pathlib import Path

import pytest

from stilts_ds.data.sources import load_examples
from stilts_ds.errors import DataFileError, StiltsError
from stilts_ds.tasks.convert import convert
from stilts_ds.tasks.formats import retrieval
from stilts_ds.tasks.registry import get_task

OFFICIAL = Path(__file__).resolve().parents[1] / "official"


def rows(path: Path) -> list[dict]:
    # Split at "\n" only: a row may hold U+2028, which str.splitlines would break at.
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line]


def nli(lang, s1, s2, label):
    return {"language": lang, "sentence1": s1, "sentence2": s2, "gold_label": label}


# ----------------------------------------------------------------------------- xnli
def test_xnli_rows_by_language_with_literal_quotes(tmp_path):
    done = convert("xnli", OFFICIAL / "xnli", tmp_path)
    d = tmp_path / "xnli"
    assert sorted(p.name for p in done.written) == [
        "test.ar.jsonl", "test.en.jsonl", "test.zh.jsonl", "train.en.jsonl", "validation.de.jsonl",
        "validation.en.jsonl", "validation.th.jsonl", "validation.zh.jsonl"]
    # xnli.dev.tsv starts with a BOM; an unbalanced quote does not swallow the next cells.
    assert rows(d / "validation.en.jsonl") == [
        nli("en", 'He said "no" and left the room.', "He left.", "entailment"),
        nli("en", 'The sign read "Closed. Nobody went in.', "The shop was open.", "contradiction")]
    assert rows(d / "validation.zh.jsonl") == [nli("zh", "他说“不”，然后离开了房间。", "他很生气。", "neutral")]
    assert rows(d / "validation.th.jsonl") == [nli("th", "ร้านปิดแล้ว", "ร้านเปิดอยู่", "contradiction")]
    # xnli.test.tsv has CRLF endings and a U+2028 inside a sentence (not a line break).
    assert rows(d / "test.en.jsonl") == [nli("en", "The ferry was late\u2028again.", "The captain was ill.", "neutral")]
    assert rows(d / "test.ar.jsonl") == [nli("ar", "وصلت العبارة متأخرة.", "العبارة تأخرت.", "entailment")]
    # XNLI-MT's English MultiNLI: "contradictory" becomes "contradiction", as XTREME maps it.
    assert rows(d / "train.en.jsonl") == [
        {"premise": 'The "old" mill still grinds corn .', "hypothesis": "The mill is in use .", "label": "entailment"},
        {"premise": "Nobody lives on the island .", "hypothesis": "The island is crowded .", "label": "contradiction"},
        {"premise": "The train left at nine .", "hypothesis": "The train was full .", "label": "neutral"}]
    examples = load_examples(get_task("xnli"), "validation", "en", source="local", data_dir=tmp_path)
    assert [(e.text_a, e.label) for e in examples] == [('He said "no" and left the room.', "entailment"),
                                                      ('The sign read "Closed. Nobody went in.', "contradiction")]
    train = load_examples(get_task("xnli"), "train", "en", source="local", data_dir=tmp_path)
    assert [e.label for e in train] == ["entailment", "contradiction", "neutral"]


def test_xnli_row_with_a_tab_inside_a_sentence(tmp_path):
    path = OFFICIAL / "bad" / "xnli_columns" / "xnli.dev.tsv"
    with pytest.raises(DataFileError, match="21 tab-separated columns, the header has 19") as e:
        convert("xnli", path.parent, tmp_path)
    assert str(e.value).startswith(f"{path}:3: ")
    other = tmp_path / "src" / "xnli.test.tsv"
    other.parent.mkdir()
    other.write_text("language\tgold_label\tsentence1\tsentence2\nxx\tneutral\ta\tb\n", encoding="utf-8")
    with pytest.raises(DataFileError, match=r"xnli\.test\.tsv:2: language 'xx' is not one of XNLI's"):
        convert("xnli", other, tmp_path / "data")
    other.write_text("language\tlabel\tsentence1\tsentence2\n", encoding="utf-8")
    with pytest.raises(DataFileError, match=r"xnli\.test\.tsv:1: the header has no column gold_label"):
        convert("xnli", other, tmp_path / "data")


# ----------------------------------------------------------------------------- pawsx
def paws(s1, s2, label):
    return {"sentence1": s1, "sentence2": s2, "label": label}


def test_pawsx_keeps_untranslated_rows_and_leaves_translated_train_out(tmp_path):
    done = convert("pawsx", OFFICIAL / "pawsx", tmp_path)
    d = tmp_path / "pawsx"
    assert sorted(p.name for p in done.written) == [
        "test.de.jsonl", "test.en.jsonl", "test.ja.jsonl", "train.en.jsonl", "validation.de.jsonl",
        "validation.en.jsonl"]
    assert rows(d / "validation.de.jsonl") == [paws("Anna traf Tom in Lyon.", "In Lyon traf Anna Tom.", "1"),
                                               paws("Die Straße führt weiter nach Westen.", "NS", "0")]
    assert rows(d / "test.de.jsonl") == [paws("Tom traf Anna in Lyon.", "Anna traf Tom in Lyon.", "0"),
                                         paws("", "", "1"),
                                         paws('Er nannte sie „die Alte".', 'Er nannte die Alte "sie.', "0")]
    assert rows(d / "train.en.jsonl")[2] == paws('He called the mill " the old one " .',
                                                 'He called the old mill " the one " .', "0")
    assert rows(d / "test.ja.jsonl") == [paws("アンナはリヨンでトムに会った。", "リヨンでアンナはトムに会った。", "1")]
    notes = "\n".join(done.notes)
    assert "dev_2k.tsv: kept 1 rows with a sentence 'NS' or empty" in notes
    assert "left out de/translated_train.tsv" in notes
    examples = load_examples(get_task("pawsx"), "test", "de", source="local", data_dir=tmp_path)
    assert [(e.text_a, e.text_b, e.label) for e in examples][1] == ("", "", "1")


def test_pawsx_row_with_a_missing_column(tmp_path):
    path = OFFICIAL / "bad" / "pawsx_columns" / "de" / "test_2k.tsv"
    with pytest.raises(DataFileError, match="3 tab-separated columns, the header has 4") as e:
        convert("pawsx", OFFICIAL / "bad" / "pawsx_columns", tmp_path)
    assert str(e.value).startswith(f"{path}:3: ")


# ----------------------------------------------------------------------------- tatoeba
def pair(src, trg, lang):
    return {"source_sentence": src, "target_sentence": trg, "source_lang": lang, "target_lang": "en"}


def test_tatoeba_iso3_codes_become_task_languages(tmp_path):
    done = convert("tatoeba", OFFICIAL / "tatoeba", tmp_path)
    d = tmp_path / "tatoeba"
    assert sorted(p.name for p in done.written) == ["test.de.jsonl", "test.pl.jsonl", "test.th.jsonl",
                                                    "test.zh.jsonl"]
    assert rows(d / "test.zh.jsonl") == [pair("我喜欢猫。", "I like cats.", "zh"),
                                         pair("他明天来。", "He is coming tomorrow.", "zh")]
    # BOM, CRLF, a U+2028 inside the sentence, trailing space stripped.
    assert rows(d / "test.de.jsonl") == [pair("Er sagte:\u2028„Komm morgen.“", 'He said: "Come tomorrow."', "de"),
                                         pair("Ich mag Katzen.", "I like cats.", "de")]
    assert rows(d / "test.pl.jsonl") == [pair("Lubię koty.", "I like cats.", "pl")]  # XTREME-R's pol
    assert any("yue" in n for n in done.notes)
    examples = load_examples(get_task("tatoeba"), "test", "th", source="local", data_dir=tmp_path)
    sources = [e for e in examples if e.side == retrieval.SOURCE]
    assert [(e.guid, e.text, e.gold) for e in sources] == [("src-0", "ฉันชอบแมว", "trg-0"),
                                                           ("src-1", "เขาจะมาพรุ่งนี้", "trg-1")]


def test_tatoeba_pair_with_different_line_counts(tmp_path):
    path = OFFICIAL / "bad" / "tatoeba_mismatch" / "tatoeba.deu-eng.deu"
    with pytest.raises(DataFileError, match="3 lines but tatoeba.deu-eng.eng has 2: line i of each file") as e:
        convert("tatoeba", path.parent, tmp_path)
    assert str(e.value).startswith(f"{path}:3: ")
    with pytest.raises(StiltsError, match=r"tatoeba\.deu-eng\.deu: its other half tatoeba\.deu-eng\.eng"):
        convert("tatoeba", path, tmp_path)
    assert not (tmp_path / "tatoeba").exists()


# ----------------------------------------------------------------------------- xcopa
def copa(premise, c1, c2, question, label, idx, changed=None):
    row = {"premise": premise, "choice1": c1, "choice2": c2, "question": question, "label": label, "idx": idx}
    return row if changed is None else {**row, "changed": changed}


def test_xcopa_val_test_and_english_copa(tmp_path):
    done = convert("xcopa", OFFICIAL / "xcopa", tmp_path)
    d = tmp_path / "xcopa"
    assert sorted(p.name for p in done.written) == ["test.th.jsonl", "test.zh.jsonl", "train.en.jsonl",
                                                    "validation.en.jsonl", "validation.th.jsonl",
                                                    "validation.zh.jsonl"]
    assert rows(d / "validation.zh.jsonl") == [
        copa("男孩把杯子掉在地上。", "杯子碎了。", "杯子变满了。", "effect", 0, 1, False),
        copa("我的手机没电了。", "我忘了充电。", "我买了新手机。", "cause", 0, 2, True)]
    # data-gmt/zh/test.zh.jsonl (English machine translation) is not read: the Chinese file is.
    assert rows(d / "test.zh.jsonl")[0]["premise"] == "河水上涨了。"
    assert rows(d / "validation.th.jsonl") == [copa("แมวหิว", "มันกินปลา", "มันนอนหลับ", "effect", 0, 1, False)]
    assert rows(d / "train.en.jsonl")[1] == copa("My phone died.", "I forgot to charge it.", "I bought a new phone.",
                                                 "cause", 0, 1)
    assert any("COPA/test.jsonl" in n and "hidden" in n for n in done.notes)
    examples = load_examples(get_task("xcopa"), "validation", "zh", source="local", data_dir=tmp_path)
    assert [(e.prompt, e.choices, e.label) for e in examples][0] == (
        "男孩把杯子掉在地上。 What was the effect?", ("杯子碎了。", "杯子变满了。"), 0)


def test_xcopa_output_inside_source_is_not_read_back(tmp_path):
    # XCOPA's official names (test.zh.jsonl) are also output names: a --data-dir inside SOURCE
    # must not be taken for a second copy of the official files on the next run.
    src = tmp_path / "xcopa"
    shutil.copytree(OFFICIAL / "xcopa", src)
    first = convert("xcopa", src, src / "data")
    again = convert("xcopa", src, src / "data")
    assert again.written == first.written and len(first.written) == 6
    assert rows(src / "data" / "xcopa" / "test.zh.jsonl")[0]["premise"] == "河水上涨了。"


def test_xcopa_bad_question(tmp_path):
    path = OFFICIAL / "bad" / "xcopa_question" / "data" / "zh" / "val.zh.jsonl"
    with pytest.raises(DataFileError, match="question must be 'cause' or 'effect', got 'why'") as e:
        convert("xcopa", OFFICIAL / "bad" / "xcopa_question", tmp_path)
    assert str(e.value).startswith(f"{path}:2: ")
