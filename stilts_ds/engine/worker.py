"""The per-worker functions Ray Train runs (and that run in-process at world size 1).

``train_worker(job)`` trains one phase (multi-task or single-task) as a DeepSpeed engine;
``eval_worker(job)`` scores exported models zero-shot in every language. Both rebuild
everything from ``job`` (a plain dict built by ``stilts_ds.engine.jobs``): no globals, so
a worker restarted by Ray on another node starts from the same description.

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
import os
import signal
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
from stilts_ds.engine import rng_state
from stilts_ds.engine.progress import Progress
from stilts_ds.engine.predict import predict, predict_embeddings
from stilts_ds.engine.runtime import Runtime
from stilts_ds.engine.tb_logger import (TRAIN_LR, TRAIN_SAMPLES_PER_S, TRAIN_TOKENS_PER_S, MetricLogger,
                                        ThroughputMeter, eval_tag, train_loss_tag)
from stilts_ds.modeling import export
from stilts_ds.modeling.multitask import HeadSpec, MultiTaskModel, encoder_embed, load_encoder
from stilts_ds.modeling.presets import PRESETS, load_tokenizer, model_config
from stilts_ds.tasks.formats import get_format
from stilts_ds.tasks.registry import get_task
from stilts_ds.tasks.scoring import decode_outputs, primary_score, score_predictions


def build_model(encoder: str, tokenizer_name: str, heads: dict, head_dropout: float) -> MultiTaskModel:
    # The job names shared heads (Study._head: a translated copy, mnli@de, trains mnli's).
    specs = {t: HeadSpec(h["format"], int(h["num_labels"]), h.get("head")) for t, h in heads.items()}
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


class InjectedFault(RuntimeError):
    """The fault ``_maybe_fail`` raises in mode "raise" (in-process tests)."""


def _maybe_fail(job: dict, step: int, rank: int) -> None:
    """Fault injection for tests: the named rank kills itself once at ``step`` (a marker
    file on shared storage makes it once per run, across restarts); with ``"mode": "raise"``
    it raises InjectedFault instead, for runs in the test's own process."""
    fault = job.get("fault")
    if not fault or fault["step"] != step or fault.get("rank", 0) != rank:
        return
    marker = Path(fault["marker"])
    if marker.exists():
        return
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(str(step))
    if fault.get("mode") == "raise":
        raise InjectedFault(f"injected fault at step {step} on rank {rank}")
    # Ray Train V2 records a reported checkpoint when its controller next polls the workers;
    # on a toy run steps take milliseconds, so give it time to see the last one first.
    time.sleep(float(fault.get("delay_s", 5.0)))
    os.kill(os.getpid(), signal.SIGKILL)


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


