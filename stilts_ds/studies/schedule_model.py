"""How long a study takes on a GPU cluster: an event-driven simulation of its job graph.

    from stilts_ds.studies.schedule_model import PlanJob, simulate, plan_json, plan_markdown
    jobs = [PlanJob("english/phase1", (), workers=4, seconds=7200, kind="phase1", arm="english"),
            PlanJob("english/phase2/xnli", ("english/phase1",), workers=4, seconds=1800,
                    kind="phase2", arm="english"), ...]
    plan = simulate(jobs, nodes=8, gpus_per_node=8)          # max_concurrent=, allow_spanning=
    plan.scheduled_wall_s, plan.lower_bound_wall_s, plan.sequential_wall_s, plan.utilization
    plan.placements["english/phase1"].slots                   # ((node, gpu), ...) per worker
    plan_json(plan); plan_markdown(plan, "paper study on 8 x 8 GPUs")
    # stilts_ds.studies.timeline.plan_png(plan, title) draws it

A study is a DAG of jobs. A job with ``workers`` > 0 holds that many GPUs for its whole
``seconds``; one with ``workers == 0`` is driver-side work (results, comparisons, reports)
that runs beside the GPU jobs without taking a GPU or a ``max_concurrent`` slot. An
``exclusive`` job (a throughput benchmark) runs alone.

The scheduler is greedy list scheduling with critical-path priority (HLFET): whenever a job
ends, the ready jobs (every dependency finished) are tried longest-remaining-path first
(the job's own seconds plus the longest chain of work after it), ties by id, and each one
whose workers fit the free GPUs starts at once:

* placement: best fit on one node (the node with the fewest free GPUs that still holds the
  job), so that two 4-GPU jobs share an 8-GPU node and leave the other node whole; else,
  when ``allow_spanning``, across nodes, the nodes with the most free GPUs first (fewest
  nodes); else the job waits;
* backfill: a job that does not fit is skipped and lower-priority jobs that do fit start.
  This keeps GPUs busy but can delay a big job (two small jobs backfilled onto a half-free
  node may hold it longer than the big job would have waited). No reservation is made for
  the big job; the tests measure the result against ``lower_bound`` instead;
* ``max_concurrent`` caps the GPU jobs running at once (driver jobs are not counted);
* a ready exclusive job closes the gate: nothing new starts (driver jobs included) until
  everything running has ended, then it runs alone. Draining at once rather than in priority
  order keeps it from waiting behind a long chain of higher-priority jobs while it blocks
  the lower-priority ones.

Because a job never waits when nothing runs (it fits an empty cluster: checked up front),
the schedule is never idle, so ``scheduled <= sequential_wall`` (every job one after
another, today's behaviour); and ``scheduled >= lower_bound`` = max(critical path, GPU-seconds
/ GPUs). The simulation is deterministic: the same jobs give the same plan.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

from stilts_ds.errors import StiltsError


class ScheduleError(StiltsError, ValueError):
    """A job graph that cannot be scheduled; the message names the job(s) and the numbers."""


@dataclass(frozen=True)
class PlanJob:
    id: str
    deps: tuple[str, ...]
    workers: int  # GPUs held for the whole run; 0 = driver-side
    seconds: float  # predicted wall seconds on `workers` GPUs, launch overhead included
    kind: str = ""
    arm: str | None = None
    exclusive: bool = False


@dataclass(frozen=True)
class Placement:
    job: str
    start: float
    end: float
    slots: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class Plan:
    jobs: tuple[PlanJob, ...]
    placements: dict[str, Placement]
    scheduled_wall_s: float
    sequential_wall_s: float
    critical_path_s: float
    critical_path: list[str]
    gpu_seconds: float
    lower_bound_wall_s: float
    nodes: int
    gpus_per_node: int
    utilization: float
    max_concurrent: int | None = None
    allow_spanning: bool = True
    priority: dict[str, float] = field(default_factory=dict)

    @property
    def total_gpus(self) -> int:
        return self.nodes * self.gpus_per_node


# --------------------------------------------------------------------------- the graph


def _index(jobs: Iterable[PlanJob]) -> dict[str, PlanJob]:
    by_id: dict[str, PlanJob] = {}
    for j in jobs:
        if j.id in by_id:
            raise ScheduleError(f"job {j.id!r} appears twice in the job list")
        if isinstance(j.workers, bool) or not isinstance(j.workers, int) or j.workers < 0:
            raise ScheduleError(f"job {j.id!r}: workers must be an integer >= 0 (0 = driver-side), not {j.workers!r}")
        if not (isinstance(j.seconds, (int, float)) and math.isfinite(j.seconds) and j.seconds >= 0):
            raise ScheduleError(f"job {j.id!r}: seconds must be a finite number >= 0, not {j.seconds!r}")
        by_id[j.id] = j
    for j in by_id.values():
        unknown = [d for d in j.deps if d not in by_id]
        if unknown:
            raise ScheduleError(f"job {j.id!r} depends on unknown job(s): {', '.join(map(repr, unknown))}")
        if j.id in j.deps:
            raise ScheduleError(f"job {j.id!r} depends on itself (cycle: {j.id} -> {j.id})")
    return by_id


def _successors(by_id: Mapping[str, PlanJob]) -> dict[str, list[str]]:
    succ: dict[str, list[str]] = {i: [] for i in by_id}
    for j in by_id.values():
        for d in dict.fromkeys(j.deps):  # a dep listed twice is still one edge
            succ[d].append(j.id)
    return succ


def _topological(by_id: Mapping[str, PlanJob]) -> list[str]:
    """Ids in dependency order (Kahn, ties by id); a cycle is an error naming one."""
    succ = _successors(by_id)
    indeg = {i: len(set(j.deps)) for i, j in by_id.items()}
    ready = sorted(i for i, n in indeg.items() if n == 0)
    order: list[str] = []
    while ready:
        i = ready.pop(0)
        order.append(i)
        for s in succ[i]:
            indeg[s] -= 1
            if indeg[s] == 0:
                ready.append(s)
        ready.sort()
    if len(order) < len(by_id):
        raise ScheduleError(f"the job graph has a cycle: {' -> '.join(_find_cycle(by_id, set(order)))}")
    return order


def _find_cycle(by_id: Mapping[str, PlanJob], acyclic: set[str]) -> list[str]:
    # Every job Kahn could not order has an unordered dep, so walking deps among them must
    # revisit a job; the walk from the revisit on is the cycle (printed in run order).
    start = min(i for i in by_id if i not in acyclic)
    path, seen = [start], {start: 0}
    while True:
        nxt = min(d for d in by_id[path[-1]].deps if d not in acyclic)
        if nxt in seen:
            cycle = path[seen[nxt]:] + [nxt]
            return cycle[::-1]
        seen[nxt] = len(path)
        path.append(nxt)


def _bottom_levels(by_id: Mapping[str, PlanJob], order: Sequence[str]) -> dict[str, float]:
    succ = _successors(by_id)
    level: dict[str, float] = {}
    for i in reversed(order):
        level[i] = by_id[i].seconds + max((level[s] for s in succ[i]), default=0.0)
    return level


def priorities(jobs: Iterable[PlanJob]) -> dict[str, float]:
    """Per job, its seconds plus the longest chain of seconds after it (the HLFET priority)."""
    by_id = _index(jobs)
    return _bottom_levels(by_id, _topological(by_id))


def critical_path(jobs: Iterable[PlanJob]) -> tuple[float, list[str]]:
    """(seconds, ids) of the longest dependency chain; no cluster finishes the study sooner."""
    by_id = _index(jobs)
    if not by_id:
        return 0.0, []
    level = _bottom_levels(by_id, _topological(by_id))
    succ = _successors(by_id)
    roots = [i for i, j in by_id.items() if not j.deps]
    cur = min(roots, key=lambda i: (-level[i], i))
    path = [cur]
    while succ[cur]:
        cur = min(succ[cur], key=lambda i: (-level[i], i))
        path.append(cur)
    return level[path[0]], path


def sequential_wall(jobs: Iterable[PlanJob]) -> float:
    """Every job strictly one after another (how a study runs today): the sum of seconds."""
    return float(sum(j.seconds for j in _index(jobs).values()))


def gpu_seconds(jobs: Iterable[PlanJob]) -> float:
    return float(sum(j.workers * j.seconds for j in jobs))


def lower_bound(jobs: Iterable[PlanJob], total_gpus: int) -> float:
    """max(critical path, GPU-seconds / GPUs): no schedule on ``total_gpus`` GPUs is shorter."""
    if total_gpus < 1:
        raise ScheduleError(f"total_gpus must be >= 1, not {total_gpus}")
    jobs = list(jobs)
    return max(critical_path(jobs)[0], gpu_seconds(jobs) / total_gpus)


# --------------------------------------------------------------------------- the simulation


def _check_cluster(by_id: Mapping[str, PlanJob], nodes: int, gpus_per_node: int, max_concurrent: int | None,
                   allow_spanning: bool) -> None:
    if nodes < 1 or gpus_per_node < 1:
        raise ScheduleError(f"the cluster needs nodes >= 1 and gpus_per_node >= 1, not {nodes} x {gpus_per_node}")
    if max_concurrent is not None and max_concurrent < 1:
        raise ScheduleError(f"max_concurrent must be >= 1 (or None for no cap), not {max_concurrent}")
    total = nodes * gpus_per_node
    for j in sorted(by_id.values(), key=lambda j: j.id):
        if j.workers > total:
            raise ScheduleError(f"job {j.id!r} needs {j.workers} GPUs but the cluster has {total} "
                                f"({nodes} nodes x {gpus_per_node} GPUs)")
        if not allow_spanning and j.workers > gpus_per_node:
            raise ScheduleError(f"job {j.id!r} needs {j.workers} GPUs but a node has {gpus_per_node} and "
                                f"spanning nodes is not allowed (allow_spanning=False)")


def _fit(free: list[list[int]], workers: int, allow_spanning: bool) -> tuple[tuple[int, int], ...] | None:
    """Slots for ``workers`` GPUs: best fit on one node, else spanning; None when it must wait."""
    fits = [n for n, f in enumerate(free) if len(f) >= workers]
    if fits:
        n = min(fits, key=lambda n: (len(free[n]), n))
        return tuple((n, g) for g in free[n][:workers])
    if not allow_spanning or sum(len(f) for f in free) < workers:
        return None
    slots: list[tuple[int, int]] = []
    for n in sorted(range(len(free)), key=lambda n: (-len(free[n]), n)):
        take = min(workers - len(slots), len(free[n]))
        slots.extend((n, g) for g in free[n][:take])
        if len(slots) == workers:
            break
    return tuple(slots)


def simulate(jobs: Iterable[PlanJob], *, nodes: int, gpus_per_node: int, max_concurrent: int | None = None,
             allow_spanning: bool = True) -> Plan:
    """Schedule the job graph on ``nodes`` x ``gpus_per_node`` GPUs (see the module docstring)."""
    jobs = tuple(jobs)
    by_id = _index(jobs)
    order = _topological(by_id)
    _check_cluster(by_id, nodes, gpus_per_node, max_concurrent, allow_spanning)
    level = _bottom_levels(by_id, order)
    succ = _successors(by_id)

    def rank(i: str):
        return (-level[i], i)

    waiting = {i: len(set(j.deps)) for i, j in by_id.items()}
    ready = sorted((i for i, n in waiting.items() if n == 0), key=rank)
    free = [list(range(gpus_per_node)) for _ in range(nodes)]
    running: dict[str, Placement] = {}
    placements: dict[str, Placement] = {}
    t = 0.0

    def start(i: str, slots: tuple[tuple[int, int], ...]) -> None:
        for n, g in slots:
            free[n].remove(g)
        p = Placement(i, t, t + by_id[i].seconds, slots)
        running[i] = placements[i] = p
        ready.remove(i)

    while len(placements) < len(by_id) or running:
        if not any(by_id[i].exclusive for i in running):
            exclusive_ready = [i for i in ready if by_id[i].exclusive]
            if exclusive_ready:
                if not running:
                    i = exclusive_ready[0]
                    start(i, _fit(free, by_id[i].workers, allow_spanning) or ())
            else:
                gpu_jobs = sum(1 for i in running if by_id[i].workers > 0)
                for i in list(ready):
                    w = by_id[i].workers
                    if w == 0:
                        start(i, ())
                        continue
                    if max_concurrent is not None and gpu_jobs >= max_concurrent:
                        continue
                    slots = _fit(free, w, allow_spanning)
                    if slots is not None:
                        start(i, slots)
                        gpu_jobs += 1
        if not running:  # cannot happen for a checked DAG: a job that fits an empty cluster starts
            raise ScheduleError(f"internal: nothing runs at t={t} and jobs are left: {sorted(ready)}")
        t = min(p.end for p in running.values())
        for i in sorted(i for i, p in running.items() if p.end <= t):
            p = running.pop(i)
            for n, g in p.slots:
                free[n].append(g)
                free[n].sort()
            for s in succ[i]:
                waiting[s] -= 1
                if waiting[s] == 0:
                    ready.append(s)
        ready.sort(key=rank)

    total = nodes * gpus_per_node
    wall = max((p.end for p in placements.values()), default=0.0)
    work = gpu_seconds(jobs)
    cp_s, cp = critical_path(jobs)
    return Plan(
        jobs=jobs,
        placements={j.id: placements[j.id] for j in jobs},
        scheduled_wall_s=wall,
        sequential_wall_s=sequential_wall(jobs),
        critical_path_s=cp_s,
        critical_path=cp,
        gpu_seconds=work,
        lower_bound_wall_s=max(cp_s, work / total),
        nodes=nodes,
        gpus_per_node=gpus_per_node,
        utilization=work / (total * wall) if wall > 0 else 0.0,
        max_concurrent=max_concurrent,
        allow_spanning=allow_spanning,
        priority=level,
    )


# --------------------------------------------------------------------------- reports


def _hours(s: float) -> float:
    return s / 3600.0


def _by(plan: Plan, key) -> dict[str, dict]:
    out: dict[str, dict] = defaultdict(lambda: {"jobs": 0, "gpu_hours": 0.0, "job_hours": 0.0, "ends_h": 0.0})
    for j in plan.jobs:
        row = out[key(j)]
        row["jobs"] += 1
        row["gpu_hours"] += _hours(j.workers * j.seconds)
        row["job_hours"] += _hours(j.seconds)
        row["ends_h"] = max(row["ends_h"], _hours(plan.placements[j.id].end))
    return dict(out)


def plan_json(plan: Plan) -> dict:
    """The plan as JSON-ready data: totals in hours, GPU-hours per kind and arm, every job."""
    wall = plan.scheduled_wall_s
    return {
        "nodes": plan.nodes,
        "gpus_per_node": plan.gpus_per_node,
        "total_gpus": plan.total_gpus,
        "max_concurrent": plan.max_concurrent,
        "allow_spanning": plan.allow_spanning,
        "gpu_hours": _hours(plan.gpu_seconds),
        "sequential_wall_h": _hours(plan.sequential_wall_s),
        "scheduled_wall_h": _hours(wall),
        "lower_bound_wall_h": _hours(plan.lower_bound_wall_s),
        "critical_path_h": _hours(plan.critical_path_s),
        "critical_path": list(plan.critical_path),
        "utilization": plan.utilization,
        "speedup_vs_sequential": plan.sequential_wall_s / wall if wall > 0 else None,
        "gpu_hours_by_kind": {k: v["gpu_hours"] for k, v in sorted(_by(plan, lambda j: j.kind or "-").items())},
        "gpu_hours_by_arm": {k: v["gpu_hours"] for k, v in sorted(_by(plan, lambda j: j.arm or "-").items())},
        "jobs": [
            {"id": j.id, "kind": j.kind, "arm": j.arm, "workers": j.workers, "seconds": j.seconds,
             "exclusive": j.exclusive, "deps": list(j.deps), "start": p.start, "end": p.end,
             "slots": [list(s) for s in p.slots]}
            for j, p in sorted(((j, plan.placements[j.id]) for j in plan.jobs), key=lambda jp: (jp[1].start, jp[0].id))
        ],
    }


def plan_markdown(plan: Plan, title: str) -> str:
    """A readable summary: the walls side by side, the critical path, GPU-hours per kind and arm."""
    wall = plan.scheduled_wall_s
    cap = "none" if plan.max_concurrent is None else str(plan.max_concurrent)
    speedup = f"{plan.sequential_wall_s / wall:.2f}x" if wall > 0 else "-"
    lines = [
        f"# {title}", "",
        f"{len(plan.jobs)} jobs on {plan.nodes} nodes x {plan.gpus_per_node} GPUs "
        f"({plan.total_gpus} GPUs; concurrent GPU jobs cap: {cap}; "
        f"spanning nodes {'allowed' if plan.allow_spanning else 'not allowed'}).", "",
        "| | hours |", "|---|---:|",
        f"| sequential (one job at a time) | {_hours(plan.sequential_wall_s):.2f} |",
        f"| scheduled | {_hours(wall):.2f} |",
        f"| lower bound: max(critical path, GPU-hours / GPUs) | {_hours(plan.lower_bound_wall_s):.2f} |",
        f"| critical path | {_hours(plan.critical_path_s):.2f} |",
        f"| GPU-hours | {_hours(plan.gpu_seconds):.2f} |", "",
        f"Speed-up over sequential: {speedup}; scheduled / lower bound: "
        + (f"{wall / plan.lower_bound_wall_s:.2f}" if plan.lower_bound_wall_s > 0 else "-")
        + f"; GPU utilization: {plan.utilization:.1%}.", "",
        "Critical path: " + (" -> ".join(f"`{i}`" for i in plan.critical_path) or "-"), "",
    ]
    for label, key in (("kind", lambda j: j.kind or "-"), ("arm", lambda j: j.arm or "-")):
        groups = _by(plan, key)
        if label == "arm" and list(groups) == ["-"]:
            continue
        lines += [f"| {label} | jobs | GPU-hours | job-hours | last ends at (h) |", "|---|---:|---:|---:|---:|"]
        for name, row in sorted(groups.items()):
            lines.append(f"| {name} | {row['jobs']} | {row['gpu_hours']:.2f} | {row['job_hours']:.2f} "
                         f"| {row['ends_h']:.2f} |")
        lines.append("")
    return "\n".join(lines)
