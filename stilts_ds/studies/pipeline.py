"""The three phases of the study as idempotent stages, driven from one ExperimentConfig.

    study = Study(load_config("configs/quickstart.yaml"))
    study.intermediate()          # phase 1 -> <output_dir>/phase1/encoder
    study.finetune("xnli")        # phase 2 -> <output_dir>/phase2/xnli/model
    study.finetune("xcopa")       # staged: phase2/xcopa/stages/siqa/model, then phase2/xcopa/model
    study.evaluate()              # phase 3 -> <output_dir>/results.json, results.md
    study.run()                   # all three
    study.status()                # every stage: done / stale / pending, running nothing

Everything that can be wrong is checked here, on the driver, before any worker starts:
features are prepared (training never tokenizes), batch arithmetic and the DeepSpeed config
are merged (contradictions raise), an exported encoder is checked against the configured
architecture. A stage whose output exists is skipped unless ``force``.
"""
from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import click

from stilts_ds.atomic import write_atomic
from stilts_ds.config import ExperimentConfig, TrainConfig
from stilts_ds.data.prepare import prepare
from stilts_ds.data.sources import load_labels
from stilts_ds.engine import ds_config as dsc
from stilts_ds.engine.job import EvalItem, EvalJob, Head, Identity, InitHeads, Optim, TaskInput, TrainJob
from stilts_ds.engine.launch import launch
from stilts_ds.errors import StiltsError
from stilts_ds.modeling import export
from stilts_ds.modeling.presets import PRESETS, load_tokenizer
from stilts_ds.studies import results as results_io
from stilts_ds.tasks.registry import get_task

DONE = "DONE.json"


def _stage_hash(payload) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _made_by(model_dir) -> str | None:
    """A digest of the DONE.json of the stage that wrote ``model_dir`` (its parent): it
    changes with every run of that stage, forced reruns included. None for a model no stage
    of ours made (a hub encoder)."""
    marker = Path(model_dir).parent / DONE
    return hashlib.sha256(marker.read_bytes()).hexdigest()[:16] if marker.is_file() else None


