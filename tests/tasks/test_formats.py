"""Each format walks raw fixture rows -> Examples -> Features -> Batch -> decode -> score.

Logits are built from the gold labels (so decoding must recover them exactly) and from a
wrong constant (so the score must drop): the walk is checked end to end, not just run.
"""
import numpy as np
import pytest
import torch

from stilts_ds.data.prepare import featurize_examples
from stilts_ds.metrics import bucc_best_threshold, bucc_pairs_above
from stilts_ds.data.sources import load_examples, load_labels
from stilts_ds.tasks.formats import format_of, retrieval, tagging
from stilts_ds.tasks.registry import get_task


def _walk(task, split, lang, tokenizer, max_length=64):
    spec = get_task(task)
    examples = load_examples(spec, split, lang)
    assert len(examples) >= 10
    feats = featurize_examples(spec, examples, tokenizer, max_length, load_labels(spec))
    fmt = format_of(spec)
    batch = fmt.collate(feats, list(range(min(4, len(feats)))))
    return spec, examples, feats, fmt, batch


@pytest.mark.parametrize("task,split,lang", [("mnli", "validation", "en"), ("xnli", "test", "zh"),
                                             ("pawsx", "test", "ja"), ("anli_plus", "train", "en"),
                                             ("qqp", "train", "en")])
def test_pair_classification_walk(task, split, lang, tokenizer):
    spec, examples, feats, fmt, batch = _walk(task, split, lang, tokenizer)
    assert batch.tensors["input_ids"].dtype == torch.long
    assert batch.tensors["input_ids"].shape[1] == int(feats.columns["lengths"][:4].max())  # dynamic padding
    assert (batch.tensors["input_ids"][:, 0] == tokenizer.cls_token_id).all()
    gold = feats.columns["labels"]
    logits = np.eye(len(spec.labels))[gold]
    preds = fmt.decode(spec, feats, {"logits": logits})
    assert fmt.score(spec, feats, preds, lang)["accuracy"] == 100.0
    wrong = fmt.decode(spec, feats, {"logits": np.tile(np.eye(len(spec.labels))[0], (len(feats), 1))})
    assert fmt.score(spec, feats, wrong, lang)["accuracy"] < 100.0


def test_snli_unlabelled_rows_are_dropped():
    examples = load_examples(get_task("anli_plus"), "train", "en")
    assert all(ex.label is not None for ex in examples)


@pytest.mark.parametrize("task", ["hellaswag", "cosmosqa", "commonsenseqa"])
def test_multiple_choice_walk(task, tokenizer):
    spec, examples, feats, fmt, batch = _walk(task, "validation", "en", tokenizer)
    c = spec.options.num_choices
    assert batch.tensors["input_ids"].shape[:2] == (4, c)
    assert batch.tensors["labels"].shape == (4,)
    gold = feats.columns["labels"]
    preds = fmt.decode(spec, feats, {"logits": np.eye(c)[gold]})
    assert fmt.score(spec, feats, preds, "en")["accuracy"] == 100.0


# Every metric the scorer returns, each exact: a max() over them would pass with one at 100
# and another dropped or wrong.
SEQEVAL_PERFECT = {"f1": 100.0, "precision": 100.0, "recall": 100.0}


@pytest.mark.parametrize("task,split,lang,expected", [
    ("udpos", "test", "hi", SEQEVAL_PERFECT), ("panx", "test", "ar", SEQEVAL_PERFECT),
    ("panx", "train", "en", SEQEVAL_PERFECT), ("ccg", "validation", "en", {"accuracy": 100.0})])
def test_tagging_walk(task, split, lang, expected, tokenizer):
    spec, examples, feats, fmt, _ = _walk(task, split, lang, tokenizer)
    labels = feats.columns["labels"]
    # Exactly one labelled sub-word per word.
    assert (labels != tagging.IGNORE_INDEX).sum() == sum(len(ex.tokens) for ex in examples)
    n = len(load_labels(spec))
    logits = np.zeros(labels.shape + (n,))
    rows, cols = np.nonzero(labels != tagging.IGNORE_INDEX)
    logits[rows, cols, labels[rows, cols]] = 1.0
    preds = fmt.decode(spec, feats, {"logits": logits})
    scores = fmt.score(spec, feats, preds, lang)
    assert scores == expected


