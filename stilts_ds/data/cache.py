"""The on-disk feature cache, keyed by (task, split, language, tokenizer, max length).

Training never tokenizes: ``stilts-ds prepare`` writes each featurized split once and every
worker reads it.

    path = cache_path(cache_dir, key)
    feats = read(path) if path.exists() else write(path, build())

An entry is a directory of two Apache Arrow IPC files, written to a temporary directory
beside it and renamed into place (``atomic.atomic_directory``), so a killed ``prepare``
never leaves a half-written entry that a later run would trust:

- ``rows.arrow``: one row per feature row: ``guid``, every column of the table (token
  columns ragged: a row holds only its first ``lengths[i]`` tokens, no padding on disk) and
  the extras that have a value per row (span QA's offsets, retrieval's sides). Its schema
  metadata (``stilts_ds``) says how to rebuild each array: dtype, shape, token axis, pad.
- ``extras.arrow``: one row holding the larger per-example extras (references, contexts,
  label lists) as lists, keys beside values; scalars and numbers are JSON in the metadata.

Reading memory-maps both files and copies nothing: numeric columns are numpy views of the
mapping, token columns ``columns.RaggedColumn`` and guids ``columns.StringColumn`` build
arrays only for the rows asked for, and extras are decoded on first use (training never
touches references). The workers of a node therefore share one copy of a split in the page
cache instead of each holding its own (``tools/bench_feature_cache.py`` measures it). Nothing
is unpickled: an entry on shared storage cannot run code.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import pyarrow as pa

from stilts_ds import atomic
from stilts_ds.data.columns import RaggedColumn, StringColumn
from stilts_ds.errors import StiltsError
from stilts_ds.tasks.features import Features

# Bump when featurization changes its output for the same inputs: old entries stop matching.
FEATURE_VERSION = 3  # 3: Arrow entries (2: pickles)


@dataclass(frozen=True)
class CacheKey:
    task: str
    split: str
    lang: str
    tokenizer: str  # tokenizer_fingerprint(...)
    max_length: int
    data: str  # data_fingerprint(...)

    def filename(self) -> str:
        return (
            f"{self.task}/{self.split}.{self.lang}.len{self.max_length}."
            f"tok-{self.tokenizer}.data-{self.data}.v{FEATURE_VERSION}.features"
        )


def tokenizer_fingerprint(tokenizer) -> str:
    """Hash of the full tokenizer definition (vocab, normalizer, templates), not its name:
    two tokenizers saved under one path but built differently never share entries."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise StiltsError(f"{type(tokenizer).__name__} is not a fast tokenizer; stilts-ds needs offsets from one")
    definition = json.loads(backend.to_str())
    # Truncation and padding are call-time state the fast tokenizer stores on its backend
    # (every padded call changes them); they are not part of what the tokenizer *is*.
    definition.pop("truncation", None)
    definition.pop("padding", None)
    return hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest()[:12]


