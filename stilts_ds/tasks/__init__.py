"""Tasks of the study: formats (data types, featurize/collate/decode), readers, registry.

This package never imports deepspeed or ray (tests/test_boundaries.py holds that)."""
