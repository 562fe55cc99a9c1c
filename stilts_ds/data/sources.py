"""Loading a task's raw rows from the hub or a local directory, through the task's reader.

Both sources yield rows of the same schema, so one reader serves both:

    examples = load_examples(get_task("xnli"), "test", "zh", source="local", data_dir=FIXTURES_DIR)
    examples = load_examples(get_task("xnli"), "test", "zh", source="hub")   # on a cluster

A malformed local line is reported as ``file:line: what is wrong``; nothing is guessed.

A composite language key (``mnli@en+de`` trains on ``"en+de"``; ``mlm`` on ``"xtreme"``) is
read one real language at a time, each through its own file or hub parts, and the rows are
joined; their guids get a ``<lang>:`` prefix so copies of one row in two languages stay
distinct.
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import logging
import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping

from stilts_ds import shipped
from stilts_ds.errors import DataFileError, DataWarning, StiltsError
from stilts_ds.tasks.spec import HubPart, TaskSpec

FIXTURES_DIR = shipped.fixtures_dir()
SOURCES = ("local", "hub")
# A JSON line this long is one example only by accident (line breaks lost in a conversion);
# featurizing keeps its first max_length tokens, so say so instead of truncating unseen.
LONG_LINE_BYTES = 1 << 20

log = logging.getLogger(__name__)


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) for every non-blank line; a bad line raises DataFileError."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                # utf-8-sig on the first line: a byte-order mark (as Windows editors write) is
                # not part of the data.
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as e:
                raise DataFileError(
                    path, f"not UTF-8 (byte {raw[e.start]:#04x} at column {e.start + 1}); re-encode the file "
                          "as UTF-8, e.g. iconv -f <its encoding> -t UTF-8", lineno) from None
            if not line.strip():
                continue
            if len(raw) > LONG_LINE_BYTES:
                warnings.warn(DataWarning(
                    f"{path}:{lineno}: a line of {len(raw) / 2**20:.1f} MiB: one example only keeps its first "
                    "max_length tokens, the rest is cut; if this line holds many examples, its line breaks were "
                    "lost (each example must be one line)"), stacklevel=2)
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataFileError(
                    path, f"not valid JSON ({e.msg}, column {e.colno}); each line must be one JSON object", lineno
                ) from None
            if not isinstance(obj, dict):
                raise DataFileError(path, f"expected a JSON object, got {type(obj).__name__}", lineno)
            yield lineno, obj


def _missing_hint(spec: TaskSpec, split: str, lang: str) -> str:
    if spec.local_only_help:
        return spec.local_only_help
    try:
        one = spec.components(lang)[0]  # a composite key: show the first language's call
        parts = ", ".join(p.describe() for p in spec.hub_parts(split, one)) if spec.hub_parts else ""
    except StiltsError:  # a derived task with no hub copy in this language
        parts = ""
    schema = f" ({parts})" if parts else ""
    return (f"write the split there as JSON lines in the hub schema{schema}, see "
            f"{FIXTURES_DIR / (spec.base or spec.name)} for examples" + (", or use --source hub" if parts else ""))


def local_path(spec: TaskSpec, split: str, lang: str, data_dir: Path) -> Path:
    """The local file of one real language (see ``local_paths`` for composite keys)."""
    path = Path(data_dir) / spec.local_file(split, lang)
    if not path.is_file():
        raise DataFileError(path, f"missing: task {spec.name!r} split {split!r} language {lang!r}. "
                                  f"{_missing_hint(spec, split, lang)}")
    return path


def local_paths(spec: TaskSpec, split: str, lang: str, data_dir: Path) -> list[tuple[str, Path]]:
    """(language, file) for every language behind ``lang``. A composite key wants every
    file, except a key in ``spec.partial_parts`` (mlm's default), which takes the languages
    that have one and wants at least one."""
    if lang not in spec.lang_parts:
        return [(lang, local_path(spec, split, lang, data_dir))]
    if lang not in spec.partial_parts:
        return [(part, local_path(spec, split, part, data_dir)) for part in spec.lang_parts[lang]]
    found = [(part, Path(data_dir) / spec.local_file(split, part)) for part in spec.lang_parts[lang]]
    found = [(part, path) for part, path in found if path.is_file()]
    if not found:
        example = Path(data_dir) / spec.local_file(split, spec.lang_parts[lang][0])
        raise DataFileError(example.parent, f"task {spec.name!r} split {split!r} has no file for any of "
                                            f"{', '.join(spec.lang_parts[lang])}. {_missing_hint(spec, split, lang)}")
    return found


def local_splits(spec: TaskSpec, data_dir: Path) -> list[tuple[str, str]]:
    """The (split, language) pairs of ``spec`` that have their file(s) under ``data_dir``."""
    def present(split: str, lang: str) -> bool:
        files = [Path(data_dir) / spec.local_file(split, part) for part in spec.components(lang)]
        have = [f.is_file() for f in files]
        return any(have) if lang in spec.partial_parts else all(have)

    return [(split, lang) for split, langs in spec.splits.items() for lang in langs if present(split, lang)]


@functools.lru_cache(maxsize=None)
def _text_fields(example_type) -> tuple[str, ...]:
    """The fields of a format's Example that must hold text (annotated plain ``str``)."""
    if not dataclasses.is_dataclass(example_type):
        return ()
    return tuple(f.name for f in dataclasses.fields(example_type) if f.type in ("str", str))


def _read_rows(spec: TaskSpec, rows, split: str, lang: str, where) -> list:
    examples: list = []
    first_seen: dict[str, Any] = {}  # guid -> where it was read first
    for index, (position, record) in enumerate(rows):
        try:
            out = spec.reader(record, split, lang, index)
        except KeyError as e:
            raise where(position, f"missing field {e.args[0]!r} for task {spec.name!r} "
                                  f"(see {FIXTURES_DIR / spec.name} for the schema)") from None
        except (ValueError, TypeError) as e:
            raise where(position, f"task {spec.name!r}: {e}") from None
        except AttributeError as e:  # a field holding null (or a number) where text belongs
            nulls = sorted(k for k, v in record.items() if v is None)
            what = f"null field(s) {nulls}" if nulls else f"a field of the wrong type ({e})"
            raise where(position, f"task {spec.name!r}: {what}; every field of the schema needs a value "
                                  f"(see {FIXTURES_DIR / spec.name})") from None
        if out is None:
            continue
        for ex in out if isinstance(out, list) else [out]:
            missing = [f for f in _text_fields(type(ex)) if not isinstance(getattr(ex, f), str)]
            if missing:  # null (or a number) where the reader needs text
                nulls = sorted(k for k, v in record.items() if v is None)
                raise where(position, f"task {spec.name!r}: {'null field(s) ' + str(nulls) if nulls else 'no text'} "
                                      f"for {missing}; every field of the schema needs a value "
                                      f"(see {FIXTURES_DIR / spec.name})")
            # Ids must be unique within a split: a later row with the same id would overwrite
            # the earlier one's context and references, and decoding would cut the wrong text.
            if ex.guid in first_seen:
                raise where(position, f"duplicate id {ex.guid!r} (first read at {first_seen[ex.guid]}); every "
                                      f"row of a split needs its own id")
            first_seen[ex.guid] = position
            examples.append(ex)
    return examples


def _hub_rows(part: HubPart) -> Iterator[tuple[int, Mapping[str, Any]]]:
    try:
        import datasets  # imported here: the local path never needs it
        ds = datasets.load_dataset(part.path, part.name, split=part.split, streaming=bool(part.take),
                                   revision=part.revision, data_dir=part.data_dir)
        if part.take:
            ds = itertools.islice(ds, part.take)
    except Exception as e:  # network, auth, renamed configs: all end the same way for a user
        raise StiltsError(
            f"could not load {part.describe()} from the hub ({type(e).__name__}: {e}). "
            "Without hub access, use --source local --data-dir DIR with the split as JSON lines."
        ) from e
    for i, row in enumerate(ds):
        if part.where and row.get(part.where[0]) != part.where[1]:
            continue
        if part.id_prefix and not str(row.get("id", "")).startswith(part.id_prefix):
            continue
        yield i, row


def _load_one(spec: TaskSpec, split: str, lang: str, source: str, data_dir: Path | None,
              path: Path | None) -> list:
    """Examples of one real language."""
    if source == "local":
        def where(lineno, msg):
            return DataFileError(path, msg, lineno)

        return _read_rows(spec, iter_jsonl(path), split, lang, where)
    if spec.hub_parts is None:
        raise StiltsError(f"task {spec.name!r} has no hub source. {spec.local_only_help}")
    examples: list = []
    for part in spec.hub_parts(split, lang):
        def where(row, msg, part=part):
            return StiltsError(f"{part.describe()} row {row}: {msg}")

        examples.extend(_read_rows(spec, _hub_rows(part), split, lang, where))
    return examples


def load_examples(spec: TaskSpec, split: str, lang: str | None = None, *, source: str = "local",
                  data_dir: Path | str | None = None) -> list:
    """All examples of one (task, split, language); an unknown split or language raises."""
    lang = spec.check(split, lang)
    if source not in SOURCES:
        raise StiltsError(f"unknown source {source!r}; use one of: {', '.join(SOURCES)}")
    if source == "local":
        parts = local_paths(spec, split, lang, Path(data_dir or FIXTURES_DIR))
    else:
        parts = [(part, None) for part in spec.components(lang)]
    if lang not in spec.lang_parts:
        return _load_one(spec, split, lang, source, data_dir, parts[0][1])
    examples: list = []
    for part, path in parts:
        rows = _load_one(spec, split, part, source, data_dir, path)
        examples.extend(dataclasses.replace(ex, guid=f"{part}:{ex.guid}") for ex in rows)
    if source == "local" and lang in spec.partial_parts:
        log.info("task %s split %s: %d examples from %s", spec.name, split, len(examples),
                 ", ".join(part for part, _ in parts))
    return examples


def labels_path(spec: TaskSpec, data_dir: Path | str | None = None) -> Path | None:
    """The user's label list a task reads its label set from (ccg's tags.txt), or None."""
    if spec.labels_file is None:
        return None
    return Path(data_dir or FIXTURES_DIR) / (spec.base or spec.name) / spec.labels_file


def load_labels(spec: TaskSpec, data_dir: Path | str | None = None) -> tuple[str, ...] | None:
    """The task's label set; CCG reads its supertag list from the user's data directory."""
    path = labels_path(spec, data_dir)
    if path is None:
        return spec.labels
    if not path.is_file():
        raise DataFileError(path, f"missing label list for task {spec.name!r}. {spec.local_only_help}")
    labels = tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    if not labels:
        raise DataFileError(path, "empty label list: put one label per line")
    return labels
