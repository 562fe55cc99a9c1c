"""Run a benchmark on every node of a Ray cluster at once: one actor per node (or per GPU).

    from stilts_ds.engine.connection import connect
    from stilts_ds.inference.placement import run_per_node, cluster_total

    def measure() -> list[dict]:                 # runs inside each actor, on its node
        ...build engines, time them...
        return [r.to_dict() for r in benchmark_engines(...)]

    connect("10.0.0.1:6379")                      # or pass address=... below
    rows = run_per_node(measure, num_nodes=4, gpus_per_actor=1)     # one actor per node
    rows = run_per_node(measure, per_gpu=True)                       # one actor per GPU
    totals = cluster_total(rows)                 # one "cluster" row per engine/dtype/batch/length

``measure`` is any picklable callable returning a list of dicts (or of objects with
``to_dict()``, such as ``timing.BenchmarkResult``). Ray pickles it with cloudpickle: a
module-level function of an installed package (``stilts_ds``) travels by reference, a
closure, lambda or ``functools.partial`` by value. A function defined at the top of a
script or test file that the workers cannot import must be a closure (or registered with
``cloudpickle.register_pickle_by_value``). Each returned row gets, overriding any value
``measure`` set for these keys:

==============  ==========================================================================
node_id         ``ray.get_runtime_context().get_node_id()`` inside the actor
node_index      the node's position among the cluster's alive nodes: head first, then by
                node IP and id (stable across runs of one cluster; labels "node0", ...)
node_ip         the node's IP as Ray knows it (distinct per raylet, also on one machine)
host            ``"<hostname> (<node ip>)"``: the hostname alone is the same for every
                raylet started on one machine
device          the GPU name(s) the actor was given (``torch.cuda.get_device_name``), else
                ``"cpu: <model name from /proc/cpuinfo>"``. A ``device`` the row already
                had (timing's ``"cuda:0"``) is kept as ``torch_device``
actor_index     the actor's bundle index (several per node in ``per_gpu`` mode)
local_rank      the actor's index among the actors on its node (0 in per-node mode)
actors_on_node  how many actors ran on that node (1 in per-node mode)
gpu_ids         ``ray.get_gpu_ids()`` of the actor
==============  ==========================================================================

Placement. Per-node mode (the default): a placement group of ``num_nodes`` bundles
``{"CPU": cpus_per_actor, "GPU": gpus_per_actor}`` with strategy ``STRICT_SPREAD``, so no
two actors share a node; Ray picks which nodes when fewer than all are asked for. Per-GPU
mode (``per_gpu=True``) or ``actors_per_node=k``: several bundles per node, strategy
``SPREAD`` (STRICT_SPREAD would refuse two bundles on one node), and each bundle pinned to
its node with a ``ray.io/node-id`` label selector, so node i gets exactly its share (SPREAD
alone only spreads "as evenly as possible" and could put a node's GPUs' actors elsewhere).
Nodes are then taken in ``node_index`` order. Actors run ``measure`` concurrently (the
cluster figure is then the cluster under load, as in serving); ``sequential=True`` runs one
actor at a time, e.g. when several "nodes" share one machine's cores.

The placement group and actors are removed at the end, on error too. Fewer fitting nodes
than requested raises ``PlacementError`` naming how many are alive, and a group that cannot
be placed within ``timeout_s`` (resources held by other jobs) raises it with each node's
free resources, rather than waiting forever. On a single machine (a local Ray, no
cluster) the same code runs with one node.

``cluster_total`` adds the cluster rows; it needs no Ray and is also used by
``stilts_ds.inference.report``. Ray is imported only inside ``run_per_node``.
"""
from __future__ import annotations

import os
import platform
import re
import socket
from collections import defaultdict
from typing import Any, Callable, Iterable, Mapping, Sequence

from stilts_ds.errors import StiltsError

CLUSTER = "cluster"  # node_id (and node label) of cluster_total's rows
GROUP_KEYS = ("engine", "dtype", "batch_size", "seq_len")
THROUGHPUT = "throughput_samples_per_s"
USEFUL_TOKENS = "useful_tokens_per_s"  # non-padding tokens per second; sums over nodes like samples/s
LATENCIES = ("latency_ms_p50", "latency_ms_p90", "latency_ms_p99")
PARITY = "parity_max_abs_diff"
_HEAD_RESOURCE = "node:__internal_head__"
_NODE_ID_LABEL = "ray.io/node-id"


