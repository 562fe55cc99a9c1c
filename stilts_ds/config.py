"""The typed experiment config: YAML -> frozen dataclasses, validated before any worker starts.

    cfg = load_config("configs/quickstart.yaml")
    cfg.intermediate.tasks        # ('anli_plus', ..., 'ccg')
    cfg.to_dict()                 # plain dict, the form passed to Ray Train workers

Every field's ``help`` metadata is its documentation. ``__post_init__`` rejects
contradictions with a message that names the option and the fix; unknown keys are errors
(a typo must not silently fall back to a default).
"""
from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from stilts_ds.errors import StiltsError
from stilts_ds.precision import PRECISIONS

SAMPLING = ("proportional", "temperature", "uniform")
SCHEDULES = ("linear", "constant")
EPOCH_ROWS = ("tasks", "all")
SELECT_ON = ("training_task", "target")
# The (split, language) phase 2 selects its model on: English dev, as XTREME's zero-shot
# protocol does; whose dev set is FinetuneConfig.selection_task's answer.
SELECTION_SPLIT = ("validation", "en")
MAX_SEED = 2**31  # seeds: numpy takes seeds below 2**32, and epoch e of a run is seeded seed + e


class ConfigError(StiltsError):
    pass


def _help(text: str, default=dataclasses.MISSING, factory=dataclasses.MISSING):
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata={"help": text})
    return field(default=default, metadata={"help": text})


@dataclass(frozen=True)
class ModelConfig:
    encoder: str = _help("Hub id, local Hugging Face directory, or the preset 'tiny' (random weights).",
                         "FacebookAI/xlm-roberta-large")
    tokenizer: str | None = _help("Hub id or directory of a fast tokenizer, or 'bundled'; default: the encoder's.", None)
    head_dropout: float = _help("Dropout inside the task heads.", 0.1)

    def tokenizer_name(self) -> str:
        return self.tokenizer or self.encoder


@dataclass(frozen=True)
class DataConfig:
    source: str = _help("'hub' (the real data) or 'local' (data_dir, or the bundled fixtures).", "hub")
    data_dir: str | None = _help("Local data root: <dir>/<task>/<split>[.<lang>].jsonl.", None)
    max_length: int = _help("Tokens per row for non-QA tasks (the paper: 256).", 256)
    qa_max_length: int = _help("Tokens per window for span QA (the paper: 384).", 384)
    cache_dir: str | None = _help("Feature cache; default <output_dir>/cache.", None)
    local_tasks: Mapping[str, str] = _help(
        "Tasks read from a local data root whatever `source` says, {task: dir} (CCGbank, Mewsli-X, LAReQA, "
        "translated copies: data with no hub copy). A key without '@' covers the task's translated copies too.",
        factory=dict)

    def __post_init__(self):
        if self.source not in ("hub", "local"):
            raise ConfigError(f"data.source must be 'hub' or 'local', not {self.source!r}")
        if not isinstance(self.local_tasks, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in self.local_tasks.items()):
            raise ConfigError("data.local_tasks must map task names to directories, e.g. {ccg: /data/ccgbank}")
        object.__setattr__(self, "local_tasks", dict(self.local_tasks))
        if self.max_length < 16 or self.qa_max_length < 16:
            raise ConfigError("data.max_length and data.qa_max_length must be at least 16")

    def source_of(self, task: str) -> tuple[str, str | None]:
        """(source, data_dir) that ``task`` is read from."""
        for key in (task, task.split("@")[0]):
            if key in self.local_tasks:
                return "local", self.local_tasks[key]
        return self.source, self.data_dir


@dataclass(frozen=True)
class ClusterConfig:
    num_workers: int = _help("DeepSpeed ranks (Ray Train workers).", 1)
    use_gpu: bool = _help("One GPU per worker.", True)
    cpus_per_worker: float = _help("CPUs reserved per worker.", 1.0)
    placement_strategy: str = _help("Ray placement: PACK, SPREAD or STRICT_SPREAD (one worker per node).", "PACK")
    multi_node: bool = _help("The job spans several nodes: storage_path must be shared storage.", False)
    storage_path: str | None = _help(
        "Where Ray Train keeps checkpoints and results (S3/GCS/NFS for multi-node); default <output_dir>/ray.", None)
    max_failures: int = _help("Worker failures Ray Train recovers from (restart from the last checkpoint).", 1)
    ray_address: str | None = _help(
        "Ray cluster address; default: RAY_ADDRESS (`ray submit` and tools/run_study.py set it), else the Ray "
        "cluster already running on this machine, else a new one started here.", None)
    max_concurrent_jobs: int | None = _help(
        "Training and evaluation jobs running side by side (each its own TorchTrainer fit and placement group). "
        "Unset: as many as the cluster's free workers hold now. Set: up to this many, even beyond the workers "
        "there are now (their placement groups wait, and an autoscaling cluster sees the demand and grows). "
        "Many concurrent Ray Train runs are heavy on the head node (ray-project/ray #65443): keep it modest.", None)
    fuse_stages: str = _help(
        "Run an arm's jobs one after another inside one worker group (one fit instead of one per job, saving "
        "Ray Train's fixed start-up cost per job): 'auto' does when the cluster cannot run two jobs side by "
        "side, 'always', or 'never'.", "auto")

    def __post_init__(self):
        if self.num_workers < 1:
            raise ConfigError("cluster.num_workers must be at least 1")
        if self.max_concurrent_jobs is not None and self.max_concurrent_jobs < 1:
            raise ConfigError("cluster.max_concurrent_jobs must be at least 1 (or null: no cap)")
        if self.fuse_stages not in ("auto", "always", "never"):
            raise ConfigError(f"cluster.fuse_stages must be auto, always or never, not {self.fuse_stages!r}")
        if self.placement_strategy not in ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"):
            raise ConfigError(f"cluster.placement_strategy {self.placement_strategy!r} is not a Ray strategy")
        if self.multi_node and not self.storage_path:
            raise ConfigError(
                "cluster.multi_node is set but cluster.storage_path is empty: a multi-node run needs shared "
                "storage every node can reach (s3://..., gs://..., or an NFS path)")
        if self.multi_node and self.storage_path and "://" not in self.storage_path \
                and not self.storage_path.startswith("/"):
            raise ConfigError(f"cluster.storage_path {self.storage_path!r} must be absolute or a URI on multi-node runs")


