"""Training checkpoints on disk: where they are, whether they are whole, whose they are.

A checkpoint is a directory (DeepSpeed's ``<tag>/`` shards and ``latest``, ``rng_state/``)
plus two things written here:

* ``stilts_checkpoint.json`` (rank 0, atomically, before the shards): the study-graph node
  and key of the job that made it (``job.identity``), the flattened config slice behind the
  key, the optimizer step, the world size, the run directory, the DeepSpeed tag;
* ``manifest/rank<r>.json`` (each rank, after its shards): the files that rank wrote, each
  with its size in bytes.

A checkpoint is *intact* when its meta exists, a manifest exists for every rank of its
world size, and every listed file exists with the listed size. That catches a truncated
file and a rank that never finished its save without reading (or hashing) gigabytes.

Where checkpoints live:

* under Ray Train: ``<storage_path>/<run name>/checkpoint_<seq>/`` (the experiment
  directory Ray manages; ``seq`` grows by one per checkpoint of the run), on any storage
  ``pyarrow.fs`` reads (local directories, NFS mounts, ``s3://``, ``gs://``);
* in-process: ``<run_dir>/checkpoints/step<N>/`` (written as ``.step<N>.partial`` and
  renamed when complete; the newest two are kept).

Several stages of a ``StagedJob`` share one Ray run, so one experiment directory holds the
checkpoints of several graph nodes: a stage only ever resumes from its own (same
``identity.node``; without an identity, same run directory).

    checkpoints.candidates(storage_path=..., run_name=...)   # Ray run, newest first
    checkpoints.candidates(run_dir=...)                      # in-process run, newest first
    checkpoints.check_resumable(storage_path, run_name, run_dir, identity)  # driver: raises CheckpointMismatch
    checkpoints.clear(storage_path, run_name, run_dir)       # --force: start over
    checkpoints.problem(candidate)                           # None when intact, else why not
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Iterable

from stilts_ds.atomic import write_atomic
from stilts_ds.errors import StiltsError

META = "stilts_checkpoint.json"
MANIFEST_DIR = "manifest"
LOCAL_DIR = "checkpoints"  # <run_dir>/checkpoints/step<N>
STAGING_DIR = ".staging"  # <run_dir>/.staging/rank<r>: shards on their way to s3:// or gs://
RAY_PREFIX = "checkpoint_"
KEEP = 2  # checkpoints kept per run (Ray: CheckpointConfig(num_to_keep=KEEP))

_SEQ = re.compile(rf"^{RAY_PREFIX}(\d+)$")
_STEP = re.compile(r"^step(\d+)$")
_PARTIAL = re.compile(r"^\.step(\d+)\.partial$")


class CheckpointMismatch(StiltsError):
    """The newest checkpoint of a graph node was made under another configuration (key)."""


@dataclass(frozen=True)
class Candidate:
    """One checkpoint directory: ``fs_path`` on the pyarrow filesystem ``fs``; ``uri`` is what
    messages show (a local path, or ``s3://bucket/...``)."""

    fs: Any  # pyarrow.fs.FileSystem
    fs_path: str
    uri: str

    @property
    def name(self) -> str:
        return PurePosixPath(self.fs_path).name

    @property
    def is_local(self) -> bool:
        import pyarrow.fs

        return isinstance(self.fs, pyarrow.fs.LocalFileSystem)


@dataclass(frozen=True)
class Skipped:
    """A checkpoint passed over on restore, and why (the file and what is wrong with it)."""

    path: str
    why: str

    def as_dict(self) -> dict:
        return {"path": self.path, "why": self.why}

    def __str__(self) -> str:
        return f"checkpoint {self.path} skipped: {self.why}"


# ------------------------------------------------------------------------- where they are


def _uri(fs, fs_path: str) -> str:
    import pyarrow.fs

    if isinstance(fs, pyarrow.fs.LocalFileSystem) or "::" in fs.type_name:  # local, or a Python-defined one
        return fs_path
    scheme = {"s3": "s3", "gcs": "gs"}.get(fs.type_name, fs.type_name)
    return f"{scheme}://{fs_path}"


def storage_location(storage_path: str, filesystem=None) -> tuple[Any, str]:
    """(pyarrow filesystem, path on it) of a Ray storage path or URI; a plain path is made
    absolute (as Ray does when it resolves ``RunConfig.storage_path`` on the driver). With
    ``filesystem`` (``RunConfig.storage_filesystem``) the path is a path on it."""
    import pyarrow.fs

    storage_path = str(storage_path)
    if filesystem is not None:
        return filesystem, storage_path
    if "://" not in storage_path:
        return pyarrow.fs.LocalFileSystem(), os.path.abspath(os.path.expanduser(storage_path))
    return pyarrow.fs.FileSystem.from_uri(storage_path)


def experiment_location(storage_path: str, run_name: str, filesystem=None) -> tuple[Any, str]:
    """Where Ray Train V2 keeps the run ``run_name``: ``<storage_path>/<run_name>``."""
    fs, base = storage_location(storage_path, filesystem)
    return fs, PurePosixPath(base, run_name).as_posix()


def _dirs(fs, path: str) -> list[tuple[str, str]]:
    import pyarrow.fs

    try:
        infos = fs.get_file_info(pyarrow.fs.FileSelector(path, allow_not_found=True))
    except FileNotFoundError:
        return []
    return [(i.base_name, i.path) for i in infos if i.type == pyarrow.fs.FileType.Directory]


def ray_checkpoints(fs, experiment_path: str) -> list[Candidate]:
    """The ``checkpoint_<seq>`` directories of a Ray experiment directory, newest first."""
    found = []
    for name, path in _dirs(fs, experiment_path):
        m = _SEQ.match(name)
        if m:
            found.append((int(m.group(1)), Candidate(fs, path, _uri(fs, path))))
    return [c for _, c in sorted(found, key=lambda t: -t[0])]


def next_ray_name(fs, experiment_path: str, after: int = 0) -> tuple[str, int]:
    """A fresh checkpoint directory name for the run (one more than any there, and than
    ``after``), and its sequence number."""
    seqs = [int(m.group(1)) for name, _ in _dirs(fs, experiment_path) if (m := _SEQ.match(name))]
    seq = max([after, *seqs]) + 1
    return f"{RAY_PREFIX}{seq:06d}", seq


def local_checkpoints(run_dir) -> list[Candidate]:
    """``<run_dir>/checkpoints/step<N>``, newest (highest step) first."""
    import pyarrow.fs

    root = Path(run_dir) / LOCAL_DIR
    if not root.is_dir():
        return []
    fs = pyarrow.fs.LocalFileSystem()
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _STEP.match(p.name))]
    return [Candidate(fs, str(p), str(p)) for _, p in sorted(found, key=lambda t: -t[0])]


