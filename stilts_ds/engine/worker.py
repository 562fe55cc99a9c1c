"""The per-worker functions Ray Train runs (and that run in-process at world size 1).

``train_worker(job, rt)`` trains one phase (multi-task or single-task) as a DeepSpeed engine;
``eval_worker(job, rt)`` scores exported models zero-shot in every language. Both rebuild
everything from ``job`` (a frozen ``engine.job.TrainJob`` / ``EvalJob`` built on the driver):
no globals, so a worker restarted by Ray on another node starts from the same description.
``run_job(config)`` is the function Ray Train (or ``engine.launch`` in-process) calls.

One loop for any world size::

    mb = schedule.next()                   # the same task on every rank (data.sampler.StepSchedule):
                                           # one per optimizer step, or per micro-batch (Optim.sample_per)
    batch = fmt.collate(feats[mb.task], mb.rows, seed=seed, step=mb.draw)   # this rank's rows of it
    loss = engine(mb.task, batch)["loss"]; engine.backward(loss); engine.step()

``Optim.group_by_length`` builds the row batchers length-grouped (``data.sampler``: blocks of
one draw's rows over all ranks, so 1 x 2 and 2 x 1 still train the same steps); the run's
summary counts rank 0's real and computed (padded) tokens under ``loop``.

Checkpoints (``save_checkpoint``): every rank ``engine.save_checkpoint`` into the directory
its runtime's store gives it (client state: sampler, batchers, best dev score), its
random-number state and a manifest of the files it wrote; rank 0 the meta naming the job's
graph node and key (``engine.checkpoints``); a barrier, then the store records it. Resume
(``restore``) tries this job's checkpoints newest first, skipping with a warning any that
is not intact or fails to load, and restores all of it, so a restarted run ends at the same
optimizer step with the same data order as an uninterrupted one.
"""
from __future__ import annotations

import gc
import json
import logging
import os
import socket
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from stilts_ds import atomic
from stilts_ds.atomic import write_atomic
from stilts_ds.data import cache
from stilts_ds.data.sampler import RowBatcher, StepSchedule, TaskSampler, task_weights
from stilts_ds.engine import checkpoints, faults, rng_state
from stilts_ds.engine.progress import Progress
from stilts_ds.engine.predict import predict, predict_embeddings
from stilts_ds.engine.job import FINISHED, EvalJob, Head, StagedJob, TrainJob
from stilts_ds.engine.runtime import Runtime
from stilts_ds.engine.tb_logger import (TRAIN_LR, TRAIN_SAMPLES_PER_S, TRAIN_TOKENS_PER_S, MetricLogger,
                                        ThroughputMeter, eval_tag, train_loss_tag)
from stilts_ds.modeling import export
from stilts_ds.modeling.multitask import HeadSpec, MultiTaskModel, encoder_embed, load_encoder
from stilts_ds.modeling.presets import PRESETS, load_tokenizer, model_config
from stilts_ds.tasks.formats import format_of
from stilts_ds.tasks.registry import get_task
from stilts_ds.tasks.scoring import primary_score

log = logging.getLogger(__name__)


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
        def run(f, task=task, spec=spec):
            return predict(forward(task), spec, f, batch_size=batch_size, runtime=runtime, device=device)

        results[task].update(format_of(spec).evaluate(spec, run, [(lang, feats)]))
    return dict(results)


def _quiet_transformers() -> None:
    # Weight-loading progress bars from every rank drown the training log.
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def _save_engine(engine, save_dir: Path, tag: str, client: dict) -> list[str]:
    """``engine.save_checkpoint`` into ``save_dir``; the files this rank wrote (relative
    paths): every shard goes through DeepSpeed's checkpoint engine, watched here."""
    ckpt_engine = engine.checkpoint_engine
    written: list[str] = []
    original = ckpt_engine.save

    def save(state_dict, path, *args, **kwargs):
        written.append(os.path.relpath(path, save_dir))
        return original(state_dict, path, *args, **kwargs)

    ckpt_engine.save = save
    try:
        engine.save_checkpoint(str(save_dir), tag=tag, client_state=client)
    finally:
        del ckpt_engine.save  # the class's method again
    return written


