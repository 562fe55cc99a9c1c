"""XTREME-R's tasks (xcopa, mewslix, lareqa): specs, readers on the fixtures, the official
preprocessing of Mewsli-X and LAReQA, ranked retrieval decode, and an evaluation of lareqa and
mewslix through the real tiny encoder (zero-shot, as phase 3 runs it).

    .venv/bin/python -m pytest -q tests/tasks/test_xtreme_r.py
"""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from stilts_ds.data.prepare import featurize_examples
from stilts_ds.data.sources import load_examples, load_labels
from stilts_ds.errors import StiltsError
from stilts_ds.metrics import XTREME_R_LANGUAGES
from stilts_ds.tasks import xtreme_r
from stilts_ds.tasks.formats import ChoiceOptions, format_of, retrieval
from stilts_ds.tasks.registry import get_task

ROOT = Path(__file__).resolve().parents[2]


def test_specs_languages_and_sources():
    xcopa, mewslix, lareqa = (get_task(t) for t in ("xcopa", "mewslix", "lareqa"))
    assert xcopa.splits["test"] == XTREME_R_LANGUAGES["xcopa"] == tuple("et ht id it qu sw ta th tr vi zh".split())
    assert xcopa.splits["train"] == ("en",) and xcopa.options == ChoiceOptions(num_choices=2)
    assert [p.describe() for p in xcopa.hub_parts("train", "en")] == [
        "load_dataset('aps/super_glue', split='train', revision='refs/convert/parquet', data_dir='copa')"]
    assert xcopa.hub_parts("test", "qu")[0].path == "cambridgeltl/xcopa"
    assert mewslix.splits["test"] == tuple("ar de en es fa ja pl ro ta tr uk".split())
    assert lareqa.splits["test"] == tuple("ar de el en es hi ru th tr vi zh".split())
    assert mewslix.sources == lareqa.sources == ("local",)
    assert all(s.kind == "xtreme" for s in (xcopa, mewslix, lareqa))
    with pytest.raises(StiltsError, match="sentence_breaks.*download_lareqa_data"):
        load_examples(lareqa, "test", "en", source="hub")


def test_shared_tasks_gain_xtreme_r_languages_with_a_hub_source():
    assert get_task("panx").hub_parts("test", "qu")[0].describe() == "load_dataset('unimelb-nlp/wikiann', 'qu', split='test')"
    assert get_task("panx").hub_parts("test", "de")[0].name == "PAN-X.de"
    assert get_task("xquad").hub_parts("test", "ro")[0].describe() == "load_dataset('google/xquad', 'xquad.ro', split='validation')"
    assert get_task("tatoeba").hub_parts("test", "lt")[0].name == "lit-eng"
    # mteb rows (sentence1 = the language, sentence2 = English) read like XTREME's.
    ex = get_task("tatoeba").reader({"sentence1": "Labas.", "sentence2": "Hello."}, "test", "lt", 3)
    assert [(e.guid, e.text, e.side) for e in ex] == [("trg-3", "Hello.", "target"), ("src-3", "Labas.", "source")]


def test_udpos_xtreme_r_languages_are_local_only(tmp_path):
    from stilts_ds.config import load_config
    from stilts_ds.studies.pipeline import Study
    from stilts_ds.tasks.catalog import task_rows

    udpos = get_task("udpos")
    assert {"lt", "pl", "uk", "wo", "ro"} <= set(udpos.splits["test"]) and "lt" in udpos.local_only_langs
    with pytest.raises(StiltsError, match=r"UD 2.7 additions.*udpos/test.lt.jsonl.*local_tasks"):
        load_examples(udpos, "test", "lt", source="hub")
    assert "google/xtreme" in next(r for r in task_rows() if r["name"] == "udpos")["hub_datasets"]
    # A user's file in XTREME's schema is read like any other language.
    (tmp_path / "udpos").mkdir()
    (tmp_path / "udpos" / "test.lt.jsonl").write_text(
        json.dumps({"tokens": ["Labas", "pasauli", "."], "pos_tags": ["INTJ", "NOUN", "PUNCT"]}) + "\n")
    (ex,) = load_examples(udpos, "test", "lt", source="local", data_dir=tmp_path)
    assert tuple(ex.tokens) == ("Labas", "pasauli", ".") and tuple(ex.tags) == ("INTJ", "NOUN", "PUNCT")
    # A hub-sourced study leaves them out (and says so); data.local_tasks brings them back.
    hub = Study(load_config(ROOT / "configs" / "paper.yaml", {"data.local_tasks": {}}), progress=False)
    assert "lt" not in hub._langs("udpos", "test") and "de" in hub._langs("udpos", "test")
    local = Study(load_config(ROOT / "configs" / "paper.yaml", {"data.local_tasks": {"udpos": str(tmp_path)}}),
                  progress=False)
    assert local._langs("udpos", "test") == ["lt"]


