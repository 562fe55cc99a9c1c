"""The files of one inference benchmark run: JSONL, CSV, Markdown, TensorBoard, PNG plots.

    from stilts_ds.inference.placement import run_per_node
    from stilts_ds.inference.report import write_reports

    rows = run_per_node(measure)                  # per-node rows (see placement)
    paths = write_reports(rows, "runs/bench-xnli", title="XNLI, fp16, 4 nodes")
    paths["md"], paths["throughput_png"], ...

``rows`` are dicts (or objects with ``to_dict()``, e.g. ``timing.BenchmarkResult``), one
per engine x dtype x batch size x node, as ``timing`` and ``placement.run_per_node`` make
them. Unless the rows already hold cluster rows (``node_id == "cluster"``) or
``cluster=False``, ``placement.cluster_total`` adds them (throughput summed over nodes,
latency the worst node's). Rows that did not come through run_per_node are one node,
"local". Written under ``out_dir`` (every file through ``stilts_ds.atomic.write_atomic``):

==================  =====================================================================
``bench.jsonl``     one JSON object per row, every row with every column (missing -> null);
                    ``COLUMNS`` first, then any other fields in first-seen order
``bench.csv``       the same columns; null -> empty cell, lists/dicts as JSON
``bench.md``        nodes (host, device), one results table (a row per node and the
                    cluster row under it, per engine/dtype/batch size; with --task a
                    column of the task's score through each engine), and the
                    unavailable or failed engines with their reasons
``tensorboard/``    scalars ``bench/<engine>_<precision>/<node>/<name>`` (``tb_logger.
                    bench_tag``), name in ``throughput_samples_per_s``,
                    ``useful_tokens_per_s``, ``latency_ms/p50``,
                    ``latency_ms/p90``, ``latency_ms/p99``, ``parity_max_abs_diff``,
                    ``accuracy`` (with --task); step =
                    batch size; node = ``node<i>`` or ``cluster``; the Markdown report as
                    text under ``bench/report``. The precision is part of the engine
                    component because one engine at two dtypes would otherwise write two
                    values at one step of one tag
``throughput.png``  samples/s against batch size (log2 axis), a line per engine/dtype, one
                    panel per node and one for the cluster
``latency.png``     p50/p90/p99 bars per engine/dtype at each batch size that was timed for
                    latency (batch 1 and the serving batch), cluster rows (worst node)
==================  =====================================================================

The TensorBoard directory is written to a temporary sibling and swapped in, so running the
report twice does not append a second copy of every scalar (and readers never see a
half-written directory; between the two renames the old one is briefly absent).
Plots use matplotlib's Agg canvas directly, never pyplot, so no global backend is set and
nothing needs a display.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from stilts_ds import figures
from stilts_ds.atomic import atomic_directory, write_atomic
from stilts_ds.inference.placement import (
    CLUSTER,
    LATENCIES,
    PARITY,
    THROUGHPUT,
    USEFUL_TOKENS,
    as_row,
    cluster_total,
    node_label,
    node_sort_key,
)
from stilts_ds.tables import csv_text, fmt_number, markdown_table, md_cell, shorten

COLUMNS = ("engine", "status", "reason", "node_id", "host", "device", "dtype", "batch_size", "seq_len",
           THROUGHPUT, USEFUL_TOKENS, *LATENCIES, PARITY)
ACCURACY = "accuracy"  # with --task: the task's primary score through the engine (bench.measure)
PERCENTILES = ("p50", "p90", "p99")
JSONL, CSV, MD, TB_DIR, THROUGHPUT_PNG, LATENCY_PNG = (
    "bench.jsonl", "bench.csv", "bench.md", "tensorboard", "throughput.png", "latency.png")
_MD_REASON_MAX = 400  # tracebacks belong in the JSONL; the table stays readable


# ------------------------------------------------------------------ rows

def jsonable(value: Any) -> Any:
    """``value`` as plain JSON types (numpy/torch scalars unwrapped, anything else as str)."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        try:
            return value.item()
        except (ValueError, RuntimeError):
            pass
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def prepare_rows(rows: Iterable[Any], *, cluster: bool = True) -> list[dict]:
    """Rows as JSON-able dicts with ``node`` labels, cluster rows added, in report order
    (engine, dtype, batch size, sequence length, node; cluster last)."""
    out = [{k: jsonable(v) for k, v in as_row(r).items()} for r in rows]
    for i, r in enumerate(out):
        missing = [k for k in ("engine", "status") if not r.get(k)]
        if missing:
            raise ValueError(f"report row {i} has no {' or '.join(missing)}: {r}")
    if cluster and out and not any(r.get("node_id") == CLUSTER for r in out):
        # One cluster total per repeat (and per arm, when rows of several are reported together):
        # repeated timings of one configuration are separate draws, never summed as nodes.
        groups: dict[tuple, list[dict]] = {}
        for r in out:
            groups.setdefault((str(r.get("arm")), r.get("repeat") or 0), []).append(r)
        for _, members in sorted(groups.items()):
            out += cluster_total(members)
    for r in out:
        r["node"] = node_label(r)
    out.sort(key=_row_order)
    return out


