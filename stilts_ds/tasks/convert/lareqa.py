"""XQuAD-R (LAReQA) -> lareqa rows.

    stilts-ds convert lareqa download/lareqa/xquad-r --data-dir data

Reads ``<lang>.json`` for all eleven LAReQA languages (xquad-r/ of
github.com/google-research-datasets/lareqa, what xtreme's scripts/download_lareqa_data.sh
downloads: SQuAD-format files with each paragraph's ``sentence_breaks``) and writes
``lareqa/test.<lang>.jsonl``. Every language's file holds the paragraphs of *all* languages
(``xtreme_r.lareqa_rows``: the shared answer pool, paragraphs numbered per language in file
order as utils_lareqa does), so each is self-contained for prepare and evaluation. The pool
spans every language, so all eleven files are required.
"""
from __future__ import annotations

import json

from stilts_ds.errors import StiltsError
from stilts_ds.tasks.convert.common import Converter, Found, Output, read_json
from stilts_ds.tasks.registry import get_task
from stilts_ds.tasks.xtreme_r import LAREQA_LANGS, lareqa_rows


def _run(found: Found, out: Output) -> None:
    spec = get_task("lareqa")
    paths = {hit.groups["lang"]: hit.path for hit in found["xquad_r"]}
    missing = [lang for lang in LAREQA_LANGS if lang not in paths]
    if missing:
        raise StiltsError(f"{found.source}: no {', '.join(l + '.json' for l in missing)}; the answer pool spans all "
                          f"eleven XQuAD-R languages ({' '.join(LAREQA_LANGS)}), so every file is needed")
    data = {}
    for lang in LAREQA_LANGS:
        obj, _ = read_json(paths[lang])
        if not isinstance(obj, dict) or not isinstance(obj.get("data"), list):
            raise StiltsError(f"{paths[lang]}: not an XQuAD-R file (SQuAD format with sentence_breaks)")
        data[lang] = obj
    try:
        rows = [json.dumps(row, ensure_ascii=False) for row in lareqa_rows(data)]
    except (KeyError, TypeError) as e:
        raise StiltsError(f"{found.source}: an XQuAD-R file lacks {e} (each paragraph needs context, "
                          "sentence_breaks and qas)") from None
    for lang in LAREQA_LANGS:
        with out.open(spec, "test", lang) as writer:
            for line in rows:
                writer.write_line(line)


CONVERTER = Converter(
    name="lareqa", what="XQuAD-R (LAReQA)",
    get="github.com/google-research-datasets/lareqa: xquad-r/<lang>.json",
    reads=(f"<lang>.json for all of {' '.join(LAREQA_LANGS)}",),
    writes=("lareqa/test.<lang>.jsonl",),
    patterns={"xquad_r": r"(?P<lang>" + "|".join(LAREQA_LANGS) + r")\.json"},
    run=_run,
)
