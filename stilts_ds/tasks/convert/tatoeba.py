"""LASER's Tatoeba test pairs -> tatoeba rows.

    stilts-ds convert tatoeba download/LASER/data/tatoeba/v1 --data-dir data

Reads ``tatoeba.<iso3>-eng.<iso3>`` and ``tatoeba.<iso3>-eng.eng`` (facebookresearch/LASER,
data/tatoeba/v1: what xtreme's download_data.sh takes), line-aligned: line i of the two files
is one translation pair. Writes ``tatoeba/test.<lang>.jsonl``, row i = ``{"source_sentence",
"target_sentence", "source_lang", "target_lang": "en"}``, the order kept (the official scorer
compares row indices). ISO 639-3 codes map to the task's language codes as the tatoeba spec
names its hub configs (``cmn`` -> zh, ``pes`` -> fa, ...; XTREME-R's aze lit pol ukr ron
too); LASER's other languages are left out. Sentences are stripped, as XTREME strips them.
Two files of one pair with different line counts are an error naming the first unpaired line.
"""
from __future__ import annotations

from stilts_ds.errors import DataFileError, StiltsError
from stilts_ds.tasks.convert.common import Converter, Found, Output, read_lines
from stilts_ds.tasks.registry import get_task
from stilts_ds.tasks.xtreme import TATOEBA_CONFIG, TATOEBA_XTREME_R

LANG_OF = {iso3: lang for lang, iso3 in {**TATOEBA_CONFIG, **TATOEBA_XTREME_R}.items()}  # "cmn" -> "zh"


def _run(found: Found, out: Output) -> None:
    spec = get_task("tatoeba")
    pairs: dict[str, dict[str, object]] = {}
    for hit in found["pair"]:
        iso, side = hit.groups["iso"], hit.groups["side"]
        if side not in (iso, "eng"):
            continue  # not a file of this pair
        pairs.setdefault(iso, {})["eng" if side == "eng" else "src"] = hit.path
    left_out = []
    for iso, files in sorted(pairs.items()):
        if iso not in LANG_OF:
            left_out.append(iso)
            continue
        if len(files) != 2:
            have = next(iter(files.values()))
            missing = f"tatoeba.{iso}-eng.{'eng' if 'eng' not in files else iso}"
            raise StiltsError(f"{have}: its other half {missing} is not under SOURCE; a Tatoeba pair is two "
                              "line-aligned files")
        src = [line.strip() for _, line in read_lines(files["src"])]
        eng = [line.strip() for _, line in read_lines(files["eng"])]
        if len(src) != len(eng):
            longer, shorter = (files["src"], files["eng"]) if len(src) > len(eng) else (files["eng"], files["src"])
            raise DataFileError(longer, f"{max(len(src), len(eng))} lines but {shorter.name} has "
                                        f"{min(len(src), len(eng))}: line i of each file is one translation pair, "
                                        "so this line has no partner; restore the missing line or remove this one",
                                min(len(src), len(eng)) + 1)
        lang = LANG_OF[iso]
        out.write(spec, "test", lang, ({"source_sentence": s, "target_sentence": e, "source_lang": lang,
                                        "target_lang": "en"} for s, e in zip(src, eng)))
    if left_out:
        out.note(f"left out {len(left_out)} LASER languages tatoeba does not have: {' '.join(left_out[:10])}"
                 f"{' ...' if len(left_out) > 10 else ''}")


CONVERTER = Converter(
    name="tatoeba", what="LASER Tatoeba",
    get="github.com/facebookresearch/LASER: data/tatoeba/v1",
    reads=("tatoeba.<iso3>-eng.<iso3>", "tatoeba.<iso3>-eng.eng"),
    writes=("tatoeba/test.<lang>.jsonl",),
    patterns={"pair": r"tatoeba\.(?P<iso>[a-z]{3})-eng\.(?P<side>[a-z]{3})"},
    run=_run,
)