def candidates(*, storage_path: str | None = None, run_name: str | None = None,
               run_dir=None, filesystem=None) -> list[Candidate]:
    """Checkpoints newest first: of the Ray run (``storage_path`` and ``run_name``; its
    ``filesystem`` if RunConfig names one) or of the in-process run in ``run_dir``; given
    both, the Ray run's come first."""
    out: list[Candidate] = []
    if storage_path is not None and run_name is not None:
        out += ray_checkpoints(*experiment_location(storage_path, run_name, filesystem))
    if run_dir is not None:
        out += local_checkpoints(run_dir)
    return out


# ----------------------------------------------------------------------- what is in them


def _read_json(fs, path: str) -> dict | None:
    try:
        with fs.open_input_stream(path) as f:
            return json.loads(f.read().decode("utf-8"))
    except (FileNotFoundError, OSError, ValueError):
        return None


def read_meta(c: Candidate) -> dict | None:
    """The checkpoint's ``stilts_checkpoint.json``, or None (absent or unreadable)."""
    return _read_json(c.fs, f"{c.fs_path}/{META}")


def problem(c: Candidate, meta: dict | None = None) -> str | None:
    """None when ``c`` is intact; else what is wrong, naming the file."""
    import pyarrow.fs

    meta = meta if meta is not None else read_meta(c)
    if meta is None:
        return f"{c.uri}/{META} is missing or unreadable (the save did not finish)"
    try:
        infos = c.fs.get_file_info(pyarrow.fs.FileSelector(c.fs_path, recursive=True, allow_not_found=True))
    except OSError as e:
        return f"{c.uri} cannot be listed: {e}"
    prefix = c.fs_path.rstrip("/") + "/"
    sizes = {i.path[len(prefix):]: i.size for i in infos
             if i.type == pyarrow.fs.FileType.File and i.path.startswith(prefix)}
    world = int(meta.get("world_size", 1))
    for rank in range(world):
        rel = f"{MANIFEST_DIR}/rank{rank}.json"
        manifest = _read_json(c.fs, f"{c.fs_path}/{rel}") if rel in sizes else None
        if manifest is None:
            return f"{c.uri}/{rel} is missing or unreadable (rank {rank} did not finish its save)"
        for entry in manifest.get("files", []):
            rel_file, expected = entry["path"], int(entry["size"])
            actual = sizes.get(rel_file)
            if actual is None:
                return f"{c.uri}/{rel_file} is missing (listed by rank {rank})"
            if actual != expected:
                how = "truncated" if actual < expected else "changed since it was written"
                return f"{c.uri}/{rel_file} is {actual} bytes, {expected} expected ({how})"
    return None


