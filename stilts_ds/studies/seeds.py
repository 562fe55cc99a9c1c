"""An arm's results over its training seeds (config ``seeds``): the mean of every score, and
the sample standard deviation across the seeds beside it.

    from stilts_ds.studies.seeds import combine_seeds, score_with_spread

    out = combine_seeds({1: arm_dir / "seeds" / "1", 2: arm_dir / "seeds" / "2"}, arm_dir,
                        extra={"name": "quickstart-english", "split": "test"})
    out["xtreme_average"]                      # the mean of the two seeds' XTREME averages
    out["seeds"]["std"]["xtreme_average"]      # their sample standard deviation (ddof=1)
    score_with_spread(71.3, 0.42, 3)           # '71.3 ± 0.4 (3 seeds)'

The study graph's ``<arm>/results`` node (kind ``combine``) calls ``combine_seeds`` once every
seed's ``<arm>/seed<s>/results`` node has written ``<arm run dir>/seeds/<s>/results.json``. It
writes the arm's ``results.json`` through ``studies.results.write_results``, so the file reads
like any results file (``load_results``, the arms comparison, the report), with:

- ``tasks``: every (task, language, metric) the mean over the seeds;
- ``task_scores``, ``xtreme_average``, ``xtreme_r_average``: computed by ``write_results`` from
  those means. Every one of them is a mean over languages and tasks (linear), so it equals the
  mean of the seeds' own values; that is checked, and a mismatch fails the node rather than
  write a number no seed supports;
- ``seeds``: ``{"values": [s, ...], "runs": [each seed's run dir], "std": {"tasks": {task:
  {lang: {metric: std}}}, "task_scores": {task: std}, "xtreme_average": std,
  "xtreme_r_average": std}, "per_seed": {"task_scores": {task: [one per seed]},
  "xtreme_average": [...], "xtreme_r_average": [...]}}``. The std is the sample standard
  deviation (ddof=1); with a single seed it is undefined and written as null, never 0 (one run
  says nothing about the spread). An average a seed does not have (null: XTREME-R before all
  ten of its tasks are scored) is null in the mean and the std too;
- ``uncertainty``: 95% percentile-bootstrap intervals of the seeds' mean, in the shape of a
  single run's (``studies.results``: per task, language and metric, per task score, for the
  XTREME and XTREME-R averages), its ``method`` saying "pooled over N seeds". Each resample
  draws the test examples of a (task, language) once and applies that draw to every seed (the
  seeds were scored on the same test set: ``metrics.uncertainty.pooled_replicates``), then
  averages the seeds' resampled scores. So the interval is the test-set sampling error of the
  mean; the seeds' own spread is the std above, reported beside it, not folded in. It needs
  every seed's per-example statistics (``<seed run>/phase3/<task>/examples/<lang>.json``);
  without them (runs from before they were written) there is no ``uncertainty`` and the node
  says why. Two identical seeds give the interval of one run, bit for bit.

``results.md`` is ``write_markdown``'s table of the means, then one table of each task score
and benchmark average as mean ± std with every seed's value. Seeds whose results do not cover
the same tasks, languages and metrics are refused, naming the seed and what differs: a mean
over different sets of languages would be no seed's score.
"""
from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Callable, Mapping, Sequence

from stilts_ds.atomic import write_atomic
from stilts_ds.errors import StiltsError
from stilts_ds.studies import results as results_io
from stilts_ds.tables import fmt_number, markdown_table

AVERAGES = ("xtreme_average", "xtreme_r_average")
RESULTS = "results.json"


def sample_std(values: Sequence[float | None]) -> float | None:
    """The sample standard deviation (ddof=1); None with fewer than two values or any None."""
    if len(values) < 2 or any(v is None for v in values):
        return None
    return statistics.stdev(values)


def _mean(values: Sequence[float | None]) -> float | None:
    if not values or any(v is None for v in values):
        return None
    return statistics.fmean(values)


