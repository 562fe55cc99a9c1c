"""The sweep of a scaling study: its spec (a YAML or the CLI's options, validated before
anything runs) and its points (the cross product of the axes, each with a stable id).

    spec = load_sweep("configs/sweeps/quickstart.yaml")     # SweepError names file:line and key
    points = expand(spec)                                   # [Point], the baseline added if missing

    spec = sweep_from_options(None, "inference", {"nodes": "1,2", ...})  # `stilts-ds scale`'s options

Schema: ``SWEEP_KEYS`` (top level), ``INFERENCE_KEYS`` and ``TRAINING_KEYS`` (the two
sections); every list-valued axis takes a list, a single value or a comma string. The keys
marked ``option`` are also ``stilts-ds scale`` options (``cli_options``), whose help is the
table's text. Running the points and the study table are ``stilts_ds.studies.scale``'s.
"""
from __future__ import annotations

import itertools
import json
import math
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Mapping, NamedTuple

import yaml

from stilts_ds.errors import StiltsError
from stilts_ds.precision import PRECISIONS
from stilts_ds.tasks.formats import format_of

MODES = ("inference", "training")
ZERO_STAGES = (1, 2, 3)
SCALINGS = ("weak", "strong")
TRAIN_DATA = ("synthetic", "fixture")
LENGTHS = ("lognormal", "uniform", "fixed")
DEFAULT_BANDWIDTH_GBPS = 100.0  # 100 Gbit/s = 12.5 GB/s: a common cloud inter-node network


class SweepError(StiltsError):
    """A sweep spec that cannot run; the message names the key (file:line) and the fix."""


# ============================================================================ the spec

@dataclass(frozen=True)
class InferenceAxes:
    preset: str = "tiny"
    nodes: tuple[int, ...] = (1,)
    workers_per_node: tuple[int, ...] = (1,)
    batch_sizes: tuple[int, ...] = (1, 8)
    seq_lens: tuple[int, ...] = (128,)
    precisions: tuple[str, ...] = ("fp32",)
    engines: tuple[str, ...] = ("torch-sdpa",)
    latency_requests: int = 100
    synthetic_rows: int = 256
    lengths: str = "lognormal"


@dataclass(frozen=True)
class TrainingAxes:
    preset: str = "tiny"
    nodes: tuple[int, ...] = (1,)
    workers_per_node: tuple[int, ...] = (1,)
    batch_sizes: tuple[int, ...] = (8,)  # per worker (weak scaling) or global (strong)
    seq_lens: tuple[int, ...] = (128,)
    precisions: tuple[str, ...] = ("fp32",)
    zero_stages: tuple[int, ...] = (2,)
    scaling: tuple[str, ...] = ("weak",)
    steps: int = 6
    warmup_steps: int = 2
    data: str = "synthetic"
    task: str = "mnli"
    lr: float = 1e-4
    cpus_per_worker: float = 1.0


@dataclass(frozen=True)
class SweepSpec:
    name: str = "scale"
    bandwidth_gbps: float = DEFAULT_BANDWIDTH_GBPS
    intra_node_bandwidth_gbps: float | None = None
    ray: bool = True
    address: str | None = None
    storage_path: str | None = None
    inference: InferenceAxes | None = None
    training: TrainingAxes | None = None

    def to_dict(self) -> dict:
        return asdict(self)


class Key(NamedTuple):
    """One key of the schema: its kind (checked by ``_value``), its help, and whether
    ``stilts-ds scale`` takes it as an option. The help is written once, here: it is both the
    YAML key's reference and the option's ``--help`` (``cli_options``)."""

    kind: str
    help: str
    option: bool = False


