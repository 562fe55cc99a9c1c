"""MultiTaskModel, its heads and the encoder export, on the tiny XLM-R preset (and a tiny BERT).

Batches are built through each format's own ``collate`` from hand-made ``Features`` with
random token ids (vocabulary 300), so the tests need neither a tokenizer nor a hub, and the
tensor names the model reads are the ones the formats really produce.
"""
import os

import numpy as np
import pytest
import torch
from transformers import AutoModel, BertConfig

from stilts_ds.errors import StiltsError
from stilts_ds.modeling import export
from stilts_ds.modeling.heads import HEADS, masked_cross_entropy
from stilts_ds.modeling.multitask import HeadSpec, MultiTaskModel, UnknownTaskError
from stilts_ds.modeling.presets import model_config
from stilts_ds.tasks.features import Features
from stilts_ds.tasks.formats import multiple_choice, pair_classification, retrieval, span_qa, tagging

VOCAB = 300
PAD = 1  # the tiny preset's pad id (XLM-R: <s>=0, <pad>=1, </s>=2)
BOS, EOS = 0, 2


def tiny_config(**overrides):
    config = model_config("tiny", vocab_size=VOCAB)
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


def tiny_bert_config(**overrides):
    params = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=64, max_position_embeddings=64, pad_token_id=0)
    params.update(overrides)
    return BertConfig(**params)


def _rows(rng, n, lengths, max_len, pad=PAD):
    ids = np.full((n, max_len), pad, dtype=np.int32)
    mask = np.zeros((n, max_len), dtype=np.int8)
    for i, length in enumerate(lengths):
        ids[i, :length] = rng.integers(3, VOCAB, size=length)
        ids[i, 0], ids[i, length - 1] = BOS, EOS
        mask[i, :length] = 1
    return ids, mask


def pair_batch(rng, n=4, max_len=12, num_labels=3, pad=PAD):
    lengths = rng.integers(4, max_len + 1, size=n)
    ids, mask = _rows(rng, n, lengths, max_len, pad)
    feats = Features("pair_classification", {
        "input_ids": ids, "attention_mask": mask,
        "labels": rng.integers(0, num_labels, size=n).astype(np.int64), "lengths": lengths.astype(np.int32),
    }, np.array([f"p{i}" for i in range(n)], dtype=object), {"label_names": tuple("abc"[:num_labels])})
    return pair_classification.collate(feats, range(n)).tensors


def mc_batch(rng, n=3, choices=4, max_len=10, pad=PAD):
    lengths = rng.integers(4, max_len + 1, size=n * choices)
    ids, mask = _rows(rng, n * choices, lengths, max_len, pad)
    feats = Features("multiple_choice", {
        "input_ids": ids.reshape(n, choices, max_len), "attention_mask": mask.reshape(n, choices, max_len),
        "labels": rng.integers(0, choices, size=n).astype(np.int64),
        "lengths": lengths.reshape(n, choices).max(axis=1).astype(np.int32),
    }, np.array([f"m{i}" for i in range(n)], dtype=object), {"num_choices": choices})
    return multiple_choice.collate(feats, range(n)).tensors


def span_batch(rng, n=4, max_len=16, pad=PAD):
    lengths = np.array([max_len] + list(rng.integers(6, max_len, size=n - 1)))
    ids, mask = _rows(rng, n, lengths, max_len, pad)
    start = np.array([rng.integers(1, length - 2) for length in lengths], dtype=np.int64)
    end = np.minimum(start + 1, lengths - 2).astype(np.int64)
    feats = Features("span_qa", {
        "input_ids": ids, "attention_mask": mask, "start_positions": start, "end_positions": end,
        "lengths": lengths.astype(np.int32),
    }, np.array([f"s{i}" for i in range(n)], dtype=object))
    return span_qa.collate(feats, range(n)).tensors


def tag_batch(rng, n=4, max_len=12, num_labels=5, pad=PAD):
    lengths = rng.integers(4, max_len + 1, size=n)
    ids, mask = _rows(rng, n, lengths, max_len, pad)
    labels = np.full((n, max_len), -100, dtype=np.int64)
    words = np.full((n, max_len), -1, dtype=np.int32)
    for i, length in enumerate(lengths):
        labels[i, 1:length - 1] = rng.integers(0, num_labels, size=length - 2)
        words[i, 1:length - 1] = np.arange(length - 2)
    feats = Features("tagging", {
        "input_ids": ids, "attention_mask": mask, "labels": labels, "word_index": words,
        "lengths": lengths.astype(np.int32),
    }, np.array([f"t{i}" for i in range(n)], dtype=object))
    return tagging.collate(feats, range(n)).tensors


