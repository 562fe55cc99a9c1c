"""The study as an explicit job graph: every node keyed by what it is built from.

    graph = build_graph(load_config("configs/quickstart.yaml"))
    graph.nodes["english/phase2/xnli"].deps     # ('english/phase1', 'prepare/xnli', 'prepare/mnli')
    graph.nodes["english/phase2/xnli"].key      # hash of its config slice, data, features, upstream keys
    graph.order()                               # node ids, upstream first

Nodes (``<arm>/`` is left out for a config without arms):

- ``prepare/<task>``: featurize every (split, language) of the task that any node reads;
- ``<arm>/phase1``: intermediate training of the arm (absent when the arm has none);
- ``<arm>/phase2/<task>``: fine-tuning a target task on its training split, selecting on the
  English dev split ``finetune.select_on`` names (xnli: MNLI's, from ``prepare/mnli``); a staged
  recipe is a chain (``<arm>/phase2/xcopa/stages/siqa`` -> ``<arm>/phase2/xcopa``);
- ``<arm>/phase3/<task>``: zero-shot evaluation in every language, from the fine-tuned model
  or, for tasks without training data (bucc, tatoeba, mewslix, lareqa), from phase 1 alone;
- ``<arm>/results``: the arm's results.json / results.md from its phase-3 scores;
- ``arms``: the arms side by side; ``bench/<arm>/<task>``: serving that arm's fine-tuned model
  of the task through every inference engine, one node per task of ``bench.tasks`` (a list,
  or "xtreme-r": every XTREME-R task the arm fine-tunes and scores; default: its first
  pair-classification task) and per arm (every arm, or those ``bench.arms`` names; with seeds,
  the first seed's model; ``bench/<task>`` for a config without arms), on each language of
  ``bench.languages`` the task has (read from the prepared test features: a dependency on
  ``prepare/<task>``; ``bench.languages_arms``: every language on those arms, English on the
  others). A task scored without a head (tatoeba, lareqa, mewslix, bucc) serves the phase-1
  encoder phase 3 embeds it with, timed without a score (an arm without phase 1 is left out);
  what is not timed, and why, is in ``graph.bench_notes`` and the report. A node's key leaves out which
  other arms and tasks are served, so changing ``bench.tasks`` adds or removes bench nodes and
  reruns the report, nothing else; ``report``: accuracy vs cost.

With ``seeds: [s, ...]`` in the config, each arm's phases run once per seed, in
``<arm run dir>/seeds/<s>/`` (``ExperimentConfig.seed_config``): ``<arm>/seed<s>/phase1``,
``<arm>/seed<s>/phase2/<task>`` (``.../stages/<task>``), ``<arm>/seed<s>/phase3/<task>`` (the
tasks without training data from that seed's phase 1) and ``<arm>/seed<s>/results``; then
``<arm>/results`` (kind ``combine``, ``studies.seeds``) writes the arm's results.json as the mean
over the seeds with their standard deviation. Prepare nodes are shared (features do not depend
on the seed). A seed's nodes carry ``seed`` in their config slice: their keys do not depend on
the other seeds, so adding a seed runs that seed's nodes and the combination only. Without
``seeds`` nothing of this exists: the ids, directories and keys are those above.

    graph.nodes["english/seed2/phase2/xnli"].deps   # ('english/seed2/phase1', 'prepare/xnli', ...)
    graph.resolve(["english/phase1"])               # every seed's: ['english/seed1/phase1', ...]

A node's key is a hash of its own config slice (flattened to dotted keys, so a changed key
can be named), the fingerprints of the data files it reads, the feature-cache entries it reads
(their names carry the tokenizer and data fingerprints) and the keys of the nodes it consumes.
A change anywhere changes exactly the keys downstream of it (``studies.records`` turns that
into done / stale-with-a-reason / pending). Only values that change what a node computes are in
its slice: log and checkpoint intervals are not.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Mapping

from stilts_ds.config import SELECTION_SPLIT, ExperimentConfig, TrainConfig
from stilts_ds.errors import StiltsError
from stilts_ds.tasks.formats import format_of
from stilts_ds.tasks.registry import get_task

FIT_KINDS = ("phase1", "phase2", "phase3")  # run by a worker group (TorchTrainer)
DRIVER_KINDS = ("prepare", "results", "combine", "arms", "bench", "report")  # run on the driver
# Values of a TrainConfig that do not change the model (how often to log or checkpoint).
OPERATIONAL = ("log_every", "checkpoint_every")


@dataclass(frozen=True)
class Node:
    id: str
    kind: str
    arm: str | None
    deps: tuple[str, ...]
    dir: Path  # its DONE.json lives here (and its lease while it runs)
    label: str  # "phase 1 of arm english"
    workers: int = 0  # worker slots a fit holds; 0 for driver work
    task: str | None = None  # phase2 (the stage's task), phase3, prepare
    target: str | None = None  # phase2: the target task whose recipe this stage belongs to
    seed: int | None = None  # the training seed of the run it belongs to (config ``seeds``); None without
    config: Mapping[str, Any] = field(default_factory=dict, compare=False)
    data: Mapping[str, str] = field(default_factory=dict, compare=False)  # file -> fingerprint
    features: tuple[str, ...] = ()  # feature-cache entries read (paths)
    needs: tuple[tuple[str, str], ...] = ()  # prepare: (split, lang) pairs to featurize
    key: str = ""

    @property
    def is_fit(self) -> bool:
        return self.kind in FIT_KINDS


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """{"a.b": 1, "a.c": [1, 2]} from {"a": {"b": 1, "c": [1, 2]}}: the names a stale reason uses."""
    if isinstance(obj, Mapping):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(obj, tuple):
        obj = list(obj)
    return {prefix: obj}


def digest(obj: Any, n: int = 16) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


def file_fingerprint(path: Path) -> str:
    """Size and modification time: cheap for gigabyte files, and what the feature cache keys on."""
    st = Path(path).stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


# Options added after studies were run, keyed only when set away from their default: a
# study that leaves them alone keeps its node keys (and its checkpoints and results stay
# current), one that turns them on trains differently and reruns.
KEYED_WHEN_SET = {"group_by_length": False}


def _train_slice(train: TrainConfig) -> dict:
    return {k: v for k, v in asdict(train).items()
            if k not in OPERATIONAL and not (k in KEYED_WHEN_SET and v == KEYED_WHEN_SET[k])}


class StudyGraph:
    """The nodes of a study (every arm, or the chosen ones) with their keys, upstream first."""

    def __init__(self, root: ExperimentConfig, arms: Mapping[str | None, ExperimentConfig], nodes: dict[str, Node],
                 seed_cfgs: Mapping[tuple[str | None, int], ExperimentConfig] | None = None,
                 bench_notes: list[str] | None = None):
        self.root = root
        self.arms = dict(arms)
        self.nodes = nodes
        self.seed_cfgs = dict(seed_cfgs or {})  # (arm, seed) -> that seed's run of the arm
        self.bench_notes = list(bench_notes or [])  # bench tasks or languages left out, and why

    def order(self) -> list[str]:
        return list(self.nodes)  # built upstream first

    def children(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {n: [] for n in self.nodes}
        for node in self.nodes.values():
            for dep in node.deps:
                out[dep].append(node.id)
        return out

    def descendants(self, ids: Iterable[str]) -> set[str]:
        children, seen, todo = self.children(), set(), list(ids)
        while todo:
            for child in children[todo.pop()]:
                if child not in seen:
                    seen.add(child)
                    todo.append(child)
        return seen

    def ancestors(self, ids: Iterable[str]) -> set[str]:
        seen, todo = set(), list(ids)
        while todo:
            for dep in self.nodes[todo.pop()].deps:
                if dep not in seen:
                    seen.add(dep)
                    todo.append(dep)
        return seen

    def config_of(self, node: Node) -> ExperimentConfig:
        if node.seed is not None:
            return self.seed_cfgs[(node.arm, node.seed)]
        return self.arms[node.arm] if node.arm in self.arms else self.root

    def resolve(self, names: Iterable[str]) -> list[str]:
        """Node ids from ids, or a clear error listing what exists. With seeds, an id without
        its seed (``english/phase1``, what `stilts-ds train` asks for) names every seed's."""
        out = []
        for name in names:
            if name not in self.nodes:
                seeded = self._every_seed(name)
                if seeded:
                    out += seeded
                    continue
                close = [n for n in self.nodes if name in n][:8]
                hint = f"; did you mean {', '.join(close)}" if close else ""
                raise StiltsError(f"no node {name!r} in this study{hint}")
            out.append(name)
        return out

    def _every_seed(self, name: str) -> list[str]:
        """``<arm>/seed<s>/<rest>`` for every seed of the arm, from ``<arm>/<rest>``."""
        for arm, cfg in self.arms.items():
            prefix = f"{arm}/" if arm else ""
            if cfg.seeds and name.startswith(prefix):
                rest = name[len(prefix):]
                found = [f"{prefix}seed{s}/{rest}" for s in cfg.seeds if f"{prefix}seed{s}/{rest}" in self.nodes]
                if found:
                    return found
        return []