def _row_order(r: Mapping[str, Any]) -> tuple:
    bs, sl = r.get("batch_size"), r.get("seq_len")
    return (str(r.get("arm") or ""), str(r.get("workload") or ""), str(r.get("engine")), str(r.get("dtype")),
            -1 if bs is None else bs, -1 if sl is None else sl, r.get("repeat") or 0, node_sort_key(r["node"]))


def columns_of(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    cols = list(COLUMNS[:3]) + ["node"] + list(COLUMNS[3:])
    for r in rows:
        cols += [k for k in r if k not in cols]
    return cols


# ------------------------------------------------------------------ JSONL

def _jsonl(rows: Sequence[Mapping[str, Any]], cols: Sequence[str]) -> str:
    # allow_nan: a diverged number is written as NaN, as tb_logger's metrics.jsonl does.
    return "".join(json.dumps({c: r.get(c) for c in cols}) + "\n" for r in rows)


# ------------------------------------------------------------------ Markdown

def _text(value: Any) -> Any:
    # Rows come from measure() on every node: an empty host, device or reason is as missing as None.
    return None if value == "" else value


def _short_id(node_id: Any) -> Any:
    # Ray node ids are 56 hex digits; 12 identify a node in any real cluster (JSONL/CSV keep all).
    return node_id[:12] + "…" if isinstance(node_id, str) and len(node_id) > 16 else node_id


def _percent(share: Any) -> str:
    return fmt_number(None if share is None else 100.0 * share, ".0f") + ("%" if share is not None else "")


def _markdown(rows: Sequence[Mapping[str, Any]], title: str) -> str:
    node_rows = [r for r in rows if r["node"] != CLUSTER]
    cluster_rows = [r for r in rows if r["node"] == CLUSTER]
    nodes: dict[str, Mapping] = {}
    for r in sorted(node_rows, key=lambda r: node_sort_key(r["node"])):
        nodes.setdefault(r["node"], r)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    n_nodes = len({r.get("node_id") for r in node_rows})
    count = f"{n_nodes} node{'s' if n_nodes != 1 else ''}" + (f", {len(nodes)} actors" if len(nodes) != n_nodes else "")
    out = [f"# {md_cell(_text(title))}", "",
           f"{count}, written {stamp}. Throughput: samples/s at "
           "the batch size (cluster: sum over nodes, all running at once); useful tok/s: the non-padding "
           "tokens of those samples per second; padding: the share of computed tokens that were padding. "
           "Latency: ms per request "
           "(cluster: the slowest node's percentile, an upper bound of the pooled one). Parity: max "
           "|engine - fp32 torch-eager| over the parity batches (cluster: worst node).", ""]

    out += ["## Nodes", ""]
    out += markdown_table(["node", "host", "device", "node id"],
                          ([n, _text(r.get("host")), _text(r.get("device")), _text(_short_id(r.get("node_id")))]
                           for n, r in nodes.items()))

    timed = [r for r in rows if r.get("status") == "ok" and r.get("batch_size") is not None]
    out += ["", "## Results", ""]
    # With --task, the task's score through each engine, beside its speed.
    scored = next((r for r in timed if r.get(ACCURACY) is not None), None)
    # Several languages or repeated timings (the study's bench nodes): say which row is which.
    by_workload = len({r.get("workload") for r in timed}) > 1
    extra = ([f"{scored['task']} {scored['metric']}" if by_workload else
              f"{scored['task']}/{scored['lang']} {scored['metric']}"] if scored else [])
    by_repeat = any(r.get("repeat") for r in timed)
    lead = (["workload"] if by_workload else []) + (["repeat"] if by_repeat else [])
    if timed:
        out += markdown_table(
            [*lead, "engine", "dtype", "batch", "seq len", "node", "samples/s", "useful tok/s", "padding",
             "p50 ms", "p90 ms", "p99 ms", "parity max abs diff", *extra],
            ([*([_text(r.get("workload"))] if by_workload else []), *([r.get("repeat") or 0] if by_repeat else []),
              _text(r["engine"]), _text(r.get("dtype")), fmt_number(r.get("batch_size"), "d"),
              fmt_number(r.get("seq_len"), "d"), f"**{r['node']}**" if r["node"] == CLUSTER else r["node"],
              fmt_number(r.get(THROUGHPUT), ",.1f"), fmt_number(r.get(USEFUL_TOKENS), ",.0f"),
              _percent(r.get("padding_share")), *(fmt_number(r.get(k), ".2f") for k in LATENCIES),
              fmt_number(r.get(PARITY), ".2e"), *([fmt_number(r.get(ACCURACY), ".2f")] if scored else [])]
             for r in timed), "l" * len(lead) + "lllrlrrrrrrr" + "r" * len(extra))
    else:
        out.append("No engine was timed.")

    # Unavailable / failed: the nodes' own rows, one line per distinct reason with the nodes
    # it happened on; a cluster row only where no node row explains it (a node that
    # reported nothing for that engine/dtype).
    groups: dict[tuple, list[str]] = {}
    explained = set()
    for r in node_rows:
        if r.get("status") != "ok":
            key = (r["engine"], r.get("dtype"), r.get("batch_size"), r.get("status"), r.get("reason"))
            groups.setdefault(key, []).append(r["node"])
            explained.add((r["engine"], r.get("dtype")))
    for r in cluster_rows:
        if r.get("status") != "ok" and (r["engine"], r.get("dtype")) not in explained:
            key = (r["engine"], r.get("dtype"), r.get("batch_size"), r.get("status"), r.get("reason"))
            groups.setdefault(key, []).append(CLUSTER)
    out += ["", "## Unavailable or failed", ""]
    if groups:
        out += markdown_table(
            ["engine", "dtype", "batch", "status", "nodes", "reason"],
            ([_text(e), _text(d), fmt_number(b, "d"), _text(s), ", ".join(ns), shorten(_text(reason), _MD_REASON_MAX)]
             for (e, d, b, s, reason), ns in groups.items()), "llrlll")
    else:
        out.append("None: every engine ran on every node.")
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------ TensorBoard

def _series_name(r: Mapping[str, Any]) -> str:
    # The engine component of bench_tag: engine and precision (see module docstring);
    # "/" would add a tag level, so it is replaced.
    return f"{r['engine']}_{r.get('precision') or r.get('dtype') or 'na'}".replace("/", "_")


def _tensorboard(rows: Sequence[Mapping[str, Any]], tb_dir: Path, md: str) -> None:
    from stilts_ds.engine.tb_logger import MetricLogger, bench_tag

    # Written aside and swapped in: a TensorBoard server never sees half a report.
    with atomic_directory(tb_dir, overwrite=True) as tmp:
        with MetricLogger(tmp, rank=0) as log:
            for r in rows:
                if r.get("status") != "ok" or r.get("batch_size") is None:
                    continue
                values = {THROUGHPUT: r.get(THROUGHPUT), USEFUL_TOKENS: r.get(USEFUL_TOKENS), PARITY: r.get(PARITY),
                          ACCURACY: r.get(ACCURACY),
                          **{f"latency_ms/{p}": r.get(k) for p, k in zip(PERCENTILES, LATENCIES)}}
                scalars = {bench_tag(_series_name(r), r["node"].replace("/", "_"), name): v
                           for name, v in values.items() if v is not None}
                if scalars:
                    log.scalars(scalars, step=int(r["batch_size"]))
            log.text("bench/report", md, step=0)


# ------------------------------------------------------------------ plots

def _figure(n_panels: int, max_cols: int = 3):
    return figures.panels(n_panels, panel_w=5.2, panel_h=3.8, max_cols=max_cols)


def _png(fig) -> bytes:
    return figures.png(fig, bbox_inches="tight")


def _empty_plot(title: str, message: str) -> bytes:
    fig, (ax,) = _figure(1)
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True)
    ax.set_axis_off()
    fig.suptitle(title)
    return _png(fig)


