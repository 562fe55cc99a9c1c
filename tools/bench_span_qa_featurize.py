"""Benchmark: span-QA featurize() against the bare fast-tokenizer call it wraps.

Run (from the repository root)::

    .venv/bin/python tools/bench_span_qa_featurize.py                    # 20k pairs, 384 and 256
    .venv/bin/python tools/bench_span_qa_featurize.py --max-length 384 --n 50000
    .venv/bin/python tools/bench_span_qa_featurize.py --tokenizer path/to/hf_tokenizer_dir

It generates a seeded SQuAD-shaped set (``--n`` question/context pairs; contexts of 120-250
words made of the tokenizer's own pieces, about two tokens a word, so at 384 tokens about
half the contexts need a second window and at 256 most do; answers are real spans of their
context), then for each max length times, best of 3, interleaved, each after a full GC:

* bare: ``tokenizer(questions, contexts, truncation="only_second", max_length=L,
  stride=128, return_overflowing_tokens=True, return_offsets_mapping=True,
  padding="max_length")``, the call of Hugging Face ``run_qa.py`` (what featurize returns
  is padded, so the baseline pads too); and the same call without padding, which is
  cheaper and is the baseline the target is checked against;
* ``span_qa.featurize(examples, tokenizer, L, stride=128)``.

It prints, per max length: windows per example, examples/s of each (wall clock, with the
wall and process-CPU seconds), the ratios featurize/bare in wall and CPU time, PASS/FAIL
against the target (featurize wall time <= 1.25x the unpadded bare call), and how long
``span_qa.decode`` takes on random logits for all the windows. The exit code is 1 when a
max length misses the target. On a shared machine, read the CPU ratio beside the wall one:
the load average is printed at the start and the end.

Tokenizer: ``--tokenizer PATH`` (an ``AutoTokenizer`` directory) or ``--tokenizer
throwaway``; default ``stilts_ds/resources/tokenizer`` when it exists, else a throwaway
XLM-R-style Unigram tokenizer (``XLMRobertaTokenizerFast(tokenizer_object=...)``) trained on
seeded pseudo-words in a temp dir. The first output line says which.
"""
from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stilts_ds.tasks.formats import span_qa  # noqa: E402

DEFAULT_TOKENIZER = ROOT / "stilts_ds" / "resources" / "tokenizer"
TARGET = 1.25
SYLLABLES = ("ka to ri an el mo su ne li ba de or is un ta ve po gi ch ra "
             "qu ex ym zo fa hu wi ja ko pe").split()


def pseudo_words(n: int, seed: int = 0) -> list[str]:
    """Seeded pseudo-words of 2-5 syllables (the throwaway tokenizer's training text)."""
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(SYLLABLES, size=rng.integers(2, 6))) for _ in range(n)]


def lexicon_from(tokenizer, size: int = 20000, seed: int = 0) -> list[str]:
    """Words built from the tokenizer's own ASCII pieces: a word-initial piece plus 0-2
    continuation pieces, so text costs about two tokens a word with any vocabulary (a
    fixture-trained or a 250k XLM-R one) and ~120-250-word contexts straddle 384 tokens."""
    vocab = tokenizer.get_vocab()

    def plain(piece):
        return len(piece) >= 2 and piece.isascii() and piece.isalpha()

    model = tokenizer.backend_tokenizer.model
    if type(model).__name__ == "WordPiece":  # plain heads, ##-prefixed tails
        mark = model.continuing_subword_prefix
        heads = [k for k in vocab if plain(k)]
        tails = [k[len(mark):] for k in vocab if k.startswith(mark) and plain(k[len(mark):])]
    else:  # SentencePiece (U+2581) or byte-level BPE (G-dot) word-start marker
        heads = [k[1:] for k in vocab if k[:1] in ("\u2581", "\u0120") and plain(k[1:])]
        tails = [k for k in vocab if plain(k)]
    if len(heads) < 20 or len(tails) < 20:
        return pseudo_words(size, seed)
    heads, tails = sorted(set(heads)), sorted(set(tails))
    rng = np.random.default_rng(seed)
    words = []
    for _ in range(size):
        k = rng.choice(3, p=(0.3, 0.4, 0.3))
        words.append(rng.choice(heads) + "".join(rng.choice(tails, size=k)))
    return words


