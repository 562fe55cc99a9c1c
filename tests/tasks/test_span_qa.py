"""span_qa format: raw -> features -> batch -> decode, windows, labels, v2, errors.

Tokenizer: stilts_ds/resources/tokenizer when it exists, else a throwaway XLM-R-style Unigram
tokenizer trained here (session fixture) on English, Chinese and Arabic text.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from stilts_ds.tasks.formats import span_qa
from stilts_ds.tasks.formats.span_qa import Example

RESOURCE_TOKENIZER = Path(span_qa.__file__).resolve().parents[2] / "resources" / "tokenizer"

EN_WORDS = (
    "the river flows through an old city where merchants sold spices silk and salt while "
    "scholars wrote long books about stars rivers mountains kings and the quiet lives of "
    "farmers who grew wheat barley and grapes on the hills above the valley"
).split()
ZH = "北京是中国的首都也是一座历史悠久的城市长城位于北京的北部每年有很多游客来这里参观"
AR = "القاهرة هي عاصمة مصر وأكبر مدنها وتقع على ضفاف نهر النيل في شمال البلاد"


@pytest.fixture(scope="session")
def qa_tokenizer(tmp_path_factory):
    if RESOURCE_TOKENIZER.exists():
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(RESOURCE_TOKENIZER))
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import XLMRobertaTokenizerFast

    rng = np.random.default_rng(0)
    corpus = []
    for _ in range(300):
        corpus.append(" ".join(rng.choice(EN_WORDS, size=30)))
        corpus.append("".join(rng.permutation(list(ZH))))
        corpus.append(" ".join(rng.permutation(AR.split())))
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace()])
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(corpus, trainers.UnigramTrainer(
        vocab_size=1000, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"], unk_token="<unk>"))
    path = tmp_path_factory.mktemp("qa_tokenizer") / "tokenizer.json"
    tok.save(str(path))
    return XLMRobertaTokenizerFast(tokenizer_object=Tokenizer.from_file(str(path)))


def make(guid, question, context, answer=None, occurrence=0):
    if answer is None:
        return Example(guid, question, context)
    start = -1
    for _ in range(occurrence + 1):
        start = context.index(answer, start + 1)
    return Example(guid, question, context, (answer,), (start,))


def token_aligned(tokenizer, context, lo, hi):
    """The smallest span of whole tokens covering context[lo:hi] (for text without spaces,
    where a subword may straddle a hand-picked boundary)."""
    offs = tokenizer(context, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    cover = [(a, b) for a, b in offs if b > a and b > lo and a < hi]
    a, b = min(a for a, _ in cover), max(b for _, b in cover)
    return context[a:b], a


def long_context(n_words=90, seed=1):
    rng = np.random.default_rng(seed)
    return " ".join(rng.choice(EN_WORDS, size=n_words))


def one_hot_logits(batch, value=10.0):
    """Logits that put all mass on each row's gold start/end (CLS for rows without it)."""
    n, width = batch.tensors["input_ids"].shape
    start = torch.zeros(n, width)
    end = torch.zeros(n, width)
    rows = torch.arange(n)
    start[rows, batch.tensors["start_positions"]] = value
    end[rows, batch.tensors["end_positions"]] = value
    return start, end


def rows_of(feats, guid):
    return [i for i, g in enumerate(feats.guids) if g == guid]


def context_tokens(feats, row):
    mask = feats.extras["offsets"][row, :, 0] >= 0
    return feats.columns["input_ids"][row][mask], feats.extras["offsets"][row][mask]


KW = dict(max_length=64, stride=16, max_query_length=16)


@pytest.fixture(scope="module")
def corpus(qa_tokenizer):
    long_ctx = long_context() + " the purple elephant danced at dawn"
    zh_answer, zh_start = token_aligned(qa_tokenizer, ZH, ZH.index("长城"), ZH.index("长城") + 2)
    examples = [
        make("en-short", "what did merchants sell?", "merchants sold spices and silk in the old city", "spices and silk"),
        make("en-long", "who danced at dawn?", long_ctx, "purple elephant"),
        Example("zh", "长城在哪里", ZH, (zh_answer,), (zh_start,)),
        make("ar", "ما هي عاصمة مصر؟", AR, "القاهرة"),
        make("ar-mid", "أين تقع القاهرة؟", AR, "ضفاف نهر النيل"),
        make("v2-none", "what color is the sky?", "the river flows through an old city"),
        make("empty", "anything?", ""),
    ]
    return examples


