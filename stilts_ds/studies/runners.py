"""What each kind of study node does: the job a fit node launches, the work a driver node
does, and what its DONE.json records about its cost.

    runners = Runners(graph, say=print, in_process=False)
    job = runners.job(node)                  # phase1/phase2/phase3: a TrainJob or EvalJob, validated
    extra = runners.run_driver(node)         # prepare, results, combine, arms, bench, report: done here
    extra = runners.cost(node, started, finished)   # training cost from the worker's summary

Every job is built and checked on the driver before any worker starts (features prepared,
batch arithmetic merged, an exported encoder checked against the configured architecture);
a bad config fails its node here, naming the option, and only that node's dependents.
"""
from __future__ import annotations

import json
from typing import Callable

from stilts_ds.data import cache
from stilts_ds.engine.job import EvalItem, EvalJob, Identity, InitHeads, TrainJob
from stilts_ds.errors import StiltsError
from stilts_ds.studies.graph import Node, StudyGraph
from stilts_ds.studies.records import read_done
from stilts_ds.tasks.formats import format_of
from stilts_ds.tasks.registry import get_task


def identity(node: Node) -> Identity:
    return Identity(node=node.id, key=node.key, config_json=json.dumps(dict(node.config), sort_keys=True, default=str))


def run_name(graph: StudyGraph, node: Node) -> str:
    """The Ray Train run name of a node run alone: stable across attempts, so a rerun resumes.
    A seed's config is named for its seed (``<name>-seed<s>``): the id's seed part goes."""
    cfg = graph.config_of(node)
    parts = node.id.split("/")[(1 if node.arm else 0) + (1 if node.seed is not None else 0):]
    return f"{cfg.name}-" + "/".join(parts).replace("/stages/", "-").replace("/", "-")


