"""The bundled fixtures (stilts_ds/resources/fixtures) and the offline tokenizer built from them
(stilts_ds/resources/tokenizer): files, hub row schemas, labels, QA spans, scripts, and the
tokenizer's XLM-R shape. The expected file list is written out here from the spec, not read
from the build script, so a file the script stops writing is caught.
"""
from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "stilts_ds" / "resources" / "fixtures"
TOKENIZER = ROOT / "stilts_ds" / "resources" / "tokenizer"
TOOLS = ROOT / "tools"

N_TRAIN, N_EVAL = 32, 24

INTERMEDIATE_SPLITS = {
    "anli_plus": ("train", "validation", "test"),
    "mnli": ("train", "validation"),
    "qqp": ("train", "validation"),
    "squad_v1": ("train", "validation"),
    "squad_v2": ("train", "validation"),
    "hellaswag": ("train", "validation"),
    "cosmosqa": ("train", "validation"),
    "commonsenseqa": ("train", "validation"),
    "ccg": ("train", "validation", "test"),
    "siqa": ("train", "validation"),  # English, laid out like the intermediate tasks
}
# task -> {split: languages}
XTREME_FILES = {
    "xnli": {"train": ("en",), "validation": ("en", "ar", "hi", "ru", "zh"), "test": ("en", "ar", "hi", "ru", "zh")},
    "pawsx": {"train": ("en",), "validation": ("en", "de", "ja", "ko", "zh"), "test": ("en", "de", "ja", "ko", "zh")},
    "udpos": {"train": ("en",), "validation": ("en", "ar", "hi", "ru", "zh"), "test": ("en", "ar", "hi", "ru", "zh")},
    "panx": {"train": ("en",), "validation": ("en", "ar", "hi", "ru", "zh"), "test": ("en", "ar", "hi", "ru", "zh")},
    "xquad": {"train": ("en",), "validation": ("en",), "test": ("en", "ar", "hi", "ru", "zh")},
    "mlqa": {"train": ("en",), "validation": ("en", "ar", "hi", "zh", "de"), "test": ("en", "ar", "hi", "zh", "de")},
    "tydiqa": {"train": ("en",), "validation": ("en",), "test": ("en", "ar", "ru", "bn", "te")},
    "bucc": {"validation": ("de", "fr", "ru", "zh"), "test": ("de", "fr", "ru", "zh")},
    "tatoeba": {"test": ("ar", "hi", "ru", "zh", "de")},
    # XTREME-R
    "xcopa": {"train": ("en",), "validation": ("en", "zh"), "test": ("zh",)},
    "lareqa": {"test": ("en", "de", "ru", "zh")},
    "mewslix": {"test": ("en", "de", "ar", "ja")},
}
LAREQA_POOL_LANGS = ("en", "de", "ru", "zh")
N_LAREQA_PARAGRAPHS, N_MEWSLIX_CONTEXTS, N_MEWSLIX_ENTITIES = 6, 8, 22
# Multilingual intermediate data: task -> {split: languages}, files <task>/<split>.<lang>.jsonl
# (mlm text; translated copies of English intermediate tasks, beside their English files).
MULTILINGUAL_FILES = {
    "mlm": {"train": ("en", "de", "fr", "ru", "zh", "ar", "hi")},
    "mnli": {"train": ("de", "ru", "zh", "ar", "hi")},
    "squad_v1": {"train": ("de", "zh")},
}

QA_TASKS = ("squad_v1", "squad_v2", "xquad", "mlqa", "tydiqa")
UPOS = {"ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON", "PROPN", "PUNCT",
        "SCONJ", "SYM", "VERB", "X"}
PANX_TAGS = {"O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"}
NLI_NAMES = {"entailment", "neutral", "contradiction"}
TYDI_PREFIX = {"en": "english-", "ar": "arabic-", "ru": "russian-", "bn": "bengali-", "te": "telugu-"}

