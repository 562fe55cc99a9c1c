"""Known answers of the study scheduling model on hand-computable graphs, invariants on random
graphs, and a study-shaped graph measured against the lower bound."""
import json

import numpy as np
import pytest

from stilts_ds.errors import StiltsError
from stilts_ds.studies.schedule_model import (
    PlanJob, ScheduleError, critical_path, lower_bound, plan_json, plan_markdown, priorities, sequential_wall,
    simulate,
)


def J(id, deps=(), workers=1, seconds=1.0, **kw):
    return PlanJob(id, tuple(deps), workers, float(seconds), **kw)


def starts(plan):
    return {i: (p.start, p.end) for i, p in plan.placements.items()}


def test_chain_runs_one_after_another():
    jobs = [J("a", (), 2, 10), J("b", ["a"], 2, 5), J("c", ["b"], 1, 3)]
    plan = simulate(jobs, nodes=1, gpus_per_node=4)
    assert starts(plan) == {"a": (0, 10), "b": (10, 15), "c": (15, 18)}
    assert plan.scheduled_wall_s == plan.sequential_wall_s == plan.critical_path_s == 18
    assert plan.critical_path == ["a", "b", "c"]
    assert plan.lower_bound_wall_s == 18
    assert plan.gpu_seconds == 2 * 10 + 2 * 5 + 3
    assert plan.utilization == pytest.approx(33 / (4 * 18))


def test_fan_out_fits_side_by_side():
    jobs = [J("root", (), 0, 1, kind="prepare")] + [J(f"t{k}", ["root"], 2, 10) for k in range(4)]
    plan = simulate(jobs, nodes=1, gpus_per_node=8)
    assert all(plan.placements[f"t{k}"].start == 1 for k in range(4))
    assert plan.scheduled_wall_s == 11 and plan.sequential_wall_s == 41
    slots = [s for k in range(4) for s in plan.placements[f"t{k}"].slots]
    assert sorted(slots) == [(0, g) for g in range(8)]
    assert plan.placements["root"].slots == ()


def test_a_job_larger_than_a_node_spans_nodes():
    plan = simulate([J("big", (), 12, 10)], nodes=2, gpus_per_node=8)
    assert plan.placements["big"].slots == tuple((0, g) for g in range(8)) + tuple((1, g) for g in range(4))
    with pytest.raises(ScheduleError, match=r"'big' needs 12 GPUs but a node has 8 .*allow_spanning=False"):
        simulate([J("big", (), 12, 10)], nodes=2, gpus_per_node=8, allow_spanning=False)


def test_spanning_fills_the_emptiest_nodes_first():
    # A whole node is preferred to spanning: a on node 0, b best-fits node 1, c takes node 2.
    jobs = [J("a", (), 3, 10), J("b", (), 2, 10), J("c", (), 4, 10)]
    plan = simulate(jobs, nodes=3, gpus_per_node=4)
    assert {n for n, _ in plan.placements["a"].slots} == {0}
    assert {n for n, _ in plan.placements["b"].slots} == {1}
    assert {n for n, _ in plan.placements["c"].slots} == {2}
    # b (longest) on node 0, a on node 1 (node 0 has 2 free < 3); c fits no node whole (2 and 1
    # free) and spans them, node 0 (more free) first; without spanning it waits for a.
    jobs = [J("a", (), 3, 10), J("b", (), 2, 20), J("c", (), 3, 5)]
    plan = simulate(jobs, nodes=2, gpus_per_node=4)
    assert plan.placements["c"].start == 0
    assert plan.placements["c"].slots == ((0, 2), (0, 3), (1, 3))
    plan = simulate(jobs, nodes=2, gpus_per_node=4, allow_spanning=False)
    assert plan.placements["c"].start == 10 and {n for n, _ in plan.placements["c"].slots} == {1}


def test_best_fit_packs_two_4gpu_jobs_on_one_node():
    jobs = [J("a", (), 4, 10), J("b", (), 4, 10), J("c", (), 8, 10)]
    plan = simulate(jobs, nodes=2, gpus_per_node=8)
    assert {n for n, _ in plan.placements["a"].slots} == {0}
    assert {n for n, _ in plan.placements["b"].slots} == {0}
    assert plan.placements["c"].slots == tuple((1, g) for g in range(8))
    assert plan.scheduled_wall_s == 10  # one job per node would have made c wait: 20
    assert plan.utilization == pytest.approx(1.0)


def test_max_concurrent_caps_gpu_jobs_but_not_driver_jobs():
    jobs = [J(f"j{k}", (), 1, 10) for k in range(4)] + [J("drv", (), 0, 25, kind="report")]
    plan = simulate(jobs, nodes=1, gpus_per_node=8, max_concurrent=2)
    assert sorted(p.start for i, p in plan.placements.items() if i != "drv") == [0, 0, 10, 10]
    assert plan.placements["drv"].start == 0
    assert plan.scheduled_wall_s == 25
    assert simulate(jobs, nodes=1, gpus_per_node=8).placements["j3"].start == 0