@dataclass(frozen=True)
class DeepSpeedConfig:
    base: str = _help("A ds_configs/ name (zero1, zero2, zero3, zero2_offload) or a JSON path.", "zero2")
    precision: str = _help("fp32, fp16 or bf16.", "bf16")

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ConfigError(f"deepspeed.precision must be one of {PRECISIONS}, not {self.precision!r}")


@dataclass(frozen=True)
class TrainConfig:
    """One training phase: the batch, schedule and sampling of its tasks."""

    tasks: tuple[str, ...] = _help("Tasks trained together (one head each); one task = single-task.", ())
    epochs: float = _help(
        "Passes over the training data (which rows count: epoch_rows); optimizer steps = epochs x counted rows / "
        "global_batch / the counted tasks' sampling share, rounded up per epoch.", 3.0)
    epoch_rows: str = _help(
        "The rows an epoch counts. 'tasks' (jiant's recipe): the rows of the phase's tasks, not MLM's text blocks "
        "(formats that do not count toward epochs), which train as an extra sampling share on top: with weights "
        "{mlm: 0.2} the steps grow by 1/0.8, so each task still gets `epochs` passes in expectation. 'all': every "
        "row of every task, MLM blocks included (stilts-ds before this option: more MLM text, more steps).", "tasks")
    max_steps: int | None = _help("Optimizer steps; overrides epochs when set.", None)
    micro_batch: int | None = _help("Rows per worker per forward pass.", 4)
    grad_accum: int | None = _help("Micro-batches per optimizer step.", None)
    global_batch: int | None = _help("Rows per optimizer step over all workers (micro x accum x workers).", None)
    lr: float = _help("Peak learning rate (the paper: 1e-5).", 1e-5)
    warmup_ratio: float = _help("Share of steps spent warming up (the paper: 0.1).", 0.1)
    schedule: str = _help("linear (warmup then linear decay) or constant.", "linear")
    weight_decay: float = _help("AdamW weight decay.", 0.01)
    sampling: str = _help("Multi-task sampling: proportional, temperature or uniform.", "proportional")
    sample_per: str = _help(
        "How often a task is drawn. 'step' (jiant's recipe): one task per optimizer step, every gradient-"
        "accumulation micro-batch of the step (on every worker) from it, so a global batch trains the same rows "
        "whatever the workers x accumulation split. 'micro_batch': one task per micro-batch (stilts-ds before this "
        "option; one step may then mix tasks).", "step")
    group_by_length: bool = _help(
        "Build each micro-batch from rows of similar length (Hugging Face's group_by_length), so collation pads "
        "less: each epoch's shuffled rows are sorted by length in windows of 50 optimizer-step batches, cut into "
        "step batches, and those shuffled. Still seeded, resumable, every row once per epoch, and 1 worker x "
        "accumulation 2 trains the same steps as 2 workers x 1 (tools/bench_length_grouped.py measures it).", False)
    temperature: float = _help("Temperature of 'temperature' sampling.", 2.0)
    sampling_cap: int | None = _help("Examples counted per task at most when weighting (cap on huge tasks).", None)
    weights: Mapping[str, float] = _help(
        "Fixed sampling shares for some tasks (e.g. {mlm: 0.2}: a fifth of the draws, so of the optimizer steps "
        "under sample_per: step); the other tasks share the rest by `sampling`. MLM's share comes on top of the "
        "tasks' epochs (epoch_rows).",
        factory=dict)
    seed: int = _help("Seed of sampling, shuffling and head initialisation.", 42)
    checkpoint_every: int = _help("Optimizer steps between checkpoints (the newest two are kept).", 500)
    log_every: int = _help("Optimizer steps between TensorBoard points.", 10)
    eval_every: int | None = _help(
        "Phase 2: optimizer steps between model-selection evaluations on English dev (which dev set: "
        "finetune.select_on); default: once per epoch.", None)

    def __post_init__(self):
        object.__setattr__(self, "tasks", tuple(self.tasks))
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {SCHEDULES}, not {self.schedule!r}")
        if self.sampling not in SAMPLING:
            raise ConfigError(f"sampling must be one of {SAMPLING}, not {self.sampling!r}")
        from stilts_ds.data.sampler import SAMPLE_PER  # the schedule's own list

        if self.sample_per not in SAMPLE_PER:
            raise ConfigError(f"sample_per must be one of {SAMPLE_PER}, not {self.sample_per!r}")
        if self.epoch_rows not in EPOCH_ROWS:
            raise ConfigError(f"epoch_rows must be one of {EPOCH_ROWS}, not {self.epoch_rows!r}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"max_steps must be at least 1, not {self.max_steps} (leave it out to train by epochs)")
        if self.max_steps is None and self.epochs <= 0:
            raise ConfigError("set epochs > 0 or max_steps")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError("warmup_ratio must be in [0, 1)")
        if not 0 < self.lr < 1:
            raise ConfigError(f"lr must be a positive learning rate below 1, not {self.lr} (the paper: 1e-5)")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must not be negative, not {self.weight_decay}")
        if self.checkpoint_every < 1 or self.log_every < 1:
            raise ConfigError("checkpoint_every and log_every must be at least 1")
        object.__setattr__(self, "weights", dict(self.weights))
        if self.weights and self.tasks:  # the sampler's own check, run here so it fails at load time
            from stilts_ds.data.sampler import SamplerError, check_fixed_shares

            try:
                check_fixed_shares(self.weights, self.tasks)
            except SamplerError as e:
                raise ConfigError(str(e)) from None

    def override(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def batch(self, world_size: int) -> tuple[int, int, int]:
        """(global batch, micro-batch, grad accumulation) at ``world_size`` workers; a
        StiltsError naming the numbers when no exact split exists. With only micro_batch
        set, each worker takes one micro-batch per step."""
        from stilts_ds.batch import resolve_batch

        accum = self.grad_accum if (self.grad_accum or self.global_batch) else 1
        return resolve_batch(self.global_batch, self.micro_batch, accum, world_size)

    def steps(self, rows: Mapping[str, int], world_size: int) -> "TrainSteps":
        """The optimizer steps of this phase over ``rows`` ({task: training rows}) at
        ``world_size`` workers: the one place the study (``Study.build_job``) and the planner
        (``stilts-ds plan``) compute them. With ``epoch_rows: tasks`` an epoch is the rows of
        the tasks whose format counts toward epochs (``TaskSpec.counts_toward_epochs``: not
        MLM's text), trained over the share of draws the sampler gives those tasks."""
        from stilts_ds.batch import train_steps
        from stilts_ds.tasks.registry import get_task

        global_batch, micro, accum = self.batch(world_size)
        counted = {t: n for t, n in rows.items() if self.epoch_rows == "all" or get_task(t).counts_toward_epochs}
        share = 1.0
        if counted and len(counted) < len(rows):
            share = sum(w for t, w in self.sampling_weights(rows).items() if t in counted)
        elif not counted:  # only text (an MLM-only phase): an epoch is its rows
            counted = dict(rows)
        total, per_epoch = train_steps(rows=sum(counted.values()), global_batch=global_batch, epochs=self.epochs,
                                       max_steps=self.max_steps, share=share)
        return TrainSteps(total=total, per_epoch=per_epoch, global_batch=global_batch, micro_batch=micro,
                          grad_accum=accum, counted_rows=sum(counted.values()), share=share)

    def sampling_weights(self, rows: Mapping[str, int]) -> dict[str, float]:
        """The sampler's probabilities for tasks of ``rows`` training rows (what the worker draws from)."""
        from stilts_ds.data.sampler import task_weights

        return task_weights(dict(rows), self.sampling, temperature=self.temperature, cap=self.sampling_cap,
                            fixed=dict(self.weights) or None)


@dataclass(frozen=True)
class TrainSteps:
    """A training phase's step arithmetic (``TrainConfig.steps``)."""

    total: int  # optimizer steps
    per_epoch: int  # optimizer steps of one epoch (the default eval_every)
    global_batch: int
    micro_batch: int
    grad_accum: int
    counted_rows: int  # rows one epoch counts
    share: float  # the share of draws those rows' tasks get


@dataclass(frozen=True)
class FinetuneConfig:
    """Phase 2: one run per target task, each from the phase-1 encoder with a fresh head
    (or, for a staged recipe, from the previous stage's encoder and head)."""

    tasks: tuple[str, ...] = _help("XTREME tasks fine-tuned on their English training data.", ())
    defaults: TrainConfig = _help("Recipe shared by every target task.", factory=TrainConfig)
    per_task: Mapping[str, Mapping[str, Any]] = _help(
        "Per-task overrides of `defaults` (epochs, batch, lr); also keyed by a stage task (siqa).", factory=dict)
    staged: bool = _help("Follow the official multi-stage recipes (XTREME-R: xcopa trains on SIQA, then "
                         "COPA); false trains each task on its own data only.", True)
    select_on: str = _help(
        "Which English dev set picks each run's best checkpoint. 'training_task' (jiant's xtreme_runconfig_writer): "
        "the dev set of the task whose data trains it, so xnli (trained on MNLI) selects on MNLI's dev set "
        "(validation_matched) and xquad and mlqa (trained on SQuAD v1.1) on SQuAD v1.1's, each scored by that "
        "task's metric; the other tasks train on their own data and select on their own English dev. 'target': "
        "every task on its own English dev (XNLI, MLQA, XQuAD English; stilts-ds before this option).",
        "training_task")

    def __post_init__(self):
        object.__setattr__(self, "tasks", tuple(self.tasks))
        valid = {f.name for f in dataclasses.fields(TrainConfig)}
        staged = {s for t in self.tasks for s in self.stages(t)[:-1]}
        for task, changes in self.per_task.items():
            if task not in self.tasks and task not in staged:
                also = f" or a stage of one ({', '.join(sorted(staged))})" if staged else ""
                raise ConfigError(f"finetune.per_task names {task!r}, which is not in finetune.tasks{also}")
            bad = set(changes) - valid
            if bad:
                raise ConfigError(f"finetune.per_task.{task}: unknown option(s) {sorted(bad)}; valid: {sorted(valid)}")
        if self.select_on not in SELECT_ON:
            raise ConfigError(f"finetune.select_on must be one of {SELECT_ON}, not {self.select_on!r}")

    def selection_task(self, task: str) -> str:
        """The task whose English ``validation`` split selects ``task``'s best checkpoint (see
        ``select_on``); the one answer the study graph, the jobs and the planner use."""
        from stilts_ds.tasks.registry import get_task

        if self.select_on == "target":
            return task
        return get_task(task).selected_on or task

    def stages(self, task: str) -> tuple[str, ...]:
        """The tasks phase 2 trains for ``task``, in order, ending with ``task`` itself."""
        from stilts_ds.tasks.registry import get_task

        try:
            first = get_task(task).train_first if self.staged else ()
        except StiltsError:
            first = ()  # an unknown name: ExperimentConfig reports it, naming the option
        return (*first, task)

    def recipe(self, task: str) -> TrainConfig:
        return self.defaults.override(tasks=(task,), **dict(self.per_task.get(task, {})))


@dataclass(frozen=True)
class EvaluateConfig:
    tasks: tuple[str, ...] = _help("XTREME tasks evaluated zero-shot in every language they have.", ())
    split: str = _help("Split scored in every language (test; validation for quick looks).", "test")
    batch_size: int = _help("Rows per worker per evaluation forward pass.", 32)
    retrieval_layer: int | None = _help("Hidden layer for bucc/tatoeba embeddings; default 14/24 of the depth.", None)

    def __post_init__(self):
        object.__setattr__(self, "tasks", tuple(self.tasks))
        if self.split not in ("test", "validation"):
            raise ConfigError(f"evaluate.split must be 'test' or 'validation', not {self.split!r}")
        if self.batch_size < 1:
            raise ConfigError("evaluate.batch_size must be at least 1")


@dataclass(frozen=True)
class BenchConfig:
    """The study's serving benchmark (graph nodes ``bench/<arm>/<task>``): each arm's
    fine-tuned model of each task in ``tasks`` through the inference engines, throughput,
    latency and the task's score through each, every configuration timed ``repeats`` times, on
    each language of ``languages`` the task has."""

    XTREME_R = "xtreme-r"  # tasks: every XTREME-R task the study fine-tunes and scores

    enabled: bool = _help("Run the serving benchmark as part of the study.", True)
    arms: tuple[str, ...] | None = _help(
        "Arms whose models are served, each task by its own node bench/<arm>/<task>; default: every arm.", None)
    arm: str | None = _help("One arm to serve (the older spelling of arms: [<arm>]); not with arms.", None)
    tasks: object | None = _help(
        "Fine-tuned tasks whose models are served, each by its own node: a list, or 'xtreme-r' (every XTREME-R "
        "task the study fine-tunes and scores; those scored without a head, tatoeba, lareqa and mewslix, are "
        "listed as not timed); default: the arm's first pair-classification task.", None)
    task: str | None = _help("One task (the older spelling of tasks: [<task>]); not with tasks.", None)
    languages: object | None = _help(
        "Languages whose cached test features are timed (and scored), each its own rows: a list, or 'all' "
        "(every language of each task's eval split the study prepares); with several tasks, each task times "
        "the listed languages it has; default: [en].", None)
    lang: str | None = _help("One language (the older spelling of languages: [<lang>]); not with languages.", None)
    languages_arms: tuple[str, ...] | None = _help(
        "Arms timed on every language of `languages`; the other served arms are timed on English alone (the "
        "language RQ1 compares arms on). Serving cost per language depends on the tokenizer and the "
        "architecture, which every arm shares, so one arm's languages answer it; default: every served arm.", None)
    repeats: int = _help("Times each (engine, precision, batch size) is timed, each its own row: the report "
                         "shows their median and range.", 3)
    engines: tuple[str, ...] = _help("Engines: torch-eager, torch-sdpa, torch-compile, ds, ds-kernel.",
                                     ("torch-eager", "torch-sdpa", "ds", "ds-kernel"))
    precisions: tuple[str, ...] = _help("fp32, fp16, bf16.", ("fp32",))
    batch_sizes: tuple[int, ...] = _help("Throughput batch sizes; the largest is also the latency batch.", (1, 8))

    def __post_init__(self):
        object.__setattr__(self, "engines", tuple(self.engines))
        object.__setattr__(self, "precisions", tuple(self.precisions))
        object.__setattr__(self, "batch_sizes", tuple(int(b) for b in self.batch_sizes))
        bad = [p for p in self.precisions if p not in PRECISIONS]
        if bad:
            raise ConfigError(f"bench.precisions: {bad[0]!r} is not one of {PRECISIONS}")
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise ConfigError("bench.batch_sizes must list batch sizes of at least 1")
        # The older one-value spellings still load; both spellings at once would leave it
        # unclear which was meant, so that is refused rather than one silently winning.
        if self.arm is not None and self.arms is not None:
            raise ConfigError("bench.arm and bench.arms are both set: bench.arm serves one arm, bench.arms a list "
                              "of them; keep one (bench.arms: [<arm>] is the same as bench.arm: <arm>)")
        if self.arms is not None:
            object.__setattr__(self, "arms", tuple(self.arms))
            if not self.arms:
                raise ConfigError("bench.arms is empty: list arms to serve, leave it out for every arm, or set "
                                  "bench.enabled: false")
        if self.task is not None and self.tasks is not None:
            raise ConfigError("bench.task and bench.tasks are both set: bench.task serves one task, bench.tasks a "
                              "list of them (or 'xtreme-r'); keep one (bench.tasks: [<task>] is the same as "
                              "bench.task: <task>)")
        tasks = self.tasks
        if isinstance(tasks, str):
            if tasks != self.XTREME_R:
                raise ConfigError(f"bench.tasks: expected a list of task names or {self.XTREME_R!r}, got {tasks!r} "
                                  f"(one task: bench.tasks: [{tasks}])")
        elif tasks is not None:
            if not isinstance(tasks, (list, tuple)) or not tasks or not all(isinstance(t, str) for t in tasks):
                raise ConfigError(f"bench.tasks: expected a non-empty list of task names or {self.XTREME_R!r}, "
                                  f"got {self.tasks!r}")
            if self.XTREME_R in tasks:
                raise ConfigError(f"bench.tasks: {self.XTREME_R!r} already means every XTREME-R task; got "
                                  f"{list(tasks)}")
            twice = sorted({t for t in tasks if list(tasks).count(t) > 1})
            if twice:
                raise ConfigError(f"bench.tasks lists {', '.join(twice)} more than once")
            object.__setattr__(self, "tasks", tuple(tasks))
        if self.lang is not None and self.languages is not None:
            raise ConfigError("bench.lang and bench.languages are both set: bench.lang is one language, "
                              "bench.languages a list of them (or 'all'); keep one")
        langs = self.languages
        if isinstance(langs, str):
            langs = (langs,)
        if langs is not None:
            if not isinstance(langs, (list, tuple)) or not langs or not all(isinstance(x, str) for x in langs):
                raise ConfigError(f"bench.languages: expected a list of language codes or 'all', got {self.languages!r}")
            langs = tuple(langs)
            if "all" in langs and len(langs) > 1:
                raise ConfigError(f"bench.languages: 'all' already means every language; got {list(langs)}")
            object.__setattr__(self, "languages", langs)
        if isinstance(self.repeats, bool) or not isinstance(self.repeats, int) or self.repeats < 1:
            raise ConfigError(f"bench.repeats must be an integer of at least 1, got {self.repeats!r}")
        if self.languages_arms is not None:
            arms = self.languages_arms
            if isinstance(arms, str) or not isinstance(arms, (list, tuple)) or not arms or \
                    not all(isinstance(a, str) for a in arms):
                raise ConfigError(f"bench.languages_arms: expected a non-empty list of arm names, got {arms!r}")
            object.__setattr__(self, "languages_arms", tuple(arms))

    def served_arms(self) -> tuple[str, ...] | None:
        """The arms named to be served (``arms``, or ``arm`` alone); None: every arm."""
        return self.arms if self.arms is not None else ((self.arm,) if self.arm is not None else None)

    def named_tasks(self) -> tuple[str, ...] | str | None:
        """The tasks named to be served: a tuple (``tasks``, or ``task`` alone), ``"xtreme-r"``,
        or None (the default: each arm's first pair-classification task)."""
        if self.tasks is not None:
            return self.tasks
        return (self.task,) if self.task is not None else None

    def langs(self, available, arm: str | None = None) -> tuple[str, ...]:
        """The languages to time for ``arm``, given the task's eval-split languages the study
        prepares: English alone for an arm ``languages_arms`` leaves out."""
        if arm is not None and self.languages_arms is not None and arm not in self.languages_arms:
            return ("en",)
        langs = self.languages or ((self.lang,) if self.lang is not None else ("en",))
        return tuple(available) if langs == ("all",) else langs


@dataclass(frozen=True)
class ThroughputEntry:
    """Training throughput of one model at one sequence length, per GPU, and where it comes from."""

    model: str
    length: int
    samples_per_s: float
    source: str
    micro_batch: int | None = None  # rows per GPU per step it was measured at (None: any)


@dataclass(frozen=True)
class PlanConfig:
    """What `stilts-ds plan` predicts from: training throughput per GPU by model and length
    (replace estimates with `stilts-ds scale` measurements), and fixed costs."""

    throughput: tuple[ThroughputEntry, ...] = _help(
        "Training samples/s per GPU: [{model, length, samples_per_s, source, micro_batch?}, ...].", ())
    eval_speedup: float = _help("How much faster a forward-only (evaluation) row is than a training row.", 3.0)
    fit_overhead_s: float = _help("Fixed seconds per launched job (worker start, model load, export).", 60.0)

    def __post_init__(self):
        entries = []
        for i, e in enumerate(self.throughput):
            if isinstance(e, ThroughputEntry):
                entries.append(e)
                continue
            if not isinstance(e, Mapping):
                raise ConfigError(f"plan.throughput[{i}]: expected a mapping {{model, length, samples_per_s, source}}")
            missing = {"model", "length", "samples_per_s", "source"} - set(e)
            unknown = set(e) - {f.name for f in dataclasses.fields(ThroughputEntry)}
            if missing or unknown:
                raise ConfigError(f"plan.throughput[{i}]: missing {sorted(missing)}" if missing else
                                  f"plan.throughput[{i}]: unknown option(s) {sorted(unknown)}")
            try:
                entry = ThroughputEntry(model=str(e["model"]), length=int(e["length"]),
                                        samples_per_s=float(e["samples_per_s"]), source=str(e["source"]),
                                        micro_batch=None if e.get("micro_batch") is None else int(e["micro_batch"]))
            except (TypeError, ValueError) as err:
                raise ConfigError(f"plan.throughput[{i}]: {err}") from None
            if entry.samples_per_s <= 0 or entry.length < 1:
                raise ConfigError(f"plan.throughput[{i}]: samples_per_s and length must be positive")
            entries.append(entry)
        object.__setattr__(self, "throughput", tuple(entries))
        if self.eval_speedup <= 0 or self.fit_overhead_s < 0:
            raise ConfigError("plan.eval_speedup must be positive and plan.fit_overhead_s not negative")


@dataclass(frozen=True)
class ExperimentConfig:
    name: str = _help("Run name; the Ray Train run names derive from it.", "study")
    output_dir: str = _help("Run directory: exports, results, TensorBoard logs, merged DeepSpeed configs.", "runs/study")
    model: ModelConfig = _help("Encoder and tokenizer.", factory=ModelConfig)
    data: DataConfig = _help("Data source and lengths.", factory=DataConfig)
    cluster: ClusterConfig = _help("Ray Train scaling.", factory=ClusterConfig)
    deepspeed: DeepSpeedConfig = _help("ZeRO stage/offload and precision.", factory=DeepSpeedConfig)
    intermediate: TrainConfig | None = _help("Phase 1 (none: fine-tune the pretrained encoder directly).", None)
    finetune: FinetuneConfig = _help("Phase 2.", factory=FinetuneConfig)
    evaluate: EvaluateConfig = _help("Phase 3.", factory=EvaluateConfig)
    bench: BenchConfig = _help("The serving benchmark of one fine-tuned model (graph node `bench`).",
                               factory=BenchConfig)
    plan: PlanConfig = _help("Throughput table and fixed costs `stilts-ds plan` predicts from.", factory=PlanConfig)
    arms: Mapping[str, Mapping[str, Any]] = _help(
        "Named arms of the study, each a set of overrides of this config (e.g. {english-multi: {}, "
        "plus-mlm: {intermediate: {tasks: [..., mlm]}}}); each arm runs the three phases under "
        "<output_dir>/arms/<arm>. An arm may carry a `description`.", factory=dict)
    skip_tasks: tuple[str, ...] = _help(
        "Tasks left out of every task list of this config and of its arms (a translated copy such as "
        "mnli@de goes with its base task); an arm left with no intermediate task is dropped. For example "
        "[ccg] runs a study without CCGbank: --set skip_tasks=[ccg].", ())
    seeds: tuple[int, ...] | None = _help(
        "Training seeds, e.g. [1, 2, 3]: every arm's phase 1 and phase-2 runs train once per seed (each seed "
        "sets intermediate.seed and every finetune seed), side by side, under <arm run dir>/seeds/<seed>/, and "
        "the arm's results.json is the mean over the seeds with their sample standard deviation. Leave it out "
        "for one run at the configured seeds (the layout and node ids without seeds/).", None)

    def __post_init__(self):
        from stilts_ds.tasks.registry import get_task

        self._check_seeds()

        for phase, tasks, kind in (("intermediate", self.intermediate.tasks if self.intermediate else (), None),
                                   ("finetune", self.finetune.tasks, "xtreme"),
                                   ("evaluate", self.evaluate.tasks, "xtreme")):
            for name in tasks:
                try:
                    spec = get_task(name)
                except StiltsError as e:
                    raise ConfigError(f"{phase}.tasks: {e}") from None
                if kind and spec.kind != kind:
                    users = [t for t in self.finetune.tasks if name in self.finetune.stages(t)[:-1]]
                    hint = (f"; it is a stage of {', '.join(users)}'s recipe and runs with it (finetune.staged)"
                            if users else "")
                    raise ConfigError(f"{phase}.tasks: {name!r} is not an XTREME task{hint}")
                if phase in ("intermediate", "finetune") and "train" not in spec.splits:
                    raise ConfigError(f"{phase}.tasks: {name!r} has no training data (it is scored from the "
                                      "phase-1 encoder); list it under evaluate.tasks only")
        for name in self.data.local_tasks:
            try:
                get_task(name)
            except StiltsError as e:
                raise ConfigError(f"data.local_tasks: {e}") from None
        if self.intermediate is not None and not self.intermediate.tasks:
            raise ConfigError("intermediate.tasks is empty: list tasks, or remove the intermediate section")
        if not isinstance(self.arms, Mapping):
            raise ConfigError(f"arms: expected a mapping of arm name -> overrides, got {type(self.arms).__name__}")
        self._check_batches()  # before the arms: a base-config error is named as such
        object.__setattr__(self, "arms", {k: (v or {}) for k, v in self.arms.items()})
        # Built here so that a bad arm fails at load time, naming the arm and the option.
        object.__setattr__(self, "_arms", {name: self._arm(name, changes) for name, changes in self.arms.items()})
        named = self.bench.served_arms() or ()
        unknown = [a for a in named if a not in self.arms]
        if unknown:
            option = "bench.arms" if self.bench.arms is not None else "bench.arm"
            raise ConfigError(f"{option}: {unknown[0]!r} is not an arm of this config"
                              + (f" ({', '.join(self.arms)})" if self.arms else " (it declares none)"))
        # (An arm's own config has no arms: the root config checked the names.)
        stray = [a for a in (self.bench.languages_arms or ()) if a not in self.arms or (named and a not in named)]
        if stray and self.arms:
            raise ConfigError(f"bench.languages_arms: {stray[0]!r} is not a served arm of this config "
                              f"({', '.join(named or self.arms) or 'it declares none'})")
        if self.bench.task is not None and self.bench.task not in self.finetune.tasks and not self.arms:
            raise ConfigError(f"bench.task {self.bench.task!r} is not in finetune.tasks: the bench serves a "
                              "fine-tuned model")

    def _check_seeds(self) -> None:
        if self.seeds is None:
            return
        seeds = tuple(self.seeds)
        if not seeds:
            raise ConfigError("seeds is an empty list: list one seed or more (e.g. [1, 2, 3]), or leave seeds out "
                              "for one run")
        bad = [s for s in seeds if not isinstance(s, int) or isinstance(s, bool) or not 0 <= s < MAX_SEED]
        if bad:
            # numpy takes seeds below 2**32, and the row batcher seeds epoch e with seed + e.
            raise ConfigError(f"seeds: {bad[0]!r} is not an integer in [0, {MAX_SEED})")
        repeated = sorted({s for s in seeds if seeds.count(s) > 1})
        if repeated:
            raise ConfigError(f"seeds lists {repeated[0]} more than once: a repeated seed is the same run twice, "
                              "and would count twice in the mean")
        object.__setattr__(self, "seeds", seeds)

    def seed_config(self, seed: int) -> "ExperimentConfig":
        """This config's run at training seed ``seed`` (one of ``seeds``): phase 1 and every
        phase-2 recipe train with it. It is named ``<name>-seed<seed>`` and lives in
        ``<run_dir>/seeds/<seed>/``; the feature cache and the Ray storage stay the config's
        own (features do not depend on the seed). Its own ``seeds`` is unset: it is one run."""
        if self.seeds is None or seed not in self.seeds:
            raise ConfigError(f"seed {seed} is not one of this config's seeds ({self.seeds})")
        inter = dataclasses.replace(self.intermediate, seed=seed) if self.intermediate is not None else None
        finetune = dataclasses.replace(self.finetune, defaults=self.finetune.defaults.override(seed=seed))
        # arms and bench go: a seed's run is one arm's (or the config's) three phases, nothing more.
        return dataclasses.replace(
            self, name=f"{self.name}-seed{seed}", output_dir=str(self.run_dir / "seeds" / str(seed)), seeds=None,
            intermediate=inter, finetune=finetune, arms={},
            bench=dataclasses.replace(self.bench, arm=None, arms=None, task=None),
            data=dataclasses.replace(self.data, cache_dir=str(self.cache_dir())),
            cluster=dataclasses.replace(self.cluster, storage_path=self.storage_path()))

    def _check_batches(self) -> None:
        """Every training run's batch splits exactly over cluster.num_workers, checked at load
        time: otherwise a study would stop at the first such run, after others had run."""
        workers = self.cluster.num_workers
        runs = [("intermediate", self.intermediate)] if self.intermediate else []
        runs += [(f"finetune ({stage})", self.finetune.recipe(stage))
                 for task in self.finetune.tasks for stage in self.finetune.stages(task)]
        for where, train in runs:
            try:
                train.batch(workers)
            except StiltsError as e:
                raise ConfigError(
                    f"{where}: {e} (at cluster.num_workers={workers}: change the batch or the worker count)") from None

    def _arm(self, name: str, changes: Mapping[str, Any]) -> "Arm":
        where = f"arms.{name}"
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
            raise ConfigError(f"arms: arm name {name!r} must be letters, digits, '_', '.', '-' (it names a directory)")
        if not isinstance(changes, Mapping):
            raise ConfigError(f"{where}: expected a mapping of overrides, got {type(changes).__name__}")
        changes = dict(changes)
        description = changes.pop("description", "")
        if "seeds" in changes:
            raise ConfigError(f"{where}: seeds cannot be set per arm: every arm runs the study's seeds, so that the "
                              "arms compare over the same seeds (set the top-level seeds)")
        fixed = sorted({"arms", "name", "output_dir"} & set(changes))
        if fixed:
            raise ConfigError(f"{where}: {fixed} cannot be set per arm (the study names and places its arms)")
        base = self.to_dict()
        base.pop("arms")
        base["name"] = f"{self.name}-{name}"
        base["output_dir"] = str(self.run_dir / "arms" / name)
        # Arms share one feature cache: featurization does not depend on the arm.
        base["data"]["cache_dir"] = str(self.cache_dir())
        # The study's bench names arms of the study, not of the arm.
        base["bench"]["arm"] = base["bench"]["arms"] = None
        merged = _deep_merge(base, changes, where)
        try:
            # Not from_dict: the merged mapping carries every default seed of the base, which is
            # not the user setting one (the arm's own overrides were checked with the base's).
            cfg = _build(ExperimentConfig, _without_skipped(merged), "")
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None
        return Arm(name=name, description=str(description), config=cfg)

    def arm_configs(self) -> dict[str, "Arm"]:
        """{arm name: Arm}, in the order the config lists them (empty without arms)."""
        return dict(self._arms)

    # -- paths
    # Absolute paths: Ray workers run in their own working directories.
    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir).resolve()

    def cache_dir(self) -> Path:
        return Path(self.data.cache_dir).resolve() if self.data.cache_dir else self.run_dir / "cache"

    def storage_path(self) -> str:
        return self.cluster.storage_path or str((self.run_dir / "ray").resolve())

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Arm:
    """One arm of a study: its name, a line saying what it tests, and its full config."""

    name: str
    description: str
    config: ExperimentConfig

    @property
    def multilingual_data(self) -> tuple[str, ...]:
        """The non-English data phase 1 adds, as the task registry classes its tasks: "MLM"
        (continued masked language modelling, a multilingual task) and/or "translated" (copies
        of an intermediate task, which name their base task); () for English-only or no phase 1."""
        from stilts_ds.tasks.registry import get_task
        from stilts_ds.tasks.spec import MULTILINGUAL

        specs = [get_task(t) for t in (self.config.intermediate.tasks if self.config.intermediate else ())]
        return tuple(label for label, hit in (("MLM", any(s.kind == MULTILINGUAL for s in specs)),
                                              ("translated", any(s.base is not None for s in specs))) if hit)

    @property
    def multilingual(self) -> bool:
        """Whether phase 1 sees non-English data (``multilingual_data``)."""
        return bool(self.multilingual_data)


def _deep_merge(base: Mapping[str, Any], changes: Mapping[str, Any], where: str) -> dict:
    """``base`` with ``changes`` applied: mappings merge key by key, anything else replaces
    (a list of tasks is replaced, not extended; ``null`` removes an optional section)."""
    out = dict(base)
    for key, value in changes.items():
        if key not in base:
            valid = sorted(set(base) - {"name", "output_dir"})
            raise ConfigError(f"{where}: unknown option {key!r}; valid: {valid}")
        if isinstance(value, Mapping) and isinstance(base[key], Mapping) and key not in ("weights", "per_task"):
            out[key] = _deep_merge(base[key], value, f"{where}.{key}")
        elif isinstance(value, Mapping) and base[key] is None:
            out[key] = dict(value)
        else:
            out[key] = value
    return out


def _build(cls, data: Any, where: str):
    if data is None:
        return None
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(fields)
    if unknown:
        raise ConfigError(f"{where or 'config'}: unknown option(s) {sorted(unknown)}; valid: {sorted(fields)}")
    kwargs = {}
    hints = typing.get_type_hints(cls)
    for name, value in data.items():
        sub = _NESTED.get((cls, name))
        option = f"{where}.{name}".lstrip(".")
        kwargs[name] = _build(sub, value, option) if sub else _checked(value, hints[name], option)
    try:
        return cls(**kwargs)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}" if where else str(e)) from None
    except TypeError as e:
        raise ConfigError(f"{where or 'config'}: {e}") from None


