"""`stilts-ds convert` for SQuAD-format JSON: squad_v1, squad_v2, xquad, mlqa, tydiqa.

The samples under tests/official/ are written for these tests in the official layouts (one
character answers, CJK, Thai, a very long word, a BOM with CRLF, an unanswerable SQuAD 2.0
question, MLQA's cross-lingual files, TyDiQA's per-language and combined dev files); the
bad inputs sit in tests/official/bad/.

    .venv/bin/python -m pytest -q tests/tasks/test_convert_qa.py
"""
import json
from pathlib import Path

import pytest

from stilts_ds.data.prepare import prepare
from stilts_ds.data.sources import load_examples
from stilts_ds.errors import DataFileError, StiltsError
from stilts_ds.tasks.convert import convert
from stilts_ds.tasks.registry import get_task

OFFICIAL = Path(__file__).resolve().parents[1] / "official"
LONG = "Donaudampfschifffahrtselektrizitätenhauptbetriebswerkbauunterbeamtengesellschaft"


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def qa(qid, title, context, question, texts, starts):
    return {"id": qid, "title": title, "context": context, "question": question,
            "answers": {"text": texts, "answer_start": starts}}


def test_squad_v1_rows_one_character_answer_and_three_annotators(tmp_path):
    done = convert("squad_v1", OFFICIAL / "squad", tmp_path)
    assert done.written == [tmp_path / "squad_v1" / "train.jsonl", tmp_path / "squad_v1" / "validation.jsonl"]
    train = rows(done.written[0])
    assert [r["id"] for r in train] == ["sq1-t1", "sq1-t2", "sq1-t3", "sq1-t4"]
    assert train[3] == qa("sq1-t4", "Blood_type", "Mira has blood type O, and her brother has type B.",
                          "Which blood type does Mira's brother have?", ["B"], [48])
    assert train[1]["answers"] == {"text": ["whale oil"], "answer_start": [79]}
    assert train[2]["title"] == "Ravenport_Lighthouse"
    dev = rows(done.written[1])
    tower = "The tower is 31 metres tall and painted in red and white bands."
    assert dev == [qa("sq1-d1", "Ravenport_Lighthouse", tower, "How tall is the tower?", ["31 metres", "31 metres", "31"],
                      [13, 13, 13])]
    # What the task reads: the span-QA reader takes the rows as they are.
    examples = load_examples(get_task("squad_v1"), "train", source="local", data_dir=tmp_path)
    assert [(e.guid, e.answers, e.answer_starts) for e in examples][3] == ("sq1-t4", ("B",), (48,))
    assert examples[3].context[48] == "B"


def test_squad_v2_keeps_unanswerable_questions_with_empty_answers(tmp_path):
    done = convert("squad_v2", OFFICIAL / "squad", tmp_path)
    train, dev = (rows(p) for p in done.written)
    assert train[1] == qa("sq2-t2", "Hollin_Canal", "The Hollin canal opened in 1799 and carried coal to the coast.",
                          "When did the Hollin canal close?", [], [])
    assert train[0]["answers"] == {"text": ["1799"], "answer_start": [27]}
    assert [r["answers"]["text"] for r in dev] == [["horses", "horses"], []]
    examples = load_examples(get_task("squad_v2"), "validation", source="local", data_dir=tmp_path)
    assert [(e.guid, e.answers) for e in examples] == [("sq2-d1", ("horses", "horses")), ("sq2-d2", ())]