class _Builder:
    def __init__(self, root: ExperimentConfig, arms: Mapping[str | None, ExperimentConfig], studies: Mapping,
                 offline: bool = False, seed_cfgs: Mapping | None = None):
        self.root = root
        self.arms = arms
        self.seed_cfgs = seed_cfgs or {}
        self.studies = studies  # arm -> studies.pipeline.Study (tokenizer, features, heads)
        # offline: the graph's shape only (`stilts-ds plan` on a machine without the data or the
        # tokenizer): no file is read, and keys are not meaningful.
        self.offline = offline
        self.nodes: dict[str, Node] = {}
        # prepare node id -> {"task", "study", "setting", "entries": {(split, lang): (entry, data files)}}
        self.needs: dict[str, dict] = {}

    # -------------------------------------------------------------- features
    def _prepare_id(self, study, task: str) -> str:
        """One prepare node per task; a second one only if arms featurize it differently."""
        source, data_dir = study.cfg.data.source_of(task)
        setting = (study.cfg.model.tokenizer_name(), study._max_length(get_task(task)), source, data_dir,
                   str(study.cfg.cache_dir()))
        base = f"prepare/{task}"
        n = 1
        while True:
            nid = base if n == 1 else f"{base}#{n}"
            have = self.needs.get(nid)
            if have is None:
                self.needs[nid] = {"task": task, "study": study, "setting": setting, "entries": {}}
                return nid
            if have["setting"] == setting:
                return nid
            n += 1

    def tokenizer_fp(self, study) -> str:
        return f"name:{study.cfg.model.tokenizer_name()}" if self.offline else study.tokenizer_fp

    def feature(self, study, task: str, split: str, lang: str) -> tuple[str, Path, list[Path]]:
        """(prepare node id, cache entry, data files) of one split, recording the need."""
        from stilts_ds.data.prepare import locate

        spec = get_task(task)
        source, data_dir = study.cfg.data.source_of(task)
        try:
            path, files = locate(spec, split, lang, tokenizer_fp=self.tokenizer_fp(study),
                                 cache_dir=study.cfg.cache_dir(), source=source, data_dir=data_dir,
                                 max_length=study._max_length(spec))
        except StiltsError:
            if not self.offline:
                raise
            path, files = study.cfg.cache_dir() / task / f"{split}.{lang}.not-available", []
        pid = self._prepare_id(study, task)
        self.needs[pid]["entries"][(split, lang)] = (path, files)
        return pid, path, files

    def inputs(self, study, reads: Iterable[tuple[str, str, str]]) -> tuple[list[str], list[str], dict[str, str]]:
        """(prepare deps, feature entries, data fingerprints) for [(task, split, lang)]: the
        split files, and a label list read from the data dir (CCG's tags.txt)."""
        from stilts_ds.data.sources import labels_path

        deps, feats, data = [], [], {}
        for task, split, lang in reads:
            pid, path, files = self.feature(study, task, split, lang)
            if pid not in deps:
                deps.append(pid)
            feats.append(str(path))
            labels = labels_path(get_task(task), study.cfg.data.source_of(task)[1])
            if labels is not None:
                files = [*files, labels]
            for f in files:
                if Path(f).is_file():
                    data[str(f)] = "" if self.offline else file_fingerprint(f)
        return deps, feats, data

    def encoder_files(self, encoder: str) -> dict[str, str]:
        """A local encoder directory is read by path: fingerprint its files, not just the name."""
        path = Path(encoder)
        if self.offline or not path.is_dir():
            return {}
        return {str(f): file_fingerprint(f) for f in sorted(path.iterdir()) if f.is_file()}

    def head(self, study, task: str) -> dict:
        try:
            return study._head(task)
        except StiltsError:
            if not self.offline:
                raise
            spec = get_task(task)  # a label file that is not here: the head's size is unknown
            return {"format": spec.format, "num_labels": 0, "head": spec.head}

    def langs(self, study, task: str, split: str) -> list[str]:
        langs = study._langs(task, split)
        if self.offline and not langs:  # local files that are not on this machine: the task's own list
            spec = get_task(task)
            langs = [l for l in spec.splits[split] if l not in spec.local_only_langs]
        return langs

    # -------------------------------------------------------------- nodes
    def add(self, node: Node) -> Node:
        self.nodes[node.id] = node
        return node

    def build_arms(self) -> None:
        for arm, cfg in self.arms.items():
            if cfg.seeds is None:
                self._arm(arm, cfg)
                continue
            # One run per seed, each its own chain of nodes (side by side: they share nothing
            # but the features), then the arm's results combined over the seeds.
            runs = [self._arm(arm, self.seed_cfgs[(arm, s)], seed=s) for s in cfg.seeds]
            self.add(Node(id=f"{arm}/results" if arm else "results", kind="combine", arm=arm,
                          deps=tuple(r["results"].id for r in runs), dir=cfg.run_dir,
                          label=f"results{f' of arm {arm}' if arm else ''} over seeds "
                                f"{', '.join(map(str, cfg.seeds))}",
                          config=flatten({"name": cfg.name, "seeds": list(cfg.seeds),
                                          "evaluate": {"tasks": list(cfg.evaluate.tasks)}})))

    def _arm(self, arm: str | None, cfg: ExperimentConfig, seed: int | None = None) -> dict:
        """The nodes of one run of an arm: ``cfg`` is the arm's config, or with seeds its
        ``seed_config(seed)`` (the arm's own Study still names the features: they are shared)."""
        study = self.studies[arm]
        prefix = (f"{arm}/" if arm else "") + (f"seed{seed}/" if seed is not None else "")
        of_arm = (f" of arm {arm}" if arm else "") + (f", seed {seed}" if seed is not None else "")
        # A seed's nodes say so in their slice, so that their keys always carry it (the baseline's
        # retrieval tasks, scored from the pretrained encoder, would otherwise share one key).
        seeded = {"seed": seed} if seed is not None else {}
        run = cfg.run_dir
        common = {"deepspeed": {**asdict(cfg.deepspeed), "base_json": _ds_base(cfg.deepspeed.base)},
                  "cluster": {"num_workers": cfg.cluster.num_workers},
                  "model": {"tokenizer": cfg.model.tokenizer_name(), "head_dropout": cfg.model.head_dropout}}
        phase1 = None
        if cfg.intermediate is not None:
            tasks = cfg.intermediate.tasks
            deps, feats, data = self.inputs(study, [(t, "train", get_task(t).train_language) for t in tasks])
            config = flatten({**common, "model": {**common["model"], "encoder": cfg.model.encoder},
                              "intermediate": _train_slice(cfg.intermediate),
                              "heads": {t: self.head(study, t) for t in tasks}, **seeded})
            data.update(self.encoder_files(cfg.model.encoder))
            phase1 = self.add(Node(id=f"{prefix}phase1", kind="phase1", arm=arm, deps=tuple(deps), dir=run / "phase1",
                                   label=f"phase 1{of_arm}", workers=cfg.cluster.num_workers, config=config,
                                   data=data, features=tuple(feats), seed=seed))
        final: dict[str, Node] = {}
        for target in cfg.finetune.tasks:
            before = None
            for stage_task in cfg.finetune.stages(target):
                root = run / "phase2" / target
                is_target = stage_task == target
                nid = f"{prefix}phase2/{target}" + ("" if is_target else f"/stages/{stage_task}")
                # The dev split that selects the model (finetune.select_on: MNLI's for xnli by
                # default) is read like the training split: its entry, data files and prepare
                # node are in the key, so switching the selection set makes the node stale.
                dev_task = cfg.finetune.selection_task(stage_task)
                reads = [(stage_task, "train", get_task(stage_task).train_language), (dev_task, *SELECTION_SPLIT)]
                deps, feats, data = self.inputs(study, reads)
                slice_ = {**common, f"finetune[{stage_task}]": _train_slice(cfg.finetune.recipe(stage_task)),
                          "heads": {stage_task: self.head(study, stage_task)},
                          "selection": dict(zip(("task", "split", "lang"), (dev_task, *SELECTION_SPLIT))), **seeded}
                upstream = []
                if before is not None:
                    upstream.append(before.id)
                    slice_["init_heads"] = {"from": before.task}
                elif phase1 is not None:
                    upstream.append(phase1.id)
                else:  # no intermediate training: phase 2 starts from the pretrained encoder
                    slice_["model"] = {**common["model"], "encoder": cfg.model.encoder}
                    data.update(self.encoder_files(cfg.model.encoder))
                what = f"{target}" if is_target else f"{target} (stage {stage_task})"
                before = self.add(Node(
                    id=nid, kind="phase2", arm=arm, deps=tuple(upstream + deps), dir=root if is_target else
                    root / "stages" / stage_task, label=f"phase 2 {what}{of_arm}", workers=cfg.cluster.num_workers,
                    task=stage_task, target=target, config=flatten(slice_), data=data, features=tuple(feats),
                    seed=seed))
            final[target] = before
        evals = []
        for task in cfg.evaluate.tasks:
            spec = get_task(task)
            split = cfg.evaluate.split if cfg.evaluate.split in spec.splits else "test"
            langs = self.langs(study, task, split)
            reads = [(task, split, lang) for lang in langs]
            slice_: dict = {"evaluate": {"split": split, "batch_size": cfg.evaluate.batch_size}, "languages": langs,
                            **seeded}
            upstream = []
            if "train" not in spec.splits:  # scored from the phase-1 encoder's embeddings
                slice_["evaluate"]["retrieval_layer"] = cfg.evaluate.retrieval_layer
                if format_of(spec).needs_dev(spec):  # BUCC: a threshold tuned on each language's dev set
                    reads += [(task, "validation", lang) for lang in langs]
                if phase1 is not None:
                    upstream.append(phase1.id)
                else:
                    slice_["model"] = {"encoder": cfg.model.encoder}
            else:
                if task not in final:
                    raise StiltsError(f"evaluate.tasks lists {task!r} but finetune.tasks does not: phase 3 scores "
                                      f"the fine-tuned model; add {task} to finetune.tasks")
                upstream.append(final[task].id)
            deps, feats, data = self.inputs(study, reads)
            if "model" in slice_:
                data.update(self.encoder_files(cfg.model.encoder))
            evals.append(self.add(Node(
                id=f"{prefix}phase3/{task}", kind="phase3", arm=arm, deps=tuple(upstream + deps),
                dir=run / "phase3" / task, label=f"phase 3 {task}{of_arm}", workers=cfg.cluster.num_workers,
                task=task, config=flatten(slice_), data=data, features=tuple(feats), seed=seed)))
        results = self.add(Node(id=f"{prefix}results", kind="results", arm=arm, deps=tuple(n.id for n in evals),
                                dir=run / "phase3", label=f"results{of_arm}", seed=seed,
                                config=flatten({"name": cfg.name, "evaluate": {"tasks": list(cfg.evaluate.tasks)},
                                                **seeded})))
        return {"phase1": phase1, "final": final, "results": results}


