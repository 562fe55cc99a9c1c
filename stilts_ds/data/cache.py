"""The on-disk feature cache, keyed by (task, split, language, tokenizer, max length).

Training never tokenizes: ``stilts-ds prepare`` writes each featurized split once and every
worker reads it. Entries are written to a temporary file in the same directory and renamed
into place, so a killed ``prepare`` never leaves a half-written entry that a later run
would trust.

    path = cache_path(cache_dir, key)
    feats = read(path) if path.exists() else write(path, build())
"""
from __future__ import annotations

import hashlib
import json
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from stilts_ds import atomic
from stilts_ds.errors import StiltsError
from stilts_ds.tasks.features import Features

# Bump when featurization changes its output for the same inputs: old entries stop matching.
FEATURE_VERSION = 2


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
            f"tok-{self.tokenizer}.data-{self.data}.v{FEATURE_VERSION}.pkl"
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


# What an entry is made of: the Features dataclass and numpy arrays (object arrays hold str).
# The cache may live on shared storage that others write to, and plain unpickling runs
# whatever a file names; anything outside this list is refused instead.
_ENTRY_GLOBALS = frozenset({
    ("stilts_ds.tasks.features", "Features"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    *((f"{core}.multiarray", name) for core in ("numpy.core", "numpy._core") for name in ("_reconstruct", "scalar")),
    *((f"{core}.numeric", "_frombuffer") for core in ("numpy.core", "numpy._core")),
})


class _EntryUnpickler(pickle.Unpickler):
    def __init__(self, file, path: Path):
        super().__init__(file)
        self._path = path

    def find_class(self, module: str, name: str):
        if (module, name) not in _ENTRY_GLOBALS:
            raise StiltsError(f"{self._path}: not a stilts-ds feature cache entry (it names {module}.{name}, which "
                              "an entry never holds; nothing of it was run); delete it and run `stilts-ds prepare` "
                              "again")
        return super().find_class(module, name)


def read(path: Path) -> Features:
    with open(path, "rb") as f:
        feats = _EntryUnpickler(f, Path(path)).load()
    if not isinstance(feats, Features):
        raise StiltsError(f"{path}: not a stilts-ds feature cache entry; delete it and run `stilts-ds prepare` again")
    return feats


def write(path: Path, features: Features) -> Features:
    """Pickle ``features`` to ``path`` atomically (``stilts_ds.atomic.write_atomic``: a
    reader sees the old entry or the whole new one); returns them, so building and caching
    is one expression (module docstring)."""
    atomic.write_atomic(path, pickle.dumps(features, protocol=pickle.HIGHEST_PROTOCOL))
    return features

