"""The feature cache in Arrow: every fixture split round-trips exactly, the views over the
mapped files index as the padded arrays did, nothing is copied on open, nothing is pickled."""
import ast
from pathlib import Path

import numpy as np
import pytest

from stilts_ds.data import cache
from stilts_ds.data.columns import RaggedColumn, StringColumn
from stilts_ds.data.prepare import featurize_examples, max_length_for
from stilts_ds.data.sources import FIXTURES_DIR, load_examples, load_labels, local_splits
from stilts_ds.tasks.features import Features
from stilts_ds.tasks.registry import get_task
from stilts_ds.tasks.formats import format_of

PACKAGE = Path(__file__).resolve().parents[2] / "stilts_ds"


def _fixture_splits():
    names = sorted(p.name for p in FIXTURES_DIR.iterdir() if p.is_dir())
    return [(name, split, lang) for name in names for split, lang in local_splits(get_task(name), FIXTURES_DIR)]


def _round_trip(path: Path, feats: Features) -> Features:
    cache.write(path, feats)
    return cache.read(path)


def _same(before, after, where):
    if isinstance(before, np.ndarray):
        after = np.asarray(after)
        assert after.dtype == before.dtype and after.shape == before.shape, where
        assert (after == before).all(), where
    else:
        assert type(after) is type(before) and after == before, where