def _checked(value: Any, hint, option: str) -> Any:
    """``value`` as the field's type, or a ConfigError naming the option. YAML 1.1 reads
    ``1e-5`` (no dot) as a string, so numeric strings are accepted for float fields."""
    args = typing.get_args(hint)
    if value is None:
        if type(None) in args:
            return None
        raise ConfigError(f"{option}: a value is required")
    base = next((a for a in args if a is not type(None)), hint) if args and type(None) in args else hint
    origin = typing.get_origin(base)
    if base is float:
        if isinstance(value, bool):
            raise ConfigError(f"{option}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{option}: expected a number, got {value!r}") from None
    if base is int and (not isinstance(value, int) or isinstance(value, bool)):
        raise ConfigError(f"{option}: expected an integer, got {value!r}")
    if base is bool and not isinstance(value, bool):
        raise ConfigError(f"{option}: expected true or false, got {value!r}")
    if base is str and not isinstance(value, str):
        raise ConfigError(f"{option}: expected a string, got {value!r}")
    if origin is tuple:
        item = (typing.get_args(base) or (str,))[0]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{option}: expected a list, got {value!r}")
        if item is str and not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{option}: expected a list of names, got {value!r}")
        if item is int and not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise ConfigError(f"{option}: expected a list of integers, got {value!r}")
    return value


