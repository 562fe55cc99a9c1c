"""The per-worker functions Ray Train runs (and that run in-process at world size 1).

``train_worker(job, rt)`` trains one phase (multi-task or single-task) as a DeepSpeed engine;
``eval_worker(job, rt)`` scores exported models zero-shot in every language. Both rebuild
everything from ``job`` (a frozen ``engine.job.TrainJob`` / ``EvalJob`` built on the driver):
no globals, so a worker restarted by Ray on another node starts from the same description.
``run_job(config)`` is the function Ray Train (or ``engine.launch`` in-process) calls.

One loop for any world size::

    task = sampler.next()                  # the same task on every rank
    rows = batchers[task].next()           # this rank's rows of that task
    loss = engine(task, batch)["loss"]; engine.backward(loss); engine.step()

Checkpoints: every rank ``engine.save_checkpoint`` into its own directory (client state:
sampler, batchers, best dev score), a barrier, then the runtime reports it (Ray merges the
ranks' files). Resume restores all of it, so a restarted run ends at the same optimizer
step with the same data order as an uninterrupted one.
"""
from __future__ import annotations

import json
import socket
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from stilts_ds.atomic import write_atomic
from stilts_ds.data import cache
from stilts_ds.data.sampler import RowBatcher, TaskSampler, task_weights
from stilts_ds.engine import faults, rng_state
from stilts_ds.engine.progress import Progress
from stilts_ds.engine.predict import predict, predict_embeddings
from stilts_ds.engine.job import EvalJob, Head, StagedJob, TrainJob
from stilts_ds.engine.runtime import Runtime
from stilts_ds.engine.tb_logger import (TRAIN_LR, TRAIN_SAMPLES_PER_S, TRAIN_TOKENS_PER_S, MetricLogger,
                                        ThroughputMeter, eval_tag, train_loss_tag)
from stilts_ds.modeling import export
from stilts_ds.modeling.multitask import HeadSpec, MultiTaskModel, encoder_embed, load_encoder
from stilts_ds.modeling.presets import PRESETS, load_tokenizer, model_config
from stilts_ds.tasks.formats import get_format
from stilts_ds.tasks.registry import get_task
from stilts_ds.tasks.scoring import decode_outputs, primary_score, score_predictions


def build_model(encoder: str, tokenizer_name: str, heads: dict[str, Head], head_dropout: float) -> MultiTaskModel:
    # The job names shared heads (Study._head: a translated copy, mnli@de, trains mnli's).
    specs = {t: HeadSpec(h.format, int(h.num_labels), h.head) for t, h in heads.items()}
    if encoder in PRESETS:  # random weights of a named architecture
        vocab = None if "vocab_size" in PRESETS[encoder] else len(load_tokenizer(tokenizer_name))
        return MultiTaskModel.build(model_config(encoder, vocab_size=vocab), specs, head_dropout=head_dropout)
    return MultiTaskModel.build(encoder, specs, head_dropout=head_dropout)


def _gathered(model, enabled: bool):
    """ZeRO-3 keeps parameter shards; gather them whole (on every rank) to export."""
    import contextlib

    if not enabled:
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(list(model.parameters()), modifier_rank=None)


def evaluate_tasks(forward, specs_feats, *, batch_size, runtime, device) -> dict:
    """{task: {lang: scores}} for [(task, lang, spec, feats)]; collective on every rank."""
    results: dict = defaultdict(dict)
    for task, lang, spec, feats in specs_feats:
        outputs = predict(forward(task), spec, feats, batch_size=batch_size, runtime=runtime, device=device)
        preds = decode_outputs(spec, feats, outputs)
        results[task][lang] = score_predictions(spec, feats, preds, lang)
    return dict(results)


