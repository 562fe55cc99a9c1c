"""Benchmark: length-grouped micro-batches against random ones in the real training loop.

    .venv/bin/python tools/bench_length_grouped.py                        # CPU: tiny preset, fp32 (about a minute)
    .venv/bin/python tools/bench_length_grouped.py --preset xlmr-large --precision bf16 --steps 200   # a GPU

Builds one table of synthetic sequence-classification rows whose lengths are long-tailed like
sentences (log-normal, median ``--median-length``, spread ``--sigma``, clipped to
[``--min-length``, ``--max-length``]; the same recipe as ``inference.timing.Workload.synthetic``)
and trains it twice with the real per-worker loop (``engine.worker.train_worker``, run
in-process at world size 1 as ``tools/bench_train_throughput.py`` does): once with random
batches and once with ``Optim(group_by_length=True)`` (``data.sampler.RowBatcher``). Both runs
have the same seed, model, rows and steps: the table holds exactly the rows the run trains
(``--warmup`` + ``--steps`` optimizer steps of ``--micro-batch x --grad-accum`` rows, one epoch),
so each run sees every row once, only in another order.

Printed per run, from the worker's own accounting:

- padding share: padding tokens / tokens computed (collation trims each micro-batch to its
  longest row; the rest of every shorter row is padding), over all steps;
- useful tokens/s: non-padding tokens over the time inside forward + backward + optimizer
  step (the worker's meter, logged every step), the first ``--warmup`` steps left out;

and the ratio grouped / random of useful tokens/s, measured in this one run. The two runs
alternate ``--rounds`` times (random, grouped, random, grouped, ...) and each reports its
best round (timeit's rule: the least disturbed); the padding share is the same every round
(same seed). ``--threads`` (default 1) sets torch's CPU threads: on a shared machine two
threads that wait on each other made single steps up to 100 times slower, one thread keeps
the timings steady (0: torch's default; a GPU run does not care).

On the tiny CPU model a step's fixed cost (optimizer, Python) weighs more than on a large
model, so the speed-up there is not what fewer padded tokens give a compute-bound GPU; the
padding share carries over as it is.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from stilts_ds.data import cache
from stilts_ds.engine import ds_config as dsc
from stilts_ds.engine.job import Head, Optim, TaskInput, TrainJob
from stilts_ds.engine.launch import launch
from stilts_ds.inference.timing import Workload
from stilts_ds.tasks.features import Features

VOCAB = 3001  # the bundled tokenizer's size: ids below it fit the tiny preset's embeddings (and XLM-R's)


def long_tailed_features(n_rows: int, *, max_length: int, median: int, sigma: float, min_length: int,
                         seed: int = 0) -> Features:
    """Pair-classification rows of random tokens with log-normal lengths (the bench's
    ``Workload.synthetic`` rows) and random labels."""
    rows = Workload.synthetic(n_rows, VOCAB, max_length, seed=seed, distribution="lognormal", median_length=median,
                              sigma=sigma, min_length=min_length).features
    labels = np.random.default_rng(seed).integers(0, 3, n_rows).astype(np.int64)
    return Features(format=rows.format, columns={**rows.columns, "labels": labels}, guids=rows.guids,
                    extras={"label_names": ("a", "b", "c"), "references": {}})


def per_step(metrics_jsonl: Path) -> dict[int, dict[str, float]]:
    """{step: {tag: value}} of the worker's throughput figures (logged every step)."""
    out: dict[int, dict[str, float]] = {}
    for line in metrics_jsonl.read_text().splitlines():
        row = json.loads(line)
        if row["tag"] in ("train/tokens_per_s", "train/samples_per_s"):
            out.setdefault(int(row["step"]), {})[row["tag"]] = float(row["value"])
    return out