class Runners:
    def __init__(self, graph: StudyGraph, *, say: Callable[[str], None], in_process: bool = False,
                 progress: bool = True):
        self.graph = graph
        self.say = say
        self.in_process = in_process
        self.progress = progress

    def study(self, node: Node):
        from stilts_ds.studies.pipeline import Study

        cfg = self.graph.config_of(node)
        cache = self.__dict__.setdefault("_studies", {})
        if (node.arm, node.seed) not in cache:  # a seed's run trains with its own seed, in its own dir
            cache[(node.arm, node.seed)] = Study(cfg, progress=False)
        return cache[(node.arm, node.seed)]

    # ------------------------------------------------------------------ fits
    def _dep(self, node: Node, kind: str) -> Node | None:
        for d in node.deps:
            if self.graph.nodes[d].kind == kind:
                return self.graph.nodes[d]
        return None

    def job(self, node: Node, *, check_encoder: bool = True) -> TrainJob | EvalJob:
        study = self.study(node)
        cfg = study.cfg
        if node.kind == "phase1":
            return study.build_job("intermediate", cfg.intermediate, node.dir, cfg.model.encoder, node.dir / "encoder",
                                   with_dev=False, identity=identity(node))
        if node.kind == "phase2":
            before = self._dep(node, "phase2")
            phase1 = self._dep(node, "phase1")
            encoder = (str(before.dir / "model") if before else str(phase1.dir / "encoder") if phase1
                       else cfg.model.encoder)
            if check_encoder and before is None:
                study._check_encoder(encoder)
            init = (InitHeads(str((before.dir / "model").resolve()),
                              ((get_task(node.task).head_name, get_task(before.task).head_name),))
                    if before is not None else None)
            return study.build_job("finetune", cfg.finetune.recipe(node.task), node.dir, encoder, node.dir / "model",
                                   with_dev=True, init_heads=init, identity=identity(node))
        if node.kind == "phase3":
            spec = get_task(node.task)
            split = cfg.evaluate.split if cfg.evaluate.split in spec.splits else "test"
            langs = list(node.config.get("languages", []))
            trained = self._dep(node, "phase2")
            phase1 = self._dep(node, "phase1")
            if trained is not None:
                model_dir, layer = str((trained.dir / "model").resolve()), None
            else:  # scored from the encoder's embeddings: phase 1's, or the pretrained one
                model_dir = str((phase1.dir / "encoder").resolve()) if phase1 else cfg.model.encoder
                layer = cfg.evaluate.retrieval_layer
            splits = tuple((lang, str(study.features(node.task, split, lang))) for lang in langs)
            items = []
            if format_of(spec).needs_dev(spec):  # an item per language: each tunes on its own dev set (BUCC)
                for lang, path in splits:
                    items.append(EvalItem(node.task, model_dir, ((lang, path),), layer=layer,
                                          dev=str(study.features(node.task, "validation", lang))))
            else:
                items.append(EvalItem(node.task, model_dir, splits, layer=layer))
            node.dir.mkdir(parents=True, exist_ok=True)
            return EvalJob(run_dir=str(node.dir.resolve()), evaluations=tuple(items),
                           batch_size=cfg.evaluate.batch_size, identity=identity(node))
        raise StiltsError(f"{node.id}: a {node.kind} node is not a fit")

    def cost(self, node: Node, started: float, finished: float) -> dict:
        """What a training node's DONE.json adds: the worker's summary, rows trained and rows/s
        of the loop; a staged recipe's last stage adds the whole recipe's wall seconds."""
        if node.kind not in ("phase1", "phase2"):
            return {}
        path = node.dir / "train_summary.json"
        summary = json.loads(path.read_text()) if path.is_file() else {}
        loop = summary.get("loop", {})
        ds = json.loads((node.dir / "ds_config.json").read_text()) if (node.dir / "ds_config.json").is_file() else {}
        samples = loop.get("steps", 0) * ds.get("train_batch_size", 0)
        out = {**summary, "train_samples": samples,
               "train_samples_per_s": samples / loop["seconds"] if loop.get("seconds") else None}
        if node.kind == "phase2":
            stages = []
            before = self._dep(node, "phase2")
            while before is not None:
                rec = read_done(before) or {}
                stages.insert(0, {"task": before.task, "wall_seconds": rec.get("wall_seconds", 0.0)})
                before = self._dep(before, "phase2")
            if stages:
                out["stages"] = stages
                out["recipe_wall_seconds"] = (finished - started) + sum(s["wall_seconds"] for s in stages)
        return out

    # ------------------------------------------------------------------ driver work
    def run_driver(self, node: Node) -> dict:
        return getattr(self, f"_{node.kind}")(node)

    def _prepare(self, node: Node) -> dict:
        from stilts_ds.data.prepare import prepare

        study = self.study_for_prepare(node)
        spec = get_task(node.task)
        source, data_dir = study.cfg.data.source_of(node.task)
        by_split: dict[str, list[str]] = {}
        for split, lang in node.needs:
            by_split.setdefault(split, []).append(lang)
        made = []
        for split, langs in by_split.items():
            made += prepare([spec], tokenizer=study.tokenizer, cache_dir=study.cfg.cache_dir(), source=source,
                            data_dir=data_dir, splits=[split], langs=langs, max_length=study._max_length(spec),
                            progress=self.progress)  # real data takes minutes per task: show it
        missing = [f for f in node.features if not cache.exists(f)]
        if missing:  # locate() and prepare() disagree: a bug, not bad input
            raise RuntimeError(f"{node.id}: prepare wrote other entries than the graph expects: {missing[:3]}")
        return {"entries": len(made), "rows": sum(m.rows for m in made)}

    def study_for_prepare(self, node: Node):
        for other in self.graph.nodes.values():
            if node.id in other.deps and other.kind in ("phase1", "phase2", "phase3"):
                return self.study(other)
        raise RuntimeError(f"{node.id} feeds no node")

    def _results(self, node: Node) -> dict:
        from stilts_ds.studies import results as results_io

        cfg = self.graph.config_of(node)
        scores: dict = {}
        # Each phase-3 node's per-example statistics (examples/<lang>.json beside its
        # scores.json) give results.json its bootstrap intervals; one node without them (a
        # run from before they were written) means no intervals, and nothing else changes.
        stats: dict | None = {}
        for dep in node.deps:
            d = self.graph.nodes[dep]
            scored = json.loads((d.dir / "scores.json").read_text())
            scores.update(scored)
            if stats is not None:
                found, why = results_io.example_stats_of(d.dir, scored)
                if found is None:
                    self.say(f"{node.id}: no error bars: {why}")
                stats = None if found is None else {**stats, **found}
        out = results_io.write_results(cfg.run_dir / "results.json", scores,
                                       extra={"name": cfg.name, "split": cfg.evaluate.split}, example_stats=stats)
        results_io.write_markdown(cfg.run_dir / "results.md", out)
        return {"xtreme_average": out.get("xtreme_average")}

    def _combine(self, node: Node) -> dict:
        """An arm's results over its seeds (``studies.seeds``): each seed's results.json, as its
        own results node wrote it, into the arm's results.json and results.md, with intervals
        of the seeds' mean pooled from every seed's per-example statistics."""
        from stilts_ds.studies.seeds import combine_seeds

        cfg = self.graph.config_of(node)
        runs = {}
        for dep in node.deps:
            d = self.graph.nodes[dep]
            runs[d.seed] = self.graph.config_of(d).run_dir
        out = combine_seeds(runs, cfg.run_dir, extra={"name": cfg.name, "split": cfg.evaluate.split},
                            say=lambda message: self.say(f"{node.id}: {message}"))
        return {"xtreme_average": out.get("xtreme_average"), "seeds": list(runs)}

    def _arms(self, node: Node) -> dict:
        from stilts_ds.studies.arms import write_comparison

        return {"files": [str(p) for p in write_comparison(self.graph.root).values()]}

    def _bench(self, node: Node) -> dict:
        """One arm's checkpoint of one task through the engines, on each language's cached test
        features, every configuration ``bench.repeats`` times; every row names the arm (and
        the task and language)."""
        from stilts_ds.inference.bench import BenchSpec, run_bench

        served = self.graph.nodes[node.deps[0]]
        study = self.study(served)
        cfg, bench = study.cfg, self.graph.root.bench
        task = get_task(node.task)
        split, langs = node.config["split"], list(node.config["languages"])
        features = tuple((lang, str(study.features(node.task, split, lang))) for lang in langs)
        # A phase-2 model with the task's head, or (a task scored without a head) the phase-1
        # encoder phase 3 embeds it with, timed on the task's rows without a score.
        model = served.dir / ("encoder" if served.kind == "phase1" else "model")
        self.say(f"bench: serving {model} ({node.task}; {', '.join(langs)}) through "
                 f"{', '.join(bench.engines)}, {bench.repeats} timing{'s' if bench.repeats != 1 else ''} each")
        spec = BenchSpec(engines=bench.engines, precisions=bench.precisions, batch_sizes=bench.batch_sizes,
                         seq_len=study._max_length(task), checkpoint=str(model.resolve()),
                         task=node.task, lang_features=features, repeats=bench.repeats,
                         extra={"arm": node.arm} if node.arm else {})
        rows, _ = run_bench(spec, node.dir, use_ray=not self.in_process, address=cfg.cluster.ray_address,
                            title=node.label)
        return {"rows": len(rows)}

    def _report(self, node: Node) -> dict:
        from stilts_ds.studies.report import build_report
        from stilts_ds.studies.tradeoff import study_inputs

        from stilts_ds.studies.significance import arm_comparisons

        root = self.graph.root
        results, _, info = study_inputs(root.run_dir)
        # The bench rows of this graph's bench nodes (a bench/ file an earlier config left, of
        # an arm or task no longer served, is not this study's), and any `stilts-ds bench
        # --output <run dir>/bench-...` run by hand.
        benches = [n.dir / "bench.jsonl" for n in self.graph.nodes.values()
                   if n.kind == "bench" and (n.dir / "bench.jsonl").is_file()]
        benches += sorted(root.run_dir.glob("bench-*/bench.jsonl"))
        # Paired bootstrap of every arm against the no-intermediate and English-only arms, on
        # the test examples both scored (pooled over seeds): the answers' significance.
        comparisons, notes = arm_comparisons(results, info)
        for note in notes:
            self.say(f"report: {note}")
        paths = build_report(results, benches, node.dir, arm_info=info,
                             title=f"{root.name}: intermediate-task training, accuracy against cost",
                             schedule_dir=root.run_dir, comparisons=comparisons,
                             bench_notes=self.graph.bench_notes)
        return {"files": [str(p) for p in paths.values()]}