def belongs_to(meta: dict | None, identity, run_dir) -> bool:
    """Whether a checkpoint's meta names this job: the same graph node (with an identity),
    else the same run directory."""
    if meta is None:
        return False
    if identity is not None:
        return meta.get("node") == identity.node
    return meta.get("node") is None and str(meta.get("run_dir")) == str(run_dir)


def config_changes(old: dict, new: dict, limit: int = 20) -> list[str]:
    """``key: old -> new`` for each dotted config key that differs (``<unset>`` where one side
    lacks it), sorted."""
    lines = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, "<unset>"), new.get(key, "<unset>")
        if a != b:
            lines.append(f"{key}: {json.dumps(a) if not isinstance(a, str) else a} -> "
                         f"{json.dumps(b) if not isinstance(b, str) else b}")
    if len(lines) > limit:
        lines = lines[:limit] + [f"... and {len(lines) - limit} more"]
    return lines


def mismatch_message(c: Candidate, meta: dict, identity) -> str:
    changes = config_changes(meta.get("config") or {}, identity.config)
    what = ("\n  " + "\n  ".join(changes)) if changes else (
        f" (key {str(meta.get('key'))[:12]} -> {identity.key[:12]}: the config slice is the same, so "
        "the data or an upstream stage changed)")
    return (f"{c.uri} is a checkpoint of {identity.node} (step {meta.get('step')}) made under another "
            f"configuration; resuming it would mix two experiments. Changed:{what}\n"
            "Rerun with --force to delete its checkpoints and start over, or change output_dir.")


def newest_own(cands: Iterable[Candidate], identity, run_dir) -> tuple[Candidate, dict] | None:
    """The newest checkpoint (with a readable meta) that belongs to this job, and its meta."""
    for c in cands:
        meta = read_meta(c)
        if belongs_to(meta, identity, run_dir):
            return c, meta
    return None


def check_resumable(storage_path: str | None, run_name: str | None, run_dir, identity,
                    filesystem=None) -> Candidate | None:
    """On the driver, before launching: raise CheckpointMismatch when the newest checkpoint of
    this node (in the Ray run, or in ``run_dir`` for in-process runs) has another key. Returns
    the newest own checkpoint (the run will resume from it, or from an older one if it is not
    intact), or None. Checkpoints of other nodes sharing the run are not a mismatch."""
    if identity is None:
        return None
    newest = None
    for group in (candidates(storage_path=storage_path, run_name=run_name, filesystem=filesystem)
                  if storage_path and run_name else [],
                  candidates(run_dir=run_dir) if run_dir is not None else []):
        found = newest_own(group, identity, run_dir)
        if found is None:
            continue
        c, meta = found
        if meta.get("key") != identity.key:
            raise CheckpointMismatch(mismatch_message(c, meta, identity))
        newest = newest or c
    return newest


