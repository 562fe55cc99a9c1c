"""The mlm format and task: packing raw text into blocks, BERT-style dynamic masking that is
deterministic under (seed, step, row), and the local text files behind the ``mlm`` task.

    .venv/bin/python -m pytest -q tests/tasks/test_mlm.py
"""
import json

import numpy as np
import pytest

from stilts_ds.data.sources import load_examples
from stilts_ds.errors import DataFileError, StiltsError
from stilts_ds.tasks.formats import mlm
from stilts_ds.tasks.multilingual import XTREME_LANGUAGES
from stilts_ds.tasks.registry import get_task


@pytest.fixture(scope="module")
def mlm_examples():
    spec = get_task("mlm")
    return load_examples(spec, "train", spec.train_language)


@pytest.fixture(scope="module")
def feats(tokenizer, mlm_examples):
    return mlm.featurize(mlm_examples, tokenizer, max_length=48)


def test_default_mlm_reads_the_xtreme_languages_that_have_a_file(mlm_examples):
    spec = get_task("mlm")
    assert spec.train_language == "xtreme" and spec.components("xtreme") == XTREME_LANGUAGES
    assert {ex.lang for ex in mlm_examples} == {"en", "de", "fr", "ru", "zh", "ar", "hi"}
    assert len(mlm_examples) == 7 * 32
    assert len({ex.guid for ex in mlm_examples}) == len(mlm_examples)
    assert spec.head_name == "mlm" and "train" in spec.splits and "validation" not in spec.splits


def test_packing_fills_blocks_within_one_language_and_keeps_every_token(tokenizer, mlm_examples, feats):
    ids, lengths = feats.columns["input_ids"], feats.columns["lengths"]
    assert ids.shape[1] == 48 and len(feats.guids) == len(set(feats.guids))
    bos, eos, pad = tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id
    for row, n in zip(ids, lengths):
        assert row[0] == bos and row[n - 1] == eos and (row[n:] == pad).all()
    by_lang = {}
    for guid, row, n in zip(feats.guids, ids, lengths):
        by_lang.setdefault(guid.split(":")[0], []).append((row, n))
    for lang, rows in by_lang.items():
        assert all(n == 48 for _, n in rows[:-1]), lang  # only the last block of a language is short
        packed = [int(t) for row, n in rows for t in row[1:n - 1]]
        docs = [ex.text for ex in mlm_examples if ex.lang == lang]
        expected = []
        for doc in tokenizer(docs, add_special_tokens=False)["input_ids"]:
            expected += ([eos] if expected else []) + doc
        assert packed == expected, lang


def test_masking_is_bert_style_and_never_touches_special_tokens(tokenizer, feats):
    special = set(feats.extras["special_ids"])
    assert {tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id, tokenizer.mask_token_id} <= special
    rows = np.arange(len(feats))
    maskable = predicted = masked = kept = random_ = 0
    for step in range(20):
        batch = mlm.collate(feats, rows, seed=7, step=step)
        inputs, labels = batch.tensors["input_ids"].numpy(), batch.tensors["labels"].numpy()
        original = feats.columns["input_ids"][rows][:, :inputs.shape[1]]
        is_special = np.isin(original, list(special))
        chosen = labels != -100
        assert not (chosen & is_special).any()  # <s>, </s>, <pad> are never predicted
        assert (inputs[is_special] == original[is_special]).all()  # nor changed
        assert (inputs[~chosen] == original[~chosen]).all()  # only predicted positions change
        assert (labels[chosen] == original[chosen]).all()
        assert not np.isin(inputs[chosen & (inputs != tokenizer.mask_token_id)], list(special)).any()
        per_row = chosen.sum(1)
        n_maskable = (~is_special).sum(1)
        assert (per_row == np.maximum(1, np.round(0.15 * n_maskable))).all()
        maskable += n_maskable.sum()
        predicted += chosen.sum()
        masked += (chosen & (inputs == tokenizer.mask_token_id)).sum()
        kept += (chosen & (inputs == original)).sum()
        random_ += (chosen & (inputs != original) & (inputs != tokenizer.mask_token_id)).sum()
    assert abs(predicted / maskable - 0.15) < 0.01
    assert abs(masked / predicted - 0.8) < 0.03
    # a random draw may hit the original token: it then counts as "kept"
    assert abs(random_ / predicted - 0.1) < 0.03 and abs(kept / predicted - 0.1) < 0.03


