#!/usr/bin/env python
"""Build the offline XLM-R-style tokenizer in stilts_ds/resources/tokenizer/ from the fixtures.

The tokenizer is trained on every string field of every bundled fixture file
(stilts_ds/resources/fixtures/**/*.jsonl; a list of strings counts as one space-joined
string) and is shaped like XLM-R's, as transformers 5 itself rebuilds XLM-R:

* model: ``tokenizers`` Unigram, ``<s>``=0, ``<pad>``=1, ``</s>``=2, ``<unk>``=3 and ``<mask>``
  as the last id (inside the model vocabulary, as in XLM-R's tokenizer.json);
* normalizer: SentencePiece's ``nmt_nfkc`` rules as a ``Precompiled`` char map (XLM-R's own
  normalizer: NFKC plus control/whitespace clean-up);
* pre-tokenizer: WhitespaceSplit + Metaspace("▁", prepend_scheme="always"); decoder Metaspace;
* post-processor: ``<s> $A </s>`` and ``<s> $A </s> </s> $B </s>``;
* wrapped as ``XLMRobertaTokenizerFast`` (model_max_length 512) and saved with save_pretrained.

Why these exact pieces: in transformers 5, ``XLMRobertaTokenizer`` (``XLMRobertaTokenizerFast``
is the same class) does not load tokenizer.json as is. It keeps the vocabulary and the
post-processor, rebuilds the pre-tokenizer and decoder as above, and keeps a normalizer only
when it is a ``Precompiled`` char map. A plain ``NFKC()`` normalizer would be silently
dropped by ``AutoTokenizer.from_pretrained``, and text such as the fixtures' full-width
Chinese punctuation would then map to ``<unk>``. Building the same pieces here makes the
saved and the loaded tokenizer behave identically, which this script checks before it
installs the result.

Why SentencePiece trains the vocabulary (as it did XLM-R's) rather than
``tokenizers.trainers.UnigramTrainer``: the latter is not reproducible across processes
(its scores differ in the last bits from run to run, which reorders ids), and on this
corpus it splits far more Devanagari/Telugu/Bengali words. SentencePiece, single-threaded
and unshuffled, gives byte-identical output on every rebuild, and it also supplies the
nmt_nfkc char map. ``sentencepiece`` is therefore a build-time dependency of this script
only; loading the built tokenizer needs just ``transformers``/``tokenizers``.

The result is written to a temporary directory next to the target and then renamed into
place, so a half-written tokenizer never exists. ``--check`` rebuilds in a temporary
directory and compares with the committed files (exit 1 when they differ).

Usage: python tools/build_tokenizer.py [--fixtures DIR] [--out DIR] [--vocab-size N] [--check]
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_FIXTURES = ROOT / "stilts_ds" / "resources" / "fixtures"
DEFAULT_OUT = ROOT / "stilts_ds" / "resources" / "tokenizer"
DEFAULT_VOCAB_SIZE = 3000

SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>"]  # ids 0..3, as in XLM-R
MASK_TOKEN = "<mask>"  # last id, as in XLM-R
BUILD_INFO = "build_info.json"


# ---------------------------------------------------------------------------------------
# Corpus
# ---------------------------------------------------------------------------------------


def _strings(value):
    if isinstance(value, str):
        if value:
            yield value
    elif isinstance(value, list):
        if value and all(isinstance(v, str) for v in value):
            joined = " ".join(v for v in value if v)
            if joined:
                yield joined
        else:
            for v in value:
                yield from _strings(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)


def fixture_files(fixtures: Path) -> list[Path]:
    return sorted(fixtures.rglob("*.jsonl"), key=lambda p: p.relative_to(fixtures).as_posix())


def corpus(fixtures: Path = DEFAULT_FIXTURES) -> list[str]:
    """Every string field of every fixture row, in a stable order."""
    texts: list[str] = []
    for path in fixture_files(fixtures):
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    texts.extend(_strings(json.loads(line)))
    if not texts:
        raise SystemExit(f"no fixture text under {fixtures}; run tools/build_fixtures.py first")
    return texts


def corpus_sha256(texts: list[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


# ---------------------------------------------------------------------------------------
# Training: SentencePiece Unigram (as XLM-R's own vocabulary was made)
# ---------------------------------------------------------------------------------------


def _protobuf_fields(buf: bytes):
    """(field number, wire type, value) for one protobuf message (just enough to read ModelProto)."""
    i = 0

    def varint():
        nonlocal i
        shift = result = 0
        while True:
            b = buf[i]
            i += 1
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7

    while i < len(buf):
        key = varint()
        field, wire = key >> 3, key & 7
        if wire == 0:
            yield field, wire, varint()
        elif wire == 1:
            yield field, wire, buf[i:i + 8]
            i += 8
        elif wire == 2:
            n = varint()
            yield field, wire, buf[i:i + n]
            i += n
        elif wire == 5:
            yield field, wire, buf[i:i + 4]
            i += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")


def _precompiled_charsmap(model_proto: bytes) -> bytes:
    """ModelProto.normalizer_spec.precompiled_charsmap (fields 3 and 2)."""
    for field, wire, value in _protobuf_fields(model_proto):
        if field == 3 and wire == 2:
            spec = {f: v for f, w, v in _protobuf_fields(value) if w == 2}
            if spec.get(1) != b"nmt_nfkc" or not spec.get(2):
                raise RuntimeError("the sentencepiece model has no nmt_nfkc char map")
            return bytes(spec[2])
    raise RuntimeError("no normalizer_spec in the sentencepiece model")


def train_unigram(texts: list[str], vocab_size: int) -> tuple[list[tuple[str, float]], bytes]:
    """Train a SentencePiece Unigram model on ``texts``: ([(piece, score)] with XLM-R's special
    ids 0..3, the nmt_nfkc precompiled char map). Single-threaded and unshuffled: deterministic."""
    try:
        import sentencepiece as spm
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise SystemExit("building the tokenizer needs sentencepiece (pip install sentencepiece); "
                         "loading the built tokenizer does not") from exc
    proto = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_writer=proto, model_type="unigram", vocab_size=vocab_size,
        hard_vocab_limit=False,  # a small corpus may support fewer pieces than asked for
        normalization_rule_name="nmt_nfkc", character_coverage=1.0, byte_fallback=False,
        bos_id=0, pad_id=1, eos_id=2, unk_id=3,  # XLM-R's ids: <s> <pad> </s> <unk>
        num_threads=1, shuffle_input_sentence=False, input_sentence_size=0, max_sentence_length=1 << 16,
        minloglevel=2,
    )
    proto_bytes = proto.getvalue()
    sp = spm.SentencePieceProcessor(model_proto=proto_bytes)
    vocab = []
    for i in range(sp.get_piece_size()):
        special = sp.is_control(i) or sp.is_unknown(i)
        vocab.append((sp.id_to_piece(i), 0.0 if special else float(sp.get_score(i))))
    if [p for p, _ in vocab[:4]] != SPECIAL_TOKENS:
        raise RuntimeError(f"unexpected special pieces {vocab[:4]}")
    return vocab, _precompiled_charsmap(proto_bytes)


# ---------------------------------------------------------------------------------------
# Build
# ---------------------------------------------------------------------------------------


def _pipeline(tok, charsmap: bytes):
    from tokenizers import decoders, normalizers, pre_tokenizers

    tok.normalizer = normalizers.Precompiled(charsmap)
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")]
    )
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    return tok


def build_backend(vocab: list[tuple[str, float]], charsmap: bytes):
    """The ``tokenizers.Tokenizer``: Unigram over ``vocab`` + <mask> last, XLM-R's pipeline."""
    from tokenizers import AddedToken, Tokenizer, processors
    from tokenizers.models import Unigram

    vocab = list(vocab) + [(MASK_TOKEN, 0.0)]  # mask is the last id, inside the model vocabulary
    tok = _pipeline(Tokenizer(Unigram(vocab, unk_id=3, byte_fallback=False)), charsmap)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS]
                           + [AddedToken(MASK_TOKEN, special=True, normalized=False, lstrip=True)])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", 0), ("</s>", 2)],
    )
    return tok


