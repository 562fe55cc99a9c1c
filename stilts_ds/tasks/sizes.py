"""Published split sizes of each task, for planning a study before its data is on disk.

    approx_rows("mnli", "train", "en")     # 392702
    approx_rows("xnli", "test", "de")      # 5010
    approx_rows("mnli@de", "train", "de")  # 392702 (XNLI translate-train: MNLI in 14 languages)
    shared_pool_rows("mewslix")            # candidates embedded once for all languages

Rows are examples as the official distributions count them (a span-QA example can make a
second window at 384 tokens; a multiple-choice example is ``num_choices`` sequences:
``TaskSpec.sequences_per_row``). Per-language eval sizes differ between languages; where they
do, the figure is a typical one (noted). `stilts-ds plan` prefers the real counts: the
feature cache's, then the local files', and only then these. Sources: the datasets' papers and
Hugging Face dataset cards (split tables), as named per task.
"""
from __future__ import annotations

# task -> split -> rows (train: the training language; eval splits: per language).
SIZES: dict[str, dict[str, int]] = {
    # ANLI r1-r3 (16,946 + 45,460 + 100,459; facebook/anli card) + MNLI 392,702 + SNLI 550,152 (cards)
    "anli_plus": {"train": 1_105_719, "validation": 3_200 + 9_815 + 9_842},
    "mnli": {"train": 392_702, "validation": 9_815},  # nyu-mll/glue mnli card
    "qqp": {"train": 363_846, "validation": 40_430},  # nyu-mll/glue qqp card
    "squad_v1": {"train": 87_599, "validation": 10_570},  # rajpurkar/squad card
    "squad_v2": {"train": 130_319, "validation": 11_873},  # rajpurkar/squad_v2 card
    "hellaswag": {"train": 39_905, "validation": 10_042},  # Rowan/hellaswag card
    "cosmosqa": {"train": 25_262, "validation": 2_985},  # allenai/cosmos_qa card
    "commonsenseqa": {"train": 9_741, "validation": 1_221},  # tau/commonsense_qa card
    "ccg": {"train": 39_604, "validation": 1_913},  # CCGbank sections 02-21 / 00 (Hockenmaier & Steedman 2007)
    "siqa": {"train": 33_410, "validation": 1_954},  # allenai/social_i_qa card
    # XTREME (Hu et al. 2020, table of datasets) and google/xtreme cards
    "xnli": {"train": 392_702, "validation": 2_490, "test": 5_010},
    "pawsx": {"train": 49_401, "validation": 2_000, "test": 2_000},
    "udpos": {"train": 21_253, "validation": 3_974, "test": 1_800},  # test: typical per language
    "panx": {"train": 20_000, "validation": 10_000, "test": 7_000},  # test: 10k for most, 1k/100 for some
    "xquad": {"train": 87_599, "validation": 10_570, "test": 1_190},  # trains on SQuAD v1.1
    "mlqa": {"train": 87_599, "validation": 1_148, "test": 4_700},  # test: typical per language
    "tydiqa": {"train": 3_696, "validation": 440, "test": 700},  # GoldP; test: typical per language
    "bucc": {"validation": 1_000, "test": 9_000},  # hub copy: gold pairs per language (de 9,580; zh 1,899)
    "tatoeba": {"test": 1_000},
    # XTREME-R (Ruder et al. 2021)
    "xcopa": {"train": 400, "validation": 100, "test": 500},  # trains on English COPA
    "mewslix": {"validation": 2_500, "test": 2_500},  # queries per language; pool below
    "lareqa": {"test": 1_190},  # XQuAD-R questions per language; pool below
    # 10k Wikipedia articles per language packed into max_length blocks: an estimate
    # (a few hundred tokens per article on average), ~30k blocks of 256 tokens per language.
    "mlm": {"train": 30_000},
}

# Candidates every language of a shared-pool task scores against, embedded once.
SHARED_POOL = {"mewslix": 1_000_000, "lareqa": 13_000}


def approx_rows(task: str, split: str, lang: str) -> int | None:
    """Published rows of one (task, split, language); None where unknown."""
    base, _, langs = task.partition("@")
    sizes = SIZES.get(task) or SIZES.get(base)
    if not sizes or split not in sizes:
        return None
    if base == "mlm":  # one block count per language; a composite key spans several
        key = langs or lang
        n = len(key.split("+")) if key and key != "xtreme" else 40
        return sizes[split] * n
    if langs and split == "train":  # a translated copy: each language as big as the original
        return sizes[split] * len(langs.split("+"))
    return sizes[split]


def shared_pool_rows(task: str) -> int:
    return SHARED_POOL.get(task, 0)
