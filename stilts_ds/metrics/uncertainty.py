"""Uncertainty of every reported score: bootstrap intervals over test examples, and paired
tests of two systems evaluated on the same examples. Pure numpy, seeded: the same inputs and
seed give the same numbers, bit for bit.

Usage::

    from stilts_ds.metrics.uncertainty import (bootstrap_interval, bootstrap_task_interval,
        bootstrap_average_interval, paired_bootstrap, paired_permutation, permutation_test)

    bootstrap_interval(stats)                          # {"accuracy": (low, high)}: one (task, language)
    bootstrap_task_interval({"en": s_en, "de": s_de})  # (low, high) of the language mean of the headline
    bootstrap_average_interval({"xnli": {...}, "panx": {...}})   # (low, high) of the XTREME average
    pooled_replicates([seed1_stats, seed2_stats])      # resampled scores of the seeds' mean
    paired_bootstrap([run_a_seed1, run_a_seed2], [run_b_seed1])  # runs: {task: {lang: ExampleStats}}
    # -> {"tasks": {task: {"a", "b", "difference", "low", "high", "p_value", ...}},
    #     "xtreme_average": {...}, "examples": {"compared", "dropped"}, ...}
    paired_permutation(stats_a, stats_b, "accuracy")   # exact-size sign-flip test of a mean
    permutation_test(values_a, values_b)               # the same on raw per-example values

``stats`` are ``stilts_ds.metrics.example_stats.ExampleStats``: per-example sufficient
statistics whose column sums give the metric (phase 3 writes them for every (task,
language)). Defaults: 1,000 resamples, seed 0, 95% level.

Interval (``bootstrap_*``): the percentile bootstrap. Draw the examples of each (task,
language) with replacement, as many as there are, recompute the metric from the summed
statistics, repeat; the interval is the (2.5, 97.5) percentiles of the recomputed values. A
task score (``aggregate.task_score``: the language mean of the headline metric) and the
XTREME / XTREME-R averages are recomputed from languages resampled independently of each
other (each (task, language) has its own generator, seeded from ``seed`` and its names, so
adding a task does not move the others' draws).

Seeds (``pooled_replicates``): an arm trained with several seeds reports the mean of its
seeds' scores; its interval resamples the test examples once per resample and applies that
draw to every seed (they were scored on the same test set), then averages the seeds' resampled
scores, so the interval is of the seeds' mean from test-set sampling alone (the seeds' spread
is reported beside it as their standard deviation). One seed, or two identical ones, gives
``replicates_of`` exactly.

Comparison (``paired_bootstrap``), the test the report uses: the paired bootstrap over test
examples. Both systems are scored on the same resampled examples (one draw of example ids per
(task, language), applied to both), and the statistic compared is any aggregate (a task
score, the XTREME average); the difference's interval is the percentiles of the resampled
differences and the two-sided p-value is the share of resampled differences at least as far
from the observed one as the observed one is from 0 (the bootstrap distribution shifted to
the null, Efron & Tibshirani 16.4), counted as (1 + hits) / (1 + resamples) so it is never 0.
Why this test: it works for every metric, including the corpus-level ones that are not a mean
of examples (seqeval F1 and BUCC F1 are ratios of summed chunk or pair counts), and for
aggregates over tasks; it gives an interval as well as a p-value; and it handles several
seeded runs per system by pooling: each seed's run contributes its examples, the same
resampled example ids are applied to every seed's predictions, and a system's statistic is
the mean over its seeds (so seed-to-seed variation is averaged, not tested; with one run per
system it is the plain paired bootstrap). Only examples present in every run of both systems
are compared; the rest are dropped and counted.

``permutation_test`` / ``paired_permutation``: the paired sign-flip (randomisation) test,
for a metric that is a mean of per-example values (accuracy, EM, F1 of SQuAD/MLQA, mAP@20:
``example_stats.STATS[metric].means``). Under the null the two systems' values of an example
are exchangeable, so each per-example difference's sign is flipped at random; the p-value is
the share of flips whose mean difference is at least as large in magnitude as the observed.
Exact enumeration of all 2^n flips when n <= 16 (or ``exact=True``), Monte Carlo otherwise.
It controls the type-I error exactly for means, but has no interval and no analogue for
corpus-level F1, so the report uses the paired bootstrap and this is a cross-check.

Cost: the resampled sums are a [resamples, n] count matrix (how often each example is drawn)
times the [n, k] statistics, built in blocks of at most 4M counts: about 0.2 s per (task,
language) of 10,000 examples at 1,000 resamples. Where the examples' rows take few distinct
values (accuracy, BUCC's mostly empty source sentences) the counts are drawn per group of
identical rows instead (multinomial with the groups' shares: the same bootstrap
distribution), in milliseconds whatever n is.
"""
from __future__ import annotations

