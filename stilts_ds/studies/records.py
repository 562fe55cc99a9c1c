"""What each node of a study has done, and whether that still holds: done / stale / pending /
running / failed, with the reason in words.

    states = node_states(graph)                 # {node id: NodeState}, running nothing
    states["english/phase2/xnli"].state         # "stale"
    states["english/phase2/xnli"].reasons       # ["phase 1 of arm english was retrained"]
    write_done(node, graph, started=..., extra={...})   # after a node ran

A node's ``DONE.json`` (in its directory, written atomically, last) records its key, a fresh
``run_id``, the config slice, data fingerprints and feature entries it was built from, and the
key and run id of each upstream node it consumed. So:

- its key differs from the graph's: stale, naming what changed ("config key
  intermediate.lr changed: 0.001 -> 0.002", "data file .../train.en.jsonl changed",
  "phase 1 of arm english changed");
- an upstream node has run again since (another run id; a forced rerun keeps its key):
  stale, "phase 1 of arm english was retrained";
- an upstream node is not done itself: stale (it will be rebuilt on new inputs);
- no record: pending (or failed, with the error of the last attempt; or running, with the
  host and pid holding its lease).

Prepare nodes keep no record: their outputs are content-addressed feature-cache entries,
so they are done when every entry exists. Consumers record them with the key as run id.
"""
from __future__ import annotations

import json
import socket
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from stilts_ds.atomic import write_atomic
from stilts_ds.data import cache
from stilts_ds.studies.graph import Node, StudyGraph

DONE = "DONE.json"
FAILED = "FAILED.json"
LEASE = ".lease"


@dataclass
class NodeState:
    node: Node
    state: str  # done | stale | pending | running | failed
    reasons: list[str] = field(default_factory=list)
    record: dict | None = None
    holder: dict | None = None  # the lease record while running
    cause: str | None = None  # where a staleness starts: "phase 1 of arm x: config key ... changed"

    @property
    def run_id(self) -> str | None:
        if self.node.kind == "prepare":
            return self.node.key if self.state == "done" else None
        return self.record.get("run_id") if self.record else None

    def as_row(self) -> dict:
        rec = self.record or {}
        return {"node": self.node.id, "kind": self.node.kind, "arm": self.node.arm, "state": self.state,
                "reasons": list(self.reasons), "wall_seconds": rec.get("wall_seconds"),
                "holder": ({k: self.holder.get(k) for k in ("host", "pid")} if self.holder else None)}