def train_once(tmp: Path, name: str, feats_path: Path, args, *, group_by_length: bool) -> dict:
    """One in-process training run; its padding share and useful tokens/s."""
    total = args.warmup + args.steps
    run_dir = tmp / name
    ds = dsc.merge_ds_config(args.ds_base, micro_batch=args.micro_batch, grad_accum=args.grad_accum, world_size=1,
                             lr=1e-5, warmup_ratio=0.0, total_steps=total, precision=args.precision)
    job = TrainJob(phase="bench", run_dir=str(run_dir), export_dir=str(run_dir / "export"), encoder=args.preset,
                   tokenizer="bundled", head_dropout=0.1,
                   tasks=(TaskInput("synthetic", Head("pair_classification", 3), train=str(feats_path)),),
                   optim=Optim(seed=args.seed, lr=1e-5, weight_decay=0.01, sampling="uniform", temperature=1.0,
                               group_by_length=group_by_length),
                   ds_config_json=json.dumps(ds), total_steps=total, log_every=1, checkpoint_every=10**9,
                   eval_every=None, eval_batch=1, export=False)
    launch(job, {"num_workers": 1}, name=name, storage_path=str(run_dir / "ray"), in_process=True)
    summary = json.loads((run_dir / "train_summary.json").read_text())
    loop = summary["loop"]
    # Every step trains micro-batch x accumulation samples: a step's seconds are those over its
    # samples/s, and its real tokens its tokens/s times those seconds.
    samples = args.micro_batch * args.grad_accum
    rates = per_step(run_dir / "tensorboard" / "metrics.jsonl")
    timed = [rates[s] for s in sorted(rates) if s > args.warmup]
    if len(timed) != args.steps:
        raise SystemExit(f"{name}: expected {args.steps} timed steps, the run logged {len(timed)}")
    seconds = [samples / r["train/samples_per_s"] for r in timed]
    useful = sum(r["train/tokens_per_s"] * s for r, s in zip(timed, seconds))
    return {"padding_share": 1 - loop["tokens"] / loop["tokens_computed"], "tokens": loop["tokens"],
            "tokens_computed": loop["tokens_computed"], "useful_tokens_per_s": useful / sum(seconds),
            "step_ms": 1e3 * sum(seconds) / len(seconds), "group_by_length": summary["group_by_length"]}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--ds-base", default="zero2")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16"])
    ap.add_argument("--micro-batch", type=int, default=32)
    ap.add_argument("--grad-accum", type=int, default=1)
    ap.add_argument("--steps", type=int, default=100, help="optimizer steps timed (after --warmup)")
    ap.add_argument("--warmup", type=int, default=5, help="optimizer steps run first and not timed")
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--median-length", type=int, default=40)
    ap.add_argument("--sigma", type=float, default=0.6, help="log-normal spread of the lengths")
    ap.add_argument("--min-length", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=2, help="times each arm runs, alternating; the best is reported")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    n_rows = (args.warmup + args.steps) * args.micro_batch * args.grad_accum  # one epoch: both runs train every row once
    feats = long_tailed_features(n_rows, max_length=args.max_length, median=args.median_length, sigma=args.sigma,
                                 min_length=args.min_length, seed=args.seed)
    lengths = feats.columns["lengths"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        feats_path = tmp / "synthetic.features"
        cache.write(feats_path, feats)
        rounds: dict[str, list[dict]] = {"random": [], "grouped": []}
        for i in range(args.rounds):
            for name, grouped in (("random", False), ("grouped", True)):
                run = train_once(tmp, f"{name}-{i}", feats_path, args, group_by_length=grouped)
                assert run["group_by_length"] == grouped
                rounds[name].append(run)
    for name, runs_of in rounds.items():  # the same seed and rows: every round pads alike
        assert len({(r["tokens"], r["tokens_computed"]) for r in runs_of}) == 1, (name, runs_of)
    runs = {name: max(runs_of, key=lambda r: r["useful_tokens_per_s"]) for name, runs_of in rounds.items()}
    print(f"{args.preset} {args.ds_base} {args.precision}, micro-batch {args.micro_batch} x accumulation "
          f"{args.grad_accum}, {args.warmup} + {args.steps} steps, {n_rows} rows (one epoch per run), "
          f"best of {args.rounds} alternating rounds, {args.threads or 'default'} CPU thread(s)")
    print(f"synthetic log-normal lengths: median {int(np.median(lengths))}, mean {lengths.mean():.1f}, "
          f"p99 {int(np.percentile(lengths, 99))}, max {int(lengths.max())} (cap {args.max_length})")
    for name, r in runs.items():
        print(f"{name:8s} padding share {r['padding_share']:6.1%}   useful tokens/s {r['useful_tokens_per_s']:>12,.0f}"
              f"   step {r['step_ms']:8.1f} ms   tokens {r['tokens']:,} of {r['tokens_computed']:,} computed")
    for name, runs_of in rounds.items():
        print(f"{name:8s} useful tokens/s by round: " + ", ".join(f"{r['useful_tokens_per_s']:,.0f}" for r in runs_of))
    ratio = runs["grouped"]["useful_tokens_per_s"] / runs["random"]["useful_tokens_per_s"]
    computed = runs["grouped"]["tokens_computed"] / runs["random"]["tokens_computed"]
    print(f"grouped / random: useful tokens/s x{ratio:.2f}, tokens computed x{computed:.2f}")


if __name__ == "__main__":
    main()
