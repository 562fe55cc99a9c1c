"""The one exception users see for bad input.

Every stage raises ``StiltsError`` (or a subclass) for problems a user can fix: an unknown
task, a missing split, a malformed line in a data file. The CLI prints its message and
exits non-zero without a traceback; everything else is a bug and keeps its traceback.
"""


class StiltsError(Exception):
    """Bad input or configuration; the message names the file/option and the fix."""


class DataFileError(StiltsError):
    """A data file is missing or malformed; the message names the file and line."""

    def __init__(self, path, message: str, line: int | None = None):
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {message}")
        self.path = path
        self.line = line


class DataWarning(UserWarning):
    """Data that loads but is probably not what the user meant (a line of megabytes: a file
    whose line breaks were lost); the message names file:line. ``stilts-ds prepare`` prints
    these on stderr."""
