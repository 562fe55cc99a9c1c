"""`stilts-ds convert` for the tagging distributions: UD CoNLL-U (udpos) and PAN-X (panx).

The CoNLL-U samples (tests/official/udpos/ud-treebanks-v2.5/) hold comments, an empty node,
French and Spanish multi-word tokens, two English test treebanks, a treebank without its text,
Vietnamese words with spaces, a Persian zero-width non-joiner, a BOM with CRLF, and a language
udpos lacks; the PAN-X samples all three layouts of the distribution.

    .venv/bin/python -m pytest -q tests/tasks/test_convert_tagging.py
"""
import io
import json
import tarfile
from pathlib import Path

import pytest

from stilts_ds.data.prepare import prepare
from stilts_ds.data.sources import load_examples
from stilts_ds.errors import DataFileError, StiltsError
from stilts_ds.tasks.convert import convert
from stilts_ds.tasks.convert.conllu import read_conllu
from stilts_ds.tasks.registry import get_task

OFFICIAL = Path(__file__).resolve().parents[1] / "official"
UD = OFFICIAL / "udpos" / "ud-treebanks-v2.5"
BANGKOK = ("กรุงเทพมหานครอมรรัตนโกสินทร์มหินทรายุธยามหาดิลกภพนพรัตน์ราชธานีบุรีรมย์"
           "อุดมราชนิเวศน์มหาสถานอมรพิมานอวตารสถิตสักกะทัตติยวิษณุกรรมประสิทธิ์")


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def pos(tokens, tags):
    return {"tokens": tokens.split(), "pos_tags": tags.split()}


# ----------------------------------------------------------------------------- udpos
def test_udpos_rows_as_xtreme_builds_them(tmp_path):
    done = convert("udpos", OFFICIAL / "udpos", tmp_path)
    d = tmp_path / "udpos"
    assert sorted(p.name for p in done.written) == [
        "test.en.jsonl", "test.es.jsonl", "test.fa.jsonl", "test.fr.jsonl", "test.th.jsonl", "test.vi.jsonl",
        "test.zh.jsonl", "train.en.jsonl", "validation.en.jsonl"]
    # Comments dropped; the empty node 2.1 is not a word.
    assert rows(d / "train.en.jsonl") == [
        pos("The ferry leaves at noon .", "DET NOUN VERB ADP NOUN PUNCT"),
        pos("Anna bought bread and Tom cheese .", "PROPN VERB NOUN CCONJ PROPN NOUN PUNCT")]
    # BOM + CRLF
    assert rows(d / "validation.en.jsonl") == [pos("Where is it ?", "ADV AUX PRON PUNCT")]
    # Two treebanks joined in file-name order (en_ewt, then en_pud); a very long word kept whole.
    assert rows(d / "test.en.jsonl") == [
        pos("Pneumonoultramicroscopicsilicovolcanoconiosis is rare .", "NOUN AUX ADJ PUNCT"),
        pos("Ships sail .", "NOUN VERB PUNCT")]
    # Multi-word tokens: "au" = à + le and "du" = de + le (equally deep: French's list ranks ADP
    # first); "dárselo" = dar + se + lo (the verb heads the others).
    assert rows(d / "test.fr.jsonl") == [pos("Il va au marché du village .", "PRON VERB ADP NOUN ADP NOUN PUNCT")]
    assert rows(d / "test.es.jsonl") == [pos("Vamos a dárselo mañana .", "AUX ADP VERB ADV PUNCT")]
    assert rows(d / "test.zh.jsonl") == [pos("我 的 猫 很 小 。", "PRON PART NOUN ADV ADJ PUNCT")]
    assert rows(d / "test.th.jsonl") == [pos("แมว กิน ปลา", "NOUN VERB NOUN")]
    # Spaces inside Vietnamese words and the Persian ZWNJ removed, as XTREME removes them.
    assert rows(d / "test.vi.jsonl") == [{"tokens": ["HàNội", "là", "thủđô", "lớn", "."],
                                          "pos_tags": ["PROPN", "AUX", "NOUN", "ADJ", "PUNCT"]}]
    assert rows(d / "test.fa.jsonl")[0]["tokens"] == ["من", "به", "خانه", "میروم", "."]
    notes = "\n".join(done.notes)
    assert "ja_bccwj-ud-test.conllu: left out 2 sentences whose words are '_'" in notes
    assert "test.ja.jsonl: no rows, not written" in notes
    assert "languages udpos does not have (cy): cy_ccg-ud-test.conllu" in notes
    assert "train files of other languages than English" in notes and "fr_gsd-ud-train.conllu" in notes
    examples = load_examples(get_task("udpos"), "test", "fr", source="local", data_dir=tmp_path)
    assert [(e.tokens, e.tags) for e in examples] == [
        (("Il", "va", "au", "marché", "du", "village", "."), ("PRON", "VERB", "ADP", "NOUN", "ADP", "NOUN", "PUNCT"))]


