"""Bootstrap intervals and paired tests against known answers.

Checked: the interval of a Bernoulli mean agrees with the normal approximation; intervals
shrink like 1/sqrt(n); task and XTREME averages resample each language on its own; identical
systems differ by 0 with p = 1; 60 more right answers in 1,000 give p < 0.01 around +6
points; seeds pool; examples missing from a run are dropped and counted; a corpus-level
metric (seqeval F1) compares; the sign-flip test equals brute-force enumeration; the same
seed gives byte-identical results. Seeds' means: one seed, or identical seeds, give one
run's resamples bit for bit; the draw is paired (seeds that err on complementary examples have
a mean that no resample moves); independent seeds' mean is about 1/sqrt(2) as uncertain.

    .venv/bin/python -m pytest -q tests/metrics/test_uncertainty.py
"""
import itertools
import json
import math

import numpy as np
import pytest

from stilts_ds.metrics import (
    ExampleStats,
    seqeval_example_stats,
)
from stilts_ds.metrics.aggregate import xtreme_score
from stilts_ds.metrics.uncertainty import (
    bootstrap_average_interval,
    bootstrap_interval,
    bootstrap_task_interval,
    paired_bootstrap,
    paired_permutation,
    percentile_interval,
    permutation_test,
    pooled_replicates,
    replicates,
    replicates_of,
)

Z95 = 1.959963984540054


def _bernoulli(n, p, seed, prefix="g"):
    correct = (np.random.default_rng(seed).random(n) < p).astype(float)
    return _acc(correct, prefix)


def _acc(correct, prefix="g"):
    correct = np.asarray(correct, dtype=float)
    return ExampleStats("accuracy", [f"{prefix}{i}" for i in range(len(correct))],
                        np.column_stack([correct, np.ones(len(correct))]))


def _normal(stats):
    p = stats.values[:, 0].mean()
    half = Z95 * math.sqrt(p * (1 - p) / len(stats)) * 100
    return 100 * p - half, 100 * p + half


def test_bernoulli_interval_matches_the_normal_approximation():
    stats = _bernoulli(2000, 0.7, seed=1)
    low, high = bootstrap_interval(stats)["accuracy"]
    n_low, n_high = _normal(stats)
    # +-0.005 in proportion = +-0.5 points (bootstrap Monte Carlo error is ~0.1 here).
    assert abs(low - n_low) < 0.5 and abs(high - n_high) < 0.5, (low, high, n_low, n_high)
    assert low < stats.score()["accuracy"] < high


def test_intervals_shrink_like_one_over_sqrt_n():
    widths = {}
    for n in (500, 2000, 8000):
        low, high = bootstrap_interval(_bernoulli(n, 0.6, seed=n), resamples=2000)["accuracy"]
        widths[n] = high - low
    assert widths[500] / widths[2000] == pytest.approx(2.0, rel=0.15)
    assert widths[2000] / widths[8000] == pytest.approx(2.0, rel=0.15)


def test_level_and_percentiles():
    assert percentile_interval(np.arange(101.0), 0.9) == (5.0, 95.0)
    assert percentile_interval([np.nan, 1.0, np.nan]) == (1.0, 1.0)
    assert all(math.isnan(x) for x in percentile_interval([np.nan]))
    narrow = bootstrap_interval(_bernoulli(1000, 0.5, 3), level=0.5)["accuracy"]
    wide = bootstrap_interval(_bernoulli(1000, 0.5, 3), level=0.99)["accuracy"]
    assert wide[0] < narrow[0] < narrow[1] < wide[1]


def test_resampling_keeps_the_metric_of_a_constant_sample():
    stats = _acc(np.ones(50))
    assert bootstrap_interval(stats)["accuracy"] == (100.0, 100.0)
    reps = replicates(stats, resamples=10)
    assert reps["accuracy"].tolist() == [100.0] * 10


