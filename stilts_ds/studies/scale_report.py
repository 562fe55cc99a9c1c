"""The scaling study's reports: derived columns, the table (CSV + Markdown), PNG plots and
TensorBoard scalars, from the study table's rows (``studies.scale``; plain dicts, no Ray).

    from stilts_ds.studies.scale_report import derive, write_tables, write_reports
    rows = derive(rows, bandwidth_gbps=100)       # efficiency, ideal, comm-model prediction
    write_reports(rows, "runs/scale", spec)       # scale.csv, scale.md, *.png, tensorboard/

`stilts-ds scale` calls ``write_tables`` after every point and ``write_reports`` at the end.

Derived columns (never stored in scale.jsonl, which keeps measurements only):

Both modes count W = nodes x workers per node (Ray actors for inference, DeepSpeed ranks for
training; with one per node, W is the node count) and compare with the one-worker, one-node
point of the same configuration measured in the same sweep:

* inference, cluster rows: ``per_node_samples_per_s`` (cluster / nodes), ``ideal_samples_per_s``
  = W x the one-worker figure, ``efficiency`` = total(W) / (W x total(1)).
* training: ``ideal_tokens_per_s`` = W x the one-worker figure, ``efficiency`` = tokens/s(W) /
  (W x tokens/s(1)). Weak scaling compares with the one-worker run at the same per-worker
  batch, strong scaling with the one at the same global batch.
* training, the communication model (``studies.comm_model``) beside each point:
  ``predicted_comm_gb`` (sent per rank per step: about 2x the parameter bytes for ZeRO-1/2,
  3x for ZeRO-3), ``predicted_comm_s`` over ``link`` (the inter-node link once a point spans
  nodes; on one node the intra-node bandwidth when the sweep gives one), the step time bracketed
  by full overlap (max of compute and comm) and none (their sum), with compute = the
  one-worker step (weak) or that over W (strong), the predicted efficiency range,
  ``comm_share`` = predicted comm / measured step, and ``bound_by``: "network" when the
  predicted transfer takes at least half the measured step; "not the link" when the
  measurement is below even the no-overlap prediction (latency, stragglers, shared cores:
  something the bandwidth model does not hold); else "compute".

TensorBoard: ``scale/inference/<series>/{samples_per_s,per_node_samples_per_s,efficiency,
latency_ms/p50,...}`` and ``scale/training/<series>/{tokens_per_s,step_s,efficiency,
predicted_step_s/full_overlap,predicted_step_s/no_overlap}``, step = W (the node count
when there is one worker per node), so TensorBoard draws each series against it; a series is
one configuration at one workers-per-node value, opened by its one-worker baseline. The
plots use the same x axis. The directory is rebuilt each time
(written to a temporary sibling and swapped in), so reruns do not duplicate points.
"""
from __future__ import annotations

import math
import os
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from stilts_ds import figures
from stilts_ds.atomic import atomic_directory, write_atomic
from stilts_ds.inference.placement import LATENCIES
from stilts_ds.studies.comm_model import predict_step, prediction_table
from stilts_ds.tables import MISSING, fmt_number, fmt_range, markdown_table, write_csv

TABLE_CSV, TABLE_MD, TB_DIR = "scale.csv", "scale.md", "tensorboard"
THROUGHPUT_PNG, EFFICIENCY_PNG, LATENCY_PNG = "throughput_vs_nodes.png", "efficiency.png", "latency.png"
# The columns that make a configuration: what a scaling series holds fixed while nodes vary.
_POINT_KEYS = ("mode", "seq_len", "precision", "engine", "zero_stage", "preset",
               "latency_requests", "synthetic_rows", "lengths", "steps", "warmup_steps", "data", "task", "lr")


def _config_key(r: Mapping[str, Any], *extra: str) -> tuple:
    # workers_per_node is not in it: a series runs from the one-worker baseline up.
    return tuple(r.get(k) for k in _POINT_KEYS + extra)


def _ok(r: Mapping[str, Any], field: str) -> bool:
    return r.get("status") == "ok" and isinstance(r.get(field), (int, float)) and not math.isnan(r[field])


def _scalings(r: Mapping[str, Any]) -> list[str]:
    return [s for s in str(r.get("scaling") or "").split("+") if s]