def _throughput_png(rows: Sequence[Mapping[str, Any]], title: str) -> bytes:
    timed = [r for r in rows if r.get("status") == "ok" and r.get("batch_size") is not None
             and r.get(THROUGHPUT) is not None]
    if not timed:
        return _empty_plot(title, "no timed results (every engine unavailable or failed)")
    panels = sorted({r["node"] for r in timed}, key=node_sort_key)
    fig, axes = _figure(len(panels))
    for ax, node in zip(axes, panels):
        series: dict[str, list[tuple[int, float]]] = {}
        for r in timed:
            if r["node"] == node:
                series.setdefault(f"{r['engine']} {r.get('dtype')}", []).append((r["batch_size"], r[THROUGHPUT]))
        for label, points in sorted(series.items()):
            points.sort()
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
        sizes = sorted({r["batch_size"] for r in timed})
        if len(sizes) > 1 and sizes[0] > 0:
            ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(s) for s in sizes])
        host = next((r.get("host") for r in timed if r["node"] == node), None)
        if node == CLUSTER:
            ax.set_title(f"cluster, {host}: sum over nodes" if host else "cluster: sum over nodes", fontsize=10)
        else:
            ax.set_title(f"{node}: {host}" if host else node, fontsize=10)
        ax.set_xlabel("batch size")
        ax.set_ylabel("samples/s")
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{title}: throughput")
    return _png(fig)