import hashlib
import math
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from stilts_ds.metrics.aggregate import task_score, xtreme_score
from stilts_ds.metrics.example_stats import ExampleStats, combine, kind_of

METHOD = "percentile bootstrap over test examples"
PAIRED_METHOD = "paired bootstrap over test examples"  # ", pooled over seeds" with several runs a side
PERMUTATION_METHOD = "paired sign-flip permutation test"
RESAMPLES = 1000
SEED = 0
LEVEL = 0.95
EXACT_LIMIT = 16  # enumerate every sign flip up to 2^16 = 65,536 of them
# Counts per block of resamples: bounds memory (two arrays of this many 8-byte numbers).
BLOCK_ELEMENTS = 1 << 22
# Draw per group of identical rows when there are at most n / GROUPED_BELOW groups.
GROUPED_BELOW = 8
# Resampled values this close to the observed bound count as reaching it: aggregates summed in
# another order differ in the last bits, and a tie must not turn on that.
TIE = 1e-9

# A statistic of one system: {task: {lang: {metric: value or [resamples] array}}} -> value,
# array, or None where it is not defined (the XTREME-R average without its ten tasks).
Statistic = Callable[[Mapping[str, Mapping[str, Mapping[str, Any]]]], Any]


def xtreme_average(scores: Mapping[str, Mapping[str, Mapping[str, Any]]]):
    """The default aggregate: the mean over tasks of each task's language mean (aggregate.xtreme_score)."""
    return xtreme_score(scores)["xtreme_average"]


# ------------------------------------------------------------------ resampling


def _generator(seed: int, key: Sequence[str]) -> np.random.Generator:
    # A stream per (task, language), from the seed and the names (not from hash(), which
    # Python randomises per process).
    words = [int.from_bytes(hashlib.sha256(str(k).encode("utf-8")).digest()[:4], "little") for k in key]
    return np.random.default_rng(np.random.SeedSequence([int(seed), *words]))