ALL_TASKS = {
    "mnli": HeadSpec("pair_classification", 3),
    "hellaswag": HeadSpec("multiple_choice", 4),
    "squad_v1": HeadSpec("span_qa", 2),
    "ccg": HeadSpec("tagging", 5),
}


def build(config=None, tasks=ALL_TASKS, **kw):
    torch.manual_seed(0)
    return MultiTaskModel.build(config or tiny_config(), tasks, **kw)


# --------------------------------------------------------------------------- heads


@pytest.mark.parametrize("make_config", [tiny_config, tiny_bert_config], ids=["xlm-roberta", "bert"])
def test_every_head_forward_and_loss_shapes(make_config):
    config = make_config()
    pad = config.pad_token_id
    model = build(config)
    rng = np.random.default_rng(0)
    hidden = config.hidden_size

    t = pair_batch(rng, pad=pad)
    out = model("mnli", t)
    assert out["logits"].shape == (4, 3) and out["loss"].dim() == 0

    t = mc_batch(rng, pad=pad)
    out = model("hellaswag", t)
    assert out["logits"].shape == (3, 4) and out["loss"].dim() == 0

    t = span_batch(rng, pad=pad)
    out = model("squad_v1", t)
    L = t["input_ids"].shape[1]
    assert out["start_logits"].shape == out["end_logits"].shape == (4, L) and out["loss"].dim() == 0

    t = tag_batch(rng, pad=pad)
    out = model("ccg", t)
    assert out["logits"].shape == (*t["input_ids"].shape, 5) and out["loss"].dim() == 0

    for out in (model("mnli", pair_batch(rng, pad=pad)), model("ccg", tag_batch(rng, pad=pad))):
        assert torch.isfinite(out["loss"])
    emb = model.embed(pair_batch(rng, pad=pad), layer=1)
    assert emb.shape == (4, hidden)


def test_loss_only_when_targets_present():
    model = build()
    rng = np.random.default_rng(1)
    t = {k: v for k, v in pair_batch(rng).items() if k != "labels"}
    assert set(model("mnli", t)) == {"logits"}
    t = {k: v for k, v in span_batch(rng).items() if k not in ("start_positions", "end_positions")}
    assert set(model("squad_v1", t)) == {"start_logits", "end_logits"}
    t = {k: v for k, v in tag_batch(rng).items() if k != "labels"}
    assert set(model("ccg", t)) == {"logits"}


def test_all_ignored_labels_give_zero_loss_not_nan():
    model = build()
    t = dict(pair_batch(np.random.default_rng(2)))
    t["labels"] = torch.full_like(t["labels"], -100)
    loss = model("mnli", t)["loss"]
    assert loss.item() == 0.0
    loss.backward()  # still part of the graph
    logits = torch.randn(5, 3)
    targets = torch.tensor([0, 2, -100, 1, -100])
    assert torch.allclose(masked_cross_entropy(logits, targets), torch.nn.functional.cross_entropy(logits, targets))


def test_heads_are_keyed_by_format():
    assert set(HEADS) == {"pair_classification", "multiple_choice", "span_qa", "tagging"}
    with pytest.raises(StiltsError, match="retrieval tasks need no head"):
        HeadSpec("retrieval", 0)


def test_multiple_choice_reshape_matches_scoring_each_pair_alone():
    model = build().eval()
    t = mc_batch(np.random.default_rng(3), n=3, choices=4)
    with torch.no_grad():
        logits = model("hellaswag", t)["logits"]
        head = model.head_for("hellaswag")
        for b in range(3):
            for c in range(4):
                one = {"input_ids": t["input_ids"][b, c][None], "attention_mask": t["attention_mask"][b, c][None]}
                hidden = model.encoder(**one).last_hidden_state
                score = head.scorer(hidden)[0, 0]
                assert torch.allclose(logits[b, c], score, atol=1e-5), (b, c)
    expected = torch.nn.functional.cross_entropy(logits, t["labels"])
    with torch.no_grad():
        assert torch.allclose(model("hellaswag", t)["loss"], expected, atol=1e-6)