SWEEP_KEYS = {
    "name": Key("str", "Sweep name, in titles and TensorBoard.", option=True),
    "bandwidth_gbps": Key("pos_float", "Link bandwidth in Gbit/s for the communication model (100 Gbit/s = "
                                       "12.5 GB/s, a common cloud network): the inter-node link, per worker.",
                          option=True),
    "intra_node_bandwidth_gbps": Key("opt_pos_float", "Bandwidth in Gbit/s between the workers of one node (NVLink, "
                                                      "PCIe), for single-node points; default: the inter-node "
                                                      "bandwidth.", option=True),
    "ray": Key("bool", "Measure on a Ray cluster; off (ray: false, --no-ray): in this process, one node, one "
                       "worker.", option=True),
    "address": Key("opt_str", "Ray cluster address (default: RAY_ADDRESS, else a local Ray).", option=True),
    "storage_path": Key("opt_str", "Ray Train storage for training points (S3/GCS/NFS on multi-node clusters)."),
    "inference": Key("section", "Inference axes (INFERENCE_KEYS)."),
    "training": Key("section", "Training axes (TRAINING_KEYS)."),
}
_COMMON_AXES = {
    "preset": Key("preset", "Architecture with random weights: tiny (CPU) or xlmr-large.", option=True),
    "nodes": Key("int_list>=1", "Node counts.", option=True),
    "workers_per_node": Key("int_list>=1", "Ray actors (inference) or DeepSpeed ranks (training) per node.",
                            option=True),
    "batch_sizes": Key("int_list>=1", "Batch sizes (training: per worker for weak scaling, global for strong).",
                       option=True),
    "precisions": Key("precision_list", "fp32, fp16, bf16.", option=True),
}
INFERENCE_KEYS = {
    **_COMMON_AXES,
    "seq_lens": Key("int_list>=8", "Max tokens per row of the synthetic workload.", option=True),
    "engines": Key("engine_list", "torch-eager, torch-sdpa, torch-compile, ds, ds-kernel.", option=True),
    "latency_requests": Key("int>=100", "Requests timed for latency percentiles."),
    "synthetic_rows": Key("int>=1", "Rows of the synthetic workload per node."),
    "lengths": Key("lengths", "Row lengths: lognormal, uniform or fixed (every row seq_len)."),
}
TRAINING_KEYS = {
    **_COMMON_AXES,
    "seq_lens": Key("int_list>=16", "Tokens per row.", option=True),
    "zero_stages": Key("zero_list", "ZeRO stages 1, 2, 3 (ds_configs/zero<k>.json).", option=True),
    "scaling": Key("scaling_list", "weak (per-worker batch fixed) and/or strong (global batch fixed).", option=True),
    "steps": Key("int>=2", "Optimizer steps per point.", option=True),
    "warmup_steps": Key("int>=0", "Leading steps left out of tokens/s (start-up, first-call costs).", option=True),
    "data": Key("train_data", "synthetic (every row exactly seq_len tokens) or fixture (the task's bundled rows).",
                option=True),
    "task": Key("str", "Training task (a pair-classification task for synthetic data)."),
    "lr": Key("pos_float", "Learning rate (constant schedule)."),
    "cpus_per_worker": Key("pos_float", "CPUs Ray reserves per training worker."),
}


# ============================================================================ the CLI's options

@dataclass(frozen=True)
class CliOption:
    """A ``stilts-ds scale`` option made from a schema key (``Key.option``)."""

    key: str
    flag: str  # --key-with-dashes; a key that is true by default: --no-key, a flag that turns it off
    help: str
    type: type  # what click parses: str (axes: validated here, lists comma-separated), float, or bool (a flag)
    modes: tuple[str, ...] = ()  # the sections an axis belongs to; () for a top-level key


_SECTIONS = {"inference": (INFERENCE_KEYS, InferenceAxes), "training": (TRAINING_KEYS, TrainingAxes)}


def _shown(value) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def _axis_option(key: str) -> CliOption:
    """One option for an axis of either section: the help of each section that has it (one
    text if they agree) and each section's default (from the axes dataclasses)."""
    have = {mode: table[key] for mode, (table, _) in _SECTIONS.items() if key in table}
    defaults = {mode: _shown(getattr(_SECTIONS[mode][1](), key)) for mode in have}
    texts = {k.help for k in have.values()}
    if len(have) == 1:
        (mode,) = have
        text = f"{mode.capitalize()} only. {have[mode].help}"
    elif len(texts) == 1:
        (text,) = texts
    else:
        text = " ".join(f"{mode.capitalize()}: {k.help[0].lower()}{k.help[1:]}" for mode, k in have.items())
    if any(k.kind.endswith("_list") or k.kind.startswith("int_list") for k in have.values()):
        text += " Comma-separated."
    if len(set(defaults.values())) == 1:
        text += f" Default {next(iter(defaults.values()))}."
    else:
        text += " Default: " + "; ".join(f"{mode} {d}" for mode, d in defaults.items()) + "."
    return CliOption(key, "--" + key.replace("_", "-"), text, str, tuple(have))


