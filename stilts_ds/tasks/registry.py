"""The explicit registry: task name -> TaskSpec. No import magic; add a task by listing it.

    from stilts_ds.tasks.registry import get_task, TASKS
    spec = get_task("xnli")
    spec = get_task("mnli@de")        # derived: MNLI's train split translated into German
    spec = get_task("mnli@en+de")     # derived: one task over the English and German rows
    spec = get_task("mlm@de+zh")      # derived: continued MLM on German and Chinese text

``TASKS`` lists the registered tasks; derived names (``<task>@<langs>``, see
``stilts_ds.tasks.multilingual``) are built on demand and are not in it.
"""
from __future__ import annotations

import difflib
import functools

from stilts_ds.errors import StiltsError
from stilts_ds.tasks.intermediate import INTERMEDIATE_TASKS
from stilts_ds.tasks.multilingual import MULTILINGUAL_TASKS, mlm_task, parse_languages, translated_task
from stilts_ds.tasks.spec import TaskSpec
from stilts_ds.tasks.xtreme import XTREME_TASKS
from stilts_ds.tasks.xtreme_r import XTREME_R_TASKS

_ALL = INTERMEDIATE_TASKS + MULTILINGUAL_TASKS + XTREME_TASKS + XTREME_R_TASKS
TASKS: dict[str, TaskSpec] = {spec.name: spec for spec in _ALL}
assert len(TASKS) == len(_ALL), "duplicate task name"


class UnknownTaskError(StiltsError):
    pass


def _unknown(name: str, what: str = "task") -> UnknownTaskError:
    close = difflib.get_close_matches(name, TASKS, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return UnknownTaskError(
        f"unknown {what} {name!r}.{hint} Known tasks: {', '.join(TASKS)} (see `stilts-ds tasks`); "
        "intermediate tasks also take translated copies as <task>@<lang>[+<lang>...], e.g. mnli@de"
    )


@functools.lru_cache(maxsize=None)
def _derived(name: str) -> TaskSpec:
    # Cached: one spec object per derived name, as for registered tasks.
    base_name, _, langs = name.partition("@")
    languages = parse_languages(name, langs)
    if base_name == "mlm":
        return mlm_task(languages)
    if base_name not in TASKS:
        raise _unknown(base_name, f"base task (in {name!r})")
    return translated_task(TASKS[base_name], languages)


def get_task(name: str) -> TaskSpec:
    if name in TASKS:
        return TASKS[name]
    if isinstance(name, str) and "@" in name:
        return _derived(name)
    raise _unknown(name)


def resolve_tasks(names) -> list[TaskSpec]:
    """Expand 'all', 'intermediate', 'multilingual', 'auxiliary' and 'xtreme' and check every other name
    (derived names such as 'mnli@de' included)."""
    out: list[TaskSpec] = []
    for name in names:
        if name == "all":
            out.extend(TASKS.values())
        elif name in ("intermediate", "multilingual", "auxiliary", "xtreme"):
            out.extend(s for s in TASKS.values() if s.kind == name)
        else:
            out.append(get_task(name))
    return list({spec.name: spec for spec in out}.values())