def test_round_trip_one_hot_logits_decode_gold(qa_tokenizer, corpus):
    feats = span_qa.featurize(corpus, qa_tokenizer, **KW)
    assert feats.format == "span_qa"
    batch = span_qa.collate(feats, list(range(len(feats))))
    start, end = one_hot_logits(batch)
    for v2 in (False, True):
        preds = span_qa.decode(feats, start, end, version_2_with_negative=v2)
        assert list(preds) == [ex.guid for ex in corpus]  # every guid once, in order
        for ex in corpus:
            if ex.answers:
                assert preds[ex.guid] == ex.answers[0], ex.guid
            elif v2 or not ex.context:  # v1 has no null answer: only an empty context gives ""
                assert preds[ex.guid] == "", ex.guid
    # The long example's answer sits in a later window only.
    rows = rows_of(feats, "en-long")
    assert len(rows) >= 3
    pos = feats.columns["start_positions"][rows]
    assert pos[0] == 0 and (pos[1:] > 0).any()  # out of window -> 0; found in a later one
    assert span_qa.references(corpus)["v2-none"] == []
    assert span_qa.references(corpus)["ar"] == ["القاهرة"]


def test_gold_positions_point_at_answer_tokens(qa_tokenizer, corpus):
    feats = span_qa.featurize(corpus, qa_tokenizer, **KW)
    offsets = feats.extras["offsets"]
    for i, guid in enumerate(feats.guids):
        ex = next(e for e in corpus if e.guid == guid)
        s, e = feats.columns["start_positions"][i], feats.columns["end_positions"][i]
        if s == 0:
            assert e == 0
            continue
        text = feats.extras["contexts"][guid][offsets[i, s, 0]:offsets[i, e, 1]]
        assert text == ex.answers[0]


def test_windows_overlap_by_stride_and_cover_the_context(qa_tokenizer, corpus):
    feats = span_qa.featurize(corpus, qa_tokenizer, **KW)
    rows = rows_of(feats, "en-long")
    stride = KW["stride"]
    pieces = [context_tokens(feats, r) for r in rows]
    for (ids_a, off_a), (ids_b, off_b) in zip(pieces, pieces[1:]):
        np.testing.assert_array_equal(ids_a[-stride:], ids_b[:stride])
        np.testing.assert_array_equal(off_a[-stride:], off_b[:stride])
    stitched = np.concatenate([pieces[0][0]] + [ids[stride:] for ids, _ in pieces[1:]])
    context = next(e.context for e in corpus if e.guid == "en-long")
    whole = qa_tokenizer(context, add_special_tokens=False)["input_ids"]
    np.testing.assert_array_equal(stitched, whole)
    assert (feats.columns["lengths"] <= KW["max_length"]).all()


def test_matches_the_hf_run_qa_call(qa_tokenizer, corpus):
    # Generous max_query_length: no question is cut, so the plain HF call sees the same text.
    kw = dict(max_length=96, stride=16, max_query_length=64)
    n_q = [len(qa_tokenizer(e.question, add_special_tokens=False)["input_ids"]) for e in corpus]
    assert max(n_q) <= kw["max_query_length"]
    before = (qa_tokenizer.backend_tokenizer.truncation, qa_tokenizer.backend_tokenizer.padding)
    feats = span_qa.featurize(corpus, qa_tokenizer, **kw)
    after = (qa_tokenizer.backend_tokenizer.truncation, qa_tokenizer.backend_tokenizer.padding)
    assert before == after  # the tokenizer's own settings are restored
    enc = qa_tokenizer(
        [e.question for e in corpus], [e.context for e in corpus], truncation="only_second",
        max_length=kw["max_length"], stride=kw["stride"], padding="max_length",
        return_overflowing_tokens=True, return_offsets_mapping=True,
    )
    np.testing.assert_array_equal(feats.columns["input_ids"], np.asarray(enc["input_ids"]))
    np.testing.assert_array_equal(feats.columns["attention_mask"], np.asarray(enc["attention_mask"]))
    for i in range(len(feats)):
        seq = np.array([s if s is not None else -1 for s in enc.sequence_ids(i)])
        hf = np.asarray(enc["offset_mapping"][i])
        np.testing.assert_array_equal(feats.extras["offsets"][i][seq == 1], hf[seq == 1])
        assert (feats.extras["offsets"][i][seq != 1] == -1).all()
    assert feats.columns["input_ids"].dtype == np.int32
    assert feats.columns["start_positions"].dtype == np.int64
    assert feats.extras["offsets"].shape == (len(feats), kw["max_length"], 2)


