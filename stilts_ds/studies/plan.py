"""`stilts-ds plan`: what a study will cost before anything runs.

    stilts-ds plan --config configs/paper.yaml --nodes 8 --gpus-per-node 8
    stilts-ds plan --config configs/paper.yaml --nodes 8 --gpus-per-node 8 --json   # one object
    result = predict(cfg, nodes=8, gpus_per_node=8); result.as_json()["scheduled_wall_h"]

Each node of the study graph (``studies.graph``, built offline: no data or tokenizer needed)
gets a predicted duration on its ``cluster.num_workers`` GPUs:

- training (phases 1 and 2): sequences trained = optimizer steps x global batch (steps as the
  study computes them, ``TrainConfig.steps``: the tasks' rows x epochs, MLM text a share on
  top, or max_steps) x sequences per row (a multiple-choice row is one per choice; the mix
  weighted by the sampler's shares), over the per-GPU throughput of the model at the node's
  sequence length (``plan.throughput`` in the config: samples/s per GPU measured or estimated
  at a length and micro-batch; the nearest entry is scaled by length), plus phase 2's
  model-selection evaluations on the English dev set it selects on (``finetune.select_on``:
  MNLI's for xnli, SQuAD's for xquad and mlqa by default; forward only: ``plan.eval_speedup``
  times faster) and ``plan.fit_overhead_s``;
- evaluation (phase 3): every language's rows, forward only, plus a shared candidate pool
  once, plus the fixed overhead;
- driver work: featurizing at a measured ~1,500 rows/s, a minute for the bench, seconds for
  tables.

With ``seeds`` in the config the graph holds every seed's run of every arm (phases 1 to 3 and
results per seed, then each arm's combination): each is predicted and scheduled like any
other job, so GPU-hours grow with the number of seeds, and the seeds' chains run side by side.

Rows come from the feature cache when the study was prepared, else from the local data
files, else from the published split sizes (``tasks.sizes``). ``schedule_model.simulate`` then
places the jobs on ``--nodes`` x ``--gpus-per-node`` GPUs as the scheduler would (critical path
first, as many side by side as fit, ``cluster.max_concurrent_jobs`` at most) and compares
the scheduled wall clock with the sequential one (every job after the other, as stilts-ds
ran before it had a scheduler) and with the lower bound max(critical path, GPU-hours / GPUs).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from stilts_ds.atomic import write_atomic
from stilts_ds.config import SELECTION_SPLIT, ExperimentConfig, PlanConfig
from stilts_ds.errors import StiltsError
from stilts_ds.studies import schedule_model as sm
from stilts_ds.studies.graph import Node, StudyGraph, build_graph
from stilts_ds.tasks.registry import get_task
from stilts_ds.tasks.sizes import approx_rows, shared_pool_rows

FEATURIZE_ROWS_PER_S = 1_500.0  # docs/benchmarks.md: span-QA featurize ~1,580 examples/s on one core
DRIVER_SECONDS = {"results": 5.0, "combine": 5.0, "arms": 10.0, "report": 15.0}
BENCH_SECONDS_PER_POINT = 15.0  # warm-up, parity gate and timing of one (engine, precision, batch)
# One more timing of a loaded engine (a repeat, or another language's split): the quick start's
# bench grew ~1 s per (language, repeat) on CPU; 2 s leaves room for real split sizes.
BENCH_SECONDS_PER_TIMING = 2.0


@dataclass
class Estimate:
    node: str
    kind: str
    arm: str | None
    workers: int
    seconds: float
    sequences: float = 0.0
    rows_source: str = ""
    detail: str = ""


@dataclass
class PlanResult:
    plan: sm.Plan
    estimates: dict[str, Estimate]
    config_name: str
    throughput_sources: list[str] = field(default_factory=list)

    def as_json(self) -> dict:
        out = sm.plan_json(self.plan)
        for job in out.get("jobs", []):
            est = self.estimates.get(job["id"])
            if est:
                job.update(sequences=est.sequences, rows_source=est.rows_source, detail=est.detail)
        out.update(name=self.config_name, throughput_sources=self.throughput_sources)
        return out

    def markdown(self) -> str:
        md = sm.plan_markdown(self.plan, f"Plan of {self.config_name}")
        sources = sorted({e.rows_source for e in self.estimates.values() if e.rows_source})
        md += "\n\nRows from: " + ", ".join(sources) + ".\n"
        md += "Throughput from: " + "; ".join(self.throughput_sources) + ".\n"
        return md

    def write(self, out_dir) -> dict[str, Path]:
        from stilts_ds.studies.timeline import plan_png

        out_dir = Path(out_dir)
        return {"json": write_atomic(out_dir / "plan.json", json.dumps(self.as_json(), indent=2)),
                "md": write_atomic(out_dir / "plan.md", self.markdown()),
                "png": write_atomic(out_dir / "plan.png", plan_png(self.plan, f"{self.config_name}: predicted"))}


class _Rows:
    """Row counts: the feature cache's, the local files', or the published sizes."""

    def __init__(self):
        self.sources: dict[str, str] = {}

    def __call__(self, study, task: str, split: str, lang: str) -> tuple[int, str]:
        from stilts_ds.data import cache
        from stilts_ds.data.prepare import locate
        from stilts_ds.data.sources import local_paths

        spec = get_task(task)
        source, data_dir = study.cfg.data.source_of(task)
        try:
            path, files = locate(spec, split, lang, tokenizer_fp=study.tokenizer_fp, cache_dir=study.cfg.cache_dir(),
                                 source=source, data_dir=data_dir, max_length=study._max_length(spec))
            if path.is_file():
                return len(cache.read(path)), "the feature cache"
        except (StiltsError, OSError):
            pass  # no tokenizer or data on this machine: count otherwise
        if source == "local":
            try:
                from stilts_ds.data.sources import FIXTURES_DIR

                paths = [p for _, p in local_paths(spec, split, lang, Path(data_dir or FIXTURES_DIR))]
                return sum(_lines(p) for p in paths), "local data files"
            except StiltsError:
                pass
        n = approx_rows(task, split, lang)
        if n is None:
            raise StiltsError(f"plan: no row count for {task} {split} {lang}: prepare it (`stilts-ds prepare`), "
                              f"or put its files under data.data_dir")
        return n, "published split sizes (stilts_ds/tasks/sizes.py)"


def _lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


def _throughput(plan: PlanConfig, model: str, length: int, micro: int | None) -> tuple[float, str]:
    """Training samples/s per GPU at ``length``: the entry of ``model`` at this micro-batch (or
    any) nearest in length, scaled by length (cost grows about linearly with tokens)."""
    entries = [e for e in plan.throughput if e.model == model]
    if not entries:
        known = sorted({e.model for e in plan.throughput}) or ["none"]
        raise StiltsError(f"plan.throughput has no entry for model {model!r} (it has: {', '.join(known)}): add "
                          "{model, length, samples_per_s, source} rows, e.g. from `stilts-ds scale --mode training`")
    exact = [e for e in entries if e.micro_batch == micro] or [e for e in entries if e.micro_batch is None] or entries
    best = min(exact, key=lambda e: (abs(e.length - length), e.length))
    return best.samples_per_s * best.length / length, best.source


def estimate_graph(graph: StudyGraph, *, fused: bool = False) -> dict[str, Estimate]:
    """Each node's predicted seconds. The per-fit overhead is shared as the scheduler shares
    fits: phase-3 nodes of an arm that become ready together (same upstream) share one fit;
    ``fused`` (a cluster that runs one fit at a time) puts an arm's fits in one."""
    rows = _Rows()
    out: dict[str, Estimate] = {}
    studies: dict = {}
    for nid in graph.order():
        node = graph.nodes[nid]
        out[nid] = _estimate(graph, node, rows, studies)
    overhead = graph.root.plan.fit_overhead_s
    fits = [graph.nodes[n] for n in graph.order() if graph.nodes[n].is_fit]
    share: dict[str, int] = {}
    for node in fits:
        if fused:
            peers = [n for n in fits if n.arm == node.arm]
            first = peers[0].id
            share[node.id] = 1 if node.id == first else 0
        elif node.kind == "phase3":
            upstream = tuple(d for d in node.deps if graph.nodes[d].is_fit)
            # As the scheduler groups them: one arm's and one seed's (seeds run side by side).
            peers = [n for n in fits if n.kind == "phase3" and n.arm == node.arm and n.seed == node.seed
                     and tuple(d for d in n.deps if graph.nodes[d].is_fit) == upstream]
            share[node.id] = len(peers)
    for nid, k in share.items():
        est = out[nid]
        est.seconds += (overhead / k if k else 0.0) - overhead
    return out