def wrap(backend):
    from tokenizers import AddedToken
    from transformers import XLMRobertaTokenizerFast

    return XLMRobertaTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>", unk_token="<unk>",
        pad_token="<pad>", mask_token=AddedToken(MASK_TOKEN, lstrip=True, rstrip=False, special=True,
                                                 normalized=False),
        model_max_length=512,
    )


def unk_rate(tokenizer, texts: list[str]) -> tuple[float, int, int]:
    unk = tokenizer.unk_token_id
    total = n_unk = 0
    for enc in tokenizer(texts, add_special_tokens=False)["input_ids"]:
        total += len(enc)
        n_unk += sum(1 for i in enc if i == unk)
    return (n_unk / total if total else 0.0), n_unk, total


def verify(directory: Path, built, texts: list[str]) -> None:
    """The saved tokenizer loads through AutoTokenizer and behaves exactly like the built one."""
    from transformers import AutoTokenizer

    loaded = AutoTokenizer.from_pretrained(str(directory))
    problems = []
    if not loaded.is_fast:
        problems.append("AutoTokenizer did not return a fast tokenizer")
    expected_ids = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, MASK_TOKEN: len(loaded) - 1}
    for token, want in expected_ids.items():
        if loaded.convert_tokens_to_ids(token) != want:
            problems.append(f"{token} has id {loaded.convert_tokens_to_ids(token)}, want {want}")
    if loaded.backend_tokenizer.normalizer is None:
        problems.append("the loaded tokenizer has no normalizer")
    for a, b in zip(built(texts)["input_ids"], loaded(texts)["input_ids"]):
        if a != b:
            problems.append(f"built and loaded tokenizers disagree: {a} vs {b}")
            break
    pair_a = built(texts[0], texts[1])["input_ids"]
    if pair_a != loaded(texts[0], texts[1])["input_ids"]:
        problems.append("built and loaded tokenizers disagree on a pair")
    if problems:
        raise RuntimeError("tokenizer check failed:\n  " + "\n  ".join(problems))


