"""A study's arms side by side: each arm runs the three phases, then one comparison.

    stilts-ds pipeline --config configs/quickstart.yaml             # every arm, then arms.md
    stilts-ds pipeline --config configs/quickstart.yaml --arm plus-mlm

    from stilts_ds.studies.arms import run_arms, write_comparison
    run_arms(cfg)                      # {arm: results dict}; skips finished stages as Study does
    write_comparison(cfg)              # <output_dir>/arms.json, arms.md, arms.png

An arm is a named set of overrides of the study config (``arms:`` in the YAML; see
``stilts_ds.config.Arm``) and lives in ``<output_dir>/arms/<arm>/`` with its own phases,
results.json and TensorBoard logs; all arms share one feature cache. The comparison puts,
per arm, what phase 1 trained on (English-only or multilingual: +MLM, +translated copies),
the accuracy per target task and the benchmark averages, and what training cost (phase-1
loop rows/s, wall seconds of phase 1 and of phase 2 summed over target tasks) into one
table, with a grouped bar chart of the scores. ``stilts-ds report --study DIR`` joins it
with serving cost.

With ``seeds`` in the config, each arm's results.json is the combination of its seeds
(``studies.seeds``): every score in the comparison is the mean over the seeds, shown as
"71.3 ± 0.4 (3 seeds)" (± the sample standard deviation; error bars in arms.png). The cost
columns are per seed's run, averaged over the seeds (phase-1 rows/s, phase-1 and phase-2 wall
seconds: what one run of the arm takes), plus the training wall seconds of phases 1 and 2
summed over every seed (what the arm's mean cost); arms.md says so under its tables. A
results.json combining other seeds than the config lists is refused (it would be stale).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from stilts_ds.atomic import write_atomic
from stilts_ds.config import Arm, ExperimentConfig
from stilts_ds.errors import StiltsError
from stilts_ds.figures import figure, png
from stilts_ds.studies.results import load_results
from stilts_ds.studies.seeds import score_with_spread
from stilts_ds.tables import MISSING, fmt_number, markdown_table

COMPARISON = "arms.json"


def select_arms(cfg: ExperimentConfig, names: Iterable[str] = ()) -> list[Arm]:
    arms = cfg.arm_configs()
    names = list(names)
    if not arms:
        if names:
            raise StiltsError(f"--arm {names[0]!r}: the config declares no arms (add an `arms:` section)")
        return []
    unknown = [n for n in names if n not in arms]
    if unknown:
        raise StiltsError(f"--arm {unknown[0]!r}: no such arm; the config declares: {', '.join(arms)}")
    return [arms[n] for n in (names or arms)]


def run_arms(cfg: ExperimentConfig, names: Iterable[str] = (), *, force: bool = False, in_process: bool = False,
             progress: bool = True, wait: bool | float = False) -> dict[str, dict]:
    """Run the chosen arms (default: all) as one study graph, side by side where the cluster
    allows; with every arm, also the comparison, the bench (when the config enables it) and
    the report. Returns {arm: results}."""
    from stilts_ds.studies.graph import build_graph
    from stilts_ds.studies.scheduler import Scheduler

    chosen = select_arms(cfg, names)
    if not chosen:
        raise StiltsError("the config declares no arms: run `stilts-ds pipeline` without --arm")
    graph = build_graph(cfg, [a.name for a in chosen], with_study_nodes=not list(names))
    Scheduler(graph, in_process=in_process, force=list(graph.nodes) if force else (),
              say=_say if progress else None, wait=wait).run()
    return {a.name: load_results(a.config.run_dir / "results.json") for a in chosen}


def _say(msg: str) -> None:
    import click

    click.echo(msg, err=True)


def _done(stage: Path) -> dict:
    marker = stage / "DONE.json"
    return json.loads(marker.read_text(encoding="utf-8")) if marker.is_file() else {}


def _phase2_wall(run: Path, tasks) -> float | None:
    """Wall seconds of a run's phase 2, summed over target tasks (a staged recipe whole)."""
    done = [_done(run / "phase2" / t) for t in tasks]
    return sum(d.get("recipe_wall_seconds", d.get("wall_seconds", 0.0)) for d in done) if any(done) else None


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def arm_summary(arm: Arm) -> dict | None:
    """What one arm trained on, scored and cost; None while it has no results.json."""
    cfg = arm.config
    results_path = cfg.run_dir / "results.json"
    if not results_path.is_file():
        return None
    res = load_results(results_path)
    inter = cfg.intermediate
    tasks = list(inter.tasks) if inter else []
    extras = [f"+{data}" for data in arm.multilingual_data]
    averages = {k: v for k, v in res.items() if k.endswith("_average") and isinstance(v, (int, float))}
    row = {
        "arm": arm.name, "description": arm.description, "intermediate_tasks": tasks,
        "data": ("multilingual " + " ".join(extras)) if extras else ("English-only" if tasks else "none"),
        "results": str(results_path),
        "task_scores": res.get("task_scores", {}),
        "averages": averages,
    }
    if cfg.seeds is None:
        phase1 = _done(cfg.run_dir / "phase1")
        return {**row, "phase1_samples_per_s": phase1.get("train_samples_per_s"),
                "phase1_wall_s": phase1.get("wall_seconds"),
                "phase2_wall_s": _phase2_wall(cfg.run_dir, cfg.finetune.tasks)}
    record = res.get("seeds") or {}
    if record.get("values") != list(cfg.seeds):
        raise StiltsError(f"{results_path} combines seeds {record.get('values')}, but the config lists "
                          f"{list(cfg.seeds)}: it is stale; run `stilts-ds pipeline` to combine the config's seeds")
    runs = [cfg.seed_config(s).run_dir for s in cfg.seeds]
    phase1 = [_done(run / "phase1") for run in runs]
    phase2 = [_phase2_wall(run, cfg.finetune.tasks) for run in runs]
    walls = [(p1.get("wall_seconds") or 0.0) + (p2 or 0.0) for p1, p2 in zip(phase1, phase2)]
    std = record.get("std", {})
    return {**row,
            # Per seed's run, averaged over the seeds: what one run of the arm takes.
            "phase1_samples_per_s": _mean(p.get("train_samples_per_s") for p in phase1),
            "phase1_wall_s": _mean(p.get("wall_seconds") for p in phase1),
            "phase2_wall_s": _mean(phase2),
            # Summed over the seeds: what the arm's mean over its seeds cost in training.
            "train_wall_s_all_seeds": sum(walls) if any(walls) else None,
            "seeds": list(cfg.seeds), "runs": [str(r) for r in runs],
            "std": {"task_scores": dict(std.get("task_scores", {})),
                    "averages": {k: std.get(k) for k in averages}}}