def _ds_base(base: str) -> str:
    from stilts_ds.engine.ds_config import load_base

    return digest(load_base(base))


def _with_keys(nodes: dict[str, Node]) -> dict[str, Node]:
    """Keys in dependency order: each hashes its slice, data, features and upstream keys."""
    keyed: dict[str, Node] = {}
    pending = dict(nodes)
    while pending:
        progressed = False
        for nid, node in list(pending.items()):
            if all(d in keyed for d in node.deps):
                # A prepare node's key covers every split any node reads; a consumer's own
                # features and data files (hashed here) are what it depends on.
                key = digest({"kind": node.kind, "config": node.config, "data": node.data,
                              "features": [Path(f).name for f in node.features],
                              "deps": sorted(keyed[d].key for d in node.deps if keyed[d].kind != "prepare")})
                keyed[nid] = replace(node, key=key)
                del pending[nid]
                progressed = True
        if not progressed:
            raise StiltsError(f"the study graph has a cycle among {', '.join(pending)}")
    return keyed


def build_graph(cfg: ExperimentConfig, arms: Iterable[str] = (), *, with_study_nodes: bool = True,
                offline: bool = False, use_arms: bool = True) -> StudyGraph:
    """The graph of ``cfg``: every arm it declares (or those named), or the config itself when
    it has none (or ``use_arms`` is false); ``with_study_nodes`` adds the comparison, bench and
    report nodes. ``offline`` builds the shape alone, reading no data and no tokenizer (for
    `stilts-ds plan`)."""
    from stilts_ds.studies.arms import select_arms
    from stilts_ds.studies.pipeline import Study

    chosen = select_arms(cfg, arms) if use_arms else []
    arm_cfgs: dict[str | None, ExperimentConfig] = {a.name: a.config for a in chosen} or {None: cfg}
    seed_cfgs = {(arm, s): c.seed_config(s) for arm, c in arm_cfgs.items() for s in (c.seeds or ())}
    first: dict[str, Study] = {}  # arms usually share one tokenizer: load and fingerprint each once
    studies = {}
    for arm, c in arm_cfgs.items():
        studies[arm] = Study(c, progress=False)
        if offline:
            continue
        name = c.model.tokenizer_name()
        if name in first:
            studies[arm]._tokenizer = first[name].tokenizer
            studies[arm]._tokenizer_fp = first[name].tokenizer_fp
        else:
            first[name] = studies[arm]
    builder = _Builder(cfg, arm_cfgs, studies, offline=offline, seed_cfgs=seed_cfgs)
    builder.build_arms()  # the arms' nodes first: then the prepare nodes know every split read
    nodes = dict(builder.nodes)
    notes: list[str] = []
    if with_study_nodes:
        nodes.update(_study_nodes(cfg, arm_cfgs, nodes, builder, notes))
    return StudyGraph(cfg, arm_cfgs, _finish(builder, nodes), seed_cfgs, bench_notes=notes)


