"""Benchmark: the Arrow feature cache against the pickle it replaced, at paper scale.

Run (from the repository root)::

    .venv/bin/python tools/bench_feature_cache.py                      # ~2.3M rows, 4 readers
    .venv/bin/python tools/bench_feature_cache.py --rows 200000 --readers 2   # a quick look

It builds a seeded synthetic copy of phase 1's "all nine tasks at once" training mixture
(the nine intermediate tasks at their published sizes, ``stilts_ds.tasks.sizes``, scaled to
``--rows`` feature rows; default 2.3M, what the paper's multi-task arm trains on), with each
format's columns and extras as ``featurize`` makes them and token lengths drawn per task
(NLI and QQP pairs short, span-QA windows long with some full, multiple choice 4-5 choices,
CCG sentences). The same tables are written twice: as the old cache did (one pickle per task,
token columns padded to max_length) and as ``stilts_ds.data.cache`` does now (Arrow, ragged,
memory-mapped). Then, for each layout, ``--readers`` processes start together, as the
training workers of one node do, and each:

* imports ``ray.train`` as a training worker has (and, for Arrow, makes pyarrow's one-time
  start, reported on its own line), then loads every task's entry (what ``train_worker`` does) and reports the load time and its
  RSS growth (after minus before the load), split into private memory (RssAnon) and mapped
  file pages (RssFile: page cache that the workers of a node share);
* serves ``--batches`` training batches of 32 rows from the mixture through each format's
  ``collate``, twice (the first pass faults pages in from a cold cache: every layout's page
  cache is dropped before its readers start), with the time per batch and the RSS growth
  after them.

It prints bytes on disk, per-reader load time, RSS growth and per-batch times for both, and
the ratios Arrow/pickle, with PASS/FAIL against the target: RSS growth and bytes on disk at
most a quarter of the pickle's, load under a second. If ``readers x`` the pickle's size does
not fit in 80% of available memory, the pickle readers run one after another (each one's
growth is its own private copy either way) and the output says so. Exit code 1 on a FAIL.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stilts_ds.data import cache  # noqa: E402
from stilts_ds.tasks.features import Features  # noqa: E402
from stilts_ds.tasks.formats import format_of  # noqa: E402
from stilts_ds.tasks.sizes import SIZES  # noqa: E402

# The nine intermediate tasks: (format, max length, choices, median tokens, spread (lognormal sigma)).
MIXTURE = {
    "anli_plus": ("pair_classification", 256, 0, 48, 0.45),
    "mnli": ("pair_classification", 256, 0, 42, 0.45),
    "qqp": ("pair_classification", 256, 0, 30, 0.45),
    "squad_v1": ("span_qa", 384, 0, 200, 0.45),
    "squad_v2": ("span_qa", 384, 0, 200, 0.45),
    "hellaswag": ("multiple_choice", 256, 4, 70, 0.3),
    "cosmosqa": ("multiple_choice", 256, 4, 110, 0.35),
    "commonsenseqa": ("multiple_choice", 256, 5, 25, 0.3),
    "ccg": ("tagging", 256, 0, 32, 0.5),
}
VOCAB = 250_002  # XLM-R's
BATCH = 32


def _lengths(rng, n: int, median: int, sigma: float, width: int) -> np.ndarray:
    return np.clip(np.rint(rng.lognormal(np.log(median), sigma, n)), 4, width).astype(np.int32)


def synthetic(task: str, n: int, seed: int) -> Features:
    """One task's table as its format's featurize returns it (padded, with its extras)."""
    fmt, width, choices, median, sigma = MIXTURE[task]
    rng = np.random.default_rng(seed)
    lengths = _lengths(rng, n, median, sigma, width)
    guids = np.array([f"{task}-train-{i}" for i in range(n)], dtype=object)
    shape = (n, choices, width) if choices else (n, width)
    real = np.arange(width) < lengths[:, None]
    if choices:  # each choice as long as the longest or a bit shorter
        per_choice = np.minimum(lengths[:, None], _lengths(rng, n * choices, median, sigma, width).reshape(n, choices))
        per_choice[:, 0] = lengths
        real = np.arange(width)[None, None, :] < per_choice[:, :, None]
    ids = np.where(real, rng.integers(5, VOCAB, size=shape, dtype=np.int32), 1).astype(np.int32)
    columns = {"input_ids": ids, "attention_mask": real.astype(np.int8), "lengths": lengths}
    extras: dict = {}
    if fmt == "pair_classification":
        columns["labels"] = rng.integers(0, 3, n).astype(np.int64)
        extras = {"label_names": ("entailment", "neutral", "contradiction"),
                  "references": {str(g): "neutral" for g in guids}}
    elif fmt == "multiple_choice":
        columns["labels"] = rng.integers(0, choices, n).astype(np.int64)
        extras = {"num_choices": choices, "references": {str(g): 0 for g in guids}}
    elif fmt == "tagging":
        columns["labels"] = np.where(real, rng.integers(0, 400, size=shape), -100).astype(np.int64)
        columns["word_index"] = np.where(real, np.arange(width)[None, :], -1).astype(np.int32)
        extras = {"label_names": tuple(f"T{i}" for i in range(400)),
                  "num_words": {str(g): int(l) for g, l in zip(guids, lengths)},
                  "references": {str(g): ["T1"] * int(l) for g, l in zip(guids, lengths)}}
    else:  # span QA: offsets per token, a context and references per question
        columns["start_positions"] = rng.integers(0, 200, n).astype(np.int64)
        columns["end_positions"] = columns["start_positions"] + 3
        offsets = np.full((n, width, 2), -1, dtype=np.int32)
        context_tokens = real & (np.arange(width) > 20)
        offsets[context_tokens] = np.arange(2, dtype=np.int32)
        questions = [str(g) for g in guids]  # one window each: a lower bound on what the pickle held
        text = " ".join(["lorem ipsum dolor sit amet"] * 28)  # ~750 characters, a SQuAD paragraph
        extras = {"offsets": offsets, "contexts": {q: text for q in questions}, "example_guids": questions,
                  "version_2_with_negative": task == "squad_v2",
                  "references": {q: ["ipsum"] for q in questions}}
    return Features(fmt, columns, guids, extras)


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _rss() -> dict[str, int]:
    return {"anon": _status("RssAnon"), "file": _status("RssFile")}


def reader(kind: str, entries: dict[str, str], batches: int, seed: int) -> dict:
    """One worker: load every task, then serve training batches from the mixture, twice
    (the first pass faults the mapped pages in from a cold cache, the second finds most)."""
    out: dict = {}
    import ray.train  # noqa: F401  # what a training worker has imported (it brings pandas, which pyarrow uses)

    if kind == "arrow":  # pyarrow's one-time start in a process (memory pool, kernels): its own line
        import pyarrow as pa

        start, before = time.perf_counter(), _rss()
        pa.array([0])
        out["pyarrow_start_s"] = time.perf_counter() - start
        out["pyarrow_start_anon"] = _rss()["anon"] - before["anon"]
    gc.collect()
    before = _rss()
    start = time.perf_counter()
    if kind == "pickle":
        feats = {}
        for task, path in entries.items():
            with open(path, "rb") as f:
                feats[task] = pickle.load(f)
    else:
        feats = {task: cache.read(Path(path)) for task, path in entries.items()}
    out["load_s"] = time.perf_counter() - start
    loaded = _rss()
    out.update(anon_load=loaded["anon"] - before["anon"], file_load=loaded["file"] - before["file"])
    rng = np.random.default_rng(seed)
    names = list(feats)
    sizes = np.array([len(feats[t]) for t in names], dtype=np.float64)
    fmts = {t: format_of(feats[t].format) for t in names}
    for name in ("cold", "warm"):
        start = time.perf_counter()
        for _ in range(batches):
            task = names[rng.choice(len(names), p=sizes / sizes.sum())]
            fmts[task].collate(feats[task], rng.integers(0, len(feats[task]), BATCH))
        out[f"batch_ms_{name}"] = (time.perf_counter() - start) / max(batches, 1) * 1e3
    end = _rss()
    out.update(anon_batches=end["anon"] - before["anon"], file_batches=end["file"] - before["file"],
               rows=int(sizes.sum()))
    return out


def _spawn(kind: str, entries: dict, batches: int, seed: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, "--as-reader", kind, "--batches", str(batches), "--seed",
                             str(seed), "--entries", json.dumps(entries)], stdout=subprocess.PIPE, text=True)


def run_readers(kind: str, entries: dict, n: int, batches: int, together: bool) -> list[dict]:
    if together:
        procs = [_spawn(kind, entries, batches, seed) for seed in range(n)]
        outs = [p.communicate()[0] for p in procs]
    else:
        outs = [_spawn(kind, entries, batches, seed).communicate()[0] for seed in range(n)]
    return [json.loads(o.strip().splitlines()[-1]) for o in outs]


def _du(paths) -> int:
    total = 0
    for p in map(Path, paths):
        total += sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else p.stat().st_size
    return total


def _available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def _drop_page_cache(paths) -> None:
    """Ask the kernel to forget the files' pages (posix_fadvise DONTNEED), so each layout's
    readers start cold, as after a fresh prepare on another node."""
    for p in map(Path, paths):
        for f in (p.rglob("*") if p.is_dir() else [p]):
            if f.is_file():
                fd = os.open(f, os.O_RDONLY)
                try:
                    os.fsync(fd)
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                finally:
                    os.close(fd)


def gib(n: float) -> str:
    return f"{n / 2**30:8.2f} GiB" if abs(n) >= 2**28 else f"{n / 2**20:8.1f} MiB"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=2_300_000, help="feature rows of the whole mixture")
    ap.add_argument("--readers", type=int, default=4)
    ap.add_argument("--batches", type=int, default=300)
    ap.add_argument("--workdir", type=Path, default=None, help="where to write both layouts (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the written entries")
    ap.add_argument("--as-reader", choices=("pickle", "arrow"), help=argparse.SUPPRESS)
    ap.add_argument("--entries", help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.as_reader:
        print(json.dumps(reader(args.as_reader, json.loads(args.entries), args.batches, args.seed)))
        return 0

    published = {t: SIZES[t]["train"] for t in MIXTURE}
    scale = args.rows / sum(published.values())
    counts = {t: max(BATCH, round(n * scale)) for t, n in published.items()}
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-feature-cache-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"mixture: {sum(counts.values()):,} rows over {len(counts)} tasks "
          f"({', '.join(f'{t} {n:,}' for t, n in counts.items())}); workdir {work}", flush=True)
    pickles, arrows = {}, {}
    t0 = time.perf_counter()
    for i, (task, n) in enumerate(counts.items()):
        feats = synthetic(task, n, seed=i)
        pickles[task] = str(work / f"{task}.pkl")
        with open(pickles[task], "wb") as f:
            pickle.dump(feats, f, protocol=pickle.HIGHEST_PROTOCOL)
        arrows[task] = str(work / f"{task}.features")
        cache.write(Path(arrows[task]), feats)
        del feats
        gc.collect()
        print(f"  wrote {task} ({n:,} rows) in both layouts, {time.perf_counter() - t0:.0f} s so far", flush=True)
    disk = {"pickle": _du(pickles.values()), "arrow": _du(arrows.values())}

    results = {}
    for kind, entries in (("pickle", pickles), ("arrow", arrows)):
        _drop_page_cache(entries.values())
        together = kind == "arrow" or args.readers * disk["pickle"] * 1.3 < 0.8 * _available()
        print(f"{kind}: {args.readers} readers {'together' if together else 'one after another (memory)'}",
              flush=True)
        results[kind] = run_readers(kind, entries, args.readers, args.batches, together)
        results[kind + "_together"] = together

    def worst(kind: str, key: str) -> float:
        return max(r[key] for r in results[kind])

    width = 36
    print(f"\n{'':{width}}{'pickle':>14}{'arrow':>14}{'arrow/pickle':>14}")
    seconds, millis = (lambda v: f"{v:11.3f} s"), (lambda v: f"{v:10.3f} ms")
    rows = [("bytes on disk", disk["pickle"], disk["arrow"], gib),
            ("load, slowest reader", worst("pickle", "load_s"), worst("arrow", "load_s"), seconds),
            ("RSS growth after load", worst("pickle", "anon_load") + worst("pickle", "file_load"),
             worst("arrow", "anon_load") + worst("arrow", "file_load"), gib),
            ("  private (RssAnon)", worst("pickle", "anon_load"), worst("arrow", "anon_load"), gib),
            ("  mapped file pages (RssFile)", worst("pickle", "file_load"), worst("arrow", "file_load"), gib),
            (f"RSS growth after 2x{args.batches} batches", worst("pickle", "anon_batches") + worst("pickle", "file_batches"),
             worst("arrow", "anon_batches") + worst("arrow", "file_batches"), gib),
            ("  private (RssAnon)", worst("pickle", "anon_batches"), worst("arrow", "anon_batches"), gib),
            ("  mapped file pages (RssFile, shared)", worst("pickle", "file_batches"), worst("arrow", "file_batches"),
             gib),
            ("ms per batch of 32, cold pages", worst("pickle", "batch_ms_cold"), worst("arrow", "batch_ms_cold"), millis),
            ("ms per batch of 32, second pass", worst("pickle", "batch_ms_warm"), worst("arrow", "batch_ms_warm"),
             millis)]
    for name, p, a, fmt in rows:
        print(f"{name:{width}}{fmt(p):>14}{fmt(a):>14}{a / p if p else float('nan'):>14.3f}")
    print(f"(each reader first imports ray.train, as a training worker has; the arrow readers then paid "
          f"pyarrow's one-time start, up to {worst('arrow', 'pyarrow_start_s'):.3f} s and "
          f"{gib(worst('arrow', 'pyarrow_start_anon')).strip()}, not counted above)")
    if not results["pickle_together"]:
        print("(pickle readers ran one after another: together they would not fit in memory)")
    growth = {k: worst(k, "anon_load") + worst(k, "file_load") for k in ("pickle", "arrow")}
    checks = [("RSS growth after load <= 1/4 of pickle's", growth["arrow"] <= growth["pickle"] / 4),
              ("bytes on disk <= 1/4 of pickle's", disk["arrow"] <= disk["pickle"] / 4),
              ("load < 1 s", worst("arrow", "load_s") < 1.0)]
    for name, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    if not args.keep and args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
