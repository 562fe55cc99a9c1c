"""The quick start: the task table, then the whole study graph of a config, then its report.

Run it as

    stilts-ds demo                                   # configs/quickstart.yaml into ./runs/quickstart
    make demo                                        # the same, after installing into .venv
    stilts-ds demo --set output_dir=/tmp/qs --force  # elsewhere, every stage rerun

or from Python, with a loaded config:

    from stilts_ds.config import load_config
    from stilts_ds.studies.demo import QUICKSTART, run_demo
    run_demo(load_config(QUICKSTART))

With the shipped quickstart (tiny XLM-R, local Ray with two workers, DeepSpeed ZeRO-2 on the
CPU) it needs no GPU and no hub access: every fixture split the study reads is featurized,
each arm runs its three phases, the arms are compared, each arm's fine-tuned checkpoints of
the bench tasks are served through every engine with their scores through each (which arms,
tasks, languages and engines: the config's ``bench`` section; the quick start's: xnli, udpos
and xquad in en, hi and zh), and the study report (tables and plots) lands in
``<output_dir>/report``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from stilts_ds.config import ExperimentConfig
from stilts_ds.shipped import config_file

QUICKSTART = config_file("quickstart.yaml")  # the checkout's configs/, or the installed wheel's copy


def run_demo(cfg: ExperimentConfig, *, force: bool = False, say: Callable[[str], None] = print) -> Path:
    """Print the task table, run every node of ``cfg``'s study graph that is not done (all
    of them with ``force``), then print the report; returns the report directory."""
    from stilts_ds.studies.graph import build_graph
    from stilts_ds.studies.scheduler import Scheduler
    from stilts_ds.tasks.catalog import task_rows, task_table

    say(task_table(task_rows()))
    graph = build_graph(cfg)
    Scheduler(graph, force=list(graph.nodes) if force else ()).run()
    report = cfg.run_dir / "report"
    say((report / "tradeoff.md").read_text(encoding="utf-8"))
    say("\n".join(str(p) for p in sorted(report.glob("*.png"))))
    say(f"TensorBoard: tensorboard --logdir {cfg.run_dir}")
    return report