def _finish(builder: _Builder, nodes: dict[str, Node]) -> dict[str, Node]:
    """Prepare nodes (with everything every node reads) first, then the rest, keyed."""
    prepares = {}
    for pid, need in builder.needs.items():
        study, task = need["study"], need["task"]
        pairs = tuple(sorted(need["entries"]))
        feats, data = [], {}
        for pair in pairs:
            path, files = need["entries"][pair]
            feats.append(str(path))
            data.update({str(f): "" if builder.offline else file_fingerprint(f) for f in files})
        config = {"tokenizer": study.cfg.model.tokenizer_name(), "tokenizer_fingerprint": builder.tokenizer_fp(study),
                  "max_length": study._max_length(get_task(task)), "source": study.cfg.data.source_of(task)[0],
                  "splits": [f"{s}.{l}" for s, l in pairs]}
        prepares[pid] = Node(id=pid, kind="prepare", arm=None, deps=(), task=task, dir=study.cfg.cache_dir() / task,
                             label=f"features of {task}", config=config, data=data, features=tuple(feats),
                             needs=pairs)
    return _with_keys({**prepares, **nodes})


def _study_nodes(cfg: ExperimentConfig, arm_cfgs: Mapping[str | None, ExperimentConfig],
                 nodes: Mapping[str, Node], builder: "_Builder | None" = None,
                 notes: list[str] | None = None) -> dict[str, Node]:
    """The comparison of the arms, the serving benchmark and the report; ``notes`` gets a line
    for each task the bench leaves out, and why."""
    out: dict[str, Node] = {}
    # Each arm's results: its one run's, or with seeds their combination (not each seed's).
    results = [n.id for n in nodes.values() if n.kind == "combine" or (n.kind == "results" and n.seed is None)]
    costs = [n.id for n in nodes.values() if n.kind in ("phase1", "phase2") and n.target in (None, n.task)]
    study_deps = list(results)
    if None not in arm_cfgs:
        out["arms"] = Node(id="arms", kind="arms", arm=None, deps=tuple(results + costs), dir=cfg.run_dir / "arms",
                           label="the arms side by side",
                           config=flatten({"arms": {a: c.name for a, c in arm_cfgs.items()}}))
        study_deps = ["arms"]
    bench = cfg.bench
    if bench.enabled:
        # One node per arm and task, each serving that arm's own checkpoint of the task: RQ1
        # compares arms, so each arm's throughput must be its own model's; a task added to or
        # dropped from bench.tasks adds or drops its nodes and leaves the others' keys alone.
        for bench_node in _bench_nodes(cfg, arm_cfgs, nodes, builder, notes if notes is not None else []):
            out[bench_node.id] = bench_node
            study_deps.append(bench_node.id)
    out["report"] = Node(id="report", kind="report", arm=None, deps=tuple(study_deps), dir=cfg.run_dir / "report",
                         label="the report", config=flatten({"name": cfg.name}))
    return out