def test_driver_jobs_run_beside_a_full_cluster():
    jobs = [J("train", (), 2, 10), J("drv", (), 0, 5), J("after", ["drv"], 0, 1)]
    plan = simulate(jobs, nodes=1, gpus_per_node=2, max_concurrent=1)
    assert starts(plan) == {"train": (0, 10), "drv": (0, 5), "after": (5, 6)}
    assert plan.gpu_seconds == 20


def test_exclusive_job_runs_alone():
    # bench becomes ready at 2 (after p); q still runs until 10, so bench waits for it, and r
    # (ready at 2 too) waits behind the gate until bench is done.
    jobs = [J("p", (), 1, 2), J("q", (), 2, 10), J("bench", ["p"], 1, 5, kind="bench", exclusive=True),
            J("r", ["p"], 1, 3), J("drv", ["p"], 0, 1)]
    plan = simulate(jobs, nodes=1, gpus_per_node=8)
    assert starts(plan) == {"p": (0, 2), "q": (0, 10), "bench": (10, 15), "r": (15, 18), "drv": (15, 16)}
    # ready at the start: it runs first, alone, before higher-priority jobs
    jobs = [J("x", (), 2, 10), J("y", (), 2, 10), J("bench", (), 1, 5, exclusive=True)]
    plan = simulate(jobs, nodes=1, gpus_per_node=8)
    assert starts(plan) == {"bench": (0, 5), "x": (5, 15), "y": (5, 15)}


def test_zero_second_jobs_and_empty_graph():
    jobs = [J("a", (), 0, 0), J("b", ["a"], 4, 0), J("c", ["b"], 1, 7)]
    plan = simulate(jobs, nodes=1, gpus_per_node=4)
    assert starts(plan) == {"a": (0, 0), "b": (0, 0), "c": (0, 7)}
    empty = simulate([], nodes=2, gpus_per_node=4)
    assert empty.scheduled_wall_s == 0 and empty.utilization == 0 and empty.critical_path == []


def test_priority_is_the_longest_remaining_path_ties_by_id():
    # One GPU: the job heading the longest chain goes first, whatever its own length.
    jobs = [J("short-head", (), 1, 1), J("tail", ["short-head"], 1, 20), J("long", (), 1, 10), J("b", (), 1, 3),
            J("a", (), 1, 3)]
    assert priorities(jobs) == {"short-head": 21, "tail": 20, "long": 10, "b": 3, "a": 3}
    plan = simulate(jobs, nodes=1, gpus_per_node=1)
    order = sorted(plan.placements, key=lambda i: plan.placements[i].start)
    assert order == ["short-head", "tail", "long", "a", "b"]
    assert critical_path(jobs) == (21, ["short-head", "tail"])


def test_backfill_starts_a_smaller_job_that_fits():
    # big (4 GPUs) waits for a; small (1 GPU, lower priority) fits the free GPU and starts at once.
    jobs = [J("a", (), 3, 10), J("big", (), 4, 20), J("small", (), 1, 5)]
    plan = simulate(jobs, nodes=1, gpus_per_node=4)
    assert starts(plan) == {"big": (0, 20), "a": (20, 30), "small": (20, 25)}
    jobs = [J("a", (), 3, 30), J("big", (), 4, 20), J("small", (), 1, 5)]
    plan = simulate(jobs, nodes=1, gpus_per_node=4)
    assert starts(plan) == {"a": (0, 30), "small": (0, 5), "big": (30, 50)}


def test_sequential_and_lower_bound():
    jobs = [J("a", (), 4, 10), J("b", (), 4, 10), J("c", ["a"], 2, 5)]
    assert sequential_wall(jobs) == 25
    assert lower_bound(jobs, 4) == pytest.approx((40 + 40 + 10) / 4)
    assert lower_bound(jobs, 64) == 15  # the critical path a -> c