def write_comparison(cfg: ExperimentConfig) -> dict[str, Path]:
    """arms.json, arms.md and arms.png in the study's run dir, over the arms that have results."""
    rows = [s for s in (arm_summary(a) for a in cfg.arm_configs().values()) if s]
    if not rows:
        raise StiltsError(f"no arm of {cfg.run_dir} has results yet: run `stilts-ds pipeline` first")
    run_dir = cfg.run_dir
    paths = {"json": write_atomic(run_dir / COMPARISON, json.dumps({"arms": rows}, indent=2)),
             "md": write_atomic(run_dir / "arms.md", comparison_markdown(rows, title=f"Arms of {cfg.name}")),
             "png": write_atomic(run_dir / "arms.png", comparison_png(rows, title=f"Arms of {cfg.name}"))}
    return paths


def load_comparison(path: Path) -> list[dict]:
    from stilts_ds.errors import DataFileError

    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))["arms"]
    except FileNotFoundError:
        raise DataFileError(path, "missing: run the study's arms (`stilts-ds pipeline`) first") from None
    except (json.JSONDecodeError, KeyError, TypeError):
        raise DataFileError(path, "not an arms comparison written by stilts-ds (expected {\"arms\": [...]})") from None


def _average_names(rows) -> list[str]:
    return list(dict.fromkeys(k for r in rows for k in r["averages"]))