def _quiet_transformers() -> None:
    # Weight-loading progress bars from every rank drown the training log.
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def train_worker(job: TrainJob, rt: Runtime) -> None:
    _quiet_transformers()
    train = job.optim
    run_dir = Path(job.run_dir)
    torch.manual_seed(train.seed)
    np.random.seed(train.seed)
    tasks = {t.name: t for t in job.tasks}
    fault = faults.load(run_dir)  # tests only
    feats = {t: cache.read(Path(info.train)) for t, info in tasks.items()}
    dev = [(t, "en", get_task(t), cache.read(Path(info.dev))) for t, info in tasks.items() if info.dev]

    import deepspeed  # the engine package is the only home of deepspeed

    from stilts_ds.engine.ds_config import client_optimizer, param_groups

    model = build_model(job.encoder, job.tokenizer, {t: info.head for t, info in tasks.items()}, job.head_dropout)
    if job.init_heads:  # a staged recipe: this stage's head starts where the last one ended
        export.load_heads(model, job.init_heads.source, dict(job.init_heads.heads))
    ds_config = job.ds_config
    if "optimizer" in ds_config:
        engine, _, _, scheduler = deepspeed.initialize(
            model=model, model_parameters=param_groups(model, train.weight_decay), config=ds_config)
    else:
        opt = client_optimizer(model, lr=train.lr, weight_decay=train.weight_decay)
        engine, _, _, scheduler = deepspeed.initialize(model=model, optimizer=opt, config=ds_config)
    zero3 = ds_config.get("zero_optimization", {}).get("stage") == 3
    device = engine.device
    micro = engine.train_micro_batch_size_per_gpu()

    sizes = {t: len(f) for t, f in feats.items()}
    sampler = TaskSampler(task_weights(sizes, train.sampling, temperature=train.temperature,
                                       cap=train.sampling_cap, fixed=dict(train.weights) or None),
                          seed=train.seed)
    batchers = {t: RowBatcher(n, micro, rank=rt.rank, world_size=rt.world_size, seed=train.seed)
                for t, n in sizes.items()}
    best = {"score": None, "step": None}
    resumed_from = None
    with rt.restored_checkpoint() as ckpt:
        if ckpt is not None:
            _, client = engine.load_checkpoint(str(ckpt), load_optimizer_states=True, load_lr_scheduler_states=True)
            sampler.load_state_dict(client["sampler"])
            for t, state in client["batchers"].items():
                batchers[t].load_state_dict(state)
            best = client["best"]
            rng_state.load(ckpt, rt.rank)  # dropout continues as the interrupted run's would have
            resumed_from = int(engine.global_steps)
    logger = MetricLogger(run_dir / "tensorboard", rt.rank)
    meter = ThroughputMeter()
    progress = Progress(f"{job.phase} {run_dir.name}", job.total_steps, start=int(engine.global_steps),
                        enabled=rt.rank == 0)
    fmts = {t: get_format(info.head.format) for t, info in tasks.items()}
    total = job.total_steps
    losses: dict = defaultdict(list)
    tokenizer = load_tokenizer(job.tokenizer) if rt.rank == 0 else None

    def forward_for(task):
        return lambda tensors: engine(task, tensors)

    def dev_eval(step: int) -> None:
        if not dev:
            return
        engine.eval()
        scores = evaluate_tasks(forward_for, dev, batch_size=job.eval_batch, runtime=rt, device=device)
        engine.train()
        for task, per_lang in scores.items():
            for metric, value in per_lang["en"].items():
                logger.scalar(eval_tag(task, "en", metric), value, step)
        # Model selection on English dev only; with several tasks, their mean.
        score = float(np.mean([primary_score(per_lang["en"]) for per_lang in scores.values()]))
        if best["score"] is None or score > best["score"]:
            best.update(score=score, step=step)
            with _gathered(engine.module, zero3):
                if rt.rank == 0:
                    export.save_model(engine.module, job.export_dir, tokenizer, overwrite=True)
            rt.barrier()

    def checkpoint(step: int, metrics: dict) -> None:
        client = {"sampler": sampler.state_dict(), "batchers": {t: b.state_dict() for t, b in batchers.items()},
                  "best": dict(best)}
        logger.flush()  # what was logged up to a checkpoint survives a crash after it
        with tempfile.TemporaryDirectory(prefix=f"stilts-ckpt-{rt.rank}-") as tmp:
            engine.save_checkpoint(tmp, tag=f"step{step}", client_state=client)
            rng_state.save(tmp, rt.rank)
            rt.barrier()  # every shard written before anyone reports
            rt.report({**metrics, "step": step}, Path(tmp))

    engine.train()
    # Overhead accounting (tools/bench_train_overhead.py): wall time of the whole loop vs the
    # time inside forward + backward + optimizer step.
    loop_start, compute_s, start_step = time.perf_counter(), 0.0, int(engine.global_steps)
    while engine.global_steps < total:
        task = sampler.next()
        rows = batchers[task].next()
        if tasks[task].head.format == "mlm":
            # Masks drawn per batch, seeded by the run's seed and the sampler's step count
            # (checkpointed), so a resumed run masks every batch as the first run did.
            batch = fmts[task].collate(feats[task], rows, seed=train.seed, step=sampler.steps).to(device)
        else:
            batch = fmts[task].collate(feats[task], rows).to(device)
        meter.start()
        out = engine(task, batch.tensors)
        engine.backward(out["loss"])
        before = engine.global_steps
        engine.step()
        mask = batch.tensors["attention_mask"]
        compute_s += meter.stop(samples=len(rows) * rt.world_size, tokens=int(mask.sum()) * rt.world_size)
        losses[task].append(out["loss"].detach())
        if engine.global_steps == before:
            continue  # inside a gradient-accumulation window
        step = engine.global_steps
        if step % job.log_every == 0 or step == total:
            means = {t: float(torch.stack(values).float().mean()) for t, values in losses.items()}  # sync point
            for t, value in means.items():
                logger.scalar(train_loss_tag(t), value, step)
            losses.clear()
            logger.scalar(TRAIN_LR, scheduler.get_last_lr()[0] if scheduler else engine.get_lr()[0], step)
            samples_s, tokens_s = meter.rate()
            logger.scalars({TRAIN_SAMPLES_PER_S: samples_s, TRAIN_TOKENS_PER_S: tokens_s}, step)
            meter.reset()
            progress.update(step, f"{samples_s:,.0f} samples/s | loss " +
                            ", ".join(f"{t} {v:.3f}" for t, v in sorted(means.items())))
        if job.eval_every and step % job.eval_every == 0 and step < total:
            dev_eval(step)
        if step % job.checkpoint_every == 0 and step < total:
            checkpoint(step, {"phase": job.phase})
        faults.maybe_fail(fault, step, rt.rank)
    loop_s = time.perf_counter() - loop_start

    if dev:
        dev_eval(total)
    elif job.export:  # phase 1: the encoder after the last step is the hand-off
        with _gathered(engine.module, zero3):
            if rt.rank == 0:
                export.save_encoder(engine.module, job.export_dir, tokenizer, overwrite=True)
        rt.barrier()
    logger.close()
    placement = rt.all_gather({"rank": rt.rank, "node_rank": rt.node_rank, "node_id": rt.node_id,
                               "host": socket.gethostname()})
    if rt.rank == 0:
        summary = {"phase": job.phase, "steps": int(engine.global_steps), "best_dev": best,
                   "world_size": rt.world_size, "workers": placement,
                   "resumed_from": resumed_from, "init_heads": ({"from": job.init_heads.source, "heads": dict(job.init_heads.heads)}
                                  if job.init_heads else None),
                   "loop": {"steps": int(engine.global_steps) - start_step, "seconds": loop_s,
                            "compute_seconds": compute_s}, "finished": time.time()}
        _write_json(run_dir / "train_summary.json", summary)
    rt.barrier()
    checkpoint(int(engine.global_steps), {"phase": job.phase, "done": True})