def _top_option(key: str) -> CliOption:
    k, default = SWEEP_KEYS[key], getattr(SweepSpec(), key)
    if k.kind == "bool":  # only one that defaults to true is an option (ray): its flag turns it off
        return CliOption(key, "--no-" + key.replace("_", "-"), k.help, bool)
    text = k.help + (f" Default {_shown(default)}." if default is not None else "")
    return CliOption(key, "--" + key.replace("_", "-"), text, float if k.kind.endswith("pos_float") else str)


def cli_options() -> list[CliOption]:
    """The options ``stilts-ds scale`` builds from the schema, axes first, in table order."""
    axes = dict.fromkeys(k for table, _ in _SECTIONS.values() for k, v in table.items() if v.option)
    return [_axis_option(k) for k in axes] + [_top_option(k) for k, v in SWEEP_KEYS.items() if v.option]


def sweep_from_options(sweep_path: str | os.PathLike | None, mode: str | None,
                       values: Mapping[str, Any]) -> SweepSpec:
    """The sweep ``stilts-ds scale`` asks for: ``--sweep`` YAML, its top-level keys replaced by
    the options given; or, with ``--mode``, one section built from the axis options. ``values``
    holds every ``cli_options()`` key, None where the option was not given (a bool flag: True
    where given). Errors name the options."""
    options = {o.key: o for o in cli_options()}
    given = {k: v for k, v in values.items() if v is not None and options[k].type is not bool}
    given.update({k: False for k, v in values.items() if v is True and options[k].type is bool})  # --no-<key>
    axes = {k: v for k, v in given.items() if options[k].modes}
    top = {k: v for k, v in given.items() if not options[k].modes}
    if sweep_path is not None:
        if mode or axes:
            got = ", ".join(options[k].flag for k in axes) or "--mode"
            raise SweepError(f"give --sweep or --mode with axis options, not both (got {got} with --sweep)")
        return load_sweep(sweep_path, top)
    if mode is None:
        raise SweepError("give --sweep YAML (e.g. configs/sweeps/quickstart.yaml) or --mode inference|training")
    wrong = [options[k].flag for k in axes if mode not in options[k].modes]
    if wrong:
        other = "training" if mode == "inference" else "inference"
        raise SweepError(f"{', '.join(wrong)}: {'an' if other == 'inference' else 'a'} {other} option; "
                         f"use it with --mode {other}")
    return sweep_from_mapping({**top, mode: axes}, _Where(options={k: o.flag for k, o in options.items()}))


class _Where:
    """Names a key for error messages: ``file:line: a.b`` for YAML, ``--option`` for the CLI."""

    def __init__(self, source: str | None = None, lines: Mapping[tuple, int] | None = None,
                 options: Mapping[str, str] | None = None):
        self.source, self.lines, self.options = source, dict(lines or {}), dict(options or {})

    def __call__(self, *path) -> str:
        dotted = ".".join(str(p) for p in path)
        for key in reversed(path):  # the CLI names options, not YAML paths
            if isinstance(key, str) and key in self.options:
                return self.options[key]
        line = None
        for n in range(len(path), 0, -1):  # the deepest key that has a line
            line = self.lines.get(tuple(path[:n]))
            if line:
                break
        if self.source:
            return f"{self.source}:{line}: {dotted}" if line else f"{self.source}: {dotted}"
        return dotted


def _yaml_lines(text: str, source: str) -> dict[tuple, int]:
    """{key path: 1-based line} of every mapping key and sequence item; duplicate keys (which
    yaml.safe_load would silently collapse to the last) are errors."""
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        raise SweepError(f"{where}: not valid YAML ({getattr(e, 'problem', None) or e})") from None
    lines: dict[tuple, int] = {}

    def walk(node, prefix: tuple) -> None:
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for k, v in node.value:
                path = prefix + (k.value,)
                if k.value in seen:
                    raise SweepError(f"{source}:{k.start_mark.line + 1}: duplicate key {'.'.join(map(str, path))}; "
                                     "keep one")
                seen.add(k.value)
                lines[path] = k.start_mark.line + 1
                walk(v, path)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                lines[prefix + (i,)] = item.start_mark.line + 1
                walk(item, prefix + (i,))

    if root is not None:
        walk(root, ())
    return lines