def test_v2_unanswerable_and_threshold(qa_tokenizer):
    ctx = "merchants sold spices and silk in the old city"
    examples = [make("none", "what color is the sky?", ctx), make("some", "what was sold?", ctx, "spices")]
    feats = span_qa.featurize(examples, qa_tokenizer, **KW, version_2_with_negative=True)
    assert feats.extras["version_2_with_negative"] is True
    assert (feats.columns["start_positions"][rows_of(feats, "none")] == 0).all()
    batch = span_qa.collate(feats, range(len(feats)))
    start, end = one_hot_logits(batch)  # "none": CLS 10+10 beats every span (0)
    some = rows_of(feats, "some")[0]
    start[some, 0] = end[some, 0] = 6.0  # null 12 < span 20
    preds = span_qa.decode(feats, start, end, version_2_with_negative=True)
    assert preds == {"none": "", "some": "spices"}
    # v1 ignores the null score and returns the best real span.
    assert span_qa.decode(feats, start, end)["none"] != ""
    # The null must beat the best span by more than the threshold.
    start[some, 0] = end[some, 0] = 11.0  # null 22 - span 20 = 2
    assert span_qa.decode(feats, start, end, version_2_with_negative=True)["some"] == ""
    assert span_qa.decode(feats, start, end, version_2_with_negative=True,
                          null_score_diff_threshold=2.5)["some"] == "spices"


def test_max_answer_length_respected(qa_tokenizer):
    words = EN_WORDS[:20]
    ctx = " ".join(words)
    char_of = np.cumsum([0] + [len(w) + 1 for w in words])  # start char of each word
    feats = span_qa.featurize([make("m", "what?", ctx, words[2])], qa_tokenizer, max_length=160,
                              stride=16, max_query_length=16)
    assert len(feats) == 1
    offsets = feats.extras["offsets"][0]

    def first_token(word):
        return int(np.nonzero(offsets[:, 0] == char_of[word])[0][0])

    def last_token(word):
        return int(np.nonzero(offsets[:, 1] == char_of[word] + len(words[word]))[0][-1])

    s, near, far = first_token(2), last_token(3), last_token(15)
    start = np.zeros((1, feats.columns["lengths"][0]), dtype=np.float32)
    end = np.zeros_like(start)
    start[0, s] = 10.0
    end[0, far] = 10.0
    end[0, near] = 5.0
    long_pred = span_qa.decode(feats, start, end, max_answer_length=far - s + 1)["m"]
    assert long_pred == " ".join(words[2:16])
    short_pred = span_qa.decode(feats, start, end, max_answer_length=far - s)["m"]
    assert short_pred == " ".join(words[2:4])
    # No valid span at all among the n_best (every end before every start) -> "".
    start2 = np.zeros_like(start)
    end2 = np.full_like(end, -1e9)
    start2[0, far], end2[0, s] = 10.0, 10.0
    assert span_qa.decode(feats, start2, end2, n_best=1)["m"] == ""


def test_answer_mismatch_names_the_guid(qa_tokenizer):
    bad = Example("bad-guid-7", "q?", "the cat sat on the mat", ("dog",), (4,))
    ok = make("fine", "q?", "the cat sat on the mat", "cat")
    with pytest.raises(ValueError, match="bad-guid-7"):
        span_qa.featurize([ok, bad], qa_tokenizer, **KW)
    with pytest.raises(ValueError, match="dup"):
        span_qa.featurize([ok, ok], qa_tokenizer, **KW)


def test_dynamic_padding_trims_the_batch(qa_tokenizer, corpus):
    feats = span_qa.featurize(corpus, qa_tokenizer, **KW)
    short = rows_of(feats, "en-short") + rows_of(feats, "v2-none")
    batch = span_qa.collate(feats, short)
    ids = batch.tensors["input_ids"]
    longest = int(feats.columns["lengths"][short].max())
    assert ids.shape == (2, longest) and longest < KW["max_length"]
    assert set(batch.tensors) == {"input_ids", "attention_mask", "start_positions", "end_positions"}
    assert all(t.dtype == torch.int64 for t in batch.tensors.values())
    assert batch.tensors["attention_mask"].sum(1).tolist() == feats.columns["lengths"][short].tolist()
    assert (ids[batch.tensors["attention_mask"] == 0] == qa_tokenizer.pad_token_id).all()
    assert list(batch.guids) == ["en-short", "v2-none"]
    np.testing.assert_array_equal(batch.rows, short)


def test_long_question_is_cut_to_max_query_length(qa_tokenizer):
    question = " ".join(EN_WORDS[:40]) + "?"
    ex = make("q", question, "merchants sold spices and silk", "silk")
    feats = span_qa.featurize([ex], qa_tokenizer, **KW)
    n_special = qa_tokenizer.num_special_tokens_to_add(pair=True)
    non_context = int(((feats.extras["offsets"][0, :, 0] < 0) & (feats.columns["attention_mask"][0] == 1)).sum())
    assert 0 < non_context - n_special <= KW["max_query_length"]
    batch = span_qa.collate(feats, [0])
    assert span_qa.decode(feats, *one_hot_logits(batch))["q"] == "silk"


