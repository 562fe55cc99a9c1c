"""Read-only column views over a memory-mapped feature-cache entry (``stilts_ds.data.cache``).

A cached split keeps its token columns ragged on disk (each row only as long as its real
tokens) and its guids as one Arrow string array. Nothing is copied when the entry opens:
the views below hold the mapped buffers and build numpy arrays only for the rows a caller
asks for, so the workers of a node share one copy of the data in the page cache.

    ids = feats.columns["input_ids"]   # RaggedColumn, shape (N, 256)
    ids[[3, 9, 11]]                    # np.ndarray (3, 256), padded as the table was
    np.asarray(ids)                    # the whole padded table (evaluation-sized tables only)
    feats.guids[5], feats.guids[[1, 2]]  # str, np.ndarray of str

They stand in for the padded numpy arrays a format's ``featurize`` returns: indexing by row
numbers gives what indexing the padded array gave, so collate, decode and scoring code
serve both without knowing which they hold.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import pyarrow as pa


def _row_index(key, n: int) -> np.ndarray | None:
    """Row numbers for a key that selects whole rows (an int array, a list, a range, a
    boolean mask of length n), else None."""
    if isinstance(key, (list, range)):
        key = np.asarray(key)
    if isinstance(key, np.ndarray) and key.ndim == 1:
        if key.dtype == bool:
            if len(key) != n:
                raise IndexError(f"boolean index of length {len(key)} for {n} rows")
            return np.flatnonzero(key)
        if key.size == 0 or np.issubdtype(key.dtype, np.integer):
            idx = key.astype(np.int64, copy=False)
            if idx.size and (idx.max() >= n or idx.min() < -n):
                raise IndexError(f"row index out of range for {n} rows")
            return np.where(idx < 0, idx + n, idx)
    return None


class RaggedColumn:
    """A token column stored without its padding. Row i's block is its first
    ``lengths[i]`` positions along the token axis; blocks lie one after another in
    ``values`` (shape ``(total tokens, *rest)``, ``rest`` the axes after the token axis once
    that is moved next to the row axis: ``(choices,)`` for a multiple-choice ``(N, choices,
    L)`` column, ``()`` for ``(N, L)``), and ``offsets[i]:offsets[i+1]`` are row i's
    elements (``unit`` = elements per token position), as Arrow's list offsets give them.
    Selecting rows gives the padded array the table had: ``(rows, *shape[1:])`` of ``dtype``,
    ``pad`` past each row's length. ``values`` may be stored narrower than ``dtype`` (tag ids
    in 16 bits), or be one value (0-d) that every token position holds (an attention mask).
    Nothing per row is precomputed: a view costs no memory of its own however many rows the
    table has."""

    def __init__(self, values: np.ndarray, offsets: np.ndarray, unit: int, shape: tuple[int, ...],
                 token_axis: int, pad, dtype=None):
        self.values = values
        self.offsets = offsets
        self.unit = max(int(unit), 1)
        self.shape = tuple(int(s) for s in shape)
        self.token_axis = int(token_axis)
        self.pad = pad
        self.dtype = np.dtype(dtype or values.dtype)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def take(self, rows: np.ndarray) -> np.ndarray:
        """The padded rows ``rows`` (row numbers), as one array."""
        rows = np.asarray(rows, dtype=np.int64)
        moved = [self.shape[self.token_axis]] + [s for a, s in enumerate(self.shape[1:], 1) if a != self.token_axis]
        out = np.full((len(rows), *moved), self.pad, dtype=self.dtype)
        starts = self.offsets[rows] // self.unit
        lens = self.offsets[rows + 1] // self.unit - starts
        total = int(lens.sum())
        if total:
            # Vectorised scatter: the j-th token of the k-th selected row comes from
            # values[starts[k] + j] and lands at out[k, j].
            row_of = np.repeat(np.arange(len(rows)), lens)
            pos = np.arange(total) - np.repeat(np.cumsum(lens) - lens, lens)
            out[row_of, pos] = self.values if self.values.ndim == 0 else self.values[np.repeat(starts, lens) + pos]
        return np.moveaxis(out, 1, self.token_axis) if self.token_axis != 1 else out

    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)):
            n = len(self)
            if not -n <= key < n:
                raise IndexError(f"row {key} out of range for {n} rows")
            return self.take(np.array([key % n]))[0]
        rows = _row_index(key, len(self))
        if rows is not None:
            return self.take(rows)
        return np.asarray(self)[key]  # slices and per-axis keys: evaluation code on small tables

    def __array__(self, dtype=None, copy=None):
        out = self.take(np.arange(len(self)))
        return out if dtype is None else out.astype(dtype)

    def __repr__(self) -> str:
        return f"RaggedColumn(shape={self.shape}, dtype={self.dtype}, tokens={int(self.offsets[-1]) // self.unit})"


class StringColumn:
    """Guids (or any string column) as an Arrow array: strings are made only for the rows
    asked for, so a 2M-row table does not become 2M Python objects in every worker."""

    def __init__(self, array: pa.Array):
        self.array = array

    def __len__(self) -> int:
        return len(self.array)

    @property
    def shape(self) -> tuple[int]:
        return (len(self.array),)

    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)):
            n = len(self)
            if not -n <= key < n:
                raise IndexError(f"row {key} out of range for {n} rows")
            return self.array[int(key) % n].as_py()
        if isinstance(key, slice):
            return np.asarray(self.array[key].to_pylist(), dtype=object)
        rows = _row_index(key, len(self))
        if rows is None:
            raise TypeError(f"cannot index a string column with {type(key).__name__}")
        return np.asarray(self.array.take(pa.array(rows, type=pa.int64())).to_pylist(), dtype=object)

    def __iter__(self) -> Iterator[str]:
        step = 65536  # a chunk of Python strings at a time, not the whole column
        for lo in range(0, len(self.array), step):
            yield from self.array[lo:lo + step].to_pylist()

    def __array__(self, dtype=None, copy=None):
        out = np.asarray(self.array.to_pylist(), dtype=object)
        return out if dtype is None else out.astype(dtype)

    def astype(self, dtype) -> np.ndarray:
        return np.asarray(self).astype(dtype)

    def __repr__(self) -> str:
        return f"StringColumn({len(self)} rows)"