def _count_blocks(n: int, resamples: int, rng: np.random.Generator):
    """(start, counts [c, n] float64): how often each example is drawn in resamples
    start..start+c-1, each resample n draws with replacement."""
    if n < 1:
        raise ValueError("cannot resample an empty set of examples")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    block = max(1, BLOCK_ELEMENTS // n)
    for start in range(0, resamples, block):
        c = min(block, resamples - start)
        draws = rng.integers(0, n, size=(c, n))
        draws += (np.arange(c, dtype=draws.dtype) * n)[:, None]
        yield start, np.bincount(draws.ravel(), minlength=c * n).reshape(c, n).astype(np.float64)


def _resampled_sums(matrices: Sequence[np.ndarray], resamples: int, rng: np.random.Generator):
    """(start, [sums [c, k_j] of each matrix]) for resamples start..start+c-1 of the n examples
    (rows) the matrices share: one draw of example ids for all of them (the pairing).

    Where few distinct joint rows exist (accuracy: at most 2 per system; BUCC: hundreds of
    thousands of source sentences, nearly all (0, 0, 0)), the draw is made per distinct row:
    how many of the n draws land on each group of identical rows is multinomial with the
    groups' shares, and the sums depend on nothing else, so this is the same bootstrap
    distribution at a cost that does not grow with n."""
    n = matrices[0].shape[0]
    joint = np.hstack(matrices)
    rows, sizes = np.unique(joint, axis=0, return_counts=True)
    if len(rows) * GROUPED_BELOW <= n:
        edges = np.cumsum([m.shape[1] for m in matrices])[:-1]
        parts = np.split(rows, edges, axis=1)
        shares = sizes / n
        block = max(1, BLOCK_ELEMENTS // len(rows))
        for start in range(0, resamples, block):
            c = min(block, resamples - start)
            counts = rng.multinomial(n, shares, size=c).astype(np.float64)
            yield start, [counts @ part for part in parts]
        return
    for start, counts in _count_blocks(n, resamples, rng):
        yield start, [counts @ m for m in matrices]


def replicates(stats: ExampleStats, *, resamples: int = RESAMPLES, seed: int = SEED,
               key: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """{metric key: [resamples] values} of ``stats.metric`` over resampled examples
    (``key``: names that pick this sample's stream, e.g. (task, lang))."""
    if len(stats) == 0:
        raise ValueError("cannot resample an empty set of examples")
    out: dict[str, np.ndarray] = {}
    for start, (sums,) in _resampled_sums([stats.values], resamples, _generator(seed, key)):
        for name, values in combine(stats.metric, sums).items():
            out.setdefault(name, np.empty(resamples))[start:start + len(sums)] = values
    return out


def replicates_of(stats: Mapping[str, Mapping[str, ExampleStats]], *, resamples: int = RESAMPLES,
                  seed: int = SEED) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """``replicates`` of every (task, language), each resampled on its own stream."""
    return {task: {lang: replicates(s, resamples=resamples, seed=seed, key=(task, lang))
                   for lang, s in per_lang.items()} for task, per_lang in stats.items()}


def _mean_replicates(groups: Sequence[Sequence[np.ndarray]], metric: str, resamples: int,
                     rng: np.random.Generator) -> list[dict[str, np.ndarray]]:
    """Per group (a system: one [n, k] matrix per run, every matrix's rows the same n
    examples in the same order), {metric key: [resamples] values}: on each resample the
    metric of every run, then their mean over the group's runs. One draw of example ids per
    resample for every run of every group (the pairing)."""
    matrices = [m for group in groups for m in group]
    out: list[dict[str, np.ndarray]] = [{} for _ in groups]
    for start, sums in _resampled_sums(matrices, resamples, rng):
        at = 0
        for into, group in zip(out, groups):
            block = _mean_over_runs([combine(metric, s) for s in sums[at:at + len(group)]])
            at += len(group)
            for name, v in block.items():
                into.setdefault(name, np.empty(resamples))[start:start + len(sums[0])] = v
    return out


def pooled_replicates(runs: Sequence[Mapping[str, Mapping[str, ExampleStats]]], *, resamples: int = RESAMPLES,
                      seed: int = SEED) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """``replicates_of`` of the mean over several runs (an arm's seeds) scored on the same
    test examples: each (task, language)'s examples are drawn once per resample, on the
    stream ``replicates_of`` uses, and that one draw is applied to every run (paired: on a
    resample every seed is scored on the same examples); each metric is the mean over the
    runs of its value on the draw. The percentiles of these are the interval of the seeds'
    mean score from resampling the test set (the seeds' own spread is not in it). One run
    gives ``replicates_of`` exactly, and so do two identical runs (more of them, to float
    rounding: their sum divided by their count).

    Every run must score the same (task, language)s on the same examples (their ids, in any
    order) with the same metric: ValueError naming the first that differs."""
    runs = list(runs)
    if not runs:
        raise ValueError("no runs to pool")
    first = runs[0]
    for i, run in enumerate(runs[1:], start=2):
        for task in sorted(set(first) | set(run)):
            if set(first.get(task, {})) != set(run.get(task, {})):
                raise ValueError(f"runs 1 and {i} score {task} in different languages "
                                 f"({sorted(first.get(task, {}))} vs {sorted(run.get(task, {}))})")
    out: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    for task, per_lang in first.items():
        out[task] = {}
        for lang, ref in per_lang.items():
            if len(ref) == 0:
                raise ValueError(f"{task} {lang}: cannot resample an empty set of examples")
            matrices = [ref.values]
            for i, run in enumerate(runs[1:], start=2):
                other = run[task][lang]
                if other.metric != ref.metric:
                    raise ValueError(f"{task} {lang}: runs 1 and {i} are scored by different metrics "
                                     f"({ref.metric}, {other.metric})")
                if other.guids != ref.guids:
                    if len(other) != len(ref) or set(other.guids) != set(ref.guids):
                        raise ValueError(f"{task} {lang}: runs 1 and {i} were scored on different test examples "
                                         f"({len(ref)} and {len(other)}, {len(set(ref.guids) ^ set(other.guids))} "
                                         "not in both): a paired resampling needs the same examples")
                    other = other.select(ref.guids)
                matrices.append(other.values)
            (out[task][lang],) = _mean_replicates([matrices], ref.metric, resamples, _generator(seed, (task, lang)))
    return out


def percentile_interval(values, level: float = LEVEL) -> tuple[float, float]:
    """(low, high): the (1-level)/2 and (1+level)/2 percentiles of the finite values (NaN
    draws, e.g. a SQuAD v2 subset a resample left empty, are left out); (nan, nan) if none."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    values = np.asarray(values, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        return math.nan, math.nan
    # Rounded: 50 * (1 - 0.95) is 2.500000000000002 in floats, and the percentile should be 2.5.
    low, high = np.percentile(values, [round(50 * (1 - level), 10), round(50 * (1 + level), 10)])
    return float(low), float(high)


# ------------------------------------------------------------------ intervals


def bootstrap_interval(stats: ExampleStats, *, resamples: int = RESAMPLES, seed: int = SEED,
                       level: float = LEVEL, key: Sequence[str] = ()) -> dict[str, tuple[float, float]]:
    """{metric key: (low, high)} for one (task, language); counts (SQuAD v2 totals) left out."""
    counts = set(kind_of(stats.metric).counts)
    reps = replicates(stats, resamples=resamples, seed=seed, key=key)
    return {name: percentile_interval(values, level) for name, values in reps.items() if name not in counts}


def bootstrap_task_interval(per_lang: Mapping[str, ExampleStats], *, task: str = "", resamples: int = RESAMPLES,
                            seed: int = SEED, level: float = LEVEL) -> tuple[float, float]:
    """(low, high) of the task score (``aggregate.task_score``'s avg_metric) with every
    language resampled independently (``task`` names the streams, as in the averages)."""
    reps = replicates_of({task: per_lang}, resamples=resamples, seed=seed)
    return percentile_interval(task_score(reps[task])["avg_metric"], level)


def bootstrap_average_interval(stats: Mapping[str, Mapping[str, ExampleStats]], statistic: Statistic = xtreme_average,
                               *, resamples: int = RESAMPLES, seed: int = SEED,
                               level: float = LEVEL) -> tuple[float, float]:
    """(low, high) of an average over tasks (default: the XTREME average of the tasks given;
    ``aggregate.xtreme_r_score`` for XTREME-R), each (task, language) resampled on its own."""
    value = statistic(replicates_of(stats, resamples=resamples, seed=seed))
    if value is None:
        raise ValueError("the statistic is not defined on these tasks")
    return percentile_interval(value, level)


# ------------------------------------------------------------------ paired comparison


def _mean_over_runs(per_run: list[Mapping[str, Any]]) -> dict[str, Any]:
    return {name: sum(run[name] for run in per_run) / len(per_run) for name in per_run[0]}


def _compare(observed_a, observed_b, resampled_a, resampled_b, level: float) -> dict[str, float]:
    difference = float(observed_a) - float(observed_b)
    draws = np.asarray(resampled_a, dtype=np.float64) - np.asarray(resampled_b, dtype=np.float64)
    draws = draws[np.isfinite(draws)]
    low, high = percentile_interval(draws, level)
    # Shifted to the null: how often a resampled difference strays from the observed one by
    # at least the observed distance from 0.
    hits = int(np.count_nonzero(np.abs(draws - difference) >= abs(difference) - TIE * max(1.0, abs(difference))))
    return {"a": float(observed_a), "b": float(observed_b), "difference": difference, "low": low, "high": high,
            "p_value": (1 + hits) / (1 + draws.size)}


def paired_bootstrap(a: Sequence[Mapping[str, Mapping[str, ExampleStats]]],
                     b: Sequence[Mapping[str, Mapping[str, ExampleStats]]],
                     statistics: Mapping[str, Statistic] | None = None, *, resamples: int = RESAMPLES,
                     seed: int = SEED, level: float = LEVEL) -> dict[str, Any]:
    """Compare system ``a`` with system ``b`` (difference a - b), each a list of runs (one per
    seed) of ``{task: {lang: ExampleStats}}``, by the paired bootstrap pooled over seeds.

    Returns ``{"method", "resamples", "seed", "level", "runs": {"a": n, "b": m},
    "examples": {"compared", "dropped"}, "tasks": {task: {"a", "b", "difference", "low",
    "high", "p_value", "examples", "dropped"}}}`` (a task's statistic is its task score), plus
    one ``{"a", "b", "difference", "low", "high", "p_value"}`` per named statistic (default:
    ``xtreme_average`` over the compared tasks) where it is defined for both systems. Compared
    are the (task, language, example) present in every run of both systems; ``dropped``
    counts the others (in any run), so nothing is left out silently."""
    a, b = list(a), list(b)
    if not a or not b:
        raise ValueError("each system needs at least one run")
    statistics = {"xtreme_average": xtreme_average} if statistics is None else statistics
    runs = a + b
    common: dict[str, dict[str, list[str]]] = {}
    dropped: dict[str, int] = {}
    for task in sorted({t for run in runs for t in run}):
        langs = sorted({lang for run in runs for lang in run.get(task, {})})
        dropped[task] = 0
        for lang in langs:
            present = [run[task][lang] for run in runs if lang in run.get(task, {})]
            everywhere = set(present[0].guids) if len(present) == len(runs) else set()
            for s in present[1:]:
                everywhere &= set(s.guids)
            metrics = {s.metric for s in present}
            if len(metrics) > 1:
                raise ValueError(f"{task} {lang}: the runs are scored by different metrics {sorted(metrics)}")
            union = set().union(*(s.guids for s in present))
            dropped[task] += len(union - everywhere)
            if everywhere:
                common.setdefault(task, {})[lang] = [g for g in present[0].guids if g in everywhere]
    if not common:
        raise ValueError("the two systems share no (task, language, example) to compare")

    observed: dict[str, dict] = {"a": {}, "b": {}}
    resampled: dict[str, dict] = {"a": {}, "b": {}}
    for task, per_lang in common.items():
        for lang, guids in per_lang.items():
            values = {arm: [run[task][lang].select(guids).values for run in runs_]
                      for arm, runs_ in (("a", a), ("b", b))}
            metric = a[0][task][lang].metric
            for arm in ("a", "b"):
                observed[arm].setdefault(task, {})[lang] = _mean_over_runs(
                    [combine(metric, v.sum(axis=0)) for v in values[arm]])
            # One draw of example ids for both systems and every seed: the pairing.
            draws = _mean_replicates([values["a"], values["b"]], metric, resamples, _generator(seed, (task, lang)))
            for arm, drawn in zip(("a", "b"), draws):
                resampled[arm].setdefault(task, {})[lang] = drawn

    method = PAIRED_METHOD + (", pooled over seeds" if max(len(a), len(b)) > 1 else "")
    out: dict[str, Any] = {"method": method, "resamples": resamples, "seed": seed, "level": level,
                           "runs": {"a": len(a), "b": len(b)},
                           "examples": {"compared": sum(len(g) for p in common.values() for g in p.values()),
                                        "dropped": sum(dropped.values())}}
    tasks = {}
    for task, per_lang in common.items():
        row = _compare(task_score(observed["a"][task])["avg_metric"], task_score(observed["b"][task])["avg_metric"],
                       task_score(resampled["a"][task])["avg_metric"], task_score(resampled["b"][task])["avg_metric"],
                       level)
        tasks[task] = {**row, "examples": sum(len(g) for g in per_lang.values()), "dropped": dropped[task]}
    for task in dropped:
        if task not in tasks:  # nothing in common: only its dropped examples to report
            tasks[task] = {"examples": 0, "dropped": dropped[task]}
    out["tasks"] = tasks
    for name, statistic in statistics.items():
        values = [statistic(observed["a"]), statistic(observed["b"])]
        if values[0] is None or values[1] is None:
            continue
        out[name] = _compare(*values, statistic(resampled["a"]), statistic(resampled["b"]), level)
    return out


# ------------------------------------------------------------------ permutation test


def permutation_test(a, b, *, resamples: int = 10_000, seed: int = SEED, exact: bool | None = None) -> dict[str, Any]:
    """Paired sign-flip test of mean(a) = mean(b) for per-example values ``a``, ``b`` (same
    examples, same order): ``{"method", "difference", "p_value", "exact", "flips"}``, two-sided.

    ``exact`` (default: n <= 16) enumerates all 2^n sign vectors and gives the exact p-value
    (the observed flip included, so p >= 2^-n); otherwise ``resamples`` random sign vectors,
    p = (1 + hits) / (1 + resamples)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"need two equally long 1-d arrays of per-example values, got {a.shape} and {b.shape}")
    n = a.size
    if n == 0:
        raise ValueError("no examples to compare")
    d = a - b
    observed = float(d.mean())
    bound = abs(observed) - TIE * max(1.0, abs(observed))
    exact = n <= EXACT_LIMIT if exact is None else exact
    if exact:
        if n > 24:
            raise ValueError(f"exact enumeration of 2^{n} sign flips is too many; use exact=False")
        bits = np.arange(n)
        hits = 0
        for start in range(0, 1 << n, 1 << 16):
            codes = np.arange(start, min(start + (1 << 16), 1 << n))
            signs = 1.0 - 2.0 * ((codes[:, None] >> bits) & 1)
            hits += int(np.count_nonzero(np.abs(signs @ d / n) >= bound))
        return {"method": PERMUTATION_METHOD, "difference": observed, "p_value": hits / (1 << n), "exact": True,
                "flips": 1 << n}
    rng = _generator(seed, ("permutation",))
    hits = 0
    block = max(1, BLOCK_ELEMENTS // n)
    for start in range(0, resamples, block):
        c = min(block, resamples - start)
        signs = 1.0 - 2.0 * rng.integers(0, 2, size=(c, n))
        hits += int(np.count_nonzero(np.abs(signs @ d / n) >= bound))
    return {"method": PERMUTATION_METHOD, "difference": observed, "p_value": (1 + hits) / (1 + resamples),
            "exact": False, "flips": resamples}


def paired_permutation(a: ExampleStats, b: ExampleStats, key: str, *, resamples: int = 10_000, seed: int = SEED,
                       exact: bool | None = None) -> dict[str, Any]:
    """``permutation_test`` of metric ``key`` (e.g. "accuracy", "f1") between two systems'
    statistics of one (task, language), over the examples both have (``examples``,
    ``dropped``); ValueError for a metric that is not a mean of examples (seqeval, BUCC)."""
    if a.metric != b.metric:
        raise ValueError(f"the systems are scored by different metrics: {a.metric} and {b.metric}")
    kind = kind_of(a.metric)
    if key not in kind.means:
        raise ValueError(f"{a.metric}: {key!r} is not a mean of per-example values (means: "
                         f"{', '.join(kind.means) or 'none'}); use paired_bootstrap")
    in_b = set(b.guids)
    guids = [g for g in a.guids if g in in_b]
    if not guids:
        raise ValueError("the two systems share no example")
    column, total = kind.columns.index(kind.means[key]), kind.columns.index("total")
    va, vb = a.select(guids).values, b.select(guids).values
    if not (np.all(va[:, total] == 1) and np.all(vb[:, total] == 1)):
        raise ValueError(f"{a.metric}: {key!r} needs one unit of total per example")
    result = permutation_test(100.0 * va[:, column], 100.0 * vb[:, column], resamples=resamples, seed=seed,
                              exact=exact)
    return {**result, "examples": len(guids), "dropped": len(set(a.guids) | in_b) - len(guids)}