def train_worker(job: dict) -> None:
    _quiet_transformers()
    rt = Runtime.detect(job)
    train = job["train"]
    run_dir = Path(job["run_dir"])
    torch.manual_seed(train["seed"])
    np.random.seed(train["seed"])
    tasks = job["tasks"]
    feats = {t: cache.read(Path(info["train"])) for t, info in tasks.items()}
    dev = [(t, "en", get_task(t), cache.read(Path(info["dev"]))) for t, info in tasks.items() if info.get("dev")]

    import deepspeed  # the engine package is the only home of deepspeed

    from stilts_ds.engine.ds_config import client_optimizer, param_groups

    model = build_model(job["encoder"], job["tokenizer"], {t: info["head"] for t, info in tasks.items()},
                        job["head_dropout"])
    if job.get("init_heads"):  # a staged recipe: this stage's head starts where the last one ended
        export.load_heads(model, job["init_heads"]["from"], job["init_heads"]["heads"])
    ds_config = job["ds_config"]
    if "optimizer" in ds_config:
        engine, _, _, scheduler = deepspeed.initialize(
            model=model, model_parameters=param_groups(model, train["weight_decay"]), config=ds_config)
    else:
        opt = client_optimizer(model, lr=train["lr"], weight_decay=train["weight_decay"])
        engine, _, _, scheduler = deepspeed.initialize(model=model, optimizer=opt, config=ds_config)
    zero3 = ds_config.get("zero_optimization", {}).get("stage") == 3
    device = engine.device
    micro = engine.train_micro_batch_size_per_gpu()

    sizes = {t: len(f) for t, f in feats.items()}
    sampler = TaskSampler(task_weights(sizes, train["sampling"], temperature=train["temperature"],
                                       cap=train["sampling_cap"], fixed=train.get("weights") or None),
                          seed=train["seed"])
    batchers = {t: RowBatcher(n, micro, rank=rt.rank, world_size=rt.world_size, seed=train["seed"])
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
    progress = Progress(f"{job['phase']} {run_dir.name}", job["total_steps"], start=int(engine.global_steps),
                        enabled=rt.rank == 0)
    fmts = {t: get_format(info["head"]["format"]) for t, info in tasks.items()}
    total = job["total_steps"]
    losses: dict = defaultdict(list)
    tokenizer = load_tokenizer(job["tokenizer"]) if rt.rank == 0 else None

    def forward_for(task):
        return lambda tensors: engine(task, tensors)

    def dev_eval(step: int) -> None:
        if not dev:
            return
        engine.eval()
        scores = evaluate_tasks(forward_for, dev, batch_size=job["eval_batch"], runtime=rt, device=device)
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
                    export.save_model(engine.module, job["export_dir"], tokenizer, overwrite=True)
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
        if tasks[task]["head"]["format"] == "mlm":
            # Masks drawn per batch, seeded by the run's seed and the sampler's step count
            # (checkpointed), so a resumed run masks every batch as the first run did.
            batch = fmts[task].collate(feats[task], rows, seed=train["seed"], step=sampler.steps).to(device)
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
        if step % job["log_every"] == 0 or step == total:
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
        if job["eval_every"] and step % job["eval_every"] == 0 and step < total:
            dev_eval(step)
        if step % job["checkpoint_every"] == 0 and step < total:
            checkpoint(step, {"phase": job["phase"]})
        _maybe_fail(job, step, rt.rank)
    loop_s = time.perf_counter() - loop_start

    if dev:
        dev_eval(total)
    elif not job.get("skip_export"):  # phase 1: the encoder after the last step is the hand-off
        with _gathered(engine.module, zero3):
            if rt.rank == 0:
                export.save_encoder(engine.module, job["export_dir"], tokenizer, overwrite=True)
        rt.barrier()
    logger.close()
    placement = rt.all_gather({"rank": rt.rank, "node_rank": rt.node_rank, "node_id": rt.node_id,
                               "host": socket.gethostname()})
    if rt.rank == 0:
        summary = {"phase": job["phase"], "steps": int(engine.global_steps), "best_dev": best,
                   "world_size": rt.world_size, "workers": placement,
                   "resumed_from": resumed_from, "init_heads": job.get("init_heads"),
                   "loop": {"steps": int(engine.global_steps) - start_step, "seconds": loop_s,
                            "compute_seconds": compute_s}, "finished": time.time()}
        _write_json(run_dir / "train_summary.json", summary)
    rt.barrier()
    checkpoint(int(engine.global_steps), {"phase": job["phase"], "done": True})


def eval_worker(job: dict) -> None:
    """Phase 3: every (task, language) of ``job["evaluations"]``, rows shared across ranks."""
    _quiet_transformers()
    rt = Runtime.detect(job)
    device = rt.device()
    logger = MetricLogger(Path(job["run_dir"]) / "tensorboard", rt.rank)
    results: dict = defaultdict(dict)
    # Retrieval items (one per language) share their encoder. A task whose files all hold one
    # candidate pool (spec.shared_pool: LAReQA, Mewsli-X) keeps a memo of embedded rows across
    # its languages, dropped when the task changes: it never holds more than one task's rows
    # (BUCC's, millions of rows that no other file repeats, are never kept).
    encoders: dict = {}
    memo_key, memo = None, None
    for item in job["evaluations"]:
        task, spec = item["task"], get_task(item["task"])
        if spec.format == "retrieval":
            if item["model_dir"] not in encoders:
                encoders[item["model_dir"]] = load_encoder(item["model_dir"]).to(device).eval()
            encoder = encoders[item["model_dir"]]
            if memo_key != (task, item["model_dir"], item.get("layer")):
                memo_key, memo = (task, item["model_dir"], item.get("layer")), {}

            def forward(tensors, encoder=encoder, layer=item.get("layer")):
                return {"embeddings": encoder_embed(encoder, tensors, layer)}
        else:
            model = export.load_model(item["model_dir"]).to(device).eval()

            def forward(tensors, model=model, task=task):
                return model(task, tensors)
        threshold = None
        if spec.metric == "bucc_f1":
            from stilts_ds.metrics import bucc_best_threshold

            dev_feats = cache.read(Path(item["dev"]))
            dev_out = predict(forward, spec, dev_feats, batch_size=job["batch_size"], runtime=rt, device=device)
            threshold = bucc_best_threshold(decode_outputs(spec, dev_feats, dev_out),
                                            dev_feats.extras["references"].items())
        started, rows = time.perf_counter(), 0
        for lang, path in item["splits"].items():
            feats = cache.read(Path(path))
            rows += len(feats)
            if spec.shared_pool:
                out = predict_embeddings(forward, spec, feats, memo=memo, batch_size=job["batch_size"],
                                         runtime=rt, device=device)
            else:
                out = predict(forward, spec, feats, batch_size=job["batch_size"], runtime=rt, device=device)
            preds = decode_outputs(spec, feats, out, bucc_threshold=threshold)
            scores = score_predictions(spec, feats, preds, lang)
            results[task][lang] = scores
            for metric, value in scores.items():
                logger.scalar(eval_tag(task, lang, metric), value, 0)
        if rt.rank == 0:  # a line per item: Mewsli-X or BUCC at full size take a while
            langs = ", ".join(item["splits"])
            print(f"[phase 3] {task} ({langs}): {rows:,} rows in {time.perf_counter() - started:.1f} s", flush=True)
    logger.close()
    if rt.rank == 0:
        _write_json(Path(job["run_dir"]) / "scores.json", dict(results))
    rt.barrier()
    rt.report({"evaluated": len(results)}, None)


def _write_json(path: Path, obj) -> None:
    write_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=float))