def score_with_spread(mean: float | None, std: float | None, seeds: int | None, spec: str = ".1f") -> str:
    """``"71.3 ± 0.4 (3 seeds)"``; ``"71.3 (1 seed)"`` without a spread; the plain number
    without seeds (a run without ``seeds``)."""
    text = fmt_number(mean, spec)
    if mean is None or not seeds:
        return text
    spread = f" ± {format(std, spec)}" if std is not None else ""
    return f"{text}{spread} ({seeds} seed{'s' if seeds != 1 else ''})"


def _shape(res: Mapping) -> dict[str, dict[str, set[str]]]:
    return {t: {l: set(m) for l, m in per_lang.items()} for t, per_lang in res["tasks"].items()}


def _check_same_shape(per_seed: Mapping[int, Mapping]) -> None:
    (first, ref), *rest = per_seed.items()
    want = _shape(ref)
    for seed, res in rest:
        have = _shape(res)
        for task in sorted(set(want) | set(have)):
            if task not in have or task not in want:
                where, missing = (seed, first) if task not in have else (first, seed)
                raise StiltsError(f"seed {where}'s results have no task {task!r} that seed {missing}'s have: a mean "
                                  "over different tasks is no seed's score (rerun the study: the seeds' results "
                                  "are not from the same config)")
            for lang in sorted(set(want[task]) | set(have[task])):
                if want[task].get(lang) != have[task].get(lang):
                    raise StiltsError(f"seeds {first} and {seed} score {task} {lang} differently "
                                      f"({sorted(want[task].get(lang, ()))} vs {sorted(have[task].get(lang, ()))}): "
                                      "a mean over different languages or metrics is no seed's score")


def combine(per_seed: Mapping[int, Mapping]) -> tuple[dict, dict]:
    """({task: {lang: {metric: mean}}}, the ``seeds`` record less ``runs``) of the seeds'
    results dicts (as ``load_results`` reads them), in the order given."""
    if not per_seed:
        raise StiltsError("no seed results to combine")
    _check_same_shape(per_seed)
    seeds = list(per_seed)
    results = [per_seed[s] for s in seeds]
    tasks = results[0]["tasks"]
    mean = {t: {l: {m: _mean([r["tasks"][t][l][m] for r in results]) for m in metrics}
                for l, metrics in per_lang.items()} for t, per_lang in tasks.items()}
    std_tasks = {t: {l: {m: sample_std([r["tasks"][t][l][m] for r in results]) for m in metrics}
                     for l, metrics in per_lang.items()} for t, per_lang in tasks.items()}
    scores = {t: [r["task_scores"][t] for r in results] for t in tasks}
    averages = {k: [r.get(k) for r in results] for k in AVERAGES}
    record = {"values": seeds,
              "std": {"tasks": std_tasks, "task_scores": {t: sample_std(v) for t, v in scores.items()},
                      **{k: sample_std(v) for k, v in averages.items()}},
              "per_seed": {"task_scores": scores, **averages}}
    return mean, record


def _check_means(out: Mapping, record: Mapping) -> None:
    """The scores ``write_results`` computed from the mean scores are the means of the seeds'
    scores (every aggregate is linear); anything else is refused."""
    per_seed = record["per_seed"]
    pairs = [(f"task score of {t}", out["task_scores"].get(t), _mean(v)) for t, v in per_seed["task_scores"].items()]
    pairs += [(k, out.get(k), _mean(per_seed[k])) for k in AVERAGES]
    for what, got, want in pairs:
        if (got is None) != (want is None) or (got is not None and not math.isclose(got, want, rel_tol=1e-9,
                                                                                     abs_tol=1e-9)):
            raise StiltsError(f"the {what} of the mean scores is {got}, the mean of the seeds' is {want}: the "
                              "results aggregate is not a mean any more, and a combined results.json would "
                              "state a number no seed supports (studies/seeds.py assumes linear averages)")