def eval_worker(job: EvalJob, rt: Runtime) -> None:
    """Phase 3: every (task, language) of ``job.evaluations``, rows shared across ranks."""
    _quiet_transformers()
    device = rt.device()
    logger = MetricLogger(Path(job.run_dir) / "tensorboard", rt.rank)
    results: dict = defaultdict(dict)
    # Retrieval items (one per language) share their encoder. A task whose files all hold one
    # candidate pool (spec.shared_pool: LAReQA, Mewsli-X) keeps a memo of embedded rows across
    # its languages, dropped when the task changes: it never holds more than one task's rows
    # (BUCC's, millions of rows that no other file repeats, are never kept).
    encoders: dict = {}
    memo_key, memo = None, None
    for item in job.evaluations:
        task, spec = item.task, get_task(item.task)
        if spec.format == "retrieval":
            if item.model_dir not in encoders:
                encoders[item.model_dir] = load_encoder(item.model_dir).to(device).eval()
            encoder = encoders[item.model_dir]
            if memo_key != (task, item.model_dir, item.layer):
                memo_key, memo = (task, item.model_dir, item.layer), {}

            def forward(tensors, encoder=encoder, layer=item.layer):
                return {"embeddings": encoder_embed(encoder, tensors, layer)}
        else:
            model = export.load_model(item.model_dir).to(device).eval()

            def forward(tensors, model=model, task=task):
                return model(task, tensors)
        threshold = None
        if spec.metric == "bucc_f1":
            from stilts_ds.metrics import bucc_best_threshold

            dev_feats = cache.read(Path(item.dev))
            dev_out = predict(forward, spec, dev_feats, batch_size=job.batch_size, runtime=rt, device=device)
            threshold = bucc_best_threshold(decode_outputs(spec, dev_feats, dev_out),
                                            dev_feats.extras["references"].items())
        started, rows = time.perf_counter(), 0
        for lang, path in item.splits:
            feats = cache.read(Path(path))
            rows += len(feats)
            if spec.shared_pool:
                out = predict_embeddings(forward, spec, feats, memo=memo, batch_size=job.batch_size,
                                         runtime=rt, device=device)
            else:
                out = predict(forward, spec, feats, batch_size=job.batch_size, runtime=rt, device=device)
            preds = decode_outputs(spec, feats, out, bucc_threshold=threshold)
            scores = score_predictions(spec, feats, preds, lang)
            results[task][lang] = scores
            for metric, value in scores.items():
                logger.scalar(eval_tag(task, lang, metric), value, 0)
        if rt.rank == 0:  # a line per item: Mewsli-X or BUCC at full size take a while
            langs = ", ".join(lang for lang, _ in item.splits)
            print(f"[phase 3] {task} ({langs}): {rows:,} rows in {time.perf_counter() - started:.1f} s", flush=True)
    logger.close()
    if rt.rank == 0:
        _write_json(Path(job.run_dir) / "scores.json", dict(results))
    rt.barrier()
    rt.report({"evaluated": len(results)}, None)


def run_job(config: dict) -> None:
    """The function Ray Train runs on every worker (and ``engine.launch`` in-process):
    ``config`` is ``{"job": TrainJob | EvalJob | StagedJob, "launcher": "ray" | "local"}``."""
    job = config["job"]
    rt = Runtime.detect(config["launcher"], getattr(job, "run_dir", None))
    if isinstance(job, TrainJob):
        train_worker(job, rt)
    elif isinstance(job, EvalJob):
        eval_worker(job, rt)
    elif isinstance(job, StagedJob):
        for stage in job.stages:
            (train_worker if isinstance(stage, TrainJob) else eval_worker)(stage, rt)
    else:
        raise TypeError(f"not a stilts-ds job: {type(job).__name__}")


def _write_json(path: Path, obj) -> None:
    write_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=float))
