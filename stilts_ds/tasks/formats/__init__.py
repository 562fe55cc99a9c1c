"""One module per task format; each owns its Example type, featurize, collate, decode,
references and score, and one ``Format`` object (``base.Format``) that the rest of the
package calls: ``format_of(spec)``.

    from stilts_ds.tasks.formats import format_of
    fmt = format_of(spec)          # also format_of("span_qa") or format_of(features)

``mlm`` (masked language modelling over raw text) is training-only: it featurizes and
collates, but has nothing to decode or score (``fmt.scores`` is False); ``retrieval`` is
scored from the bare encoder (``fmt.has_head`` and ``fmt.trains`` are False).
"""
from __future__ import annotations

import importlib

from stilts_ds.tasks.formats.base import ChoiceOptions, Format, FormatOptions, SpanOptions

FORMATS = ("pair_classification", "multiple_choice", "span_qa", "tagging", "retrieval", "mlm")

__all__ = ["FORMATS", "ChoiceOptions", "Format", "FormatOptions", "SpanOptions", "format_of"]


def format_of(what) -> Format:
    """The Format object of a TaskSpec, a Features table, or a format name."""
    name = what if isinstance(what, str) else what.format
    if name not in FORMATS:
        raise KeyError(f"unknown format {name!r}; known: {', '.join(FORMATS)}")
    return importlib.import_module(f"stilts_ds.tasks.formats.{name}").FORMAT
