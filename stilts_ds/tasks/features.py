"""Featurized data shared by every format: a columnar table with a guid per row.

A format's ``featurize(examples, tokenizer, max_length)`` returns ``Features``; its
``collate(features, rows)`` turns a list of row indices into a ``Batch`` of tensors; its
``decode`` maps model outputs back to ``{guid: prediction}``. Columns are numpy arrays so a
split of 100k rows is a handful of arrays, cheap to index by batch. Token columns are padded
to ``max_length`` here; the feature cache stores them without the padding and hands back
views that pad the rows asked for (``stilts_ds.data.columns``), so code that indexes rows
serves both. Collate trims each batch to its longest row (dynamic padding), so short-text
tasks do not pay for ``max_length``.

Usage::

    feats = pair_classification.featurize(examples, tokenizer, max_length=128)
    batch = pair_classification.collate(feats, [0, 1, 2, 3])
    batch.tensors["input_ids"].shape  # (4, longest of the four)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import torch


@dataclass(frozen=True)
class Features:
    """Featurized rows of one (task, split, language).

    ``columns`` holds arrays whose first axis is the row; ``guids[i]`` names the example
    that row ``i`` came from (several rows share a guid when a long span-QA context is cut
    into windows). ``extras`` holds what decoding needs but the model does not (offsets,
    contexts, label names); it is keyed by whatever the format documents.
    """

    format: str
    columns: Mapping[str, np.ndarray]
    guids: np.ndarray
    extras: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        n = len(self.guids)
        for name, col in self.columns.items():
            if len(col) != n:
                raise ValueError(f"column {name!r} has {len(col)} rows, guids has {n}")

    def __len__(self) -> int:
        return len(self.guids)

    def take(self, rows) -> "Features":
        """Rows ``rows`` of the columns and guids, for running the model on part of a table;
        ``extras`` describe the whole table and are not carried over."""
        rows = np.asarray(rows, dtype=np.int64)
        return Features(self.format, {k: v[rows] for k, v in self.columns.items()}, self.guids[rows])


@dataclass(frozen=True)
class Batch:
    """Tensors for one forward pass, with the guid of every row (kept for gathering)."""

    tensors: Mapping[str, torch.Tensor]
    guids: Sequence[str]
    rows: np.ndarray

    def to(self, device) -> "Batch":
        return Batch({k: v.to(device) for k, v in self.tensors.items()}, self.guids, self.rows)


def trim_to_longest(
    columns: Mapping[str, np.ndarray], rows: Sequence[int], lengths: np.ndarray, token_keys: Sequence[str]
) -> dict[str, torch.Tensor]:
    """Index ``rows`` of every column and cut token columns (last axis) to the longest row.

    Dynamic padding: a batch of short sentences costs its own length, not ``max_length``.
    """
    idx = np.asarray(rows, dtype=np.int64)
    longest = int(lengths[idx].max()) if len(idx) else 0
    out = {}
    for name, col in columns.items():
        part = col[idx]
        if name in token_keys:
            part = part[..., :longest]
        out[name] = torch.from_numpy(np.ascontiguousarray(part))
    return out


def pad_rows(rows: Sequence[Sequence[int]], max_length: int, pad_value: int, dtype=np.int32) -> np.ndarray:
    """Stack variable-length id lists into a [N, max_length] array filled with ``pad_value``."""
    out = np.full((len(rows), max_length), pad_value, dtype=dtype)
    for i, r in enumerate(rows):
        n = min(len(r), max_length)
        out[i, :n] = r[:n]
    return out


def collate_rows(features: Features, rows: Sequence[int], token_keys: Sequence[str]) -> Batch:
    """The collate every format shares: index ``rows``, trim ``token_keys`` to the longest
    row (by the ``lengths`` column), cast token columns to int64 as embeddings expect."""
    cols = {k: v for k, v in features.columns.items() if k != "lengths"}
    tensors = trim_to_longest(cols, rows, features.columns["lengths"], token_keys)
    tensors = {k: (v.long() if k in token_keys else v) for k, v in tensors.items()}
    idx = np.asarray(rows, dtype=np.int64)
    # One lookup for the batch: a cached table's guids are an Arrow column (data.columns).
    return Batch(tensors, [str(g) for g in features.guids[idx]], idx)


def concat_features(parts: Sequence[Features]) -> Features:
    """Join featurized chunks of one split (prepare featurizes big splits in chunks to show
    progress). Arrays concatenate, dicts merge, lists extend; other extras must agree."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    columns = {k: np.concatenate([p.columns[k] for p in parts]) for k in first.columns}
    extras: dict[str, Any] = {}
    for key, value in first.extras.items():
        values = [p.extras[key] for p in parts]
        if isinstance(value, np.ndarray):
            extras[key] = np.concatenate(values)
        elif isinstance(value, dict):
            merged: dict = {}
            for v in values:
                merged.update(v)
            extras[key] = merged
        elif isinstance(value, list):
            extras[key] = [x for v in values for x in v]
        else:
            if any(v != value for v in values[1:]):
                raise ValueError(f"chunks disagree on extras[{key!r}]")
            extras[key] = value
    return Features(first.format, columns, np.concatenate([p.guids for p in parts]), extras)