def test_every_fixture_split_round_trips_exactly(tmp_path, tokenizer):
    """Columns (dtype, shape, values, padding), guids and extras (tuples stay tuples, dicts
    keep their keys and value types) of each of the 117 fixture splits, all formats."""
    splits = _fixture_splits()
    assert len(splits) > 100
    formats = set()
    for task, split, lang in splits:
        spec = get_task(task)
        examples = load_examples(spec, split, lang, source="local", data_dir=FIXTURES_DIR)
        feats = featurize_examples(spec, examples, tokenizer, max_length_for(spec, None), load_labels(spec, FIXTURES_DIR))
        back = _round_trip(tmp_path / f"{task}.{split}.{lang}.features", feats)
        where = f"{task}/{split}/{lang}"
        formats.add(back.format)
        assert back.format == feats.format and len(back) == len(feats)
        assert list(back.guids) == [str(g) for g in feats.guids], where
        assert set(back.columns) == set(feats.columns), where
        for name, col in feats.columns.items():
            _same(col, back.columns[name], f"{where} column {name}")
            rows = np.array([len(feats) - 1, 0, len(feats) // 2])
            _same(col[rows], back.columns[name][rows], f"{where} column {name} rows")
        assert set(back.extras) == set(feats.extras), where
        for name, value in feats.extras.items():
            _same(value, back.extras[name], f"{where} extras[{name}]")
    assert formats == {"pair_classification", "span_qa", "tagging", "multiple_choice", "retrieval", "mlm"}


def test_token_columns_are_stored_without_padding(tmp_path, tokenizer):
    spec = get_task("xnli")
    examples = load_examples(spec, "test", "zh", source="local", data_dir=FIXTURES_DIR)
    feats = featurize_examples(spec, examples, tokenizer, 256, load_labels(spec, FIXTURES_DIR))
    back = _round_trip(tmp_path / "e", feats)
    ids = back.columns["input_ids"]
    assert isinstance(ids, RaggedColumn) and ids.shape == (len(feats), 256)
    assert len(ids.values) == int(feats.columns["lengths"].sum())  # real tokens only
    padded_bytes = feats.columns["input_ids"].nbytes + feats.columns["attention_mask"].nbytes
    assert (tmp_path / "e" / cache.ROWS_FILE).stat().st_size < padded_bytes / 4
    # numeric columns are read-only views of the mapped file, not copies
    labels = back.columns["labels"]
    assert not labels.flags.owndata and not labels.flags.writeable
    assert not ids.values.flags.owndata and isinstance(back.guids, StringColumn)


def test_ragged_views_index_like_the_padded_arrays():
    """Every way the formats index a column: int, negative int, int array, list, range,
    boolean mask, slice, per-axis keys; and a (N, choices, L) column whose token axis is last."""
    rng = np.random.default_rng(0)
    n, width = 7, 6
    lengths = np.array([1, 6, 3, 0, 2, 6, 4], dtype=np.int32)
    ids = np.full((n, width), 1, dtype=np.int32)
    choice = np.full((n, 3, width), -100, dtype=np.int64)
    for i, L in enumerate(lengths):
        ids[i, :L] = rng.integers(5, 99, size=L)
        choice[i, :, :L] = rng.integers(0, 9, size=(3, L))
    feats = Features("tagging", {"input_ids": ids, "choice": choice, "lengths": lengths},
                     np.array([f"g{i}" for i in range(n)], dtype=object),
                     {"label_names": ("A", "B"), "sides": np.array(list("stststs"), dtype=object)})
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        back = _round_trip(Path(tmp) / "e", feats)
        for name, dense in (("input_ids", ids), ("choice", choice)):
            col = back.columns[name]
            assert isinstance(col, RaggedColumn) and col.shape == dense.shape and col.ndim == dense.ndim
            mask = lengths > 2
            for key in (3, -1, np.array([6, 0, 0, 3]), [2, 1], range(2, 5), mask, np.array([], dtype=np.int64)):
                np.testing.assert_array_equal(col[key], dense[key], err_msg=f"{name}[{key!r}]")
            np.testing.assert_array_equal(col[1:4], dense[1:4])
            np.testing.assert_array_equal(col[:, :2], dense[:, :2])
            with pytest.raises(IndexError):
                col[n]
        guids = back.guids
        assert guids[-1] == "g6" and list(guids[np.array([2, 0])]) == ["g2", "g0"]
        assert list(guids[lengths == 6]) == ["g1", "g5"] and list(guids.astype(str)[:2]) == ["g0", "g1"]
        assert back.extras["label_names"] == ("A", "B") and list(back.extras["sides"]) == list("stststs")


def test_uneven_padding_is_stored_whole(tmp_path):
    """A 2-D column whose tail past a row's length is not one pad value (not a token column
    after all) is kept dense, so nothing is lost."""
    lengths = np.array([1, 2], dtype=np.int32)
    odd = np.array([[5, 6, 7], [8, 9, 1]], dtype=np.int32)  # tails 6,7 and 1: not one pad value
    feats = Features("tagging", {"input_ids": np.zeros((2, 3), np.int32), "odd": odd, "lengths": lengths},
                     np.array(["a", "b"], dtype=object))
    back = _round_trip(tmp_path / "e", feats)
    assert not isinstance(back.columns["odd"], RaggedColumn)
    np.testing.assert_array_equal(back.columns["odd"], odd)


def test_quality_figures_read_back_from_a_reused_entry(tmp_path, tokenizer):
    spec = get_task("udpos")
    examples = load_examples(spec, "test", "en", source="local", data_dir=FIXTURES_DIR)
    feats = featurize_examples(spec, examples, tokenizer, 256, load_labels(spec, FIXTURES_DIR))
    quality = format_of(spec).quality(feats, 256, tokenizer.unk_token_id)
    back = _round_trip(tmp_path / "e", Features(feats.format, feats.columns, feats.guids,
                                                {**feats.extras, "quality": quality}))
    assert back.extras["quality"] == quality
    assert format_of(spec).quality(back, 256, tokenizer.unk_token_id) == quality  # the views serve quality too


def test_nothing_in_the_package_pickles():
    """The cache may live on shared storage: no module of the package imports pickle (an
    entry that could name code to run is the defect this replaced)."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n.split(".")[0] in ("pickle", "cloudpickle", "dill", "joblib") for n in names):
                offenders.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    assert offenders == []
