"""Multilingual alternatives to English intermediate data: continued MLM and translated tasks.

Three kinds of task name, all resolved by ``stilts_ds.tasks.registry.get_task``:

``mlm``
    Continued masked language modelling (format ``mlm``) over the text of the XTREME
    languages, trained with the pretrained model's own MLM head. Hub: the first
    ``MLM_HUB_DOCS`` articles of each language's Wikipedia (``wikimedia/wikipedia``,
    config ``20231101.<lang>``, streamed). Local: ``<data-dir>/mlm/train.<lang>.jsonl``,
    one document (article or paragraph) per line as ``{"text": "..."}`` (the Wikipedia row
    schema; ``id``/``url``/``title`` optional); the XTREME languages that have a file are
    used. ``mlm@de+fr+zh`` picks the languages (every file must then exist).

``<task>@<lang>`` (e.g. ``mnli@de``)
    An intermediate task's training split machine-translated into ``lang``, trained as an
    extra task that shares ``<task>``'s head. Local: ``<data-dir>/<task>/train.<lang>.jsonl``
    in ``<task>``'s row schema (``@en`` reads the task's own English file). Hub: where a
    translated copy exists (MNLI -> ``facebook/xnli`` config ``<lang>``, split ``train``: the
    XNLI authors' machine translation of MNLI train, labels in MNLI's order); elsewhere an
    error says which file to supply.

``<task>@<l1>+<l2>+...`` (e.g. ``mnli@en+de+zh``)
    One task whose training rows are the union of the listed languages' copies.

Model selection (phase 2 only; phase 1 has no dev evaluation) uses the base task's English
``validation`` split. In an experiment config::

    intermediate:
      tasks: [mnli, mnli@de, mnli@zh, mlm]
      weights: {mlm: 0.2}          # fixed share; the rest is split by `sampling`
"""
from __future__ import annotations

import re
from dataclasses import replace

from stilts_ds.errors import StiltsError
from stilts_ds.tasks import readers
from stilts_ds.tasks.spec import INTERMEDIATE, MULTILINGUAL, HubPart, TaskSpec
from stilts_ds.tasks.xtreme import PANX_LANGS, XNLI_LANGS

# The 40 XTREME languages (PAN-X covers all of them): mlm's default.
XTREME_LANGUAGES = tuple(PANX_LANGS)
ALL_XTREME = "xtreme"  # mlm's composite language key for that default
WIKIPEDIA = "wikimedia/wikipedia"
WIKIPEDIA_DUMP = "20231101"
# Articles streamed per language from the hub: ~40 x 10k articles is a few hundred million
# tokens, plenty for continued MLM next to the intermediate tasks.
MLM_HUB_DOCS = 10_000

# Hub copies of translated intermediate training data: task -> (path, config per language,
# split, languages). MNLI's translations are XNLI's `train` split.
TRANSLATED_HUB = {
    "mnli": ("facebook/xnli", "{lang}", "train", tuple(l for l in XNLI_LANGS if l != "en")),
}

_LANG = re.compile(r"[a-z]{2,3}(-[A-Za-z0-9]+)?")


class DerivedTaskError(StiltsError):
    pass


def parse_languages(name: str, langs: str) -> tuple[str, ...]:
    """``"en+de+zh"`` -> ("en", "de", "zh"), refusing empty, malformed or repeated codes."""
    out = tuple(langs.split("+"))
    bad = [l for l in out if not _LANG.fullmatch(l)]
    if not langs or bad:
        raise DerivedTaskError(
            f"task {name!r}: {bad or [langs]} is not a language list; write <task>@<lang> or "
            "<task>@<lang>+<lang>+... with ISO codes, e.g. mnli@de or mnli@en+de+zh")
    if len(set(out)) != len(out):
        raise DerivedTaskError(f"task {name!r} names a language twice")
    return out


def _language_key(langs: tuple[str, ...]) -> tuple[str, dict]:
    key = "+".join(langs)
    return key, ({key: langs} if len(langs) > 1 else {})


# ------------------------------------------------------------------------------ mlm


def _mlm_layout(split: str, lang: str) -> str:
    return f"mlm/{split}.{lang}.jsonl"


