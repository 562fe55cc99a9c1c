"""The error raised for unusable scoring inputs (malformed or mismatched files).

``ScoreInputError`` is both a ``stilts_ds.errors.StiltsError`` (so the CLI prints it
without a traceback) and a ``ValueError`` (so plain-Python callers can catch the usual
type). Its message always names the file(s) involved, and the line where one applies.
"""

from __future__ import annotations

from stilts_ds.errors import StiltsError


class ScoreInputError(StiltsError, ValueError):
    """A prediction/reference file cannot be scored; the message says which and why."""