def test_tagging_long_sentence_is_split_not_truncated(tokenizer):
    words = tuple(f"word{i}" for i in range(60))
    ex = tagging.Example("long", words, tuple("O" for _ in words))
    feats = tagging.featurize([ex], tokenizer, max_length=16, labels=("O", "B-PER"))
    assert len(feats) > 1 and set(feats.guids) == {"long"}
    assert (feats.columns["labels"] == 0).sum() == 60  # every word labelled once
    preds = tagging.decode(feats, np.zeros((len(feats), 16, 2)))
    assert len(preds["long"]) == 60


def test_tagging_rejects_a_tag_outside_the_label_set(tokenizer):
    ex = tagging.Example("bad", ("a", "b"), ("O", "B-FOO"))
    with pytest.raises(ValueError, match="bad.*B-FOO"):
        tagging.featurize([ex], tokenizer, max_length=16, labels=("O", "B-PER"))


def test_tatoeba_walk_nearest_neighbour(tokenizer):
    spec, examples, feats, fmt, batch = _walk("tatoeba", "test", "ru", tokenizer)
    # Embeddings where each source sits next to its own translation.
    rng = np.random.default_rng(0)
    gold = {ex.guid: ex.gold for ex in examples if ex.side == retrieval.SOURCE}
    base = {ex.guid: rng.normal(size=16) for ex in examples if ex.side == retrieval.TARGET}
    emb = np.stack([base[gold[g]] + 0.01 * rng.normal(size=16) if g in gold else base[g] for g in feats.guids])
    preds = retrieval.decode_tatoeba(feats, emb)
    assert fmt.score(spec, feats, preds, "ru")["accuracy"] == 100.0
    assert fmt.decode(spec, feats, {"embeddings": emb}) == preds


def test_bucc_margin_mining_recovers_pairs_and_skips_distractors(tokenizer):
    spec, examples, feats, fmt, batch = _walk("bucc", "validation", "de", tokenizer)
    refs = feats.extras["references"]
    assert any(ex.side == retrieval.SOURCE and ex.gold is None for ex in examples)  # distractors present
    rng = np.random.default_rng(1)
    vec = {}
    for ex in examples:
        if ex.side == retrieval.SOURCE and ex.gold is not None:
            continue
        vec[ex.guid] = rng.normal(size=32)
    emb = np.stack([vec[refs[g]] + 0.05 * rng.normal(size=32) if g in refs else vec[g] for g in feats.guids])
    cands = retrieval.mine_bucc_candidates(feats, emb)
    threshold = bucc_best_threshold(cands, refs.items())
    gold_scores = [s for pair, s in cands if refs.get(pair[0]) == pair[1]]
    other = [s for pair, s in cands if refs.get(pair[0]) != pair[1]]
    assert max(other) < threshold <= min(gold_scores)  # distractor pairs fall below the tuned threshold
    scores = fmt.score(spec, feats, bucc_pairs_above(cands, threshold), "de")
    assert scores["f1"] == 100.0
    # The format's own evaluation: the threshold tuned on dev, then test pairs above it.
    assert fmt.tune(spec, feats, {"embeddings": emb}) == threshold
    assert fmt.evaluate(spec, lambda f: {"embeddings": emb}, [("de", feats)], dev=feats)["de"]["f1"] == 100.0
    with pytest.raises(ValueError, match="threshold tuned on the dev split"):
        fmt.decode(spec, feats, {"embeddings": emb})