# code point ranges of each non-Latin script
SCRIPTS = {
    "zh": [(0x4E00, 0x9FFF)],
    "ar": [(0x0600, 0x06FF)],
    "ru": [(0x0400, 0x04FF)],
    "hi": [(0x0900, 0x097F)],
    "bn": [(0x0980, 0x09FF)],
    "te": [(0x0C00, 0x0C7F)],
    "ja": [(0x3040, 0x30FF)],  # kana
    "ko": [(0xAC00, 0xD7A3)],  # Hangul syllables
}


def expected_files() -> list[tuple[str, str, str | None, Path]]:
    """(task, split, lang or None, path) for every fixture file the spec asks for."""
    out = []
    for task, splits in INTERMEDIATE_SPLITS.items():
        for split in splits:
            out.append((task, split, None, FIXTURES / task / f"{split}.jsonl"))
    for task, by_split in XTREME_FILES.items():
        for split, langs in by_split.items():
            for lang in langs:
                out.append((task, split, lang, FIXTURES / task / f"{split}.{lang}.jsonl"))
    for task, by_split in MULTILINGUAL_FILES.items():
        for split, langs in by_split.items():
            for lang in langs:
                out.append((task, split, lang, FIXTURES / task / f"{split}.{lang}.jsonl"))
    return out


EXPECTED = expected_files()


