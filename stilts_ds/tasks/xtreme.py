"""The nine XTREME target tasks (Hu et al., 2020), as TaskSpecs.

Languages follow the official evaluate.py; XTREME-R's wider lists are added where a hub copy
in the same row schema exists, and marked as such (``XTREME_R_EXTRA``): PAN-X + 8 languages
from unimelb-nlp/wikiann (the Rahimi et al. 2019 splits XTREME's PAN-X is built from), XQuAD +
Romanian from google/xquad, Tatoeba + 5 languages from mteb/tatoeba-bitext-mining (LASER's
Tatoeba v1, the files XTREME reads). XTREME-R's UD-POS additions (lt pl uk wo ro, from UD 2.7)
have no hub copy in the XTREME schema: they are registered as local-only languages
(``TaskSpec.local_only_langs``), read from user files; a hub-sourced study leaves them out and
``xtreme_r_score`` reports them as missing. The XTREME aggregate keeps XTREME's own lists. Training data is English only, through the
study's mapping: xnli learns from MNLI, xquad and mlqa from SQuAD v1.1; bucc and tatoeba
have no training split (the phase-1 encoder is scored directly). Model selection uses an
English ``validation`` split only: by default (``finetune.select_on: training_task``, jiant's
recipe) that of the task whose data trains the target (``selected_on``: MNLI's for xnli, SQuAD
v1.1's for xquad and mlqa), else the target's own.
"""
from __future__ import annotations

from stilts_ds.errors import StiltsError
from stilts_ds.tasks import readers
from stilts_ds.tasks.spec import XTREME, HubPart, TaskSpec

XTREME_HUB = "google/xtreme"
EN = ("en",)

XNLI_LANGS = tuple("ar bg de el en es fr hi ru sw th tr ur vi zh".split())
PAWSX_LANGS = tuple("de en es fr ja ko zh".split())
PANX_LANGS = tuple(
    "af ar bg bn de el en es et eu fa fi fr he hi hu id it ja jv ka kk ko ml mr ms my nl pt "
    "ru sw ta te th tl tr ur vi yo zh".split()
)
# google/xtreme names udpos configs by language name ("udpos.Afrikaans"; the dataset card's
# config list spells it "Afrikans", the configs themselves do not).
UDPOS_CONFIG = {
    "af": "Afrikaans", "ar": "Arabic", "bg": "Bulgarian", "de": "German", "el": "Greek", "en": "English",
    "es": "Spanish", "et": "Estonian", "eu": "Basque", "fa": "Persian", "fi": "Finnish", "fr": "French",
    "he": "Hebrew", "hi": "Hindi", "hu": "Hungarian", "id": "Indonesian", "it": "Italian", "ja": "Japanese",
    "kk": "Kazakh", "ko": "Korean", "mr": "Marathi", "nl": "Dutch", "pt": "Portuguese", "ru": "Russian",
    "ta": "Tamil", "te": "Telugu", "th": "Thai", "tl": "Tagalog", "tr": "Turkish", "ur": "Urdu",
    "vi": "Vietnamese", "yo": "Yoruba", "zh": "Chinese",
}
UDPOS_LANGS = tuple(UDPOS_CONFIG)
UDPOS_NO_DEV = {"kk", "th", "tl", "yo"}  # UD 2.5 has no dev treebank for these
XQUAD_LANGS = tuple("ar de el en es hi ru th tr vi zh".split())
# XTREME-R's additions with a hub source (see the module docstring); udpos' have none.
WIKIANN_HUB = "unimelb-nlp/wikiann"
PANX_XTREME_R = tuple("qu pl uk az lt pa gu ro".split())
XQUAD_XTREME_R = ("ro",)
TATOEBA_XTREME_R = {"az": "aze", "lt": "lit", "pl": "pol", "uk": "ukr", "ro": "ron"}
# XTREME-R's UD 2.7 additions: registered for test, read from user files only (no hub copy).
UDPOS_XTREME_R_LOCAL = tuple("lt pl uk wo ro".split())
XTREME_R_EXTRA = {"panx": PANX_XTREME_R, "xquad": XQUAD_XTREME_R, "tatoeba": tuple(TATOEBA_XTREME_R),
                  "udpos": UDPOS_XTREME_R_LOCAL}