class PlacementError(StiltsError, RuntimeError):
    """The cluster cannot host the requested actors (too few nodes, or no free resources)."""


# ------------------------------------------------------------------ inside the actor

def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                # x86: "model name"; some ARM kernels: "Hardware" / "Processor".
                if key.strip() in ("model name", "Hardware", "Processor") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def device_name(gpu_ids: Sequence) -> str:
    """The GPUs this process sees (when it was given any), else the CPU model."""
    if gpu_ids:
        try:
            import torch

            if torch.cuda.is_available():
                # Ray sets CUDA_VISIBLE_DEVICES to the actor's GPUs, so 0..count-1 are its own.
                names = [torch.cuda.getdevice_name(i) for i in range(torch.cuda.device_count())]
                if names:
                    return ", ".join(names)
        except Exception:  # noqa: BLE001 - a broken CUDA setup still gets a name below
            pass
    return f"cpu: {_cpu_model()}"


def as_row(row: Any) -> dict:
    """A measurement row as a plain dict (dicts as they are, results via ``to_dict()``)."""
    if isinstance(row, Mapping):
        return dict(row)
    if hasattr(row, "to_dict"):
        return dict(row.to_dict())
    raise TypeError(f"a bench row must be a dict or have to_dict(), got {type(row).__name__}")


class _Runner:
    """The per-node actor (wrapped by ray.remote in run_per_node, so importing this module
    does not import Ray)."""

    def info(self) -> dict:
        import ray

        gpu_ids = [str(g) for g in ray.get_gpu_ids()]
        return {"node_id": ray.get_runtime_context().get_node_id(), "hostname": socket.gethostname(),
                "gpu_ids": gpu_ids, "device": device_name(gpu_ids), "pid": os.getpid()}

    def run(self, measure: Callable[[], Iterable]) -> list[dict]:
        rows = measure()
        if isinstance(rows, Mapping) or not isinstance(rows, Iterable):
            raise TypeError(f"measure must return a list of rows, got {type(rows).__name__}")
        return [as_row(r) for r in rows]


# ------------------------------------------------------------------ on the driver

def _alive_nodes() -> list[dict]:
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    # Head first, then by IP and id: node_index stays the same for a cluster across runs.
    nodes.sort(key=lambda n: (_HEAD_RESOURCE not in n.get("Resources", {}), n.get("NodeManagerAddress", ""),
                              n["NodeID"]))
    return nodes


def _fits(node: dict, bundle: Mapping[str, float]) -> bool:
    res = node.get("Resources", {})
    return all(res.get(k, 0.0) + 1e-9 >= v for k, v in bundle.items())


def _need(bundle: Mapping[str, float]) -> str:
    return ", ".join(f"{k}>={v:g}" for k, v in bundle.items())


def _plan(nodes: list[dict], bundle: dict, num_nodes: int | None, per_gpu: bool,
          actors_per_node: int | None) -> list[tuple[dict, int]]:
    """[(node, actors on it)] for the nodes to use, or PlacementError."""
    fitting = [n for n in nodes if _fits(n, bundle)]
    if num_nodes is not None and num_nodes > len(fitting):
        fit_note = ("" if len(fitting) == len(nodes)
                    else f"; {len(fitting)} of them have the resources for one actor ({_need(bundle)})")
        raise PlacementError(
            f"{num_nodes} nodes requested, but only {len(nodes)} Ray node"
            f"{'' if len(nodes) == 1 else 's'} {'is' if len(nodes) == 1 else 'are'} alive{fit_note}. "
            f"Start more nodes (ray start --address=...) or ask for num_nodes<={len(fitting)}.")
    if not fitting:
        raise PlacementError(f"no alive Ray node (of {len(nodes)}) has the resources for one actor ({_need(bundle)})")
    chosen = fitting if num_nodes is None else fitting[:num_nodes]
    if per_gpu:
        g = bundle["GPU"]
        return [(n, int(n["Resources"]["GPU"] / g + 1e-9)) for n in chosen]
    return [(n, actors_per_node or 1) for n in chosen]


