"""Language and task averages, and the XTREME and XTREME-R scores, by the rule of xtreme
``evaluate.py`` (``--xtreme_version xtreme`` and ``xtreme-r``).

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

XTREME-R (``xtreme_r_score``), as evaluate.py computes it for ``--xtreme_version xtreme-r``:
ten tasks (XNLI, XCOPA, UD-POS, PAN-X, XQuAD, MLQA, TyDiQA-GoldP, Tatoeba, Mewsli-X,
LAReQA; no PAWS-X, no BUCC), each averaged over its languages as above, and the overall score
the plain mean over the ten *tasks* (evaluate.py's ``all_task``), not over categories. The
official script prints ``all_task`` only when all ten tasks are scored and a group score only
when all of its tasks are; we do the same (``xtreme_r_average`` is None until then) and say
what is missing. Its groups are ``XTREME_R_GROUPS`` (XCOPA sits in two; LAReQA in none: the
official table). ``XTREME_R_LANGUAGES`` are its language lists, wider than XTREME's for
UD-POS (UD 2.7: + lt pl uk wo ro), PAN-X (+ qu pl uk az lt pa gu ro), Tatoeba (+ az lt pl uk
ro) and XQuAD (+ ro). The official list for LAReQA is empty (its scorer has no LAReQA
reader); we give XQuAD-R's eleven languages, whose per-language mAP@20 averages to the
official pooled number because every language has the same questions.
"""

from __future__ import annotations

from typing import Mapping

XTREME_R_LANGUAGES: dict[str, tuple[str, ...]] = {
    "xnli": tuple("ar bg de el en es fr hi ru sw th tr ur vi zh".split()),
    "xcopa": tuple("et ht id it qu sw ta th tr vi zh".split()),
    "udpos": tuple(
        "af ar bg de el en es et eu fa fi fr he hi hu id it ja kk ko mr nl pt ru ta te th tl tr ur "
        "vi yo zh lt pl uk wo ro".split()
    ),
    "panx": tuple(
        "ar he vi id jv ms tl eu ml ta te af nl en de el bn hi mr ur fa fr it pt es bg ru ja ka ko "
        "th sw yo my zh kk tr et fi hu qu pl uk az lt pa gu ro".split()
    ),
    "xquad": tuple("en es de el ru tr ar vi th zh hi ro".split()),
    "mlqa": tuple("en es de ar hi vi zh".split()),
    "tydiqa": tuple("en ar bn fi id ko ru sw te".split()),
    "tatoeba": tuple(
        "ar he vi id jv tl eu ml ta te af nl de el bn hi mr ur fa fr it pt es bg ru ja ka ko th sw "
        "zh kk tr et fi hu az lt pl uk ro".split()
    ),
    "mewslix": tuple("ar de en es fa ja pl ro ta tr uk".split()),
    "lareqa": tuple("ar de el en es hi ru th tr vi zh".split()),
}
XTREME_R_GROUPS: dict[str, tuple[str, ...]] = {
    "classification": ("xnli", "xcopa"),
    "tagging": ("udpos", "panx"),
    "qa": ("xquad", "mlqa", "tydiqa"),
    "retrieval": ("tatoeba", "mewslix"),
    "multi_choice": ("xcopa",),
}

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


def xtreme_r_score(
    results: Mapping[str, Mapping[str, Mapping[str, float]]],
) -> dict[str, object]:
    """XTREME-R aggregate of ``{task: {lang: scores}}`` (task names as in ``XTREME_R_LANGUAGES``).

    Returns ``{"tasks": {task: avg_metric}, "groups": {group: mean}, "xtreme_r_average":
    mean over the ten tasks or None, "missing_tasks": [...], "missing_languages": {task:
    [...]}}``. Tasks outside XTREME-R (pawsx, bucc, ...) are an error, not silently dropped.
    """
    if len(results) == 0:
        raise ValueError("no tasks to average")
    unknown = [task for task in results if task not in XTREME_R_LANGUAGES]
    if unknown:
        raise ValueError(
            f"{unknown} are not XTREME-R tasks; XTREME-R has {', '.join(XTREME_R_LANGUAGES)} "
            "(it drops pawsx and bucc): leave them out or use xtreme_score"
        )
    tasks = {task: task_score(per_lang)["avg_metric"] for task, per_lang in results.items()}
    missing_tasks = [task for task in XTREME_R_LANGUAGES if task not in tasks]
    missing_languages = {
        task: [lang for lang in XTREME_R_LANGUAGES[task] if lang not in results[task]]
        for task in results
    }
    groups = {
        group: sum(tasks[t] for t in members) / len(members)
        for group, members in XTREME_R_GROUPS.items()
        if all(t in tasks for t in members)
    }
    average = None
    if not missing_tasks:
        # Mean over tasks in XTREME-R's task order (evaluate.py's all_task).
        average = sum(tasks[t] for t in XTREME_R_LANGUAGES) / len(XTREME_R_LANGUAGES)
    return {
        "tasks": tasks,
        "groups": groups,
        "xtreme_r_average": average,
        "missing_tasks": missing_tasks,
        "missing_languages": {t: langs for t, langs in missing_languages.items() if langs},
    }