def test_one_multiple_choice_head_serves_different_choice_counts():
    tasks = {"hellaswag": HeadSpec("multiple_choice", 4, head="mc"),
             "commonsenseqa": HeadSpec("multiple_choice", 5, head="mc")}
    model = build(tasks=tasks)
    rng = np.random.default_rng(4)
    assert model("hellaswag", mc_batch(rng, choices=4))["logits"].shape == (3, 4)
    assert model("commonsenseqa", mc_batch(rng, choices=5))["logits"].shape == (3, 5)


def test_span_qa_masks_padding_and_clamps_positions():
    model = build().eval()
    t = dict(span_batch(np.random.default_rng(5)))
    with torch.no_grad():
        out = model("squad_v1", t)
    pad = t["attention_mask"] == 0
    assert pad.any()
    very_negative = torch.finfo(out["start_logits"].dtype).min
    for key in ("start_logits", "end_logits"):
        assert (out[key][pad] == very_negative).all()
        assert (out[key][~pad] > -1e4).all()
        # the best position of every row is a real token
        assert (t["attention_mask"].gather(1, out[key].argmax(1, keepdim=True)) == 1).all()
    assert torch.isfinite(out["loss"])
    # HF convention: positions past the sequence are clamped to L and ignored.
    L = t["input_ids"].shape[1]
    far = dict(t, start_positions=t["start_positions"].clone(), end_positions=t["end_positions"].clone())
    far["start_positions"][0] = far["end_positions"][0] = L + 50
    with torch.no_grad():
        out_far = model("squad_v1", far)
        kept = {k: v[1:] for k, v in t.items()}
        out_kept = model("squad_v1", kept)
    assert torch.allclose(out_far["loss"], out_kept["loss"], atol=1e-5)


def test_tagging_loss_ignores_minus_100():
    model = build().eval()
    t = tag_batch(np.random.default_rng(6))
    with torch.no_grad():
        out = model("ccg", t)
    logits, labels = out["logits"], t["labels"]
    keep = labels != -100
    expected = torch.nn.functional.cross_entropy(logits[keep], labels[keep])
    assert torch.allclose(out["loss"], expected, atol=1e-6)


# --------------------------------------------------------------------------- sharing, routing


def test_shared_heads_are_one_module_and_not_duplicated():
    tasks = {
        "mnli": HeadSpec("pair_classification", 3, head="nli"),
        "anli_plus": HeadSpec("pair_classification", 3, head="nli"),
        "qqp": HeadSpec("pair_classification", 2),
    }
    model = build(tasks=tasks)
    assert model.head_for("mnli") is model.head_for("anli_plus")
    assert model.head_for("qqp") is not model.head_for("mnli")
    assert set(model.heads) == {"nli", "qqp"}
    assert model.task_heads == {"mnli": "nli", "anli_plus": "nli", "qqp": "qqp"}
    encoder_params = sum(p.numel() for p in model.encoder.parameters())
    head_params = sum(p.numel() for h in model.heads.values() for p in h.parameters())
    assert sum(p.numel() for p in model.parameters()) == encoder_params + head_params
    single = sum(p.numel() for p in model.heads["nli"].parameters())
    assert head_params == single + sum(p.numel() for p in model.heads["qqp"].parameters())
    keys = [k for k in model.state_dict() if k.startswith("heads.")]
    assert all(k.startswith(("heads.nli.", "heads.qqp.")) for k in keys)
    # a step on one task moves the shared head for the other
    before = model.heads["nli"].scorer.out_proj.weight.detach().clone()
    model("anli_plus", pair_batch(np.random.default_rng(7)))["loss"].backward()
    torch.optim.SGD(model.parameters(), lr=1.0).step()
    assert not torch.equal(before, model.heads["nli"].scorer.out_proj.weight)


def test_heads_that_cannot_be_shared_are_refused():
    with pytest.raises(StiltsError, match="cannot share head 'nli'"):
        build(tasks={"mnli": HeadSpec("pair_classification", 3, head="nli"),
                     "qqp": HeadSpec("pair_classification", 2, head="nli")})
    with pytest.raises(StiltsError, match="cannot share head 'x'"):
        build(tasks={"a": HeadSpec("pair_classification", 3, head="x"), "b": HeadSpec("tagging", 3, head="x")})