def load_sweep(path: str | os.PathLike, overrides: Mapping[str, Any] | None = None) -> SweepSpec:
    """A sweep YAML (configs/sweeps/quickstart.yaml), validated. ``overrides``: top-level keys
    (CLI options such as bandwidth_gbps or address) that replace the file's."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SweepError(f"{path}: no such sweep file (see configs/sweeps/quickstart.yaml)") from None
    lines = _yaml_lines(text, str(path))
    data = yaml.safe_load(text)
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise SweepError(f"{path}:1: a sweep file is a mapping with keys {', '.join(SWEEP_KEYS)}")
    data = {**data, **{k: v for k, v in (overrides or {}).items() if v is not None}}
    return sweep_from_mapping(data, _Where(str(path), lines))


def sweep_from_mapping(data: Mapping[str, Any], where: _Where | None = None) -> SweepSpec:
    """Validate a sweep given as a plain mapping (the YAML's, or the CLI's options)."""
    where = where or _Where()
    _unknown(data, SWEEP_KEYS, where, ())
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        kind = SWEEP_KEYS[key][0]
        if kind == "section":
            if value is None:
                continue
            if not isinstance(value, Mapping):
                raise SweepError(f"{where(key)}: expected a mapping of axes ({', '.join(_section_keys(key))}), "
                                 f"got {value!r}")
            kwargs[key] = _section(key, value, where)
        else:
            kwargs[key] = _value(kind, value, where, (key,))
    spec = SweepSpec(**kwargs)
    if spec.inference is None and spec.training is None:
        raise SweepError(f"{where('inference') if where.source else 'sweep'}: nothing to run: give an inference "
                         "and/or a training section (or --mode inference|training)")
    _cross_checks(spec, where)
    return spec


def _section_keys(name: str) -> dict:
    return INFERENCE_KEYS if name == "inference" else TRAINING_KEYS


def _unknown(data: Mapping, allowed: Mapping, where: _Where, prefix: tuple) -> None:
    for key in data:
        if key not in allowed:
            import difflib

            close = difflib.get_close_matches(str(key), list(allowed), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            other = ("training" if prefix == ("inference",) else "inference") if prefix else None
            if other and key in _section_keys(other):
                hint = f"{key!r} is a {other} axis; "
            raise SweepError(f"{where(*prefix, key)}: unknown key {key!r}; {hint}valid: {', '.join(allowed)}")


def _section(name: str, data: Mapping, where: _Where):
    keys = _section_keys(name)
    _unknown(data, keys, where, (name,))
    kwargs = {k: _value(keys[k][0], v, where, (name, k)) for k, v in data.items()}
    axes = (InferenceAxes if name == "inference" else TrainingAxes)(**kwargs)
    if name == "training":
        if axes.warmup_steps >= axes.steps:
            raise SweepError(f"{where(name, 'warmup_steps')}: {axes.warmup_steps} warm-up steps leave none of "
                             f"{axes.steps} steps to time; set warmup_steps < steps")
        _check_task(axes, where)
    return axes


def _check_task(axes: TrainingAxes, where: _Where) -> None:
    from stilts_ds.tasks.registry import get_task

    try:
        spec = get_task(axes.task)
    except StiltsError as e:
        raise SweepError(f"{where('training', 'task')}: {e}") from None
    if "train" not in spec.splits:
        raise SweepError(f"{where('training', 'task')}: {axes.task!r} has no training split; use e.g. mnli")
    if axes.data == "synthetic" and not format_of(spec).row_label:
        raise SweepError(f"{where('training', 'task')}: synthetic rows are one sequence with one label, but "
                         f"{axes.task!r} is {spec.format}; use mnli, qqp or anli_plus, or set training.data: fixture")


def _as_list(value, where: _Where, path: tuple) -> list:
    if isinstance(value, str):
        items = [x.strip() for x in value.split(",") if x.strip()]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        items = [value]
    if not items:
        raise SweepError(f"{where(*path)}: empty list; give at least one value")
    return items


def _int(v, where: _Where, path: tuple, low: int) -> int:
    if isinstance(v, str) and v.strip().lstrip("-").isdigit():
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int):
        raise SweepError(f"{where(*path)}: expected an integer, got {v!r}")
    if v < low:
        raise SweepError(f"{where(*path)}: {v} is below the minimum {low}")
    return v


def _value(kind: str, value, where: _Where, path: tuple):
    if kind == "str":
        if not isinstance(value, str) or not value:
            raise SweepError(f"{where(*path)}: expected a non-empty string, got {value!r}")
        return value
    if kind == "opt_str":
        if value is not None and not isinstance(value, str):
            raise SweepError(f"{where(*path)}: expected a string, got {value!r}")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise SweepError(f"{where(*path)}: expected true or false, got {value!r}")
        return value
    if kind == "opt_pos_float":
        return None if value is None else _value("pos_float", value, where, path)
    if kind == "pos_float":
        try:
            if isinstance(value, bool):
                raise TypeError
            f = float(value)
        except (TypeError, ValueError):
            raise SweepError(f"{where(*path)}: expected a number, got {value!r}") from None
        if not f > 0 or math.isinf(f):
            raise SweepError(f"{where(*path)}: must be a positive number, got {value!r}")
        return f
    if kind.startswith("int>="):
        return _int(value, where, path, int(kind[5:]))
    if kind.startswith("int_list>="):
        low = int(kind[len("int_list>="):])
        items = _as_list(value, where, path)
        out = [_int(v, where, path + (i,), low) for i, v in enumerate(items)]
        return tuple(sorted(set(out)))
    if kind == "preset":
        from stilts_ds.modeling.presets import PRESETS

        if value not in PRESETS:
            raise SweepError(f"{where(*path)}: unknown preset {value!r}; known: {', '.join(PRESETS)}")
        return value
    choices = {"precision_list": PRECISIONS, "scaling_list": SCALINGS, "lengths": LENGTHS, "train_data": TRAIN_DATA}
    if kind in ("lengths", "train_data"):
        if value not in choices[kind]:
            raise SweepError(f"{where(*path)}: {value!r} is not one of {', '.join(choices[kind])}")
        return value
    if kind in ("precision_list", "scaling_list", "engine_list"):
        if kind == "engine_list":
            from stilts_ds.inference.engines import ENGINES

            allowed = tuple(ENGINES)
        else:
            allowed = choices[kind]
        items = _as_list(value, where, path)
        for i, v in enumerate(items):
            if v not in allowed:
                raise SweepError(f"{where(*path, i)}: {v!r} is not one of {', '.join(allowed)}")
        return tuple(dict.fromkeys(items))
    if kind == "zero_list":
        items = _as_list(value, where, path)
        out = []
        for i, v in enumerate(items):
            if isinstance(v, str) and v.lower().startswith("zero"):
                v = v[4:]
            try:
                stage = _int(v, where, path + (i,), 0)
            except SweepError:
                stage = None
            if stage not in ZERO_STAGES:
                raise SweepError(f"{where(*path, i)}: {items[i]!r} is not a ZeRO stage; use 1, 2 or 3 (plain data "
                                 "parallel, stage 0, is in the communication model's table)")
            out.append(stage)
        return tuple(sorted(set(out)))
    raise AssertionError(kind)


def _cross_checks(spec: SweepSpec, where: _Where) -> None:
    for name in MODES:
        axes = getattr(spec, name)
        if axes is None:
            continue
        if not spec.ray and (axes.nodes != (1,) or axes.workers_per_node != (1,)):
            key = "nodes" if axes.nodes != (1,) else "workers_per_node"
            raise SweepError(f"{where(name, key)}: without Ray (ray: false / --no-ray) a point runs in this "
                             "process: one node, one worker; set nodes and workers_per_node to 1 or use Ray")
    t = spec.training
    if t is not None and "strong" in t.scaling:
        for b in t.batch_sizes:
            for n, w in itertools.product(t.nodes, t.workers_per_node):
                if b % (n * w):
                    raise SweepError(
                        f"{where('training', 'batch_sizes')}: strong scaling keeps the global batch fixed, so "
                        f"{b} must divide among {n * w} workers (nodes {n} x workers_per_node {w}); choose a "
                        f"multiple of {n * w}")


# ============================================================================ points

@dataclass(frozen=True)
class Point:
    """One measurement of the sweep. ``params`` (what changes the measurement) make the id."""

    mode: str
    nodes: int
    workers_per_node: int
    batch_size: int  # inference: batch; training: per-worker micro-batch
    seq_len: int
    precision: str
    engine: str | None = None  # inference
    zero_stage: int | None = None  # training
    global_batch: int | None = None  # training
    scaling: str | None = None  # training: weak / strong / weak+strong (the one-worker baseline)
    settings: tuple = ()  # sorted (key, value) pairs of the section's non-axis settings

    @property
    def workers(self) -> int:
        return self.nodes * self.workers_per_node

    def params(self) -> dict:
        p = {"mode": self.mode, "nodes": self.nodes, "workers_per_node": self.workers_per_node,
             "batch_size": self.batch_size, "seq_len": self.seq_len, "precision": self.precision,
             **dict(self.settings)}
        if self.mode == "inference":
            p["engine"] = self.engine
        else:
            p.update(zero_stage=self.zero_stage, global_batch=self.global_batch)
        return p

    @property
    def point_id(self) -> str:
        import hashlib

        blob = json.dumps(self.params(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    @property
    def label(self) -> str:
        head = f"n{self.nodes} w{self.workers_per_node}"
        if self.mode == "inference":
            return f"inference {head} {self.engine} {self.precision} b{self.batch_size} l{self.seq_len}"
        return (f"training {head} zero{self.zero_stage} {self.precision} {self.scaling} "
                f"micro{self.batch_size} global{self.global_batch} l{self.seq_len}")

    def fields(self) -> dict:
        """The point's columns on every row of the study table."""
        return {"point_id": self.point_id, "label": self.label, "mode": self.mode, "nodes": self.nodes,
                "workers_per_node": self.workers_per_node, "workers": self.workers, "batch_size": self.batch_size,
                "seq_len": self.seq_len, "precision": self.precision, "engine": self.engine,
                "zero_stage": self.zero_stage, "micro_batch": self.batch_size if self.mode == "training" else None,
                "global_batch": self.global_batch, "scaling": self.scaling, **dict(self.settings)}


