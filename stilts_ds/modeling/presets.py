"""Model presets: a tiny XLM-R-shaped model with random weights for tests and the quick start,
XLM-R Large's architecture for throughput work, and the bundled offline tokenizer. (The real
default encoder, XLM-R Large from the hub, is ``stilts_ds.config.ModelConfig.encoder``'s.)

    tokenizer = load_tokenizer("bundled")           # built from the fixtures, no hub needed
    config = model_config("tiny", vocab_size=len(tokenizer))
    model = transformers.AutoModel.from_config(config)
"""
from __future__ import annotations

from pathlib import Path

from stilts_ds import shipped
from stilts_ds.errors import StiltsError

BUNDLED_TOKENIZER_DIR = shipped.tokenizer_dir()

# What every XLM-R shares: special-token ids, one token type, positions starting after the
# padding index (RoBERTa style), hence 512 + 2 position embeddings.
_XLMR = dict(
    model_type="xlm-roberta",
    max_position_embeddings=514,
    type_vocab_size=1,
    pad_token_id=1,
    bos_token_id=0,
    eos_token_id=2,
    layer_norm_eps=1e-5,
)
# XLM-R's architecture at toy size: 2 layers, hidden 64 (vocabulary: the tokenizer's).
# intermediate_size is 2x hidden, not XLM-R's 4x: DeepSpeed's kernel policy refuses it, so
# ds-kernel cannot be exercised with this preset (use xlmr-large on a GPU).
TINY = dict(_XLMR, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)
# XLM-R Large's architecture (random weights) for throughput work where weights don't
# matter and no hub is reachable: 24 layers, hidden 1024, 16 heads, 250,002 tokens.
XLMR_LARGE = dict(_XLMR, vocab_size=250002, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                  intermediate_size=4096)
PRESETS = {"tiny": TINY, "xlmr-large": XLMR_LARGE}


def load_tokenizer(name_or_path: str | Path = "bundled"):
    """'bundled' -> the project's offline tokenizer; anything else -> AutoTokenizer (hub id
    or local directory). Only fast tokenizers are accepted: featurization needs offsets."""
    from transformers import AutoTokenizer

    path = BUNDLED_TOKENIZER_DIR if str(name_or_path) == "bundled" else name_or_path
    try:
        tok = AutoTokenizer.from_pretrained(str(path))
    except Exception as e:
        raise StiltsError(
            f"could not load tokenizer {str(name_or_path)!r} ({type(e).__name__}: {e}); pass a local "
            "directory saved with save_pretrained, a hub id on a machine with hub access, or 'bundled'"
        ) from e
    if not getattr(tok, "is_fast", False):
        raise StiltsError(f"tokenizer {str(name_or_path)!r} is not a fast tokenizer; stilts-ds needs offset mappings")
    return tok


def model_config(preset: str, vocab_size: int | None = None):
    """A transformers config for a named preset (random weights are built from it).
    ``vocab_size`` sizes the embeddings to a tokenizer; presets that fix it keep theirs."""
    from transformers import AutoConfig

    if preset not in PRESETS:
        raise StiltsError(f"unknown model preset {preset!r}; known: {', '.join(PRESETS)}")
    params = dict(PRESETS[preset])
    params.setdefault("vocab_size", vocab_size)
    if params["vocab_size"] is None:
        raise StiltsError(f"model preset {preset!r} needs a vocab_size (the tokenizer's length)")
    return AutoConfig.for_model(params.pop("model_type"), **params)
