"""Per-example sufficient statistics of every metric: one row per test example whose column
sums give the metric back, so a bootstrap can resample examples and rescore without the
predictions.

Usage::

    from stilts_ds.metrics.classification import accuracy_example_stats
    from stilts_ds.metrics.example_stats import STATS, ExampleStats, combine

    stats = ExampleStats("accuracy", ["g1", "g2"], accuracy_example_stats(["a", "b"], ["a", "a"]))
    stats.columns                      # ("correct", "total")
    stats.score()                      # {"accuracy": 50.0} == accuracy(["a", "b"], ["a", "a"])
    combine("accuracy", stats.values.sum(axis=0))          # the same
    combine("accuracy", sums_of_1000_resamples)            # [1000, 2] -> {"accuracy": array[1000]}
    ExampleStats.from_json(stats.to_json())                # {"metric", "stats", "guids", "values"}

``STATS`` maps each metric name of ``stilts_ds.metrics.METRICS`` (what a task spec names) to
its columns and its ``combine`` (column sums -> the metric's dict, vectorised over leading
axes). The rows come from the ``*_example_stats`` functions beside each official scorer
(``classification``, ``squad``, ``mlqa``, ``tagging``, ``retrieval``); a task's format picks
the right one (``Format.example_stats``). For every metric ``combine(stats.sum(axis=0))``
equals the official function on the same predictions to float rounding (the sums run in
another order; tests hold it to 1e-9), with the official arithmetic in the same order.

Columns, per example (guid order kept):

- accuracy, tatoeba_accuracy: ``correct`` (0/1), ``total`` (1); tag_accuracy (CCG): the
  sentence's correct words and words, so its accuracy is a ratio, not a mean of examples;
- squad_v1, mlqa: ``exact_match`` (0/1), ``f1`` (best over golds), ``total`` (1); an
  unanswered question is (0, 0, 1), as the official loop scores it;
- squad_v2: overall, has-answer and no-answer ``exact_match``/``f1``/``total``: a question
  fills the overall columns and the columns of its own subset (the other subset's are 0);
- seqeval_f1 (UD-POS, PAN-X): ``true_positives``, ``false_positives``, ``false_negatives``
  of chunks. seqeval chunks the whole corpus at once (sentences joined with an 'O'), and
  with UD's "X" tag (type '_', like the joining 'O') a chunk can run on into the next
  sentence; so the chunks are taken from the corpus exactly as seqeval takes them and each
  is counted in the sentence where it starts. Summed over all sentences the counts are
  seqeval's, hence its F1; a resample that breaks such a run up is scored with the run as
  the corpus had it (a handful of chunks at most, only for "X");
- bucc_f1: the same three counts per source sentence, over (source, target) pairs;
- lareqa_map_at_20, mewslix_map_at_20: ``average_precision`` of the query and ``total`` (1).

``means`` names the metric keys that are a plain mean of one column over examples (each row's
``total`` 1): those admit a paired permutation test (``uncertainty.permutation_test``);
seqeval and BUCC F1 and CCG accuracy are ratios of sums and do not. ``counts`` names keys that
count questions (SQuAD v2's totals): not scores, so they get no interval.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np


def _out(values: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Plain floats for one set of sums, arrays for a stack of them."""
    return {k: (float(v) if np.ndim(v) == 0 else v) for k, v in values.items()}


def _cols(sums, k: int) -> np.ndarray:
    s = np.asarray(sums, dtype=np.float64)
    if s.shape[-1:] != (k,):
        raise ValueError(f"expected sums with {k} columns on the last axis, got shape {s.shape}")
    return s


def _ratio(numerator, denominator, empty: float) -> np.ndarray:
    # numerator / denominator, ``empty`` where the denominator is 0 (no division warning).
    safe = np.where(denominator == 0, 1.0, denominator)
    return np.where(denominator == 0, empty, numerator / safe)


def accuracy_from_sums(sums) -> dict[str, Any]:
    """(correct, total) -> {"accuracy"}: correct / total * 100, the official order."""
    s = _cols(sums, 2)
    return _out({"accuracy": _ratio(s[..., 0], s[..., 1], math.nan) * 100})


