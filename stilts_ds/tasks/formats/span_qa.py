"""Span question answering (SQuAD v1.1 / v2.0 shape): XQuAD, MLQA, TyDiQA-GoldP, SQuAD.

Pipeline, one call per stage::

    feats = span_qa.featurize(examples, tokenizer, max_length=384, stride=128)
    batch = span_qa.collate(feats, rows)          # tensors trimmed to the batch's longest row
    ...   start_logits, end_logits = model(**batch.tensors)   # [B, L'] each, gathered to [N, L']
    preds = span_qa.decode(feats, start_logits, end_logits)   # {guid: answer text}
    gold = span_qa.references(examples)           # {guid: [answer texts]}

``featurize`` cuts each context into overlapping windows (the question is repeated in every
window; consecutive windows share ``stride`` context tokens), so one example may own
several feature rows; ``Features.guids[i]`` names the example of row ``i``. Training and
evaluation use the same windows. The gold span of a row is the token range of the
example's *first* answer when the whole answer lies inside that window, else ``(0, 0)``:
the <s>/[CLS] position, which is also the label of a SQuAD v2 unanswerable question (the
Hugging Face ``run_qa.py`` convention).

``decode`` is the n-best search of the official SQuAD recipe (Hugging Face
``postprocess_qa_predictions``), vectorised over windows: it scores ``start + end`` logits
over the ``n_best`` best starts and ends of each window, keeps spans that lie inside the
context, end at or after their start and are at most ``max_answer_length`` tokens long, and
returns the best span of the example over all its windows, cut out of the original context
by character offsets. One difference from the reference code, on purpose: non-context
positions (question, special tokens, padding) are masked *before* the top-``n_best``
selection, so the candidate set is a superset of the reference's valid candidates and an
example can only lack a valid span when its windows have no context tokens.

METRIC_INPUT: ``decode`` returns ``{guid: str}`` and ``references`` returns
``{guid: list[str]}`` (an empty list for an unanswerable question). Those are the two
arguments of the span-QA scorers in ``stilts_ds.metrics``:
``squad_v1_em_f1(references, predictions)`` (XQuAD, TyDiQA-GoldP, SQuAD v1.1),
``mlqa_em_f1(references, predictions, lang)`` (MLQA's per-language normalisation) and
``squad_v2_em_f1(references, predictions)`` (SQuAD v2.0). Metrics are not computed here.

Featurized columns (numpy, first axis = feature row; N rows, L = ``max_length``):

* ``input_ids`` [N, L] int32, right-padded with ``tokenizer.pad_token_id``;
* ``attention_mask`` [N, L] int8, 1 for real tokens;
* ``start_positions`` / ``end_positions`` [N] int64, token index of the first answer's
  first / last token (surrounding whitespace inside the gold text ignored), else 0;
* ``lengths`` [N] int32, non-pad tokens (what ``collate`` trims to).

``extras``: ``"offsets"`` [N, L, 2] int32 character offsets into the example's context,
``(-1, -1)`` for every non-context token (question, special tokens, padding);
``"contexts"``: ``{guid: context}``; ``"example_guids"``: the example guids in input order;
``"version_2_with_negative"``: the flag given to ``featurize`` (recorded only: labels are
the same either way, and ``decode`` takes its own flag).

Speed: tokenization goes straight to the fast tokenizer's Rust backend, one
``encode_batch`` over (question, context) pairs, the same call ``tokenizer(questions,
contexts, truncation="only_second", return_overflowing_tokens=True,
return_offsets_mapping=True)`` makes, with the same windows and ids. Everything after it is
bulk numpy: unpadded windows are flattened once and scattered into padded arrays, the
context range of every window comes from the sequence ids of its example's first window,
and the gold token span is a masked search over [N, L] arrays. No Python loop runs per
token; questions over ``max_query_length`` are found from that same call and only those
examples are encoded again. ``tools/bench_span_qa_featurize.py`` holds featurize to at
most 1.25x the bare tokenizer call. Like ``tokenizer.__call__``, featurize sets the
backend's truncation/padding for the call (and restores them after), so one tokenizer
object must not featurize from two threads at once.
"""
from __future__ import annotations