def clear(storage_path: str | None, run_name: str | None, run_dir, filesystem=None) -> list[str]:
    """Delete a run's checkpoints so that it starts over: the whole Ray run directory
    ``<storage_path>/<run_name>`` (local or s3:// / gs://; Ray's own record of the run's
    checkpoints lives there too, and it refuses a run whose record names deleted checkpoints,
    so the directory goes as a whole: every stage of a staged run), and ``run_dir``'s
    in-process checkpoints and staging area. Returns what was deleted."""
    import pyarrow.fs

    gone = []
    if storage_path and run_name:
        fs, path = experiment_location(storage_path, run_name, filesystem)
        if fs.get_file_info(path).type != pyarrow.fs.FileType.NotFound:
            fs.delete_dir(path)
            gone.append(_uri(fs, path))
    if run_dir is not None:
        for name in (LOCAL_DIR, STAGING_DIR, "checkpoint"):  # "checkpoint": the layout before this module
            p = Path(run_dir) / name
            if p.exists():
                shutil.rmtree(p)
                gone.append(str(p))
    return gone


def job_stages(job) -> list:
    """The jobs that run (and checkpoint) in a launch: a StagedJob's stages, else the job."""
    return list(getattr(job, "stages", None) or [job])


def check_job(job, storage_path: str | None, run_name: str | None, filesystem=None) -> None:
    """check_resumable for each stage of ``job`` (launch calls it)."""
    for stage in job_stages(job):
        check_resumable(storage_path, run_name, stage.run_dir, getattr(stage, "identity", None), filesystem)


def clear_job(job, storage_path: str | None, run_name: str | None, filesystem=None) -> list[str]:
    """clear for the Ray run and each stage's run directory (launch(force=True) calls it)."""
    gone = []
    for i, stage in enumerate(job_stages(job)):
        gone += clear(storage_path if i == 0 else None, run_name, stage.run_dir, filesystem)
    return gone


# ------------------------------------------------------------------------- writing them


def write_meta(ckpt_dir, *, identity, step: int, world_size: int, run_dir, tag: str) -> Path:
    meta = {"node": identity.node if identity else None, "key": identity.key if identity else None,
            "config": identity.config if identity else {}, "step": int(step), "world_size": int(world_size),
            "run_dir": str(run_dir), "tag": tag, "created": time.time()}
    return write_atomic(Path(ckpt_dir) / META, json.dumps(meta, indent=2, sort_keys=True))


def files_under(ckpt_dir) -> list[str]:
    """Every file under ``ckpt_dir`` (relative, POSIX), but the meta and the manifests."""
    root = Path(ckpt_dir)
    out = []
    for dirpath, _, names in os.walk(root):
        for name in names:
            rel = (Path(dirpath) / name).relative_to(root).as_posix()
            if rel != META and not rel.startswith(f"{MANIFEST_DIR}/"):
                out.append(rel)
    return sorted(out)


def write_manifest(ckpt_dir, rank: int, files: Iterable[str]) -> Path:
    """``manifest/rank<r>.json``: the files (relative to ``ckpt_dir``) rank ``rank`` wrote, with
    their sizes now."""
    root = Path(ckpt_dir)
    entries = [{"path": rel, "size": (root / rel).stat().st_size} for rel in sorted(set(files))]
    return write_atomic(root / MANIFEST_DIR / f"rank{rank}.json",
                        json.dumps({"rank": rank, "files": entries}, indent=1))


# --------------------------------------------------------------- in-process checkpoints


def local_partial(run_dir, step: int) -> Path:
    return Path(run_dir) / LOCAL_DIR / f".step{step}.partial"


def local_final(run_dir, step: int) -> Path:
    return Path(run_dir) / LOCAL_DIR / f"step{step}"


def clear_partials(run_dir) -> None:
    root = Path(run_dir) / LOCAL_DIR
    if root.is_dir():
        for p in root.iterdir():
            if _PARTIAL.match(p.name) or p.name.startswith(".step") and ".old-" in p.name:
                shutil.rmtree(p, ignore_errors=True)


def commit_local(run_dir, step: int, keep: int = KEEP) -> Path:
    """``.step<N>.partial`` becomes ``step<N>`` (replacing one there: a checkpoint of that step
    that could not be restored); then only the newest ``keep`` are kept."""
    partial, final = local_partial(run_dir, step), local_final(run_dir, step)
    if final.exists():
        old = final.with_name(f".step{step}.old-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        os.rename(final, old)
        os.rename(partial, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(partial, final)
    for c in local_checkpoints(run_dir)[keep:]:
        shutil.rmtree(c.fs_path, ignore_errors=True)
    return final