def em_f1_from_sums(sums) -> dict[str, Any]:
    """(exact_match, f1, total) -> {"exact_match", "f1"}: 100.0 * sum / total (SQuAD v1.1, MLQA)."""
    s = _cols(sums, 3)
    return _out({"exact_match": _ratio(100.0 * s[..., 0], s[..., 2], math.nan),
                 "f1": _ratio(100.0 * s[..., 1], s[..., 2], math.nan)})


_V2_PARTS = ("", "has_ans_", "no_ans_")


def squad_v2_from_sums(sums) -> dict[str, Any]:
    """Overall / has-answer / no-answer (exact_match, f1, total) -> squad_v2_em_f1's dict
    (NaN scores for a subset with no question, as the official-shaped function gives)."""
    s = _cols(sums, 9)
    out = {}
    for i, part in enumerate(_V2_PARTS):
        em, f1, total = s[..., 3 * i], s[..., 3 * i + 1], s[..., 3 * i + 2]
        out[f"{part}exact_match"] = _ratio(100.0 * em, total, math.nan)
        out[f"{part}f1"] = _ratio(100.0 * f1, total, math.nan)
        out[f"{part}total"] = total
    return _out(out)


def prf_from_sums(sums) -> dict[str, Any]:
    """(true_positives, false_positives, false_negatives) -> {"f1", "precision", "recall"}.

    seqeval 1.2.2's micro average (precision_recall_fscore_support): P = tp/predicted and
    R = tp/gold, each 0 when its denominator is; F = (1 + 1) * P * R / (1 * P + R), 0 when
    P + R is 0. xtreme's bucc_f1 (0 everywhere without a correct pair, else 2PR/(P+R)) gives
    the same floats."""
    s = _cols(sums, 3)
    tp, fp, fn = s[..., 0], s[..., 1], s[..., 2]
    precision = _ratio(tp, tp + fp, 0.0)
    recall = _ratio(tp, tp + fn, 0.0)
    denom = 1.0 * precision + recall
    f1 = _ratio(2.0 * precision * recall, denom, 0.0)
    return _out({"f1": f1 * 100, "precision": precision * 100, "recall": recall * 100})


def map_at_20_from_sums(sums) -> dict[str, Any]:
    """(average_precision, total) -> {"map@20"}: sum of AP / queries * 100."""
    s = _cols(sums, 2)
    return _out({"map@20": _ratio(s[..., 0], s[..., 1], math.nan) * 100})


@dataclass(frozen=True)
class StatsKind:
    """A metric's per-example columns, how their sums make its scores, which scores are a
    mean of one column (``means``: score key -> column) and which are counts."""

    columns: tuple[str, ...]
    combine: Callable[[Any], dict[str, Any]]
    means: Mapping[str, str] = field(default_factory=dict)
    counts: tuple[str, ...] = ()


_ACCURACY = StatsKind(("correct", "total"), accuracy_from_sums, {"accuracy": "correct"})
_EM_F1 = StatsKind(("exact_match", "f1", "total"), em_f1_from_sums, {"exact_match": "exact_match", "f1": "f1"})
_PRF = StatsKind(("true_positives", "false_positives", "false_negatives"), prf_from_sums)
_MAP = StatsKind(("average_precision", "total"), map_at_20_from_sums, {"map@20": "average_precision"})

STATS: dict[str, StatsKind] = {
    "accuracy": _ACCURACY,
    "squad_v1": _EM_F1,
    "mlqa": _EM_F1,
    "squad_v2": StatsKind(tuple(f"{p}{c}" for p in _V2_PARTS for c in ("exact_match", "f1", "total")),
                          squad_v2_from_sums, {"exact_match": "exact_match", "f1": "f1"},
                          counts=("total", "has_ans_total", "no_ans_total")),
    "seqeval_f1": _PRF,
    # A sentence's words: accuracy over words is a ratio of sentence sums, not a mean of rows.
    "tag_accuracy": StatsKind(("correct", "total"), accuracy_from_sums),
    "bucc_f1": _PRF,
    "tatoeba_accuracy": _ACCURACY,
    "lareqa_map_at_20": _MAP,
    "mewslix_map_at_20": _MAP,
}


