"""The ``stilts-ds`` command: a thin click group; each command parses options and calls one stage.

    stilts-ds tasks [--json]
    stilts-ds prepare --task all --tokenizer bundled --cache-dir runs/cache
    stilts-ds score --task xquad --lang de --predictions preds.json --references xquad.de.json
    stilts-ds pipeline --config configs/quickstart.yaml     # the study graph: every arm, side by side
    stilts-ds status --config configs/quickstart.yaml       # every node: done / stale (why) / pending / running
    stilts-ds plan --config configs/paper.yaml --nodes 8 --gpus-per-node 8   # predicted GPU-hours, wall clock
    stilts-ds demo                                          # the quick start (make demo)
    stilts-ds bench --preset tiny --batch-sizes 1,4 --seq-len 32 --output runs/bench
    stilts-ds scale --sweep configs/sweeps/quickstart.yaml --output runs/scale   # scaling study

Bad input (unknown task, missing split, malformed file) prints ``error: ...`` naming the
file/option and exits with status 2; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from stilts_ds.errors import StiltsError


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except StiltsError as e:
            click.secho(f"error: {e}", fg="red", err=True)
            sys.exit(2)


@click.group(cls=_Group)
@click.version_option(package_name="stilts-ds")
def main():
    """stilts-ds: English intermediate-task training for zero-shot cross-lingual transfer."""


# ----------------------------------------------------------------------------- tasks
@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of task objects instead of a table.")
@click.option("--kind", type=click.Choice(["all", "intermediate", "multilingual", "auxiliary", "xtreme"]), default="all",
              show_default=True)
def tasks(as_json: bool, kind: str):
    """List every task of the study: format, metric, languages, data sources."""
    from stilts_ds.tasks.catalog import task_rows, task_table

    rows = [r for r in task_rows() if kind == "all" or r["kind"] == kind]
    click.echo(json.dumps(rows, ensure_ascii=False, indent=2) if as_json else task_table(rows))


# ----------------------------------------------------------------------------- prepare
@main.command()
@click.option("--task", "task_names", multiple=True, default=["all"], show_default=True,
              help="Task name, or all / intermediate / xtreme. Repeatable.")
@click.option("--split", "splits", multiple=True, help="Only these splits (default: all the task has). Repeatable.")
@click.option("--lang", "langs", multiple=True, help="Only these languages (default: all). Repeatable.")
@click.option("--tokenizer", default="bundled", show_default=True,
              help="Hub id or local directory of a fast tokenizer; 'bundled' is the offline fixture tokenizer.")
@click.option("--max-length", type=click.IntRange(min=16), default=None,
              help="Tokens per row (default: 384 for span QA, 256 otherwise, the paper's recipe).")
@click.option("--source", type=click.Choice(["local", "hub"]), default="local", show_default=True)
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Local data root (<dir>/<task>/<split>[.<lang>].jsonl); default: the bundled fixtures.")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/cache"),
              show_default=True)
@click.option("--force", is_flag=True, help="Featurize again even where a cache entry exists.")
@click.option("--json", "as_json", is_flag=True,
              help="Print a JSON list, one object per split: task, split, lang, examples, rows, truncated, "
                   "unlabelled_answers (span QA, else null), unk_rate, split_examples (tagging), reused, path.")
def prepare(task_names, splits, langs, tokenizer, max_length, source, data_dir, cache_dir, force, as_json):
    """Featurize task splits once and cache them by (task, split, language, tokenizer, max length),
    then report each split's quality: examples, rows, examples truncated, span-QA answers no
    window holds, and the share of unknown tokens (a warning above 5%: the tokenizer does not
    cover the language)."""
    from stilts_ds.data.prepare import prepare as run_prepare
    from stilts_ds.modeling.presets import load_tokenizer
    from stilts_ds.tasks.registry import resolve_tasks

    import warnings

    from stilts_ds.errors import DataWarning

    specs = resolve_tasks(task_names)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataWarning)
        done = run_prepare(specs, tokenizer=load_tokenizer(tokenizer), cache_dir=cache_dir, source=source,
                           data_dir=data_dir, splits=splits or None, langs=langs or None,
                           max_length=max_length, force=force)
    for w in caught:
        if issubclass(w.category, DataWarning):
            click.echo(f"WARNING: {w.message}", err=True)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    from stilts_ds.data.prepare import UNK_WARN_RATE
    from stilts_ds.tables import fmt_number, markdown_table

    rows = [d.row() for d in done]
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
    else:
        fresh = sum(not d.reused for d in done)
        click.echo(f"prepared {len(done)} splits ({fresh} featurized, {len(done) - fresh} from cache) in "
                   f"{cache_dir}: {sum(d.examples for d in done)} examples, {sum(d.rows for d in done)} rows\n")
        cols = ("task", "split", "lang", "examples", "rows", "truncated", "unlabelled_answers", "split_examples",
                "unk_rate")
        click.echo("\n".join(markdown_table(
            [c.replace("_", " ") for c in cols],
            [[fmt_number(r[c], ".1%") if c == "unk_rate" else ("–" if r[c] is None else r[c]) for c in cols]
             for r in rows])))
    for r in rows:  # loud, on stderr, in both modes
        if (r["unk_rate"] or 0) > UNK_WARN_RATE:
            click.echo(f"WARNING: {r['task']}/{r['split']}/{r['lang']}: {r['unk_rate']:.1%} of its tokens are "
                       f"unknown to the tokenizer {tokenizer!r}: it does not cover this language", err=True)
        if r["unlabelled_answers"]:
            click.echo(f"WARNING: {r['task']}/{r['split']}/{r['lang']}: {r['unlabelled_answers']} answerable "
                       "questions have no window holding their answer (they train on nothing)", err=True)


# ----------------------------------------------------------------------------- score
@main.command()
@click.option("--task", "task_name", required=True, help="An XTREME or intermediate task name.")
@click.option("--lang", default=None, help="Language of the files (required for mlqa's normalisation).")
@click.option("--predictions", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="Predictions in the official XTREME format of the task.")
@click.option("--references", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="Gold labels in the official XTREME format of the task.")
def score(task_name, lang, predictions, references):
    """Score prediction files exactly as the official XTREME evaluate.py does.

    Formats: labels one per line (xnli, pawsx, tatoeba); tags one per line with a blank line
    between sentences (udpos, panx, ccg); BUCC id pairs tab-separated; QA predictions as a
    JSON object id -> text with SQuAD-format references (xquad, mlqa, tydiqa, squad_*); XCOPA
    labels as JSON lines, whatever the file names; ranked ids (mewslix, lareqa). The last line
    printed is one JSON object with the official key names.
    """
    from stilts_ds.evaluation import score_files
    from stilts_ds.tasks.registry import get_task

    spec = get_task(task_name)
    if lang is not None and lang not in spec.languages:
        raise StiltsError(f"task {spec.name!r} has no language {lang!r}; it has: {', '.join(spec.languages)}")
    result = score_files(spec.metric, predictions, references, lang, file_format=spec.answer_files)
    click.echo(json.dumps(result, ensure_ascii=False))


# ----------------------------------------------------------------------------- convert
@main.command()
@click.argument("task_name", metavar="TASK", required=False)
@click.argument("source", metavar="SOURCE", type=click.Path(path_type=Path), required=False)
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Local data root to write <dir>/<task>/<split>[.<lang>].jsonl into: what prepare --data-dir "
                   "and data.local_tasks read.")
@click.option("--list", "list_only", is_flag=True, help="List the converters: the official files each reads, "
                                                        "what it writes, where to get them.")
def convert(task_name, source, data_dir, list_only):
    """Convert an official distribution (SOURCE: one of its files, or the unpacked directory,
    searched recursively by official file names) into TASK's local files under --data-dir.
    Prints each file written; notes on what was left out go to stderr. Every file or none:
    bad input stops with file:line and writes nothing."""
    from stilts_ds.tables import markdown_table
    from stilts_ds.tasks.convert import convert as run_convert
    from stilts_ds.tasks.convert import converter_rows

    if list_only:
        rows = [r for r in converter_rows() if task_name in (None, r["name"])]
        if not rows:
            raise StiltsError(f"no converter for {task_name!r}; `stilts-ds convert --list` shows them all")
        click.echo("\n".join(markdown_table(["task", "distribution", "reads", "writes", "get"], [
            [r["name"], r["distribution"], "; ".join(r["reads"]), "; ".join(r["writes"]), r["get"]] for r in rows])))
        return
    if task_name is None or source is None or data_dir is None:
        raise StiltsError("usage: stilts-ds convert TASK SOURCE --data-dir DIR (stilts-ds convert --list: the tasks)")
    done = run_convert(task_name, source, data_dir)
    for note in done.notes:
        click.echo(f"note: {note}", err=True)
    for path in done.written:
        click.echo(str(path))


# ----------------------------------------------------------------------------- phases
def _parse_sets(values) -> dict:
    import yaml

    out = {}
    for item in values:
        if "=" not in item:
            raise StiltsError(f"--set {item!r}: expected KEY=VALUE, e.g. --set cluster.num_workers=4")
        key, value = item.split("=", 1)
        out[key] = yaml.safe_load(value)
    return out


def _study_options(fn):
    fn = click.option("--wait", "wait", is_flag=True,
                      help="If another driver is running this study (output_dir), wait for it instead of stopping.")(fn)
    fn = click.option("--arm", "arms", multiple=True,
                      help="With a config that declares arms: run this arm only (default: every arm). "
                           "Repeatable: --arm a --arm b runs both, side by side.")(fn)
    fn = click.option("--in-process", is_flag=True,
                      help="Run the worker in this process at world size 1 (no Ray); needs cluster.num_workers=1.")(fn)
    fn = click.option("--force", is_flag=True,
                      help="Rerun this command's stages even if they are done, from step 0 (their checkpoints, "
                           "local or in remote storage, are deleted first).")(fn)
    fn = click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
                      help="Override a config value, e.g. --set cluster.num_workers=4. Repeatable.")(fn)
    fn = click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
                      help="Experiment YAML (configs/quickstart.yaml, configs/paper.yaml).")(fn)
    return fn


def _load(config_path, sets):
    import warnings

    from stilts_ds.config import ConfigWarning, load_config

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConfigWarning)
        cfg = load_config(config_path, _parse_sets(sets))
    for w in caught:
        if issubclass(w.category, ConfigWarning):
            click.echo(f"warning: {w.message}", err=True)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    return cfg


def _run_targets(config_path, sets, force, in_process, arms, wait, targets_of) -> list:
    """Run ``targets_of(prefix, cfg)`` (node ids relative to an arm) of the study graph for each
    chosen arm (default: every arm the config declares), side by side as the cluster allows; or
    for the config itself when it declares none. Returns [(arm name or None, its config)]."""
    from stilts_ds.studies.arms import select_arms
    from stilts_ds.studies.graph import build_graph
    from stilts_ds.studies.scheduler import Scheduler

    cfg = _load(config_path, sets)
    chosen = [(a.name, a.config) for a in select_arms(cfg, arms)] or [(None, cfg)]
    graph = build_graph(cfg, [name for name, _ in chosen if name], with_study_nodes=False)
    # With seeds, `<arm>/phase1` names every seed's phase 1 (StudyGraph.resolve).
    targets = graph.resolve(t for name, c in chosen for t in targets_of(f"{name}/" if name else "", c))
    forced = ()
    if force:  # the stages themselves, and a staged recipe's earlier stages with them (xcopa: siqa)
        nodes = graph.nodes
        forced = [*targets, *(a for t in targets for a in graph.ancestors([t])
                              if nodes[a].kind == nodes[t].kind == "phase2" and nodes[a].target == nodes[t].target)]
    Scheduler(graph, in_process=in_process, force=forced, wait=wait).run(targets)
    return chosen


def _heading(name) -> str:
    return f"## arm {name}\n" if name else ""


def _runs(cfg) -> list:
    """[(run dir, "seed s: " or "")]: the config's one run, or with seeds each seed's."""
    if cfg.seeds is None:
        return [(cfg.run_dir, "")]
    return [(cfg.seed_config(s).run_dir, f"seed {s}: ") for s in cfg.seeds]


@main.command()
@_study_options
def train(config_path, sets, force, in_process, arms, wait):
    """Phase 1: intermediate training (all tasks of `intermediate.tasks` at once), for every
    arm the config declares that has a phase 1 (or the --arm ones)."""
    def targets(prefix, cfg):
        if cfg.intermediate is None:
            if prefix and not arms:
                return []  # the baseline arm: nothing to train, and not asked for by name
            raise StiltsError(f"{'arm ' + prefix.rstrip('/') if prefix else 'this config'} has no intermediate "
                              f"section: phase 2 starts from {cfg.model.encoder} directly")
        return [f"{prefix}phase1"]

    for name, cfg in _run_targets(config_path, sets, force, in_process, arms, wait, targets):
        if cfg.intermediate is not None:
            for run, seed in _runs(cfg):
                click.echo(f"{name + ': ' if name else ''}{seed}encoder: {run / 'phase1' / 'encoder'}")


@main.command()
@_study_options
@click.option("--task", "tasks", multiple=True, help="Only these target tasks (default: finetune.tasks). Repeatable.")
def finetune(config_path, sets, force, in_process, arms, wait, tasks):
    """Phase 2: fine-tune each target task on its English training data (model selection on
    English dev), for every arm (or the --arm ones); phase 1 runs first if it is not done."""
    def targets(prefix, cfg):
        unknown = [t for t in tasks if t not in cfg.finetune.tasks]
        if unknown:
            raise StiltsError(f"--task {unknown[0]}: not in finetune.tasks ({', '.join(cfg.finetune.tasks)})")
        return [f"{prefix}phase2/{t}" for t in (tasks or cfg.finetune.tasks)]

    for name, cfg in _run_targets(config_path, sets, force, in_process, arms, wait, targets):
        click.echo(_heading(name) + "\n".join(f"{seed}{task}: {run / 'phase2' / task / 'model'}"
                                               for run, seed in _runs(cfg) for task in tasks or cfg.finetune.tasks))


@main.command()
@_study_options
def evaluate(config_path, sets, force, in_process, arms, wait):
    """Phase 3: zero-shot evaluation in every language, for every arm (or the --arm ones);
    writes each arm's results.json and results.md (and runs the phases it needs that are not
    done)."""
    from stilts_ds.studies.results import load_results, results_markdown

    def targets(prefix, cfg):
        return [f"{prefix}phase3/{t}" for t in cfg.evaluate.tasks] + [f"{prefix}results"]

    for name, cfg in _run_targets(config_path, sets, force, in_process, arms, wait, targets):
        click.echo(_heading(name) + results_markdown(load_results(cfg.run_dir / "results.json")))


@main.command()
@_study_options
def pipeline(config_path, sets, force, in_process, arms, wait):
    """The whole study graph: every arm's three phases side by side as the cluster allows,
    then the arms compared, the serving benchmark and the report. Done nodes are skipped;
    stale and pending ones run (`stilts-ds status` says which and why); --force reruns all."""
    from stilts_ds.studies.graph import build_graph
    from stilts_ds.studies.results import load_results, results_markdown
    from stilts_ds.studies.scheduler import Scheduler

    cfg = _load(config_path, sets)
    # With --arm, those arms only: the comparison, bench and report cover the whole study, so
    # they run with a plain `pipeline` (which skips the arms already done).
    graph = build_graph(cfg, arms, with_study_nodes=not arms)
    Scheduler(graph, in_process=in_process, force=list(graph.nodes) if force else (), wait=wait).run()
    if arms:
        for name, arm_cfg in graph.arms.items():
            click.echo(f"## arm {name}\n\n" + results_markdown(load_results(arm_cfg.run_dir / "results.json")))
        click.echo("the arms side by side, the bench and the report: stilts-ds pipeline without --arm")
    elif cfg.arm_configs():
        click.echo((cfg.run_dir / "arms.md").read_text(encoding="utf-8"))
        click.echo(f"arms: {cfg.run_dir / 'arms.md'}, {cfg.run_dir / 'arms.png'}")
    else:
        click.echo(results_markdown(load_results(cfg.run_dir / "results.json")))
    if (cfg.run_dir / "report" / "tradeoff.md").is_file():
        click.echo(f"report: {cfg.run_dir / 'report' / 'tradeoff.md'}; timeline: {cfg.run_dir / 'timeline.png'}")


def _graph_options(fn):
    """--config, --set and --arm of the commands that read a study graph without running it."""
    fn = click.option("--arm", "arms", multiple=True, help="Only these arms (default: all the config declares).")(fn)
    fn = click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
                      help="Override a config value. Repeatable.")(fn)
    return click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
                        help="Experiment YAML (configs/quickstart.yaml, configs/paper.yaml).")(fn)


@main.command()
@_graph_options
@click.option("--all", "show_all", is_flag=True, help="List feature-preparation nodes too.")
@click.option("--json", "as_json", is_flag=True,
              help="Print a JSON list instead: per node, node, kind, arm, state, reasons, wall_seconds, holder.")
def status(config_path, sets, arms, show_all, as_json):
    """Where a study stands, running nothing: every node of its graph as done, stale (with
    why: a config key changed, a data file changed, an upstream node was retrained), pending,
    failed (with the error) or running (host, pid). `pipeline` runs exactly the stale and
    pending ones."""
    from stilts_ds.studies.graph import build_graph
    from stilts_ds.studies.records import node_states

    cfg = _load(config_path, sets)
    states = node_states(build_graph(cfg, arms, with_study_nodes=not arms))
    rows = [st.as_row() for st in states.values()]
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    counts = ", ".join(f"{sum(r['state'] == k for r in rows)} {k}" for k in
                       ("done", "stale", "pending", "running", "failed") if any(r["state"] == k for r in rows))
    click.echo(f"## {cfg.name}: {len(rows)} nodes ({counts})\n")
    click.echo("| node | state | wall s | why |\n|---|---|---:|---|")
    hidden = 0
    for r in rows:
        if r["kind"] == "prepare" and r["state"] == "done" and not show_all:
            hidden += 1
            continue
        wall = f"{r['wall_seconds']:.1f}" if r.get("wall_seconds") is not None else "–"
        why = "; ".join(r["reasons"][:3]) + (f" (+{len(r['reasons']) - 3} more)" if len(r["reasons"]) > 3 else "")
        if r["holder"]:
            why = f"host {r['holder']['host']}, pid {r['holder']['pid']}" + (f"; {why}" if why else "")
        click.echo(f"| {r['node']} | {r['state']} | {wall} | {why} |")
    if hidden:
        click.echo(f"\n({hidden} feature-preparation nodes done; --all lists them)")


@main.command()
@_graph_options
@click.option("--nodes", type=click.IntRange(min=1), required=True, help="Cluster nodes.")
@click.option("--gpus-per-node", type=click.IntRange(min=1), required=True, help="GPUs (worker slots) per node.")
@click.option("--output", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also write plan.json, plan.md and plan.png here.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def plan(config_path, sets, arms, nodes, gpus_per_node, output, as_json):
    """Predict a study before running anything: its graph, each job's GPU-hours (rows x
    epochs from the data, per-GPU throughput from `plan.throughput`), the wall clock run one
    job after another and as scheduled side by side, and the lower bound
    max(critical path, GPU-hours / GPUs)."""
    from stilts_ds.studies.plan import predict

    cfg = _load(config_path, sets)
    result = predict(cfg, arms, nodes=nodes, gpus_per_node=gpus_per_node)
    if output:
        for path in result.write(output).values():
            click.echo(f"wrote {path}", err=True)
    click.echo(json.dumps(result.as_json(), indent=2) if as_json else result.markdown())


# ----------------------------------------------------------------------------- bench
@main.command()
@click.option("--preset", default=None, help="Architecture with random weights (tiny, xlmr-large); speed only.")
@click.option("--checkpoint", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="A fine-tuned model (phase2/<task>/model) or an encoder export.")
@click.option("--task", default=None, help="Score this task through every engine (needs --checkpoint with its head).")
@click.option("--lang", default="en", show_default=True, help="Language of the task's eval split.")
@click.option("--split", default="test", show_default=True, help="Split of the task scored through each engine.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Local data root (default: bundled fixtures); --source hub reads the hub.")
@click.option("--source", type=click.Choice(["local", "hub"]), default="local", show_default=True)
@click.option("--engines", default="torch-eager,torch-sdpa,torch-compile,ds,ds-kernel", show_default=True,
              help="Comma-separated engines (also torch-compile-static, unpadded); ds-kernel needs CUDA (on a CPU it "
                   "is a row marked unavailable).")
@click.option("--precisions", default="fp32", show_default=True, help="Comma-separated: fp32, fp16, bf16.")
@click.option("--batch-sizes", default="1,8,32", show_default=True,
              help="Comma-separated throughput batch sizes; the largest is also the latency batch.")
@click.option("--seq-len", type=click.IntRange(min=8), default=128, show_default=True,
              help="Max tokens per row (synthetic workload length cap, or the task's featurization length).")
@click.option("--lengths", default="lognormal", show_default=True,
              help="Row lengths without --task: lognormal, uniform, fixed (every row --seq-len), or "
                   "real:TASK/LANG (the rows of that task's --split in LANG, tokenized: its real length "
                   "distribution; encoder only).")
@click.option("--rows", "synthetic_rows", type=click.IntRange(min=1), default=256, show_default=True,
              help="Rows of a synthetic workload (lognormal, uniform, fixed); one throughput pass times them all.")
@click.option("--serving-batch", type=click.IntRange(min=1), default=None, help="Latency batch (default: largest).")
@click.option("--latency-requests", type=click.IntRange(min=100), default=100, show_default=True,
              help="Requests timed one after another for the latency percentiles (p50/p90/p99).")
@click.option("--nodes", type=click.IntRange(min=1), default=None,
              help="Nodes to measure on, one Ray actor each (default: all alive); the table has a row per node.")
@click.option("--address", default=None, help="Ray cluster address (default: RAY_ADDRESS or a local Ray).")
@click.option("--no-ray", is_flag=True, help="Measure in this process (one node) instead of one Ray actor per node.")
@click.option("--output", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Directory for bench.jsonl/.csv/.md, throughput.png, latency.png and tensorboard/.")
def bench(preset, checkpoint, task, lang, split, data_dir, source, engines, precisions, batch_sizes, seq_len,
          lengths, synthetic_rows, serving_batch, latency_requests, nodes, address, no_ray, output):
    """Inference benchmark: throughput (samples/s) and latency (ms, p50/p90/p99) per node and
    engine, behind a parity gate, with task accuracy through the same engine."""
    from stilts_ds.inference.bench import (
        BenchSpec,
        check_engines,
        check_model,
        check_task,
        eval_features,
        parse_list,
        real_lengths,
        run_bench,
    )

    if (preset is None) == (checkpoint is None):
        raise StiltsError("give exactly one of --preset (random weights) or --checkpoint")
    if task and not checkpoint:
        raise StiltsError("--task scores a trained head: give --checkpoint phase2/<task>/model")
    names = parse_list(engines)
    check_engines(names)
    check_model(preset=preset, checkpoint=checkpoint, seq_len=seq_len)
    features = None
    real = real_lengths(lengths)  # (task, lang) of real:TASK/LANG, checked before anything runs
    if task and real:
        raise StiltsError(f"--lengths {lengths} with --task {task}: the task's own rows already give the lengths; "
                          "leave --lengths out")
    if task:  # refused before anything is featurized or timed
        check_task(task, checkpoint)
        features = eval_features(task, checkpoint, split=split, lang=lang, max_length=seq_len,
                                 cache_dir=output / "cache", source=source, data_dir=data_dir)
    elif real:
        features = eval_features(real[0], checkpoint or "bundled", split=split, lang=real[1], max_length=seq_len,
                                 cache_dir=output / "cache", source=source, data_dir=data_dir)
        lang = real[1]
    spec = BenchSpec(engines=names, precisions=parse_list(precisions), batch_sizes=parse_list(batch_sizes, int),
                     seq_len=seq_len, serving_batch_size=serving_batch, latency_requests=latency_requests,
                     preset=preset, checkpoint=str(checkpoint.resolve()) if checkpoint else None, task=task,
                     features=features, lang=lang, length_distribution=lengths, synthetic_rows=synthetic_rows)
    # In this process the rows are appended to rows.jsonl as they are measured, so a run cut off
    # by a time limit keeps them (the full reports are written at the end).
    rows, paths = run_bench(spec, output, use_ray=not no_ray, address=address, num_nodes=nodes,
                            rows_log=output / "rows.jsonl" if no_ray else None)
    click.echo(paths["md"].read_text(encoding="utf-8"))
    click.echo("\n".join(f"{k}: {v}" for k, v in paths.items()))


# ----------------------------------------------------------------------------- report
@main.command()
@click.option("--study", "study_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="A study's run dir: its arms (arms.json, or results.json), bench*/bench.jsonl, utilization.json "
                   "and timeline.png.")
@click.option("--results", "results", multiple=True, metavar="ARM=PATH",
              help="An arm's results.json (repeatable), e.g. english=runs/quickstart/arms/english/results.json.")
@click.option("--bench", "bench_files", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="bench.jsonl files of `stilts-ds bench` (repeatable).")
@click.option("--output", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Directory for report.md, index.html, tradeoff.md/.csv, serving.csv and the PNGs.")
def report(study_dir, results, bench_files, output):
    """The study report: the answers to RQ1 (serving cost of intermediate training) and RQ2
    (accuracy against training and serving cost, English-only vs multilingual phase 1), each
    computed from the numbers, with the tables and plots behind them (error bars, Pareto
    frontier): report.md and index.html (one self-contained page)."""
    from stilts_ds.studies.report import build_report
    from stilts_ds.studies.tradeoff import study_inputs

    if not study_dir and not results:
        raise StiltsError("give --study DIR (a study's run dir) or one or more --results ARM=PATH")
    arms, benches, info = study_inputs(study_dir) if study_dir else ({}, [], {})
    for item in results:
        if "=" not in item:
            raise StiltsError(f"--results {item!r}: expected ARM=PATH, e.g. english-mt=runs/quickstart/results.json")
        name, path = item.split("=", 1)
        arms[name] = Path(path)
    from stilts_ds.studies.significance import arm_comparisons

    comparisons, notes = arm_comparisons(arms, info)  # needs each arm's phase3/<task>/examples files
    for note in notes:
        click.echo(f"note: {note}", err=True)
    paths = build_report(arms, benches + list(bench_files), output, arm_info=info, schedule_dir=study_dir,
                         comparisons=comparisons)
    click.echo(paths["tradeoff_md"].read_text(encoding="utf-8"))
    click.echo("\n".join(f"{k}: {v}" for k, v in paths.items()))


# ----------------------------------------------------------------------------- scale
def _sweep_options(fn):
    """--sweep, --mode, and one option per sweep key the schema marks as an option, with the
    schema's own help (studies.sweep_spec.cli_options)."""
    from stilts_ds.studies.sweep_spec import MODES, cli_options

    options = cli_options()
    for opt in reversed(options):  # click lists options in decoration order, innermost first
        if opt.type is bool:
            fn = click.option(opt.flag, opt.key, is_flag=True, help=opt.help)(fn)
        else:
            fn = click.option(opt.flag, opt.key, type=opt.type, default=None, help=opt.help)(fn)
    fn = click.option("--mode", type=click.Choice(MODES), default=None,
                      help="Sweep from options instead of a YAML: inference or training.")(fn)
    overrides = ", ".join(o.flag for o in options if not o.modes)
    return click.option("--sweep", "sweep_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
                        help=f"Sweep YAML (configs/sweeps/quickstart.yaml); {overrides} override its keys. Or "
                             "give --mode and the axis options.")(fn)


