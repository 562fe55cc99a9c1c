"""What a worker group is asked to run: typed, frozen descriptions built on the driver.

    job = TrainJob(phase="finetune", run_dir=..., export_dir=..., encoder=..., tokenizer=...,
                   head_dropout=0.1, tasks=(TaskInput("xnli", Head("pair_classification", 3), train=..., dev=...,
                                                      dev_task="mnli"),),
                   optim=Optim(seed=42, lr=1e-5, weight_decay=0.01), ds_config_json=json.dumps(ds), total_steps=600,
                   log_every=10, checkpoint_every=200, eval_every=100, eval_batch=32,
                   identity=Identity(node="english/phase2/xnli", key="3f0c...", config_json="{...}"))
    launch(job, cluster, name=..., storage_path=...)     # engine.launch: TorchTrainer or in-process

A worker rebuilds everything from its job: no globals, so a worker that Ray restarts on
another node starts from the same description. Jobs are frozen and hold only immutable
values (tuples, strings, numbers): callers cannot change a job after it was built and
validated, and the same job pickles to every worker. Collections are tuples; ``ds_config``
travels as JSON (DeepSpeed may edit the dict it is given, so each use gets a fresh copy).

``identity`` names the study-graph node that built the job and its key (a hash of its config
slice, data fingerprints and upstream keys; ``studies.graph``). Every checkpoint records it, so
a run is never resumed from a checkpoint made under another configuration.

Test hooks are not part of a job (``engine.faults`` reads them from the run directory).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Head:
    """The head a task trains: its format, output size, and a shared head name (``mnli@de``
    trains ``mnli``'s head; None: the task's own)."""

    format: str
    num_labels: int
    head: str | None = None


@dataclass(frozen=True)
class TaskInput:
    """One task of a training job: its head and featurized splits (feature-cache paths).

    ``dev`` is the English dev split that selects the model, run through this task's head and
    scored by the spec of ``dev_task``: the task it was featurized as (xnli trains on MNLI and,
    under ``finetune.select_on: training_task``, selects on ``mnli``'s validation split with
    mnli's metric); None: this task's own."""

    name: str
    head: Head
    train: str
    dev: str | None = None
    dev_task: str | None = None

    @property
    def dev_spec_name(self) -> str:
        return self.dev_task or self.name


@dataclass(frozen=True)
class Optim:
    """The training-config values the worker reads (the rest is in ``ds_config``)."""

    seed: int
    lr: float
    weight_decay: float
    sampling: str = "proportional"
    temperature: float = 2.0
    sampling_cap: int | None = None
    weights: tuple[tuple[str, float], ...] = ()  # fixed sampling shares, (task, share)
    sample_per: str = "step"  # draw a task per optimizer step or per micro-batch (data.sampler.StepSchedule)
    # Micro-batches of rows of similar length (data.sampler.RowBatcher's group_by_length): less padding.
    group_by_length: bool = False


@dataclass(frozen=True)
class InitHeads:
    """A staged recipe's hand-over: this job's heads start from heads saved in ``source``
    (a ``phase2/.../model`` export); ``heads`` pairs (this job's head, the saved head)."""

    source: str
    heads: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Identity:
    """The graph node a job belongs to, its key, and the flattened config slice behind the key
    (dotted key -> value, as JSON) so that a mismatch can name the keys that changed."""

    node: str
    key: str
    config_json: str = "{}"

    @property
    def config(self) -> dict[str, Any]:
        return json.loads(self.config_json)


@dataclass(frozen=True)
class TrainJob:
    phase: str  # "intermediate", "finetune", "scale", "bench": a label for logs and summaries
    run_dir: str
    export_dir: str
    encoder: str
    tokenizer: str
    head_dropout: float
    tasks: tuple[TaskInput, ...]
    optim: Optim
    ds_config_json: str
    total_steps: int
    log_every: int
    checkpoint_every: int
    eval_every: int | None
    eval_batch: int
    identity: Identity | None = None
    init_heads: InitHeads | None = None
    export: bool = True  # False: throughput runs that keep no model

    @property
    def ds_config(self) -> dict[str, Any]:
        return json.loads(self.ds_config_json)

    @property
    def task_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tasks)

    def task(self, name: str) -> TaskInput:
        for t in self.tasks:
            if t.name == name:
                return t
        raise KeyError(name)

    @property
    def train_batch_size(self) -> int:
        return int(self.ds_config["train_batch_size"])


@dataclass(frozen=True)
class EvalItem:
    """One zero-shot evaluation: a task scored in each language of ``splits`` (language ->
    feature-cache path) with the model in ``model_dir`` (retrieval: an encoder and its
    ``layer``; BUCC also tunes its threshold on ``dev``)."""

    task: str
    model_dir: str
    splits: tuple[tuple[str, str], ...]
    layer: int | None = None
    dev: str | None = None


@dataclass(frozen=True)
class EvalJob:
    run_dir: str
    evaluations: tuple[EvalItem, ...]
    batch_size: int
    identity: Identity | None = None


# Written by rank 0 into a stage's run_dir when it ends: {node, key, attempt, started, finished}.
FINISHED = "FINISHED.json"


@dataclass(frozen=True)
class StagedJob:
    """Several jobs run one after another by one worker group: the per-fit fixed cost (worker
    start, process group, imports) is paid once. A stage whose ``<run_dir>/FINISHED.json``
    carries this attempt's ``attempt`` is skipped after a restart."""

    stages: tuple[TrainJob | EvalJob, ...]
    attempt: str = field(default="")


Job = TrainJob | EvalJob | StagedJob