def test_xcopa_reader_follows_run_xcopa():
    ex = xtreme_r.xcopa({"premise": "The man fell.", "question": "cause", "choice1": "He slipped.",
                         "choice2": "He sang.", "label": 0, "idx": 1}, "test", "et", 7)
    assert (ex.guid, ex.prompt, ex.choices, ex.label) == ("test-et-7", "The man fell. What was the cause?",
                                                          ("He slipped.", "He sang."), 0)
    assert xtreme_r.xcopa({"premise": "p", "question": "effect", "choice1": "a", "choice2": "b", "label": -1},
                          "test", "en", 0).label is None
    with pytest.raises(ValueError, match="cause.*effect"):
        xtreme_r.xcopa({"premise": "p", "question": "why", "choice1": "a", "choice2": "b", "label": 0}, "t", "en", 0)


def test_siqa_reader_spec_and_the_staged_xcopa_recipe():
    ex = xtreme_r.siqa({"context": "Ann gave Bo a gift.", "question": "Why did Ann do this?", "answerA": "to be kind",
                        "answerB": "to sleep", "answerC": "to run", "label": "1\n"}, "train", "en", 3)
    assert (ex.guid, ex.prompt, ex.choices, ex.label) == (
        "train-en-3", "Ann gave Bo a gift. Why did Ann do this?", ("to be kind", "to sleep", "to run"), 0)
    # XTREME-R's own copy (socialIQa_v1.4_*.jsonl from the XCOPA release) names the answer by letter.
    assert xtreme_r.siqa({"context": "c", "question": "q", "answerA": "a", "answerB": "b", "answerC": "c",
                          "correct": "C"}, "train", "en", 0).label == 2
    with pytest.raises(ValueError, match="'A', 'B' or 'C'"):
        xtreme_r.siqa({"context": "c", "question": "q", "answerA": "a", "answerB": "b", "answerC": "c",
                       "correct": "D"}, "train", "en", 0)
    with pytest.raises(ValueError, match="'1', '2' or '3'"):
        xtreme_r.siqa({"context": "c", "question": "q", "answerA": "a", "answerB": "b", "answerC": "c",
                       "label": "4"}, "train", "en", 0)
    siqa, xcopa = get_task("siqa"), get_task("xcopa")
    # siqa is neither one of the nine intermediate tasks nor an XTREME task; English files
    # sit where the intermediate tasks' do.
    assert siqa.kind == "auxiliary" and siqa.local_file("train", "en") == "siqa/train.jsonl"
    assert siqa.options == ChoiceOptions(num_choices=3) and siqa.format == xcopa.format == "multiple_choice"
    assert xcopa.train_first == ("siqa",)
    # datasets >= 4 runs no loading scripts: allenai/social_i_qa is read from its Parquet conversion.
    assert [p.describe() for p in siqa.hub_parts("train", "en")] == [
        "load_dataset('allenai/social_i_qa', split='train', revision='refs/convert/parquet')"]
    assert get_task("cosmosqa").hub_parts("validation", "en")[0].revision == "refs/convert/parquet"
    examples = load_examples(siqa, "train", "en")
    assert len(examples) == 32 and {ex.label for ex in examples} == {0, 1, 2}


def test_xcopa_fixture_walk(tokenizer):
    spec = get_task("xcopa")
    examples = load_examples(spec, "test", "zh")
    feats = featurize_examples(spec, examples, tokenizer, 64, load_labels(spec))
    assert feats.columns["input_ids"].shape == (24, 2, 64)
    fmt = format_of(spec)
    gold = np.array([ex.label for ex in examples])
    preds = fmt.decode(spec, feats, {"logits": np.eye(2)[gold]})
    assert fmt.score(spec, feats, preds, "zh") == {"accuracy": 100.0}


