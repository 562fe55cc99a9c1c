"""The tiny XLM-R preset builds a random model that runs on a batch from the bundled tokenizer."""
import pytest
import torch
import transformers

from stilts_ds.errors import StiltsError
from stilts_ds.modeling.presets import load_tokenizer, model_config


def test_tiny_preset_forward(tokenizer):
    config = model_config("tiny", vocab_size=len(tokenizer))
    assert (config.num_hidden_layers, config.hidden_size, config.model_type) == (2, 64, "xlm-roberta")
    model = transformers.AutoModel.from_config(config).eval()
    enc = tokenizer(["Привет мир", "你好世界"], ["hello", "world"], return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model(**enc, output_hidden_states=True)
    assert out.last_hidden_state.shape == (2, enc["input_ids"].shape[1], 64)
    assert len(out.hidden_states) == 3


def test_bundled_tokenizer_is_xlmr_shaped(tokenizer):
    assert tokenizer.is_fast
    assert (tokenizer.cls_token_id, tokenizer.pad_token_id, tokenizer.sep_token_id, tokenizer.unk_token_id) == (0, 1, 2, 3)


def test_bad_tokenizer_and_preset_errors(tmp_path):
    with pytest.raises(StiltsError, match="could not load tokenizer"):
        load_tokenizer(tmp_path / "nope")
    with pytest.raises(StiltsError, match="unknown model preset 'huge'"):
        model_config("huge", vocab_size=10)