def seed_example_stats(run: Path, tasks: Mapping[str, Mapping]) -> tuple[dict | None, str | None]:
    """One seed's per-example statistics of every (task, language) of ``tasks`` (its
    ``phase3/<task>/examples/``, checked against the ``scores.json`` beside them):
    ``(stats, None)``, or ``(None, why not)``."""
    stats: dict = {}
    for task, per_lang in tasks.items():
        task_dir = Path(run) / "phase3" / task
        try:
            scores = json.loads((task_dir / "scores.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            return None, f"{task_dir / 'scores.json'} cannot be read ({err})"
        if task not in scores:
            return None, f"{task_dir / 'scores.json'} does not score {task}"
        found, why = results_io.example_stats_of(task_dir, {task: scores[task]})
        if found is None:
            return None, why
        missing = [lang for lang in per_lang if lang not in found.get(task, {})]
        if missing:
            return None, f"{task_dir} has no per-example statistics for {task} {', '.join(missing)}"
        stats[task] = found[task]
    return stats, None


def combine_seeds(runs: Mapping[int, Path], out_dir: Path, *, extra: Mapping | None = None,
                  say: Callable[[str], None] | None = None) -> dict:
    """Read ``<run>/results.json`` of every seed ({seed: its run dir}), write the combination
    to ``out_dir``/results.json and results.md (see the module docstring); returns the dict.
    The 95% intervals come from every seed's per-example statistics (``phase3/<task>/
    examples/``); a seed without them means no intervals, and ``say`` is told why."""
    out_dir = Path(out_dir)
    per_seed = {int(s): results_io.load_results(Path(run) / RESULTS) for s, run in runs.items()}
    mean, record = combine(per_seed)
    record = {"values": record["values"], "runs": [str(Path(runs[s])) for s in record["values"]],
              "std": record["std"], "per_seed": record["per_seed"]}
    stats: list | None = []
    for s in record["values"]:
        found, why = seed_example_stats(Path(runs[s]), mean)
        if found is None:
            if say is not None:
                say(f"no intervals over the seeds: seed {s}: {why}")
            stats = None
            break
        stats.append(found)
    path = out_dir / RESULTS
    try:
        out = results_io.write_results(path, mean, extra={**(extra or {}), "seeds": record}, seed_example_stats=stats)
    except results_io.ResultsError as err:
        if stats is None:
            raise
        # Statistics that cannot be pooled (seeds scored on different test examples): the
        # means and spreads still hold; the intervals are left out, and said so.
        if say is not None:
            say(f"no intervals over the seeds: {err}")
        out = results_io.write_results(path, mean, extra={**(extra or {}), "seeds": record})
    try:
        _check_means(out, record)
    except StiltsError:
        path.unlink(missing_ok=True)  # never leave a combination that contradicts its seeds
        raise
    text = results_io.write_markdown(out_dir / "results.md", out)
    write_atomic(out_dir / "results.md", text + "\n" + seeds_markdown(out))
    return out


def seeds_markdown(res: Mapping) -> str:
    """The seeds section of a combined results.md: each task score and benchmark average as
    mean ± std (ddof=1), with every seed's value."""
    record = res["seeds"]
    seeds, std, per_seed = record["values"], record["std"], record["per_seed"]
    n = len(seeds)
    rows = [[t, fmt_number(res["task_scores"][t]), fmt_number(std["task_scores"].get(t)),
             ", ".join(fmt_number(v) for v in per_seed["task_scores"][t])] for t in res["task_scores"]]
    for key, label in (("xtreme_average", "XTREME average"), ("xtreme_r_average", "XTREME-R average")):
        if key in res:
            rows.append([f"**{label}**", f"**{fmt_number(res.get(key))}**", fmt_number(std.get(key)),
                         ", ".join(fmt_number(v) for v in per_seed.get(key, []))])
    bars = res.get("uncertainty")
    interval = (f" The {bars['level']:.0%} intervals in the table above are of the mean from resampling the test "
                "examples (one draw for every seed), not of the seeds' spread." if bars else "")
    lines = [f"**Mean over {n} seed{'s' if n != 1 else ''}** ({', '.join(map(str, seeds))}); ± is the sample "
             "standard deviation across seeds (ddof=1)" + (", undefined for one seed" if n == 1 else "") + "."
             + interval, "",
             *markdown_table(["", "mean", "± std", f"per seed ({', '.join(map(str, seeds))})"], rows, align="lrrl")]
    return "\n".join(lines) + "\n"