def series_batch(r: Mapping[str, Any], scaling: str) -> int | None:
    """The batch a training series holds fixed: per-worker (weak) or global (strong)."""
    return r.get("micro_batch") if scaling == "weak" else r.get("global_batch")


# ============================================================================ derived columns

def link_of(row: Mapping[str, Any], bandwidth_gbps: float, intra_node_bandwidth_gbps: float | None) -> tuple[str, float]:
    """(link, Gbit/s) a training point's ring is limited by: the inter-node link once the job
    spans nodes; on one node the intra-node one (NVLink, PCIe) when the sweep gives it."""
    nodes = row.get("actual_nodes") or row.get("nodes") or 1
    if nodes == 1 and intra_node_bandwidth_gbps is not None:
        return "intra-node", intra_node_bandwidth_gbps
    return "inter-node", bandwidth_gbps


def derive(rows: Iterable[Mapping[str, Any]], *, bandwidth_gbps: float,
           intra_node_bandwidth_gbps: float | None = None) -> list[dict]:
    """The rows with the derived columns (module docstring) filled in."""
    rows = [dict(r) for r in rows]
    # Inference: the one-actor, one-node cluster figure per configuration.
    base_inf = {}
    for r in rows:
        if r.get("mode") == "inference" and r.get("row") == "cluster" and r.get("workers") == 1 \
                and _ok(r, "throughput_samples_per_s"):
            base_inf[_config_key(r, "batch_size")] = r["throughput_samples_per_s"]
    # Training: one-worker rows by configuration and global batch (= their micro-batch).
    base_tr = {}
    for r in rows:
        if r.get("mode") == "training" and r.get("workers") == 1 and _ok(r, "tokens_per_s"):
            base_tr[_config_key(r) + (r.get("global_batch"),)] = r
    for r in rows:
        if r.get("mode") == "inference" and r.get("row") == "cluster" and _ok(r, "throughput_samples_per_s"):
            n = r.get("actual_nodes") or r["nodes"]
            r["per_node_samples_per_s"] = r["throughput_samples_per_s"] / n
            base = base_inf.get(_config_key(r, "batch_size"))
            if base:
                r["ideal_samples_per_s"] = r["workers"] * base
                r["efficiency"] = r["throughput_samples_per_s"] / r["ideal_samples_per_s"]
        elif r.get("mode") == "training" and _ok(r, "tokens_per_s"):
            scaling = _scalings(r)[0] if _scalings(r) else "weak"
            base = base_tr.get(_config_key(r) + (series_batch(r, scaling),))
            if base is None:
                continue
            w = r["workers"]
            r["ideal_tokens_per_s"] = w * base["tokens_per_s"]
            r["efficiency"] = r["tokens_per_s"] / r["ideal_tokens_per_s"]
            compute_s = base["step_s"] / (w if scaling == "strong" else 1)
            if not r.get("params"):
                continue
            link, gbps = link_of(r, bandwidth_gbps, intra_node_bandwidth_gbps)
            p = predict_step(params=r["params"], bytes_per_param=r.get("bytes_per_param") or 4, world_size=w,
                             stage=r["zero_stage"], link_gb_per_s=gbps / 8.0, compute_s=compute_s)
            lo, hi = p.efficiency_range
            r.update(link=link, bandwidth_gbps=gbps, predicted_compute_s=compute_s,
                     predicted_comm_gb=p.comm_bytes / 1e9, predicted_comm_s=p.comm_s,
                     predicted_step_s_full_overlap=p.step_s_full_overlap,
                     predicted_step_s_no_overlap=p.step_s_no_overlap,
                     predicted_efficiency_min=lo, predicted_efficiency_max=hi,
                     comm_share=p.comm_s / r["step_s"] if r.get("step_s") else None)
            if w == 1:
                r["bound_by"] = "-"
            elif r["comm_share"] is not None and r["comm_share"] >= 0.5:
                r["bound_by"] = "network"
            elif r["efficiency"] < lo * 0.95:
                r["bound_by"] = "not the link"
            else:
                r["bound_by"] = "compute"
    return rows


# ============================================================================ CSV / Markdown

