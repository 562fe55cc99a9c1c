"""What a finished run did with its GPUs: per-job records drawn as a timeline, and utilization.

    from stilts_ds.studies.timeline import JobRecord, utilization, timeline_png, plan_png
    records = [JobRecord.from_dict(row) for row in rows]     # one record per job, as the scheduler appends them
    utilization(records, total_slots=64)    # {"busy_worker_s", "available_worker_s", "utilization", "wall_s", "slots"}
    write_atomic(run_dir / "timeline.png", timeline_png(records, 64, "paper study"))
    plan_png(plan, "predicted")             # the same picture for a schedule_model.Plan

Utilization is busy worker-seconds (workers x duration of every GPU job, failed ones too:
they held their GPUs) over available worker-seconds (slots x the span from the first start
to the last end). Driver-side jobs (workers == 0) take no slot and count in the span only.

The picture has one lane per worker slot (y) against time since the first start (x, in
seconds, minutes or hours by the run's length); every job is a bar on each lane it held,
coloured by kind; failed jobs are red and hatched; driver jobs sit in thin lanes at the
top. Records do not say which slot a worker used, so ``assign_lanes`` colours the intervals
greedily (by start time, lowest free lanes first): a job gets ``workers`` lanes free for its
whole run. When every GPU record names the host of each worker, lanes are grouped by host
(as many lanes per host as it ever ran workers at once) and labelled with it; spare lanes up
to ``total_slots`` stay empty at the top, so idle capacity shows as white space.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from stilts_ds.errors import StiltsError
from stilts_ds.figures import figure, png


class TimelineError(StiltsError, ValueError):
    """Records that cannot be laid out; the message names the record and the numbers."""


@dataclass(frozen=True)
class JobRecord:
    id: str
    kind: str
    arm: str | None
    start: float
    end: float
    workers: int
    hosts: tuple[str, ...] = ()  # host per worker, when known
    status: str = "done"  # done | failed

    @classmethod
    def from_dict(cls, row: Mapping) -> "JobRecord":
        """A record from a JSON row; unknown keys are ignored so that the log can grow."""
        return cls(id=str(row["id"]), kind=str(row.get("kind") or ""), arm=row.get("arm"),
                   start=float(row["start"]), end=float(row["end"]), workers=int(row.get("workers", 0)),
                   hosts=tuple(str(h) for h in row.get("hosts") or ()), status=str(row.get("status") or "done"))


KIND_COLORS = {
    "prepare": "#8c8c8c", "phase1": "#1f77b4", "phase2": "#2ca02c", "phase3": "#9467bd",
    "results": "#bcbd22", "arms": "#17becf", "bench": "#ff7f0e", "report": "#8c564b",
}
_EXTRA_COLORS = ("#e377c2", "#7f7f7f", "#aec7e8", "#98df8a", "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d")
FAILED_COLOR = "#d62728"


def _check(records: Sequence[JobRecord], total_slots: int) -> None:
    if total_slots < 1:
        raise TimelineError(f"total_slots must be >= 1, not {total_slots}")
    for r in records:
        if r.workers < 0:
            raise TimelineError(f"job {r.id!r}: workers must be >= 0, not {r.workers}")
        if r.workers > total_slots:
            raise TimelineError(f"job {r.id!r} ran {r.workers} workers but the cluster has only {total_slots} "
                                f"slots (total_slots={total_slots})")
        if r.end < r.start:
            raise TimelineError(f"job {r.id!r} ends ({r.end}) before it starts ({r.start})")


def utilization(records: Iterable[JobRecord], total_slots: int) -> dict:
    """Busy over available worker-seconds between the first start and the last end."""
    records = list(records)
    _check(records, total_slots)
    busy = float(sum(r.workers * (r.end - r.start) for r in records if r.workers > 0))
    wall = (max(r.end for r in records) - min(r.start for r in records)) if records else 0.0
    available = total_slots * wall
    return {"busy_worker_s": busy, "available_worker_s": available,
            "utilization": busy / available if available > 0 else 0.0, "wall_s": wall, "slots": total_slots}


def _peak(items: Iterable[tuple[float, float, int]]) -> tuple[float, int]:
    """(time, most workers running at once) over (start, end, workers); touching intervals do not overlap."""
    events = []
    for s, e, w in items:
        if e > s and w > 0:
            events += [(s, 1, w), (e, 0, -w)]  # ends sort before starts at the same time
    best, now, at = 0, 0, 0.0
    for t, _, d in sorted(events):
        now += d
        if now > best:
            best, at = now, t
    return at, best


def _colour(intervals: Sequence[tuple[str, float, float, int]], limit: int | None) -> tuple[dict[str, list[int]], int]:
    """Greedy interval colouring with ``n`` lanes per interval: {id: lanes}, lanes used.

    By start time, each interval takes the lowest lanes free from its start on; with the
    intervals' peak within ``limit`` that always succeeds (every lane busy at a start is held
    by an interval running then). Zero-length intervals overlap nothing and take any lanes.
    """
    free_at: list[float] = []
    out: dict[str, list[int]] = {}
    for i, s, e, n in sorted(intervals, key=lambda x: (x[1], x[2] > x[1], x[0])):
        lanes = [k for k, f in enumerate(free_at) if f <= s][:n]
        while len(lanes) < n and (limit is None or len(free_at) < limit):
            free_at.append(s)
            lanes.append(len(free_at) - 1)
        if len(lanes) < n:
            if e > s:
                raise TimelineError(f"job {i!r} needs {n} slots at t={s} but only {len(lanes)} of {limit} are free: "
                                    f"the records overlap more workers than the cluster holds")
            lanes = list(range(n))
        for k in lanes:
            free_at[k] = max(free_at[k], e)
        out[i] = sorted(lanes)
    return out, len(free_at)


def _natural(s: str):
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", s)]


def _layout(records: Sequence[JobRecord], total_slots: int):
    """({id: lanes}, lane count, [(host, first lane, lane count)]) for the GPU jobs."""
    _check(records, total_slots)
    gpu = [r for r in records if r.workers > 0]
    at, peak = _peak((r.start, r.end, r.workers) for r in gpu)
    if peak > total_slots:
        running = sorted(r.id for r in gpu if r.start <= at < r.end)
        raise TimelineError(f"at t={at} the records run {peak} workers at once but the cluster has {total_slots} "
                            f"slots: {', '.join(running)}")
    if not gpu or any(len(r.hosts) != r.workers for r in gpu):
        lanes, _ = _colour([(r.id, r.start, r.end, r.workers) for r in gpu], total_slots)
        return {i: tuple(v) for i, v in lanes.items()}, total_slots, []
    hosts = sorted({h for r in gpu for h in r.hosts}, key=_natural)
    lanes: dict[str, list[int]] = {r.id: [] for r in gpu}
    groups, base = [], 0
    for h in hosts:
        per_host, used = _colour([(r.id, r.start, r.end, r.hosts.count(h)) for r in gpu if h in r.hosts], None)
        for i, v in per_host.items():
            lanes[i] += [base + k for k in v]
        groups.append((h, base, used))
        base += used
    return {i: tuple(sorted(v)) for i, v in lanes.items()}, max(base, total_slots), groups


def assign_lanes(records: Iterable[JobRecord], total_slots: int) -> dict[str, tuple[int, ...]]:
    """Worker-slot lanes per GPU job (``workers`` lanes, none shared with an overlapping job)."""
    return _layout(list(records), total_slots)[0]


# --------------------------------------------------------------------------- drawing


def _time_unit(span: float) -> tuple[str, float]:
    if span >= 3 * 3600:
        return "h", 3600.0
    if span >= 600:
        return "min", 60.0
    return "s", 1.0


def _short(job_id: str) -> str:
    # "english/phase2/xnli" -> "xnli": the colour already says the phase
    parts = job_id.split("/")
    return parts[-1] if len(parts) > 2 else job_id


def _render(records: Sequence[JobRecord], lanes: Mapping[str, Sequence[int]], n_lanes: int,
            groups: Sequence[tuple[str, int, int]], util: Mapping, title: str) -> bytes:
    from matplotlib.patches import Patch

    gpu = [r for r in records if r.workers > 0]
    driver = [r for r in records if r.workers == 0]
    driver_lanes, n_driver = _colour([(r.id, r.start, r.end, 1) for r in driver], None)
    t0 = min((r.start for r in records), default=0.0)
    span = max((r.end for r in records), default=0.0) - t0
    unit, scale = _time_unit(span)
    min_w = span / scale * 0.002  # zero-length jobs stay visible as a sliver

    kinds = sorted({r.kind for r in records})
    extra = iter(_EXTRA_COLORS * (1 + len(kinds) // len(_EXTRA_COLORS)))
    colours = {k: KIND_COLORS.get(k) or next(extra) for k in kinds}

    height = min(16.0, max(3.5, 1.6 + 0.11 * n_lanes + 0.25 * n_driver))
    fig = figure((12, height), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    driver_y0, driver_h = n_lanes + 0.6, 0.45

    # One barh call per style: hundreds of single-bar calls make the figure slow to build.
    bars: dict[tuple[str, bool, float], list[tuple[float, float, float]]] = {}

    def bar(r: JobRecord, y: float, h: float) -> tuple[float, float]:
        left, width = (r.start - t0) / scale, max((r.end - r.start) / scale, min_w)
        bars.setdefault((r.kind, r.status == "failed", h), []).append((y, width, left))
        return left, width

    for r in gpu:
        ls = lanes[r.id]
        for k in ls:
            left, width = bar(r, k, 0.82)
        if span > 0 and (r.end - r.start) / span >= 0.05:
            ax.text(left + width / 2, ls[(len(ls) - 1) // 2], _short(r.id), ha="center", va="center",
                    fontsize=6, clip_on=True, color="black" if r.status == "failed" else "white")
    for r in driver:
        bar(r, driver_y0 + driver_lanes[r.id][0] * (driver_h + 0.1), driver_h)
    for (kind, failed, h), rows in sorted(bars.items()):
        y, width, left = zip(*rows)
        ax.barh(list(y), list(width), left=list(left), height=h, align="center",
                color=FAILED_COLOR if failed else colours[kind], alpha=0.9 if failed else 0.85,
                edgecolor="#7f0000" if failed else "white", linewidth=0.4, hatch="////" if failed else None)

    for h, lo, n in groups:
        if lo > 0:
            ax.axhline(lo - 0.5, color="#555555", linewidth=0.6)
    if groups:
        used = sum(n for _, _, n in groups)
        shown = list(groups) + ([("(unused slots)", used, n_lanes - used)] if n_lanes > used else [])
        if n_lanes > used:
            ax.axhline(used - 0.5, color="#555555", linewidth=0.6)
        ticks = [(lo + (n - 1) / 2, h) for h, lo, n in shown]
    else:
        step = max(1, -(-n_lanes // 32))
        ticks = [(k, f"slot {k}") for k in range(0, n_lanes, step)]
    if driver:
        ax.axhline(n_lanes + 0.05, color="#555555", linewidth=0.6, linestyle=":")
        ticks.append((driver_y0 + (n_driver - 1) * (driver_h + 0.1) / 2, "driver"))
    ax.set_yticks([y for y, _ in ticks])
    ax.set_yticklabels([label for _, label in ticks], fontsize=7)
    top = driver_y0 + n_driver * (driver_h + 0.1) if driver else n_lanes - 0.5
    ax.set_ylim(-0.6, max(top, 0.5) + 0.2)
    ax.set_xlim(0, max(span / scale, 1e-9) * 1.01)
    ax.set_xlabel(f"time since the first start ({unit})")
    ax.set_ylabel("worker slot" if not groups else "host (one lane per worker slot)")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(f"{title}\nutilization {util['utilization']:.1%}: {util['busy_worker_s'] / 3600:.2f} busy of "
                 f"{util['available_worker_s'] / 3600:.2f} available worker-hours ({util['slots']} slots, "
                 f"{util['wall_s'] / scale:.2f} {unit})", fontsize=9)
    handles = [Patch(facecolor=colours[k], label=k or "(no kind)") for k in kinds]
    if any(r.status == "failed" for r in records):
        handles.append(Patch(facecolor=FAILED_COLOR, edgecolor="#7f0000", hatch="////", label="failed"))
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=7, frameon=False)
    if not records:
        ax.text(0.5, 0.5, "no jobs", transform=ax.transAxes, ha="center", va="center")
    return png(fig, bbox_inches="tight")


def timeline_png(records: Iterable[JobRecord], total_slots: int, title: str) -> bytes:
    """The run's timeline as PNG bytes (see the module docstring)."""
    records = list(records)
    lanes, n_lanes, groups = _layout(records, total_slots)
    return _render(records, lanes, n_lanes, groups, utilization(records, total_slots), title)


def plan_records(plan) -> list[JobRecord]:
    """A simulated ``schedule_model.Plan`` as run records, hosts named ``node-<index>``."""
    out = []
    for j in plan.jobs:
        p = plan.placements[j.id]
        out.append(JobRecord(j.id, j.kind, j.arm, p.start, p.end, j.workers, tuple(f"node-{n}" for n, _ in p.slots)))
    return out


def plan_png(plan, title: str) -> bytes:
    """The timeline a simulated Plan predicts: one lane per (node, GPU), grouped by node."""
    records = plan_records(plan)
    total = plan.nodes * plan.gpus_per_node
    lanes = {j.id: tuple(n * plan.gpus_per_node + g for n, g in plan.placements[j.id].slots)
             for j in plan.jobs if j.workers > 0}
    groups = [(f"node-{n}", n * plan.gpus_per_node, plan.gpus_per_node) for n in range(plan.nodes)]
    return _render(records, lanes, total, groups, utilization(records, total), title)