def _score(row: dict, value, std) -> str:
    """A score cell: the number, or with seeds "mean ± std (n seeds)"."""
    seeds = row.get("seeds")
    return score_with_spread(value, std, len(seeds)) if seeds else fmt_number(value)


def comparison_markdown(rows: list[dict], *, title: str) -> str:
    """Scores with one column per arm (rows: benchmark averages, then tasks), then costs.
    With seeds, each score is the mean ± the sample std over them, and the costs say how they
    combine the seeds."""
    arms = [r["arm"] for r in rows]
    tasks = list(dict.fromkeys(t for r in rows for t in r["task_scores"]))
    seeded = any(r.get("seeds") for r in rows)
    scores = [["phase-1 data", *(r["data"] for r in rows)]]
    for name in _average_names(rows):
        label = name.removesuffix("_average").replace("_r", "-R").upper() + " average"
        scores.append([f"**{label}**", *(f"**{_score(r, r['averages'].get(name), _std(r, 'averages', name))}**"
                                         for r in rows)])
    scores += [[t, *(_score(r, r["task_scores"].get(t), _std(r, "task_scores", t)) for r in rows)] for t in tasks]
    costs = [[r["arm"], r["description"] or MISSING, ", ".join(r["intermediate_tasks"]) or MISSING,
              fmt_number(r["phase1_samples_per_s"]), fmt_number(r["phase1_wall_s"]), fmt_number(r["phase2_wall_s"])]
             for r in rows]
    header = ["arm", "description", "phase-1 tasks", "phase-1 rows/s", "phase-1 wall s", "phase-2 wall s"]
    if seeded:
        header = [*header[:3], "phase-1 rows/s (mean of seeds)", "phase-1 wall s (mean of seeds)",
                  "phase-2 wall s (mean of seeds)", "phase 1 + 2 wall s (sum of seeds)"]
        costs = [[*c, fmt_number(r.get("train_wall_s_all_seeds"))] for c, r in zip(costs, rows)]
    lines = [f"# {title}", "", *markdown_table(["", *arms], scores), "", *markdown_table(header, costs)]
    if seeded:
        lines += ["", ("Scores: the mean over each arm's seeds ± their sample standard deviation (ddof=1). Costs: "
                       "phase-1 rows/s and the wall seconds of phases 1 and 2 (summed over target tasks) are one "
                       "seed's run, averaged over the seeds; the last column sums phases 1 and 2 over every seed.")]
    return "\n".join(lines) + "\n"


def _std(row: dict, table: str, name: str) -> float | None:
    return (row.get("std") or {}).get(table, {}).get(name)


def comparison_png(rows: list[dict], *, title: str) -> bytes:
    """Grouped bars: one group per task (and per benchmark average), one bar per arm."""
    averages = _average_names(rows)
    tasks = list(dict.fromkeys(t for r in rows for t in r["task_scores"]))
    groups = averages + tasks
    fig = figure((max(6.0, 0.8 * len(groups) + 2), 4.2))
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(1, len(rows))
    for i, r in enumerate(rows):
        values = [r["averages"].get(g) if g in averages else r["task_scores"].get(g) for g in groups]
        xs = [j + (i - (len(rows) - 1) / 2) * width for j in range(len(groups))]
        hatch = "//" if r["data"].startswith("multilingual") else None
        # With seeds: error bars of ± the sample std over them (none where it is undefined).
        errs = ([_std(r, "averages" if g in averages else "task_scores", g) or 0.0 for g in groups]
                if r.get("seeds") else None)
        ax.bar(xs, [v or 0.0 for v in values], width=width, label=f"{r['arm']} ({r['data']})", hatch=hatch,
               yerr=errs, capsize=2 if errs else 0)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([g.removesuffix("_average") + " avg" if g in averages else g for g in groups],
                       rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("score")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return png(fig, dpi=110)