def save_checkpoint(engine, rt: Runtime, store, job, step: int, client: dict, metrics: dict) -> None:
    """Every rank: the shards, the random-number state, rank 0's meta (first: it names the
    node even when the save is cut short), each rank's manifest (last: it says the rank
    finished), then the store records it (Ray: a report; in-process: a rename)."""
    target = store.begin(step)
    tag = f"step{step}"
    if rt.rank == 0:
        checkpoints.write_meta(target.dir, identity=job.identity, step=step, world_size=rt.world_size,
                               run_dir=job.run_dir, tag=tag)
    with atomic.explains_full_disk(target.dir):  # DeepSpeed's own writes: say which disk filled up
        written = _save_engine(engine, target.dir, tag, client)
        written.append(os.path.relpath(rng_state.save(target.dir, rt.rank), target.dir))
    if target.shared:  # one directory for all ranks: rank 0 also owns what no rank claims (latest, scripts)
        claimed = rt.all_gather(sorted(set(written)))  # every rank has written by now
        mine = set(claimed[rt.rank])
        if rt.rank == 0:
            others = set().union(*claimed[1:]) if len(claimed) > 1 else set()
            mine |= set(checkpoints.files_under(target.dir)) - others
    else:
        mine = set(checkpoints.files_under(target.dir))
    checkpoints.write_manifest(target.dir, rt.rank, mine)
    rt.barrier()  # every shard and manifest written before anyone reports
    with atomic.explains_full_disk(Path(job.run_dir)):  # Ray copies the checkpoint to its storage here
        store.commit(target, {**metrics, "step": step})


def _warn(rt: Runtime, message: str) -> None:
    """Rank 0: to stderr (Ray forwards it to the driver's console) and the log."""
    if rt.rank == 0:
        print(f"[stilts-ds] warning: {message}", file=sys.stderr, flush=True)
        log.warning(message)


def restore_plan(rt: Runtime, store, job) -> list:
    """Rank 0 decides, every rank gets: this job's checkpoints newest first, each with what is
    wrong with it (None: intact). Raises CheckpointMismatch on every rank when this node's
    newest checkpoint was made under another key."""
    plan = None
    if rt.rank == 0:  # an error here must reach every rank, not leave the others in the broadcast
        try:
            plan = {"own": _own_checkpoints(rt, store, job), "mismatch": None, "error": None}
        except checkpoints.CheckpointMismatch as e:
            plan = {"own": [], "mismatch": str(e), "error": None}
        except Exception as e:  # noqa: BLE001 - e.g. the storage cannot be listed
            plan = {"own": [], "mismatch": None, "error": f"listing the checkpoints of {job.run_dir} failed: "
                                                          f"{type(e).__name__}: {e}"}
    plan = rt.broadcast(plan)
    if plan["mismatch"]:
        raise checkpoints.CheckpointMismatch(plan["mismatch"])
    if plan["error"]:
        raise RuntimeError(plan["error"])
    return plan["own"]


def _own_checkpoints(rt: Runtime, store, job) -> list:
    identity, own, newest = job.identity, [], True
    for c in store.candidates():
        meta = checkpoints.read_meta(c)
        if meta is None:  # cut short before rank 0 wrote the meta: nobody's, not restorable
            own.append((c, None, checkpoints.problem(c, meta)))
            continue
        if not checkpoints.belongs_to(meta, identity, job.run_dir):
            continue  # another stage of the same Ray run
        if identity is not None and meta.get("key") != identity.key:
            if newest:
                raise checkpoints.CheckpointMismatch(checkpoints.mismatch_message(c, meta, identity))
            own.append((c, meta, f"made under another configuration (key {str(meta.get('key'))[:12]})"))
            continue
        newest = False
        why = checkpoints.problem(c, meta)
        if why is None and int(meta.get("world_size", 1)) != rt.world_size:
            why = (f"written by {meta.get('world_size')} ranks, this run has {rt.world_size} (DeepSpeed "
                   "cannot re-partition ZeRO optimizer state)")
        own.append((c, meta, why))
    return own