def test_task_score_interval_resamples_languages_independently():
    en, de = _bernoulli(3000, 0.8, seed=4), _bernoulli(3000, 0.5, seed=5)
    low, high = bootstrap_task_interval({"en": en, "de": de}, task="xnli", resamples=2000)
    # Mean of two independent proportions: SE = sqrt(v1/n + v2/n) / 2.
    p1, p2 = en.values[:, 0].mean(), de.values[:, 0].mean()
    se = math.sqrt(p1 * (1 - p1) / 3000 + p2 * (1 - p2) / 3000) / 2 * 100
    centre = 50 * (p1 + p2)
    assert low == pytest.approx(centre - Z95 * se, abs=0.25)
    assert high == pytest.approx(centre + Z95 * se, abs=0.25)


def test_xtreme_average_interval_covers_qa_and_tagging():
    # A QA task (headline (EM + F1) / 2) and a tagging task (corpus F1): the interval is of
    # the very average xtreme_score computes, and lies around it.
    rng = np.random.default_rng(6)
    em = (rng.random(800) < 0.6).astype(float)
    f1 = np.clip(em + rng.random(800) * 0.3, 0, 1)
    qa = ExampleStats("squad_v1", [f"q{i}" for i in range(800)], np.column_stack([em, f1, np.ones(800)]))
    gold = [["B-PER", "I-PER", "O"] if i % 2 else ["B-LOC", "O"] for i in range(600)]
    pred = [s if rng.random() < 0.7 else ["O"] * len(s) for s in gold]
    ner = ExampleStats("seqeval_f1", [f"s{i}" for i in range(600)], seqeval_example_stats(gold, pred))
    stats = {"xquad": {"en": qa}, "panx": {"en": ner}}
    observed = xtreme_score({t: {l: s.score() for l, s in p.items()} for t, p in stats.items()})["xtreme_average"]
    low, high = bootstrap_average_interval(stats)
    assert low < observed < high and high - low < 6


def test_same_seed_gives_byte_identical_results_and_another_seed_does_not():
    stats = {"xnli": {"en": _bernoulli(500, 0.7, 7), "de": _bernoulli(400, 0.6, 8)}}

    def run(seed):
        return json.dumps({"one": bootstrap_interval(stats["xnli"]["en"], seed=seed),
                           "task": bootstrap_task_interval(stats["xnli"], task="xnli", seed=seed),
                           "avg": bootstrap_average_interval(stats, seed=seed),
                           "paired": paired_bootstrap([stats], [stats], seed=seed)})

    assert run(0) == run(0)
    assert run(0) != run(1)


def test_identical_systems_differ_by_zero_with_p_one():
    run = {"xnli": {"en": _bernoulli(1000, 0.7, 9)}}
    out = paired_bootstrap([run], [run])
    for row in (out["xtreme_average"], out["tasks"]["xnli"]):
        assert (row["difference"], row["low"], row["high"], row["p_value"]) == (0.0, 0.0, 0.0, 1.0)
    assert out["examples"] == {"compared": 1000, "dropped": 0}
    perm = paired_permutation(run["xnli"]["en"], run["xnli"]["en"], "accuracy")
    assert perm["difference"] == 0.0 and perm["p_value"] == 1.0


def test_sixty_more_right_of_a_thousand_is_significant():
    rng = np.random.default_rng(10)
    b = (rng.random(1000) < 0.6).astype(float)
    a = b.copy()
    a[rng.choice(np.flatnonzero(b == 0), 60, replace=False)] = 1.0  # a: right on 60 more
    out = paired_bootstrap([{"xnli": {"en": _acc(a)}}], [{"xnli": {"en": _acc(b)}}])
    row = out["xtreme_average"]
    assert row["difference"] == pytest.approx(6.0)
    assert row["p_value"] < 0.01
    # The difference's SE is sqrt(0.06 * 0.94 / 1000) = 0.75 points: about [4.5, 7.5].
    assert 4.0 < row["low"] < 6.0 < row["high"] < 8.0
    assert out["tasks"]["xnli"]["p_value"] == row["p_value"]
    perm = paired_permutation(_acc(a), _acc(b), "accuracy")
    assert perm["difference"] == pytest.approx(6.0) and perm["p_value"] < 0.01
    # The other way round: the same p, the interval mirrored.
    back = paired_bootstrap([{"xnli": {"en": _acc(b)}}], [{"xnli": {"en": _acc(a)}}])["xtreme_average"]
    assert back["difference"] == pytest.approx(-6.0) and back["p_value"] == row["p_value"]
    assert back["low"] == pytest.approx(-row["high"]) and back["high"] == pytest.approx(-row["low"])