@pytest.mark.parametrize("jobs, kw, message", [
    ([J("huge", (), 16, 1)], dict(nodes=1, gpus_per_node=8),
     "job 'huge' needs 16 GPUs but the cluster has 8 (1 nodes x 8 GPUs)"),
    ([J("a", ["ghost", "b"]), J("b")], dict(nodes=1, gpus_per_node=1), "job 'a' depends on unknown job(s): 'ghost'"),
    ([J("a", ["c"]), J("b", ["a"]), J("c", ["b"]), J("d", ["a"])], dict(nodes=1, gpus_per_node=1),
     "cycle: a -> b -> c -> a"),
    ([J("a", ["a"])], dict(nodes=1, gpus_per_node=1), "job 'a' depends on itself"),
    ([J("a"), J("a")], dict(nodes=1, gpus_per_node=1), "job 'a' appears twice"),
    ([J("a", (), -1)], dict(nodes=1, gpus_per_node=1), "job 'a': workers must be an integer >= 0"),
    ([J("a", (), 1, float("nan"))], dict(nodes=1, gpus_per_node=1), "job 'a': seconds must be a finite number"),
    ([J("a")], dict(nodes=0, gpus_per_node=8), "nodes >= 1"),
    ([J("a")], dict(nodes=1, gpus_per_node=8, max_concurrent=0), "max_concurrent must be >= 1"),
])
def test_errors_name_the_job_and_the_numbers(jobs, kw, message):
    with pytest.raises(ScheduleError) as e:
        simulate(jobs, **kw)
    assert message in str(e.value)
    assert isinstance(e.value, StiltsError) and isinstance(e.value, ValueError)


def test_cycle_found_by_critical_path_too():
    with pytest.raises(ScheduleError, match="cycle"):
        critical_path([J("x", ["y"]), J("y", ["x"])])


def _random_case(rng):
    nodes = int(rng.integers(1, 5))
    gpn = int(rng.choice([2, 4, 8]))
    spanning = bool(rng.random() < 0.7)
    cap = None if rng.random() < 0.5 else int(rng.integers(1, 5))
    n = int(rng.integers(1, 40))
    limit = nodes * gpn if spanning else gpn
    jobs = []
    for k in range(n):
        deps = tuple(f"j{d:02d}" for d in range(k) if rng.random() < 3 / (k + 1))
        workers = int(rng.choice([0, 1, 2, 4, 8, 12]))
        workers = min(workers, limit)
        seconds = 0.0 if rng.random() < 0.05 else float(np.round(rng.exponential(100), 1))
        exclusive = bool(rng.random() < 0.04)
        jobs.append(J(f"j{k:02d}", deps, workers, seconds, kind=str(rng.choice(["phase1", "phase2"])),
                      exclusive=exclusive))
    rng.shuffle(jobs)  # input order must not matter for correctness
    return jobs, dict(nodes=nodes, gpus_per_node=gpn, max_concurrent=cap, allow_spanning=spanning)


def _overlap(a, b):
    return a.start < b.end and b.start < a.end


@pytest.mark.parametrize("seed", range(40))
def test_invariants_on_random_graphs(seed):
    rng = np.random.default_rng(seed)
    jobs, kw = _random_case(rng)
    plan = simulate(jobs, **kw)
    eps = 1e-9
    by_id = {j.id: j for j in jobs}
    P = plan.placements
    assert set(P) == set(by_id)
    for j in jobs:
        p = P[j.id]
        assert p.end == pytest.approx(p.start + j.seconds)
        assert all(P[d].end <= p.start + eps for d in j.deps), j.id
        assert len(p.slots) == j.workers and len(set(p.slots)) == j.workers
        assert all(0 <= n < kw["nodes"] and 0 <= g < kw["gpus_per_node"] for n, g in p.slots)
        if not kw["allow_spanning"]:
            assert len({n for n, _ in p.slots}) <= 1
        if j.exclusive and p.end > p.start:
            assert not any(_overlap(p, P[o]) for o in P if o != j.id), j.id
    per_slot = {}
    for j in jobs:
        for s in P[j.id].slots:
            per_slot.setdefault(s, []).append(P[j.id])
    for s, ps in per_slot.items():
        ps.sort(key=lambda p: (p.start, p.end))
        assert all(a.end <= b.start + eps for a, b in zip(ps, ps[1:])), s
    if kw["max_concurrent"]:
        for t in {p.start for p in P.values()}:
            running = sum(1 for j in jobs if j.workers > 0 and P[j.id].start <= t < P[j.id].end)
            assert running <= kw["max_concurrent"]
    assert plan.lower_bound_wall_s == pytest.approx(lower_bound(jobs, kw["nodes"] * kw["gpus_per_node"]))
    assert plan.lower_bound_wall_s - eps <= plan.scheduled_wall_s <= plan.sequential_wall_s + eps
    assert 0 <= plan.utilization <= 1 + eps
    assert simulate(list(reversed(jobs)), **kw).placements == P  # deterministic, order-free


ARMS = ["english", "plus-mlm", "plus-mt", "multi", "xnli-only", "mnli-only", "squad-only", "paws", "bf16",
        "fp16", "big-batch", "long-seq", "all"]
TASKS = ["xnli", "pawsx", "xquad", "mlqa", "tydiqa", "udpos", "panx", "bucc", "tatoeba"]