def _bench_split(acfg: ExperimentConfig, task: str) -> str:
    return acfg.evaluate.split if acfg.evaluate.split in get_task(task).splits else "test"


def _bench_nodes(cfg: ExperimentConfig, arm_cfgs, nodes: Mapping[str, Node], builder: "_Builder | None",
                 notes: list[str]) -> list[Node]:
    """``bench/<arm>/<task>`` (``bench/<task>`` without arms) for every served (arm, task),
    each timing the languages of ``bench.languages`` its task has (read from the test features
    the study prepares). A language no served task has is refused (a typo); with one task, a
    language it lacks is refused, as before there were several; with several, each task times
    the listed languages it has, and a task with none of them is left out and noted."""
    bench = cfg.bench
    served = _served(cfg, arm_cfgs, nodes, notes)
    # (served, task, split, languages, prepared)
    planned: list[tuple[Node, str, str, list[str], list[str]]] = []
    for node, task in served:
        acfg = builder.arms[node.arm] if builder is not None else cfg
        split = _bench_split(acfg, task)
        prepared = builder.langs(builder.studies[node.arm], task, split) if builder is not None else []
        planned.append((node, task, split, list(bench.langs(prepared if builder is not None else (), node.arm)),
                        prepared))
    check = builder is not None and not builder.offline
    several = len({task for _, task, *_ in planned}) > 1
    if check and planned:
        wanted = {l for *_, langs, _ in planned for l in langs}
        nowhere = sorted(l for l in wanted if not any(l in prepared for *_, prepared in planned))
        if nowhere or not several:
            for node, task, split, langs, prepared in planned:
                missing = [l for l in langs if l not in prepared]
                if missing and (not several or any(l in nowhere for l in missing)):
                    raise StiltsError(f"bench.languages: {task} has no {split} split in "
                                      f"{', '.join(missing)} here (it has {', '.join(prepared) or 'none'}); list "
                                      "some of those, or 'all'")
    out, told = [], set()
    for node, task, split, langs, prepared in planned:
        if builder is not None and several:
            kept = [l for l in langs if l in prepared]
            if len(kept) < len(langs) and (task, tuple(langs)) not in told:
                told.add((task, tuple(langs)))
                lacking = [l for l in langs if l not in prepared]
                notes.append(f"{task}: " + (f"not timed: its {split} split has none of {', '.join(langs)}"
                                            if not kept else f"{', '.join(lacking)} not timed (no {split} "
                                            "split in that language)"))
            langs = kept
            if not langs:
                continue
        out.append(_bench_node(cfg, node, task, builder, split, langs))
    return out