def _settings(axes, exclude: Iterable[str]) -> tuple:
    d = asdict(axes)
    # cpus_per_worker changes where Ray puts workers, not what a worker does per step.
    return tuple(sorted((k, v) for k, v in d.items() if k not in set(exclude) | {"cpus_per_worker"}))


def _shapes(axes) -> list[tuple[int, int]]:
    """(nodes, workers per node): the one-worker baseline first, then by workers per node and nodes."""
    rest = set(itertools.product(axes.nodes, axes.workers_per_node)) - {(1, 1)}
    return [(1, 1)] + sorted(rest, key=lambda nw: (nw[1], nw[0]))


def expand(spec: SweepSpec) -> list[Point]:
    """Every point of the sweep, in run order: inference then training; within a
    configuration nodes ascending, so the one-node baseline comes first. Baselines missing
    from the axes are added (module docstring). Ids are unique (duplicates merged)."""
    points: dict[str, Point] = {}

    def add(p: Point) -> None:
        pid = p.point_id
        if pid in points:
            old = points[pid]
            if old.scaling != p.scaling and old.scaling and p.scaling:
                # The one-worker point of weak and strong scaling is the same job.
                points[pid] = replace(old, scaling="weak+strong")
            return
        points[pid] = p

    inf = spec.inference
    if inf is not None:
        settings = _settings(inf, ("nodes", "workers_per_node", "batch_sizes", "seq_lens", "precisions", "engines"))
        for engine, precision, seq, batch in itertools.product(inf.engines, inf.precisions, inf.seq_lens,
                                                               inf.batch_sizes):
            for n, w in _shapes(inf):
                add(Point("inference", n, w, batch, seq, precision, engine=engine, settings=settings))
    tr = spec.training
    if tr is not None:
        settings = _settings(tr, ("nodes", "workers_per_node", "batch_sizes", "seq_lens", "precisions",
                                  "zero_stages", "scaling"))
        for stage, precision, seq, batch, scaling in itertools.product(
                tr.zero_stages, tr.precisions, tr.seq_lens, tr.batch_sizes, tr.scaling):
            for n, w in _shapes(tr):
                workers = n * w
                micro, glob = (batch, batch * workers) if scaling == "weak" else (batch // workers, batch)
                add(Point("training", n, w, micro, seq, precision, zero_stage=stage, global_batch=glob,
                          scaling=scaling, settings=settings))
    return list(points.values())
