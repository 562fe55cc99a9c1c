"""Atomic file writes: a reader, or a crash, sees the old file or the new one, never half.

    write_atomic(path, text_or_bytes)
    with atomic_directory(out_dir, overwrite=True) as tmp:   # fill tmp; it becomes out_dir
        ...

The data goes to a temporary file in the target's directory (os.replace is a rename only
within one filesystem), is fsynced, then renamed over the target. On any failure or
interruption the temporary file is removed and the previous file is left untouched.
Caches, checkpoints' side files, merged configs and reports all go through here; model
exports, feature-cache entries and TensorBoard report directories go through
``atomic_directory``.

A full disk is reported as ``DiskFullError``, naming the path, the free space left on its
filesystem and what to do, instead of ``OSError [Errno 28]`` from deep inside a library
(``explains_full_disk`` does the same for writes made by others: DeepSpeed's checkpoints,
Ray's uploads).
"""
from __future__ import annotations

import errno
import os
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path

from stilts_ds.errors import StiltsError


class DirectoryExistsError(StiltsError, FileExistsError):
    pass


class DiskFullError(StiltsError, OSError):
    pass


_FULL = (errno.ENOSPC, errno.EDQUOT)


def _is_full(err: BaseException) -> bool:
    if isinstance(err, OSError) and err.errno in _FULL:
        return True
    if isinstance(err, shutil.Error):  # copytree gathers (src, dst, why) per file
        return any(any(f"[Errno {e}]" in str(part) for e in _FULL) for entry in err.args[0] for part in entry)
    # pyarrow and some C extensions raise a plain OSError whose text carries the strerror
    return isinstance(err, OSError) and "No space left on device" in str(err)


def _free_space(path: Path) -> str:
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        usage = shutil.disk_usage(probe)
    except OSError:
        return "free space unknown"
    return f"{_size(usage.free)} free of {_size(usage.total)} on its filesystem"


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return ""


@contextmanager
def explains_full_disk(path: str | os.PathLike, needed: int | None = None):
    """Re-raise a full-disk error from the block as ``DiskFullError`` naming ``path``."""
    try:
        yield
    except DiskFullError:
        raise
    except (OSError, shutil.Error) as err:
        if not _is_full(err):
            raise
        path = Path(path)
        need = f"; this write needed {_size(needed)}" if needed else ""
        raise DiskFullError(f"{path}: no space left on the device ({_free_space(path)}{need}). Free space there, or point the setting that chose this path (cache_dir, "
                            "output_dir, --output, storage) at a larger filesystem, then run the command again"
                            ) from None


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def write_atomic(path: str | os.PathLike, data: str | bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    with explains_full_disk(path, len(payload)):
        return _write_atomic(path, payload)


def _write_atomic(path: Path, payload: bytes) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes the file owner-only; give it the mode a plain open() would (umask).
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _fsync_tree(root: Path) -> None:
    # Rename only makes the export atomic if its files are on disk before the rename: a
    # crash just after it must not leave a complete-looking directory of empty files.
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            with open(os.path.join(dirpath, name), "rb") as f:
                os.fsync(f.fileno())
    fsync_dir(root)


def fsync_dir(path: Path) -> None:
    """Make renames inside ``path`` durable (a crash after them keeps them)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # platforms that cannot open a directory
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_directory(out_dir: str | os.PathLike, overwrite: bool = False):
    """Yield a temporary directory beside ``out_dir``; on success it becomes ``out_dir``.

    On an exception the temporary directory is removed and ``out_dir`` is untouched. With
    ``overwrite`` an existing ``out_dir`` is swapped out (renamed aside, the new one renamed
    in, the old one deleted) and restored if the swap fails.
    """
    out_dir = Path(out_dir)
    with explains_full_disk(out_dir):
        with _atomic_directory(out_dir, overwrite) as tmp:
            yield tmp


@contextmanager
def _atomic_directory(out_dir: Path, overwrite: bool):
    parent = out_dir.parent
    parent.mkdir(parents=True, exist_ok=True)
    if out_dir.exists() and not overwrite:
        raise DirectoryExistsError(f"{out_dir} already exists; remove it or pass overwrite=True")
    # Same parent directory, hence the same filesystem: os.replace/rename is atomic there.
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=parent))
    # mkdtemp makes it owner-only; a TensorBoard server or a colleague must read the result.
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        _fsync_tree(tmp)
        if out_dir.exists():
            if not overwrite:
                raise DirectoryExistsError(f"{out_dir} appeared while it was being written; not replacing it")
            old = parent / f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(out_dir, old)
            try:
                os.rename(tmp, out_dir)
            except BaseException:
                os.rename(old, out_dir)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out_dir)
        fsync_dir(parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