def _free_resources() -> str:
    import ray

    try:
        avail = ray.available_resources()
    except Exception:  # noqa: BLE001 - only decorates an error message
        avail = {}
    lines = []
    for n in _alive_nodes():
        res = n.get("Resources", {})
        lines.append(f"  {n['NodeManagerAddress']} ({n['NodeID'][:12]}): total "
                     + ", ".join(f"{k}={res[k]:g}" for k in ("CPU", "GPU") if k in res))
    if avail:
        lines.append("  cluster free now: " + ", ".join(f"{k}={avail[k]:g}" for k in ("CPU", "GPU") if k in avail))
    return "\n".join(lines)


def run_per_node(measure: Callable[[], list[dict]], *, num_nodes: int | None = None, gpus_per_actor: float = 0,
                 cpus_per_actor: float = 1, address: str | None = None, per_gpu: bool = False,
                 actors_per_node: int | None = None, sequential: bool = False,
                 timeout_s: float = 120.0) -> list[dict]:
    """Run ``measure`` in one actor per node (``per_gpu``: per GPU; ``actors_per_node``: k
    per node) and return every row, augmented with where it ran (module docstring).

    ``num_nodes``: None uses every alive node that can host an actor; more than there are
    raises ``PlacementError``. ``address``: used only when this process is not connected to
    Ray yet (then it is also disconnected at the end); None finds a cluster (RAY_ADDRESS)
    or starts a local one (``engine.connection.connect``, as every driver of stilts-ds joins).
    Rows come back ordered by node index, then actor, then measure's own order.
    """
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    if num_nodes is not None and num_nodes < 1:
        raise ValueError(f"num_nodes must be >= 1, got {num_nodes}")
    if per_gpu and actors_per_node is not None:
        raise ValueError("per_gpu and actors_per_node exclude each other (per_gpu: one actor per GPU)")
    if actors_per_node is not None and actors_per_node < 1:
        raise ValueError(f"actors_per_node must be >= 1, got {actors_per_node}")
    if per_gpu and not gpus_per_actor:
        gpus_per_actor = 1
    if cpus_per_actor < 0 or gpus_per_actor < 0 or (cpus_per_actor == 0 and gpus_per_actor == 0):
        # Ray rejects empty bundles, and an actor holding nothing could land anywhere.
        raise ValueError("an actor needs cpus_per_actor > 0 or gpus_per_actor > 0 (and neither negative)")
    bundle = {k: float(v) for k, v in (("CPU", cpus_per_actor), ("GPU", gpus_per_actor)) if v}

    from stilts_ds.engine.connection import connect, disconnect

    connected_here = connect(address, quiet=True)  # False when the caller already connected
    pg = None
    actors: list = []
    try:
        nodes = _alive_nodes()
        plan = _plan(nodes, bundle, num_nodes, per_gpu, actors_per_node)
        index_of = {n["NodeID"]: i for i, n in enumerate(nodes)}
        ip_of = {n["NodeID"]: n.get("NodeManagerAddress") for n in nodes}
        several = per_gpu or (actors_per_node or 1) > 1
        bundles, selectors = [], []
        for node, count in plan:
            bundles += [dict(bundle) for _ in range(count)]
            selectors += [{_NODE_ID_LABEL: node["NodeID"]} for _ in range(count)]
        if several:
            pg = placement_group(bundles, strategy="SPREAD", bundle_label_selector=selectors)
        else:
            pg = placement_group(bundles, strategy="STRICT_SPREAD")
        ready, _ = ray.wait([pg.ready()], timeout=timeout_s)
        if not ready:
            raise PlacementError(
                f"the placement group ({len(bundles)} x {{{_need(bundle)}}}, "
                f"{'SPREAD, pinned per node' if several else 'STRICT_SPREAD'}) was not placed within "
                f"{timeout_s:g} s: other jobs hold the resources, or nodes lack them.\n{_free_resources()}")

        remote_runner = ray.remote(_Runner)
        for i in range(len(bundles)):
            actors.append(remote_runner.options(
                num_cpus=cpus_per_actor, num_gpus=gpus_per_actor,
                scheduling_strategy=PlacementGroupSchedulingStrategy(
                    placement_group=pg, placement_group_bundle_index=i,
                    # Tasks or actors that measure itself starts stay inside the bundle.
                    placement_group_capture_child_tasks=True),
            ).remote())
        infos = ray.get([a.info.remote() for a in actors])

        results: list[list[dict]] = []
        if sequential:
            for i, a in enumerate(actors):
                results.append(_get(ray, a.run.remote(measure), i, infos[i], ip_of, index_of))
        else:
            refs = [a.run.remote(measure) for a in actors]
            results = [_get(ray, ref, i, infos[i], ip_of, index_of) for i, ref in enumerate(refs)]

        per_node: dict[str, list[int]] = defaultdict(list)
        for i, info in enumerate(infos):
            per_node[info["node_id"]].append(i)
        out = []
        for i, (info, rows) in enumerate(zip(infos, results)):
            nid = info["node_id"]
            ip = ip_of.get(nid) or "?"
            place = {"node_id": nid, "node_index": index_of.get(nid), "node_ip": ip,
                     "host": f"{info['hostname']} ({ip})", "device": info["device"],
                     "actor_index": i, "local_rank": per_node[nid].index(i),
                     "actors_on_node": len(per_node[nid]), "gpu_ids": info["gpu_ids"]}
            for row in rows:
                if "device" in row and row["device"] != place["device"]:
                    row["torch_device"] = row["device"]
                row.update(place)
                out.append(row)
        out.sort(key=lambda r: (r["node_index"] if r["node_index"] is not None else 1 << 30, r["actor_index"]))
        return out  # sort is stable: measure's own order within an actor survives
    finally:
        for a in actors:
            try:
                ray.kill(a)
            except Exception:  # noqa: BLE001 - cleanup must reach remove_placement_group
                pass
        if pg is not None:
            try:
                remove_placement_group(pg)
            except Exception:  # noqa: BLE001
                pass
        if connected_here:
            disconnect()