def _bench_node(cfg: ExperimentConfig, served: Node, task: str, builder: "_Builder | None", split: str,
                langs: list[str]) -> Node:
    """``served``'s model (its phase-2 model of ``task``, or for a task scored without a head
    its phase-1 encoder) through the engines, on each of ``langs``' test features."""
    bench, arm = cfg.bench, served.arm
    deps, feats, data = [served.id], [], {}
    if builder is not None:
        pdeps, feats, data = builder.inputs(builder.studies[arm], [(task, split, l) for l in langs])
        deps += pdeps
    # The slice leaves out which other arms and tasks are served (bench.arm/arms/task/tasks: the
    # task is the served node's) and the spelling of the languages: narrowing either list, or
    # "all" vs the same list, does not make this node stale.
    slice_ = {k: v for k, v in asdict(bench).items()
              if k not in ("arm", "arms", "task", "tasks", "lang", "languages", "languages_arms")}
    return Node(id="bench/" + (f"{arm}/" if arm else "") + task, kind="bench", arm=arm, deps=tuple(deps),
                dir=cfg.run_dir / "bench" / (arm or "") / task,
                label=f"serving benchmark of {served.label}" + (f" on {task}" if served.kind == "phase1" else ""),
                task=task, config=flatten({"bench": slice_, "served": served.id, "split": split, "languages": langs}),
                data=data, features=tuple(feats))


