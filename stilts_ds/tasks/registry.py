"""The explicit registry: task name -> TaskSpec. No import magic; add a task by listing it.

    from stilts_ds.tasks.registry import get_task, TASKS
    spec = get_task("xnli")
"""
from __future__ import annotations

import difflib

from stilts_ds.errors import StiltsError
from stilts_ds.tasks.intermediate import INTERMEDIATE_TASKS
from stilts_ds.tasks.spec import TaskSpec
from stilts_ds.tasks.xtreme import XTREME_TASKS

TASKS: dict[str, TaskSpec] = {spec.name: spec for spec in INTERMEDIATE_TASKS + XTREME_TASKS}
assert len(TASKS) == len(INTERMEDIATE_TASKS) + len(XTREME_TASKS), "duplicate task name"


class UnknownTaskError(StiltsError):
    pass


def get_task(name: str) -> TaskSpec:
    try:
        return TASKS[name]
    except KeyError:
        close = difflib.get_close_matches(name, TASKS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UnknownTaskError(
            f"unknown task {name!r}.{hint} Known tasks: {', '.join(TASKS)} (see `stilts-ds tasks`)"
        ) from None


def resolve_tasks(names) -> list[TaskSpec]:
    """Expand 'all', 'intermediate' and 'xtreme' and check every other name."""
    out: list[TaskSpec] = []
    for name in names:
        if name == "all":
            out.extend(TASKS.values())
        elif name in ("intermediate", "xtreme"):
            out.extend(s for s in TASKS.values() if s.kind == name)
        else:
            out.append(get_task(name))
    return list({spec.name: spec for spec in out}.values())