MLQA_LANGS = tuple("ar de en es hi vi zh".split())
# TyDiQA-GoldP ids start with the language's English name.
TYDIQA_PREFIX = {
    "ar": "arabic", "bn": "bengali", "en": "english", "fi": "finnish", "id": "indonesian",
    "ko": "korean", "ru": "russian", "sw": "swahili", "te": "telugu",
}
BUCC_LANGS = ("de", "fr", "ru", "zh")
# google/xtreme names tatoeba configs by ISO 639-3 code (pes for Persian, cmn for Chinese).
TATOEBA_CONFIG = {
    "af": "afr", "ar": "ara", "bg": "bul", "bn": "ben", "de": "deu", "el": "ell", "es": "spa", "et": "est",
    "eu": "eus", "fa": "pes", "fi": "fin", "fr": "fra", "he": "heb", "hi": "hin", "hu": "hun", "id": "ind",
    "it": "ita", "ja": "jpn", "jv": "jav", "ka": "kat", "kk": "kaz", "ko": "kor", "ml": "mal", "mr": "mar",
    "nl": "nld", "pt": "por", "ru": "rus", "sw": "swh", "ta": "tam", "te": "tel", "th": "tha", "tl": "tgl",
    "tr": "tur", "ur": "urd", "vi": "vie", "zh": "cmn",
}

MNLI_TRAIN = HubPart("nyu-mll/glue", "mnli", "train")
SQUAD_TRAIN = HubPart("rajpurkar/squad", None, "train")
SQUAD_DEV = HubPart("rajpurkar/squad", None, "validation")


def _xnli(split, lang):
    if split == "train":
        return [MNLI_TRAIN]
    return [HubPart(XTREME_HUB, "XNLI", split, where=("language", lang))]


def _per_lang(config_of):
    return lambda split, lang: [HubPart(XTREME_HUB, config_of(lang), split)]


def _udpos(split, lang):
    if lang in UDPOS_XTREME_R_LOCAL:
        raise StiltsError(
            f"udpos {lang!r} is one of XTREME-R's UD 2.7 additions, which have no hub copy in XTREME's schema: "
            "convert the unpacked ud-treebanks-v2.7 with `stilts-ds convert udpos <that dir> --data-dir DIR` (it writes "
            f"DIR/udpos/{split}.{lang}.jsonl from all the language's treebanks) and read it with --source local or "
            "data.local_tasks: {udpos: DIR}")
    return [HubPart(XTREME_HUB, f"udpos.{UDPOS_CONFIG[lang]}", split)]


def _panx(split, lang):
    if lang in PANX_XTREME_R:  # same rows (tokens, ner_tags with PAN-X's tag ids) and splits
        return [HubPart(WIKIANN_HUB, lang, split)]
    return [HubPart(XTREME_HUB, f"PAN-X.{lang}", split)]


def _xquad(split, lang):
    if split == "test" and lang in XQUAD_XTREME_R:
        return [HubPart("google/xquad", f"xquad.{lang}", "validation")]
    return {"train": [SQUAD_TRAIN], "validation": [SQUAD_DEV]}.get(split) or [
        HubPart(XTREME_HUB, f"XQuAD.{lang}", "validation")  # the hub stores XQuAD as 'validation'
    ]


def _mlqa(split, lang):
    if split == "train":
        return [SQUAD_TRAIN]
    return [HubPart(XTREME_HUB, f"MLQA.{lang}.{lang}", split)]


def _tydiqa(split, lang):
    # XTREME trains on the English part of GoldP train; its dev set is the test set, and
    # its English part doubles as the English dev set for model selection.
    hub_split = "train" if split == "train" else "validation"
    return [HubPart(XTREME_HUB, "tydiqa", hub_split, id_prefix=TYDIQA_PREFIX[lang] + "-")]


def _tatoeba(split, lang):
    if lang in TATOEBA_XTREME_R:  # sentence1 = the language, sentence2 = English, same order
        return [HubPart("mteb/tatoeba-bitext-mining", f"{TATOEBA_XTREME_R[lang]}-eng", "test")]
    return [HubPart(XTREME_HUB, f"tatoeba.{TATOEBA_CONFIG[lang]}", "validation")]


def _tatoeba_reader(record, split, lang, index):
    if "sentence1" in record:  # mteb/tatoeba-bitext-mining rows
        record = {"source_sentence": record["sentence1"], "target_sentence": record["sentence2"]}
    return readers.tatoeba(record, split, lang, index)


