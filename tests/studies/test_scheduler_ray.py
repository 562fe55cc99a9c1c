"""The scheduler on a real two-node Ray cluster (two raylets, one CPU each): jobs that fit side by
side run side by side, each a TorchTrainer fit with DeepSpeed workers, and no job starts before
the jobs it consumes have ended. The cluster's memory is sampled while up to two fits run at
once (many concurrent Train runs are heavy on the head: ray-project/ray #65443)."""
import json
import threading
import time
from pathlib import Path

import psutil

from stilts_ds.config import load_config
from stilts_ds.studies.graph import build_graph
from stilts_ds.studies.records import node_states
from stilts_ds.studies.scheduler import SCHEDULE, Scheduler

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "configs" / "quickstart.yaml"


class _Memory:
    """Peak resident memory of the cluster's processes (raylets, GCS, Train controllers, workers)."""

    def __init__(self, ray_cluster, module):
        self.cluster, self.module = ray_cluster, module
        self.peak, self._stop = 0, threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        while not self._stop.is_set():
            total = 0
            for p in self.module._find_processes(self.cluster._sessions, self.cluster.temp_dir, ()):
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            self._stop.wait(1.0)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def test_independent_jobs_run_side_by_side_on_two_nodes(ray_cluster, ray_cluster_module, tmp_path, ray_timings):
    cfg = load_config(QUICKSTART, {
        "output_dir": str(tmp_path / "run"), "cluster.num_workers": 1, "cluster.cpus_per_worker": 1,
        "cluster.fuse_stages": "never", "intermediate.tasks": ["mnli", "qqp"], "intermediate.max_steps": 6,
        "finetune.tasks": ["xnli"], "finetune.defaults.max_steps": 6, "finetune.defaults.eval_every": 3,
        "evaluate.tasks": ["xnli", "tatoeba"], "bench.enabled": False,
        "arms": {"a": {}, "b": {"intermediate": {"tasks": ["mnli"]}}}})
    graph = build_graph(cfg)
    lines = []
    t0 = time.time()
    with ray_cluster.connected(), _Memory(ray_cluster, ray_cluster_module) as memory:
        summary = Scheduler(graph, say=lines.append).run()
    ray_timings["scheduler: 2 arms, 6 fits on 2 slots"] = time.time() - t0
    ray_timings["scheduler: peak cluster RSS (GB)"] = memory.peak / 1e9
    assert not summary.failed, "\n".join(lines)
    assert "cluster: 2 worker slot(s) for jobs of 1 worker(s)" in "\n".join(lines)
    assert all(s.state == "done" for s in node_states(graph).values())

    rows = [json.loads(line) for line in (tmp_path / "run" / SCHEDULE).read_text().splitlines()]
    fits = {r["id"]: r for r in rows if r["workers"]}
    assert {"a/phase1", "b/phase1", "a/phase2/xnli", "b/phase2/xnli", "a/phase3/xnli", "b/phase3/tatoeba"} <= set(fits)
    # Dependencies respected: nothing starts before what it consumes has ended.
    ended = {r["id"]: r["end"] for r in rows}
    for r in rows:
        for dep in graph.nodes[r["id"]].deps:
            if dep in ended:
                assert r["start"] >= ended[dep] - 1e-6, (r["id"], dep)
    # Side by side: the two arms' phase 1 (and their fine-tunes) overlap in time.
    def overlap(x, y):
        return min(fits[x]["end"], fits[y]["end"]) - max(fits[x]["start"], fits[y]["start"])

    assert overlap("a/phase1", "b/phase1") > 0, (fits["a/phase1"], fits["b/phase1"])
    assert overlap("a/phase2/xnli", "b/phase2/xnli") > 0
    # Each fit's worker landed on a node of its own while the other ran.
    nodes = {json.loads((cfg.run_dir / "arms" / arm / "phase1" / "train_summary.json").read_text())["workers"][0]
             ["node_id"] for arm in ("a", "b")}
    assert len(nodes) == 2
    util = json.loads((tmp_path / "run" / "utilization.json").read_text())
    assert util["slots"] == 2 and 0 < util["utilization"] <= 1
    assert (tmp_path / "run" / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert memory.peak < 12e9  # two concurrent fits on a two-node local cluster
