"""Translated intermediate data (``<task>@<lang>``, ``<task>@<l1>+<l2>``), the feature cache
of composite languages, and fixed sampling shares (``train.weights``).

    .venv/bin/python -m pytest -q tests/data/test_translated.py
"""
import json
import os
import shutil

import pytest

from stilts_ds.data import cache
from stilts_ds.data.prepare import prepare
from stilts_ds.data.sampler import SamplerError, TaskSampler, task_weights
from stilts_ds.data.sources import FIXTURES_DIR, load_examples, local_splits
from stilts_ds.errors import DataFileError, StiltsError
from stilts_ds.tasks.registry import get_task, resolve_tasks


def test_one_translation_is_an_extra_task_sharing_the_base_head():
    spec = get_task("mnli@de")
    assert spec is get_task("mnli@de")  # built once
    assert (spec.base, spec.head_name, spec.format, spec.labels) == ("mnli", "mnli", "pair_classification",
                                                                     get_task("mnli").labels)
    assert spec.splits == {"train": ("de",), "validation": ("en",)} and spec.train_language == "de"
    german = load_examples(spec, "train", "de")
    english = load_examples(get_task("mnli"), "train", "en")
    assert len(german) == len(english) == 32
    assert [ex.label for ex in german] == [ex.label for ex in english]
    assert german[0].text_a != english[0].text_a and german[0].guid == "train-de-0"
    # model selection: the base task's English dev
    assert load_examples(spec, "validation", "en") == load_examples(get_task("mnli"), "validation", "en")
    assert local_splits(spec, FIXTURES_DIR) == [("train", "de"), ("validation", "en")]


def test_several_languages_are_one_task_over_their_union():
    spec = get_task("mnli@en+de+zh")
    assert spec.train_language == "en+de+zh" and spec.components("en+de+zh") == ("en", "de", "zh")
    rows = load_examples(spec, "train", "en+de+zh")
    assert len(rows) == 96 and len({ex.guid for ex in rows}) == 96
    assert [ex.guid.split(":")[0] for ex in rows[::32]] == ["en", "de", "zh"]
    assert rows[0].text_a == load_examples(get_task("mnli"), "train", "en")[0].text_a  # @en is the original
    squad = load_examples(get_task("squad_v1@de+zh"), "train", "de+zh")
    assert len(squad) == 64 and squad[0].guid.startswith("de:")
    assert {s.name for s in resolve_tasks(["mnli", "mnli@de", "mlm"])} == {"mnli", "mnli@de", "mlm"}


def test_hub_sources_of_translations():
    part = get_task("mnli@de").hub_parts("train", "de")[0]
    assert (part.path, part.name, part.split) == ("facebook/xnli", "de", "train")  # XNLI's translated MNLI
    assert get_task("mnli@en+sw").hub_parts("train", "en")[0].path == "nyu-mll/glue"
    assert get_task("mnli@de").hub_parts("validation", "en")[0].split == "validation_matched"
    with pytest.raises(StiltsError, match=r"no machine-translated 'mnli' in 'ja'.*hub has mnli in: ar, bg.*"
                                          r"<data-dir>/mnli/train\.ja\.jsonl"):
        get_task("mnli@ja").hub_parts("train", "ja")
    with pytest.raises(StiltsError, match=r"squad_v1/train\.de\.jsonl.*data\.source: local"):
        load_examples(get_task("squad_v1@de"), "train", "de", source="hub")


def test_missing_translated_files_name_the_file(tmp_path):
    with pytest.raises(DataFileError, match=r"mnli/train\.fr\.jsonl: missing: task 'mnli@fr'"):
        load_examples(get_task("mnli@fr"), "train", "fr")
    shutil.copytree(FIXTURES_DIR / "mnli", tmp_path / "mnli")
    (tmp_path / "mnli" / "train.de.jsonl").unlink()
    with pytest.raises(DataFileError, match=r"mnli/train\.de\.jsonl: missing.*facebook/xnli.*fixtures/mnli"):
        load_examples(get_task("mnli@en+de"), "train", "en+de", data_dir=tmp_path)
    (tmp_path / "mnli" / "train.de.jsonl").write_text(
        json.dumps({"premise": "a", "hypothesis": "b", "label": 0}) + "\n" + json.dumps({"premise": "a"}) + "\n")
    with pytest.raises(DataFileError, match=r"train\.de\.jsonl:2: missing field 'hypothesis'"):
        load_examples(get_task("mnli@en+de"), "train", "en+de", data_dir=tmp_path)


def test_bad_names_are_explained():
    with pytest.raises(StiltsError, match="'xnli' is an xtreme task"):
        get_task("xnli@de")
    with pytest.raises(StiltsError, match="Did you mean 'mnli'"):
        get_task("mnil@de")
    with pytest.raises(StiltsError, match="not a language list"):
        get_task("mnli@")
    with pytest.raises(StiltsError, match="names a language twice"):
        get_task("mnli@de+de")


def test_cache_of_a_composite_language_follows_every_file(tmp_path, tokenizer):
    data = tmp_path / "data"
    shutil.copytree(FIXTURES_DIR / "mnli", data / "mnli")
    spec = get_task("mnli@en+de")
    (first,) = prepare([spec], tokenizer=tokenizer, cache_dir=tmp_path / "cache", data_dir=data, splits=["train"],
                       max_length=64, progress=False)
    assert (first.lang, first.examples, first.rows) == ("en+de", 64, 64)
    feats = cache.read(first.path)
    assert len(feats.extras["references"]) == 64
    german = data / "mnli" / "train.de.jsonl"
    stat = german.stat()
    german.write_text(german.read_text(encoding="utf-8"), encoding="utf-8")
    os.utime(german, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    (again,) = prepare([spec], tokenizer=tokenizer, cache_dir=tmp_path / "cache", data_dir=data, splits=["train"],
                       max_length=64, progress=False)
    assert again.path != first.path and not again.reused


def test_fixed_shares_and_the_rest_by_strategy():
    sizes = {"mnli": 300, "mnli@de": 100, "mlm": 5000}
    w = task_weights(sizes, "proportional", fixed={"mlm": 0.3})
    assert w == pytest.approx({"mnli": 0.525, "mnli@de": 0.175, "mlm": 0.3})
    assert list(w) == list(sizes)
    u = task_weights(sizes, "uniform", fixed={"mlm": 0.2, "mnli@de": 0.2})
    assert u == pytest.approx({"mnli": 0.6, "mnli@de": 0.2, "mlm": 0.2})
    assert task_weights(sizes, "uniform", fixed={"mnli": 0.5, "mnli@de": 0.25, "mlm": 0.25})["mlm"] == pytest.approx(0.25)
    sampler = TaskSampler(w, seed=3)
    drawn = [sampler.next() for _ in range(4000)]
    assert abs(drawn.count("mlm") / 4000 - 0.3) < 0.03


@pytest.mark.parametrize("fixed, message", [
    ({"qqp": 0.2}, r"not trained in this phase"),
    ({"mlm": 1.2}, r"shares in \(0, 1\)"),
    ({"mlm": 0.6, "mnli@de": 0.4}, r"leave nothing for \['mnli'\]"),
    ({"mnli": 0.5, "mnli@de": 0.2, "mlm": 0.2}, r"sum to 0.900, not 1"),
])
def test_bad_fixed_shares_are_refused(fixed, message):
    with pytest.raises(SamplerError, match=message):
        task_weights({"mnli": 3, "mnli@de": 1, "mlm": 50}, "proportional", fixed=fixed)