XTREME_TASKS = [
    TaskSpec(
        name="xnli", kind=XTREME, format="pair_classification", metric="accuracy",
        description="XNLI, 3-way NLI in 15 languages", reader=readers.nli, hub_parts=_xnli,
        splits={"train": EN, "validation": XNLI_LANGS, "test": XNLI_LANGS},
        labels=readers.NLI_LABELS, train_source="MNLI", selected_on="mnli",
    ),
    TaskSpec(
        name="pawsx", kind=XTREME, format="pair_classification", metric="accuracy",
        description="PAWS-X, paraphrase in 7 languages", reader=readers.pawsx,
        hub_parts=_per_lang(lambda l: f"PAWS-X.{l}"),
        splits={"train": EN, "validation": PAWSX_LANGS, "test": PAWSX_LANGS},
        labels=readers.PAWSX_LABELS, train_source="PAWS-X en",
    ),
    TaskSpec(
        name="udpos", kind=XTREME, format="tagging", metric="seqeval_f1",
        description="Universal Dependencies v2.5 POS tagging (+ XTREME-R's UD 2.7 lt pl uk wo ro: local files only)",
        reader=readers.udpos,
        hub_parts=_udpos,
        splits={"train": EN, "validation": tuple(l for l in UDPOS_LANGS if l not in UDPOS_NO_DEV),
                "test": UDPOS_LANGS + UDPOS_XTREME_R_LOCAL},
        local_only_langs=UDPOS_XTREME_R_LOCAL,
        labels=readers.UPOS_TAGS, train_source="UD English",
    ),
    TaskSpec(
        name="panx", kind=XTREME, format="tagging", metric="seqeval_f1",
        description="PAN-X (WikiANN) NER in 40 languages + 8 of XTREME-R", reader=readers.panx,
        hub_parts=_panx,
        splits={"train": EN, "validation": PANX_LANGS + PANX_XTREME_R, "test": PANX_LANGS + PANX_XTREME_R},
        labels=readers.PANX_TAGS, train_source="PAN-X en",
    ),
    TaskSpec(
        name="xquad", kind=XTREME, format="span_qa", metric="squad_v1",
        description="XQuAD, extractive QA in 11 languages + ro of XTREME-R", reader=readers.squad,
        hub_parts=_xquad, splits={"train": EN, "validation": EN, "test": XQUAD_LANGS + XQUAD_XTREME_R},
        train_source="SQuAD v1.1", selected_on="squad_v1",
    ),
    TaskSpec(
        name="mlqa", kind=XTREME, format="span_qa", metric="mlqa",
        description="MLQA, extractive QA in 7 languages", reader=readers.squad, hub_parts=_mlqa,
        splits={"train": EN, "validation": MLQA_LANGS, "test": MLQA_LANGS}, train_source="SQuAD v1.1",
        selected_on="squad_v1",
    ),
    TaskSpec(
        name="tydiqa", kind=XTREME, format="span_qa", metric="squad_v1",
        description="TyDiQA-GoldP, extractive QA in 9 languages", reader=readers.squad, hub_parts=_tydiqa,
        splits={"train": EN, "validation": EN, "test": tuple(TYDIQA_PREFIX)}, train_source="TyDiQA-GoldP en",
    ),
    TaskSpec(
        name="bucc", kind=XTREME, format="retrieval", metric="bucc_f1",
        description="BUCC 2018 bitext mining (threshold tuned on validation)", reader=readers.bucc,
        hub_parts=_per_lang(lambda l: f"bucc18.{l}"),
        splits={"validation": BUCC_LANGS, "test": BUCC_LANGS}, train_source=None,
        hub_caveat=("the hub's bucc18 configs hold only the gold pairs (de: 9,580 of ~413k sentences), so mining "
                    "there is far easier than XTREME's protocol and the F1 is not comparable to the paper's; "
                    "convert the official BUCC 2018 files with `stilts-ds convert bucc DIR --data-dir DATA_DIR` "
                    "and give data.local_tasks: {bucc: DATA_DIR}"),
    ),
    TaskSpec(
        name="tatoeba", kind=XTREME, format="retrieval", metric="tatoeba_accuracy",
        description="Tatoeba sentence retrieval into English, 36 languages + 5 of XTREME-R",
        reader=_tatoeba_reader, hub_parts=_tatoeba,
        splits={"test": tuple(TATOEBA_CONFIG) + tuple(TATOEBA_XTREME_R)}, train_source=None,
    ),
]
