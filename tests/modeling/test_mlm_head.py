"""The mlm head is the pretrained model's LM head: loaded from a masked-LM checkpoint, tied
to the input embeddings, built at random (and tied) for the tiny preset; its loss counts
only predicted positions; the phase-1 export still holds only the encoder.

    .venv/bin/python -m pytest -q tests/modeling/test_mlm_head.py
"""
import pytest
import torch
from transformers import AutoModel, AutoModelForMaskedLM

from stilts_ds.errors import StiltsError
from stilts_ds.modeling import export
from stilts_ds.modeling.heads import make_head
from stilts_ds.modeling.multitask import HeadSpec, MultiTaskModel
from stilts_ds.modeling.presets import model_config
from stilts_ds.tasks.registry import get_task

VOCAB = 97
TASKS = {"mnli": HeadSpec("pair_classification", 3), "mlm": HeadSpec.from_task(get_task("mlm")),
         "mnli@de": HeadSpec("pair_classification", 3, head="mnli")}


def _batch(seed=0, with_labels=True):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, VOCAB - 1, (3, 12), generator=g)
    out = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if with_labels:
        labels = torch.full_like(ids, -100)
        labels[0, 2], labels[1, 5], labels[2, 7], labels[2, 9] = 11, 12, 13, 14
        out["labels"] = labels
    return out


def test_tiny_preset_gets_a_random_head_tied_to_the_embeddings():
    torch.manual_seed(0)
    model = MultiTaskModel.build(model_config("tiny", vocab_size=VOCAB), TASKS)
    head = model.heads["mlm"].lm_head
    assert head.decoder.weight is model.encoder.embeddings.word_embeddings.weight
    assert set(model.heads) == {"mnli", "mlm"}  # mnli@de trains mnli's head
    # one parameter, counted once (the optimizer must not see it twice)
    ids = [id(p) for p in model.parameters()]
    assert len(ids) == len(set(ids))


def test_pretrained_lm_head_is_loaded_from_a_masked_lm_checkpoint(tmp_path):
    torch.manual_seed(1)
    saved = AutoModelForMaskedLM.from_config(model_config("tiny", vocab_size=VOCAB))
    with torch.no_grad():  # make the head's weights recognisable, not the init defaults
        saved.lm_head.dense.weight.normal_()
        saved.lm_head.bias.uniform_()
        saved.lm_head.layer_norm.weight.uniform_()
    saved.save_pretrained(tmp_path / "mlm-ckpt")
    model = MultiTaskModel.build(tmp_path / "mlm-ckpt", TASKS)
    head = model.heads["mlm"].lm_head
    want = saved.lm_head.state_dict()
    got = head.state_dict()
    assert set(got) == set(want)
    for key in want:
        assert torch.equal(got[key], want[key]), key
    assert torch.equal(model.encoder.embeddings.word_embeddings.weight, saved.roberta.embeddings.word_embeddings.weight)
    assert head.decoder.weight is model.encoder.embeddings.word_embeddings.weight
    # the same logits as the saved masked-LM model
    saved.eval(), model.eval()
    batch = _batch(with_labels=False)
    with torch.no_grad():
        ours = model("mlm", batch)["logits"]
        theirs = saved(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_loss_counts_only_predicted_positions():
    torch.manual_seed(2)
    model = MultiTaskModel.build(model_config("tiny", vocab_size=VOCAB), TASKS).eval()
    batch = _batch()
    out = model("mlm", batch)
    assert out["logits"].shape == (4, VOCAB)  # only the predicted positions
    with torch.no_grad():
        full = model("mlm", {k: v for k, v in batch.items() if k != "labels"})["logits"]
    expected = torch.nn.functional.cross_entropy(full.reshape(-1, VOCAB), batch["labels"].reshape(-1), ignore_index=-100)
    assert torch.allclose(out["loss"], expected, atol=1e-5)
    out["loss"].backward()
    assert model.encoder.embeddings.word_embeddings.weight.grad is not None
    none = dict(batch, labels=torch.full_like(batch["labels"], -100))
    assert model("mlm", none)["loss"].item() == 0.0


def test_export_after_mlm_keeps_the_encoder_only(tmp_path):
    torch.manual_seed(3)
    model = MultiTaskModel.build(model_config("tiny", vocab_size=VOCAB), TASKS)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    model("mlm", _batch())["loss"].backward()
    opt.step()
    out = export.save_encoder(model, tmp_path / "encoder")
    info = export.read_export_info(out)
    assert info["trained_heads"]["mlm"]["head"] == "mlm" and info["trained_heads"]["mnli@de"]["head"] == "mnli"
    loaded = AutoModel.from_pretrained(out)
    assert torch.equal(loaded.embeddings.word_embeddings.weight, model.encoder.embeddings.word_embeddings.weight)
    assert not any(k.startswith("lm_head") for k in loaded.state_dict())
    # a later mlm run from the export: fresh LM head, tied again
    again = MultiTaskModel.build(out, {"mlm": HeadSpec("mlm", 0)})
    assert again.heads["mlm"].lm_head.decoder.weight is again.encoder.embeddings.word_embeddings.weight


def test_mlm_head_is_not_a_plain_head():
    with pytest.raises(StiltsError, match="pretrained model's LM head"):
        make_head("mlm", 64, 0)
    with pytest.raises(StiltsError, match="cannot share head"):
        MultiTaskModel.build(model_config("tiny", vocab_size=VOCAB),
                             {"mlm": HeadSpec("mlm", 0), "mnli": HeadSpec("pair_classification", 3, head="mlm")})