def columns_of(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    first = ["point_id", "mode", "row", "status", "reason", "label", "nodes", "workers_per_node", "workers",
             "node", "host", "device"]
    cols = list(first)
    for r in rows:
        cols += [k for k in r if k not in cols]
    return cols


def _latencies(r: Mapping[str, Any]) -> str:
    return " / ".join(fmt_number(r.get(k), ".2f") for k in LATENCIES)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1e3


def _status(r: Mapping[str, Any]) -> str:
    return r.get("status") if r.get("status") == "ok" else f"{r.get('status')}: {str(r.get('reason'))[:160]}"


def markdown(rows: Sequence[Mapping[str, Any]], *, name: str, bandwidth_gbps: float,
             intra_node_bandwidth_gbps: float | None = None) -> str:
    intra = (f"; points on one node use the intra-node link, {intra_node_bandwidth_gbps:g} Gbit/s"
             if intra_node_bandwidth_gbps is not None else "")
    out = [f"# Scaling study: {name}", "",
           f"Scaling efficiency = throughput(W) / (W x throughput(1)), W = nodes x workers per node, against the "
           f"one-worker point of the same configuration. Communication model at a link of "
           f"{bandwidth_gbps:g} Gbit/s ({bandwidth_gbps / 8:g} GB/s){intra}.", ""]
    inf = [r for r in rows if r.get("mode") == "inference" and r.get("row") == "cluster"]
    if inf:
        out += ["## Inference: cluster throughput and latency", ""]
        out += markdown_table(
            ["engine", "precision", "batch", "seq", "workers/node", "nodes", "samples/s (cluster)", "per node",
             "ideal", "efficiency", "p50 / p90 / p99 ms (worst node)", "status"],
            [[r.get("engine"), r.get("precision"), r.get("batch_size"), r.get("seq_len"), r.get("workers_per_node"),
              r.get("nodes"), *(fmt_number(r.get(k), ",.1f") for k in ("throughput_samples_per_s",
                                                                         "per_node_samples_per_s", "ideal_samples_per_s")),
              fmt_number(r.get("efficiency"), ".0%"), _latencies(r), _status(r)]
             for r in inf])
        nodes = [r for r in rows if r.get("mode") == "inference" and r.get("row") == "node" and r.get("status") == "ok"]
        if nodes:
            out += ["", "### Per node", ""]
            out += markdown_table(["engine", "precision", "batch", "seq", "nodes", "node", "host", "device",
                                   "samples/s", "p50 / p90 / p99 ms"],
                                  [[r.get("engine"), r.get("precision"), r.get("batch_size"), r.get("seq_len"),
                                    r.get("nodes"), r.get("node"), r.get("host"), r.get("device"),
                                    fmt_number(r.get("throughput_samples_per_s"), ",.1f"), _latencies(r)]
                                   for r in nodes])
        out.append("")
    tr = [r for r in rows if r.get("mode") == "training"]
    if tr:
        out += ["## Training: tokens/s by ZeRO stage and node count", "",
                "Measured: forward + backward + optimizer step of the real loop, warm-up steps left out. "
                "Predicted: the communication model with compute = the measured one-worker step.", ""]
        out += markdown_table(
            ["ZeRO", "precision", "scaling", "micro / global batch", "seq", "nodes", "workers", "tokens/s",
             "step ms", "efficiency", "predicted step ms (overlap .. none)", "predicted efficiency",
             "GB/rank/step", "link", "comm share", "bound by", "status"],
            [[r.get("zero_stage"), r.get("precision"), r.get("scaling"),
              f"{r.get('micro_batch')} / {r.get('global_batch')}",
              r.get("seq_len"), r.get("nodes"), r.get("workers"), fmt_number(r.get("tokens_per_s"), ",.0f"),
              fmt_number(_ms(r.get("step_s") or None), ",.1f"),  # a 0 s step is no measurement
              fmt_number(r.get("efficiency"), ".0%"),
              fmt_range(_ms(r.get("predicted_step_s_full_overlap")), _ms(r.get("predicted_step_s_no_overlap")),
                        ",.1f"),
              fmt_range(r.get("predicted_efficiency_min"), r.get("predicted_efficiency_max"), ".0%"),
              fmt_number(r.get("predicted_comm_gb"), ".3f"),
              f"{r['link']} {r['bandwidth_gbps']:g} Gbit/s" if r.get("link") else MISSING,
              fmt_number(r.get("comm_share"), ".0%"), r.get("bound_by") or MISSING, _status(r)]
             for r in tr])
        out += ["", *comm_tables(rows, bandwidth_gbps=bandwidth_gbps)]
    return "\n".join(out).rstrip() + "\n"


def comm_tables(rows: Sequence[Mapping[str, Any]], *, bandwidth_gbps: float) -> list[str]:
    """The communication model's table (DP and ZeRO-1/2/3 at every worker count of the
    sweep) for each measured one-worker configuration: what the network allows."""
    tr = [r for r in rows if r.get("mode") == "training"]
    worlds = sorted({r["workers"] for r in tr if r.get("workers")})
    bases = [r for r in tr if r.get("workers") == 1 and _ok(r, "step_s") and r.get("params")]
    if not bases or not worlds:
        return []
    out = ["## Communication model", "",
           f"Bytes each rank sends per optimizer step: about 2x the parameter bytes for data parallel and "
           f"ZeRO-1/2 (gradient all-reduce, or reduce-scatter + all-gather), about 3x for ZeRO-3 (parameters "
           f"gathered in forward and backward, gradients reduce-scattered), times (W-1)/W, over a "
           f"{bandwidth_gbps:g} Gbit/s inter-node link; compute = the measured one-worker step. Where the measured "
           "efficiency sits near the no-overlap figure, the network is the limit.", ""]
    seen = set()
    for b in bases:
        key = (b.get("precision"), b.get("seq_len"), b.get("global_batch"), b.get("params"))
        if key in seen:
            continue
        seen.add(key)
        out += [f"### {b.get('precision')}, seq {b.get('seq_len')}, batch {b.get('global_batch')} per worker: "
                f"{b['params'] / 1e6:,.2f} M parameters x {b.get('bytes_per_param')} bytes, "
                f"one-worker step {b['step_s'] * 1e3:,.1f} ms (ZeRO-{b.get('zero_stage')})", "",
                prediction_table(params=b["params"], bytes_per_param=b.get("bytes_per_param") or 4,
                                 world_sizes=worlds, stages=(0, 1, 2, 3), link_gb_per_s=bandwidth_gbps / 8,
                                 compute_s=b["step_s"]), ""]
    return out


def _derive(rows: Iterable[Mapping[str, Any]], spec) -> list[dict]:
    return derive(rows, bandwidth_gbps=spec.bandwidth_gbps, intra_node_bandwidth_gbps=spec.intra_node_bandwidth_gbps)


def write_tables(rows: Iterable[Mapping[str, Any]], out_dir: str | os.PathLike, spec) -> dict[str, Path]:
    """scale.csv and scale.md (atomically); cheap enough to run after every point."""
    return _write_tables(_derive(rows, spec), Path(out_dir), spec)[0]


def _write_tables(table: Sequence[Mapping[str, Any]], out_dir: Path, spec) -> tuple[dict[str, Path], str]:
    """The tables of already derived rows: (paths, the Markdown text)."""
    paths = {"jsonl": out_dir / "scale.jsonl"}
    if table:
        paths["csv"] = write_csv(out_dir / TABLE_CSV, table, columns_of(table))
    md = markdown(table, name=spec.name, bandwidth_gbps=spec.bandwidth_gbps,
                  intra_node_bandwidth_gbps=spec.intra_node_bandwidth_gbps)
    paths["md"] = write_atomic(out_dir / TABLE_MD, md)
    return paths, md


# ============================================================================ series

def _series(rows: Sequence[Mapping[str, Any]], mode: str, field: str, name_of) -> dict[str, list[dict]]:
    """{series: ok rows ascending by workers}: one series per configuration and workers per
    node, each opened by the configuration's one-worker baseline (x = 1)."""
    summary = "cluster" if mode == "inference" else "training"
    ok = [r for r in rows if r.get("mode") == mode and r.get("row") == summary and _ok(r, field)]
    out: dict[str, list[dict]] = defaultdict(list)
    for r in ok:
        if r["workers"] == 1:
            continue
        for name, batch in name_of(r):
            if not out[name]:
                base = next((b for b in ok if b["workers"] == 1 and _config_key(b) == _config_key(r)
                             and (mode == "inference" and b.get("batch_size") == r.get("batch_size")
                                  or mode == "training" and b.get("global_batch") == batch)), None)
                if base is not None:
                    out[name].append(base)
            out[name].append(r)
    for r in ok:  # a sweep of one worker only still shows its points
        if r["workers"] == 1 and not any(r in v for v in out.values()):
            for name, _ in name_of(r):
                out[name].append(r)
    return {k: sorted(v, key=lambda r: r["workers"]) for k, v in out.items()}


def inference_series(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[dict]]:
    return _series(rows, "inference", "throughput_samples_per_s", lambda r: [(
        f"{r['engine']}_{r['precision']}_b{r['batch_size']}_l{r['seq_len']}_w{r['workers_per_node']}", None)])


def training_series(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[dict]]:
    return _series(rows, "training", "tokens_per_s", lambda r: [(
        f"zero{r['zero_stage']}_{r['precision']}_{s}_b{series_batch(r, s)}_l{r['seq_len']}_w{r['workers_per_node']}",
        series_batch(r, s)) for s in (_scalings(r) or ["weak"])])


# ============================================================================ plots

def _figure(n_panels: int, panel_w: float = 5.6):
    """One row of panels (at least one, all visible)."""
    n = max(1, n_panels)
    return figures.panels(n, panel_w=panel_w, panel_h=4.0, max_cols=n)


def _png(fig) -> bytes:
    return figures.png(fig, bbox_inches="tight")


def _legend(ax) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def _node_axis(ax, series: Mapping[str, list[dict]]) -> None:
    rows = [r for v in series.values() for r in v]
    ticks = sorted({r["workers"] for r in rows})
    if ticks:
        ax.set_xticks(ticks)
    # With one worker per node the axis is the node count; otherwise nodes x workers per node.
    several = any((r.get("workers_per_node") or 1) > 1 for r in rows)
    ax.set_xlabel("workers (nodes x workers per node)" if several else "nodes")
    ax.grid(True, alpha=0.3)


def _throughput_png(inf, tr, name: str) -> bytes:
    panels = [(s, field, label) for s, field, label in
              ((inf, "throughput_samples_per_s", "inference: samples/s (cluster)"),
               (tr, "tokens_per_s", "training: tokens/s")) if s]
    fig, axes = _figure(len(panels))
    for ax, (series, field, label) in zip(axes, panels):
        for i, (sname, rs) in enumerate(series.items()):
            color = f"C{i % 10}"
            xs = [r["workers"] for r in rs]
            ax.plot(xs, [r[field] for r in rs], marker="o", color=color, label=sname)
            ideal_key = "ideal_samples_per_s" if field == "throughput_samples_per_s" else "ideal_tokens_per_s"
            ideal = [(r["workers"], r.get(ideal_key)) for r in rs if r.get(ideal_key) is not None]
            if len(ideal) > 1:
                ax.plot([x for x, _ in ideal], [y for _, y in ideal], linestyle="--", color=color, alpha=0.6,
                        label=f"{sname} ideal")
        _node_axis(ax, series)
        ax.set_ylabel(label.split(": ")[1])
        ax.set_title(label, fontsize=10)
        _legend(ax)
    fig.suptitle(f"{name}: throughput vs nodes (dashed: ideal linear scaling)")
    return _png(fig)


def _efficiency_png(inf, tr, name: str) -> bytes:
    panels = [(s, label) for s, label in ((inf, "inference"), (tr, "training")) if s]
    fig, axes = _figure(len(panels))
    for ax, (series, label) in zip(axes, panels):
        for i, (sname, rs) in enumerate(series.items()):
            color = f"C{i % 10}"
            pts = [(r["workers"], r["efficiency"]) for r in rs if r.get("efficiency") is not None]
            ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o", color=color, label=sname)
            band = [(r["workers"], r["predicted_efficiency_min"], r["predicted_efficiency_max"]) for r in rs
                    if r.get("predicted_efficiency_min") is not None]
            if len(band) > 1:
                ax.fill_between([b[0] for b in band], [b[1] for b in band], [b[2] for b in band], color=color,
                                alpha=0.15, label=f"{sname} predicted (comm model)")
        ax.axhline(1.0, color="grey", linestyle=":", linewidth=1)
        _node_axis(ax, series)
        ax.set_ylim(bottom=0)
        ax.set_ylabel("scaling efficiency")
        ax.set_title(label, fontsize=10)
        _legend(ax)
    fig.suptitle(f"{name}: scaling efficiency = throughput(W) / (W x throughput(1 worker))")
    return _png(fig)


def _latency_png(inf, name: str) -> bytes:
    fig, (ax,) = _figure(1, panel_w=7.0)
    for i, (sname, rs) in enumerate(inf.items()):
        color = f"C{i % 10}"
        for key, style in zip(LATENCIES, ("-", "--", ":")):
            pts = [(r["workers"], r[key]) for r in rs if r.get(key) is not None]
            if pts:
                ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o", linestyle=style, color=color,
                        label=f"{sname} {key.rsplit('_', 1)[1]}")
    _node_axis(ax, inf)
    ax.set_ylabel("ms per request (worst node)")
    _legend(ax)
    fig.suptitle(f"{name}: latency percentiles vs nodes")
    return _png(fig)