def bench_tasks(cfg: ExperimentConfig, acfg: ExperimentConfig, arm: str | None = None,
                notes: list[str] | None = None) -> list[str]:
    """The tasks whose fine-tuned model the bench serves for an arm (config ``acfg``):
    ``bench.tasks`` (or ``task``), every XTREME-R task the arm fine-tunes and scores for
    ``"xtreme-r"``, else its first pair-classification task. A task scored without a head
    (retrieval, from phase 1's encoder) is served as that encoder, timed without a score. A
    listed task the arm does not fine-tune is left out with a note too (a study narrowed by
    --set finetune.tasks keeps its bench list), unless none of the list is fine-tuned: that is
    refused, naming them."""
    from stilts_ds.metrics.aggregate import XTREME_R_LANGUAGES

    named = cfg.bench.named_tasks()
    if named is None:
        first = next((t for t in acfg.finetune.tasks if format_of(get_task(t)).row_label), None)
        return [first] if first is not None else []
    if named == cfg.bench.XTREME_R:
        candidates = [t for t in acfg.evaluate.tasks if t in XTREME_R_LANGUAGES]
    else:
        candidates = [t for t in named if t not in cfg.skip_tasks]
    out, untrained = [], []

    def note(task: str, why: str) -> None:
        _note_not_timed(notes, task, arm, why)

    for task in candidates:
        if not format_of(get_task(task)).has_head:  # an unknown name is refused here, with the known ones
            # Scored from phase 1's encoder embeddings: the bench times that encoder alone on the
            # task's features (serving cost, no score: the engines return no embedding layer).
            if task in acfg.evaluate.tasks:
                out.append(task)
            else:
                note(task, "not evaluated (evaluate.tasks)")
        elif task not in acfg.finetune.tasks:
            untrained.append(task)
        else:
            out.append(task)
    if untrained and not out and named != cfg.bench.XTREME_R:
        # Nothing of the list is served: a mistake, not a narrowing (as bench.task always was).
        raise StiltsError(f"bench.tasks: {', '.join(map(repr, untrained))} "
                          f"{'is' if len(untrained) == 1 else 'are'} not fine-tuned in arm {arm!r}: add "
                          f"{'it' if len(untrained) == 1 else 'them'} to finetune.tasks, or list fine-tuned tasks")
    for task in untrained:  # the list names more than this study fine-tunes: those are left out
        note(task, "not fine-tuned (finetune.tasks)")
    return out