def restore(engine, rt: Runtime, store, job) -> tuple[dict | None, checkpoints.Candidate | None, list, bool]:
    """Load the newest restorable checkpoint of this job: candidates that are not intact, or
    whose load raises on any rank, are skipped with a warning and the next older one is tried.
    Returns (client state or None, the checkpoint, the skipped ones, whether a failed load may
    have left partial state in ``engine``)."""
    skipped: list[checkpoints.Skipped] = []
    tainted = False
    for c, meta, why in restore_plan(rt, store, job):
        if why is None:
            error, client = None, None
            try:
                with store.opened(c) as d:
                    _, client = engine.load_checkpoint(str(d), tag=meta.get("tag"), load_optimizer_states=True,
                                                       load_lr_scheduler_states=True)
                    if client is None:
                        raise RuntimeError(f"DeepSpeed found no tag {meta.get('tag')!r} in it")
                    rng_state.load(d, rt.rank)  # dropout continues as the interrupted run's would have
            except Exception as e:  # noqa: BLE001 - any failure: try the next older one
                error = f"{type(e).__name__}: {e}"
            # Every rank learns whether every rank loaded: all restore the same checkpoint.
            errors = [(r, e) for r, e in enumerate(rt.all_gather(error)) if e]
            if not errors:
                return client, c, skipped, tainted
            tainted = True
            why = "loading it failed: " + "; ".join(f"rank {r}: {e}" for r, e in errors)
        skipped.append(checkpoints.Skipped(c.uri, why))
        _warn(rt, f"{skipped[-1]}; trying the next older checkpoint")
    if skipped:
        _warn(rt, f"no restorable checkpoint of {job.run_dir} left: starting from step 0")
    return None, None, skipped, tainted