def _latency_png(rows: Sequence[Mapping[str, Any]], title: str) -> bytes:
    timed = [r for r in rows if r.get("status") == "ok" and r.get("batch_size") is not None
             and any(r.get(k) is not None for k in LATENCIES)]
    # Cluster rows when there are any: one figure, the worst node's percentiles.
    source = [r for r in timed if r["node"] == CLUSTER] or timed
    if not source:
        return _empty_plot(title, "no latency measured (every engine unavailable or failed)")
    sizes = sorted({r["batch_size"] for r in source})
    fig, axes = _figure(len(sizes), max_cols=2)
    width = 0.8 / len(PERCENTILES)
    for ax, bs in zip(axes, sizes):
        at = sorted((r for r in source if r["batch_size"] == bs),
                    key=lambda r: (r["engine"], str(r.get("dtype")), node_sort_key(r["node"])))
        labels = [f"{r['engine']}\n{r.get('dtype')}" + ("" if r["node"] == CLUSTER else f"\n{r['node']}")
                  for r in at]
        for j, (p, key) in enumerate(zip(PERCENTILES, LATENCIES)):
            xs = [i + (j - 1) * width for i in range(len(at))]
            ax.bar(xs, [r.get(key) or 0.0 for r in at], width, label=p)
        ax.set_xticks(range(len(at)), labels, fontsize=8)
        ax.set_ylabel("ms per request")
        ax.set_title(f"batch {bs}" + (" (worst node)" if at and at[0]["node"] == CLUSTER else ""), fontsize=10)
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{title}: latency percentiles")
    return _png(fig)


# ------------------------------------------------------------------ entry point

def write_reports(rows: Iterable[Any], out_dir: str | os.PathLike, *, title: str,
                  cluster: bool = True) -> dict[str, Path]:
    """Write every report of a benchmark run into ``out_dir``; returns ``{"jsonl", "csv",
    "md", "tensorboard", "throughput_png", "latency_png"}`` -> path (module docstring)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = prepare_rows(rows, cluster=cluster)
    cols = columns_of(table)
    md = _markdown(table, title)
    paths = {
        "jsonl": write_atomic(out_dir / JSONL, _jsonl(table, cols)),
        "csv": write_atomic(out_dir / CSV, csv_text(table, cols)),
        "md": write_atomic(out_dir / MD, md),
        "throughput_png": write_atomic(out_dir / THROUGHPUT_PNG, _throughput_png(table, title)),
        "latency_png": write_atomic(out_dir / LATENCY_PNG, _latency_png(table, title)),
    }
    _tensorboard(table, out_dir / TB_DIR, md)
    paths["tensorboard"] = out_dir / TB_DIR
    return paths
