"""What every converter shares: finding official files by name, reading them (UTF-8, a BOM,
CRLF), and writing every output of one conversion at once.

    found = find(Path("download/xquad"), {"xquad": r"xquad\\.(?P<lang>[a-z]{2})\\.json"},
                 what="XQuAD", looked_for=["xquad.<lang>.json"])
    out = Output(Path("data"))
    with out.open(spec, "test", "de") as rows:   # a temporary file beside data/xquad/test.de.jsonl
        rows.write({...})
    out.commit()                                 # every file renamed into place, or none

Converters are registered in ``stilts_ds.tasks.convert`` (one ``Converter`` each).
"""
from __future__ import annotations

import codecs
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator, Mapping

from stilts_ds import atomic
from stilts_ds.errors import DataFileError, StiltsError
from stilts_ds.tasks.spec import TaskSpec


# ----------------------------------------------------------------------------- finding files
@dataclass(frozen=True)
class Hit:
    """One official file: which pattern found it and the pattern's named groups (lang, split, ...)."""

    key: str
    path: Path
    groups: Mapping[str, str]


class Found:
    """The official files under SOURCE, by pattern key, in path order."""

    def __init__(self, source: Path, hits: Mapping[str, list[Hit]]):
        self.source = source
        self._hits = hits

    def __getitem__(self, key: str) -> list[Hit]:
        return self._hits.get(key, [])

    def __bool__(self) -> bool:
        return any(self._hits.values())


def _matcher(pattern: str) -> re.Pattern:
    # A pattern names the tail of a path (a file name, or "<dir>/<file name>" where the name
    # alone is too common, as PAWS-X's en/train.tsv), so it is matched at a "/" boundary.
    return re.compile(r"(?:^|/)(?:" + pattern + r")$")


def find(source: Path, patterns: Mapping[str, str], *, what: str, looked_for: Iterable[str],
         skip_dirs: Iterable[str] = (), exclude: Path | None = None) -> Found:
    """Every file at or under ``source`` whose path ends in one of ``patterns`` (key -> regex
    with named groups). Hidden entries, ``skip_dirs`` (folder names) and anything under
    ``exclude`` (the task's output directory, when it lies inside SOURCE: XCOPA's official
    names are also its output names) are passed over. No match at all raises, naming the
    files looked for; two files that match one pattern with the same groups (two copies of
    one official file) raise too."""
    source = Path(source)
    names = "; ".join(looked_for)
    if not source.exists():
        raise StiltsError(f"{source} does not exist: no {what} files to read there (looked for {names})")
    skip = set(skip_dirs)
    if source.is_file():
        candidates = [source]
    else:
        inside = Path(exclude).resolve() if exclude is not None else None
        candidates = sorted(
            p for p in source.rglob("*")
            if p.is_file() and not any(part.startswith(".") or part in skip for part in p.relative_to(source).parts)
            and not (inside is not None and p.resolve().is_relative_to(inside)))
    matchers = {key: _matcher(pattern) for key, pattern in patterns.items()}
    hits: dict[str, list[Hit]] = {}
    seen: dict[tuple, Path] = {}
    for path in candidates:
        # The absolute path, not the resolved one: a symlink keeps its official name.
        text = path.absolute().as_posix()
        for key, matcher in matchers.items():
            m = matcher.search(text)
            if not m:
                continue
            groups = {k: v for k, v in m.groupdict().items() if v is not None}
            ident = (key, tuple(sorted(groups.items())))
            if ident in seen:
                raise StiltsError(f"two copies of one official file: {seen[ident]} and {path}; point SOURCE at "
                                  "the directory that holds only one of them")
            seen[ident] = path
            hits.setdefault(key, []).append(Hit(key, path, groups))
            break
    found = Found(source, hits)
    if not found:
        where = f"{source} is not one of them" if source.is_file() else f"none under {source}"
        raise StiltsError(f"no {what} files found: looked for {names} ({where}); "
                          "`stilts-ds convert --list` shows what each converter reads")
    return found