_NESTED = {
    (ExperimentConfig, "model"): ModelConfig,
    (ExperimentConfig, "data"): DataConfig,
    (ExperimentConfig, "cluster"): ClusterConfig,
    (ExperimentConfig, "deepspeed"): DeepSpeedConfig,
    (ExperimentConfig, "intermediate"): TrainConfig,
    (ExperimentConfig, "finetune"): FinetuneConfig,
    (ExperimentConfig, "evaluate"): EvaluateConfig,
    (FinetuneConfig, "defaults"): TrainConfig,
    (ExperimentConfig, "bench"): BenchConfig,
    (ExperimentConfig, "plan"): PlanConfig,
}


class ConfigWarning(UserWarning):
    """A config that loads but may not do what was meant (the CLI prints these)."""


def from_dict(data: Mapping[str, Any]) -> ExperimentConfig:
    data = _without_skipped(data)
    _check_seed_options(data)
    return _build(ExperimentConfig, data, "")


def _seed_options(data: Mapping[str, Any]) -> list[str]:
    """The per-run seed options ``data`` sets itself (dotted names), its arms' included."""
    out: list[str] = []

    def scan(section: Any, where: str) -> None:
        if not isinstance(section, Mapping):
            return
        inter, finetune = section.get("intermediate"), section.get("finetune")
        if isinstance(inter, Mapping) and "seed" in inter:
            out.append(f"{where}intermediate.seed")
        if isinstance(finetune, Mapping):
            if isinstance(finetune.get("defaults"), Mapping) and "seed" in finetune["defaults"]:
                out.append(f"{where}finetune.defaults.seed")
            if isinstance(finetune.get("per_task"), Mapping):
                out.extend(f"{where}finetune.per_task.{task}.seed" for task, changes in finetune["per_task"].items()
                           if isinstance(changes, Mapping) and "seed" in changes)

    scan(data, "")
    if isinstance(data.get("arms"), Mapping):
        for name, changes in data["arms"].items():
            scan(changes, f"arms.{name}.")
    return out