def build(fixtures: Path, out_dir: Path, vocab_size: int) -> dict:
    texts = corpus(fixtures)
    backend = build_backend(*train_unigram(texts, vocab_size))
    tokenizer = wrap(backend)
    rate, n_unk, total = unk_rate(tokenizer, texts)
    info = {
        "built_by": "tools/build_tokenizer.py",
        "corpus": "every string field of stilts_ds/resources/fixtures/**/*.jsonl",
        "corpus_sha256": corpus_sha256(texts),
        "corpus_strings": len(texts),
        "requested_vocab_size": vocab_size,
        "vocab_size": len(tokenizer),
        "unk_rate": round(rate, 6),
        "unk_tokens": n_unk,
        "tokens": total,
    }
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        tokenizer.save_pretrained(str(tmp))
        (tmp / BUILD_INFO).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        verify(tmp, tokenizer, texts)
        for f in tmp.iterdir():
            os.chmod(f, 0o644)
        os.chmod(tmp, 0o755)
        old = None
        if out_dir.exists():
            old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
            os.rename(out_dir, old)
        os.rename(tmp, out_dir)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fixtures", type=Path, default=DEFAULT_FIXTURES)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--vocab-size", type=int, default=DEFAULT_VOCAB_SIZE)
    ap.add_argument("--check", action="store_true",
                    help="rebuild in a temporary directory and compare with --out; write nothing there")
    args = ap.parse_args(argv)
    if args.check:
        with tempfile.TemporaryDirectory() as scratch:
            fresh = Path(scratch) / "tokenizer"
            build(args.fixtures, fresh, args.vocab_size)
            differ = sorted(
                f.name for f in fresh.iterdir()
                if not (args.out / f.name).is_file() or (args.out / f.name).read_bytes() != f.read_bytes()
            )
        for name in differ:
            print(f"out of date: {args.out / name}", file=sys.stderr)
        return 1 if differ else 0
    info = build(args.fixtures, args.out, args.vocab_size)
    print(f"tokenizer -> {args.out}: vocab {info['vocab_size']} (requested {info['requested_vocab_size']}), "
          f"unk rate {info['unk_rate']:.4%} ({info['unk_tokens']}/{info['tokens']} tokens) "
          f"over {info['corpus_strings']} fixture strings")
    return 0


if __name__ == "__main__":
    sys.exit(main())