def _get(ray, ref, i: int, info: dict, ip_of: dict, index_of: dict) -> list[dict]:
    """ray.get with the failing node named (RayTaskError alone says only which actor class)."""
    try:
        return ray.get(ref)
    except Exception as e:  # noqa: BLE001 - re-raised with context
        nid = info["node_id"]
        # RayTaskError's text is the remote traceback with colour codes; name the original
        # exception in the message and keep the full chain as __cause__.
        cause = getattr(e, "cause", None) or e
        raise RuntimeError(f"measure failed in actor {i} on node{index_of.get(nid)} "
                           f"({info['hostname']} {ip_of.get(nid)}, node id {nid[:12]}): "
                           f"{type(cause).__name__}: {cause}") from e


# ------------------------------------------------------------------ the cluster row

def node_label(row: Mapping[str, Any]) -> str:
    """"cluster"; "node<i>" (one actor on node i) or "node<i>.<local rank>" (several: per
    GPU); "local" for a row that did not come through run_per_node."""
    if row.get("node_id") == CLUSTER:
        return CLUSTER
    if row.get("node_index") is not None:
        label = f"node{row['node_index']}"
        if (row.get("actors_on_node") or 1) > 1:
            label += f".{row.get('local_rank') or 0}"
        return label
    if row.get("node_id"):
        return f"node-{str(row['node_id'])[:8]}"
    return "local"


def _group_key(row: Mapping[str, Any]) -> tuple:
    # "workload" joins the key when rows carry it: two workloads' rows at one batch size and
    # length must not be summed as if they were two nodes.
    return tuple(row.get(k) for k in GROUP_KEYS) + (row.get("workload"),)