import contextlib
import itertools
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from stilts_ds.metrics import (
    ExampleStats,
    mlqa_em_f1,
    mlqa_example_stats,
    squad_v1_em_f1,
    squad_v1_example_stats,
    squad_v2_em_f1,
    squad_v2_example_stats,
)
from stilts_ds.tasks.features import Batch, Features, collate_rows
from stilts_ds.tasks.formats.base import Format, SpanOptions

NAME = "span_qa"
TOKEN_KEYS = ("input_ids", "attention_mask")


@dataclass(frozen=True)
class Example:
    """One question over one context. ``answers``/``answer_starts`` are parallel (character
    offsets into ``context``); both empty for a SQuAD v2 unanswerable question."""

    guid: str
    question: str
    context: str
    answers: tuple[str, ...] = ()
    answer_starts: tuple[int, ...] = ()
    title: str = ""


# --------------------------------------------------------------------------- featurize


def _gold_char_spans(examples: Sequence[Example]) -> tuple[np.ndarray, np.ndarray]:
    """Check every answer against its context; return the first answer's [start, end) chars.

    Surrounding whitespace inside a gold answer is dropped from the span that becomes the
    token label (SQuAD has a few answers like " Denver"), so the label starts on the word
    rather than on the token before the space. Unanswerable examples get (-1, -1).
    """
    n = len(examples)
    starts = np.full(n, -1, dtype=np.int64)
    ends = np.full(n, -1, dtype=np.int64)
    seen: set[str] = set()
    for i, ex in enumerate(examples):
        if ex.guid in seen:
            raise ValueError(f"span_qa: duplicate guid {ex.guid!r}; every example needs its own guid")
        seen.add(ex.guid)
        if len(ex.answers) != len(ex.answer_starts):
            raise ValueError(
                f"span_qa: example {ex.guid!r} has {len(ex.answers)} answers but "
                f"{len(ex.answer_starts)} answer_starts"
            )
        for text, start in zip(ex.answers, ex.answer_starts):
            if not text.strip():
                raise ValueError(f"span_qa: example {ex.guid!r} has an empty answer text at {start}")
            if start < 0 or ex.context[start:start + len(text)] != text:
                found = ex.context[max(start, 0):max(start, 0) + len(text)]
                raise ValueError(
                    f"span_qa: answer of example {ex.guid!r} does not match its context: "
                    f"answer {text!r} at char {start}, context has {found!r} there"
                )
        if ex.answers:
            text, start = ex.answers[0], ex.answer_starts[0]
            stripped = text.lstrip()
            starts[i] = start + len(text) - len(stripped)
            ends[i] = start + len(text.rstrip())
    return starts, ends


