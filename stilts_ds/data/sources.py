"""Loading a task's raw rows from the hub or a local directory, through the task's reader.

Both sources yield rows of the same schema, so one reader serves both:

    examples = load_examples(get_task("xnli"), "test", "zh", source="local", data_dir=FIXTURES_DIR)
    examples = load_examples(get_task("xnli"), "test", "zh", source="hub")   # on a cluster

A malformed local line is reported as ``file:line: what is wrong``; nothing is guessed.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator, Mapping

from stilts_ds.errors import DataFileError, StiltsError
from stilts_ds.tasks.spec import HubPart, TaskSpec

FIXTURES_DIR = Path(__file__).resolve().parent.parent / "resources" / "fixtures"
SOURCES = ("local", "hub")


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) for every non-blank line; a bad line raises DataFileError."""
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataFileError(
                    path, f"not valid JSON ({e.msg}, column {e.colno}); each line must be one JSON object", lineno
                ) from None
            if not isinstance(obj, dict):
                raise DataFileError(path, f"expected a JSON object, got {type(obj).__name__}", lineno)
            yield lineno, obj


def local_path(spec: TaskSpec, split: str, lang: str, data_dir: Path) -> Path:
    path = Path(data_dir) / spec.local_file(split, lang)
    if not path.is_file():
        hint = spec.local_only_help or (
            f"write the split there as JSON lines in the hub schema ({', '.join(p.describe() for p in spec.hub_parts(split, lang))}), "
            f"see {FIXTURES_DIR / spec.name} for examples, or use --source hub"
        )
        raise DataFileError(path, f"missing: task {spec.name!r} split {split!r} language {lang!r}. {hint}")
    return path


def local_splits(spec: TaskSpec, data_dir: Path) -> list[tuple[str, str]]:
    """The (split, language) pairs of ``spec`` that have a file under ``data_dir``."""
    return [
        (split, lang)
        for split, langs in spec.splits.items()
        for lang in langs
        if (Path(data_dir) / spec.local_file(split, lang)).is_file()
    ]


def _read_rows(spec: TaskSpec, rows, split: str, lang: str, where) -> list:
    examples: list = []
    for index, (position, record) in enumerate(rows):
        try:
            out = spec.reader(record, split, lang, index)
        except KeyError as e:
            raise where(position, f"missing field {e.args[0]!r} for task {spec.name!r} "
                                  f"(see {FIXTURES_DIR / spec.name} for the schema)") from None
        except (ValueError, TypeError) as e:
            raise where(position, f"task {spec.name!r}: {e}") from None
        if out is None:
            continue
        examples.extend(out if isinstance(out, list) else [out])
    return examples


def _hub_rows(part: HubPart) -> Iterator[tuple[int, Mapping[str, Any]]]:
    try:
        import datasets  # imported here: the local path never needs it
        ds = datasets.load_dataset(part.path, part.name, split=part.split)
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


def load_examples(spec: TaskSpec, split: str, lang: str | None = None, *, source: str = "local",
                  data_dir: Path | str | None = None) -> list:
    """All examples of one (task, split, language); an unknown split or language raises."""
    lang = spec.check(split, lang)
    if source == "local":
        path = local_path(spec, split, lang, Path(data_dir or FIXTURES_DIR))

        def where(lineno, msg):
            return DataFileError(path, msg, lineno)

        return _read_rows(spec, iter_jsonl(path), split, lang, where)
    if source == "hub":
        if spec.hub_parts is None:
            raise StiltsError(f"task {spec.name!r} has no hub source. {spec.local_only_help}")
        examples: list = []
        for part in spec.hub_parts(split, lang):
            def where(row, msg, part=part):
                return StiltsError(f"{part.describe()} row {row}: {msg}")

            examples.extend(_read_rows(spec, _hub_rows(part), split, lang, where))
        return examples
    raise StiltsError(f"unknown source {source!r}; use one of: {', '.join(SOURCES)}")


def load_labels(spec: TaskSpec, data_dir: Path | str | None = None) -> tuple[str, ...] | None:
    """The task's label set; CCG reads its supertag list from the user's data directory."""
    labels_file = spec.options.get("labels_file")
    if labels_file is None:
        return spec.labels
    path = Path(data_dir or FIXTURES_DIR) / spec.name / labels_file
    if not path.is_file():
        raise DataFileError(path, f"missing label list for task {spec.name!r}. {spec.local_only_help}")
    labels = tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    if not labels:
        raise DataFileError(path, "empty label list: put one label per line")
    return labels