# ============================================================================ TensorBoard

def _part(value: str) -> str:
    # "/" would add a level to TensorBoard's tag tree (tb_logger refuses it for the same reason).
    return str(value).replace("/", "_")


def scale_tag(mode: str, series: str, name: str) -> str:
    """``scale/<mode>/<series>/<name>``; ``name`` may hold "/" (``latency_ms/p99``)."""
    return f"scale/{_part(mode)}/{_part(series)}/{name}"


def _tensorboard(inf, tr, tb_dir: Path, md: str) -> None:
    from stilts_ds.engine.tb_logger import MetricLogger

    tb_dir.parent.mkdir(parents=True, exist_ok=True)
    # Written aside and swapped in: a TensorBoard server never sees half a report.
    with atomic_directory(tb_dir, overwrite=True) as tmp:
        with MetricLogger(tmp, rank=0) as log:
            for sname, rs in inf.items():
                for r in rs:
                    values = {"samples_per_s": r.get("throughput_samples_per_s"),
                              "per_node_samples_per_s": r.get("per_node_samples_per_s"),
                              "efficiency": r.get("efficiency"),
                              **{f"latency_ms/{k.rsplit('_', 1)[1]}": r.get(k) for k in LATENCIES}}
                    log.scalars({scale_tag("inference", sname, k): v for k, v in values.items() if v is not None},
                                step=int(r["workers"]))
            for sname, rs in tr.items():
                for r in rs:
                    values = {"tokens_per_s": r.get("tokens_per_s"), "step_s": r.get("step_s"),
                              "efficiency": r.get("efficiency"),
                              "predicted_step_s/full_overlap": r.get("predicted_step_s_full_overlap"),
                              "predicted_step_s/no_overlap": r.get("predicted_step_s_no_overlap")}
                    log.scalars({scale_tag("training", sname, k): v for k, v in values.items() if v is not None},
                                step=int(r["workers"]))
            log.text("scale/report", md, step=0)


def write_reports(rows: Iterable[Mapping[str, Any]], out_dir: str | os.PathLike, spec) -> dict[str, Path]:
    """Tables, plots (those with data) and TensorBoard scalars; returns name -> path."""
    out_dir = Path(out_dir)
    table = _derive(rows, spec)  # once: the tables, plots and TensorBoard all read these rows
    paths, md = _write_tables(table, out_dir, spec)
    inf, tr = inference_series(table), training_series(table)
    if inf or tr:
        paths["throughput_png"] = write_atomic(out_dir / THROUGHPUT_PNG, _throughput_png(inf, tr, spec.name))
        paths["efficiency_png"] = write_atomic(out_dir / EFFICIENCY_PNG, _efficiency_png(inf, tr, spec.name))
    if inf:
        paths["latency_png"] = write_atomic(out_dir / LATENCY_PNG, _latency_png(inf, spec.name))
    _tensorboard(inf, tr, out_dir / TB_DIR, md)
    paths["tensorboard"] = out_dir / TB_DIR
    return paths