@contextlib.contextmanager
def _backend(tokenizer, truncation: dict | None, padding: dict | None):
    """The tokenizer's Rust backend with the given truncation/padding, restored on exit.

    This is what ``PreTrainedTokenizerFast.__call__`` does internally before its single
    ``encode_batch``; going direct skips building Python lists the format does not need.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or not getattr(tokenizer, "is_fast", False):
        raise TypeError("span_qa.featurize needs a fast (Rust-backed) Hugging Face tokenizer for offsets")
    old_trunc, old_pad = backend.truncation, backend.padding
    old_special = backend.encode_special_tokens
    try:
        if truncation is None:
            backend.no_truncation()
        else:
            backend.enable_truncation(**truncation)
        if padding is None:
            backend.no_padding()
        else:
            backend.enable_padding(**padding)
        backend.encode_special_tokens = bool(getattr(tokenizer, "split_special_tokens", False))
        yield backend
    finally:
        if old_trunc is None:
            backend.no_truncation()
        else:
            backend.enable_truncation(**old_trunc)
        if old_pad is None:
            backend.no_padding()
        else:
            backend.enable_padding(**old_pad)
        backend.encode_special_tokens = old_special


def _cut_questions(tokenizer, questions: list[str], which: Sequence[int], max_query_length: int) -> None:
    """Cut ``questions[i]`` (``i`` in ``which``) longer than ``max_query_length`` tokens at
    the end of their last kept token, in place (the official BERT/XTREME recipe caps queries
    at 64 tokens)."""
    todo = list(which)
    with _backend(tokenizer, None, None) as backend:
        while todo:
            encs = backend.encode_batch([questions[i] for i in todo], add_special_tokens=False)
            again = []
            for i, enc in zip(todo, encs):
                if len(enc) <= max_query_length:
                    continue
                # Re-tokenizing a prefix can segment its last word differently, so loop
                # until the prefix fits; every round strictly shortens the string.
                cut = min(enc.offsets[max_query_length - 1][1], len(questions[i]) - 1)
                questions[i] = questions[i][:max(cut, 0)]
                again.append(i)
            todo = again


def _token_bound(normalizer, text: str) -> int:
    """An upper bound on the tokens of ``text`` for any subword model: every token covers at
    least one byte of the normalized text, plus a prefix-space marker."""
    if normalizer is not None:
        text = normalizer.normalize_str(text)
    return len(text.encode("utf-8")) + 2


def _layout(enc) -> tuple[int, int, int]:
    """(question tokens, first context position, first position after the context) of the
    first window of a pair encoding; the context positions are -1 for an empty context."""
    seq = enc.sequence_ids
    try:
        return seq.count(0), seq.index(1), len(seq) - seq[::-1].index(1)
    except ValueError:  # a context with no tokens at all
        return seq.count(0), -1, -1


def featurize(
    examples: Sequence[Example],
    tokenizer,
    max_length: int = 384,
    *,
    stride: int = 128,
    max_query_length: int = 64,
    version_2_with_negative: bool = False,
) -> Features:
    """Sliding-window features of span-QA examples (see the module docstring for columns).

    Questions are stripped and cut to ``max_query_length`` tokens; contexts are cut into
    windows of at most ``max_length`` tokens (question and special tokens included) that
    overlap by ``stride`` tokens. Raises ValueError naming the guid when an answer does not
    match ``context[answer_start:answer_start + len(answer)]``.
    """
    examples = list(examples)
    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        raise ValueError("span_qa.featurize: the tokenizer has no pad token")
    if max_query_length < 1:
        raise ValueError(f"span_qa.featurize: max_query_length={max_query_length} must be >= 1")
    n_special = tokenizer.num_special_tokens_to_add(pair=True)
    room = max_length - max_query_length - n_special
    if not 0 <= stride < room:
        raise ValueError(
            f"span_qa.featurize: stride={stride} must be >= 0 and smaller than the context room of a "
            f"window, max_length - max_query_length - special tokens = {max_length} - "
            f"{max_query_length} - {n_special} = {room}"
        )
    gold_start, gold_end = _gold_char_spans(examples)
    guids = [ex.guid for ex in examples]
    contexts = [ex.context for ex in examples]
    questions = [ex.question.strip() for ex in examples]

    # Questions are cut to max_query_length after the pair call, from its own sequence ids
    # (no extra tokenizer pass). Only a question so long that the Rust truncation would abort
    # (context room <= stride) is cut before it; a byte bound finds the candidates.
    panic_free = max_length - n_special - stride - 1
    normalizer = tokenizer.backend_tokenizer.normalizer
    risky = [i for i, q in enumerate(questions) if _token_bound(normalizer, q) > panic_free]
    if risky:
        _cut_questions(tokenizer, questions, risky, max_query_length)

    truncation = {"max_length": max_length, "stride": stride, "strategy": "only_second", "direction": "right"}
    with _backend(tokenizer, truncation, None) as backend:
        encodings = backend.encode_batch(list(zip(questions, contexts)))
        layouts = [_layout(enc) for enc in encodings]
        long = [i for i, lay in enumerate(layouts) if lay[0] > max_query_length]
        if long:
            _cut_questions(tokenizer, questions, long, max_query_length)  # restores our settings
            redone = backend.encode_batch([(questions[i], contexts[i]) for i in long])
            for i, enc in zip(long, redone):
                encodings[i] = enc
                layouts[i] = _layout(enc)

    # Windows in example order. Where the context starts and how many special tokens follow
    # it are the same in every window of an example (only the context is truncated, and
    # the template is fixed), so they are read off the first window.
    n_ex = len(examples)
    windows = []
    n_windows = np.empty(n_ex, dtype=np.int64)
    for i, enc in enumerate(encodings):
        windows.append(enc)
        over = enc.overflowing
        if over:
            windows.extend(over)
        n_windows[i] = 1 + len(over)
    ctx_start_ex = np.fromiter((lay[1] for lay in layouts), dtype=np.int64, count=n_ex)
    suffix_ex = np.fromiter((lay[2] for lay in layouts), dtype=np.int64, count=n_ex)
    n = len(windows)
    L = max_length
    example_of = np.repeat(np.arange(n_ex), n_windows)

    # Unpadded windows from Rust, flattened once and scattered into padded arrays (padding
    # here is cheaper than converting the pad entries of Rust-padded lists).
    id_lists = [w.ids for w in windows]
    lengths = np.fromiter(map(len, id_lists), dtype=np.int64, count=n)
    total = int(lengths.sum())
    pos = np.arange(L)
    real = pos < lengths[:, None]
    ids = np.full((n, L), pad_id, dtype=np.int32)
    ids[real] = np.fromiter(itertools.chain.from_iterable(id_lists), dtype=np.int32, count=total)
    del id_lists
    offsets = np.full((n, L, 2), -1, dtype=np.int32)
    offsets[real] = np.fromiter(
        itertools.chain.from_iterable(itertools.chain.from_iterable(w.offsets for w in windows)),
        dtype=np.int32, count=2 * total,
    ).reshape(total, 2)

    # Suffix specials after the context (1 for </s>), measured on the first window.
    first_row = np.cumsum(n_windows) - n_windows
    n_suffix_ex = np.where(ctx_start_ex >= 0, lengths[first_row] - suffix_ex, 0)
    ctx_start = ctx_start_ex[example_of]
    ctx_end = lengths - n_suffix_ex[example_of] - 1  # inclusive
    empty = ctx_start < 0
    ctx_start = np.where(empty, 1, ctx_start)
    ctx_end = np.where(empty, 0, ctx_end)

    in_ctx = (pos >= ctx_start[:, None]) & (pos <= ctx_end[:, None])
    offsets[~in_ctx] = -1

    # Gold token span of each window (vectorised form of the run_qa.py search):
    # start = last context token starting at or before the answer's first char,
    # end = first context token ending at or after its last char.
    sc = gold_start[example_of]
    ec = gold_end[example_of]
    rows = np.arange(n)
    has_ctx = ~empty
    first_tok = np.minimum(ctx_start, L - 1)
    last_tok = np.clip(ctx_end, 0, L - 1)
    inside = (
        (sc >= 0) & has_ctx
        & (offsets[rows, first_tok, 0] <= sc)
        & (offsets[rows, last_tok, 1] >= ec)
    )
    start_ok = in_ctx & (offsets[:, :, 0] <= sc[:, None])
    start_tok = L - 1 - np.argmax(start_ok[:, ::-1], axis=1)
    # The end is searched from the start token on. One character can become several tokens
    # with the same offsets (normalisation expands "½" to "1⁄2", "㎏" to "kg"): the start is
    # the last of them, and the first of them also ends at or after the answer's end, so an
    # unbounded search put a one-character answer's end before its start: no label at all.
    end_ok = in_ctx & (offsets[:, :, 1] >= ec[:, None]) & (pos >= start_tok[:, None])
    end_tok = np.argmax(end_ok, axis=1)
    inside &= start_ok.any(axis=1) & end_ok.any(axis=1) & (end_tok >= start_tok)
    start_positions = np.where(inside, start_tok, 0).astype(np.int64)
    end_positions = np.where(inside, end_tok, 0).astype(np.int64)

    attention = real.astype(np.int8)
    guid_arr = np.asarray(guids, dtype=object)[example_of] if n else np.empty(0, dtype=object)
    return Features(
        format=NAME,
        columns={
            "input_ids": ids,
            "attention_mask": attention,
            "start_positions": start_positions,
            "end_positions": end_positions,
            "lengths": lengths.astype(np.int32),
        },
        guids=guid_arr,
        extras={
            "offsets": offsets,
            "contexts": dict(zip(guids, contexts)),
            "example_guids": guids,
            "version_2_with_negative": bool(version_2_with_negative),
        },
    )


# --------------------------------------------------------------------------- collate


def collate(features: Features, rows: Sequence[int]) -> Batch:
    """Tensors for ``rows`` (input_ids, attention_mask, start/end_positions, all int64),
    token columns trimmed to the longest row of the batch."""
    return collate_rows(features, rows, TOKEN_KEYS)


# --------------------------------------------------------------------------- decode

_DECODE_CHUNK = 4096  # windows per block: bounds the [chunk, n_best, n_best] score cube


def _as_logits(x, name: str) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor
        x = x.detach().float().cpu().numpy()
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"span_qa.decode: {name} must be [rows, length], got shape {arr.shape}")
    return arr.astype(np.float32, copy=False)


def decode(
    features: Features,
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    *,
    n_best: int = 20,
    max_answer_length: int = 30,
    version_2_with_negative: bool = False,
    null_score_diff_threshold: float = 0.0,
) -> dict[str, str]:
    """``{guid: answer text}`` for every example of ``features``, in example order.

    ``start_logits``/``end_logits`` are [N, L'] with rows aligned to the feature rows and
    ``L' <= max_length`` (logits of a dynamically padded batch, padded to a common L').
    With ``version_2_with_negative`` an example predicts "" when its null score (the
    minimum over its windows of ``start[0] + end[0]``) beats its best span score by more
    than ``null_score_diff_threshold``. An example with no valid span predicts "".
    """
    start = _as_logits(start_logits, "start_logits")
    end = _as_logits(end_logits, "end_logits")
    offsets = features.extras["offsets"]
    n, width = start.shape
    if end.shape != start.shape:
        raise ValueError(f"span_qa.decode: start_logits {start.shape} and end_logits {end.shape} differ")
    if n != len(features):
        raise ValueError(f"span_qa.decode: {n} logit rows for {len(features)} feature rows")
    if width > offsets.shape[1]:
        raise ValueError(f"span_qa.decode: logits are {width} wide, features only {offsets.shape[1]}")
    if n_best < 1 or max_answer_length < 1:
        raise ValueError("span_qa.decode: n_best and max_answer_length must be >= 1")

    example_guids = list(features.extras["example_guids"])
    contexts: Mapping[str, str] = features.extras["contexts"]
    index = {g: i for i, g in enumerate(example_guids)}
    try:
        example_of = np.fromiter((index[g] for g in features.guids), dtype=np.int64, count=n)
    except KeyError as err:
        raise ValueError(f"span_qa.decode: feature guid {err.args[0]!r} is not among example_guids") from None
    n_ex = len(example_guids)

    k = min(n_best, width)
    best_score = np.full(n, -np.inf, dtype=np.float32)
    best_start = np.zeros(n, dtype=np.int64)
    best_end = np.zeros(n, dtype=np.int64)
    for lo in range(0, n, _DECODE_CHUNK):
        hi = min(lo + _DECODE_CHUNK, n)
        ctx = offsets[lo:hi, :width, 0] >= 0
        s = np.where(ctx, start[lo:hi], -np.inf)
        e = np.where(ctx, end[lo:hi], -np.inf)
        # Top-k per window (unordered is fine: the argmax below ranks the k*k pairs).
        s_idx = np.argpartition(-s, k - 1, axis=1)[:, :k]
        e_idx = np.argpartition(-e, k - 1, axis=1)[:, :k]
        s_val = np.take_along_axis(s, s_idx, axis=1)
        e_val = np.take_along_axis(e, e_idx, axis=1)
        score = s_val[:, :, None] + e_val[:, None, :]
        span = e_idx[:, None, :] - s_idx[:, :, None]
        ok = (span >= 0) & (span < max_answer_length) & np.isfinite(score)
        score = np.where(ok, score, -np.inf)
        flat = score.reshape(hi - lo, k * k)
        arg = np.argmax(flat, axis=1)
        rows = np.arange(hi - lo)
        best_score[lo:hi] = flat[rows, arg]
        best_start[lo:hi] = s_idx[rows, arg // k]
        best_end[lo:hi] = e_idx[rows, arg % k]

    # Best window per example: highest score, earliest window on ties.
    order = np.lexsort((np.arange(n), -best_score, example_of))
    ex_sorted = example_of[order]
    first = np.ones(n, dtype=bool)
    first[1:] = ex_sorted[1:] != ex_sorted[:-1]
    win_of_ex = np.full(n_ex, -1, dtype=np.int64)
    win_of_ex[ex_sorted[first]] = order[first]

    if version_2_with_negative:
        null = np.full(n_ex, np.inf, dtype=np.float32)
        np.minimum.at(null, example_of, start[:, 0] + end[:, 0])

    predictions: dict[str, str] = {}
    for i, guid in enumerate(example_guids):
        w = win_of_ex[i]
        if w < 0 or not np.isfinite(best_score[w]):
            predictions[guid] = ""
            continue
        if version_2_with_negative and float(null[i]) - float(best_score[w]) > null_score_diff_threshold:
            predictions[guid] = ""
            continue
        a = int(offsets[w, best_start[w], 0])
        b = int(offsets[w, best_end[w], 1])
        predictions[guid] = contexts[guid][a:b]
    return predictions


# --------------------------------------------------------------------------- references


def references(examples: Sequence[Example]) -> dict[str, list[str]]:
    """``{guid: gold answer texts}``; an empty list for an unanswerable question."""
    return {ex.guid: list(ex.answers) for ex in examples}


# The official span-QA scorers by metric name: SQuAD v1.1 (XQuAD, TyDiQA-GoldP, SQuAD v1.1),
# SQuAD v2.0 (unanswerable questions), MLQA (its per-language answer normalisation).
SCORERS = {
    "squad_v1": lambda refs, preds, lang: squad_v1_em_f1(refs, preds),
    "squad_v2": lambda refs, preds, lang: squad_v2_em_f1(refs, preds),
    "mlqa": mlqa_em_f1,
}
# Their per-question statistics (rows in reference order), by the same names.
EXAMPLE_STATS = {
    "squad_v1": lambda refs, preds, lang: squad_v1_example_stats(refs, preds),
    "squad_v2": lambda refs, preds, lang: squad_v2_example_stats(refs, preds),
    "mlqa": mlqa_example_stats,
}

# Padding positions must never win a decode: a very negative logit.
PAD_LOGIT = -1e4


class SpanQA(Format):
    """An answer span in a context cut into windows: exact match and F1."""

    name = NAME
    options_type = SpanOptions
    output_keys = ("start_logits", "end_logits")
    token_outputs = True
    output_pad = PAD_LOGIT
    sized_by_labels = False  # always two outputs per token (start, end)
    long_inputs = True

    def num_labels(self, spec, labels):
        return 2

    def _featurize(self, spec, examples, tokenizer, max_length, labels):
        if not self.options_of(spec).version_2_with_negative:
            # Only a task with unanswerable questions (SQuAD v2) may leave answers empty;
            # elsewhere it is broken data, which would fail only at scoring, after training.
            empty = [ex.guid for ex in examples if not ex.answers]
            if empty:
                raise ValueError(f"{len(empty)} question(s) have no answer, e.g. {empty[:3]}; only a task "
                                 "with unanswerable questions (SQuAD v2) may leave answers empty")
        # The paper's windows (384 tokens, stride 128, questions up to 64) scaled down for
        # shorter rows, so the quick start's 128-token rows still overlap.
        return featurize(examples, tokenizer, max_length, stride=min(128, max_length // 3),
                         max_query_length=min(64, max_length // 4),
                         version_2_with_negative=self.options_of(spec).version_2_with_negative)

    def quality(self, feats, max_length, unk_id=None):
        # Windows cover every context (nothing is truncated); what can go wrong is an
        # answerable question whose answer no window holds whole (no training signal).
        figures = super().quality(feats, max_length, unk_id)
        figures["truncated"] = 0
        answerable = {g for g, answers in feats.extras["references"].items() if answers}
        labelled = set(map(str, feats.guids[feats.columns["start_positions"] > 0]))
        figures["answerable"] = len(answerable)
        figures["unlabelled_answers"] = len(answerable - labelled)
        return figures

    def decode(self, spec, feats, outputs, *, tuned=None):
        return decode(feats, outputs["start_logits"], outputs["end_logits"],
                      version_2_with_negative=self.options_of(spec).version_2_with_negative)

    def score(self, spec, feats, predictions, lang):
        if spec.metric not in SCORERS:
            raise ValueError(f"span QA is scored by {', '.join(SCORERS)}, not {spec.metric!r}")
        return SCORERS[spec.metric](feats.extras["references"], predictions, lang)

    def example_stats(self, spec, feats, predictions, lang):
        if spec.metric not in EXAMPLE_STATS:
            raise ValueError(f"span QA is scored by {', '.join(EXAMPLE_STATS)}, not {spec.metric!r}")
        refs = feats.extras["references"]
        return ExampleStats(spec.metric, list(refs), EXAMPLE_STATS[spec.metric](refs, predictions, lang))


FORMAT = SpanQA()