def test_no_difference_is_not_significant():
    rng = np.random.default_rng(11)
    a, b = (rng.random(1000) < 0.7).astype(float), (rng.random(1000) < 0.7).astype(float)
    row = paired_bootstrap([{"xnli": {"en": _acc(a)}}], [{"xnli": {"en": _acc(b)}}])["xtreme_average"]
    assert row["low"] < 0 < row["high"] or row["p_value"] > 0.05
    # The permutation test agrees with the bootstrap on a mean, within Monte Carlo noise.
    perm = permutation_test(100 * a, 100 * b)
    assert perm["p_value"] == pytest.approx(row["p_value"], abs=0.06)


def test_seeds_pool_and_missing_examples_are_dropped():
    a1, a2 = _bernoulli(300, 0.8, 12), _bernoulli(300, 0.7, 13)
    b1 = _bernoulli(300, 0.6, 14)
    b2 = b1.select(b1.guids[10:])  # seed 2 of b lost 10 examples: they drop from every run
    out = paired_bootstrap([{"xnli": {"en": a1}}, {"xnli": {"en": a2}}], [{"xnli": {"en": b1}}, {"xnli": {"en": b2}}])
    kept = list(b2.guids)
    expected_a = (a1.select(kept).score()["accuracy"] + a2.select(kept).score()["accuracy"]) / 2
    expected_b = (b1.select(kept).score()["accuracy"] + b2.score()["accuracy"]) / 2
    row = out["tasks"]["xnli"]
    assert row["a"] == pytest.approx(expected_a) and row["b"] == pytest.approx(expected_b)
    assert (row["examples"], row["dropped"]) == (290, 10)
    assert out["examples"] == {"compared": 290, "dropped": 10}
    assert out["runs"] == {"a": 2, "b": 2}
    # A language only one system has is dropped whole and counted.
    more = paired_bootstrap([{"xnli": {"en": a1, "de": _bernoulli(50, 0.5, 15)}}], [{"xnli": {"en": b1}}])
    assert more["examples"] == {"compared": 300, "dropped": 50}
    with pytest.raises(ValueError, match="share no"):
        paired_bootstrap([{"xnli": {"en": a1}}], [{"pawsx": {"en": b1}}])


def test_corpus_f1_compares_where_the_permutation_test_cannot():
    gold = [["B-PER", "I-PER", "O", "B-LOC"]] * 400
    rng = np.random.default_rng(16)
    good = [s if rng.random() < 0.9 else ["O"] * 4 for s in gold]
    bad = [s if rng.random() < 0.6 else ["O"] * 4 for s in gold]
    ids = [f"s{i}" for i in range(400)]
    a, b = ExampleStats("seqeval_f1", ids, seqeval_example_stats(gold, good)), \
        ExampleStats("seqeval_f1", ids, seqeval_example_stats(gold, bad))
    row = paired_bootstrap([{"panx": {"en": a}}], [{"panx": {"en": b}}])["tasks"]["panx"]
    assert row["difference"] == pytest.approx(a.score()["f1"] - b.score()["f1"])
    assert row["p_value"] < 0.01 and row["low"] > 0
    with pytest.raises(ValueError, match="not a mean of per-example values"):
        paired_permutation(a, b, "f1")


def test_permutation_test_matches_exact_enumeration():
    a = np.array([1, 0, 1, 1, 0, 1, 1, 1, 0, 1], dtype=float)
    b = np.array([0, 0, 1, 0, 0, 1, 0, 1, 1, 0], dtype=float)
    d = a - b
    observed = abs(d.mean())
    flips = [abs(np.dot(signs, d) / len(d)) for signs in itertools.product((1, -1), repeat=len(d))]
    brute = sum(f >= observed - 1e-12 for f in flips) / 2 ** len(d)
    exact = permutation_test(a, b)
    assert exact["exact"] and exact["flips"] == 1024
    assert exact["p_value"] == brute
    assert exact["difference"] == pytest.approx(0.3)
    # Monte Carlo sign flips approximate it.
    approx = permutation_test(a, b, exact=False, resamples=20_000)
    assert not approx["exact"] and approx["p_value"] == pytest.approx(brute, abs=0.01)
    with pytest.raises(ValueError, match="equally long"):
        permutation_test(a, b[:3])