# ----------------------------------------------------------------------------- reading
def decode_lines(stream: IO[bytes], where: Any) -> Iterator[tuple[int, str]]:
    """(line number, text) of every line of a binary stream, without its line ending.

    Lines end at "\\n" only (a trailing "\\r" is dropped): ``str.splitlines`` would also break
    at U+2028, U+0085 and form feeds, which occur inside Wikipedia sentences. A UTF-8
    byte-order mark on the first line (as Windows editors write) is not data."""
    for lineno, raw in enumerate(stream, start=1):
        if lineno == 1 and raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8):]
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataFileError(where, f"not UTF-8 (byte {raw[e.start]:#04x} at column {e.start + 1}); re-encode "
                                       "the file as UTF-8, e.g. iconv -f <its encoding> -t UTF-8", lineno) from None
        if line.endswith("\n"):
            line = line[:-1]
        if line.endswith("\r"):
            line = line[:-1]
        yield lineno, line


def read_lines(path: Path) -> Iterator[tuple[int, str]]:
    with open(path, "rb") as f:
        yield from decode_lines(f, path)


def read_text(path: Path) -> str:
    """A whole file as text (a BOM dropped); bad UTF-8 is named with its line."""
    raw = Path(path).read_bytes()
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8):]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataFileError(path, f"not UTF-8 (byte {raw[e.start]:#04x}); re-encode the file as UTF-8",
                            raw.count(b"\n", 0, e.start) + 1) from None


def read_json(path: Path) -> tuple[Any, str]:
    """(parsed JSON, its text): the text lets a converter point at the line of a value."""
    text = read_text(path)
    try:
        return json.loads(text), text
    except json.JSONDecodeError as e:
        raise DataFileError(path, f"not valid JSON ({e.msg}, column {e.colno})", e.lineno) from None


def json_object(line: str, path: Path, lineno: int) -> dict:
    """One line of a JSON-lines file as an object."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise DataFileError(path, f"not valid JSON ({e.msg}, column {e.colno}); each line must be one JSON "
                                  "object", lineno) from None
    if not isinstance(obj, dict):
        raise DataFileError(path, f"expected a JSON object, got {type(obj).__name__}", lineno)
    return obj


def read_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    for lineno, line in read_lines(path):
        if line.strip():
            yield lineno, json_object(line, path, lineno)


def tsv_rows(path: Path, *, header: bool) -> Iterator[tuple[int, list[str]]]:
    """(line number, cells) of a tab-separated file whose quotes are literal characters (the
    XNLI and PAWS-X files: csv's default quoting would swallow tabs and newlines between two
    quote characters). Every row must have as many cells as the first; blank lines are skipped.
    With ``header``, the first row is yielded with line number 1 like the others."""
    width = None
    for lineno, line in read_lines(path):
        if not line.strip():
            continue
        cells = line.split("\t")
        if width is None:
            width = len(cells)
        elif len(cells) != width:
            first = "the header" if header else "the first row"
            raise DataFileError(path, f"{len(cells)} tab-separated columns, {first} has {width}: a tab inside a "
                                      "sentence, or a cut line; fix the row (quotes are literal characters, "
                                      "not field delimiters)", lineno)
        yield lineno, cells


def tsv_columns(path: Path, names: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, {name: cell}) of a headed TSV, for the columns ``names``."""
    rows = tsv_rows(path, header=True)
    header = next(rows, None)
    if header is None:
        raise DataFileError(path, "empty file: expected a header row and one row per pair", 1)
    head = [cell.strip() for cell in header[1]]
    missing = [n for n in names if n not in head]
    if missing:
        raise DataFileError(path, f"the header has no column {', '.join(missing)} (it has: {' '.join(head)}); "
                                  "is this the official file?", header[0])
    index = {n: head.index(n) for n in names}
    for lineno, cells in rows:
        yield lineno, {n: cells[i] for n, i in index.items()}