@main.command()
@_sweep_options
@click.option("--output", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Study directory: scale.jsonl/.csv/.md, PNG plots, tensorboard/, and sweep.json (the sweep as "
                   "run, resolved); a rerun resumes it.")
@click.option("--force", is_flag=True, help="Rerun finished points too (old rows stay in scale.jsonl).")
def scale(sweep_path, mode, output, force, **options):
    """Scaling study: throughput and latency per node (inference), tokens/s by ZeRO stage and
    node count with weak/strong scaling efficiency (training), beside a communication model's
    predicted step time. An interrupted sweep resumes: finished points are skipped. Exits 1
    when a point failed (its row says why), after writing every table and plot."""
    from stilts_ds.studies.scale import run_sweep
    from stilts_ds.studies.sweep_spec import sweep_from_options

    result = run_sweep(sweep_from_options(sweep_path, mode, options), output, force=force)
    click.echo(result.paths["md"].read_text(encoding="utf-8"))
    click.echo("\n".join(f"{k}: {v}" for k, v in result.paths.items()))
    click.echo(f"points: {len(result.points)} ({len(result.ran)} run now, {len(result.skipped)} finished earlier, "
               f"{len(result.failed)} failed)")
    if result.failed:
        sys.exit(1)


# ----------------------------------------------------------------------------- demo
# Imported here, not in the command: QUICKSTART is the --config default. Cheap (the study's
# graph and scheduler load only when the demo runs), unlike the other commands' imports.
from stilts_ds.studies.demo import QUICKSTART, run_demo


@main.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=QUICKSTART,
              show_default=True)
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a config value. Repeatable.")
@click.option("--force", is_flag=True, help="Rerun stages whose outputs exist.")
def demo(config_path, sets, force):
    """The quick start: the task table, then the whole study graph of the config (tiny XLM-R,
    local Ray with two workers, DeepSpeed ZeRO-2 on the CPU): every fixture split the study
    reads featurized, each arm's three phases, the arms compared, a benchmark of each arm's
    checkpoints of the bench tasks through every engine, and the study report (tables and plots) in
    <output_dir>/report. Needs no GPU and no hub access."""
    run_demo(_load(config_path, sets), force=force, say=click.echo)


if __name__ == "__main__":
    main()