def test_stride_must_leave_room(qa_tokenizer):
    with pytest.raises(ValueError, match="stride"):
        span_qa.featurize([make("a", "q", "x y", "x")], qa_tokenizer, max_length=32, stride=16, max_query_length=16)


def test_decode_checks_shapes(qa_tokenizer, corpus):
    feats = span_qa.featurize(corpus, qa_tokenizer, **KW)
    good = np.zeros((len(feats), 10), dtype=np.float32)
    with pytest.raises(ValueError, match="rows"):
        span_qa.decode(feats, good[:-1], good[:-1])
    with pytest.raises(ValueError, match="wide"):
        wide = np.zeros((len(feats), KW["max_length"] + 1), dtype=np.float32)
        span_qa.decode(feats, wide, wide)


def exhaustive_decode(feats, start, end, max_answer_length, v2, threshold=0.0):
    """Reference: every (start, end) pair of every window, no n-best cut, plain loops."""
    offsets = feats.extras["offsets"]
    best = {}
    null = {}
    for w, guid in enumerate(feats.guids):
        null[guid] = min(null.get(guid, np.inf), start[w, 0] + end[w, 0])
        ctx = [i for i in range(start.shape[1]) if offsets[w, i, 0] >= 0]
        for s in ctx:
            for e in ctx:
                if s <= e < s + max_answer_length:
                    score = start[w, s] + end[w, e]
                    if guid not in best or score > best[guid][0]:
                        best[guid] = (score, w, s, e)
    out = {}
    for guid in feats.extras["example_guids"]:
        if guid not in best or (v2 and null[guid] - best[guid][0] > threshold):
            out[guid] = ""
        else:
            _, w, s, e = best[guid]
            out[guid] = feats.extras["contexts"][guid][offsets[w, s, 0]:offsets[w, e, 1]]
    return out


@pytest.mark.parametrize("v2", [False, True])
def test_decode_matches_exhaustive_search(qa_tokenizer, corpus, v2):
    feats = span_qa.featurize(corpus, qa_tokenizer, **KW)
    width = int(feats.columns["lengths"].max())
    rng = np.random.default_rng(3)
    start = rng.standard_normal((len(feats), width)).astype(np.float32)
    end = rng.standard_normal((len(feats), width)).astype(np.float32)
    start[:, 0] += 1.5  # make the null answer win some v2 examples and lose others
    end[:, 0] += 1.5
    for max_len in (1, 4, 30):
        got = span_qa.decode(feats, start, end, n_best=width, max_answer_length=max_len,
                             version_2_with_negative=v2)
        want = exhaustive_decode(feats, start, end, max_len, v2)
        assert got == want
        if v2:
            assert "" in got.values() and any(got[g] for g in got if g != "empty")


@pytest.mark.parametrize("context,answer", [
    ("It weighs ½ kg.", "½"),            # NFKC: "1⁄2", three tokens sharing one character span
    ("It weighs 5㎏ now.", "㎏"),         # "kg": two tokens on one character
    ("A ﬁ ligature.", "ﬁ"),              # "fi"
    ("第Ⅳ章", "Ⅳ"),                      # CJK context, a Roman numeral expanding to "IV"
    ("It costs $4 now.", "4"),           # a plain one-character answer after punctuation
])
def test_one_character_answers_keep_their_label(tokenizer, context, answer):
    """A one-character answer whose character the tokenizer turns into several tokens with
    the same offsets kept no label (start = end = 0, trained as unanswerable): the end search
    was not bounded below by the start. The label now lies inside the answer, and decoding
    it gives the answer back."""
    ex = Example("q1", "What?", context, (answer,), (context.index(answer),))
    feats = span_qa.featurize([ex], tokenizer, 32, stride=8, max_query_length=8)
    start, end = int(feats.columns["start_positions"][0]), int(feats.columns["end_positions"][0])
    assert 0 < start <= end, (start, end)
    offsets = feats.extras["offsets"][0]
    assert offsets[start][0] <= context.index(answer) and offsets[end][1] >= context.index(answer) + 1
    logits = np.full((1, feats.columns["input_ids"].shape[1]), -10.0)
    s_logits, e_logits = logits.copy(), logits.copy()
    s_logits[0, start], e_logits[0, end] = 10.0, 10.0
    assert span_qa.decode(feats, s_logits, e_logits) == {"q1": answer}