def _check_seed_options(data: Mapping[str, Any]) -> None:
    """``seeds`` sets the seed of every training run: a per-run seed beside it would be
    silently overridden, so the two are refused together, naming both."""
    if not isinstance(data, Mapping) or data.get("seeds") is None:
        return
    options = _seed_options(data)
    if options:
        raise ConfigError(f"seeds and {', '.join(options)} are both set: seeds gives phase 1 and every phase-2 run "
                          f"of each seed its seed; remove {', '.join(options)}, or seeds for one run at those seeds")


def _without_skipped(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """``data`` with ``skip_tasks`` removed from every task list, its own and its arms'.
    Done on the raw mapping, before validation, so that a skipped task is never looked for."""
    skip = data.get("skip_tasks") if isinstance(data, Mapping) else None
    if not skip:
        return data
    if not isinstance(skip, (list, tuple)) or not all(isinstance(t, str) for t in skip):
        raise ConfigError(f"skip_tasks: expected a list of task names, got {skip!r}")
    from stilts_ds.tasks.registry import get_task

    for name in skip:
        try:
            get_task(name)
        except StiltsError as e:
            raise ConfigError(f"skip_tasks: {e}") from None

    def kept(names):
        if not isinstance(names, (list, tuple)):
            return names  # not a list: left for validation to report
        out = []
        for name in names:
            try:
                spec = get_task(name)
            except StiltsError:
                out.append(name)  # unknown: validation names it with its option
                continue
            if (spec.base or spec.name) not in skip:
                out.append(name)
        return out

    def trim(section: Mapping[str, Any]) -> tuple[dict, bool]:
        """(section with the task lists trimmed, whether its intermediate tasks all went)."""
        section = dict(section)
        emptied = False
        for phase in ("intermediate", "finetune", "evaluate"):
            part = section.get(phase)
            if not isinstance(part, Mapping) or "tasks" not in part:
                continue
            part = dict(part)
            before = part["tasks"]
            part["tasks"] = kept(before)
            if phase == "intermediate" and before and not part["tasks"]:
                emptied = True
            for table in ("weights", "per_task"):
                if isinstance(part.get(table), Mapping):
                    part[table] = {k: v for k, v in part[table].items() if kept([k])}
            section[phase] = part
        return section, emptied

    out, emptied = trim(data)
    if emptied:
        raise ConfigError(f"skip_tasks {list(skip)} leaves intermediate.tasks empty: remove the intermediate "
                          "section for a study without phase 1, or skip fewer tasks")
    if isinstance(out.get("bench"), Mapping) and out["bench"].get("task") and not kept([out["bench"]["task"]]):
        out["bench"] = {**out["bench"], "task": None}
    if isinstance(out.get("data"), Mapping) and isinstance(out["data"].get("local_tasks"), Mapping):
        out["data"] = {**out["data"], "local_tasks": {k: v for k, v in out["data"]["local_tasks"].items()
                                                      if kept([k])}}
    if isinstance(out.get("arms"), Mapping):
        arms = {}
        for name, changes in out["arms"].items():
            if isinstance(changes, Mapping):
                changes, emptied = trim(changes)
                if emptied:
                    # Its intermediate tasks were all skipped: what is left would be a baseline
                    # under another name, so the arm goes (plan and status list arms).
                    continue
            arms[name] = changes
        out["arms"] = arms
        if isinstance(out.get("bench"), Mapping) and out["bench"].get("arm") not in (None, *arms):
            out["bench"] = {**out["bench"], "arm": None}
        if isinstance(out.get("bench"), Mapping) and isinstance(out["bench"].get("arms"), (list, tuple)):
            kept_arms = [a for a in out["bench"]["arms"] if a in arms]
            out["bench"] = {**out["bench"], "arms": kept_arms or None}
    return out


def _unreached(data: Mapping[str, Any], dotted: str) -> list[str]:
    """The arms of ``data`` that set ``dotted`` (or replace a section holding it) themselves,
    so that an override of the base config's ``dotted`` does not reach them."""
    arms = data.get("arms") if isinstance(data, Mapping) else None
    if not isinstance(arms, Mapping) or dotted.split(".")[0] == "arms":
        return []
    out = []
    for name, changes in arms.items():
        node = changes
        for key in dotted.split("."):
            if not isinstance(node, Mapping) or key not in node:
                break
            node = node[key]
            if node is None:  # the arm removes the section (a baseline): nothing to reach
                break
            if not isinstance(node, Mapping) or key == dotted.split(".")[-1]:
                out.append(name)
                break
    return out


def load_config(path: str | Path, overrides: Mapping[str, Any] | None = None) -> ExperimentConfig:
    """Read a YAML experiment config; ``overrides`` maps dotted keys to values (CLI --set)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{line}: not valid YAML ({getattr(e, 'problem', e)})") from None
    if not data:
        raise ConfigError(f"{path}: the config is empty; start from configs/quickstart.yaml or configs/paper.yaml")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections (model:, data:, ...), got a {type(data).__name__}")
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, leaf = dotted.split(".")
        for depth, key in enumerate(parents):
            if node.get(key) is None:
                node[key] = {}  # a section the file leaves out (or sets null) gets the override
            node = node[key]
            if not isinstance(node, dict):
                where = ".".join(parents[:depth + 1])
                raise ConfigError(f"--set {dotted}: {where} is {node!r} in {path}, not a section: "
                                  f"set {where} itself (--set {where}=...)")
        node[leaf] = value
        unreached = _unreached(data, dotted)
        if unreached:
            import warnings

            first = unreached[0]
            warnings.warn(ConfigWarning(
                f"--set {dotted} does not reach arm(s) {', '.join(unreached)} of {path}, which set it themselves; "
                f"set it per arm (--set arms.{first}.{dotted}=...)"
                + (" or leave a task out everywhere with --set skip_tasks=[...]" if dotted.endswith(".tasks") else "")),
                stacklevel=2)
    try:
        return from_dict(data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