def read_rows(path: Path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            assert line.endswith("\n"), f"{path}:{n} has no newline"
            row = json.loads(line)
            assert isinstance(row, dict), f"{path}:{n} is not a JSON object"
            rows.append(row)
    return rows


def load_tool(name: str):
    spec = importlib.util.spec_from_file_location(f"_stilts_tools_{name}", TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def file_id(item) -> str:
    task, split, lang, _ = item
    return f"{task}/{split}" + (f".{lang}" if lang else "")


# ---------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------


def test_every_expected_file_exists_and_nothing_else():
    missing = [str(p.relative_to(FIXTURES)) for *_, p in EXPECTED if not p.is_file()]
    assert not missing, f"missing fixture files: {missing}"
    present = {p for p in FIXTURES.rglob("*.jsonl")}
    extra = sorted(str(p.relative_to(FIXTURES)) for p in present - {p for *_, p in EXPECTED})
    assert not extra, f"fixture files the spec does not name: {extra}"
    assert (FIXTURES / "README.md").is_file()
    assert (FIXTURES / "ccg" / "tags.txt").is_file()


# ---------------------------------------------------------------------------------------
# Row schemas: one table row per task says what each of its fixture files holds
# ---------------------------------------------------------------------------------------


class Fixture(NamedTuple):
    """One fixture file, as ``EXPECTED`` lists it."""

    task: str
    split: str
    lang: str | None
    path: Path

    @property
    def where(self) -> str:
        return file_id(self)


@dataclass(frozen=True)
class Schema:
    """What every fixture file of one task holds: the hub's row schema at fixture size.

    The fields say what a table can (keys, label set, row count); ``check`` holds what it
    cannot (spans inside their context, IOB2 order, ids of BUCC pairs), as a named function.
    """

    keys: frozenset[str] | Callable[[str | None], frozenset[str]] | None  # every row's exact keys
    label: str | None = None  # the field holding the label, whose values must be in ...
    labels: frozenset = frozenset()  # ... this set
    every_label: bool = False  # each value of ``labels`` occurs in every file
    count: int | None = None  # rows per file; None: N_TRAIN in train, N_EVAL in other splits
    check: Callable[[list[dict], Fixture], None] | None = None

    def expected_rows(self, split: str) -> int:
        return self.count if self.count is not None else N_TRAIN if split == "train" else N_EVAL

    def expected_keys(self, lang: str | None) -> frozenset[str] | None:
        return self.keys(lang) if callable(self.keys) else self.keys


def _int_idx(rows, f):
    assert all(isinstance(r["idx"], int) for r in rows), f.where


def _idx_is_0_to_n(rows, f):
    assert sorted(r["idx"] for r in rows) == list(range(len(rows))), f.where


def _nli_idx(rows, f):
    _int_idx(rows, f)
    _idx_is_0_to_n(rows, f)


ANLI_SOURCES = {"anli_r1", "anli_r2", "anli_r3", "mnli", "snli"}


def _anli_sources_and_unlabelled(rows, f):
    """Every source occurs in train, where exactly two SNLI rows are unlabelled (-1), as on
    the hub; the other splits have no unlabelled row."""
    assert all(r["source"] in ANLI_SOURCES for r in rows), f.where
    unlabelled = [r for r in rows if r["label"] == -1]
    if f.split == "train":
        assert len(unlabelled) == 2 and all(r["source"] == "snli" for r in unlabelled), f.where
        assert {r["source"] for r in rows} == ANLI_SOURCES, f.where
    else:
        assert not unlabelled, f.where


def _xnli_language(rows, f):
    assert all(r["language"] == f.lang for r in rows), f.where


def _squad(*, several_answers: bool = False, some_several: bool = False,
           unanswerable: tuple[float, float] = (0.0, 0.0), id_prefix: bool = False):
    """SQuAD-format rows: every answer is the span of the context at its answer_start.

    several_answers: English validation rows may have up to three answers (one elsewhere);
    some_several: validation has at least one row with several; unanswerable: the share of
    rows without an answer lies in [low, high]; id_prefix: ids start with the language's
    TyDiQA prefix (the hub filters TyDiQA-GoldP's languages by it)."""
    def check(rows, f):
        multi_ok = several_answers and f.split == "validation" and f.lang in (None, "en")
        for r in rows:
            assert all(isinstance(r[k], str) for k in ("id", "title", "context", "question")), f.where
            assert r["context"] and r["question"], f.where
            ans = r["answers"]
            assert set(ans) == {"text", "answer_start"}, f.where
            assert len(ans["text"]) == len(ans["answer_start"]), f.where
            assert len(ans["text"]) <= (3 if multi_ok else 1), f.where
            for text, start in zip(ans["text"], ans["answer_start"]):
                assert isinstance(start, int) and isinstance(text, str) and text, f.where
                assert r["context"][start:start + len(text)] == text, (f.where, r["id"], text, start)
        none = sum(1 for r in rows if not r["answers"]["text"])
        low, high = unanswerable
        assert low * len(rows) <= none <= high * len(rows), (f.where, none)
        if some_several and f.split == "validation":
            assert any(len(r["answers"]["text"]) > 1 for r in rows), f.where
        if id_prefix:
            assert all(r["id"].startswith(TYDI_PREFIX[f.lang]) for r in rows), f.where
    return check


def _hellaswag(rows, f):
    for r in rows:
        assert isinstance(r["ind"], int), f.where
        assert r["ctx"] == r["ctx_a"] + " " + r["ctx_b"], f.where
        assert len(r["endings"]) == 4 and all(isinstance(e, str) and e for e in r["endings"]), f.where


def _commonsenseqa(rows, f):
    for r in rows:
        assert r["choices"]["label"] == ["A", "B", "C", "D", "E"] and len(r["choices"]["text"]) == 5, f.where
        assert r["answerKey"] in r["choices"]["label"], f.where


def _ccg(rows, f):
    known = set((FIXTURES / "ccg" / "tags.txt").read_text(encoding="utf-8").split())
    for r in rows:
        assert len(r["tokens"]) == len(r["tags"]) > 0, f.where
        assert set(r["tags"]) <= known, f.where


def _udpos(rows, f):
    for r in rows:
        assert len(r["tokens"]) == len(r["pos_tags"]) > 0, f.where
        assert set(r["pos_tags"]) <= UPOS, f.where
        assert all(t and " " not in t for t in r["tokens"]), f.where


def _check_iob2(tags, where):
    prev = "O"
    for tag in tags:
        assert tag in PANX_TAGS, (where, tag)
        if tag.startswith("I-"):
            assert prev in (f"B-{tag[2:]}", tag), (where, tags)
        prev = tag


def _panx(rows, f):
    for r in rows:
        assert len(r["tokens"]) == len(r["ner_tags"]) > 0 and r["langs"] == [f.lang] * len(r["tokens"]), f.where
        _check_iob2(r["ner_tags"], f.where)
    assert {t[2:] for r in rows for t in r["ner_tags"] if t != "O"} == {"PER", "ORG", "LOC"}, f.where


def _bucc(rows, f):
    """24 gold pairs, 4 source and 4 target sentences without a partner; ids
    <lang>-NNNNNN / en-NNNNNN where (and only where) there is a sentence; nothing repeated."""
    kinds = {"pair": 0, "src": 0, "trg": 0}
    for r in rows:
        assert r["source_lang"] == f.lang and r["target_lang"] == "en", f.where
        src, trg = bool(r["source_sentence"]), bool(r["target_sentence"])
        assert src == bool(r["source_id"]) and trg == bool(r["target_id"]), f.where
        assert not src or re.fullmatch(rf"{f.lang}-\d{{6}}", r["source_id"]), f.where
        assert not trg or re.fullmatch(r"en-\d{6}", r["target_id"]), f.where
        kinds["pair" if src and trg else "src" if src else "trg"] += 1
    assert kinds == {"pair": 24, "src": 4, "trg": 4}, (f.where, kinds)
    for key in ("source_id", "target_id", "source_sentence", "target_sentence"):
        values = [r[key] for r in rows if r[key]]
        assert len(values) == len(set(values)), (f.where, key)


def _tatoeba(rows, f):
    for r in rows:
        assert r["source_lang"] == f.lang and r["target_lang"] == "en", f.where
        assert r["source_sentence"] and r["target_sentence"], f.where
    assert len({r["target_sentence"] for r in rows}) == len(rows), f.where


def _lareqa(rows, f):
    """Every language's file is the same multilingual pool (XQuAD-R is parallel: the same
    question ids per language); answers are spans inside one of their context's sentences."""
    assert f.path.read_bytes() == (FIXTURES / "lareqa" / "test.en.jsonl").read_bytes()
    assert sorted({r["lang"] for r in rows}) == sorted(LAREQA_POOL_LANGS)
    for r in rows:
        assert r["context_id"].startswith(r["lang"] + "_"), f.where
        for qa in r["qas"]:
            (answer,) = qa["answers"]
            start = answer["answer_start"]
            assert r["context"][start:start + len(answer["text"])] == answer["text"], f.where
            assert any(s <= start < e for s, e in r["sentence_breaks"]), f.where
    ids = {lang: sorted(qa["id"] for r in rows if r["lang"] == lang for qa in r["qas"]) for lang in LAREQA_POOL_LANGS}
    assert len({tuple(v) for v in ids.values()}) == 1, "XQuAD-R is parallel: the same question ids per language"


def _mewslix(rows, f):
    """Mention rows (context in the file's language, each mention a span naming a known
    entity) and the candidate entity rows."""
    mentions = [r for r in rows if "mentions" in r]
    entities = {r["entity_id"] for r in rows if "entity_id" in r}
    assert len(mentions) == N_MEWSLIX_CONTEXTS and len(entities) == N_MEWSLIX_ENTITIES, f.where
    for r in mentions:
        ctx = r["context"]
        assert ctx["language"] == f.lang, f.where
        for m in r["mentions"]:
            span = m["mention_span"]
            assert ctx["text"][span["start"]:span["end"]] == span["text"] and m["entity_id"] in entities, f.where


def _xcopa_keys(lang):
    """SuperGLUE COPA rows in English; XCOPA rows, which add "changed", in the others."""
    copa = {"premise", "choice1", "choice2", "question", "idx", "label"}
    return frozenset(copa | ({"changed"} if lang != "en" else set()))


def _xcopa(rows, f):
    assert all(r["question"] in ("cause", "effect") for r in rows), f.where
    _idx_is_0_to_n(rows, f)


def _mlm_text(rows, f):
    assert all(isinstance(r["text"], str) and r["text"].strip() for r in rows), f.where


NLI = Schema(keys=frozenset({"premise", "hypothesis", "label", "idx"}), label="label", labels=frozenset({0, 1, 2}),
             check=_nli_idx)
SQUAD_KEYS = frozenset({"id", "title", "context", "question", "answers"})
# task (or (task, split) where one split has another schema) -> its schema.
SCHEMAS: dict[str | tuple[str, str], Schema] = {
    "mnli": NLI,  # its translated copies too (train.<lang>.jsonl)
    ("xnli", "train"): NLI,  # XTREME trains XNLI on MNLI
    "anli_plus": Schema(keys=frozenset({"premise", "hypothesis", "label", "source"}), label="label",
                        labels=frozenset({0, 1, 2, -1}), check=_anli_sources_and_unlabelled),
    "xnli": Schema(keys=frozenset({"language", "sentence1", "sentence2", "gold_label"}), label="gold_label",
                   labels=frozenset(NLI_NAMES), every_label=True, check=_xnli_language),
    # Social IQa: three answers, the label a 1-based string.
    "siqa": Schema(keys=frozenset({"context", "question", "answerA", "answerB", "answerC", "label"}), label="label",
                   labels=frozenset({"1", "2", "3"}), every_label=True),
    "qqp": Schema(keys=frozenset({"question1", "question2", "label", "idx"}), label="label", labels=frozenset({0, 1}),
                  check=_int_idx),
    # The label a string, as on the hub.
    "pawsx": Schema(keys=frozenset({"sentence1", "sentence2", "label"}), label="label", labels=frozenset({"0", "1"}),
                    every_label=True),
    "squad_v1": Schema(keys=SQUAD_KEYS, check=_squad(several_answers=True, some_several=True)),
    "squad_v2": Schema(keys=SQUAD_KEYS, check=_squad(several_answers=True, unanswerable=(1 / 4, 1 / 2.5))),
    "xquad": Schema(keys=SQUAD_KEYS, check=_squad(several_answers=True)),
    "mlqa": Schema(keys=SQUAD_KEYS, check=_squad()),
    "tydiqa": Schema(keys=SQUAD_KEYS, check=_squad(id_prefix=True)),
    "hellaswag": Schema(keys=frozenset({"ind", "activity_label", "ctx_a", "ctx_b", "ctx", "endings", "source_id",
                                        "split", "split_type", "label"}),
                        label="label", labels=frozenset({"0", "1", "2", "3"}), check=_hellaswag),
    "cosmosqa": Schema(keys=frozenset({"id", "context", "question", "answer0", "answer1", "answer2", "answer3",
                                       "label"}), label="label", labels=frozenset({0, 1, 2, 3})),
    "commonsenseqa": Schema(keys=frozenset({"id", "question", "question_concept", "choices", "answerKey"}),
                            check=_commonsenseqa),
    "ccg": Schema(keys=frozenset({"tokens", "tags"}), check=_ccg),
    "udpos": Schema(keys=frozenset({"tokens", "pos_tags"}), check=_udpos),
    "panx": Schema(keys=frozenset({"tokens", "ner_tags", "langs"}), check=_panx),
    "bucc": Schema(keys=frozenset({"source_sentence", "target_sentence", "source_lang", "target_lang", "source_id",
                                   "target_id"}), count=32, check=_bucc),
    "tatoeba": Schema(keys=frozenset({"source_sentence", "target_sentence", "source_lang", "target_lang"}),
                      count=N_EVAL, check=_tatoeba),
    "xcopa": Schema(keys=_xcopa_keys, label="label", labels=frozenset({0, 1}), check=_xcopa),
    "lareqa": Schema(keys=frozenset({"lang", "context_id", "context", "sentence_breaks", "qas"}),
                     count=N_LAREQA_PARAGRAPHS * len(LAREQA_POOL_LANGS), check=_lareqa),
    # Two kinds of row (mentions, entities): their keys are _mewslix's to check.
    "mewslix": Schema(keys=None, count=N_MEWSLIX_CONTEXTS + N_MEWSLIX_ENTITIES, check=_mewslix),
    "mlm": Schema(keys=frozenset({"text"}), check=_mlm_text),
}


@pytest.mark.parametrize("item", EXPECTED, ids=file_id)
def test_schema_counts_and_labels(item):
    f = Fixture(*item)
    schema = SCHEMAS.get((f.task, f.split)) or SCHEMAS.get(f.task)
    assert schema is not None, f"no schema for {f.task}: add a row to SCHEMAS"
    rows = read_rows(f.path)
    assert len(rows) == schema.expected_rows(f.split), (f.where, len(rows))
    keys = schema.expected_keys(f.lang)
    if keys is not None:
        for r in rows:
            assert set(r) == keys, (f.where, sorted(set(r) ^ keys))
    if schema.label is not None:
        values = {r[schema.label] for r in rows}
        assert values <= schema.labels, (f.where, values - schema.labels)
        if schema.every_label:
            assert values == schema.labels, (f.where, schema.labels - values)
    if schema.check is not None:
        schema.check(rows, f)


@pytest.mark.parametrize("lang", MULTILINGUAL_FILES["mnli"]["train"])
def test_translated_mnli_keeps_the_english_rows_and_labels(lang):
    english = read_rows(FIXTURES / "mnli" / "train.jsonl")
    translated = read_rows(FIXTURES / "mnli" / f"train.{lang}.jsonl")
    assert [(r["idx"], r["label"]) for r in translated] == [(r["idx"], r["label"]) for r in english]
    assert all(t["premise"] != e["premise"] for t, e in zip(translated, english))


def test_qa_ids_unique_across_files():
    seen: dict[str, str] = {}
    for task, split, lang, path in EXPECTED:
        if task in QA_TASKS:
            for r in read_rows(path):
                assert r["id"] not in seen, (r["id"], seen.get(r["id"]), str(path))
                seen[r["id"]] = str(path)


def test_ccg_tags_file_is_sorted_union():
    tags = (FIXTURES / "ccg" / "tags.txt").read_text(encoding="utf-8").splitlines()
    used = set()
    for split in INTERMEDIATE_SPLITS["ccg"]:
        for r in read_rows(FIXTURES / "ccg" / f"{split}.jsonl"):
            used.update(r["tags"])
    assert tags == sorted(used)
    assert {"NP", "N", "NP/N", "(S[dcl]\\NP)/NP", "S[dcl]\\NP", ".", ","} <= used


def _row_text(row: dict) -> str:
    parts = []
    for value in row.values():
        if isinstance(value, str):
            parts.append(value)
        elif isinstance(value, list):
            parts.extend(v for v in value if isinstance(v, str))
        elif isinstance(value, dict):
            parts.append(_row_text(value))
    return " ".join(parts)


def _in_script(text: str, lang: str) -> bool:
    return any(lo <= ord(ch) <= hi for ch in text for lo, hi in SCRIPTS[lang])


@pytest.mark.parametrize("item", [i for i in EXPECTED if i[2] in SCRIPTS], ids=file_id)
def test_xtreme_files_use_their_script(item):
    task, split, lang, path = item
    rows = read_rows(path)
    if task == "bucc":  # English-only distractor rows have no source sentence
        rows = [r for r in rows if r["source_sentence"]]
    if task == "lareqa":  # the file holds every language's paragraphs: check its own
        rows = [r for r in rows if r["lang"] == lang]
    if task == "mewslix":  # the candidate entities are English descriptions
        rows = [r for r in rows if "mentions" in r]
    in_script = sum(_in_script(_row_text(r), lang) for r in rows)
    assert in_script == len(rows), f"{file_id(item)}: {len(rows) - in_script} rows without {lang} script"


def test_fixtures_are_reproducible():
    """Rebuilding gives byte-identical files (the script's --check compares without writing)."""
    result = subprocess.run([sys.executable, str(TOOLS / "build_fixtures.py"), "--check"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tok():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(TOKENIZER))


@pytest.fixture(scope="module")
def fixture_texts():
    return load_tool("build_tokenizer").corpus(FIXTURES)


def test_tokenizer_loads_fast_with_xlmr_special_ids(tok):
    assert tok.is_fast
    assert (tok.bos_token, tok.eos_token, tok.sep_token, tok.cls_token) == ("<s>", "</s>", "</s>", "<s>")
    assert (tok.unk_token, tok.pad_token, tok.mask_token) == ("<unk>", "<pad>", "<mask>")
    assert tok.convert_tokens_to_ids(["<s>", "<pad>", "</s>", "<unk>"]) == [0, 1, 2, 3]
    assert (tok.bos_token_id, tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    assert tok.mask_token_id == len(tok) - 1 == max(tok.get_vocab().values())
    assert tok.model_max_length == 512
    assert 2000 <= len(tok) <= 4100
    assert type(tok).__name__ == "XLMRobertaTokenizer"  # what XLMRobertaTokenizerFast is in transformers 5
    assert type(tok.backend_tokenizer.normalizer).__name__ == "Precompiled"  # survives reloading


def test_tokenizer_is_built_from_the_current_fixtures(fixture_texts):
    info = json.loads((TOKENIZER / "build_info.json").read_text(encoding="utf-8"))
    corpus_sha = load_tool("build_tokenizer").corpus_sha256(fixture_texts)
    assert info["corpus_sha256"] == corpus_sha, "fixtures changed: run python tools/build_tokenizer.py"


def test_unk_rate_over_fixture_text_is_low(tok, fixture_texts):
    total = unk = 0
    for ids in tok(fixture_texts, add_special_tokens=False)["input_ids"]:
        total += len(ids)
        unk += ids.count(tok.unk_token_id)
    assert total > 10_000
    assert unk / total < 0.02, f"unk rate {unk / total:.2%}"


@pytest.mark.parametrize("text", [
    "安娜在2015年去了巴黎。", "سافرت آنا إلى القاهرة في عام 2015.", "Анна поехала в Париж в 2015 году.",
    "अन्ना 2015 में पेरिस गई।", "레일라와 소피아는 2002년에 베를린을 방문했다.", "アンナとイワンは2015年にパリを訪れた。",
])
def test_non_latin_text_is_not_unk(tok, text):
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert ids and tok.unk_token_id not in ids
    assert tok.decode(ids).replace(" ", "") == text.replace(" ", "")


def test_single_and_pair_templates(tok):
    a, b = "Anna was born in Paris.", "Anna was not born in Paris."
    ia = tok(a, add_special_tokens=False)["input_ids"]
    ib = tok(b, add_special_tokens=False)["input_ids"]
    assert tok(a)["input_ids"] == [0] + ia + [2]
    assert tok(a, b)["input_ids"] == [0] + ia + [2, 2] + ib + [2]
    assert tok.decode(tok(a, b)["input_ids"]) == f"<s> {a}</s></s> {b}</s>"
    assert tok("The <mask> is red.")["input_ids"].count(tok.mask_token_id) == 1


def test_offsets_and_overflowing_windows(tok):
    question = "Where was Anna born?"
    context = " ".join(f"{p} was born in {c} in {y}." for p, c, y in
                       [("Omar", "Cairo", 1990), ("Lina", "Rome", 1991), ("Ivan", "Moscow", 1992)] * 6)
    enc = tok(question, context, truncation="only_second", max_length=48, stride=12,
              return_overflowing_tokens=True, return_offsets_mapping=True)
    n = len(enc["input_ids"])
    assert n >= 3 and enc["overflow_to_sample_mapping"] == [0] * n
    for i in range(n):
        ids, seq, offs = enc["input_ids"][i], enc.sequence_ids(i), enc["offset_mapping"][i]
        assert len(ids) <= 48 and ids[0] == 0 and ids[-1] == 2
        q = [k for k, s in enumerate(seq) if s == 0]
        assert tok.decode([ids[k] for k in q]).strip() == question  # the question is never truncated
        for k, s in enumerate(seq):
            if s == 1:
                lo, hi = offs[k]
                assert 0 <= lo < hi <= len(context)
    # consecutive windows overlap by the stride
    ctx_ids = [[t for t, s in zip(enc["input_ids"][i], enc.sequence_ids(i)) if s == 1] for i in range(n)]
    assert ctx_ids[0][-12:] == ctx_ids[1][:12]


def test_tokenizer_rebuild_is_reproducible(capsys):
    """The committed tokenizer is what the build script produces, byte for byte (the script's
    --check rebuilds in a temporary directory; in-process, to skip a second transformers import)."""
    pytest.importorskip("sentencepiece", reason="rebuilding the tokenizer needs sentencepiece")
    status = load_tool("build_tokenizer").main(["--check"])
    assert status == 0, capsys.readouterr().err
