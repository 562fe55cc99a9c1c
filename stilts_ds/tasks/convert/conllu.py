"""Universal Dependencies CoNLL-U treebanks -> udpos rows, the way XTREME builds UD-POS.

    stilts-ds convert udpos download/ud-treebanks-v2.5 --data-dir data

Reads every ``<lang>_<treebank>-ud-<split>.conllu`` under SOURCE (the unpacked
ud-treebanks-v2.5.tgz, or v2.7 for XTREME-R's lt pl uk wo ro) and writes
``udpos/{train,validation,test}.<lang>.jsonl``, one ``{"tokens": [...], "pos_tags": [...]}``
row per sentence (UPOS tag names). What XTREME's download_data.sh does (UD's
conllu_to_conll.py with --replace_subtokens_with_fused_forms, then utils_preprocess.py's
udpos step), done here in one pass:

* a multi-word token (ID range ``3-4``, e.g. French "du" = "de" + "le") becomes one token:
  its surface form, tagged with the UPOS of the span's head word: the word of the span
  closest to the root; a tie goes to the POS ranked first in the converter's precedence
  list (French, Spanish and Italian have their own lists), then to the first word. The
  conversion tool ranks by the dependency graph including the enhanced (DEPS) edges; here
  the basic tree (HEAD) ranks, which is the same wherever DEPS adds no second head;
* empty nodes (decimal IDs such as ``8.1``) and comment lines are not words and are dropped;
  a blank line ends a sentence;
* the tag is column 4 (UPOS); the word is column 2 (FORM) with spaces and zero-width
  non-joiners (U+200C) removed from it, as XTREME removes them (Vietnamese words hold spaces);
* a sentence whose forms are all, or all but one, ``_`` is left out: treebanks distributed
  without their text (ja_bccwj, ar_nyuad, en_esl) have nothing to tag;
* several treebanks of one language and split are joined, in file-name order; XTREME trains
  on English only, so other languages' train files are left out, as are languages and splits
  udpos does not have (dev of kk, th, tl, yo).

A line with other than 10 tab-separated columns, an unknown ID or an unknown UPOS tag is an
error naming file:line.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from stilts_ds.errors import DataFileError
from stilts_ds.tasks.convert.common import Converter, Found, Output, read_lines
from stilts_ds.tasks.readers import UPOS_TAGS
from stilts_ds.tasks.registry import get_task

SPLITS = {"train": "train", "dev": "validation", "test": "test"}
COLUMNS = "ID FORM LEMMA UPOS XPOS FEATS HEAD DEPREL DEPS MISC"
# The conversion tool's POS precedence for the head of a multi-word token when several of its
# words are equally close to the root (its default list and its French/Spanish/Italian ones).
PRECEDENCE = {
    "default": "VERB NOUN PROPN PRON ADJ NUM ADV INTJ AUX ADP DET PART CCONJ SCONJ X PUNCT".split(),
    "es": "VERB AUX PRON ADP DET".split(),
    "fr": "VERB AUX PRON NOUN ADJ ADV ADP DET PART SCONJ CONJ".split(),
    "it": "VERB AUX ADV PRON ADP DET INTJ".split(),
}


@dataclass
class Word:
    id: int
    form: str
    upos: str
    head: int | None
    line: int


@dataclass(frozen=True)
class Sentence:
    tokens: tuple[str, ...]
    tags: tuple[str, ...]
    lines: tuple[int, ...]  # where each token was read (a fused token: its range line)


def _depth(word: Word, by_id: dict[int, Word]) -> int:
    """Steps from the word up to the root (the HEAD chain; a cycle or a missing head ends it)."""
    steps, head, seen = 0, word.head, {word.id}
    while head not in (None, 0) and head in by_id and head not in seen:
        seen.add(head)
        steps += 1
        head = by_id[head].head
    return steps + 1


def _span_head(span: list[Word], by_id: dict[int, Word], lang: str) -> Word:
    ranking = PRECEDENCE.get(lang, PRECEDENCE["default"])
    depths = [_depth(w, by_id) for w in span]
    top = [w for w, d in zip(span, depths) if d == min(depths)]
    if len(top) == 1:
        return top[0]
    # min keeps the first of equal ranks; a POS the list lacks ranks last.
    return min(top, key=lambda w: ranking.index(w.upos) if w.upos in ranking else len(ranking))


def _finish(words: list[Word], ranges: list[tuple[int, int, str, int]], lang: str) -> Sentence | None:
    if not words:
        return None
    by_id = {w.id: w for w in words}
    fused: dict[int, tuple[str, int]] = {}  # head word id -> (surface form, range line)
    dropped: set[int] = set()
    for start, end, form, line in ranges:  # heads chosen before anything changes, as the tool does
        span = [by_id[i] for i in range(start, end + 1) if i in by_id]
        if not span:
            continue
        head = _span_head(span, by_id, lang)
        fused[head.id] = (form, line)
        dropped.update(w.id for w in span if w.id != head.id)
    kept = [w for w in words if w.id not in dropped]
    forms = [fused[w.id][0] if w.id in fused else w.form for w in kept]
    empty = sum(f == "_" for f in forms)
    if empty and empty >= len(forms) - 1:  # a treebank without its text
        return None
    return Sentence(tuple("".join(f.replace("\u200c", "").split(" ")) for f in forms),
                    tuple(w.upos for w in kept),
                    tuple(fused[w.id][1] if w.id in fused else w.line for w in kept))


def read_conllu(path: Path, lang: str) -> tuple[list[Sentence], int]:
    """(sentences, how many were left out for having no text) of one CoNLL-U file."""
    sentences: list[Sentence] = []
    skipped = 0
    words: list[Word] = []
    ranges: list[tuple[int, int, str, int]] = []

    def end():
        nonlocal skipped
        if words:
            sentence = _finish(words, ranges, lang)
            if sentence is None:
                skipped += 1
            else:
                sentences.append(sentence)
        words.clear()
        ranges.clear()

    for lineno, line in read_lines(path):
        if not line.strip():
            end()
            continue
        if line.startswith("#"):
            continue
        cols = line.split("\t")
        if len(cols) != 10:
            raise DataFileError(path, f"{len(cols)} tab-separated columns; a CoNLL-U word line has 10 ({COLUMNS}); "
                                      "comments start with '#' and a blank line ends a sentence", lineno)
        ident = cols[0]
        if "." in ident:  # an empty node of the enhanced graph: not a word of the sentence
            continue
        try:
            if "-" in ident:
                start, end_id = (int(x) for x in ident.split("-"))
                if end_id < start:
                    raise ValueError
                ranges.append((start, end_id, cols[1], lineno))
                continue
            word_id = int(ident)
            head = None if cols[6] == "_" else int(cols[6])
        except ValueError:
            raise DataFileError(path, f"ID {ident!r} / HEAD {cols[6]!r}: an ID is a number, a range such as 3-4 "
                                      "or an empty node such as 8.1; HEAD is a number", lineno) from None
        words.append(Word(word_id, cols[1], cols[3], head, lineno))
    end()
    for sentence in sentences:
        for tag, lineno in zip(sentence.tags, sentence.lines):
            if tag not in UPOS_TAGS:
                raise DataFileError(path, f"UPOS (column 4) {tag!r} is not one of the 17 UD tags "
                                          f"({' '.join(UPOS_TAGS)})", lineno)
    return sentences, skipped


def _run(found: Found, out: Output) -> None:
    spec = get_task("udpos")
    groups: dict[tuple[str, str], list[Path]] = {}
    left_out: dict[str, list[str]] = {}
    # File-name order within a language, as XTREME's preprocessing reads a language's folder.
    for hit in sorted(found["conllu"], key=lambda h: (h.groups["lang"], h.path.name)):
        lang, split = hit.groups["lang"], SPLITS[hit.groups["split"]]
        if lang not in spec.languages:
            left_out.setdefault(f"languages udpos does not have ({lang})", []).append(hit.path.name)
        elif lang not in spec.splits[split]:
            why = ("train files of other languages than English (XTREME trains on English only)"
                   if split == "train" else f"{split} files of languages udpos has no {split} split for")
            left_out.setdefault(why, []).append(hit.path.name)
        else:
            groups.setdefault((split, lang), []).append(hit.path)
    for (split, lang), paths in sorted(groups.items()):
        with out.open(spec, split, lang) as rows:
            for path in paths:
                sentences, skipped = read_conllu(path, lang)
                if skipped:
                    out.note(f"{path}: left out {skipped} sentences whose words are '_' (a treebank distributed "
                             "without its text)")
                for s in sentences:
                    rows.write({"tokens": list(s.tokens), "pos_tags": list(s.tags)})
    for why, names in left_out.items():
        out.note(f"left out {len(names)} files: {why}: {', '.join(names[:4])}{' ...' if len(names) > 4 else ''}")


CONVERTER = Converter(
    name="udpos", what="Universal Dependencies CoNLL-U",
    get="lindat.mff.cuni.cz: ud-treebanks-v2.5.tgz (XTREME), v2.7 for XTREME-R's lt pl uk wo ro",
    reads=("<lang>_<treebank>-ud-{train,dev,test}[-<part>].conllu",),
    writes=("udpos/train.en.jsonl", "udpos/validation.<lang>.jsonl", "udpos/test.<lang>.jsonl"),
    # Some treebanks split a big train set into parts (de_hdt-ud-train-a-1.conllu): read them all.
    patterns={"conllu": r"(?P<lang>[a-z]{2,3})_(?P<treebank>[a-z0-9]+)-ud-(?P<split>train|dev|test)"
                        r"(?P<part>-[a-z0-9-]+)?\.conllu"},
    run=_run,
)
