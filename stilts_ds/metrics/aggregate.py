"""Language and task averages, and the XTREME score, by the rule of xtreme ``evaluate.py``.

Usage::

    from stilts_ds.metrics.aggregate import task_score, xtreme_score

    task_score({"en": {"exact_match": 70.0, "f1": 80.0}, "de": {"exact_match": 50.0, "f1": 60.0}})
    # -> {"avg_exact_match": 60.0, "avg_f1": 70.0, "avg_metric": 65.0}

    xtreme_score({"xnli": {"en": {"accuracy": 80.0}, "de": {"accuracy": 70.0}},
                  "xquad": {"en": {"exact_match": 70.0, "f1": 80.0}}})
    # -> {"tasks": {"xnli": 75.0, "xquad": 75.0}, "xtreme_average": 75.0}

Rules (the official script decides QA by task name; here the metric keys decide, so no
task names are needed):

- ``avg_<m>`` is the plain mean of metric ``m`` over the languages that report it, in the
  mapping's order (the official script averages each metric over the languages it has);
- ``avg_metric`` is (avg_exact_match + avg_f1) / 2 when both exist (QA), else avg_f1
  (tagging, BUCC), else avg_accuracy (classification, Tatoeba), else avg_map@20 (XTREME-R
  retrieval); anything else is an error;
- the XTREME score is the mean of the tasks' avg_metric. (The official script sums over a
  Python *set* of task names, whose order varies with hash randomisation, so its last
  float bits can change from run to run; we sum in the mapping's order.)
"""

from __future__ import annotations

from typing import Mapping

# Single-metric fallbacks, in priority order, after the QA (exact_match + f1) rule.
_HEADLINE_METRICS = ("f1", "accuracy", "map@20")


def task_score(per_lang: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Per-metric language averages (``avg_<metric>``) and the task's ``avg_metric``."""
    if len(per_lang) == 0:
        raise ValueError("no languages to average")
    by_metric: dict[str, list[float]] = {}
    for scores in per_lang.values():
        for metric, value in scores.items():
            by_metric.setdefault(metric, []).append(value)
    # sum()/len() over languages in order: the official computation, bit for bit.
    result = {f"avg_{metric}": sum(values) / len(values) for metric, values in by_metric.items()}
    if "avg_exact_match" in result and "avg_f1" in result:
        result["avg_metric"] = (result["avg_exact_match"] + result["avg_f1"]) / 2
        return result
    for metric in _HEADLINE_METRICS:
        if f"avg_{metric}" in result:
            result["avg_metric"] = result[f"avg_{metric}"]
            return result
    raise ValueError(
        f"cannot pick a headline metric from {sorted(by_metric)}: expected exact_match+f1, "
        f"or one of {', '.join(_HEADLINE_METRICS)}"
    )


def xtreme_score(
    results: Mapping[str, Mapping[str, Mapping[str, float]]],
) -> dict[str, object]:
    """``{"tasks": {task: avg_metric}, "xtreme_average": mean over tasks}``."""
    if len(results) == 0:
        raise ValueError("no tasks to average")
    tasks = {task: task_score(per_lang)["avg_metric"] for task, per_lang in results.items()}
    return {"tasks": tasks, "xtreme_average": sum(tasks.values()) / len(tasks)}