def make_examples(n: int, lexicon: list[str], seed: int = 0) -> list[span_qa.Example]:
    """Seeded SQuAD-shaped pairs: Zipf-distributed words of ``lexicon``, some punctuation,
    contexts of 120-250 words, questions of 6-14 words, answers of 1-4 context words."""
    rng = np.random.default_rng(seed)
    lexicon = np.array(lexicon, dtype=object)
    p = 1.0 / np.arange(1, len(lexicon) + 1) ** 0.8
    p /= p.sum()
    examples = []
    for i in range(n):
        n_words = int(rng.integers(120, 251))
        words = list(lexicon[rng.choice(len(lexicon), size=n_words, p=p)])
        for j in rng.choice(n_words - 1, size=n_words // 12, replace=False):
            words[j] = words[j] + rng.choice([",", ".", ";"])
        a = int(rng.integers(0, n_words - 4))
        k = int(rng.integers(1, 5))
        prefix = " ".join(words[:a])
        start = len(prefix) + (1 if a else 0)
        answer = " ".join(words[a:a + k])
        context = " ".join(words)
        q_words = lexicon[rng.choice(len(lexicon), size=int(rng.integers(6, 15)), p=p)]
        question = " ".join(q_words) + "?"
        examples.append(span_qa.Example(f"bench-{i}", question, context, (answer,), (start,)))
    return examples


def throwaway_tokenizer(texts, workdir: str, vocab_size: int = 8000):
    """An XLM-R-shaped tokenizer (Unigram, NFKC, whitespace + metaspace, <s> </s> <pad>)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import XLMRobertaTokenizerFast

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace()]
    )
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        unk_token="<unk>",
    )
    tok.train_from_iterator(texts, trainer)
    path = os.path.join(workdir, "tokenizer.json")
    tok.save(path)
    return XLMRobertaTokenizerFast(tokenizer_object=Tokenizer.from_file(path))


def timed(fn, keep: bool = False):
    """(wall s, process CPU s) of one call of ``fn`` after a full GC; with ``keep`` also its
    result. CPU seconds count every thread (the Rust tokenizer is multi-threaded) and hardly
    move when other jobs share the machine, so they back up the wall-clock figure."""
    gc.collect()
    c0, t0 = time.process_time(), time.perf_counter()
    out = fn()
    seconds = (time.perf_counter() - t0, time.process_time() - c0)
    if keep:
        return seconds, out
    del out
    return seconds


def bench(tokenizer, examples, max_length: int, stride: int, reps: int) -> bool:
    questions = [ex.question for ex in examples]
    contexts = [ex.context for ex in examples]
    n = len(examples)
    common = dict(truncation="only_second", max_length=max_length, stride=stride,
                  return_overflowing_tokens=True, return_offsets_mapping=True)

    def bare_pad():
        return tokenizer(questions, contexts, padding="max_length", **common)

    def bare():
        return tokenizer(questions, contexts, **common)

    def ours():
        return span_qa.featurize(examples, tokenizer, max_length, stride=stride)

    # Interleaved so drift on a shared machine hits all three alike; nothing big from a
    # previous call stays alive (millions of live offset tuples would slow every GC pass
    # of the next call), and each call starts after a full collection.
    t_pad, t_bare, t_ours = [], [], []
    feats = None
    for _ in range(reps):
        feats = None
        t_pad.append(timed(bare_pad))
        t_bare.append(timed(bare))
        t, feats = timed(ours, keep=True)
        t_ours.append(t)
    (tp, cp), (tb, cb), (to, co) = (
        (min(w for w, _ in ts), min(c for _, c in ts)) for ts in (t_pad, t_bare, t_ours))

    # Same windows and ids as the run_qa.py call, unless featurize had to cut a question
    # to max_query_length (64 tokens), which the plain call does not do.
    q_lens = [len(ids) for ids in tokenizer(questions, add_special_tokens=False)["input_ids"]]
    n_cut = sum(n_q > 64 for n_q in q_lens)
    if n_cut:
        same = f"n/a, {n_cut} questions cut to 64 tokens"
    else:
        enc_ids = bare_pad()["input_ids"]
        same = len(feats) == len(enc_ids) and np.array_equal(
            feats.columns["input_ids"], np.asarray(enc_ids, dtype=np.int32))
        del enc_ids
    per_ex = np.bincount(np.unique(feats.guids, return_inverse=True)[1])
    hist = np.bincount(per_ex)
    dist = ", ".join(f"{k} window{'s' if k > 1 else ''}: {c / n:.0%}" for k, c in enumerate(hist) if c)
    answer_rows = int((feats.columns["start_positions"] > 0).sum())

    rng = np.random.default_rng(1)
    width = int(feats.columns["lengths"].max())
    s_log = rng.standard_normal((len(feats), width), dtype=np.float32)
    e_log = rng.standard_normal((len(feats), width), dtype=np.float32)
    (t_dec, _), preds = timed(lambda: span_qa.decode(feats, s_log, e_log), keep=True)

    ratio = to / tb
    ok = ratio <= TARGET and same is not False and len(preds) == n
    print(f"max_length={max_length} stride={stride}: {n} examples -> {len(feats)} windows "
          f"({dist}); rows holding the answer: {answer_rows}; ids equal run_qa call: {same}")
    print(f"  bare tokenizer, padded (run_qa.py) : {n / tp:8.0f} examples/s  ({tp:.2f} s wall, {cp:.2f} s CPU)")
    print(f"  bare tokenizer, unpadded           : {n / tb:8.0f} examples/s  ({tb:.2f} s wall, {cb:.2f} s CPU)")
    print(f"  span_qa.featurize                  : {n / to:8.0f} examples/s  ({to:.2f} s wall, {co:.2f} s CPU)")
    print(f"  ratio featurize/bare (wall): {ratio:.2f}x unpadded, {to / tp:.2f}x padded; "
          f"(CPU): {co / cb:.2f}x unpadded, {co / cp:.2f}x padded")
    print(f"  target: wall <= {TARGET}x unpadded -> {'PASS' if ok else 'FAIL'}")
    print(f"  span_qa.decode of {len(feats)} windows x {width} (random logits): {t_dec:.2f} s")
    return ok


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokenizer", default=None, help="HF tokenizer dir, or 'throwaway' (default: "
                    "stilts_ds/resources/tokenizer if present, else a throwaway one)")
    ap.add_argument("--n", type=int, default=20000, help="question/context pairs (default 20000)")
    ap.add_argument("--max-length", type=int, action="append", dest="max_lengths",
                    help="repeatable; default 384 and 256")
    ap.add_argument("--stride", type=int, default=128)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args(argv)

    tmp = tempfile.TemporaryDirectory()
    path = args.tokenizer or (str(DEFAULT_TOKENIZER) if DEFAULT_TOKENIZER.exists() else "throwaway")
    if path != "throwaway":
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(path)
        print(f"tokenizer: {path} ({type(tokenizer).__name__}, vocab {len(tokenizer)})")
    else:
        rng = np.random.default_rng(0)
        words = pseudo_words(20000)
        texts = [" ".join(rng.choice(words, size=200)) for _ in range(3000)]
        tokenizer = throwaway_tokenizer(texts, tmp.name)
        why = "as asked" if args.tokenizer else f"{DEFAULT_TOKENIZER} does not exist"
        print(f"tokenizer: throwaway XLM-R-style Unigram (vocab {len(tokenizer)}) trained on seeded "
              f"pseudo-words in {tmp.name} ({why})")
    examples = make_examples(args.n, lexicon_from(tokenizer))
    sample = examples[:500]
    enc = tokenizer([e.context for e in sample], add_special_tokens=False, verbose=False)
    n_tok = sum(len(ids) for ids in enc["input_ids"])
    n_words = sum(len(e.context.split()) for e in sample)
    print(f"data: {args.n} seeded SQuAD-shaped pairs, contexts 120-250 words, "
          f"{n_tok / n_words:.2f} tokens/word")
    print(f"cpu cores: {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}, "
          f"TOKENIZERS_PARALLELISM={os.environ.get('TOKENIZERS_PARALLELISM', 'unset')}")
    ok = True
    for max_length in args.max_lengths or [384, 256]:
        ok &= bench(tokenizer, examples, max_length, args.stride, args.reps)
    tmp.cleanup()
    print(f"load average at the end: {os.getloadavg()[0]:.1f} (timings are noisy when it is above the core count)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