def test_unknown_task_is_a_key_error_naming_the_known_ones():
    model = build()
    with pytest.raises(KeyError, match="no head for task 'xnli'.*mnli, hellaswag, squad_v1, ccg"):
        model("xnli", pair_batch(np.random.default_rng(8)))
    with pytest.raises(StiltsError):
        model.head_for("xnli")
    assert issubclass(UnknownTaskError, KeyError)


def test_head_spec_from_registry_tasks():
    from stilts_ds.tasks.registry import get_task

    assert HeadSpec.from_task(get_task("mnli")) == HeadSpec("pair_classification", 3)
    assert HeadSpec.from_task(get_task("commonsenseqa"), head="mc") == HeadSpec("multiple_choice", 5, "mc")
    assert HeadSpec.from_task(get_task("squad_v2")).format == "span_qa"
    assert HeadSpec.from_task(get_task("udpos")).num_labels == len(get_task("udpos").labels)
    with pytest.raises(StiltsError, match="pass num_labels"):
        HeadSpec.from_task(get_task("ccg"))
    assert HeadSpec.from_task(get_task("ccg"), num_labels=40).num_labels == 40


def test_embed_is_mean_pool_of_the_layer_and_ignores_padding():
    model = build().eval()
    rng = np.random.default_rng(9)
    t = pair_batch(rng)
    with torch.no_grad():
        emb = model.embed(t, layer=1)
        hs = model.encoder(input_ids=t["input_ids"], attention_mask=t["attention_mask"],
                           output_hidden_states=True).hidden_states
        assert torch.allclose(emb, retrieval.mean_pool(hs[1], t["attention_mask"]), atol=1e-6)
        padded = {k: torch.nn.functional.pad(v, (0, 5), value=PAD if k == "input_ids" else 0)
                  for k, v in t.items() if k in ("input_ids", "attention_mask")}
        assert torch.allclose(model.embed(padded, layer=1), emb, atol=1e-5)
        assert model.embed(t).shape == (4, 64)  # default layer: 14/24 of the depth
    with pytest.raises(ValueError, match="out of range"):
        model.embed(t, layer=3)


# --------------------------------------------------------------------------- learning


@pytest.mark.parametrize("task", ["mnli", "ccg"])
def test_loss_falls_on_a_learnable_toy_batch(task):
    config = tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = build(config, head_dropout=0.0)
    rng = np.random.default_rng(10)
    if task == "mnli":
        t = dict(pair_batch(rng, n=8))
        t["labels"] = t["input_ids"][:, 1] % 3  # the label is a function of the first word
    else:
        t = dict(tag_batch(rng, n=8))
        t["labels"] = torch.where(t["labels"] == -100, t["labels"], t["input_ids"] % 5)  # tag = token id mod 5
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = model(task, t)["loss"]
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


# --------------------------------------------------------------------------- export


def _encoder_out(model, t):
    with torch.no_grad():
        return model.encoder(input_ids=t["input_ids"], attention_mask=t["attention_mask"]).last_hidden_state


def test_export_reloads_with_fresh_heads_and_identical_encoder(tmp_path):
    model = build().eval()
    rng = np.random.default_rng(11)
    t = pair_batch(rng)
    # train one step so the export differs from any fresh init
    model.train()
    model("mnli", t)["loss"].backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    model.eval()

    out = export.save_encoder(model, tmp_path / "phase1" / "encoder")
    files = set(os.listdir(out))
    assert {"config.json", export.EXPORT_INFO} <= files
    assert any(f.endswith(".safetensors") for f in files)
    assert os.listdir(tmp_path / "phase1") == ["encoder"]  # no temporary left behind
    info = export.read_export_info(out)
    assert info["model_type"] == "xlm-roberta" and info["trained_heads"]["mnli"]["format"] == "pair_classification"

    from safetensors.torch import load_file
    weights = load_file(str(out / "model.safetensors"))
    assert set(weights) == set(model.encoder.state_dict())  # the encoder's own keys, no heads

    export.check_compatible(out, "xlm-roberta", hidden_size=64)
    export.check_compatible(out, model.config)
    torch.manual_seed(123)
    reloaded = MultiTaskModel.build(out, {"xnli": HeadSpec("pair_classification", 3)}).eval()
    assert set(reloaded.heads) == {"xnli"}
    assert torch.allclose(_encoder_out(model, t), _encoder_out(reloaded, t), atol=1e-6)
    assert torch.equal(model.encoder.embeddings.word_embeddings.weight, reloaded.encoder.embeddings.word_embeddings.weight)
    # fresh head: not the trained one
    assert not torch.equal(model.heads["mnli"].scorer.dense.weight, reloaded.heads["xnli"].scorer.dense.weight)
    # the export is a plain HF model directory
    plain = AutoModel.from_pretrained(str(out)).eval()
    with torch.no_grad():
        assert torch.allclose(plain(input_ids=t["input_ids"], attention_mask=t["attention_mask"]).last_hidden_state,
                              _encoder_out(model, t), atol=1e-6)


