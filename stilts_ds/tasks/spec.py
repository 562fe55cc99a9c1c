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

Derived tasks (``stilts_ds.tasks.multilingual``: ``mlm``, ``mnli@de``, ``mnli@en+de``) use
two more fields: ``local_layout`` (their files sit beside the base task's) and
``lang_parts`` (a *composite language*: one key such as ``"en+de"`` whose rows are the
union of several languages' files or hub parts, read one language at a time).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from stilts_ds.errors import StiltsError
from stilts_ds.tasks.formats.base import FormatOptions

INTERMEDIATE = "intermediate"
XTREME = "xtreme"
# Continued MLM: trained in phase 1 beside the intermediate tasks, but not one of the nine.
MULTILINGUAL = "multilingual"
# English data a target task's official recipe trains on before its own (XTREME-R's SIQA
# before COPA): not one of the nine, but usable as an intermediate task too.
AUXILIARY = "auxiliary"
# The hub's own Parquet conversion of a repository (see HubPart.revision).
PARQUET_BRANCH = "refs/convert/parquet"


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
    # Read only the first ``take`` rows, streamed: corpora (Wikipedia) are far larger than
    # what continued MLM needs, and streaming avoids downloading a whole dump.
    take: int | None = None
    # A branch other than main: datasets >= 4 no longer runs loading scripts, and repositories
    # that still hold only a script (allenai/cosmos_qa, allenai/social_i_qa) are read from the
    # hub's own Parquet conversion, ``refs/convert/parquet``.
    revision: str | None = None
    # A config's folder on that branch: the conversion writes ``<config>/<split>/*.parquet``
    # with no config list, so a multi-config repository is read by folder, not by name.
    data_dir: str | None = None

    def describe(self) -> str:
        cfg = f", {self.name!r}" if self.name else ""
        rev = f", revision={self.revision!r}" if self.revision else ""
        rev += f", data_dir={self.data_dir!r}" if self.data_dir else ""
        stream = f", streaming=True).take({self.take}" if self.take else ""
        return f"load_dataset({self.path!r}{cfg}, split={self.split!r}{rev}{stream})"


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
    kind: str  # INTERMEDIATE, XTREME, MULTILINGUAL or AUXILIARY
    format: str  # a module name in stilts_ds.tasks.formats
    metric: str  # a name in stilts_ds.metrics.METRICS
    description: str
    splits: Mapping[str, tuple[str, ...]]
    reader: Callable[[Mapping[str, Any], str, str, int], Any]
    hub_parts: Callable[[str, str], list[HubPart]] | None
    labels: tuple[str, ...] | None = None
    # The format's typed options (ChoiceOptions(num_choices=4), SpanOptions(...)); None when
    # the format takes none. The format reads them: format_of(spec).options_of(spec).
    options: FormatOptions | None = None
    # The official answer files' shape when it is not the metric's usual one: "xcopa" (labels
    # as JSON lines). `stilts-ds score --task` reads both files so, whatever their names.
    answer_files: str | None = None
    # A label set read from the user's data instead of ``labels``: the file name in the
    # task's local directory (ccg: tags.txt, one supertag per line).
    labels_file: str | None = None
    # Only for tasks with no hub source: what the user must supply, and in which shape.
    local_only_help: str | None = None
    # The English data an XTREME task is trained on, in words (for `stilts-ds tasks`).
    train_source: str | None = None
    # The registry task whose training data this task's train split is (xnli: mnli; xquad,
    # mlqa: squad_v1): under the official recipe (jiant's xtreme_runconfig_writer) its English
    # ``validation`` split, scored by its own metric, selects the fine-tuned model
    # (``finetune.select_on``). None: the task trains on its own data and selects on its own dev.
    selected_on: str | None = None
    # Derived tasks: the registry task this one is derived from (``mnli`` for ``mnli@de``)
    # and the head it trains (shared by name with the base task's).
    base: str | None = None
    head: str | None = None
    # ``(split, lang) -> path`` relative to the data root, when not the default layout.
    local_layout: Callable[[str, str], str] | None = None
    # Composite languages: key -> the languages whose rows it unites, read one by one.
    lang_parts: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Composite keys whose local files are optional (the languages that have a file are
    # used, at least one): ``mlm``'s default, the XTREME languages.
    partial_parts: frozenset = frozenset()
    # Languages with no hub copy (user files only, e.g. XTREME-R's UD 2.7 additions to udpos):
    # their hub_parts raise; a hub-sourced study leaves them out and says so.
    local_only_langs: tuple[str, ...] = ()
    # The official recipe's earlier phase-2 stages: tasks (same format) trained first, in order,
    # each stage starting from the last one's encoder and head (XTREME-R: xcopa after siqa).
    train_first: tuple[str, ...] = ()
    # Retrieval: every language's file holds the same candidate pool (LAReQA, Mewsli-X), so
    # evaluation embeds each pool row once for all languages (engine.predict.predict_embeddings).
    shared_pool: bool = False
    # What a study reading this task from the hub should be told (BUCC: the hub copy keeps only
    # the gold pairs; see stilts_ds.tasks.bucc_files).
    hub_caveat: str | None = None

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

    @property
    def head_name(self) -> str:
        """The head this task trains: its own, or the one it shares (``mnli@de`` -> ``mnli``)."""
        return self.head or self.name

    @property
    def train_language(self) -> str:
        """The language key of the training split: ``en`` for the study's English tasks, the
        translation (``de``) or composite key (``en+de``, ``xtreme``) for derived ones."""
        langs = self.splits.get("train", ())
        return langs[0] if len(langs) == 1 else "en"

    @property
    def counts_toward_epochs(self) -> bool:
        """Whether this task's training rows count toward a phase's epochs (MLM's text blocks
        do not: they are an extra sampling share on top; ``TrainConfig.epoch_rows``)."""
        from stilts_ds.tasks.formats import format_of

        return format_of(self).counts_toward_epochs

    @property
    def sequences_per_row(self) -> int:
        """Encoder sequences one row costs (a multiple-choice row is one per choice)."""
        from stilts_ds.tasks.formats import format_of

        return format_of(self).sequences_per_row(self)

    def components(self, lang: str) -> tuple[str, ...]:
        """The real languages behind a language key (itself, unless it is composite)."""
        return tuple(self.lang_parts.get(lang, (lang,)))

    def local_file(self, split: str, lang: str) -> str:
        """Path of the split's file relative to a local data root (``lang``: one real
        language; a composite key has one file per ``components(lang)``)."""
        if lang in self.lang_parts:
            raise ValueError(f"{lang!r} is a composite language of {self.name!r}: ask for each of "
                             f"{', '.join(self.lang_parts[lang])}")
        if self.local_layout is not None:
            return self.local_layout(split, lang)
        if self.kind in (INTERMEDIATE, AUXILIARY):  # English only: no language in the name
            return f"{self.name}/{split}.jsonl"
        return f"{self.name}/{split}.{lang}.jsonl"