def train_worker(job: TrainJob, rt: Runtime) -> None:
    _quiet_transformers()
    train = job.optim
    run_dir = Path(job.run_dir)
    tasks = {t.name: t for t in job.tasks}
    fault = faults.load(run_dir)  # tests only
    feats = {t: cache.read(Path(info.train)) for t, info in tasks.items()}
    # Model selection: each task's dev split (the training task's under select_on: training_task,
    # mnli's for xnli) through the task's own head, scored by the spec it was featurized as.
    dev = [(t, "en", get_task(info.dev_spec_name), cache.read(Path(info.dev))) for t, info in tasks.items() if info.dev]

    import deepspeed  # the engine package is the only home of deepspeed

    from stilts_ds.engine.ds_config import client_optimizer, param_groups

    def build():
        torch.manual_seed(train.seed)
        np.random.seed(train.seed)
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
        return engine, scheduler

    engine, scheduler = build()
    zero3 = job.ds_config.get("zero_optimization", {}).get("stage") == 3
    device = engine.device
    micro = engine.train_micro_batch_size_per_gpu()

    sizes = {t: len(f) for t, f in feats.items()}
    sampler = TaskSampler(task_weights(sizes, train.sampling, temperature=train.temperature,
                                       cap=train.sampling_cap, fixed=dict(train.weights) or None),
                          seed=train.seed)
    grad_accum = int(engine.gradient_accumulation_steps())
    # Length grouping sorts rows in blocks of one draw's rows over all ranks: a step's global
    # batch under sample_per "step", one micro-batch per rank under "micro_batch".
    def grouping(task: str) -> dict:
        if not train.group_by_length:
            return {}
        return {"group_by_length": True, "lengths": feats[task].columns["lengths"],
                "grad_accum": grad_accum if train.sample_per == "step" else 1}

    batchers = {t: RowBatcher(n, micro, rank=rt.rank, world_size=rt.world_size, seed=train.seed, **grouping(t))
                for t, n in sizes.items()}
    # What every micro-batch trains on: the task drawn once per optimizer step (or per
    # micro-batch), this rank's rows of it, and the draw count that seeds MLM masks.
    schedule = StepSchedule(sampler, batchers, grad_accum=grad_accum, sample_per=train.sample_per)
    best = {"score": None, "step": None}
    store = rt.checkpoint_store(run_dir)
    client, restored, skipped, tainted = restore(engine, rt, store, job)
    resumed_from = None
    if client is not None:
        schedule.load_state_dict(client)  # its "sampler" and "batchers"
        best = client["best"]
        resumed_from = int(engine.global_steps)
    elif tainted:  # a failed load may have changed weights or optimizer state: start truly afresh
        engine.destroy()
        engine = scheduler = None
        gc.collect()
        engine, scheduler = build()
    logger = MetricLogger(run_dir / "tensorboard", rt.rank)
    meter = ThroughputMeter()
    progress = Progress(f"{job.phase} {run_dir.name}", job.total_steps, start=int(engine.global_steps),
                        enabled=rt.rank == 0)
    fmts = {t: format_of(info.head.format) for t, info in tasks.items()}
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
            for metric, value in per_lang["en"].items():  # named by the dev set scored (mnli's for xnli)
                logger.scalar(eval_tag(tasks[task].dev_spec_name, "en", metric), value, step)
        # Model selection on English dev only; with several tasks, their mean.
        score = float(np.mean([primary_score(per_lang["en"]) for per_lang in scores.values()]))
        if best["score"] is None or score > best["score"]:
            best.update(score=score, step=step)
            with _gathered(engine.module, zero3):
                if rt.rank == 0:
                    export.save_model(engine.module, job.export_dir, tokenizer, overwrite=True)
            rt.barrier()

    def checkpoint(step: int, metrics: dict) -> None:
        client = {**schedule.state_dict(), "best": dict(best)}  # between optimizer steps: see the loop
        logger.flush()  # what was logged up to a checkpoint survives a crash after it
        save_checkpoint(engine, rt, store, job, step, client, metrics)

    engine.train()
    # Overhead accounting (tools/bench_train_overhead.py): wall time of the whole loop vs the
    # time inside forward + backward + optimizer step.
    loop_start, compute_s, start_step = time.perf_counter(), 0.0, int(engine.global_steps)
    # This rank's tokens: real ones (attention mask) and all computed, padding included.
    tokens, tokens_computed = 0, 0
    while engine.global_steps < total:
        mb = schedule.next()
        task, rows = mb.task, mb.rows
        # seed/step reach formats that draw per batch (mlm's masks): seeded by the run's seed and
        # the sampler's draw count (checkpointed; per optimizer step by default, so every
        # micro-batch of a step shares it on any worker count), a resumed run draws as the first did.
        batch = fmts[task].collate(feats[task], rows, seed=train.seed, step=mb.draw).to(device)
        meter.start()
        out = engine(task, batch.tensors)
        engine.backward(out["loss"])
        before = engine.global_steps
        engine.step()
        mask = batch.tensors["attention_mask"]
        real = int(mask.sum())
        compute_s += meter.stop(samples=len(rows) * rt.world_size, tokens=real * rt.world_size)
        tokens, tokens_computed = tokens + real, tokens_computed + mask.numel()
        losses[task].append(out["loss"].detach())
        if engine.global_steps == before:
            continue  # inside a gradient-accumulation window
        if not schedule.at_step_boundary:  # checkpoints must fall between the schedule's steps
            raise RuntimeError(f"DeepSpeed stepped the optimizer after a micro-batch the schedule counts inside "
                               f"a step of {schedule.grad_accum}: the gradient-accumulation settings disagree")
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
                   "selected_on": {t: info.dev_spec_name for t, info in tasks.items() if info.dev},
                   "sample_per": train.sample_per, "group_by_length": train.group_by_length,
                   "world_size": rt.world_size, "workers": placement,
                   "resumed_from": resumed_from, "resumed_checkpoint": restored.uri if restored else None,
                   "skipped_checkpoints": [s.as_dict() for s in skipped],
                   "init_heads": ({"from": job.init_heads.source, "heads": dict(job.init_heads.heads)}
                                  if job.init_heads else None),
                   # tokens: rank 0's (real ones; computed: with the padding of each batch's collation)
                   "loop": {"steps": int(engine.global_steps) - start_step, "seconds": loop_s,
                            "compute_seconds": compute_s, "tokens": tokens, "tokens_computed": tokens_computed},
                   "finished": time.time()}
        _write_json(run_dir / "train_summary.json", summary)
    rt.barrier()
    checkpoint(int(engine.global_steps), {"phase": job.phase, "done": True})
    engine.destroy()  # hooks and buffers DeepSpeed keeps beyond the engine's own references


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
    # Per-example statistics beside scores.json, one file per language (what the results
    # node bootstraps): examples/<lang>.json, or examples/<task>/<lang>.json in a job that
    # scores several tasks. Rank 0 alone computes and writes them.
    examples_root = Path(job.run_dir) / "examples"
    one_task = len({item.task for item in job.evaluations}) == 1
    written: dict[Path, set[str]] = defaultdict(set)
    for item in job.evaluations:
        task, spec = item.task, get_task(item.task)
        fmt = format_of(spec)
        if not fmt.has_head:  # scored from the bare encoder's embeddings
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

        def run(feats, forward=forward, spec=spec):
            if spec.shared_pool:
                return predict_embeddings(forward, spec, feats, memo=memo, batch_size=job.batch_size,
                                          runtime=rt, device=device)
            return predict(forward, spec, feats, batch_size=job.batch_size, runtime=rt, device=device)

        started, rows = time.perf_counter(), [0]

        def splits(item=item, rows=rows):  # one language's table in memory at a time
            for lang, path in item.splits:
                feats = cache.read(Path(path))
                rows[0] += len(feats)
                yield lang, feats

        def keep(lang, stats, where=examples_root if one_task else examples_root / task, task=task):
            write_atomic(where / f"{lang}.json", json.dumps({"task": task, "lang": lang, **stats.to_json()},
                                                            separators=(",", ":"), allow_nan=False))
            written[where].add(f"{lang}.json")

        dev = cache.read(Path(item.dev)) if item.dev else None  # the runner names it where the format tunes (BUCC)
        # The format scores its task: decode, tune on dev where it does, the official metric.
        for lang, scores in fmt.evaluate(spec, run, splits(), dev=dev,
                                         examples=keep if rt.rank == 0 else None).items():
            results[task][lang] = scores
            for metric, value in scores.items():
                logger.scalar(eval_tag(task, lang, metric), value, 0)
        if rt.rank == 0:  # a line per item: Mewsli-X or BUCC at full size take a while
            langs = ", ".join(lang for lang, _ in item.splits)
            print(f"[phase 3] {task} ({langs}): {rows[0]:,} rows in {time.perf_counter() - started:.1f} s", flush=True)
    logger.close()
    if rt.rank == 0:
        for where, names in written.items():  # a language an earlier run of this node scored, not this one
            for old in where.glob("*.json"):
                if old.name not in names:
                    old.unlink()
        _write_json(Path(job.run_dir) / "scores.json", dict(results))
    rt.barrier()
    rt.report({"evaluated": len(results)})