def _mlm_hub(split: str, lang: str) -> list[HubPart]:
    return [HubPart(WIKIPEDIA, f"{WIKIPEDIA_DUMP}.{lang}", "train", take=MLM_HUB_DOCS)]


MLM_HELP = ("write <data-dir>/mlm/train.<lang>.jsonl, one document or paragraph per line as "
            '{"text": "..."} (the wikimedia/wikipedia row schema), for each language you train on; '
            f"or use --source hub ({WIKIPEDIA}, {WIKIPEDIA_DUMP}.<lang>)")


def mlm_task(langs: tuple[str, ...] | None = None) -> TaskSpec:
    """The mlm spec over ``langs`` (None: the XTREME languages, those with a local file)."""
    if langs is None:
        key, parts, partial, name = ALL_XTREME, {ALL_XTREME: XTREME_LANGUAGES}, frozenset({ALL_XTREME}), "mlm"
        what = f"the {len(XTREME_LANGUAGES)} XTREME languages"
    else:
        (key, parts), partial, name = _language_key(langs), frozenset(), f"mlm@{'+'.join(langs)}"
        what = ", ".join(langs)
    return TaskSpec(
        name=name, kind=MULTILINGUAL, format="mlm", metric="accuracy",
        description=f"continued masked language modelling on {what} (Wikipedia or local text)",
        splits={"train": (key,)}, reader=readers.text, hub_parts=_mlm_hub,
        labels=(),  # no label set: the head predicts the vocabulary
        head="mlm", local_only_help=MLM_HELP, local_layout=_mlm_layout, lang_parts=parts, partial_parts=partial,
    )


# ------------------------------------------------------------------------------ translated copies


def translated_task(base: TaskSpec, langs: tuple[str, ...]) -> TaskSpec:
    """``<base>@<langs>``: ``base``'s training split in the listed (translated) languages,
    sharing ``base``'s head; English dev of ``base`` for model selection."""
    name = f"{base.name}@{'+'.join(langs)}"
    if base.kind != INTERMEDIATE:
        raise DerivedTaskError(f"task {name!r}: translated copies are for intermediate tasks; {base.name!r} is "
                               f"an {base.kind} task")
    if base.base is not None or base.format == "mlm":
        raise DerivedTaskError(f"task {name!r}: {base.name!r} is itself derived; name the base task instead")
    if "train" not in base.splits:
        raise DerivedTaskError(f"task {name!r}: {base.name!r} has no training split to translate")
    key, parts = _language_key(langs)
    hub = TRANSLATED_HUB.get(base.name)

    def layout(split: str, lang: str) -> str:
        if split == "train" and lang != "en":
            return f"{base.name}/train.{lang}.jsonl"
        return base.local_file(split, lang)

    def hub_parts(split: str, lang: str) -> list[HubPart]:
        if split != "train" or lang == "en":
            if base.hub_parts is None:
                raise DerivedTaskError(f"task {base.name!r} has no hub source. {base.local_only_help}")
            return base.hub_parts(split, lang)
        if hub and lang in hub[3]:
            return [HubPart(hub[0], hub[1].format(lang=lang), hub[2])]
        have = f" (the hub has {base.name} in: {', '.join(hub[3])})" if hub else ""
        raise DerivedTaskError(
            f"no machine-translated {base.name!r} in {lang!r} on the hub{have}: write it to "
            f"<data-dir>/{base.name}/train.{lang}.jsonl in {base.name}'s row schema (see "
            f"stilts_ds/resources/fixtures/{base.name}/) and use data.source: local")

    splits = {"train": (key,)}
    if "validation" in base.splits and "en" in base.splits["validation"]:
        splits["validation"] = ("en",)  # model selection: English dev of the base task
    langs_text = " + ".join(langs)
    return replace(
        base, name=name, description=f"{base.description}; train split machine-translated: {langs_text}",
        splits=splits, hub_parts=hub_parts, local_only_help=None, base=base.name, head=base.head_name,
        local_layout=layout, lang_parts=parts, partial_parts=frozenset(),
    )


MULTILINGUAL_TASKS: list = [mlm_task()]
