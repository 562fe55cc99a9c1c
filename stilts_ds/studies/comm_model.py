"""A communication model of data-parallel and ZeRO training, printed beside measured scaling.

    from stilts_ds.studies.comm_model import predict_step
    p = predict_step(params=560e6, bytes_per_param=2, world_size=16, stage=2,
                     link_gb_per_s=25.0, compute_s=0.45)
    p.comm_s, p.step_s_no_overlap, p.step_s_full_overlap, p.efficiency_range

Bytes each rank moves per optimizer step (ring collectives, P = params x bytes per param):

* data parallel, ZeRO-1, ZeRO-2: one all-reduce of the gradients, or its equivalent
  reduce-scatter + all-gather: 2 (W-1)/W x P, about 2x the parameter bytes;
* ZeRO-3: parameters all-gathered in the forward and again in the backward, gradients
  reduce-scattered: 3 (W-1)/W x P, about 3x.

At world size 1 nothing moves. Time = bytes / link bandwidth (the slowest link a ring
crosses: the inter-node link once the job spans nodes, else the intra-node one; the scaling
report picks it per point, ``scale_report.link_of``). Compute and communication overlap
partly in practice (DeepSpeed's overlap_comm), so the model brackets the step time between
no overlap (compute + comm) and full overlap (max of the two); scaling efficiency is
compute / step within those bounds. Where the measured efficiency sits near the no-overlap
bound, the network is the limit.
"""
from __future__ import annotations

from dataclasses import dataclass

from stilts_ds.tables import fmt_number, fmt_range, markdown_table

# Multiples of the parameter bytes a rank sends per step, as W grows large.
TRAFFIC_FACTOR = {0: 2.0, 1: 2.0, 2: 2.0, 3: 3.0}


@dataclass(frozen=True)
class StepPrediction:
    stage: int
    world_size: int
    comm_bytes: float
    comm_s: float
    compute_s: float

    @property
    def step_s_no_overlap(self) -> float:
        return self.compute_s + self.comm_s

    @property
    def step_s_full_overlap(self) -> float:
        return max(self.compute_s, self.comm_s)

    @property
    def efficiency_range(self) -> tuple[float, float]:
        """(worst, best) scaling efficiency: compute time over step time."""
        if self.compute_s == 0:
            return (0.0, 0.0)
        return (self.compute_s / self.step_s_no_overlap, self.compute_s / self.step_s_full_overlap)


def comm_bytes_per_rank(params: float, bytes_per_param: float, world_size: int, stage: int) -> float:
    """Bytes one rank sends per optimizer step (see module docstring)."""
    if stage not in TRAFFIC_FACTOR:
        raise ValueError(f"ZeRO stage must be 0-3 (0 = plain data parallel), not {stage}")
    if world_size < 1 or params < 0 or bytes_per_param <= 0:
        raise ValueError("world_size >= 1, params >= 0 and bytes_per_param > 0 are required")
    return TRAFFIC_FACTOR[stage] * (world_size - 1) / world_size * params * bytes_per_param


def predict_step(*, params: float, bytes_per_param: float, world_size: int, stage: int, link_gb_per_s: float,
                 compute_s: float) -> StepPrediction:
    """Predicted step time of ``world_size`` ranks whose compute alone takes ``compute_s``
    (a single rank's measured step at the same per-rank batch: weak scaling)."""
    if link_gb_per_s <= 0:
        raise ValueError("link_gb_per_s must be positive (GB/s of the slowest link in the ring)")
    nbytes = comm_bytes_per_rank(params, bytes_per_param, world_size, stage)
    return StepPrediction(stage, world_size, nbytes, nbytes / (link_gb_per_s * 1e9), compute_s)


def prediction_table(*, params: float, bytes_per_param: float, world_sizes, stages, link_gb_per_s: float,
                     compute_s: float) -> str:
    """A Markdown table of predictions, one row per (stage, world size)."""
    rows = []
    for stage in stages:
        for w in world_sizes:
            p = predict_step(params=params, bytes_per_param=bytes_per_param, world_size=w, stage=stage,
                             link_gb_per_s=link_gb_per_s, compute_s=compute_s)
            rows.append(["DP" if stage == 0 else f"ZeRO-{stage}", w, fmt_number(p.comm_bytes / 1e9, ".2f"),
                         fmt_number(p.comm_s, ".3f"), fmt_range(p.step_s_full_overlap, p.step_s_no_overlap, ".3f"),
                         fmt_range(*p.efficiency_range, ".0%")])
    return "\n".join(markdown_table(["stage", "workers", "GB sent/rank/step", "comm s", "step s (overlap .. none)",
                                     "efficiency"], rows, align="lrrr"))