# ----------------------------------------------------------------------------- writing
def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class RowWriter:
    """One output file being written: JSON lines into a temporary file beside the target."""

    def __init__(self, target: Path):
        self.target = target
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.fchmod(fd, 0o666 & ~_umask())  # what a plain open() would give, not mkstemp's 0600
        self.tmp = Path(tmp)
        self._file = os.fdopen(fd, "w", encoding="utf-8", newline="\n")
        self.rows = 0

    def write(self, row: Mapping[str, Any]) -> None:
        self._file.write(json.dumps(row, ensure_ascii=False) + "\n")
        self.rows += 1

    def write_line(self, line: str) -> None:
        """A row already serialized (one JSON object, no newline): a shared candidate pool
        written to many files is serialized once."""
        self._file.write(line + "\n")
        self.rows += 1

    def __enter__(self) -> "RowWriter":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        # Closed once written (a PAN-X conversion stages ~100 files), but still a temporary
        # file: Output.commit renames it into place, Output.abort removes it.
        if exc_type is None:
            self._finish()

    def _finish(self) -> None:
        if self._file.closed:
            return
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()

    def _discard(self) -> None:
        if not self._file.closed:
            self._file.close()
        self.tmp.unlink(missing_ok=True)


@dataclass
class Output:
    """Every file of one conversion, staged beside its target and renamed into place together
    by ``commit``: a conversion that fails half-way (bad input, a full disk, Ctrl-C) leaves
    the data directory as it was, and a reader never sees half a file."""

    data_dir: Path
    notes: list[str] = field(default_factory=list)
    _writers: dict[Path, RowWriter] = field(default_factory=dict)
    _made: list[Path] = field(default_factory=list)  # directories this conversion created

    def open(self, spec: TaskSpec, split: str, lang: str) -> RowWriter:
        """A writer for ``spec``'s local file of (split, lang): the path ``--data-dir`` reads."""
        spec.check(split, lang)
        target = Path(self.data_dir) / spec.local_file(split, lang)
        if target in self._writers:
            raise StiltsError(f"two official files would both become {target}; point SOURCE at one copy")
        self._made += [d for d in (target.parent, *target.parent.parents) if not d.exists()]
        writer = self._writers[target] = RowWriter(target)
        return writer

    def write(self, spec: TaskSpec, split: str, lang: str, rows: Iterable[Mapping[str, Any]]) -> RowWriter:
        with self.open(spec, split, lang) as out:
            for row in rows:
                out.write(row)
        return out

    def note(self, text: str) -> None:
        """Something the user should know that is not an error (what was left out, and why)."""
        self.notes.append(text)

    def commit(self) -> list[Path]:
        """Rename every staged file into place; an output that got no rows is not written
        (an empty split would only fail later, at prepare)."""
        for writer in self._writers.values():
            writer._finish()
        written = []
        for target, writer in self._writers.items():
            if writer.rows:
                os.replace(writer.tmp, target)
                written.append(target)
            else:
                writer._discard()
                self.note(f"{target}: no rows, not written")
        for parent in {t.parent for t in written}:
            atomic.fsync_dir(parent)
        self._tidy()
        return written

    def abort(self) -> None:
        for writer in self._writers.values():
            writer._discard()
        self._tidy()

    def _tidy(self) -> None:
        """Remove the directories this conversion made that hold nothing (a failed or empty output's)."""
        for directory in sorted(set(self._made), key=lambda d: len(d.parts), reverse=True):
            try:
                directory.rmdir()  # only if empty: nothing of anyone else's goes
            except OSError:
                pass


# ----------------------------------------------------------------------------- converters
@dataclass(frozen=True)
class Converter:
    """One official distribution -> local files of one or more tasks.

    ``name`` is what a user types (a task name); ``reads`` and ``writes`` are shown by
    ``stilts-ds convert --list``; ``patterns`` find the files (key -> regex on the path's
    tail, see ``find``); ``run(found, out)`` converts them."""

    name: str
    what: str  # the distribution, in words
    get: str  # where it comes from
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    patterns: Mapping[str, str]
    run: Callable[[Found, Output], None]
    skip_dirs: tuple[str, ...] = ()
