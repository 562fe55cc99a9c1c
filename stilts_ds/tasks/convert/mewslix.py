"""Mewsli-X -> mewslix rows.

    stilts-ds convert mewslix download/mewslix --data-dir data

Reads ``wikinews_mentions-test.jsonl`` and ``candidate_set_entities.jsonl`` (what xtreme's
scripts/download_mewslix_data.sh keeps of google-research/dense_representations_for_entity_retrieval
mel/get-mewsli-x.sh) and writes ``mewslix/test.<lang>.jsonl`` for the eleven Mewsli-X
languages: the language's mention rows, then every candidate entity (the shared pool, ~1M
rows), the lines as the official files have them. The candidate file is streamed once into
all eleven outputs, never held in memory.
"""
from __future__ import annotations

import json

from stilts_ds.errors import DataFileError, StiltsError
from stilts_ds.tasks.convert.common import Converter, Found, Output, read_jsonl
from stilts_ds.tasks.registry import get_task
from stilts_ds.tasks.xtreme_r import MEWSLIX_LANGS


def _run(found: Found, out: Output) -> None:
    spec = get_task("mewslix")
    if not found["mentions"] or not found["entities"]:
        have = found["mentions"] or found["entities"]
        raise StiltsError(f"{have[0].path}: Mewsli-X needs both wikinews_mentions-test.jsonl and "
                          "candidate_set_entities.jsonl under SOURCE")
    path = found["mentions"][0].path
    mentions: dict[str, list[dict]] = {}
    others = 0
    for lineno, row in read_jsonl(path):
        context = row.get("context")
        if not isinstance(context, dict) or "language" not in context:
            raise DataFileError(path, 'a mention row is {"context": {"language", "text", "sentence_spans", ...}, '
                                      '"mentions": [...]}', lineno)
        if context["language"] in MEWSLIX_LANGS:
            mentions.setdefault(context["language"], []).append(row)
        else:
            others += 1
    if others:
        out.note(f"{path}: left out {others} rows in languages mewslix does not have")
    writers = []
    for lang in MEWSLIX_LANGS:
        writer = out.open(spec, "test", lang)
        for row in mentions.get(lang, []):
            writer.write(row)
        writers.append(writer)
    entities = found["entities"][0].path
    for lineno, row in read_jsonl(entities):
        if "entity_id" not in row:
            raise DataFileError(entities, 'a candidate row is {"entity_id", "description", "sentence_spans", ...}',
                                lineno)
        line = json.dumps(row, ensure_ascii=False)
        for writer in writers:
            writer.write_line(line)


CONVERTER = Converter(
    name="mewslix", what="Mewsli-X",
    get="xtreme's scripts/download_mewslix_data.sh (google-research/dense_representations_for_entity_retrieval)",
    reads=("wikinews_mentions-test.jsonl", "candidate_set_entities.jsonl"),
    writes=("mewslix/test.<lang>.jsonl",),
    patterns={"mentions": r"wikinews_mentions-test\.jsonl", "entities": r"candidate_set_entities\.jsonl"},
    run=_run,
)