def test_xquad_cjk_thai_long_word_bom_crlf_then_prepare(tmp_path, tokenizer):
    done = convert("xquad", OFFICIAL / "xquad", tmp_path)
    assert [p.name for p in done.written] == ["test.de.jsonl", "test.th.jsonl", "test.zh.jsonl"]
    de, th, zh = (rows(p) for p in done.written)
    assert de[0]["answers"] == {"text": [LONG], "answer_start": [4]}
    assert zh[1] == qa("xq-2", "发电厂", "发电厂于1829年在维也纳建成。工人们每天早上喂一只猫。", "工人们每天早上喂什么？",
                       ["猫"], [26])
    # xquad.th.json has a byte-order mark and CRLF line endings: neither reaches the rows.
    assert th[0]["title"] == "โรงไฟฟ้า" and not th[0]["title"].startswith("\ufeff")
    assert th[0]["answers"] == {"text": ["กรุงเวียนนา"], "answer_start": [30]}
    assert [r["id"] for r in th] == ["xq-1", "xq-2", "xq-3"]
    assert all(r["context"][s:s + len(t)] == t for r in de + th + zh
               for t, s in zip(r["answers"]["text"], r["answers"]["answer_start"]))
    # SQuAD v1.1 is XQuAD's English train and dev set: a second conversion adds them.
    more = convert("xquad", OFFICIAL / "squad", tmp_path)
    assert more.written == [tmp_path / "xquad" / "train.en.jsonl", tmp_path / "xquad" / "validation.en.jsonl"]
    assert [r["id"] for r in rows(more.written[0])] == ["sq1-t1", "sq1-t2", "sq1-t3", "sq1-t4"]
    # Featurized as `stilts-ds prepare --task xquad --data-dir` does it.
    done = prepare([get_task("xquad")], tokenizer=tokenizer, cache_dir=tmp_path / "cache", source="local",
                   data_dir=tmp_path, progress=False)
    got = {(d.split, d.lang): d.examples for d in done}
    assert got == {("train", "en"): 4, ("validation", "en"): 1, ("test", "de"): 3, ("test", "th"): 3,
                   ("test", "zh"): 3}
    assert all(d.quality["unlabelled_answers"] == 0 for d in done)


def test_mlqa_same_language_pairs_and_squad_train(tmp_path):
    done = convert("mlqa", OFFICIAL / "mlqa", tmp_path)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in done.written) == [
        "mlqa/test.ar.jsonl", "mlqa/test.de.jsonl", "mlqa/test.zh.jsonl", "mlqa/validation.de.jsonl",
        "mlqa/validation.en.jsonl"]
    assert any("cross-lingual" in n and "dev-context-de-question-en.json" in n for n in done.notes)
    assert rows(tmp_path / "mlqa" / "validation.de.jsonl") == [qa(
        "mlqa-d-de-1", "Orla", "Der Fluss Orla tritt jeden Frühling über die Ufer. Danach pflanzen die Bauern Reis.",
        "Was pflanzen die Bauern?", ["Reis"], [78])]
    assert rows(tmp_path / "mlqa" / "test.ar.jsonl")[0]["answers"] == {"text": ["الفولاذ"], "answer_start": [50]}
    assert [r["answers"]["text"] for r in rows(tmp_path / "mlqa" / "test.zh.jsonl")] == [["钢"]]
    squad = convert("mlqa", OFFICIAL / "squad", tmp_path)
    assert squad.written == [tmp_path / "mlqa" / "train.en.jsonl"]
    assert any("dev-v1.1.json: not used by mlqa" in n for n in squad.notes)
    examples = load_examples(get_task("mlqa"), "test", "de", source="local", data_dir=tmp_path)
    assert [(e.guid, e.answers) for e in examples] == [("mlqa-t-de-1", ("212 Meter",)), ("mlqa-t-de-2", ("Stahl",))]


def test_tydiqa_english_train_and_dev_per_language(tmp_path):
    done = convert("tydiqa", OFFICIAL / "tydiqa", tmp_path)
    names = sorted(p.name for p in done.written)
    assert names == ["test.en.jsonl", "test.ko.jsonl", "test.sw.jsonl", "train.en.jsonl", "validation.en.jsonl"]
    train = rows(tmp_path / "tydiqa" / "train.en.jsonl")
    assert [(r["id"], r["answers"]["text"]) for r in train] == [("english-1001-0", ["2,914 metres"]),
                                                               ("english-1002-0", ["Ilse Brandt"])]
    assert any("kept its 2 English questions" in n and "the 2 in other languages" in n for n in done.notes)
    # English dev = English test; the per-language file is read, not its copy in the combined file.
    assert rows(tmp_path / "tydiqa" / "test.en.jsonl") == rows(tmp_path / "tydiqa" / "validation.en.jsonl")
    assert [r["id"] for r in rows(tmp_path / "tydiqa" / "test.en.jsonl")] == ["english-9001-0", "english-9002-0"]
    assert [r["id"] for r in rows(tmp_path / "tydiqa" / "test.ko.jsonl")] == ["korean-9201-0"]
    assert rows(tmp_path / "tydiqa" / "test.sw.jsonl")[0]["answers"]["text"] == ["wakati wa baridi kali"]
    # The ids keep their language prefix, which the hub filter (HubPart.id_prefix) also reads.
    examples = load_examples(get_task("tydiqa"), "test", "ko", source="local", data_dir=tmp_path)
    assert [(e.guid, e.answers) for e in examples] == [("korean-9201-0", ("대부분의 겨울",))]