def test_udpos_prepares_with_the_bundled_tokenizer(tmp_path, tokenizer):
    convert("udpos", OFFICIAL / "udpos", tmp_path)
    done = prepare([get_task("udpos")], tokenizer=tokenizer, cache_dir=tmp_path / "cache", source="local",
                   data_dir=tmp_path, progress=False)
    assert {(d.split, d.lang): d.examples for d in done} == {
        ("train", "en"): 2, ("validation", "en"): 1, ("test", "en"): 2, ("test", "es"): 1, ("test", "fa"): 1,
        ("test", "fr"): 1, ("test", "th"): 1, ("test", "vi"): 1, ("test", "zh"): 1}


def test_multi_word_token_head_by_depth_then_pos_list(tmp_path):
    # Italian "della" = di + la, both attached to the noun: Italian's list ranks ADP before DET.
    # German "zum" = zu + dem where "dem" heads "zu" (unusual, but the depth rule must win).
    path = tmp_path / "x_test-ud-test.conllu"
    cols = lambda *c: "\t".join(c)
    path.write_text("\n".join([
        cols("1", "Casa", "casa", "NOUN", "_", "_", "0", "root", "_", "_"),
        cols("2-3", "della", "_", "_", "_", "_", "_", "_", "_", "_"),
        cols("2", "di", "di", "ADP", "_", "_", "4", "case", "_", "_"),
        cols("3", "la", "il", "DET", "_", "_", "4", "det", "_", "_"),
        cols("4", "nonna", "nonna", "NOUN", "_", "_", "1", "nmod", "_", "_"), "",
        cols("1", "zum", "_", "_", "_", "_", "_", "_", "_", "_").replace("1\t", "1-2\t", 1),
        cols("1", "zu", "zu", "ADP", "_", "_", "2", "case", "_", "_"),
        cols("2", "dem", "der", "DET", "_", "_", "3", "det", "_", "_"),
        cols("3", "Haus", "Haus", "NOUN", "_", "_", "0", "root", "_", "_"), ""]) + "\n", encoding="utf-8")
    it, _ = read_conllu(path, "it")
    assert [(s.tokens, s.tags) for s in it] == [(("Casa", "della", "nonna"), ("NOUN", "ADP", "NOUN")),
                                                (("zum", "Haus"), ("DET", "NOUN"))]


def test_conllu_bad_lines_name_file_and_line(tmp_path):
    short = OFFICIAL / "bad" / "conllu_short_line" / "en_ewt-ud-test.conllu"
    with pytest.raises(DataFileError, match="9 tab-separated columns; a CoNLL-U word line has 10") as e:
        convert("udpos", short.parent, tmp_path)
    assert str(e.value).startswith(f"{short}:4: ")
    tag = OFFICIAL / "bad" / "conllu_bad_tag" / "en_ewt-ud-test.conllu"
    with pytest.raises(DataFileError, match="UPOS \\(column 4\\) 'VB' is not one of the 17 UD tags") as e:
        convert("udpos", tag, tmp_path)
    assert str(e.value).startswith(f"{tag}:4: ")
    bad_id = tmp_path / "src" / "en_x-ud-test.conllu"
    bad_id.parent.mkdir()
    bad_id.write_text("# c\nx1\tA\ta\tNOUN\t_\t_\t0\troot\t_\t_\n", encoding="utf-8")
    with pytest.raises(DataFileError, match=r"en_x-ud-test\.conllu:2: ID 'x1'"):
        convert("udpos", bad_id.parent, tmp_path)
    assert not (tmp_path / "udpos").exists()


# ----------------------------------------------------------------------------- panx
def ner(tokens, tags, lang):
    return {"tokens": tokens, "ner_tags": tags.split(), "langs": [lang] * len(tokens)}


