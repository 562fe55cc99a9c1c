"""The prepare stage: load, featurize and cache every requested (task, split, language).

    stilts-ds prepare --task all --tokenizer bundled --cache-dir runs/cache
    stilts-ds prepare --task xnli --split test --lang zh --source hub --tokenizer FacebookAI/xlm-roberta-large

Idempotent: an entry already in the cache is reused unless ``force``. Featurization of a
big split runs in chunks so the progress bar moves; chunks are joined before the single
atomic write.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from tqdm.auto import tqdm

from stilts_ds.data import cache
from stilts_ds.data.sources import FIXTURES_DIR, load_examples, load_labels, local_paths, local_splits
from stilts_ds.errors import StiltsError
from stilts_ds.tasks.features import Features, concat_features
from stilts_ds.tasks.formats import format_of
from stilts_ds.tasks.spec import TaskSpec

# The paper's recipe: 256 tokens, 384 for span QA (the format's long inputs).
DEFAULT_MAX_LENGTH, LONG_MAX_LENGTH = 256, 384
CHUNK_EXAMPLES = 2000
# Above this share of unknown tokens a split is reported loudly: the tokenizer does not cover
# its language (the bundled fixture tokenizer is 30-42% <unk> on el, th, zh, ta text).
UNK_WARN_RATE = 0.05


def max_length_for(spec: TaskSpec, override: int | None) -> int:
    return override or format_of(spec).max_length(DEFAULT_MAX_LENGTH, LONG_MAX_LENGTH)


def featurize_examples(spec: TaskSpec, examples: Sequence, tokenizer, max_length: int,
                       labels: Sequence[str] | None) -> Features:
    """The task's format featurizes, with the options its spec carries; the gold answers
    ride along so that evaluation scores from the cache alone."""
    return format_of(spec).featurize(spec, examples, tokenizer, max_length, labels)


@dataclass(frozen=True)
class Prepared:
    task: str
    split: str
    lang: str
    path: Path
    examples: int
    rows: int
    seconds: float
    reused: bool
    # The format's figures of the table (rows, examples, truncated, unk_rate; span QA:
    # unlabelled_answers, answerable questions that no window labels): what to check before
    # training on it (``row()``).
    quality: Mapping[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        """One JSON object of `stilts-ds prepare --json`."""
        q = self.quality
        return {"task": self.task, "split": self.split, "lang": self.lang, "examples": self.examples,
                "rows": self.rows, "truncated": q.get("truncated", 0),
                "unlabelled_answers": q.get("unlabelled_answers"), "unk_rate": q.get("unk_rate"),
                "split_examples": q.get("split_examples"), "reused": self.reused, "path": str(self.path)}


def plan(tasks: Sequence[TaskSpec], splits: Sequence[str] | None, langs: Sequence[str] | None,
         source: str, data_dir: Path) -> list[tuple[TaskSpec, str, str]]:
    """Which (task, split, language) to prepare. A split or language asked for by name must
    exist for a task named alone (else an error says what it has); with several tasks, those
    lacking it are passed over. Local data without --lang means the languages with a file."""
    strict = len(tasks) == 1
    items = []
    for spec in tasks:
        present = set(local_splits(spec, data_dir)) if source == "local" else None
        for split in splits or list(spec.splits):
            if split not in spec.splits:
                if strict:
                    spec.check(split, None)  # raises, naming the splits the task has
                continue
            for lang in langs or spec.splits[split]:
                if lang not in spec.splits[split]:
                    if strict:
                        spec.check(split, lang)  # raises, naming the languages
                    continue
                if present is not None and langs is None and (split, lang) not in present:
                    continue  # a local copy may hold a subset of languages
                items.append((spec, split, lang))
        if strict and not items:
            raise StiltsError(f"task {spec.name!r}: no data files under {data_dir / spec.name}. "
                              f"{spec.local_only_help or 'Use --source hub, or write the splits there.'}")
    if not items:
        raise StiltsError("nothing to prepare: no task has the requested split/language")
    return items


def locate(spec: TaskSpec, split: str, lang: str, *, tokenizer_fp: str, cache_dir: Path | str, source: str,
           data_dir: Path | str | None, max_length: int | None) -> tuple[Path, list[Path]]:
    """(cache entry path, local files it is built from) of one (task, split, language), without
    reading or featurizing anything: the entry's name carries the tokenizer and data
    fingerprints, so a study graph can key its nodes on the exact features they read."""
    data_dir = Path(data_dir or FIXTURES_DIR)
    files = [path for _, path in local_paths(spec, split, lang, data_dir)] if source == "local" else []
    key = cache.CacheKey(spec.name, split, lang, tokenizer_fp, max_length_for(spec, max_length),
                         cache.data_fingerprint(source, files or None))
    return cache.cache_path(cache_dir, key), files


def prepare(tasks: Sequence[TaskSpec], *, tokenizer, cache_dir: Path | str, source: str = "local",
            data_dir: Path | str | None = None, splits: Sequence[str] | None = None,
            langs: Sequence[str] | None = None, max_length: int | None = None, force: bool = False,
            progress: bool = True) -> list[Prepared]:
    data_dir = Path(data_dir or FIXTURES_DIR)
    items = plan(tasks, splits, langs, source, data_dir)
    tok_fp = cache.tokenizer_fingerprint(tokenizer)
    labels_of = {spec.name: load_labels(spec, data_dir) for spec, _, _ in items}
    done: list[Prepared] = []
    bar = tqdm(items, desc="prepare", unit="split", disable=not progress)
    for spec, split, lang in bar:
        bar.set_postfix_str(f"{spec.name}/{split}/{lang}")
        start = time.perf_counter()
        length = max_length_for(spec, max_length)
        path, _ = locate(spec, split, lang, tokenizer_fp=tok_fp, cache_dir=cache_dir, source=source,
                         data_dir=data_dir, max_length=max_length)
        if cache.exists(path) and not force:
            feats = cache.read(path)
            quality = feats.extras.get("quality") or format_of(spec).quality(feats, length, tokenizer.unk_token_id)
            done.append(Prepared(spec.name, split, lang, path, len(set(feats.guids)), len(feats), 0.0, True, quality))
            continue
        examples = load_examples(spec, split, lang, source=source, data_dir=data_dir)
        if not examples:
            raise StiltsError(f"task {spec.name!r} split {split!r} language {lang!r} has no examples")
        chunks = []
        inner = tqdm(total=len(examples), desc=f"{spec.name}/{split}/{lang}", unit="ex", leave=False,
                     disable=not progress or len(examples) <= CHUNK_EXAMPLES)
        for i in range(0, len(examples), CHUNK_EXAMPLES):
            part = examples[i:i + CHUNK_EXAMPLES]
            try:
                chunks.append(featurize_examples(spec, part, tokenizer, length, labels_of[spec.name]))
            except ValueError as e:
                raise StiltsError(f"task {spec.name!r} split {split!r} language {lang!r}: {e}") from None
            inner.update(len(part))
        inner.close()
        feats = concat_features(chunks)
        # The figures travel in the cache entry: a later run reads them without recounting.
        quality = format_of(spec).quality(feats, length, tokenizer.unk_token_id)
        feats = cache.write(path, dataclasses.replace(feats, extras={**feats.extras, "quality": quality}))
        done.append(Prepared(spec.name, split, lang, path, len(examples), len(feats),
                             time.perf_counter() - start, False, quality))
    return done
