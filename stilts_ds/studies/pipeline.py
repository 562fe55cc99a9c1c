"""A study's configuration as the driver sees it: features, task heads and validated jobs,
and the phases as targets of the study graph.

    study = Study(load_config("configs/quickstart.yaml"))   # a config without arms (or one arm's)
    study.intermediate()          # phase 1 -> <output_dir>/phase1/encoder
    study.finetune("xnli")        # phase 2 -> <output_dir>/phase2/xnli/model (phase 1 first if needed)
    study.finetune("xcopa")       # staged: phase2/xcopa/stages/siqa/model, then phase2/xcopa/model
    study.evaluate()              # phase 3 -> <output_dir>/results.json, results.md
    study.run()                   # everything
    study.status()                # every node: done / stale (why) / pending / running, running nothing

Each call runs the targets of the study graph (``studies.graph``) that are not done, and what
they need, through ``studies.scheduler``; ``force`` reruns the targets themselves. Everything
that can be wrong is checked here, on the driver, before any worker starts: features are
prepared (training never tokenizes), batch arithmetic and the DeepSpeed config are merged
(contradictions raise), an exported encoder is checked against the configured architecture.
"""
from __future__ import annotations

import json
from pathlib import Path

import click

from stilts_ds.config import SELECTION_SPLIT, ExperimentConfig, TrainConfig
from stilts_ds.data.prepare import locate, prepare
from stilts_ds.data.sources import load_labels
from stilts_ds.engine import ds_config as dsc
from stilts_ds.engine.job import Head, Identity, InitHeads, Optim, TaskInput, TrainJob
from stilts_ds.errors import StiltsError
from stilts_ds.modeling import export
from stilts_ds.modeling.presets import PRESETS, load_tokenizer
from stilts_ds.studies import results as results_io
from stilts_ds.tasks.formats import format_of
from stilts_ds.tasks.registry import get_task