def study_jobs(seed=0):
    """The paper study's shape: per arm a 4-GPU phase 1, nine 4-GPU phase-2 fine-tunes, a phase-3
    evaluation and a driver-side results job; one prepare job first, one comparison and report last."""
    rng = np.random.default_rng(seed)
    jobs = [J("prepare", (), 0, 600, kind="prepare")]
    for a, arm in enumerate(ARMS):
        p1_h = 14.0 if arm == "all" else float(rng.choice([1.5, 2.5, 4.0, 6.0]))  # one arm very long
        p1 = f"{arm}/phase1"
        jobs.append(J(p1, ["prepare"], 4, p1_h * 3600, kind="phase1", arm=arm))
        p2 = []
        for t in TASKS:
            p2.append(f"{arm}/phase2/{t}")
            jobs.append(J(p2[-1], [p1], 4, float(rng.uniform(0.4, 1.6)) * 3600, kind="phase2", arm=arm))
        jobs.append(J(f"{arm}/phase3", p2, 4, 0.5 * 3600, kind="phase3", arm=arm))
        jobs.append(J(f"{arm}/results", [f"{arm}/phase3"], 0, 30, kind="results", arm=arm))
    jobs.append(J("arms", [f"{a}/results" for a in ARMS], 0, 60, kind="arms"))
    jobs.append(J("report", ["arms"], 0, 60, kind="report"))
    return jobs


def test_study_shaped_graph_is_near_the_lower_bound():
    jobs = study_jobs()
    assert len(jobs) == 1 + 13 * 12 + 2
    plan = simulate(jobs, nodes=8, gpus_per_node=8)
    h = 3600
    ratio = plan.scheduled_wall_s / plan.lower_bound_wall_s
    print(f"\nstudy-shaped graph, {len(jobs)} jobs on 8 x 8 GPUs: scheduled {plan.scheduled_wall_s / h:.2f} h, "
          f"lower bound {plan.lower_bound_wall_s / h:.2f} h (critical path {plan.critical_path_s / h:.2f} h, "
          f"GPU-hours/64 {plan.gpu_seconds / 64 / h:.2f} h), sequential {plan.sequential_wall_s / h:.2f} h; "
          f"scheduled/lower bound {ratio:.3f}, utilization {plan.utilization:.1%}")
    assert ratio <= 1.3
    assert plan.critical_path[:2] == ["prepare", "all/phase1"] and plan.critical_path[-1] == "report"
    # The long arm starts first; 4-GPU jobs pack two per node, never spanning.
    assert plan.placements["all/phase1"].start == 600
    assert all(len({n for n, _ in p.slots}) <= 1 for p in plan.placements.values())
    # Smaller clusters and other duration draws: slower, but still near the bound (work-bound
    # there, not path-bound) and never worse than sequential.
    for seed, nodes, gpn in [(0, 2, 8), (0, 4, 8), (1, 3, 8), (2, 8, 4), (3, 1, 8)]:
        other = simulate(study_jobs(seed), nodes=nodes, gpus_per_node=gpn)
        print(f"  seed {seed} on {nodes} x {gpn} GPUs: scheduled {other.scheduled_wall_s / h:.2f} h, lower bound "
              f"{other.lower_bound_wall_s / h:.2f} h, ratio {other.scheduled_wall_s / other.lower_bound_wall_s:.3f}")
        assert other.scheduled_wall_s / other.lower_bound_wall_s <= 1.3
        assert other.scheduled_wall_s <= other.sequential_wall_s


def test_plan_json_and_markdown():
    plan = simulate(study_jobs(), nodes=8, gpus_per_node=8)
    data = json.loads(json.dumps(plan_json(plan)))
    for key in ("gpu_hours", "sequential_wall_h", "scheduled_wall_h", "lower_bound_wall_h", "critical_path_h",
                "critical_path", "utilization", "nodes", "gpus_per_node", "jobs"):
        assert key in data
    assert data["scheduled_wall_h"] == pytest.approx(plan.scheduled_wall_s / 3600)
    assert data["gpu_hours"] == pytest.approx(sum(data["gpu_hours_by_kind"].values()))
    assert data["gpu_hours"] == pytest.approx(sum(data["gpu_hours_by_arm"].values()))
    assert len(data["jobs"]) == len(plan.jobs)
    row = next(r for r in data["jobs"] if r["id"] == "english/phase2/xnli")
    assert set(row) >= {"id", "kind", "arm", "workers", "seconds", "start", "end"}
    assert row["kind"] == "phase2" and row["arm"] == "english" and row["workers"] == 4
    assert [r["start"] for r in data["jobs"]] == sorted(r["start"] for r in data["jobs"])
    md = plan_markdown(plan, "paper study")
    assert md.startswith("# paper study\n")
    assert "| scheduled |" in md and "| lower bound" in md and "| sequential" in md
    assert "| phase2 | 117 |" in md and "| english | 12 |" in md
    assert "`all/phase1`" in md