def test_masking_is_deterministic_per_seed_step_and_row(feats):
    rows = [3, 0, 5, 1]
    a = mlm.collate(feats, rows, seed=1, step=4)
    b = mlm.collate(feats, rows, seed=1, step=4)
    for key in ("input_ids", "labels", "attention_mask"):
        assert (a.tensors[key] == b.tensors[key]).all()
    # the mask of a row depends on the row, not on its place in the batch
    c = mlm.collate(feats, [1, 5, 0, 3], seed=1, step=4)
    assert (c.tensors["labels"][3] == a.tensors["labels"][0]).all()
    # another step or seed: a fresh mask (dynamic masking), no global RNG involved
    np.random.seed(0)
    d = mlm.collate(feats, rows, seed=1, step=5)
    np.random.seed(1)
    e = mlm.collate(feats, rows, seed=2, step=4)
    assert not (d.tensors["labels"] == a.tensors["labels"]).all()
    assert not (e.tensors["labels"] == a.tensors["labels"]).all()
    assert (mlm.collate(feats, rows, seed=1, step=5).tensors["labels"] == d.tensors["labels"]).all()


def test_mlm_languages_can_be_chosen(tokenizer):
    spec = get_task("mlm@de+zh")
    examples = load_examples(spec, "train", "de+zh")
    assert {ex.lang for ex in examples} == {"de", "zh"} and spec.head_name == "mlm"
    assert get_task("mlm@de").splits == {"train": ("de",)}
    hub = get_task("mlm@sw").hub_parts("train", "sw")[0]
    assert (hub.path, hub.name, hub.split, hub.take) == ("wikimedia/wikipedia", "20231101.sw", "train", 10_000)


def test_bad_local_text_names_file_and_line(tmp_path):
    (tmp_path / "mlm").mkdir()
    path = tmp_path / "mlm" / "train.de.jsonl"
    path.write_text(json.dumps({"text": "Anna fuhr nach Berlin."}) + "\n" + json.dumps({"txt": "x"}) + "\n",
                    encoding="utf-8")
    with pytest.raises(DataFileError, match=r"mlm/train\.de\.jsonl:2: missing field 'text'"):
        load_examples(get_task("mlm"), "train", "xtreme", data_dir=tmp_path)
    path.write_text(json.dumps({"text": "ok"}) + "\nnot json\n", encoding="utf-8")
    with pytest.raises(DataFileError, match=r"train\.de\.jsonl:2: not valid JSON"):
        load_examples(get_task("mlm@de"), "train", "de", data_dir=tmp_path)


def test_missing_mlm_files_say_what_to_write(tmp_path):
    with pytest.raises(DataFileError, match=r"no file for any of af, ar.*mlm/train\.<lang>\.jsonl.*wikimedia/wikipedia"):
        load_examples(get_task("mlm"), "train", "xtreme", data_dir=tmp_path)
    (tmp_path / "mlm").mkdir()
    (tmp_path / "mlm" / "train.de.jsonl").write_text('{"text": "Hallo Welt."}\n', encoding="utf-8")
    assert len(load_examples(get_task("mlm"), "train", "xtreme", data_dir=tmp_path)) == 1
    with pytest.raises(DataFileError, match=r"mlm/train\.zh\.jsonl: missing"):  # chosen languages: all required
        load_examples(get_task("mlm@de+zh"), "train", "de+zh", data_dir=tmp_path)


def test_mlm_has_nothing_to_decode_or_score(feats):
    with pytest.raises(StiltsError, match="training-only"):
        mlm.decode(feats, np.zeros((1, 2, 3)))
    with pytest.raises(StiltsError, match="training-only"):
        mlm.score("accuracy", {}, {})