def test_mewslix_query_and_description_follow_utils_mewslix():
    context = {"language": "en", "text": "First one. The verdict for {x} Smith came.\nEnd.",
               "sentence_spans": [{"start": 0, "end": 10}, {"start": 11, "end": 42}, {"start": 43, "end": 47}]}
    mention = {"example_id": "m1", "entity_id": "Q1", "mention_span": {"start": 31, "end": 36, "text": "Smith"}}
    assert context["text"][31:36] == "Smith"
    # one sentence of context, braces escaped to parentheses, the mention marked and prepended
    assert xtreme_r.mewslix_query(context, mention) == "Smith: The verdict for (x) { Smith } came."
    entity = {"entity_id": "Q1", "description": "A  b.\nC d. junk", "sentence_spans": [{"start": 0, "end": 5},
                                                                                        {"start": 6, "end": 10}]}
    assert xtreme_r.mewslix_description(entity) == "A b. C d."
    with pytest.raises(ValueError, match="m2.*no single sentence"):
        xtreme_r.mewslix_query(context, dict(mention, example_id="m2", mention_span={"start": 8, "end": 14, "text": "x"}))


def test_lareqa_rows_number_paragraphs_per_language_and_mark_answer_sentences():
    squad = {"data": [{"paragraphs": [
        {"context": "A b. C d.", "sentence_breaks": [[0, 4], [5, 9]],
         "qas": [{"id": "q1", "question": "What?", "answers": [{"text": "C", "answer_start": 5}]}]},
        {"context": "E f.", "sentence_breaks": [[0, 4]],
         "qas": [{"id": "q2", "question": "Who?", "answers": [{"text": "E", "answer_start": 0}]}]}]}]}
    rows = xtreme_r.lareqa_rows({"en": squad, "de": squad})
    assert [r["context_id"] for r in rows] == ["en_1", "en_2", "de_1", "de_2"]
    examples = [e for i, r in enumerate(rows) for e in xtreme_r.lareqa(r, "test", "de", i)]
    queries = [e for e in examples if e.side == retrieval.SOURCE]
    assert [(q.guid, q.wants) for q in queries] == [("q1_de", "q1"), ("q2_de", "q2")]
    cands = {e.guid: e for e in examples if e.side == retrieval.TARGET}
    assert list(cands) == ["en_1_0", "en_1_1", "en_2_0", "de_1_0", "de_1_1", "de_2_0"]
    assert cands["en_1_1"].text == "C d.A b. C d."  # run_retrieval.py: sentence + context
    refs = retrieval.references(examples)
    assert refs == {"q1_de": ("en_1_1", "de_1_1"), "q2_de": ("en_2_0", "de_2_0")}


def test_ranked_decode_and_map_on_the_lareqa_fixture(tokenizer):
    spec = get_task("lareqa")
    examples = load_examples(spec, "test", "ru")
    queries = [e for e in examples if e.side == retrieval.SOURCE]
    assert len(queries) == 6 and all(q.lang == "ru" for q in queries)
    assert len([e for e in examples if e.side == retrieval.TARGET]) > 24  # the pool spans all languages
    feats = featurize_examples(spec, examples, tokenizer, 64, None)
    refs = feats.extras["references"]
    assert all(len(r) == 4 for r in refs.values())  # the answer sentence in en, de, ru, zh
    rng = np.random.default_rng(0)
    topic = {q.wants: rng.normal(size=32) for q in queries}
    by_guid = {e.guid: e for e in examples}
    emb = np.stack([
        topic[by_guid[g].wants] if by_guid[g].side == retrieval.SOURCE
        else (topic[by_guid[g].keys[0]] + 0.01 * rng.normal(size=32) if by_guid[g].keys else rng.normal(size=32))
        for g in feats.guids])
    preds = format_of(spec).decode(spec, feats, {"embeddings": emb})
    assert all(len(p) == 20 for p in preds.values())
    assert format_of(spec).score(spec, feats, preds, "ru") == {"map@20": pytest.approx(100.0)}
    reversed_preds = {q: p[::-1] for q, p in preds.items()}
    assert format_of(spec).score(spec, feats, reversed_preds, "ru")["map@20"] < 50.0