def cluster_total(rows: Sequence[Mapping[str, Any]]) -> list[dict]:
    """One row per (engine, dtype, batch_size, seq_len[, workload]) for the whole cluster.

    "Node" below means one actor's rows (one ``node_label``): in per-GPU mode each GPU's
    actor counts as one, so throughput is summed over every GPU of every node.

    * ``throughput_samples_per_s`` and ``useful_tokens_per_s``: the sum over nodes. Every node
      serves its own stream of requests concurrently (run_per_node runs them at once), so
      cluster capacity adds up.
    * ``latency_ms_p50/p90/p99``: the maximum over nodes. Percentiles neither add nor
      average, and the pooled percentile cannot be computed without the raw samples; but the
      pooled pXX of all requests is never above the largest per-node pXX (each node has at
      least XX% of its requests below it), so the maximum is a true upper bound, and the
      slowest node is what a client behind a load balancer can meet.
    * ``parity_max_abs_diff``: the maximum (the worst node).
    * ``status``: "ok" only if every node that reported for the cluster has an "ok" row
      for this key; otherwise "failed" (any node failed or missing) or "unavailable", with
      the nodes' reasons, and no timings: a total missing a node is no cluster figure.

    Other fields equal on every node's row (precision, workload, mean_seq_len, ...) are
    copied; ``node_id`` is ``"cluster"``, ``nodes`` the number of nodes, ``actors`` the number
    of actors, ``device`` the distinct devices. Rows already marked ``"cluster"`` are ignored.
    """
    rows = [dict(r) for r in rows if r.get("node_id") != CLUSTER]
    units = sorted({node_label(r) for r in rows}, key=node_sort_key)  # one label per actor
    n_nodes = len({r.get("node_id") for r in rows})
    groups: dict[tuple, dict[str, dict]] = defaultdict(dict)
    not_ok: dict[tuple, dict[str, dict]] = defaultdict(dict)  # (engine, dtype) -> node -> a not-ok row
    for r in rows:
        label = node_label(r)
        key = _group_key(r)
        if label in groups[key]:
            raise ValueError(f"two rows for {label} at {dict(zip(GROUP_KEYS + ('workload',), key))}: "
                             "cluster_total needs one row per node (actor) and key")
        groups[key][label] = r
        if r.get("status") != "ok":
            not_ok[(r.get("engine"), r.get("dtype"))].setdefault(label, r)

    out = []
    for key, by_node in groups.items():
        members = [by_node[n] for n in units if n in by_node]
        missing = [n for n in units if n not in by_node]
        total: dict[str, Any] = {}
        for field in members[0]:
            values = [m.get(field) for m in members]
            if all(v == values[0] for v in values):
                total[field] = values[0]
        statuses = {m.get("status") for m in members}
        reasons = []
        for n in units:
            r = by_node.get(n)
            if r is not None and r.get("status") != "ok":
                reasons.append((n, f"{r.get('status')}: {r.get('reason') or 'no reason given'}"))
            elif r is None:
                other = not_ok.get((key[0], key[1]), {}).get(n)
                reasons.append((n, f"{other.get('status')}: {other.get('reason') or 'no reason given'}"
                                if other else "no result for this key"))
        if not reasons:
            status, reason = "ok", None
        else:
            status = "unavailable" if not missing and statuses == {"unavailable"} else "failed"
            texts = {t for _, t in reasons}
            reason = (next(iter(texts)) + f" (on {', '.join(n for n, _ in reasons)})" if len(texts) == 1
                      else "; ".join(f"{n}: {t}" for n, t in reasons))
            if status == "unavailable":  # one reason, identical on every node: say it plainly
                reason = members[0].get("reason") if len({m.get("reason") for m in members}) == 1 else reason
        ok = status == "ok"

        def values(field):
            return [m[field] for m in members if m.get(field) is not None]

        total.update({
            "engine": key[0], "dtype": key[1], "batch_size": key[2], "seq_len": key[3],
            "status": status, "reason": reason,
            "node_id": CLUSTER, "node_index": None, "node_ip": None, "actor_index": None, "local_rank": None,
            "actors_on_node": None, "gpu_ids": None,
            "host": _hosts_text(n_nodes, len(units)), "nodes": n_nodes, "actors": len(units),
            "device": "; ".join(sorted({str(m.get("device")) for m in members if m.get("device")})) or None,
            THROUGHPUT: sum(values(THROUGHPUT)) if ok and values(THROUGHPUT) else None,
            USEFUL_TOKENS: sum(values(USEFUL_TOKENS)) if ok and values(USEFUL_TOKENS) else None,
            PARITY: max(values(PARITY)) if values(PARITY) else None,
        })
        for lat in LATENCIES:
            total[lat] = max(values(lat)) if ok and values(lat) else None
        out.append(total)
    return out


_LABEL = re.compile(r"node(\d+)(?:\.(\d+))?")


def node_sort_key(label: str) -> tuple:
    """node0, node1, ..., node10 (node0.0, node0.1, ...) in numeric order, other labels
    after, "cluster" last."""
    m = _LABEL.fullmatch(label)
    if m:
        return (0, int(m.group(1)), int(m.group(2) or 0), label)
    return (1 if label != CLUSTER else 2, 0, 0, label)


def _hosts_text(n_nodes: int, n_actors: int) -> str:
    text = f"{n_nodes} node{'s' if n_nodes != 1 else ''}"
    return text if n_actors == n_nodes else f"{text}, {n_actors} actors"
