"""MLQA exact match / F1 with per-language answer normalisation, equal to the official script.

Usage::

    from stilts_ds.metrics.mlqa import mlqa_em_f1

    mlqa_em_f1({"q1": ["北京"]}, {"q1": "北京大学"}, lang="zh")
    # -> {"exact_match": 0.0, "f1": 66.66...}: zh answers are compared character by character

Same loop as SQuAD v1.1 (see ``qa_common``: unanswered questions score 0 and count,
F1 is 0 without a shared token), with the normalisation of xtreme
``third_party/evaluate_mlqa.py`` (a copy of facebookresearch/MLQA ``mlqa_evaluation_v1.py``),
applied in this order:

1. lower-case;
2. drop every character whose Unicode category starts with 'P', plus ASCII
   ``string.punctuation`` (which adds symbols such as '$', '+', '^', '|');
3. remove the language's "articles" (list below), replaced by a space;
4. tokenise: whitespace for en/es/hi/vi/de/ar; for zh, "mixed segmentation": every
   character in U+4E00..U+9FA5 is its own token and runs of anything else are
   whitespace-split.

Article quirks reproduced on purpose:

- vi removes "của" (of) and "là" (is) along with the classifiers cái/chiếc/những;
- ar: the official pattern ``\\sال^|ال``: its first branch can never match (``^`` after
  three characters), so in effect *every* occurrence of "ال" is replaced by a space, also
  inside words: "بالقلم" -> "ب قلم" (two tokens), "مال" -> "م";
- hi and zh remove nothing.

The punctuation set is built from the running Python's ``unicodedata`` tables, as the
official script does; a different Unicode version could move rare characters in or out.

``mlqa_example_stats`` gives the same scores per question (``stilts_ds.metrics.example_stats``).
"""

from __future__ import annotations

import re
import string
import sys
import unicodedata
from functools import lru_cache
from typing import Mapping, Sequence

import numpy as np

from stilts_ds.metrics.qa_common import best_em_f1_rows, mean_best_em_f1

SUPPORTED_LANGUAGES = ("en", "es", "hi", "vi", "de", "ar", "zh")
_MIXED_SEGMENTATION_LANGUAGES = frozenset({"zh"})

_ARTICLES: dict[str, re.Pattern[str] | None] = {
    "en": re.compile(r"\b(a|an|the)\b"),
    "es": re.compile(r"\b(un|una|unos|unas|el|la|los|las)\b"),
    "hi": None,
    "vi": re.compile(r"\b(của|là|cái|chiếc|những)\b"),
    "de": re.compile(r"\b(ein|eine|einen|einem|eines|einer|der|die|das|den|dem|des)\b"),
    # Kept exactly as the official pattern (dead first branch included) so that any
    # corner case behaves identically; see the module docstring.
    "ar": re.compile(r"\sال^|ال"),
    "zh": None,
}

# Only the CJK Unified Ideographs block up to U+9FA5 (the GB2312-era range) counts as
# "a Chinese character"; U+9FA6..U+9FFF and the extension blocks do not.
_CJK_CHARACTER = re.compile(r"[\u4e00-\u9fa5]")


@lru_cache(maxsize=1)
def unicode_punctuation() -> frozenset[str]:
    """All code points below sys.maxunicode in a 'P*' category, plus string.punctuation.

    Built lazily (it scans 1.1M code points) and cached.
    """
    punctuation = {
        chr(code)
        for code in range(sys.maxunicode)
        if unicodedata.category(chr(code)).startswith("P")
    }
    return frozenset(punctuation.union(string.punctuation))


def check_language(lang: str) -> None:
    """Raise ValueError unless ``lang`` is one of the seven MLQA languages."""
    if lang not in _ARTICLES:
        raise ValueError(
            f"unknown MLQA language {lang!r}; supported: {' '.join(SUPPORTED_LANGUAGES)}"
        )


def mixed_segmentation(text: str) -> list[str]:
    """Split ``text`` into Chinese characters (and punctuation), whitespace-split elsewhere.

    "NBA总决赛 2019" -> ["NBA", "总", "决", "赛", "2019"].
    """
    punctuation = unicode_punctuation()
    tokens: list[str] = []
    pending = ""
    for char in text:
        if _CJK_CHARACTER.search(char) or char in punctuation:
            tokens.extend(pending.split())
            pending = ""
            tokens.append(char)
        else:
            pending += char
    tokens.extend(pending.split())
    return tokens


def mlqa_normalize_answer(text: str, lang: str) -> str:
    """Normalise an answer for ``lang``; tokens are the result's whitespace split."""
    check_language(lang)
    punctuation = unicode_punctuation()
    text = text.lower()
    text = "".join(ch for ch in text if ch not in punctuation)
    articles = _ARTICLES[lang]
    if articles is not None:
        text = articles.sub(" ", text)
    if lang in _MIXED_SEGMENTATION_LANGUAGES:
        tokens = mixed_segmentation(text)
    else:
        tokens = text.split()
    return " ".join(token for token in tokens if token.strip() != "")


def mlqa_em_f1(
    references: Mapping[str, Sequence[str]], predictions: Mapping[str, str], lang: str
) -> dict[str, float]:
    """MLQA EM and F1 (x100) for answers in language ``lang`` (one of SUPPORTED_LANGUAGES).

    ``lang`` is the language of the context/answers (MLQA's "answer language").
    """
    check_language(lang)
    return mean_best_em_f1(
        references, predictions, lambda text: mlqa_normalize_answer(text, lang)
    )


def mlqa_example_stats(
    references: Mapping[str, Sequence[str]], predictions: Mapping[str, str], lang: str
) -> np.ndarray:
    """[questions, 3] (exact_match, f1, total) in reference order; sums give mlqa_em_f1."""
    check_language(lang)
    return best_em_f1_rows(references, predictions, lambda text: mlqa_normalize_answer(text, lang))
