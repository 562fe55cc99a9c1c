"""Benchmark: where a Ray Train fit's fixed cost goes, and what the scheduler's cuts save.

    .venv/bin/python tools/bench_fit_overhead.py              # 4 tiny fine-tunes, 2 workers, local Ray
    .venv/bin/python tools/bench_fit_overhead.py --jobs 6 --workers 1

Runs the same small fine-tuning jobs (tiny preset, quick-start recipe) three ways on one local
Ray cluster, measured in this one run:

1. one TorchTrainer fit per job, Ray Train's default controller poll (2 s): how stilts-ds ran
   every job before it had a scheduler (the baseline);
2. one fit per job with ``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S=0.5`` (what ``engine.dispatch`` sets);
3. all jobs as one ``StagedJob`` in one fit (what the scheduler does when the cluster cannot
   run two fits side by side: ``cluster.fuse_stages``).

Per fit it splits the wall time into: driver to the worker's first stage starting (controller
start, placement group, worker processes, imports, process group), the stages themselves
(model build, DeepSpeed init, the training loop, dev evaluation, export, checkpoints; from the
workers' FINISHED.json), and the last stage's end to ``fit()`` returning (the controller
noticing, shutdown). The ratios are against the baseline measured here.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _jobs(tmp: Path, n: int, workers: int):
    from stilts_ds.config import load_config
    from stilts_ds.engine.job import Identity
    from stilts_ds.studies.pipeline import Study

    tasks = ["xnli", "pawsx", "udpos", "panx", "xquad", "mlqa", "tydiqa", "xcopa"]
    cfg = load_config(ROOT / "configs" / "quickstart.yaml", {
        "output_dir": str(tmp / "run"), "cluster.num_workers": workers, "arms": {}, "intermediate": None,
        "model.encoder": "tiny", "finetune.tasks": tasks[:n], "evaluate.tasks": [], "bench.enabled": False,
        "finetune.defaults.max_steps": 20, "finetune.defaults.eval_every": 10,
        "finetune.defaults.checkpoint_every": 10})
    study = Study(cfg, progress=False)
    jobs = []
    for t in tasks[:n]:
        d = cfg.run_dir / "phase2" / t
        job = study.build_job("finetune", cfg.finetune.recipe(t), d, "tiny", d / "model", with_dev=True)
        jobs.append(replace(job, identity=Identity(f"bench/{t}", f"key-{t}")))
    return cfg, jobs


def _stage_times(job) -> tuple[float, float]:
    mark = json.loads((Path(job.run_dir) / "FINISHED.json").read_text())
    return mark["started"], mark["finished"]


def _reset(cfg, jobs):
    for job in jobs:
        shutil.rmtree(job.run_dir, ignore_errors=True)
        Path(job.run_dir).mkdir(parents=True)
    shutil.rmtree(cfg.storage_path(), ignore_errors=True)


def _fit(job, cfg, name: str) -> dict:
    from stilts_ds.engine.job import StagedJob
    from stilts_ds.engine.launch import launch

    stages = job.stages if isinstance(job, StagedJob) else (job,)
    t0 = time.time()
    launch(job, asdict(cfg.cluster), name=name, storage_path=cfg.storage_path())
    t1 = time.time()
    times = [_stage_times(s) for s in stages]
    first, last = times[0][0], times[-1][1]
    in_stages = sum(b - a for a, b in times)
    return {"wall": t1 - t0, "to_first_stage": first - t0, "stages": in_stages,
            "between_stages": (last - first) - in_stages, "after_last_stage": t1 - last}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=4, help="fine-tuning jobs (1-8)")
    ap.add_argument("--workers", type=int, default=2, help="DeepSpeed workers per job (CPU: 1 CPU each)")
    args = ap.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    t = time.time()
    import ray

    from stilts_ds.engine.dispatch import connect
    from stilts_ds.engine.job import StagedJob

    imports = time.time() - t
    with tempfile.TemporaryDirectory() as tmp:
        cfg, jobs = _jobs(Path(tmp), args.jobs, args.workers)
        t = time.time()
        os.environ["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] = "2.0"
        connect(None)
        ray_init = time.time() - t
        rows = {}
        for label, interval in (("one fit per job (Ray default poll 2 s)", "2.0"),
                                ("one fit per job (poll 0.5 s)", "0.5")):
            os.environ["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] = interval  # the controller inherits it
            _reset(cfg, jobs)
            rows[label] = [_fit(job, cfg, f"bench-{i}-{interval}") for i, job in enumerate(jobs)]
        os.environ["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] = "0.5"
        _reset(cfg, jobs)
        label = f"{len(jobs)} jobs in one fit (StagedJob, poll 0.5 s)"
        rows[label] = [_fit(StagedJob(stages=tuple(jobs), attempt="bench"), cfg, "bench-staged")]
        ray.shutdown()
    print(f"{len(jobs)} fine-tunes of 20 steps, tiny preset, {args.workers} DeepSpeed ZeRO-2 workers on a local Ray; "
          f"imports {imports:.1f} s, ray.init {ray_init:.1f} s (paid once per driver)\n")
    print("| how | fits | wall s | to first stage s | in stages s | between stages s | after last stage s "
          "| fixed cost per job s | wall vs baseline |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    base = None
    for label, fits in rows.items():
        total = {k: sum(f[k] for f in fits) for k in fits[0]}
        fixed = (total["wall"] - total["stages"]) / len(jobs)
        base = base or total["wall"]
        print(f"| {label} | {len(fits)} | {total['wall']:.1f} | {total['to_first_stage']:.1f} | {total['stages']:.1f} "
              f"| {total['between_stages']:.1f} | {total['after_last_stage']:.1f} | {fixed:.1f} "
              f"| {total['wall'] / base:.2f}x |")


if __name__ == "__main__":
    main()
