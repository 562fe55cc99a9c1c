"""The Format contract, one shared test for every format object.

Each format walks the bundled fixtures (official row schemas, CJK, Arabic and Cyrillic text)
through the same calls the rest of the package makes, with a real (tiny, random) XLM-R
model in the middle:

    featurize -> quality -> collate -> model_inputs / head (or embeddings) -> pad_output
    -> decode (tuning on dev where the format does) -> score

What a random model predicts is noise, so the contract checks shapes and keys: every
output key the format names comes out, batches of different widths stack, every example
gets a prediction, and the score has exactly the metric's keys, each in [0, 100]. The
per-format known answers (gold logits decode to 100, a wrong constant scores less) are in
tests/tasks/test_formats.py and test_scoring_span_qa.py.

    .venv/bin/python -m pytest -q tests/tasks/test_format_contract.py
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from stilts_ds.data.prepare import featurize_examples
from stilts_ds.data.sources import load_examples, load_labels
from stilts_ds.errors import StiltsError
from stilts_ds.modeling.multitask import HeadSpec, MultiTaskModel, encoder_embed, load_encoder
from stilts_ds.modeling.presets import model_config
from stilts_ds.tasks.formats import FORMATS, Format, format_of
from stilts_ds.tasks.registry import get_task

MAX_LENGTH = 64
BATCH = 5  # not a divisor of the split sizes: the last batch is short and narrower

# (task, split, lang, the metric's keys): at least one task per format, every metric.
CASES = [
    ("xnli", "test", "zh", {"accuracy"}),                       # pair_classification
    ("pawsx", "test", "ja", {"accuracy"}),
    ("xcopa", "test", "zh", {"accuracy"}),                      # multiple_choice
    ("hellaswag", "validation", "en", {"accuracy"}),
    ("mlqa", "test", "zh", {"exact_match", "f1"}),              # span_qa, MLQA's normalisation
    ("xquad", "test", "ar", {"exact_match", "f1"}),
    ("squad_v2", "validation", "en", None),                     # SQuAD v2's own key set
    ("panx", "test", "ar", {"f1", "precision", "recall"}),      # tagging
    ("ccg", "validation", "en", {"accuracy"}),
    ("tatoeba", "test", "ru", {"accuracy"}),                    # retrieval
    ("bucc", "test", "zh", {"f1", "precision", "recall"}),
    ("lareqa", "test", "de", {"map@20"}),
]


def test_every_format_is_covered():
    assert {get_task(t).format for t, *_ in CASES} | {"mlm"} == set(FORMATS)
    assert all(isinstance(format_of(name), Format) and format_of(name).name == name for name in FORMATS)


@pytest.fixture(scope="module")
def encoder(tokenizer):
    torch.manual_seed(0)
    return load_encoder(model_config("tiny", vocab_size=len(tokenizer))).eval()


def _featurize(spec, split, lang, tokenizer):
    labels = load_labels(spec)
    feats = featurize_examples(spec, load_examples(spec, split, lang), tokenizer, MAX_LENGTH, labels)
    return feats, labels


def _predict(fmt, feats, forward):
    """What engine.predict does, on one process: batches, outputs padded back, stacked."""
    width = feats.columns["input_ids"].shape[-1]
    chunks = {k: [] for k in fmt.output_keys}
    widths = set()
    with torch.no_grad():
        for start in range(0, len(feats), BATCH):
            batch = fmt.collate(feats, list(range(start, min(start + BATCH, len(feats)))))
            widths.add(batch.tensors["input_ids"].shape[-1])
            out = forward(batch.tensors)
            assert set(fmt.output_keys) <= set(out), f"{fmt}: model gave {sorted(out)}"
            for k in fmt.output_keys:
                chunks[k].append(fmt.pad_output(k, out[k].float().numpy(), width))
    return {k: np.concatenate(v) for k, v in chunks.items()}, widths


@pytest.mark.parametrize("task,split,lang,keys", CASES, ids=[f"{c[0]}-{c[2]}" for c in CASES])
def test_format_contract(task, split, lang, keys, tokenizer, encoder):
    spec = get_task(task)
    fmt = format_of(spec)
    feats, labels = _featurize(spec, split, lang, tokenizer)
    assert feats.format == fmt.name and "references" in feats.extras

    quality = fmt.quality(feats, MAX_LENGTH)
    assert quality["rows"] == len(feats) and 0 < quality["examples"] <= quality["rows"]
    assert 0 <= quality["truncated"] <= quality["examples"]

    if fmt.has_head:
        model = MultiTaskModel(encoder, {task: HeadSpec(spec.format, fmt.num_labels(spec, labels))}).eval()

        def forward(tensors):
            return model(task, tensors)
    else:
        def forward(tensors):
            return {"embeddings": encoder_embed(encoder, tensors)}
    outputs, widths = _predict(fmt, feats, forward)
    assert len(widths) >= 1 and all(len(v) == len(feats) for v in outputs.values())

    dev = _featurize(spec, "validation", lang, tokenizer)[0] if fmt.needs_dev(spec) else None
    scores = fmt.evaluate(spec, lambda f: outputs if f is feats else _predict(fmt, f, forward)[0],
                          [(lang, feats)], dev=dev)[lang]
    if keys is not None:
        assert set(scores) == keys, scores
    assert all(math.isnan(v) or 0.0 <= v <= 100.0 for v in scores.values()), scores

    if fmt.needs_dev(spec):  # decode alone would need the tuned threshold
        return
    preds = fmt.decode(spec, feats, outputs)
    refs = feats.extras["references"]
    assert set(refs) <= set(map(str, preds)), "an example without a prediction"
    assert fmt.score(spec, feats, preds, lang) == scores


def test_mlm_trains_and_is_never_scored(tokenizer, encoder):
    spec = get_task("mlm@de")
    fmt = format_of(spec)
    assert fmt.trains and not fmt.scores and fmt.pretrained_head
    feats, labels = _featurize(spec, "train", "de", tokenizer)
    # Masks are drawn per (seed, step): the same batch twice is the same, the next step is not.
    a = fmt.collate(feats, [0, 1, 2], seed=1, step=0)
    b = fmt.collate(feats, [0, 1, 2], seed=1, step=0)
    c = fmt.collate(feats, [0, 1, 2], seed=1, step=1)
    assert torch.equal(a.tensors["input_ids"], b.tensors["input_ids"])
    assert not torch.equal(a.tensors["labels"], c.tensors["labels"])
    model = MultiTaskModel(encoder, {"mlm@de": HeadSpec("mlm", fmt.num_labels(spec, labels), head="mlm")})
    loss = model("mlm@de", a.tensors)["loss"]
    assert torch.isfinite(loss)
    with pytest.raises(StiltsError, match="training-only"):
        fmt.score(spec, feats, {}, "de")


def test_options_are_typed_and_checked():
    from stilts_ds.tasks.formats import ChoiceOptions, SpanOptions

    assert format_of("multiple_choice").options_of(get_task("xcopa")) == ChoiceOptions(num_choices=2)
    assert format_of("span_qa").options_of(get_task("squad_v2")) == SpanOptions(version_2_with_negative=True)
    assert format_of("span_qa").options_of(get_task("xquad")) == SpanOptions()
    assert format_of("multiple_choice").sequences_per_row(get_task("commonsenseqa")) == 5
    with pytest.raises(TypeError, match="takes ChoiceOptions"):
        format_of("multiple_choice").options_of(get_task("squad_v2").__class__(
            **{**get_task("hellaswag").__dict__, "options": SpanOptions()}))
    with pytest.raises(ValueError, match="at least 2"):
        ChoiceOptions(num_choices=1)
