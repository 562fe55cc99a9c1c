"""Run timelines: lane assignment, utilization known answers, and the PNGs decode."""
import io

import numpy as np
import pytest
from matplotlib.image import imread

from stilts_ds.errors import StiltsError
from stilts_ds.studies.schedule_model import PlanJob, simulate
from stilts_ds.studies.timeline import (
    JobRecord, TimelineError, assign_lanes, plan_png, plan_records, timeline_png, utilization,
)

PNG = b"\x89PNG\r\n\x1a\n"


def R(id, start, end, workers=1, kind="phase2", arm=None, hosts=(), status="done"):
    return JobRecord(id, kind, arm, float(start), float(end), workers, tuple(hosts), status)


def decode(data: bytes):
    assert data.startswith(PNG)
    img = imread(io.BytesIO(data), format="png")
    h, w = img.shape[:2]
    assert 300 <= w <= 4000 and 200 <= h <= 4000, img.shape
    return img


def assert_no_lane_overlap(records, lanes):
    by_id = {r.id: r for r in records}
    per_lane = {}
    for i, ls in lanes.items():
        assert len(ls) == len(set(ls)) == by_id[i].workers
        for k in ls:
            per_lane.setdefault(k, []).append(by_id[i])
    for k, rs in per_lane.items():
        rs.sort(key=lambda r: (r.start, r.end))
        assert all(a.end <= b.start for a, b in zip(rs, rs[1:])), (k, [(r.id, r.start, r.end) for r in rs])


def test_utilization_known_answers():
    back_to_back = [R("a", 0, 10), R("b", 10, 20)]
    u = utilization(back_to_back, 2)
    assert u == {"busy_worker_s": 20.0, "available_worker_s": 40.0, "utilization": 0.5, "wall_s": 20.0, "slots": 2}
    # driver jobs stretch the span but are not busy GPU time; failed jobs held their GPUs
    u = utilization([R("t", 100, 110, workers=4, status="failed"), R("drv", 110, 120, workers=0)], 4)
    assert u["busy_worker_s"] == 40 and u["wall_s"] == 20 and u["utilization"] == pytest.approx(0.5)
    assert utilization([], 8) == {"busy_worker_s": 0.0, "available_worker_s": 0.0, "utilization": 0.0,
                                  "wall_s": 0.0, "slots": 8}


def test_lanes_fill_free_slots_greedily():
    records = [R("a", 0, 10, 2), R("b", 0, 5, 1), R("c", 5, 10, 1), R("d", 10, 20, 3), R("drv", 0, 30, 0)]
    assert assign_lanes(records, 3) == {"a": (0, 1), "b": (2,), "c": (2,), "d": (0, 1, 2)}  # no driver lane
    with pytest.raises(TimelineError, match="at t=10.0 the records run 4 workers at once but the cluster has 3 "
                                            "slots: c, d"):
        assign_lanes([R("a", 0, 10, 2), R("c", 5, 12, 1), R("d", 10, 20, 3)], 3)


@pytest.mark.parametrize("seed", range(15))
def test_lanes_never_overlap_on_random_runs(seed):
    # Records of a simulated schedule (any real schedule fits its slots at every moment).
    rng = np.random.default_rng(seed)
    jobs = [PlanJob(f"j{k}", tuple(f"j{d}" for d in range(k) if rng.random() < 0.1), int(rng.choice([0, 1, 2, 4])),
                    float(rng.integers(0, 50)), kind=str(rng.choice(["phase1", "phase2", "results"])))
            for k in range(int(rng.integers(1, 40)))]
    plan = simulate(jobs, nodes=2, gpus_per_node=4)
    records = [R(r.id, r.start + 1e9, r.end + 1e9, r.workers, r.kind) for r in plan_records(plan)]  # epoch-like times
    lanes = assign_lanes(records, 8)
    assert set(lanes) == {r.id for r in records if r.workers > 0}
    assert all(0 <= k < 8 for ls in lanes.values() for k in ls)
    assert_no_lane_overlap(records, lanes)
    # with hosts: lanes grouped per host, a block per host in host order
    hosted = plan_records(plan)
    by_host = assign_lanes(hosted, 8)
    assert_no_lane_overlap(hosted, by_host)
    recs = {r.id: r for r in hosted}
    blocks = {}
    for i, ls in by_host.items():
        for h, k in zip(sorted(recs[i].hosts, key=lambda h: int(h.split("-")[1])), ls):
            blocks.setdefault(h, set()).add(k)
    ordered = sorted(blocks, key=lambda h: int(h.split("-")[1]))
    assert all(max(blocks[a]) < min(blocks[b]) for a, b in zip(ordered, ordered[1:]))


