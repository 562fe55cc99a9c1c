"""Benchmark: how much of a training step is spent outside forward, backward and the
optimizer step (data, sampling, collation, logging, checkpoint reporting).

    .venv/bin/python tools/bench_train_overhead.py                 # quick-start batch, tiny model, CPU
    .venv/bin/python tools/bench_train_overhead.py --steps 200 --micro-batch 16

Runs phase 1 of configs/quickstart.yaml in this process at world size 1 (the same loop Ray
Train runs on each worker) over all nine intermediate tasks, then prints the loop's wall
time, the time inside forward+backward+step, and the share outside it. Target: at most 5%.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from stilts_ds.config import load_config
from stilts_ds.studies.pipeline import Study

ROOT = Path(__file__).resolve().parents[1]
TARGET = 0.05


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "quickstart.yaml"))
    ap.add_argument("--steps", type=int, default=120, help="optimizer steps")
    ap.add_argument("--micro-batch", type=int, default=None, help="default: the config's")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sets = {"output_dir": tmp, "cluster.num_workers": 1, "intermediate.max_steps": args.steps}
        if args.micro_batch:
            sets["intermediate.micro_batch"] = args.micro_batch
        cfg = load_config(args.config, sets)
        Study(cfg, in_process=True, progress=False).intermediate()
        summary = json.loads((cfg.run_dir / "phase1" / "train_summary.json").read_text())
    loop = summary["loop"]
    outside = 1 - loop["compute_seconds"] / loop["seconds"]
    print(f"steps {loop['steps']}  micro-batch {cfg.intermediate.micro_batch}  tasks {len(cfg.intermediate.tasks)}")
    print(f"loop wall time            {loop['seconds']:8.2f} s  ({loop['seconds'] / loop['steps'] * 1e3:.1f} ms/step)")
    print(f"forward+backward+step     {loop['compute_seconds']:8.2f} s")
    print(f"share outside (overhead)  {outside:8.2%}   target <= {TARGET:.0%}: {'PASS' if outside <= TARGET else 'MISS'}")


if __name__ == "__main__":
    main()
