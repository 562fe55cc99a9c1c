"""Encoders and heads (plain torch/transformers; never deepspeed or ray)."""
