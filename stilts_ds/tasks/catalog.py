"""The task catalogue users see in ``stilts-ds tasks``: one row per registered task.

    rows = task_rows()          # list of dicts (the --json output)
    print(task_table(rows))     # aligned text table
"""
from __future__ import annotations

from stilts_ds.tasks.registry import TASKS


def _hub_datasets(spec) -> list[str]:
    if spec.hub_parts is None:
        return []
    seen: dict[str, None] = {}
    for split, langs in spec.splits.items():
        for lang in langs:
            if lang in spec.local_only_langs:
                continue
            for part in spec.hub_parts(split, lang):
                seen.setdefault(part.path, None)
    return list(seen)


def task_rows() -> list[dict]:
    return [
        {
            "name": spec.name,
            "kind": spec.kind,
            "format": spec.format,
            "metric": spec.metric,
            "languages": list(spec.languages),
            "splits": {split: list(langs) for split, langs in spec.splits.items()},
            "sources": list(spec.sources),
            "hub_datasets": _hub_datasets(spec),
            "train_data": spec.train_source if spec.kind == "xtreme" else "own train split",
            "train_first": list(spec.train_first),
            "labels": list(spec.labels) if spec.labels else None,
            "description": spec.description,
        }
        for spec in TASKS.values()
    ]


def task_table(rows: list[dict]) -> str:
    def langs(row):
        ls = row["languages"]
        return " ".join(ls) if len(ls) <= 6 else f"{len(ls)}: {' '.join(ls[:5])} ..."

    header = ("task", "kind", "format", "metric", "train data", "sources", "languages")
    body = [
        (r["name"], r["kind"], r["format"], r["metric"], r["train_data"] or "-", "+".join(r["sources"]), langs(r))
        for r in rows
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(line, widths)).rstrip() for line in [header, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