def data_fingerprint(source: str, path: Path | Sequence[Path] | None = None) -> str:
    """Local files: path, size and modification time of each (cheap for gigabyte splits; a
    composite language has several files, and adding one changes the key). Hub: 'hub'
    (the datasets library versions its own cache)."""
    if path is None:
        return source
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    parts = []
    for p in paths:
        st = Path(p).stat()
        parts.append(f"{Path(p).resolve()}|{st.st_size}|{st.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


def cache_path(cache_dir: Path | str, key: CacheKey) -> Path:
    return Path(cache_dir) / key.filename()



ROWS_FILE, EXTRAS_FILE = "rows.arrow", "extras.arrow"
_META_KEY = b"stilts_ds"


def exists(path: Path | str) -> bool:
    """Whether a complete entry is at ``path`` (the rename makes it appear whole)."""
    return (Path(path) / ROWS_FILE).is_file()


# ------------------------------------------------------------------------------- writing
def _width(features: Features) -> int | None:
    ids = features.columns.get("input_ids")
    return int(ids.shape[-1]) if ids is not None and np.ndim(ids) >= 2 else None


def _strings(values, repeated: bool = False) -> pa.Array:
    """A string array; ``repeated``: dictionary-encoded when values repeat (five SQuAD questions
    share a paragraph, a million NLI references are three label names), stored once each."""
    values = list(values)
    if not all(isinstance(v, str) for v in values):
        bad = next(v for v in values if not isinstance(v, str))
        raise TypeError(f"an object array holds {type(bad).__name__}, not only str")
    array = pa.array(values, type=pa.large_string())
    if repeated and len(values) > 1:
        encoded = array.dictionary_encode()
        if len(encoded.dictionary) <= len(values) // 2:
            return encoded
    return array


def _encode_array(name: str, arr: np.ndarray, lengths: np.ndarray | None, width: int | None) -> tuple[pa.Array, dict]:
    """One row-aligned array -> (Arrow array of len(arr) rows, how to rebuild it)."""
    arr = np.asarray(arr)
    if arr.dtype == object:
        return _strings(arr), {"kind": "strings"}
    dtype = arr.dtype.str
    if arr.dtype == bool:  # Arrow packs booleans into bits: no zero-copy view back
        arr = arr.view(np.uint8)
    if arr.ndim == 1:
        return pa.array(arr), {"kind": "plain", "dtype": dtype}
    n = len(arr)
    axis = next((a for a in range(1, arr.ndim) if arr.shape[a] == width), None) if lengths is not None else None
    if axis is not None:
        moved = np.moveaxis(arr, axis, 1)  # (N, L, *rest): each row's block is its first lengths[i] positions
        keep = np.arange(width)[None, :] < np.clip(lengths, 0, width)[:, None]
        padding = moved[~keep]
        pad = padding.reshape(-1)[0] if padding.size else np.zeros((), arr.dtype)
        if not padding.size or bool((padding == pad).all()):
            unit = int(np.prod(moved.shape[2:], dtype=np.int64))
            offsets = np.zeros(n + 1, dtype=np.int64)
            np.cumsum(keep.sum(axis=1).astype(np.int64) * unit, out=offsets[1:])
            kept = np.ascontiguousarray(moved[keep]).reshape(-1)
            spec = {"kind": "ragged", "dtype": dtype, "shape": list(arr.shape), "token_axis": axis,
                    "pad": pad.item()}
            if kept.size and bool((kept == kept[0]).all()):
                # One value wherever a row has tokens (an attention mask): only the lengths are stored.
                spec["fill"], values = kept[0].item(), pa.nulls(kept.size)
            else:
                values = pa.array(_narrowest(kept))
            return pa.LargeListArray.from_arrays(pa.array(offsets), values), spec
    size = int(np.prod(arr.shape[1:], dtype=np.int64))
    flat = pa.array(np.ascontiguousarray(arr).reshape(-1))
    return pa.FixedSizeListArray.from_arrays(flat, size), {"kind": "dense", "dtype": dtype, "shape": list(arr.shape)}


def _narrowest(values: np.ndarray) -> np.ndarray:
    """Integers in the smallest signed type that holds them (tag ids, word indices, character
    offsets fit 16 bits); the views cast back to the table's dtype when they pad rows."""
    if values.dtype.kind not in "iu" or not values.size:
        return values
    lo, hi = int(values.min()), int(values.max())
    for narrow in (np.int8, np.int16, np.int32):
        info = np.iinfo(narrow)
        if info.min <= lo and hi <= info.max:
            return values.astype(narrow) if np.dtype(narrow).itemsize < values.dtype.itemsize else values
    return values


def _json_ready(name: str, value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        raise TypeError(f"extras[{name!r}] ({type(value).__name__}) cannot be stored in the feature cache: "
                        "use numpy arrays, str/int/float/bool, and lists, tuples or str-keyed dicts of them") from None
    return value


def _encode_extra(name: str, value: Any) -> tuple[dict, dict[str, pa.Array]]:
    """A per-example extra -> (how to rebuild it, its columns in extras.arrow)."""
    one_row = lambda values: pa.LargeListArray.from_arrays(pa.array([0, len(values)], pa.int64()), values)  # noqa: E731
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            return {"kind": "array", "dtype": "object", "shape": list(value.shape)}, {
                name: one_row(_strings(value.reshape(-1)))}
        flat = value.view(np.uint8) if value.dtype == bool else value
        return {"kind": "array", "dtype": value.dtype.str, "shape": list(value.shape)}, {
            name: one_row(pa.array(np.ascontiguousarray(flat).reshape(-1)))}
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        values = list(value.values())
        if all(isinstance(v, str) for v in values):
            kind, arr = "str", _strings(values, repeated=True)
        elif all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
            kind, arr = "int", pa.array(np.asarray(values, dtype=np.int64))
        else:
            tuples = all(isinstance(v, tuple) for v in values)
            kind = "json_tuple" if tuples else "json"
            arr = _strings((json.dumps(_json_ready(name, v), ensure_ascii=False) for v in values), repeated=True)
        return {"kind": "mapping", "values": kind}, {f"{name}.keys": one_row(_strings(value)),
                                                     f"{name}.values": one_row(arr)}
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        return {"kind": "strings", "tuple": isinstance(value, tuple)}, {name: one_row(_strings(value))}
    return {"kind": "json", "tuple": isinstance(value, tuple), "value": _json_ready(name, value)}, {}


def _write_ipc(path: Path, table: pa.Table, metadata: dict | None = None) -> None:
    if metadata is not None:
        table = table.replace_schema_metadata({_META_KEY: json.dumps(metadata)})
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        # One record batch: every column is one contiguous Arrow array when mapped back.
        writer.write_batch(table.combine_chunks().to_batches(max_chunksize=None)[0] if table.num_rows
                           else pa.RecordBatch.from_pylist([], schema=table.schema))


def write(path: Path, features: Features) -> Features:
    """Store ``features`` at ``path`` (a directory, written whole or not at all); returns
    them, so building and caching is one expression (module docstring)."""
    n = len(features)
    lengths = features.columns.get("lengths")
    lengths = np.asarray(lengths, dtype=np.int64) if lengths is not None else None
    width = _width(features)
    arrays = {"guid": _strings(str(g) for g in features.guids)}
    meta: dict[str, Any] = {"format": features.format, "feature_version": FEATURE_VERSION, "rows": n,
                            "columns": {}, "extras": {}}
    for name, col in features.columns.items():
        arrays[f"column:{name}"], meta["columns"][name] = _encode_array(name, np.asarray(col), lengths, width)
    extra_arrays: dict[str, pa.Array] = {}
    for name, value in features.extras.items():
        if isinstance(value, np.ndarray) and value.ndim >= 1 and len(value) == n:
            arr, spec = _encode_array(name, value, lengths, width)
            arrays[f"extra:{name}"] = arr
            meta["extras"][name] = {"kind": "row", "array": spec}
        else:
            meta["extras"][name], cols = _encode_extra(name, value)
            extra_arrays.update(cols)
    with atomic.atomic_directory(path, overwrite=True) as tmp:
        _write_ipc(tmp / ROWS_FILE, pa.table(arrays), meta)
        _write_ipc(tmp / EXTRAS_FILE, pa.table(extra_arrays) if extra_arrays
                   else pa.table({"none": pa.array([], pa.int8())}))
    return features


# ------------------------------------------------------------------------------- reading
def _numpy(arr: pa.Array, dtype: str) -> np.ndarray:
    return arr.to_numpy(zero_copy_only=True).view(np.dtype(dtype))


def _decode_array(arr: pa.Array, spec: Mapping[str, Any], lazy: bool):
    kind = spec["kind"]
    if kind == "strings":
        return StringColumn(arr) if lazy else np.asarray(arr.to_pylist(), dtype=object)
    if kind == "plain":
        return _numpy(arr, spec["dtype"])
    if kind == "dense":
        return _numpy(arr.flatten() if isinstance(arr, pa.FixedSizeListArray) else arr, spec["dtype"]).reshape(
            spec["shape"])
    shape, axis = spec["shape"], spec["token_axis"]
    rest = [s for a, s in enumerate(shape[1:], 1) if a != axis]
    dtype = np.dtype(spec["dtype"])
    if "fill" in spec:
        values = np.asarray(spec["fill"]).astype(dtype)
    else:
        values = arr.values.to_numpy(zero_copy_only=True)
        values = (values.view(dtype) if values.dtype.itemsize == dtype.itemsize else values).reshape(-1, *rest)
    unit = int(np.prod(rest, dtype=np.int64))
    column = RaggedColumn(values, arr.offsets.to_numpy(zero_copy_only=True), unit, shape, axis,
                          np.asarray(spec["pad"]).astype(dtype), dtype)
    return column if lazy else np.asarray(column)


class _LazyExtras(Mapping):
    """``Features.extras`` of a read entry: each value is rebuilt the first time it is read."""

    def __init__(self, loaders: Mapping[str, Callable[[], Any]]):
        self._loaders = dict(loaders)
        self._values: dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        if key not in self._values:
            self._values[key] = self._loaders[key]()
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._loaders)

    def __len__(self) -> int:
        return len(self._loaders)


def _open(path: Path) -> pa.RecordBatch:
    reader = pa.ipc.open_file(pa.memory_map(str(path)))
    if reader.num_record_batches != 1:
        raise ValueError(f"{reader.num_record_batches} record batches, not 1")
    return reader.get_batch(0)


def _extra_loader(name: str, spec: Mapping[str, Any], rows: pa.RecordBatch, extras_path: Path,
                  opened: dict) -> Callable[[], Any]:
    def side(column: str) -> pa.Array:
        if "batch" not in opened:
            opened["batch"] = _open(extras_path)
        return opened["batch"].column(column)[0].values

    def load():
        kind = spec["kind"]
        if kind == "row":
            return _decode_array(rows.column(f"extra:{name}"), spec["array"], lazy=False)
        if kind == "array":
            if spec["dtype"] == "object":
                return np.asarray(side(name).to_pylist(), dtype=object).reshape(spec["shape"])
            return _numpy(side(name), spec["dtype"]).reshape(spec["shape"])
        if kind == "strings":
            values = side(name).to_pylist()
            return tuple(values) if spec["tuple"] else values
        if kind == "mapping":
            keys = side(f"{name}.keys").to_pylist()
            values = side(f"{name}.values")
            if spec["values"] in ("str", "int"):
                return dict(zip(keys, values.to_pylist()))
            decoded = (json.loads(v) for v in values.to_pylist())
            if spec["values"] == "json_tuple":
                decoded = (tuple(v) for v in decoded)
            return dict(zip(keys, decoded))
        value = spec["value"]
        return tuple(value) if spec["tuple"] else value
    return load


def read(path: Path) -> Features:
    """The entry at ``path``, memory-mapped (module docstring); nothing is copied yet."""
    path = Path(path)
    fix = "delete it and run `stilts-ds prepare` again"
    if not exists(path):
        raise StiltsError(f"{path}: not a stilts-ds feature cache entry (no {ROWS_FILE}); {fix}")
    try:
        rows = _open(path / ROWS_FILE)
        meta = json.loads(rows.schema.metadata[_META_KEY])
    except (pa.ArrowException, OSError, ValueError, KeyError, TypeError) as e:
        raise StiltsError(f"{path}: unreadable feature cache entry ({e}); {fix}") from None
    if meta.get("feature_version") != FEATURE_VERSION:
        raise StiltsError(f"{path}: written by feature version {meta.get('feature_version')}, this stilts-ds reads "
                          f"{FEATURE_VERSION}; {fix}")
    columns = {name: _decode_array(rows.column(f"column:{name}"), spec, lazy=True)
               for name, spec in meta["columns"].items()}
    opened: dict = {}
    extras = _LazyExtras({name: _extra_loader(name, spec, rows, path / EXTRAS_FILE, opened)
                          for name, spec in meta["extras"].items()})
    return Features(meta["format"], columns, StringColumn(rows.column("guid")), extras)