def test_decode_ranked_breaks_ties_by_pool_order_and_caps_k():
    feats = retrieval.featurize([retrieval.Example("q", "q", retrieval.SOURCE, "en")] +
                                [retrieval.Example(f"c{i}", f"c{i}", retrieval.TARGET, "en") for i in range(4)],
                                _WhitespaceTokenizer(), 8)
    emb = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [-1.0, 0.0]])
    assert retrieval.decode_ranked(feats, emb, k=20) == {"q": ["c0", "c2", "c1", "c3"]}
    assert retrieval.decode_ranked(feats, emb, k=2) == {"q": ["c0", "c2"]}


class _WhitespaceTokenizer:
    """Just enough of a tokenizer for retrieval.featurize (ids are not looked at here)."""

    def __call__(self, texts, truncation, max_length, padding, return_tensors):
        ids = np.ones((len(texts), max_length), dtype=np.int64)
        return {"input_ids": ids, "attention_mask": np.ones_like(ids)}


@pytest.mark.parametrize("task,lang", [("lareqa", "zh"), ("mewslix", "de")])
def test_zero_shot_retrieval_eval_through_the_tiny_encoder(task, lang, tokenizer):
    """What eval_worker's retrieval branch does for one language, in process: the phase-1
    encoder embeds every row (mean-pooled layer), decode ranks the pool, the metric scores."""
    from stilts_ds.modeling.multitask import encoder_embed, load_encoder
    from stilts_ds.modeling.presets import model_config

    torch.manual_seed(0)
    encoder = load_encoder(model_config("tiny", vocab_size=len(tokenizer))).eval()
    spec = get_task(task)
    feats = featurize_examples(spec, load_examples(spec, "test", lang), tokenizer, 64, None)
    fmt = format_of(spec)
    chunks = []
    with torch.no_grad():
        for start in range(0, len(feats), 16):
            batch = fmt.collate(feats, list(range(start, min(start + 16, len(feats)))))
            chunks.append(encoder_embed(encoder, batch).numpy())
    preds = fmt.decode(spec, feats, {"embeddings": np.concatenate(chunks)})
    scores = fmt.score(spec, feats, preds, lang)
    assert set(scores) == {"map@20"} and 0.0 <= scores["map@20"] <= 100.0
    queries = [g for g, side in zip(feats.guids, feats.extras["sides"]) if side == retrieval.SOURCE]
    assert sorted(preds) == sorted(queries)
    # The predictions are in the official submission shape: {query id: [ranked ids]}.
    json.dumps(preds)


def test_shared_pool_is_embedded_once_across_languages(tokenizer, tmp_path):
    """eval_worker's memo for lareqa/mewslix (spec.shared_pool): the second language's file
    runs the encoder on its own new rows only, and the embeddings equal plain prediction's."""
    from stilts_ds.engine.predict import predict, predict_embeddings
    from stilts_ds.engine.runtime import LocalRuntime
    from stilts_ds.modeling.multitask import encoder_embed, load_encoder
    from stilts_ds.modeling.presets import model_config

    torch.manual_seed(0)
    encoder = load_encoder(model_config("tiny", vocab_size=len(tokenizer))).eval()
    rows_run = []

    def forward(tensors):
        rows_run.append(len(tensors["input_ids"]))
        return {"embeddings": encoder_embed(encoder, tensors)}

    spec = get_task("lareqa")
    assert spec.shared_pool and get_task("mewslix").shared_pool and not get_task("bucc").shared_pool
    runtime, memo = LocalRuntime(tmp_path), {}
    feats = {lang: featurize_examples(spec, load_examples(spec, "test", lang), tokenizer, 64, None)
             for lang in ("en", "zh")}
    first = predict_embeddings(forward, spec, feats["en"], memo=memo, batch_size=16, runtime=runtime, device="cpu")
    assert sum(rows_run) == len(feats["en"])  # every row of the first file is new
    rows_run.clear()
    second = predict_embeddings(forward, spec, feats["zh"], memo=memo, batch_size=16, runtime=runtime, device="cpu")
    zh_queries = sum(side == retrieval.SOURCE for side in feats["zh"].extras["sides"])
    assert 0 < sum(rows_run) <= zh_queries < len(feats["zh"])  # the pool came from the memo
    for lang, out in (("en", first), ("zh", second)):
        plain = predict(forward, spec, feats[lang], batch_size=16, runtime=runtime, device="cpu")
        np.testing.assert_allclose(out["embeddings"], plain["embeddings"], atol=1e-5)