def _note_not_timed(notes: list[str] | None, task: str, arm: str | None, why: str) -> None:
    """Add "<task>: not timed[ for arm <arm>]: <why>" to ``notes`` (once)."""
    line = f"{task}: not timed" + (f" for arm {arm}" if arm else "") + f": {why}"
    if notes is not None and line not in notes:
        notes.append(line)


def _served(cfg: ExperimentConfig, arm_cfgs, nodes: Mapping[str, Node],
            notes: list[str] | None = None) -> list[tuple[Node, str]]:
    """(the node whose model the bench serves, the task) for each task of ``bench_tasks`` of
    every arm ``bench.arms`` names (default: every arm): the arm's phase-2 model of the task,
    or, for a task scored without a head, the phase-1 encoder phase 3 embeds it with (an arm
    without phase 1 is left out with a note: it embeds with the pretrained encoder)."""
    bench = cfg.bench
    named = bench.served_arms()
    out = []
    for arm in (named if named is not None else list(arm_cfgs)):
        if arm not in arm_cfgs:  # an arm left out by --arm (the config checked that it exists)
            continue
        acfg = arm_cfgs[arm]
        for task in bench_tasks(cfg, acfg, arm, notes):
            # With seeds, the first seed's model: the bench times engines, and one model serves as
            # well as another (its score through each engine is that seed's).
            seed = f"seed{acfg.seeds[0]}/" if acfg.seeds else ""
            prefix = (f"{arm}/" if arm else "") + seed
            if not format_of(get_task(task)).has_head:
                if prefix + "phase1" not in nodes:
                    _note_not_timed(notes, task, arm, "it has no phase 1, and phase 3 embeds the task with the "
                                                      "pretrained encoder")
                    continue
                out.append((nodes[prefix + "phase1"], task))
                continue
            nid = prefix + f"phase2/{task}"
            if nid not in nodes:
                raise StiltsError(f"bench.task {task!r} is not fine-tuned in arm {arm!r}: add it to finetune.tasks")
            out.append((nodes[nid], task))
    return out