# ----------------------------------------------------------------------------- bad input
def test_duplicate_ids_name_both_lines(tmp_path):
    path = OFFICIAL / "bad" / "squad_duplicate_ids" / "xquad.de.json"
    with pytest.raises(DataFileError) as e:
        convert("xquad", path.parent, tmp_path)
    assert str(e.value).startswith(f"{path}:33: data[0].paragraphs[1].qas[0] (id 'xq-dup'): duplicate question id")
    assert f"first at {path}:18 (xquad test de)" in str(e.value)
    assert not (tmp_path / "xquad").exists()


def test_answer_start_that_misses_its_text(tmp_path):
    path = OFFICIAL / "bad" / "squad_answer_start" / "xquad.zh.json"
    with pytest.raises(DataFileError, match=r"answer 0 '1921' is not at answer_start 4: the context has '921年'") as e:
        convert("xquad", path, tmp_path)
    assert str(e.value).startswith(f"{path}:18: ")


def test_answers_blanked_by_xtremes_download_script(tmp_path):
    path = OFFICIAL / "bad" / "squad_blanked" / "xquad.de.json"
    with pytest.raises(DataFileError, match="remove_qa_test_annotations") as e:
        convert("xquad", path.parent, tmp_path)
    assert str(e.value).startswith(f"{path}:1: data[0].paragraphs[0].qas[0] (id 'xq-b1'): answer 0 is empty")


def test_unanswerable_question_outside_squad_v2(tmp_path):
    path = OFFICIAL / "bad" / "squad_impossible_in_v1" / "dev-v1.1.json"
    with pytest.raises(DataFileError, match="`stilts-ds convert squad_v2`") as e:
        convert("squad_v1", path.parent, tmp_path)
    assert str(e.value).startswith(f"{path}:23: data[0].paragraphs[0].qas[1] (id 'sq1-x2'): is_impossible")


def test_broken_json_and_a_non_squad_file(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    text = (OFFICIAL / "xquad" / "xquad.de.json").read_text(encoding="utf-8")
    (src / "xquad.de.json").write_text(text[:200], encoding="utf-8")  # cut mid-file
    with pytest.raises(DataFileError, match=r"xquad\.de\.json:\d+: not valid JSON"):
        convert("xquad", src, tmp_path / "data")
    (src / "xquad.de.json").write_text('{"version": "1", "rows": []}', encoding="utf-8")
    with pytest.raises(DataFileError, match=r"xquad\.de\.json:1: not a SQuAD-format file"):
        convert("xquad", src, tmp_path / "data")


def test_a_failed_conversion_writes_nothing_and_keeps_what_was_there(tmp_path):
    data = tmp_path / "data"
    convert("xquad", OFFICIAL / "xquad" / "xquad.de.json", data)
    before = (data / "xquad" / "test.de.jsonl").read_bytes()
    src = tmp_path / "src"
    src.mkdir()
    # A good file read first, then a bad one: the good one's output must not appear either.
    (src / "xquad.ar.json").write_bytes((OFFICIAL / "xquad" / "xquad.zh.json").read_bytes())
    (src / "xquad.de.json").write_bytes((OFFICIAL / "xquad" / "xquad.de.json").read_bytes())
    (src / "xquad.zh.json").write_bytes((OFFICIAL / "bad" / "squad_answer_start" / "xquad.zh.json").read_bytes())
    with pytest.raises(DataFileError, match="xquad.zh.json:18"):
        convert("xquad", src, data)
    assert sorted(p.name for p in (data / "xquad").iterdir()) == ["test.de.jsonl"]  # no test.ar, no temp files
    assert (data / "xquad" / "test.de.jsonl").read_bytes() == before


def test_two_copies_of_one_official_file_are_refused(tmp_path):
    src = tmp_path / "src"
    for d in ("a", "b"):
        (src / d).mkdir(parents=True)
        (src / d / "xquad.de.json").write_bytes((OFFICIAL / "xquad" / "xquad.de.json").read_bytes())
    with pytest.raises(StiltsError, match=r"two copies of one official file: .*a/xquad\.de\.json and "
                                          r".*b/xquad\.de\.json"):
        convert("xquad", src, tmp_path / "data")