def test_panx_rows_in_every_layout(tmp_path):
    done = convert("panx", OFFICIAL / "panx", tmp_path)
    d = tmp_path / "panx"
    assert sorted(p.name for p in done.written) == [
        "test.en.jsonl", "test.th.jsonl", "test.zh.jsonl", "train.en.jsonl", "validation.en.jsonl",
        "validation.th.jsonl", "validation.zh.jsonl"]
    assert rows(d / "train.en.jsonl") == [
        ner(["Ada", "Penhallow", "kept", "the", "Ravenport", "light", "."], "B-PER I-PER O O B-LOC O O", "en"),
        ner(["She", "worked", "for", "Trinity", "House"], "O O O B-ORG I-ORG", "en")]  # no blank line at the end
    # The prefix is cut at the first ':' only; an empty token dropped; several blank lines are one break.
    assert rows(d / "validation.en.jsonl") == [
        ner(["See", "http://ravenport.example/light", "at", "10:30", "Ravenport"], "O O O O B-LOC", "en"),
        ner(["Trinity", "House", "owns", "it"], "B-ORG I-ORG O O", "en")]
    assert any("en/dev: dropped 1 tokens that are empty" in n for n in done.notes)
    assert rows(d / "test.en.jsonl") == [ner(["Orla", "floods"], "B-LOC O", "en"),  # BOM + CRLF
                                         ner(["I", "met", "Ilse", "Brandt"], "O O B-PER I-PER", "en")]
    assert rows(d / "validation.zh.jsonl") == [ner(["维也纳", "是", "一座", "城市"], "B-LOC O O O", "zh")]
    # xtreme's renamed layout (th-dev), with a very long word.
    assert rows(d / "validation.th.jsonl") == [ner([BANGKOK, "เป็น", "เมืองหลวง"], "B-LOC O O", "th")]
    assert any("zh-train" in n and "English only" in n for n in done.notes)
    examples = load_examples(get_task("panx"), "validation", "th", source="local", data_dir=tmp_path)
    assert [(e.tokens, e.tags) for e in examples] == [((BANGKOK, "เป็น", "เมืองหลวง"), ("B-LOC", "O", "O"))]


def _tar(path: Path, members: dict[str, str]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, text in members.items():
            data = text.encode("utf-8")
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_panx_reads_the_per_language_archives(tmp_path, tokenizer):
    src = tmp_path / "AmazonPhotos"
    src.mkdir()
    _tar(src / "ar.tar.gz", {"dev": "ar:القاهرة\tB-LOC\nar:مدينة\tO\n", "test": "ar:أحمد\tB-PER\nar:يعمل\tO\n",
                             "train": "ar:نص\tO\n"})
    done = convert("panx", src, tmp_path / "data")
    assert sorted(p.name for p in done.written) == ["test.ar.jsonl", "validation.ar.jsonl"]
    assert rows(tmp_path / "data" / "panx" / "test.ar.jsonl") == [ner(["أحمد", "يعمل"], "B-PER O", "ar")]
    assert any("ar-train" in n for n in done.notes)
    prepared = prepare([get_task("panx")], tokenizer=tokenizer, cache_dir=tmp_path / "cache", source="local",
                       data_dir=tmp_path / "data", progress=False)
    assert {(p.split, p.lang): p.examples for p in prepared} == {("validation", "ar"): 1, ("test", "ar"): 1}
    # The same file twice, as an archive member and unpacked: refused.
    (src / "ar").mkdir()
    (src / "ar" / "test").write_text("ar:أحمد\tB-PER\n", encoding="utf-8")
    with pytest.raises(StiltsError, match=r"PAN-X ar test is under SOURCE twice"):
        convert("panx", src, tmp_path / "data2")
    (tmp_path / "bad").mkdir()
    bad = _tar(tmp_path / "bad" / "ar.tar.gz", {"test": "ar:أحمد\tB-PER\nar:يعمل\n"})
    with pytest.raises(DataFileError, match=r"ar\.tar\.gz\[test\]:2: expected '<lang>:<token>\\t<TAG>'"):
        convert("panx", bad, tmp_path / "data3")
    bad.write_bytes(b"not gzip at all")
    with pytest.raises(StiltsError, match=r"ar\.tar\.gz: not a readable \.tar\.gz"):
        convert("panx", bad, tmp_path / "data3")


def test_panx_bad_lines_name_file_and_line(tmp_path):
    path = OFFICIAL / "bad" / "panx_no_prefix" / "en" / "test"
    with pytest.raises(DataFileError, match=r"expected '<lang>:<token>\\t<TAG>' .*got 'Ravenport\\tB-LOC'") as e:
        convert("panx", path.parent.parent, tmp_path)
    assert str(e.value).startswith(f"{path}:2: ")
    path = OFFICIAL / "bad" / "panx_bad_tag" / "en" / "test"
    with pytest.raises(DataFileError, match="tag 'B-GPE' is not one of PAN-X's") as e:
        convert("panx", path, tmp_path)
    assert str(e.value).startswith(f"{path}:3: ")
