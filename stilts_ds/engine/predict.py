"""Distributed prediction: every rank runs its share of rows, outputs are gathered by row.

    outputs = predict(forward_fn, spec, feats, batch_size=32, runtime=rt, device=dev)
    # outputs["logits"][i] belongs to feats row i, on every rank
    memo = {}   # rows already embedded by this encoder, by their tokens (eval_worker: one per task)
    embeddings = predict_embeddings(forward_fn, spec, feats, memo=memo, batch_size=32, runtime=rt, device=dev)

Rows are split ``rank::world_size`` (each row exactly once); under ZeRO-3 each forward pass
is a collective, so every rank runs the same number of passes and a rank that ran out of
rows repeats its first batch and drops the result. Token-axis outputs are padded back to the
table's full width, so rows from batches of different lengths stack into one array.
"""
from __future__ import annotations

from typing import Callable, Mapping

import numpy as np
import torch

from stilts_ds.data.sampler import RowBatcher
from stilts_ds.engine.runtime import Runtime
from stilts_ds.tasks.features import Features
from stilts_ds.tasks.formats import format_of
from stilts_ds.tasks.spec import TaskSpec

def predict(forward: Callable[[Mapping[str, torch.Tensor]], Mapping[str, torch.Tensor]], spec: TaskSpec,
            feats: Features, *, batch_size: int, runtime: Runtime, device: torch.device) -> dict[str, np.ndarray]:
    fmt = format_of(spec)
    keys = fmt.output_keys
    width = feats.columns["input_ids"].shape[-1]
    batcher = RowBatcher(len(feats), batch_size, rank=runtime.rank, world_size=runtime.world_size, mode="eval")
    own_batches = list(batcher)
    mine_rows, mine_out = [], {k: [] for k in keys}
    with torch.no_grad():
        for i in range(batcher.max_batches):
            real = i < len(own_batches)
            rows = own_batches[i] if real else (own_batches[0] if own_batches else np.array([0]))
            batch = fmt.collate(feats, rows).to(device)
            out = forward(batch.tensors)
            if not real:
                continue  # a ZeRO-3 keep-in-step pass: its outputs belong to nobody
            mine_rows.append(np.asarray(rows))
            for k in keys:
                mine_out[k].append(fmt.pad_output(k, out[k].detach().float().cpu().numpy(), width))
    local = (
        np.concatenate(mine_rows) if mine_rows else np.zeros(0, dtype=np.int64),
        {k: np.concatenate(v) if v else None for k, v in mine_out.items()},
    )
    gathered = runtime.all_gather(local)
    rows = np.concatenate([g[0] for g in gathered])
    if sorted(rows.tolist()) != list(range(len(feats))):
        raise RuntimeError(f"distributed prediction covered {len(set(rows.tolist()))} of {len(feats)} rows")
    order = np.argsort(rows)
    return {k: np.concatenate([g[1][k] for g in gathered if g[1][k] is not None])[order] for k in keys}


def _row_key(ids: np.ndarray, length: int) -> bytes:
    return np.ascontiguousarray(ids[:length]).tobytes()


def predict_embeddings(forward, spec: TaskSpec, feats: Features, *, memo: dict, batch_size: int,
                       runtime: Runtime, device: torch.device) -> dict[str, np.ndarray]:
    """``predict`` for a retrieval table, running the encoder only on rows whose tokens are
    not in ``memo`` (token bytes -> embedding; filled here). LAReQA's and Mewsli-X's files
    each hold the whole candidate pool (Mewsli-X: ~1M entities), so with one memo for a task's
    languages the pool is encoded once, not once per language. Every rank holds the same memo
    (``predict`` gathers all rows), so every rank runs the same passes."""
    ids = feats.columns["input_ids"]
    lengths = np.asarray(feats.columns["attention_mask"]).sum(axis=1)
    keys = [_row_key(ids[i], int(lengths[i])) for i in range(len(feats))]
    todo, queued = [], set()
    for i, key in enumerate(keys):
        if key not in memo and key not in queued:
            queued.add(key)
            todo.append(i)
    if todo:
        fresh = predict(forward, spec, feats.take(todo), batch_size=batch_size, runtime=runtime,
                        device=device)["embeddings"]
        memo.update((keys[i], row) for i, row in zip(todo, fresh))
    return {"embeddings": np.stack([memo[key] for key in keys]) if keys else np.zeros((0, 0), np.float32)}