def test_export_refuses_to_overwrite_unless_asked(tmp_path):
    model = build()
    out = export.save_encoder(model, tmp_path / "enc")
    with pytest.raises(export.ExportError, match="already exists"):
        export.save_encoder(model, out)
    export.save_encoder(model, out, overwrite=True)
    assert sorted(os.listdir(tmp_path)) == ["enc"]


def test_export_of_another_architecture_is_rejected(tmp_path):
    bert = build(tiny_bert_config())
    out = export.save_encoder(bert, tmp_path / "bert")
    with pytest.raises(export.ExportError, match="holds a bert encoder with hidden size 32, but this phase expects xlm-roberta") as err:
        export.check_compatible(out, "xlm-roberta")
    assert isinstance(err.value, ValueError) and isinstance(err.value, StiltsError)
    with pytest.raises(export.ExportError, match="expects bert with hidden size 1024"):
        export.check_compatible(out, "bert", hidden_size=1024)
    with pytest.raises(export.ExportError, match="xlm-roberta with hidden size 64"):
        export.check_compatible(out, tiny_config())
    assert export.check_compatible(out, "bert", hidden_size=32).model_type == "bert"
    with pytest.raises(export.ExportError, match="does not exist"):
        export.check_compatible(tmp_path / "nowhere", "bert")
    (tmp_path / "empty").mkdir()
    with pytest.raises(export.ExportError, match="no config.json"):
        export.load_encoder_config(tmp_path / "empty")


def test_export_is_atomic_when_save_fails(tmp_path, monkeypatch):
    model = build()
    encoder_cls = type(model.encoder)

    def broken_save(self, directory, *args, **kwargs):
        (directory / "config.json").write_text("{}")  # half written ...
        raise RuntimeError("disk full")               # ... then the failure

    monkeypatch.setattr(encoder_cls, "save_pretrained", broken_save)
    with pytest.raises(RuntimeError, match="disk full"):
        export.save_encoder(model, tmp_path / "enc")
    assert os.listdir(tmp_path) == []

    # a failing overwrite leaves the previous export as it was
    monkeypatch.undo()
    good = export.save_encoder(model, tmp_path / "enc")
    before = {f: (good / f).read_bytes() for f in os.listdir(good)}
    monkeypatch.setattr(encoder_cls, "save_pretrained", broken_save)
    with pytest.raises(RuntimeError, match="disk full"):
        export.save_encoder(model, good, overwrite=True)
    assert os.listdir(tmp_path) == ["enc"]
    assert {f: (good / f).read_bytes() for f in os.listdir(good)} == before


def test_state_dict_to_encoder_dir(tmp_path):
    model = build().eval()
    t = pair_batch(np.random.default_rng(12))
    state = {f"module.{k}": v for k, v in model.state_dict().items()}  # as a wrapper would name them
    out = export.state_dict_to_encoder_dir(state, model.config, tmp_path / "enc")
    assert export.read_export_info(out)["trained_heads"].keys() == set(model.heads)
    reloaded = MultiTaskModel.build(out, {"pawsx": HeadSpec("pair_classification", 2)}).eval()
    assert torch.allclose(_encoder_out(model, t), _encoder_out(reloaded, t), atol=1e-6)

    with pytest.raises(export.ExportError, match="outside 'encoder.'/'heads.'"):
        export.state_dict_to_encoder_dir({**model.state_dict(), "optimizer.step": torch.zeros(())}, model.config, tmp_path / "x")
    partial = {k: v for k, v in model.state_dict().items() if "layer.1." not in k}
    with pytest.raises(export.ExportError, match="missing"):
        export.state_dict_to_encoder_dir(partial, model.config, tmp_path / "y")
    with pytest.raises(export.ExportError, match="does not fit"):
        export.state_dict_to_encoder_dir(model.state_dict(), tiny_config(hidden_size=32, num_attention_heads=2), tmp_path / "z")
    assert sorted(os.listdir(tmp_path)) == ["enc"]