def test_lanes_are_grouped_by_host():
    records = [R("a", 0, 10, 2, hosts=("node-10", "node-10")), R("b", 0, 10, 2, hosts=("node-2", "node-2")),
               R("c", 10, 20, 4, hosts=("node-2", "node-2", "node-10", "node-10"))]
    lanes = assign_lanes(records, 8)
    # natural host order: node-2 first (lanes 0-1), then node-10 (lanes 2-3)
    assert lanes == {"b": (0, 1), "a": (2, 3), "c": (0, 1, 2, 3)}


def test_too_many_workers_is_a_clear_error():
    bad = [R("ok", 0, 1, 2), R("huge", 0, 5, 16)]
    for call in (lambda: utilization(bad, 8), lambda: assign_lanes(bad, 8), lambda: timeline_png(bad, 8, "x")):
        with pytest.raises(TimelineError, match=r"job 'huge' ran 16 workers but the cluster has only 8 slots"):
            call()
    with pytest.raises(StiltsError, match="ends .* before it starts"):
        utilization([R("back", 10, 5)], 8)
    with pytest.raises(ValueError, match="total_slots must be >= 1"):
        utilization([], 0)
    with pytest.raises(TimelineError, match="run 3 workers at once but the cluster has 2 slots: a, b"):
        assign_lanes([R("a", 0, 10, 2), R("b", 5, 15, 1)], 2)


def test_timeline_png_decodes():
    records = [R("prepare", 0, 60, 0, kind="prepare"),
               R("english/phase1", 60, 4000, 4, kind="phase1", arm="english", hosts=("gpu-a",) * 4),
               R("multi/phase1", 60, 3000, 4, kind="phase1", arm="multi", hosts=("gpu-a",) * 2 + ("gpu-b",) * 2),
               R("multi/phase2/xnli", 3000, 3500, 4, arm="multi", status="failed", hosts=("gpu-b",) * 4),
               R("english/phase2/xnli", 4000, 5200, 4, arm="english", hosts=("gpu-a",) * 4),
               R("english/results", 5200, 5210, 0, kind="results", arm="english"),
               R("multi/results", 3500, 3510, 0, kind="results", arm="multi"),
               R("odd", 100, 100, 1, kind="custom", hosts=("gpu-b",))]
    decode(timeline_png(records, 16, "two hosts"))
    no_hosts = [R(r.id, r.start, r.end, r.workers, r.kind, r.arm, (), r.status) for r in records]
    decode(timeline_png(no_hosts, 8, "no hosts"))
    decode(timeline_png([], 4, "empty"))
    decode(timeline_png([R("drv", 0, 0, 0, kind="report")], 4, "one instant"))


def test_plan_png_decodes_and_from_dict():
    jobs = [PlanJob("prepare", (), 0, 300, kind="prepare")]
    for arm, h in [("english", 3), ("multi", 5), ("all", 8)]:
        jobs.append(PlanJob(f"{arm}/phase1", ("prepare",), 4, h * 3600, kind="phase1", arm=arm))
        for t in ("xnli", "pawsx", "xquad"):
            jobs.append(PlanJob(f"{arm}/phase2/{t}", (f"{arm}/phase1",), 4, 3600, kind="phase2", arm=arm))
    jobs.append(PlanJob("bench", ("prepare",), 8, 600, kind="bench", exclusive=True))
    plan = simulate(jobs, nodes=2, gpus_per_node=8)
    img = decode(plan_png(plan, "predicted"))
    assert img.shape[1] > 600
    r = JobRecord.from_dict({"id": "x", "kind": "phase1", "start": 1, "end": 2.5, "workers": 2,
                             "hosts": ["h1", "h2"], "extra": "ignored"})
    assert r == JobRecord("x", "phase1", None, 1.0, 2.5, 2, ("h1", "h2"), "done")