def test_mean_pool_ignores_padding():
    hidden = torch.tensor([[[1.0, 1.0], [3.0, 3.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert retrieval.mean_pool(hidden, mask).tolist() == [[2.0, 2.0]]
    assert retrieval.default_layer(24) == 14 and retrieval.default_layer(12) == 7 and retrieval.default_layer(2) == 1


def _dense_margin_mining(src, trg, k):
    """The ratio-margin mining written out over the full similarity matrix (the reference)."""
    sim = src @ trg.T
    fwd = np.sort(sim, axis=1)[:, -min(k, sim.shape[1]):].mean(axis=1)
    bwd = np.sort(sim.T, axis=1)[:, -min(k, sim.shape[0]):].mean(axis=1)
    margin = sim / (fwd[:, None] / 2 + bwd[None, :] / 2)
    cands = {(i, int(margin[i].argmax())) for i in range(len(src))} | \
            {(int(margin[:, j].argmax()), j) for j in range(len(trg))}
    used_s, used_t, out = set(), set(), {}
    for i, j in sorted(cands, key=lambda ij: -margin[ij]):
        if i not in used_s and j not in used_t:
            used_s.add(i)
            used_t.add(j)
            out[(f"s{i}", f"t{j}")] = float(margin[i, j])
    return out


@pytest.mark.parametrize("block_elements", [7, 64, 1 << 25])  # many blocks, a few, one
def test_blocked_bucc_mining_equals_the_dense_computation(monkeypatch, block_elements):
    monkeypatch.setattr(retrieval, "SIM_BLOCK_ELEMENTS", block_elements)
    rng = np.random.default_rng(7)
    n_src, n_trg, dim = 37, 29, 16
    examples = [retrieval.Example(f"s{i}", f"s{i}", retrieval.SOURCE, "de") for i in range(n_src)] + \
               [retrieval.Example(f"t{j}", f"t{j}", retrieval.TARGET, "en") for j in range(n_trg)]

    class Tok:
        def __call__(self, texts, truncation, max_length, padding, return_tensors):
            ids = np.ones((len(texts), max_length), dtype=np.int64)
            return {"input_ids": ids, "attention_mask": np.ones_like(ids)}

    feats = retrieval.featurize(examples, Tok(), 8)
    emb = rng.normal(size=(len(feats), dim)).astype(np.float32)
    mined = dict(retrieval.mine_bucc_candidates(feats, emb, k=4))
    sides = feats.extras["sides"]
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    src = unit[[s == retrieval.SOURCE for s in sides]]
    trg = unit[[s == retrieval.TARGET for s in sides]]
    order_src = [g for g, s in zip(feats.guids, sides) if s == retrieval.SOURCE]
    order_trg = [g for g, s in zip(feats.guids, sides) if s == retrieval.TARGET]
    dense = _dense_margin_mining(src, trg, 4)
    dense = {(order_src[int(a[1:])], order_trg[int(b[1:])]): v for (a, b), v in dense.items()}
    assert mined.keys() == dense.keys()
    for pair, value in dense.items():
        assert mined[pair] == pytest.approx(value, rel=1e-5)


def test_a_very_long_word_takes_one_row_not_one_per_subword(tokenizer):
    """UD English-EWT test has a 473-character URL: rows never split a word, so it became a
    row per sub-word (131 rows). A word now keeps at most half a row of sub-words; its tag
    sits on its first sub-word, so decoding still gives every word its tag."""
    url = "https://example.org/" + "/".join(f"segment{i}xq" for i in range(60))
    tokens = ("See", url, "now", ".")
    ex = tagging.Example("s1", tokens, ("VERB", "X", "ADV", "PUNCT"))
    labels = ("ADV", "PUNCT", "VERB", "X")
    feats = tagging.featurize([ex], tokenizer, 32, labels=labels)
    assert len(feats) <= 2, len(feats)
    fmt = format_of("tagging")
    gold = feats.columns["labels"]
    logits = np.zeros(gold.shape + (len(labels),))
    rows, cols = np.nonzero(gold != tagging.IGNORE_INDEX)
    logits[rows, cols, gold[rows, cols]] = 1.0
    assert tagging.decode(feats, logits) == {"s1": list(ex.tags)}
    assert fmt.quality(feats, 32)["rows"] == len(feats)