def test_build_from_a_bad_directory_is_a_clear_error(tmp_path):
    (tmp_path / "nothing").mkdir()
    with pytest.raises(StiltsError, match="no config.json"):
        MultiTaskModel.build(tmp_path / "nothing", ALL_TASKS)
    with pytest.raises(StiltsError, match="no encoder directory at"):
        MultiTaskModel.build(str(tmp_path / "missing"), ALL_TASKS)  # a path, not a hub id: no hub call


def test_tiny_bert_encoder_end_to_end(tmp_path):
    config = tiny_bert_config()
    model = build(config)
    assert model.encoder.config.model_type == "bert" and model.encoder.pooler is None
    rng = np.random.default_rng(13)
    t = pair_batch(rng, pad=0)
    model("mnli", t)["loss"].backward()
    assert model.encoder.embeddings.word_embeddings.weight.grad is not None
    out = export.save_encoder(model.eval(), tmp_path / "bert")
    reloaded = MultiTaskModel.build(out, {"udpos": HeadSpec("tagging", 17)}).eval()
    assert torch.allclose(_encoder_out(model, t), _encoder_out(reloaded, t), atol=1e-6)
    assert reloaded("udpos", tag_batch(rng, pad=0))["logits"].shape[-1] == 17


# --------------------------------------------------------------------------- with real featurization


def _bundled_tokenizer_present():
    from stilts_ds.modeling.presets import BUNDLED_TOKENIZER_DIR

    return (BUNDLED_TOKENIZER_DIR / "tokenizer.json").is_file()


@pytest.mark.skipif(not _bundled_tokenizer_present(), reason="bundled tokenizer not built yet")
def test_real_featurized_batches_run_through_every_head(tokenizer):
    config = model_config("tiny", vocab_size=len(tokenizer))
    torch.manual_seed(0)
    model = MultiTaskModel.build(config, {
        "xnli": HeadSpec("pair_classification", 3),
        "copa": HeadSpec("multiple_choice", 2),
        "xquad": HeadSpec("span_qa", 2),
        "panx": HeadSpec("tagging", 3),
    }).eval()
    pc = pair_classification.featurize(
        [pair_classification.Example("a", "Ein Hund läuft.", "An animal moves.", "entailment"),
         pair_classification.Example("b", "猫が寝ている。", "The cat is running fast.", "contradiction")],
        tokenizer, max_length=32, labels=("entailment", "neutral", "contradiction"))
    mc = multiple_choice.featurize(
        [multiple_choice.Example("m", "The glass fell.", ("It broke.", "It sang."), 0)],
        tokenizer, max_length=24, num_choices=2)
    qa = span_qa.featurize(
        [span_qa.Example("q", "Who wrote it?", "It was written by Ana in Lisbon.", ("Ana",), (18,))],
        tokenizer, max_length=32, stride=8, max_query_length=8)
    tg = tagging.featurize(
        [tagging.Example("t", ("Ana", "lives", "in", "Lisbon"), ("B-PER", "O", "O", "B-LOC"))],
        tokenizer, max_length=16, labels=("O", "B-PER", "B-LOC"))
    with torch.no_grad():
        out = model("xnli", pair_classification.collate(pc, [0, 1]))
        assert out["logits"].shape == (2, 3) and torch.isfinite(out["loss"])
        assert len(pair_classification.decode(pc, out["logits"].numpy())) == 2
        out = model("copa", multiple_choice.collate(mc, [0]))
        assert out["logits"].shape == (1, 2) and torch.isfinite(out["loss"])
        qa_batch = span_qa.collate(qa, range(len(qa)))
        out = model("xquad", qa_batch)
        assert torch.isfinite(out["loss"])
        assert set(span_qa.decode(qa, out["start_logits"], out["end_logits"])) == {"q"}
        out = model("panx", tagging.collate(tg, [0]))
        assert len(tagging.decode(tg, out["logits"].numpy())["t"]) == 4
        emb = model.embed(pair_classification.collate(pc, [0, 1]))
        assert emb.shape == (2, config.hidden_size)