def read_record(path: Path) -> dict | None:
    """A node's JSON record (DONE, FAILED, the worker's FINISHED); None when absent or
    unreadable: an unreadable record is no record, and the node runs again."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def read_done(node: Node) -> dict | None:
    return read_record(node.dir / DONE)


def write_done(node: Node, graph: StudyGraph, states: Mapping[str, NodeState], *, started: float,
               finished: float | None = None, extra: Mapping[str, Any] | None = None) -> dict:
    """The record of a node that just ran, consuming its upstream nodes as they are now."""
    finished = finished or time.time()
    deps = [{"id": d, "key": graph.nodes[d].key, "run_id": states[d].run_id} for d in node.deps]
    record = {"node": node.id, "key": node.key, "run_id": uuid.uuid4().hex, "kind": node.kind,
              "config": dict(node.config), "data": dict(node.data), "features": [Path(f).name for f in node.features],
              "deps": deps, "started": started, "finished": finished, "host": socket.gethostname(),
              "wall_seconds": finished - started, **(extra or {})}
    write_atomic(node.dir / DONE, json.dumps(record, indent=2, default=str))
    (node.dir / FAILED).unlink(missing_ok=True)
    return record


def retire_done(node: Node) -> None:
    """Before a node's outputs are rewritten: its record moves aside (``DONE.prev.json``), so an
    interrupted rerun reads as not done instead of vouching for half-rewritten outputs."""
    path = node.dir / DONE
    if path.is_file():
        path.replace(node.dir / "DONE.prev.json")


def write_failed(node: Node, error: str, *, started: float) -> None:
    write_atomic(node.dir / FAILED, json.dumps({"node": node.id, "key": node.key, "error": error,
                                                "started": started, "failed": time.time(),
                                                "host": socket.gethostname()}, indent=2))


def _fmt(value) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _config_changes(old: Mapping, new: Mapping) -> list[str]:
    out = []
    for k in sorted(set(old) | set(new)):
        if k not in new:
            out.append(f"config key {k} was removed")
        elif k not in old:
            out.append(f"config key {k} is new ({_fmt(new[k])})")
        elif old[k] != new[k]:
            out.append(f"config key {k} changed: {_fmt(old[k])} -> {_fmt(new[k])}")
    return out


def _data_changes(old: Mapping, new: Mapping, old_feats, new_feats) -> list[str]:
    out = [f"data file {f} changed" for f in sorted(set(old) & set(new)) if old[f] != new[f]]
    out += [f"data file {f} is new" for f in sorted(set(new) - set(old))]
    out += [f"data file {f} is no longer read" for f in sorted(set(old) - set(new))]
    if not out and sorted(old_feats or []) != sorted(Path(f).name for f in new_feats):
        out.append("its features changed (tokenizer, max length or featurization version)")
    return out


def stale_reasons(node: Node, record: dict, graph: StudyGraph,
                  states: Mapping[str, NodeState]) -> tuple[list[str], list[str]]:
    """(why a recorded node no longer holds, [] when it does; the reasons that are its own:
    its config or data, not an upstream node's)."""
    if "key" not in record:
        reason = "it was made before node keys existed (an older stilts-ds)"
        return [reason], [reason]
    reasons: list[str] = []
    if record["key"] != node.key:
        reasons += _config_changes(record.get("config", {}), node.config)
        reasons += _data_changes(record.get("data", {}), node.data, record.get("features"), node.features)
    own = list(reasons)
    consumed = record.get("deps", [])
    by_key = {d.get("key"): d for d in consumed}
    for dep_id in node.deps:
        dep, dep_state = graph.nodes[dep_id], states[dep_id]
        if dep.kind == "prepare":
            continue  # content-addressed features: the node's own feature names and data files say it
        seen = by_key.get(dep.key)
        if seen is None:
            reasons.append(f"upstream {dep_state.cause}" if dep_state.cause else
                           f"{dep.label} was retrained under another configuration" if dep.kind in ("phase1", "phase2")
                           else f"{dep.label} changed")
        elif dep_state.state != "done":
            reasons.append(f"{dep.label} is {dep_state.state} and will run again")
        elif seen.get("run_id") != dep_state.run_id:
            reasons.append(f"{dep.label} was retrained" if dep.kind in ("phase1", "phase2") else f"{dep.label} ran again")
    if record["key"] != node.key and not reasons:
        reasons.append("its inputs changed")
    return list(dict.fromkeys(reasons)), own


def node_states(graph: StudyGraph, *, leases: bool = True) -> dict[str, NodeState]:
    """The state of every node, upstream first, running nothing."""
    from stilts_ds.lease import holder

    states: dict[str, NodeState] = {}
    for nid in graph.order():
        node = graph.nodes[nid]
        live = holder(node.dir / LEASE) if leases and node.kind != "prepare" else None
        if live is not None and not live.get("alive"):
            live = None
        if node.kind == "prepare":
            missing = [f for f in node.features if not cache.exists(f)]
            state = NodeState(node, "pending" if missing else "done",
                              [f"{len(missing)} of {len(node.features)} feature entries to build"] if missing else [])
        else:
            record = read_done(node)
            if record is None:
                failed = read_record(node.dir / FAILED)
                if failed is not None and failed.get("key") == node.key:
                    state = NodeState(node, "failed", [failed.get("error", "failed")])
                else:
                    state = NodeState(node, "pending")
            else:
                reasons, own = stale_reasons(node, record, graph, states)
                state = NodeState(node, "stale" if reasons else "done", reasons, record)
                if own:
                    state.cause = f"{node.label}: {own[0]}" + (f" (+{len(own) - 1} more)" if len(own) > 1 else "")
                elif reasons:  # inherited: pass the first upstream cause on
                    upstream = [states[d].cause for d in node.deps if states[d].cause]
                    state.cause = upstream[0] if upstream else None
        if live is not None:
            state.holder = live
            state.state = "running"
        states[nid] = state
    return states