def run_job(config: dict) -> None:
    """The function Ray Train runs on every worker (and ``engine.launch`` in-process):
    ``config`` is ``{"job": TrainJob | EvalJob | StagedJob, "launcher": "ray" | "local"}``.

    A StagedJob runs its stages one after another in this worker group (one process group,
    one set of imports). Each stage, and every plain job, ends with ``<run_dir>/FINISHED.json``
    (rank 0): ``{node, key, attempt, started, finished}``. After Ray restarts the group
    (FailureConfig), a stage whose FINISHED.json carries this StagedJob's (non-empty)
    ``attempt`` and the stage's key is skipped, and the stage that was cut short resumes from
    its own checkpoints (``engine.checkpoints``: a stage never restores another's)."""
    job = config["job"]
    rt = Runtime.detect(config["launcher"])
    if isinstance(job, (TrainJob, EvalJob)):
        run_stage(job, rt, attempt="")
    elif isinstance(job, StagedJob):
        for i, stage in enumerate(job.stages):
            if finished_before(stage, rt, job.attempt):
                if rt.rank == 0:
                    print(f"[stilts-ds] {stage.run_dir}: finished in this attempt before the restart, skipping",
                          file=sys.stderr, flush=True)
                continue
            run_stage(stage, rt, attempt=job.attempt)
            if i + 1 < len(job.stages):  # the next stage's engine should not share memory with this one's
                gc.collect()
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
    else:
        raise TypeError(f"not a stilts-ds job: {type(job).__name__}")



def _key(job) -> str | None:
    return job.identity.key if getattr(job, "identity", None) is not None else None


def run_stage(job: TrainJob | EvalJob, rt: Runtime, attempt: str) -> None:
    if not isinstance(job, (TrainJob, EvalJob)):
        raise TypeError(f"not a stage: {type(job).__name__}")
    started = time.time()
    (train_worker if isinstance(job, TrainJob) else eval_worker)(job, rt)
    if rt.rank == 0:
        identity = job.identity
        _write_json(Path(job.run_dir) / FINISHED, {"node": identity.node if identity else None, "key": _key(job),
                                                   "attempt": attempt, "started": started, "finished": time.time()})
    rt.barrier()


def finished_before(job, rt: Runtime, attempt: str) -> bool:
    """Whether ``job`` (a stage) already finished in this attempt (rank 0 reads, all agree)."""
    done = None
    if rt.rank == 0:
        record = None
        path = Path(job.run_dir) / FINISHED
        if attempt and path.is_file():
            try:
                record = json.loads(path.read_text())
            except ValueError:
                record = None
        done = bool(record) and record.get("attempt") == attempt and record.get("key") == _key(job)
    return bool(rt.broadcast(done))


def _write_json(path: Path, obj) -> None:
    write_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=float))