def kind_of(metric: str) -> StatsKind:
    if metric not in STATS:
        raise KeyError(f"no per-example statistics for metric {metric!r}; known: {', '.join(STATS)}")
    return STATS[metric]


def combine(metric: str, sums) -> dict[str, Any]:
    """The metric's scores from column sums ([k], or [..., k] for a stack of resamples)."""
    return kind_of(metric).combine(sums)


@dataclass(frozen=True, eq=False, init=False)
class ExampleStats:
    """One (task, language)'s per-example statistics: ``values[i]`` is example ``guids[i]``'s
    row of ``STATS[metric].columns``."""

    metric: str
    guids: tuple[str, ...]
    values: np.ndarray

    def __init__(self, metric: str, guids: Sequence, values):
        kind = kind_of(metric)
        guids = tuple(str(g) for g in guids)
        values = np.asarray(values, dtype=np.float64)
        if values.ndim == 1 and values.size == 0:
            values = values.reshape(0, len(kind.columns))
        if values.ndim != 2 or values.shape != (len(guids), len(kind.columns)):
            raise ValueError(f"{metric}: expected values of shape ({len(guids)}, {len(kind.columns)}) "
                             f"(examples x {', '.join(kind.columns)}), got {values.shape}")
        if len(set(guids)) != len(guids):
            seen: set[str] = set()
            twice = next(g for g in guids if g in seen or seen.add(g))
            raise ValueError(f"{metric}: example {twice!r} appears twice")
        if not np.isfinite(values).all():
            raise ValueError(f"{metric}: per-example statistics must be finite")
        values.setflags(write=False)
        object.__setattr__(self, "metric", metric)
        object.__setattr__(self, "guids", guids)
        object.__setattr__(self, "values", values)

    @property
    def columns(self) -> tuple[str, ...]:
        return kind_of(self.metric).columns

    def __len__(self) -> int:
        return len(self.guids)

    def sums(self) -> np.ndarray:
        return self.values.sum(axis=0)

    def score(self) -> dict[str, float]:
        """The metric over all examples: ``combine(metric, values.sum(axis=0))``."""
        return combine(self.metric, self.sums())

    def select(self, guids: Sequence[str]) -> "ExampleStats":
        """These examples' rows, in the order given (KeyError for a guid it does not hold)."""
        index = {g: i for i, g in enumerate(self.guids)}
        rows = [index[str(g)] for g in guids]
        return ExampleStats(self.metric, [self.guids[i] for i in rows], self.values[rows])

    def to_json(self) -> dict[str, Any]:
        """``{"metric", "stats" (column names), "guids", "values" (rows)}``."""
        return {"metric": self.metric, "stats": list(self.columns), "guids": list(self.guids),
                "values": self.values.tolist()}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> "ExampleStats":
        """Inverse of ``to_json``; ValueError when the columns are not the metric's."""
        for key in ("metric", "stats", "guids", "values"):
            if key not in obj:
                raise ValueError(f"per-example statistics lack {key!r}")
        kind = kind_of(obj["metric"])
        if tuple(obj["stats"]) != kind.columns:
            raise ValueError(f"{obj['metric']}: columns {list(obj['stats'])} are not {list(kind.columns)}")
        return cls(obj["metric"], obj["guids"], obj["values"])


def score_mismatch(stats: ExampleStats, scores: Mapping[str, float], tolerance: float = 1e-6) -> list[str]:
    """Keys of ``scores`` that ``stats.score()`` does not reproduce within ``tolerance``
    (both NaN counts as equal): empty when the statistics are those of the scores."""
    mine = stats.score()
    bad = []
    for key, value in scores.items():
        if key not in mine:
            bad.append(key)
            continue
        a, b = float(mine[key]), float(value)
        if not ((math.isnan(a) and math.isnan(b)) or abs(a - b) <= tolerance):
            bad.append(key)
    return bad
