"""Benchmark: training throughput and model FLOPs utilisation (MFU) of one worker.

    .venv/bin/python tools/bench_train_throughput.py                       # GPU: XLM-R Large, ZeRO-2, bf16, len 128
    .venv/bin/python tools/bench_train_throughput.py --preset tiny --precision fp32 --steps 20   # CPU smoke run

Runs the real per-worker training loop (``engine.worker.train_worker``, the function Ray
Train runs) in this process at world size 1 on synthetic sequence-classification rows of
exactly ``--seq-len`` tokens, so no hub, Ray or dataset is needed: a GPU machine needs only
torch, transformers and deepspeed. Time is the worker's own device-synchronised meter around
forward + backward + optimizer step, read per step; the first ``--warmup`` steps are left out.
Prints tokens/s and MFU against ``--peak-tflops``, and against ``--matmul-tflops`` beside it:

    FLOPs per token = 6 N + 12 L H S   (N non-embedding parameters, L layers, H hidden, S length;
                                        forward + backward, attention score and value products)

Two peaks, both said: MFU proper is against the spec sheet's dense peak (H100 SXM bf16:
989 TFLOP/s, the default ``--peak-tflops``), the usual definition; ``--matmul-tflops`` (default
800) is a large bf16 matmul's measured rate on an H100, the most a real kernel reaches, so the
second figure says how far training is from what the card can actually do. XLM-R Large at
length 128 costs 1.85 GFLOP per token, so:

    target 45% MFU (of 989)  = 445 TFLOP/s  ~ 240k tokens/s
    100% of the measured 800 = 800 TFLOP/s  ~ 432k tokens/s  (45% of it would be ~195k)

``--out-jsonl FILE`` appends the result as one JSON line (tools/gpu_session.sh collects them).
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
from stilts_ds.modeling.presets import model_config
from stilts_ds.tasks.features import Features


def synthetic_features(n_rows: int, seq_len: int, vocab: int, seed: int = 0) -> Features:
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, vocab, size=(n_rows, seq_len), dtype=np.int32)
    ids[:, 0], ids[:, -1] = 0, 2  # <s> ... </s>
    return Features(
        format="pair_classification",
        columns={"input_ids": ids, "attention_mask": np.ones_like(ids, dtype=np.int8),
                 "labels": rng.integers(0, 3, size=n_rows).astype(np.int64),
                 "lengths": np.full(n_rows, seq_len, dtype=np.int32)},
        guids=np.array([f"row-{i}" for i in range(n_rows)], dtype=object),
        extras={"label_names": ("a", "b", "c"), "references": {}},
    )


def step_rates(metrics_jsonl: Path) -> dict[int, float]:
    """{step: tokens/s of that step} from the worker's metrics log (a resumed step: the last)."""
    rates = {}
    for line in metrics_jsonl.read_text().splitlines():
        row = json.loads(line)
        if row["tag"] == "train/tokens_per_s":
            rates[int(row["step"])] = float(row["value"])
    return rates


def flops_per_token(config, seq_len: int) -> float:
    h, layers = config.hidden_size, config.num_hidden_layers
    non_embedding = layers * (4 * h * h + 2 * h * config.intermediate_size)  # attention + MLP weights
    return 6 * non_embedding + 12 * layers * h * seq_len


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="xlmr-large")
    ap.add_argument("--ds-base", default="zero2")
    ap.add_argument("--precision", default="bf16", choices=["fp32", "fp16", "bf16"])
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--micro-batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=60, help="optimizer steps timed (after --warmup)")
    ap.add_argument("--warmup", type=int, default=10, help="optimizer steps run first and not timed")
    ap.add_argument("--peak-tflops", type=float, default=989.0,
                    help="the device's spec-sheet dense peak, what MFU is measured against (H100 SXM bf16: 989)")
    ap.add_argument("--matmul-tflops", type=float, default=800.0,
                    help="a measured large-matmul rate of the device, reported beside MFU (H100 bf16: ~800)")
    ap.add_argument("--out-jsonl", type=Path, default=None, help="append the result here as one JSON line")
    args = ap.parse_args()
    config = model_config(args.preset, vocab_size=3001)
    total = args.warmup + args.steps
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        feats_path = tmp / "synthetic.features"
        cache.write(feats_path, synthetic_features(args.micro_batch * 8, args.seq_len, config.vocab_size))
        run_dir = tmp / "run"
        ds = dsc.merge_ds_config(args.ds_base, micro_batch=args.micro_batch, grad_accum=1, world_size=1,
                                 lr=1e-5, warmup_ratio=0.0, total_steps=total, precision=args.precision)
        # log_every 1: the worker's throughput meter (device-synchronised, around forward +
        # backward + optimizer step) then reports every step on its own.
        job = TrainJob(phase="bench", run_dir=str(run_dir), export_dir=str(run_dir / "export"), encoder=args.preset,
                       tokenizer="bundled", head_dropout=0.1,
                       tasks=(TaskInput("synthetic", Head("pair_classification", 3), train=str(feats_path)),),
                       optim=Optim(seed=0, lr=1e-5, weight_decay=0.01, sampling="uniform", temperature=1.0),
                       ds_config_json=json.dumps(ds), total_steps=total, log_every=1, checkpoint_every=10**9,
                       eval_every=None, eval_batch=1, export=False)
        launch(job, {"num_workers": 1}, name="bench", storage_path=str(run_dir / "ray"), in_process=True)
        rates = step_rates(run_dir / "tensorboard" / "metrics.jsonl")
    # Every step trains the same number of tokens, so the timed steps' seconds are tokens over
    # each step's rate; the first --warmup steps (allocation, first-step compilation) are left out.
    timed = [rates[step] for step in sorted(rates) if step > args.warmup]
    if len(timed) != args.steps:
        raise SystemExit(f"expected {args.steps} timed steps, the run logged {len(timed)}")
    tokens_per_step = args.micro_batch * args.seq_len
    seconds = sum(tokens_per_step / r for r in timed)
    tok_s = tokens_per_step * args.steps / seconds
    fpt = flops_per_token(config, args.seq_len)
    mfu = tok_s * fpt / (args.peak_tflops * 1e12)
    of_matmul = tok_s * fpt / (args.matmul_tflops * 1e12)
    print(f"{args.preset} {args.ds_base} {args.precision} seq {args.seq_len} micro-batch {args.micro_batch}")
    print(f"tokens/s {tok_s:,.0f}   samples/s {tok_s / args.seq_len:,.1f}   step {seconds / args.steps * 1e3:.1f} ms")
    print(f"FLOPs/token {fpt / 1e9:.2f} G   MFU {mfu:.1%} of {args.peak_tflops:g} TFLOP/s (spec peak; target 45%)   "
          f"{of_matmul:.1%} of {args.matmul_tflops:g} TFLOP/s (measured matmul rate)")
    if args.out_jsonl is not None:
        import torch

        row = {"preset": args.preset, "ds_base": args.ds_base, "precision": args.precision, "seq_len": args.seq_len,
               "micro_batch": args.micro_batch, "steps": args.steps, "tokens_per_s": tok_s,
               "samples_per_s": tok_s / args.seq_len, "step_ms": seconds / args.steps * 1e3,
               "flops_per_token": fpt, "mfu": mfu, "peak_tflops": args.peak_tflops,
               "of_matmul_rate": of_matmul, "matmul_tflops": args.matmul_tflops,
               "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"}
        args.out_jsonl.parent.mkdir(parents=True, exist_ok=True)
        with open(args.out_jsonl, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