class Study:
    def __init__(self, cfg: ExperimentConfig, *, force: bool = False, in_process: bool = False,
                 progress: bool = True):
        self.cfg = cfg
        self.force = force
        self.in_process = in_process
        self.progress = progress
        self._tokenizer = None
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
        return self.cfg.data.qa_max_length if spec.format == "span_qa" else self.cfg.data.max_length

    def features(self, task: str, split: str, lang: str) -> Path:
        spec = get_task(task)
        source, data_dir = self.cfg.data.source_of(task)
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
        if spec.format == "multiple_choice":
            n = spec.options["num_choices"]
        elif spec.format == "span_qa":
            n = 2
        else:
            n = len(load_labels(spec, self.cfg.data.source_of(task)[1]))
        return {"format": spec.format, "num_labels": n, "head": spec.head}

    @staticmethod
    def _stage_state(stage_dir: Path, payload: dict | None) -> tuple[str, dict | None]:
        """("pending" | "done" | "stale", the stage's DONE.json record or None). ``stale``: the
        record's hash is not ``payload``'s; with no payload a finished stage is ``done``."""
        marker = stage_dir / DONE
        if not marker.is_file():
            return "pending", None
        record = json.loads(marker.read_text())
        return ("done" if payload is None or record.get("hash") == _stage_hash(payload) else "stale"), record

    def _done(self, stage_dir: Path, payload: dict) -> bool:
        if self.force:
            return False
        state, _ = self._stage_state(stage_dir, payload)
        if state == "stale":
            raise StiltsError(f"{stage_dir} was produced by a different configuration; rerun with --force "
                              "to replace it, or change output_dir")
        return state == "done"

    def _mark_done(self, stage_dir: Path, payload: dict, extra: dict | None = None) -> None:
        write_atomic(stage_dir / DONE, json.dumps({"hash": _stage_hash(payload), **(extra or {})}, indent=2, default=str))

    def build_job(self, phase: str, train: TrainConfig, run_dir: Path, encoder: str, export_dir: Path,
                  with_dev: bool, *, identity: Identity | None = None, init_heads: InitHeads | None = None,
                  export: bool = True, features: dict[str, str] | None = None) -> TrainJob:
        """Everything a training worker needs, resolved and validated here. ``features``
        replaces tasks' training features (a throughput run's synthetic rows)."""
        from stilts_ds.data import cache

        cfg = self.cfg
        world = cfg.cluster.num_workers
        tasks = []
        rows = 0
        for task in train.tasks:
            path = (features or {}).get(task) or str(self.features(task, "train", get_task(task).train_language))
            tasks.append(TaskInput(task, Head(**self._head(task)), train=path,
                                   dev=str(self.features(task, "validation", "en")) if with_dev else None))
            rows += len(cache.read(Path(path)))
        grad_accum = train.grad_accum if (train.grad_accum or train.global_batch) else 1
        global_batch, micro, accum = dsc.resolve_batch(train.global_batch, train.micro_batch, grad_accum, world)
        steps_per_epoch = max(1, math.ceil(rows / global_batch))
        total = train.max_steps or max(1, math.ceil(train.epochs * steps_per_epoch))
        ds = dsc.merge_ds_config(
            cfg.deepspeed.base, global_batch=global_batch, micro_batch=micro, grad_accum=accum, world_size=world,
            lr=train.lr, warmup_ratio=train.warmup_ratio, total_steps=total, precision=cfg.deepspeed.precision,
            schedule=train.schedule, weight_decay=train.weight_decay)
        run_dir.mkdir(parents=True, exist_ok=True)
        dsc.write_merged(ds, run_dir)
        optim = Optim(seed=train.seed, lr=train.lr, weight_decay=train.weight_decay, sampling=train.sampling,
                      temperature=train.temperature, sampling_cap=train.sampling_cap,
                      weights=tuple(sorted(train.weights.items())))
        return TrainJob(
            phase=phase, run_dir=str(run_dir.resolve()), export_dir=str(export_dir.resolve()), encoder=encoder,
            tokenizer=cfg.model.tokenizer_name(), head_dropout=cfg.model.head_dropout, tasks=tuple(tasks),
            optim=optim, ds_config_json=json.dumps(ds), total_steps=total, log_every=train.log_every,
            checkpoint_every=train.checkpoint_every,
            eval_every=train.eval_every or (steps_per_epoch if with_dev else None), eval_batch=cfg.evaluate.batch_size,
            identity=identity, init_heads=init_heads, export=export)

    @staticmethod
    def _cost(stage: Path, job: TrainJob, started: float) -> dict:
        """The worker's train summary plus what the stage cost: wall seconds (launch included)
        and rows trained per second of the training loop."""
        summary = json.loads((stage / "train_summary.json").read_text())
        loop = summary.get("loop", {})
        samples = loop.get("steps", 0) * job.train_batch_size
        return {**summary, "wall_seconds": time.perf_counter() - started, "train_samples": samples,
                "train_samples_per_s": samples / loop["seconds"] if loop.get("seconds") else None}

    def _launch(self, job, name: str) -> None:
        storage, run_name = self.cfg.storage_path(), f"{self.cfg.name}-{name}"
        if self.force and "://" not in storage:
            # A forced stage starts over: Ray would otherwise resume the old run's checkpoint.
            shutil.rmtree(Path(storage) / run_name, ignore_errors=True)
            shutil.rmtree(Path(job.run_dir) / "checkpoint", ignore_errors=True)
        launch(job, asdict(self.cfg.cluster), name=run_name, storage_path=storage, in_process=self.in_process)

    # ------------------------------------------------------------------ phases
    def intermediate(self) -> str:
        """Phase 1; returns the encoder the next phase starts from."""
        cfg = self.cfg
        if cfg.intermediate is None:
            if cfg.model.encoder in PRESETS:
                raise StiltsError(f"model.encoder {cfg.model.encoder!r} is a random-weight preset with nothing "
                                  "pretrained to fine-tune: keep an intermediate section")
            return cfg.model.encoder
        stage = cfg.run_dir / "phase1"
        payload = self._phase1_payload()
        export_dir = stage / "encoder"
        if self._done(stage, payload):
            self.say(f"phase 1: {export_dir} exists, skipping (--force reruns)")
            return str(export_dir)
        self.say(f"phase 1: intermediate training on {', '.join(cfg.intermediate.tasks)}")
        job = self.build_job("intermediate", cfg.intermediate, stage, cfg.model.encoder, export_dir, with_dev=False)
        started = time.perf_counter()
        self._launch(job, "phase1")
        self._mark_done(stage, payload, self._cost(stage, job, started))
        return str(export_dir)

    def _phase1_payload(self) -> dict:
        cfg = self.cfg
        return {"model": asdict(cfg.model), "data": asdict(cfg.data), "ds": asdict(cfg.deepspeed),
                "train": asdict(cfg.intermediate), "workers": cfg.cluster.num_workers}

    def _phase2_payload(self, task: str, encoder: str, before: dict | None) -> dict:
        cfg = self.cfg
        payload = {"encoder": encoder, "data": asdict(cfg.data), "ds": asdict(cfg.deepspeed),
                   "train": asdict(cfg.finetune.recipe(task)), "workers": cfg.cluster.num_workers}
        if before is not None:  # a redone earlier stage makes this one stale too
            payload["after"] = {"task": before["task"], "hash": before["hash"]}
        return payload

    def _encoder_path(self) -> str:
        """What ``intermediate()`` returns, without running anything."""
        if self.cfg.intermediate is None:
            return self.cfg.model.encoder
        return str(self.cfg.run_dir / "phase1" / "encoder")

    def status(self) -> list[dict]:
        """Every stage of the study and its state, running nothing: ``done``, ``stale`` (its
        outputs come from another configuration: a run stops there unless --force), or
        ``pending``; with the wall seconds a finished stage took. Phase 3's own hash needs the
        featurized eval sets, so it is judged by its inputs instead: stale when a model it
        scored has been retrained since, or an earlier stage is not done."""
        cfg = self.cfg

        def row(stage: Path, payload: dict | None, note: str) -> dict:
            state, record = self._stage_state(stage, payload)
            return {"stage": str(stage.relative_to(cfg.run_dir)), "state": state,
                    "wall_seconds": record.get("wall_seconds") if record else None, "note": note}

        if cfg.intermediate is None:
            rows = [{"stage": "phase1", "state": "skipped", "wall_seconds": None,
                     "note": f"no intermediate training: phase 2 starts from {cfg.model.encoder}"}]
        else:
            rows = [row(cfg.run_dir / "phase1", self._phase1_payload(), ", ".join(cfg.intermediate.tasks))]
        encoder = self._encoder_path()
        for task in cfg.finetune.tasks:
            rows += [row(st["dir"], st["payload"], f"stage of {task}" if st["task"] != task else "")
                     for st in self._recipe_stages(task, encoder)]
        phase3 = row(cfg.run_dir / "phase3", None, ", ".join(cfg.evaluate.tasks))
        if phase3["state"] == "done":
            recorded = self._stage_state(cfg.run_dir / "phase3", None)[1].get("made_by", {})
            upstream_done = all(r["state"] in ("done", "skipped") for r in rows)
            if not (cfg.run_dir / "results.json").is_file():
                phase3["state"] = "pending"
            elif not upstream_done or any(_made_by(m) != h for m, h in recorded.items()):
                phase3["state"] = "stale"  # scores of models that have been (or will be) retrained
        return rows + [phase3]

    def _recipe_stages(self, task: str, encoder: str) -> list[dict]:
        """Phase 2's runs for ``task``, in order (a staged recipe's earlier stages, then the task
        itself): each one's task, directory, payload and its hash, which the next payload names."""
        root = self.cfg.run_dir / "phase2" / task
        stages, before = [], None
        for stage_task in self.cfg.finetune.stages(task):
            payload = self._phase2_payload(stage_task, encoder, before)
            before = {"task": stage_task, "dir": root if stage_task == task else root / "stages" / stage_task,
                      "payload": payload, "hash": _stage_hash(payload)}
            stages.append(before)
        return stages

    def _check_encoder(self, encoder: str) -> None:
        if Path(encoder).is_dir():
            preset = PRESETS.get(self.cfg.model.encoder)
            expected = preset["model_type"] if preset else None
            if expected is None and Path(self.cfg.model.encoder).is_dir():
                expected = export.load_encoder_config(self.cfg.model.encoder).model_type
            if expected:
                export.check_compatible(encoder, expected)

    def finetune(self, task: str, encoder: str | None = None) -> Path:
        """Phase 2 for ``task``; returns its model directory. A staged recipe
        (``finetune.stages``: xcopa trains on siqa, then COPA) runs its earlier stages in
        ``phase2/<task>/stages/<stage task>/``, each from the last one's model and head."""
        encoder = encoder or self.intermediate()
        self._check_encoder(encoder)
        stages = self._recipe_stages(task, encoder)
        spent = []
        for before, stage in zip([None, *stages], stages):
            wall = self._finetune_stage(task, stage, encoder, before, spent if stage is stages[-1] else None)
            spent.append({"task": stage["task"], "wall_seconds": wall})
        return stages[-1]["dir"] / "model"

    def _finetune_stage(self, target: str, stage: dict, encoder: str, before: dict | None,
                        spent: list | None = None) -> float:
        """One phase-2 training run (a ``_recipe_stages`` entry: ``target`` itself, or a stage of
        its recipe) from ``encoder`` or, after an earlier stage, from that stage's model and
        head; returns the wall seconds it took (then, or when it ran before)."""
        cfg = self.cfg
        task, stage_dir, payload = stage["task"], stage["dir"], stage["payload"]
        recipe = cfg.finetune.recipe(task)
        model_dir = stage_dir / "model"
        what = task if task == target else f"{target} (stage {task})"
        if self._done(stage_dir, payload):
            self.say(f"phase 2: {model_dir} exists, skipping")
            return self._stage_state(stage_dir, payload)[1].get("wall_seconds", 0.0)
        if before is None:
            self.say(f"phase 2: fine-tuning {what} on its English training data")
        else:
            self.say(f"phase 2: fine-tuning {what} from the {before['task']} model and head")
        before_model = before["dir"] / "model" if before else None
        init = (InitHeads(str(before_model.resolve()), ((get_task(task).head_name, get_task(before["task"]).head_name),))
                if before is not None else None)
        job = self.build_job("finetune", recipe, stage_dir, str(before_model) if before else encoder, model_dir,
                             with_dev=True, init_heads=init)
        started = time.perf_counter()
        self._launch(job, f"phase2-{target}" if task == target else f"phase2-{target}-{task}")
        cost = self._cost(stage_dir, job, started)
        if spent:  # the whole recipe's cost, for the arms table
            cost["stages"] = spent
            cost["recipe_wall_seconds"] = cost["wall_seconds"] + sum(s["wall_seconds"] for s in spent)
        self._mark_done(stage_dir, payload, cost)
        return cost["wall_seconds"]

    def evaluate(self, encoder: str | None = None) -> dict:
        cfg = self.cfg
        stage = cfg.run_dir / "phase3"
        results_path = cfg.run_dir / "results.json"
        items = []
        for task in cfg.evaluate.tasks:
            spec = get_task(task)
            split = cfg.evaluate.split if cfg.evaluate.split in spec.splits else "test"
            langs = self._langs(task, split)
            if spec.format == "retrieval":
                enc = encoder or self.intermediate()
                for lang in langs:
                    item = {"task": task, "model_dir": enc, "layer": cfg.evaluate.retrieval_layer,
                            "splits": {lang: str(self.features(task, split, lang))}}
                    if spec.metric == "bucc_f1":
                        item["dev"] = str(self.features(task, "validation", lang))
                    items.append(item)
            else:
                model_dir = cfg.run_dir / "phase2" / task / "model"
                if not (model_dir / export.HEADS_SPEC).is_file():
                    raise StiltsError(f"evaluate.tasks lists {task!r} but {model_dir} holds no fine-tuned model: "
                                      f"run `stilts-ds finetune` for it (or list it under finetune.tasks)")
                items.append({"task": task, "model_dir": str(model_dir.resolve()),
                              "splits": {l: str(self.features(task, split, l)) for l in langs}})
        # Which run made each model: a fine-tune rerun with --force keeps its paths (and its
        # config hash), and phase 3 must not keep the old scores.
        made_by = {item["model_dir"]: _made_by(item["model_dir"]) for item in items}
        payload = {"items": items, "made_by": made_by}
        items_hash = _stage_hash({"items": items})
        state, done = self._stage_state(stage, payload)
        if not self.force and done is not None and results_path.is_file():
            if state == "done":
                self.say(f"phase 3: {results_path} exists, skipping")
                return results_io.load_results(results_path)
            # The same evaluations of retrained models: score them again (nothing costly is
            # lost). A DONE.json from before made_by existed hashed the items alone.
            if done.get("items_hash", done.get("hash")) == items_hash:
                self.say("phase 3: the models it scored have changed since (or its record predates this "
                         "check): evaluating again")
            else:
                self._done(stage, payload)  # raises: the evaluations themselves differ
        self.say(f"phase 3: zero-shot evaluation of {', '.join(cfg.evaluate.tasks)}")
        started = time.perf_counter()
        stage.mkdir(parents=True, exist_ok=True)
        job = EvalJob(run_dir=str(stage.resolve()), batch_size=cfg.evaluate.batch_size,
                      evaluations=tuple(EvalItem(task=i["task"], model_dir=i["model_dir"], splits=tuple(i["splits"].items()),
                                                 layer=i.get("layer"), dev=i.get("dev")) for i in items))
        self._launch(job, "phase3")
        scores = json.loads((stage / "scores.json").read_text())
        out = results_io.write_results(results_path, scores, extra={"name": cfg.name, "split": cfg.evaluate.split})
        results_io.write_markdown(cfg.run_dir / "results.md", out)
        self._mark_done(stage, payload, {"items_hash": items_hash, "made_by": made_by,
                                         "wall_seconds": time.perf_counter() - started})
        return out

    def run(self) -> dict:
        encoder = self.intermediate()
        for task in self.cfg.finetune.tasks:
            self.finetune(task, encoder)
        return self.evaluate(encoder)
