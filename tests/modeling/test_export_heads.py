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
