"""What a task is: a format, a label set, languages per split, and where its data lives.

A ``TaskSpec`` is data plus one small reader (raw record -> Example). Everything that
differs between tasks sits here; everything shared by tasks of one format sits in
``stilts_ds.tasks.formats``. The registry (``stilts_ds.tasks.registry``) lists them.

Two sources stand behind every task and feed the same reader:

* the hub: ``hub_parts(split, lang)`` names ``datasets.load_dataset(path, name, split=...)``
  calls (plus a row filter where one hub split mixes languages);
* a local directory in the same row schema, one JSON object per line:
  ``<root>/<task>/<split>.jsonl`` for English intermediate tasks and
  ``<root>/<task>/<split>.<lang>.jsonl`` for XTREME tasks (see ``local_file``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from stilts_ds.errors import StiltsError

INTERMEDIATE = "intermediate"
XTREME = "xtreme"


@dataclass(frozen=True)
class HubPart:
    """One ``datasets.load_dataset(path, name, split=split)`` call and an optional row filter.

    ``where`` keeps rows whose field equals a value (XNLI keeps its languages in one split);
    ``id_prefix`` keeps rows whose ``id`` starts with a prefix (TyDiQA-GoldP names the
    language in the id).
    """

    path: str
    name: str | None
    split: str
    where: tuple[str, Any] | None = None
    id_prefix: str | None = None

    def describe(self) -> str:
        cfg = f", {self.name!r}" if self.name else ""
        return f"load_dataset({self.path!r}{cfg}, split={self.split!r})"


class UnknownSplitError(StiltsError):
    pass


@dataclass(frozen=True)
class TaskSpec:
    """One task of the study.

    ``splits`` maps each split to the languages it exists in; ``reader(record, split, lang,
    index)`` turns one raw row (hub or local, same schema; ``index`` is its position) into
    the format's Example, a list of them (a BUCC row holds two sentences), or None to skip a
    row the official data marks as unlabelled (SNLI's label -1).
    """

    name: str
    kind: str  # INTERMEDIATE or XTREME
    format: str  # a module name in stilts_ds.tasks.formats
    metric: str  # a name in stilts_ds.metrics.METRICS
    description: str
    splits: Mapping[str, tuple[str, ...]]
    reader: Callable[[Mapping[str, Any], str, str, int], Any]
    hub_parts: Callable[[str, str], list[HubPart]] | None
    labels: tuple[str, ...] | None = None
    # Format options, e.g. {"num_choices": 4} or {"version_2_with_negative": True}.
    options: Mapping[str, Any] = field(default_factory=dict)
    # Only for tasks with no hub source: what the user must supply, and in which shape.
    local_only_help: str | None = None
    # The English data an XTREME task is trained on, in words (for `stilts-ds tasks`).
    train_source: str | None = None

    @property
    def languages(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for langs in self.splits.values():
            for lang in langs:
                seen.setdefault(lang, None)
        return tuple(seen)

    @property
    def sources(self) -> tuple[str, ...]:
        return ("hub", "local") if self.hub_parts is not None else ("local",)

    def check(self, split: str, lang: str | None) -> str:
        """Return the language to use for ``split``; raise if the task lacks it."""
        if split not in self.splits:
            raise UnknownSplitError(
                f"task {self.name!r} has no split {split!r}; it has: {', '.join(self.splits)}"
            )
        langs = self.splits[split]
        if lang is None:
            if len(langs) == 1:
                return langs[0]
            raise UnknownSplitError(
                f"task {self.name!r} split {split!r} exists in {len(langs)} languages; "
                f"pick one with --lang (one of: {', '.join(langs)})"
            )
        if lang not in langs:
            raise UnknownSplitError(
                f"task {self.name!r} split {split!r} has no language {lang!r}; "
                f"it has: {', '.join(langs)}"
            )
        return lang

    def local_file(self, split: str, lang: str) -> str:
        """Path of the split's file relative to a local data root."""
        if self.kind == INTERMEDIATE:
            return f"{self.name}/{split}.jsonl"
        return f"{self.name}/{split}.{lang}.jsonl"

    def label_index(self) -> dict[str, int]:
        return {label: i for i, label in enumerate(self.labels or ())}
