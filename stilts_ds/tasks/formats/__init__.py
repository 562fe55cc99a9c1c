"""One module per task format; each owns its Example type, featurize, collate, decode and
the name of its metric. ``get_format(name)`` returns the module for a spec's ``format``."""
from __future__ import annotations

import importlib
from types import ModuleType

FORMATS = ("pair_classification", "multiple_choice", "span_qa", "tagging", "retrieval")


def get_format(name: str) -> ModuleType:
    if name not in FORMATS:
        raise KeyError(f"unknown format {name!r}; known: {', '.join(FORMATS)}")
    return importlib.import_module(f"stilts_ds.tasks.formats.{name}")