# ----------------------------------------------------------------------------- seeds' mean
def _qa_stats(n, p, seed):
    rng = np.random.default_rng(seed)
    em = (rng.random(n) < p).astype(float)
    f1 = np.clip(em + 0.4 * rng.random(n), 0, 1)  # continuous: the per-example path, not the grouped one
    return ExampleStats("squad_v1", [f"q{i}" for i in range(n)], np.column_stack([em, f1, np.ones(n)]))


def test_pooled_replicates_of_one_or_two_identical_runs_are_one_runs_bit_for_bit():
    run = {"xnli": {"en": _bernoulli(700, 0.7, 20), "de": _bernoulli(500, 0.6, 21)},
           "xquad": {"en": _qa_stats(300, 0.6, 22)}}
    single = replicates_of(run, resamples=300, seed=3)
    for runs in ([run], [run, run], [run, run, run]):
        pooled = pooled_replicates(runs, resamples=300, seed=3)
        for task, per_lang in single.items():
            for lang, reps in per_lang.items():
                assert set(pooled[task][lang]) == set(reps)
                for metric, values in reps.items():
                    # x + x halves exactly; three of them may round in the last bit.
                    same = np.array_equal if len(runs) < 3 else lambda a, b: np.allclose(a, b, rtol=1e-12, atol=0)
                    assert same(pooled[task][lang][metric], values), (len(runs), task, lang, metric)
    # The examples' order does not matter: they are matched by id.
    shuffled = {"xnli": {"en": run["xnli"]["en"].select(list(reversed(run["xnli"]["en"].guids)))}}
    assert np.array_equal(pooled_replicates([{"xnli": {"en": run["xnli"]["en"]}}, shuffled],
                                            resamples=100)["xnli"]["en"]["accuracy"],
                          replicates_of({"xnli": {"en": run["xnli"]["en"]}}, resamples=100)["xnli"]["en"]["accuracy"])


def test_pooled_replicates_draw_the_same_examples_for_every_seed():
    correct = (np.random.default_rng(23).random(1000) < 0.6).astype(float)
    one, other = _acc(correct), _acc(1.0 - correct)  # each example right in exactly one seed
    assert bootstrap_interval(one)["accuracy"][1] - bootstrap_interval(one)["accuracy"][0] > 4
    # Paired: on every resample the two seeds' accuracies sum to 100, so their mean is 50.
    reps = pooled_replicates([{"xnli": {"en": one}}, {"xnli": {"en": other}}])["xnli"]["en"]["accuracy"]
    assert np.allclose(reps, 50.0) and percentile_interval(reps) == pytest.approx((50.0, 50.0))


def test_the_mean_of_independent_seeds_is_about_one_over_sqrt_two_as_uncertain():
    seeds = [{"xnli": {"en": _bernoulli(4000, 0.7, s)}} for s in (24, 25)]
    widths = [np.subtract(*percentile_interval(replicates_of(r, resamples=2000)["xnli"]["en"]["accuracy"])[::-1])
              for r in seeds]
    pooled = pooled_replicates(seeds, resamples=2000)["xnli"]["en"]["accuracy"]
    low, high = percentile_interval(pooled)
    mean = (seeds[0]["xnli"]["en"].score()["accuracy"] + seeds[1]["xnli"]["en"].score()["accuracy"]) / 2
    assert low < mean < high
    assert (high - low) / np.mean(widths) == pytest.approx(1 / math.sqrt(2), rel=0.12)


def test_pooled_replicates_refuse_runs_on_other_examples():
    a = _bernoulli(100, 0.7, 26)
    with pytest.raises(ValueError, match="xnli en: runs 1 and 2 were scored on different test examples"):
        pooled_replicates([{"xnli": {"en": a}}, {"xnli": {"en": a.select(a.guids[5:])}}])
    with pytest.raises(ValueError, match="runs 1 and 2 score xnli in different languages"):
        pooled_replicates([{"xnli": {"en": a}}, {"xnli": {"en": a, "de": a}}])