def _study(graph: StudyGraph, node: Node, studies: dict):
    from stilts_ds.studies.pipeline import Study

    if node.arm not in studies:
        study = Study(graph.config_of(node), progress=False)
        name = study.cfg.model.tokenizer_name()
        # Only a tokenizer on disk can name the feature-cache entries: planning never downloads.
        if name != "bundled" and not Path(name).is_dir():
            study._tokenizer_fp = "unavailable"
        studies[node.arm] = study
    return studies[node.arm]


def _estimate(graph: StudyGraph, node: Node, rows: _Rows, studies: dict) -> Estimate:
    cfg = graph.config_of(node)
    plan = graph.root.plan
    est = Estimate(node.id, node.kind, node.arm, node.workers, 0.0)
    if node.kind == "prepare":
        consumer = next(n for n in graph.nodes.values() if node.id in n.deps)
        study = _study(graph, consumer, studies)
        total = 0
        for split, lang in node.needs:
            n, src = rows(study, node.task, split, lang)
            total += n
            est.rows_source = src
        est.seconds = total / FEATURIZE_ROWS_PER_S
        est.detail = f"{total:,} rows"
        return est
    if node.kind in DRIVER_SECONDS:
        est.seconds = DRIVER_SECONDS[node.kind]
        return est
    if node.kind == "bench":
        b = graph.root.bench
        # Each (engine, precision, batch size) is built, warmed and parity-checked once, then
        # timed ``repeats`` times on each language's test features (one entry per language).
        points = len(b.engines) * len(b.precisions) * len(b.batch_sizes)
        est.seconds = points * (BENCH_SECONDS_PER_POINT + BENCH_SECONDS_PER_TIMING * b.repeats
                                * max(1, len(node.features)))
        return est
    study = _study(graph, node, studies)
    workers = node.workers
    if node.kind in ("phase1", "phase2"):
        train = cfg.intermediate if node.kind == "phase1" else cfg.finetune.recipe(node.task)
        tasks = train.tasks
        counts, spr = {}, {}
        for t in tasks:
            spec = get_task(t)
            counts[t], est.rows_source = rows(study, t, "train", spec.train_language)
            spr[t] = spec.sequences_per_row
        plan_steps = train.steps(counts, workers)  # Study.build_job's own arithmetic
        steps, global_batch = plan_steps.total, plan_steps.global_batch
        shares = train.sampling_weights(counts)
        mix = sum(shares[t] * spr[t] for t in tasks)  # encoder sequences per row, as the sampler mixes them
        sequences = steps * global_batch * mix
        length = max(study._max_length(get_task(t)) for t in tasks)
        sps, src = _throughput(plan, cfg.model.encoder, length, train.micro_batch)
        seconds = sequences / (sps * workers)
        detail = f"{steps:,} steps x {global_batch} rows at length {length}"
        if node.kind == "phase2":  # model selection on English dev every eval_every steps, and at the end
            dev_task = cfg.finetune.selection_task(node.task)  # whose dev set: finetune.select_on
            dev, _ = rows(study, dev_task, *SELECTION_SPLIT)
            every = train.eval_every or plan_steps.per_epoch
            evals = max(1, steps // every)
            seconds += evals * dev * get_task(dev_task).sequences_per_row / (sps * plan.eval_speedup * workers)
            detail += f", {evals} dev evaluations of {dev:,} rows ({dev_task})"
        est.sequences, est.detail = sequences, detail
        est.seconds = seconds + plan.fit_overhead_s
        return est
    if node.kind == "phase3":
        spec = get_task(node.task)
        split = node.config.get("evaluate.split", "test")
        langs = node.config.get("languages", [])
        total = 0
        for lang in langs:
            n, est.rows_source = rows(study, node.task, split, lang)
            total += n
        if est.rows_source.startswith("published"):  # counted files hold the pool already
            total += shared_pool_rows(node.task)
        sequences = total * spec.sequences_per_row
        sps, _ = _throughput(plan, cfg.model.encoder, study._max_length(spec), None)
        est.sequences = sequences
        est.seconds = sequences / (sps * plan.eval_speedup * workers) + plan.fit_overhead_s
        est.detail = f"{total:,} rows over {len(langs)} languages"
        return est
    raise StiltsError(f"plan: no estimate for a {node.kind} node ({node.id})")


def predict(cfg: ExperimentConfig, arms: Iterable[str] = (), *, nodes: int, gpus_per_node: int) -> PlanResult:
    arms = list(arms)
    graph = build_graph(cfg, arms, offline=True, with_study_nodes=not arms)
    if cfg.cluster.use_gpu is False:
        pass  # a CPU study: "GPU" below reads as worker slot
    from stilts_ds.studies.scheduler import fuses

    estimates = estimate_graph(graph, fused=fuses(cfg.cluster, nodes * gpus_per_node))
    fits = tuple(n for n, node in graph.nodes.items() if node.is_fit)
    # The scheduler runs the bench alone after every fit: here, as a job depending on them all.
    jobs = [sm.PlanJob(id=nid, deps=fits if e.kind == "bench" else graph.nodes[nid].deps, workers=e.workers,
                       seconds=e.seconds, kind=e.kind, arm=e.arm, exclusive=e.kind == "bench")
            for nid, e in estimates.items()]
    plan = sm.simulate(jobs, nodes=nodes, gpus_per_node=gpus_per_node,
                       max_concurrent=cfg.cluster.max_concurrent_jobs, allow_spanning=cfg.cluster.multi_node)
    sources = sorted({f"{e.model} @ {e.length}{f' (micro-batch {e.micro_batch})' if e.micro_batch else ''}: "
                      f"{e.source}" for e in cfg.plan.throughput})
    return PlanResult(plan, estimates, cfg.name, sources)