class Study:
    def __init__(self, cfg: ExperimentConfig, *, force: bool = False, in_process: bool = False,
                 progress: bool = True):
        self.cfg = cfg
        self.force = force
        self.in_process = in_process
        self.progress = progress
        self._tokenizer = None
        self._tokenizer_fp: str | None = None
        self._cautioned: set[str] = set()  # tasks whose hub caveat was said

    # ------------------------------------------------------------------ helpers
    @property
    def tokenizer(self):
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.cfg.model.tokenizer_name())
        return self._tokenizer

    def say(self, msg: str) -> None:
        if self.progress:
            click.echo(msg, err=True)

    def _max_length(self, spec) -> int:
        return format_of(spec).max_length(self.cfg.data.max_length, self.cfg.data.qa_max_length)

    @property
    def tokenizer_fp(self) -> str:
        from stilts_ds.data import cache

        if self._tokenizer_fp is None:
            self._tokenizer_fp = cache.tokenizer_fingerprint(self.tokenizer)
        return self._tokenizer_fp

    def features(self, task: str, split: str, lang: str) -> Path:
        """The cache entry of one split, featurized first if it is not there yet."""
        spec = get_task(task)
        source, data_dir = self.cfg.data.source_of(task)
        path, _ = locate(spec, split, lang, tokenizer_fp=self.tokenizer_fp, cache_dir=self.cfg.cache_dir(),
                         source=source, data_dir=data_dir, max_length=self._max_length(spec))
        if path.is_file():
            return path
        (item,) = prepare([spec], tokenizer=self.tokenizer, cache_dir=self.cfg.cache_dir(), source=source,
                          data_dir=data_dir, splits=[split], langs=[lang],
                          max_length=self._max_length(spec), progress=False)
        return item.path

    def prepare_all(self, specs) -> list:
        """Featurize every split of ``specs`` the data source has, at the study's lengths
        (one pass, one progress bar, per length)."""
        groups: dict[tuple, list] = {}
        for spec in specs:
            groups.setdefault((self._max_length(spec), *self.cfg.data.source_of(spec.name)), []).append(spec)
        done = []
        for (length, source, data_dir), group in groups.items():
            done += prepare(group, tokenizer=self.tokenizer, cache_dir=self.cfg.cache_dir(),
                            source=source, data_dir=data_dir, max_length=length, progress=self.progress)
        return done

    def _langs(self, task: str, split: str) -> list[str]:
        """Every language of the split; with local data, those that have a file."""
        spec = get_task(task)
        langs = list(spec.splits[split])
        source, data_dir = self.cfg.data.source_of(task)
        if source == "hub" and spec.hub_caveat and task not in self._cautioned:
            self._cautioned.add(task)
            self.say(f"{task}: {spec.hub_caveat}")
        if source == "hub" and spec.local_only_langs:
            skipped = [l for l in langs if l in spec.local_only_langs]
            if skipped:
                self.say(f"{task}: {', '.join(skipped)} have no hub copy and are left out; give their files with "
                         f"data.local_tasks: {{{task}: DIR}} to score them")
            langs = [l for l in langs if l not in spec.local_only_langs]
        if source == "local":
            from stilts_ds.data.sources import FIXTURES_DIR, local_splits

            present = set(local_splits(spec, Path(data_dir or FIXTURES_DIR)))
            langs = [l for l in langs if (split, l) in present]
        return langs

    def _head(self, task: str) -> dict:
        spec = get_task(task)
        labels = load_labels(spec, self.cfg.data.source_of(task)[1])
        return {"format": spec.format, "num_labels": format_of(spec).num_labels(spec, labels), "head": spec.head}

    def build_job(self, phase: str, train: TrainConfig, run_dir: Path, encoder: str, export_dir: Path,
                  with_dev: bool, *, identity: Identity | None = None, init_heads: InitHeads | None = None,
                  export: bool = True, features: dict[str, str] | None = None) -> TrainJob:
        """Everything a training worker needs, resolved and validated here. ``features``
        replaces tasks' training features (a throughput run's synthetic rows). ``with_dev``
        (phase 2): each task selects its best checkpoint on the English dev split of
        ``selection_task(task)`` (``finetune.select_on``)."""
        from stilts_ds.data import cache

        cfg = self.cfg
        world = cfg.cluster.num_workers
        tasks = []
        sizes: dict[str, int] = {}
        for task in train.tasks:
            path = (features or {}).get(task) or str(self.features(task, "train", get_task(task).train_language))
            head = Head(**self._head(task))
            dev_task = self.selection_task(task, head) if with_dev else None
            tasks.append(TaskInput(task, head, train=path, dev_task=dev_task,
                                   dev=str(self.features(dev_task, *SELECTION_SPLIT)) if with_dev else None))
            sizes[task] = len(cache.read(Path(path)))
        steps = train.steps(sizes, world)  # the planner's arithmetic too (TrainConfig.steps)
        global_batch, micro, accum, total = steps.global_batch, steps.micro_batch, steps.grad_accum, steps.total
        ds = dsc.merge_ds_config(
            cfg.deepspeed.base, global_batch=global_batch, micro_batch=micro, grad_accum=accum, world_size=world,
            lr=train.lr, warmup_ratio=train.warmup_ratio, total_steps=total, precision=cfg.deepspeed.precision,
            schedule=train.schedule, weight_decay=train.weight_decay)
        run_dir.mkdir(parents=True, exist_ok=True)
        dsc.write_merged(ds, run_dir)
        optim = Optim(seed=train.seed, lr=train.lr, weight_decay=train.weight_decay, sampling=train.sampling,
                      temperature=train.temperature, sampling_cap=train.sampling_cap,
                      weights=tuple(sorted(train.weights.items())), sample_per=train.sample_per,
                      group_by_length=train.group_by_length)
        return TrainJob(
            phase=phase, run_dir=str(run_dir.resolve()), export_dir=str(export_dir.resolve()), encoder=encoder,
            tokenizer=cfg.model.tokenizer_name(), head_dropout=cfg.model.head_dropout, tasks=tuple(tasks),
            optim=optim, ds_config_json=json.dumps(ds), total_steps=total, log_every=train.log_every,
            checkpoint_every=train.checkpoint_every,
            eval_every=train.eval_every or (steps.per_epoch if with_dev else None), eval_batch=cfg.evaluate.batch_size,
            identity=identity, init_heads=init_heads, export=export)

    def selection_task(self, task: str, head: dict | Head | None = None) -> str:
        """The task whose English dev split selects ``task``'s fine-tuned model
        (``finetune.select_on``: the training task's, mnli for xnli, or the target's own);
        refused unless its rows fit ``task``'s head (same format and label count)."""
        dev_task = self.cfg.finetune.selection_task(task)
        if dev_task != task:
            mine = head if head is not None else self._head(task)
            mine = mine if isinstance(mine, Head) else Head(**mine)
            theirs = Head(**self._head(dev_task))
            if (mine.format, mine.num_labels) != (theirs.format, theirs.num_labels):
                raise StiltsError(f"{task} would select its model on {dev_task}'s dev set, but {dev_task} is "
                                  f"{theirs.format} with {theirs.num_labels} labels and {task}'s head "
                                  f"{mine.format} with {mine.num_labels}: set finetune.select_on: target")
        return dev_task

    def _check_encoder(self, encoder: str) -> None:
        if Path(encoder).is_dir():
            preset = PRESETS.get(self.cfg.model.encoder)
            expected = preset["model_type"] if preset else None
            if expected is None and Path(self.cfg.model.encoder).is_dir():
                expected = export.load_encoder_config(self.cfg.model.encoder).model_type
            if expected:
                export.check_compatible(encoder, expected)

    # ------------------------------------------------------------------ the phases as graph targets
    def graph(self):
        from stilts_ds.studies.graph import build_graph

        return build_graph(self.cfg, with_study_nodes=False, use_arms=False)  # this config as one study

    def _run(self, targets: list[str] | None):
        from stilts_ds.studies.scheduler import Scheduler

        graph = self.graph()
        Scheduler(graph, in_process=self.in_process, force=(targets or list(graph.nodes)) if self.force else (),
                  say=self.say if self.progress else None).run(targets)
        return graph

    def intermediate(self) -> str:
        """Phase 1; returns the encoder the next phase starts from."""
        if self.cfg.intermediate is None:
            if self.cfg.model.encoder in PRESETS:
                raise StiltsError(f"model.encoder {self.cfg.model.encoder!r} is a random-weight preset with nothing "
                                  "pretrained to fine-tune: keep an intermediate section")
            return self.cfg.model.encoder
        self._run(["phase1"])
        return str(self.cfg.run_dir / "phase1" / "encoder")

    def finetune(self, task: str) -> Path:
        """Phase 2 for ``task`` (and phase 1 first if it is not done); returns its model directory."""
        if task not in self.cfg.finetune.tasks:
            raise StiltsError(f"--task {task}: not in finetune.tasks ({', '.join(self.cfg.finetune.tasks)})")
        self._run([f"phase2/{task}"])
        return self.cfg.run_dir / "phase2" / task / "model"

    def evaluate(self) -> dict:
        """Phase 3 (and whatever it needs that is not done); returns results.json's content."""
        self._run(["results"])
        return results_io.load_results(self.cfg.run_dir / "results.json")

    def run(self) -> dict:
        self._run(None)
        return results_io.load_results(self.cfg.run_dir / "results.json")

    def status(self) -> list[dict]:
        """Every node of the study and its state, running nothing (``records.node_states``)."""
        from stilts_ds.studies.records import node_states

        return [st.as_row() for st in node_states(self.graph()).values()]
