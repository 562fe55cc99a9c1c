"""One module per task format; each owns its Example type, featurize, collate, decode and
the name of its metric. ``get_format(name)`` returns the module for a spec's ``format``.
``mlm`` (masked language modelling over raw text) is training-only: it featurizes and
collates, but has nothing to decode or score."""
from __future__ import annotations

import importlib
from types import ModuleType

FORMATS = ("pair_classification", "multiple_choice", "span_qa", "tagging", "retrieval", "mlm")


def get_format(name: str) -> ModuleType:
    if name not in FORMATS:
        raise KeyError(f"unknown format {name!r}; known: {', '.join(FORMATS)}")
    return importlib.import_module(f"stilts_ds.tasks.formats.{name}")
