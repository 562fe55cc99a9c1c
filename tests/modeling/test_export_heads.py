"""save_model / load_model: a fine-tuned model (encoder + heads) round-trips exactly."""
import pytest
import torch

from stilts_ds.modeling import export
from stilts_ds.modeling.multitask import HeadSpec, MultiTaskModel
from stilts_ds.modeling.presets import model_config


def test_save_model_round_trips_encoder_and_heads(tmp_path):
    torch.manual_seed(0)
    model = MultiTaskModel.build(model_config("tiny", vocab_size=120),
                                 {"xnli": HeadSpec("pair_classification", 3), "udpos": HeadSpec("tagging", 17)}).eval()
    export.save_model(model, tmp_path / "m")
    again = export.load_model(tmp_path / "m").eval()
    batch = {"input_ids": torch.randint(4, 120, (2, 9)), "attention_mask": torch.ones(2, 9, dtype=torch.long)}
    with torch.no_grad():
        for task in ("xnli", "udpos"):
            assert torch.equal(model(task, batch)["logits"], again(task, batch)["logits"])


def test_load_model_on_an_encoder_export_says_what_it_is(tmp_path):
    model = MultiTaskModel.build(model_config("tiny", vocab_size=50), {"x": HeadSpec("pair_classification", 2)})
    export.save_encoder(model, tmp_path / "enc")
    with pytest.raises(export.ExportError, match="encoder export, not a fine-tuned model"):
        export.load_model(tmp_path / "enc")


def test_load_heads_starts_a_head_from_another_tasks_trained_head(tmp_path):
    # XTREME-R's xcopa recipe: the SIQA model's 3-way multiple-choice head scores COPA's 2 choices.
    torch.manual_seed(0)
    config = model_config("tiny", vocab_size=60)
    siqa = MultiTaskModel.build(config, {"siqa": HeadSpec("multiple_choice", 3), "x": HeadSpec("pair_classification", 2)})
    export.save_model(siqa, tmp_path / "siqa")
    xcopa = MultiTaskModel.build(tmp_path / "siqa", {"xcopa": HeadSpec("multiple_choice", 2)})
    before = {k: v.clone() for k, v in xcopa.heads["xcopa"].state_dict().items()}
    export.load_heads(xcopa, tmp_path / "siqa", {"xcopa": "siqa"})
    carried = xcopa.heads["xcopa"].state_dict()
    for key, value in siqa.heads["siqa"].state_dict().items():
        assert torch.equal(carried[key], value), key
    assert any(not torch.equal(before[k], carried[k]) for k in before)  # not a fresh head any more

    with pytest.raises(export.ExportError, match="no head 'copa'.*'siqa', 'x'"):
        export.load_heads(xcopa, tmp_path / "siqa", {"xcopa": "copa"})
    with pytest.raises(export.ExportError, match="formats differ"):
        export.load_heads(xcopa, tmp_path / "siqa", {"xcopa": "x"})
    with pytest.raises(export.ExportError, match="model has no head 'y'"):
        export.load_heads(xcopa, tmp_path / "siqa", {"y": "siqa"})
    tagger = MultiTaskModel.build(config, {"a": HeadSpec("tagging", 5)})
    export.save_model(tagger, tmp_path / "tags5")
    other = MultiTaskModel.build(config, {"b": HeadSpec("tagging", 7)})
    with pytest.raises(export.ExportError, match="(?s)'b' cannot start from 'a'.*size mismatch"):
        export.load_heads(other, tmp_path / "tags5", {"b": "a"})
    export.save_encoder(siqa, tmp_path / "enc")
    with pytest.raises(export.ExportError, match="no trained heads"):
        export.load_heads(xcopa, tmp_path / "enc", {"xcopa": "siqa"})
