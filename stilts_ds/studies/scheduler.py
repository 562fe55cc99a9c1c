"""Run a study graph: independent nodes side by side, as far as the cluster's free workers allow.

    summary = Scheduler(graph, in_process=False).run()              # every stale or pending node
    summary = Scheduler(graph, force=["english/phase1"]).run(["english/phase1"])   # train --force

What runs: the targets (default: every node) and whatever they need that is not done
(``studies.records``: pending, stale, failed); forced nodes run even when done, and nodes
downstream of anything that runs, within the targets' closure, run after it.

How: driver nodes (features, results, the comparison, the report) run here, one at a time.
Fit nodes are launched as Ray Train fits, each driven by its own Ray task
(``engine.dispatch.FitPool``), as soon as their upstream nodes are done and the cluster has
``cluster.num_workers`` free worker slots (with ``cluster.max_concurrent_jobs`` set, up to that
many even before the slots exist: an autoscaling cluster then sees the demand and grows).
Nodes on the longest remaining path go first. Every fit is a ``StagedJob``: phase-3 nodes of an
arm (and of one seed, config ``seeds``: seeds run side by side) that are ready together share
one fit, and when the cluster cannot run two fits side by side (``cluster.fuse_stages: auto``)
an arm's remaining fits share one, paying Ray Train's fixed start-up cost once. The bench
runs alone, after every fit (nothing else runs while it times engines).

A node that fails fails only the nodes downstream of it; the others finish, and a rerun
resumes from what is done. One driver at a time: the study holds a lease on
``<output_dir>/.stilts/lease`` (a second driver stops naming the holder, or waits with
``wait``), and each running node a lease in its directory (``stilts-ds status`` shows the
host and pid). Every fit's interval lands in ``<output_dir>/schedule.jsonl``; at the end,
``timeline.png`` and ``utilization.json`` show how full the cluster was.
"""
from __future__ import annotations

import json
import time
import traceback
import uuid
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable

import click

from stilts_ds.engine.job import FINISHED
from stilts_ds.errors import StiltsError
from stilts_ds.studies.graph import Node, StudyGraph, digest
from stilts_ds.studies.records import (LEASE, NodeState, node_states, read_record, retire_done, write_done,
                                         write_failed)
from stilts_ds.studies.runners import Runners, identity, run_name

SCHEDULE = "schedule.jsonl"


class StudyFailed(StiltsError):
    """Some nodes failed; the others ran. The message lists each failure and what it blocked."""


@dataclass
class RunSummary:
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # done already
    failed: dict[str, str] = field(default_factory=dict)  # node -> error
    blocked: dict[str, str] = field(default_factory=dict)  # node -> the failed node upstream
    wall_seconds: float = 0.0
    utilization: dict | None = None


def _echo(msg: str) -> None:
    click.echo(msg, err=True)


@dataclass
class _Group:
    nodes: list[Node]
    attempt: str
    name: str
    workers: int
    started: float = 0.0
    leases: list = field(default_factory=list)


class Scheduler:
    def __init__(self, graph: StudyGraph, *, in_process: bool = False, force: Iterable[str] = (),
                 say: Callable[[str], None] | None = _echo, wait: bool | float = False, lease: bool = True):
        self.graph = graph
        self.in_process = in_process
        self.force = set(graph.resolve(force))
        self.say = say or (lambda _msg: None)
        self.wait = wait
        self.use_lease = lease
        self.runners = Runners(graph, say=self.say, in_process=in_process, progress=say is not None)
        self.run_id = uuid.uuid4().hex[:12]
        self.root = graph.root.run_dir
        self._pool = None
        self._leases: set = set()  # node leases held now

    # ------------------------------------------------------------------ what runs
    def plan(self, targets: Iterable[str] | None = None) -> tuple[list[str], dict[str, NodeState]]:
        """(the nodes this run executes, upstream first; the states it starts from)."""
        states = node_states(self.graph)
        want = set(self.graph.resolve(targets)) if targets else set(self.graph.nodes)
        closure = want | self.graph.ancestors(want)
        nodes = self.graph.nodes
        work = {n for n in closure if nodes[n].kind != "prepare" and (states[n].state != "done" or n in self.force)}
        work |= {n for n in self.graph.descendants(work) & closure if nodes[n].kind != "prepare"}
        # Features are content-addressed: built when a node that runs reads them and they are
        # missing (or forced), never a reason by themselves to rerun what reads them.
        work |= {d for n in work for d in nodes[n].deps
                 if nodes[d].kind == "prepare" and (states[d].state != "done" or d in self.force)}
        work |= {n for n in want if nodes[n].kind == "prepare" and (states[n].state != "done" or n in self.force)}
        return [n for n in self.graph.order() if n in work], states

    def _priorities(self) -> dict[str, float]:
        """Longest chain of fit nodes below each node (a cheap critical-path order)."""
        children = self.graph.children()
        prio: dict[str, float] = {}
        for nid in reversed(self.graph.order()):
            node = self.graph.nodes[nid]
            prio[nid] = (1.0 if node.is_fit else 0.0) + max((prio[c] for c in children[nid]), default=0.0)
        return prio

    # ------------------------------------------------------------------ run
    def run(self, targets: Iterable[str] | None = None) -> RunSummary:
        from stilts_ds.lease import Lease

        lease = None
        if self.use_lease:
            lease = Lease(self.root / ".stilts" / "lease", what=f"study {self.root}", say=self.say)
            lease.acquire(wait=self.wait)
        try:
            return self._run(targets, lease)
        finally:
            if self._pool is not None:
                # Stopping early (an error, Ctrl-C): end the fits this driver started, so that
                # no job runs on after its lease is gone (a later driver would run it again).
                self._pool.cancel_all()
            for node_lease in list(self._leases):
                node_lease.release()
            self._leases.clear()
            if lease is not None:
                lease.release()

    def _run(self, targets, study_lease) -> RunSummary:
        t0 = time.time()
        todo, states = self.plan(targets)
        summary = RunSummary(skipped=[n for n in self.graph.order() if n not in todo])
        if not todo:
            self.say("nothing to do: every node is done (stilts-ds status shows them; --force reruns)")
            return summary
        cfg = self.graph.root
        self.say(f"study {cfg.name}: {len(todo)} of {len(self.graph.nodes)} nodes to run "
                 f"({sum(self.graph.nodes[n].is_fit for n in todo)} training/evaluation jobs)")
        from stilts_ds.engine.dispatch import FitPool

        pool = None
        prio = self._priorities()
        pending = list(todo)
        finished: set[str] = {n for n, s in states.items() if s.state == "done" and n not in todo}
        groups: dict[str, _Group] = {}
        used = 0
        records: list[dict] = []
        slots = None

        def ready(nid: str) -> bool:
            return all(d in finished for d in self.graph.nodes[nid].deps)

        def blocked_by(nid: str) -> str | None:
            for d in self.graph.nodes[nid].deps:
                if d in summary.failed:
                    return d
                if d in summary.blocked:
                    return summary.blocked[d]
            return None

        while pending or groups:
            if study_lease is not None and study_lease.lost:
                raise StiltsError(f"the study lease on {self.root} was taken over by another driver (this one "
                                  "was judged dead: no heartbeat for a minute); stopping, and cancelling the fits "
                                  "it started")
            # Nodes upstream of a failure are never started.
            for nid in list(pending):
                upstream = blocked_by(nid)
                if upstream:
                    pending.remove(nid)
                    summary.blocked[nid] = upstream
            ready_now = sorted((n for n in pending if ready(n)), key=lambda n: (-prio[n], todo.index(n)))
            if not ready_now and not groups:
                if pending:
                    raise RuntimeError(f"scheduler stuck: nothing running and {', '.join(pending[:5])} not ready")
                break
            # Driver nodes run here, one at a time; the bench only when no fit runs.
            driver = [n for n in ready_now if not self.graph.nodes[n].is_fit]
            for nid in driver:
                node = self.graph.nodes[nid]
                # The bench times engines on the cluster: it runs alone, after every fit (waiting
                # for the cluster to drain mid-study would idle it for the longest job).
                if node.kind == "bench" and (groups or any(self.graph.nodes[p].is_fit for p in pending)):
                    continue
                pending.remove(nid)
                if node.kind == "report":  # the report quotes this run's timeline and utilization
                    self._timeline(records, slots)
                self._run_driver(node, states, finished, summary, records)
                break  # re-evaluate: it may have made fits ready
            else:
                fits = [n for n in ready_now if self.graph.nodes[n].is_fit]
                if fits:
                    if pool is None:
                        pool = self._pool = FitPool(asdict(cfg.cluster), in_process=self.in_process)
                        slots = pool.slots()
                        self.say(f"cluster: {slots} worker slot(s) for jobs of {cfg.cluster.num_workers} worker(s)"
                                 + (f", at most {cfg.cluster.max_concurrent_jobs} at once"
                                    if cfg.cluster.max_concurrent_jobs else ""))
                    slots = pool.slots()  # nodes join (autoscaler) and leave
                    cap = cfg.cluster.max_concurrent_jobs
                    for group in self._groups(fits, pending, finished, slots, prio):
                        # Within the free slots; at least one job (its placement group waits for
                        # the resources, or the autoscaler brings them); with a cap, up to the
                        # cap, so that an autoscaling cluster sees the demand and grows.
                        admit = used + group.workers <= slots or not groups or (cap and len(groups) < cap)
                        if not admit or (cap and len(groups) >= cap):
                            break
                        for n in group.nodes:
                            pending.remove(n.id)
                        if self._launch(group, pool, states, summary, pending):
                            groups[group.attempt] = group
                            used += group.workers
                        if self.in_process:
                            break  # FitPool ran it here already: collect it before the next
                if not groups:
                    continue
                for done in pool.wait(timeout=1.0 if not self.in_process else None):
                    group = groups.pop(done.handle)
                    used -= group.workers
                    self._collect(group, done, states, finished, summary, records, pending)
        summary.wall_seconds = time.time() - t0
        summary.utilization = self._timeline(records, slots)
        self._report(summary)
        return summary

    # ------------------------------------------------------------------ grouping
    def _fuse(self, slots: int) -> bool:
        return not self.in_process and fuses(self.graph.root.cluster, slots)

    def _groups(self, fits: list[str], pending: list[str], finished: set[str], slots: int,
                prio: dict[str, float]) -> list[_Group]:
        """The fits to launch now, in priority order: one node alone, an arm's ready phase-3
        nodes together, or (fused) an arm's remaining fits in one group."""
        out, taken = [], set()
        fuse = self._fuse(slots)
        for nid in fits:
            if nid in taken:
                continue
            node = self.graph.nodes[nid]
            if fuse:
                members = self._chain(node, pending, finished)
            elif node.kind == "phase3":
                # One seed's: different seeds' evaluations are independent and run side by side.
                members = [self.graph.nodes[n] for n in fits if n not in taken and self.graph.nodes[n].kind == "phase3"
                           and self.graph.nodes[n].arm == node.arm and self.graph.nodes[n].seed == node.seed]
            else:
                members = [node]
            taken.update(m.id for m in members)
            cfg = self.graph.config_of(node)
            if len(members) == 1:
                name = run_name(self.graph, node)  # stable: a rerun of the node resumes its checkpoints
            else:  # named by its members: two groups never share a Ray run, and the same group resumes
                name = f"{cfg.name}-{'fused' if fuse else 'phase3'}-{digest(sorted(m.id for m in members), 8)}"
            out.append(_Group(members, uuid.uuid4().hex[:12], name, cfg.cluster.num_workers))
        return out

    def _chain(self, first: Node, pending: list[str], finished: set[str]) -> list[Node]:
        """``first`` and every pending fit of its arm whose upstream is done or earlier in the chain."""
        chain, inside = [first], {first.id}
        for nid in self.graph.order():
            node = self.graph.nodes[nid]
            if nid in inside or nid not in pending or not node.is_fit or node.arm != first.arm:
                continue
            if all(d in finished or d in inside for d in node.deps):
                chain.append(node)
                inside.add(nid)
        return chain

    # ------------------------------------------------------------------ launching
    def _launch(self, group: _Group, pool, states, summary, pending) -> bool:
        """Build and check each member's job, then start the group's fit. A member that fails to
        build fails alone: the members that need it go back in the queue (and are blocked
        there), the others start. False if nothing started."""
        from stilts_ds.engine import checkpoints
        from stilts_ds.engine.job import StagedJob
        from stilts_ds.lease import Lease

        cfg = self.graph.config_of(group.nodes[0])
        storage = cfg.storage_path()
        jobs, members, failed = [], [], set()
        inside = {n.id for n in group.nodes}
        for node in group.nodes:
            if set(node.deps) & failed:  # needs a member that failed: blocked, not failed
                failed.add(node.id)
                pending.append(node.id)
                continue
            lease = Lease(node.dir / LEASE, what=f"node {node.id}", say=self.say)
            try:
                node.dir.mkdir(parents=True, exist_ok=True)
                lease.acquire(wait=False)
                # Upstream nodes inside the group have not run yet: their exports are checked by
                # the worker that made them, not here.
                job = self.runners.job(node, check_encoder=not (set(node.deps) & inside))
                if node.id in self.force or states[node.id].record is not None:
                    # Forced, or its earlier finished run is stale: start over.
                    checkpoints.clear(storage, group.name, node.dir)
                else:
                    checkpoints.check_resumable(storage, group.name, node.dir, identity(node))
                # From here on its outputs get overwritten: its old record must not vouch for them.
                retire_done(node)
            except Exception as e:  # noqa: BLE001 - a failed node fails only its dependents
                lease.release()
                hint = force_hint(node) if isinstance(e, checkpoints.CheckpointMismatch) else ""
                self._failed(node, e, summary, started=time.time(), hint=hint)
                failed.add(node.id)
                continue
            group.leases.append(lease)
            self._leases.add(lease)
            jobs.append(job)
            members.append(node)
        group.nodes = members
        if not members:
            return False
        what = members[0].id if len(members) == 1 else f"{len(members)} jobs of {members[0].arm or cfg.name} " \
            f"in one worker group ({', '.join(n.id.split('/', 1)[-1] for n in members[:4])}" \
            f"{', ...' if len(members) > 4 else ''})"
        self.say(f"start {what} on {group.workers} worker(s)")
        group.started = time.time()
        pool.submit(group.attempt, StagedJob(stages=tuple(jobs), attempt=group.attempt), name=group.name,
                    storage_path=storage)
        return True

    def _collect(self, group: _Group, done, states, finished, summary, records, pending) -> None:
        """After a fit ended: each node that finished gets its DONE.json; the first that did not
        is the failure (when the fit failed); the rest of the group goes back in the queue."""
        ended = time.time()
        failed_one = None
        for node in group.nodes:
            mark = read_record(node.dir / FINISHED)
            ok = mark is not None and mark.get("attempt") == group.attempt and mark.get("key") == node.key
            if ok:
                started, finished_at = float(mark["started"]), float(mark["finished"])
                if len(group.nodes) == 1:  # alone in its fit: its wall includes the launch
                    started, finished_at = group.started, ended
                try:
                    extra = self.runners.cost(node, started, finished_at)
                except (OSError, ValueError) as e:  # the record matters more than its cost figures
                    extra = {"cost_error": f"{type(e).__name__}: {e}"}
                extra.update(fit_attempt=group.attempt, fit_workers=group.workers)
                record = write_done(node, self.graph, states, started=started, finished=finished_at, extra=extra)
                states[node.id] = NodeState(node, "done", [], record)
                finished.add(node.id)
                summary.ran.append(node.id)
                records.append(self._record(node, started, finished_at, group, "done"))
                self.say(f"done  {node.id} ({finished_at - started:.1f} s)")
            elif failed_one is None:
                failed_one = node
                error = done.error or f"the fit ended before this job finished (no {FINISHED})"
                write_failed(node, error, started=group.started)
                summary.failed[node.id] = error
                records.append(self._record(node, group.started, ended, group, "failed"))
                self.say(f"FAILED {node.id}: {error}")
            else:
                pending.append(node.id)  # not reached: queued again (blocked if downstream of the failure)
        if failed_one is None and done.error:  # every node finished, yet the fit reported an error
            self.say(f"warning: {group.name} ended with an error after its jobs finished: {done.error}")
        pending.sort(key=self.graph.order().index)
        for lease in group.leases:
            lease.release()
            self._leases.discard(lease)

    def _run_driver(self, node: Node, states, finished, summary, records) -> None:
        from stilts_ds.lease import Lease

        started = time.time()
        node.dir.mkdir(parents=True, exist_ok=True)
        lease = Lease(node.dir / LEASE, what=f"node {node.id}", say=self.say) if node.kind != "prepare" else None
        try:
            if lease:
                lease.acquire(wait=False)
                retire_done(node)  # its outputs are rewritten now
            extra = self.runners.run_driver(node)
        except Exception as e:  # noqa: BLE001 - a failed node fails only its dependents
            self._failed(node, e, summary, started=started)
            return
        finally:
            if lease:
                lease.release()
        ended = time.time()
        if node.kind == "prepare":
            states[node.id] = NodeState(node, "done")
        else:
            record = write_done(node, self.graph, states, started=started, finished=ended, extra=extra)
            states[node.id] = NodeState(node, "done", [], record)
        finished.add(node.id)
        summary.ran.append(node.id)
        records.append(self._record(node, started, ended, None, "done"))
        if ended - started > 1.0 or node.kind != "prepare":
            self.say(f"done  {node.id} ({ended - started:.1f} s)")

    def _failed(self, node: Node, e: Exception, summary: RunSummary, *, started: float, hint: str = "") -> None:
        """A node that failed on the driver: bad input (StiltsError) by its message, anything
        else with its traceback too; FAILED.json for `status` (prepare nodes keep no record)."""
        error = str(e) if isinstance(e, StiltsError) else f"{type(e).__name__}: {e}"
        if not isinstance(e, StiltsError):
            traceback.print_exc()
        if hint:
            error += "\n" + hint
        summary.failed[node.id] = error
        if node.kind != "prepare":
            write_failed(node, error, started=started)
        self.say(f"FAILED {node.id}: {error}")

    def _record(self, node: Node, start: float, end: float, group: _Group | None, status: str) -> dict:
        rec = {"run": self.run_id, "id": node.id, "kind": node.kind, "arm": node.arm, "start": start, "end": end,
               "workers": group.workers if group else 0, "status": status,
               "group": group.attempt if group else None}
        path = self.root / SCHEDULE
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:  # one line per job: an interrupted run keeps its lines
            f.write(json.dumps(rec) + "\n")
        return rec

    # ------------------------------------------------------------------ the end
    def _timeline(self, records: list[dict], slots: int | None) -> dict | None:
        """timeline.png and utilization.json of this run's fits (busy / available worker-seconds)."""
        from stilts_ds.atomic import write_atomic
        from stilts_ds.studies.timeline import JobRecord, timeline_png, utilization

        jobs = [JobRecord.from_dict(r) for r in records]
        if not any(j.workers for j in jobs) or not slots:
            return None
        slots = max(slots, max(j.workers for j in jobs))
        util = utilization(jobs, slots)
        util.update(run=self.run_id, slots=slots)
        write_atomic(self.root / "utilization.json", json.dumps(util, indent=2))
        write_atomic(self.root / "timeline.png",
                     timeline_png(jobs, slots, title=f"{self.graph.root.name}: jobs on {slots} worker slots"))
        return util

    def _report(self, summary: RunSummary) -> None:
        util = summary.utilization
        line = (f"ran {len(summary.ran)} node(s) in {summary.wall_seconds:.0f} s"
                + (f"; worker utilization {util['utilization']:.0%} ({self.root / 'timeline.png'})" if util else ""))
        self.say(line)
        if summary.failed:
            lines = [f"{len(summary.failed)} node(s) failed; {len(summary.blocked)} downstream of them did not run:"]
            for nid, error in summary.failed.items():
                below = [b for b, up in summary.blocked.items() if up == nid]
                text = (error or "").splitlines() or [""]
                lines.append(f"  {nid}: {text[0]}")
                lines += [f"    {t}" for t in text[1:12]]
                if below:
                    lines.append(f"    blocked downstream: {', '.join(below[:6])}{', ...' if len(below) > 6 else ''}")
            lines.append("fix the cause and rerun: finished nodes are kept")
            raise StudyFailed("\n".join(lines))


def force_hint(node: Node) -> str:
    """The command that starts ``node`` over."""
    arm = f" --arm {node.arm}" if node.arm else ""
    if node.kind == "phase1":
        return f"To start it over: stilts-ds train --config ...{arm} --force"
    if node.kind == "phase2":
        return f"To start it over: stilts-ds finetune --config ...{arm} --task {node.target} --force"
    return f"To start it over: stilts-ds evaluate --config ...{arm} --force"


def fuses(cluster, slots: int) -> bool:
    """Whether an arm's jobs share one worker group (``cluster.fuse_stages``): always, never, or
    (auto) when only one job at a time can run: a cap of 1, or no cap and room for one now."""
    if cluster.fuse_stages != "auto":
        return cluster.fuse_stages == "always"
    cap = cluster.max_concurrent_jobs
    return cap == 1 or (cap is None and slots < 2 * cluster.num_workers)
