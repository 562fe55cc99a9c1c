"""Score a prediction file against a reference file with one of ``stilts_ds.metrics.METRICS``.

Usage::

    from stilts_ds.evaluation import score_files
    score_files("accuracy", "predictions/xnli/test-de.tsv", "labels/xnli/test-de.tsv")
    score_files("mlqa", "predictions/mlqa/test-zh.json", "labels/mlqa/test-zh.json", lang="zh")

Which readers (see ``official_files``) each metric uses:

=================================  ===========================================
accuracy, tatoeba_accuracy         read_labels for both files
seqeval_f1, tag_accuracy           read_tags for both files
squad_v1, squad_v2, mlqa           read_qa_predictions / read_squad_references
bucc_f1                            read_bucc_pairs for both files
accuracy, XCOPA (*.jsonl)          read_xcopa_labels for both files
lareqa_map_at_20                   read_ranked_ids for both files
mewslix_map_at_20                  read_ranked_ids for both files
=================================  ===========================================

XCOPA's metric is plain ``accuracy``; its files are JSON lines, so ``score_files`` takes
``file_format="xcopa"`` (for callers that know the task) or recognises ``.jsonl`` names.

As in xtreme ``evaluate.py``, label and tag files must hold the same number of
examples/sentences (here a ``ScoreInputError`` naming both files and counts, there an
assert); QA and BUCC files are matched by id, so their counts may differ (unanswered
questions score 0 with a warning). ``lang`` is required for mlqa and ignored otherwise.
Any error from reading or scoring is a ``ScoreInputError`` naming the files.
"""

from __future__ import annotations

from typing import Any, Callable

from stilts_ds.evaluation.errors import ScoreInputError
from stilts_ds.evaluation.official_files import (
    PathLike,
    read_bucc_pairs,
    read_labels,
    read_qa_predictions,
    read_ranked_ids,
    read_squad_references,
    read_tags,
    read_xcopa_labels,
)
from stilts_ds.metrics import (
    METRICS,
    MLQA_LANGUAGES,
    accuracy,
    bucc_f1,
    mean_average_precision_at_k,
    mewslix_map_at_k,
    mlqa_em_f1,
    seqeval_f1,
    squad_v1_em_f1,
    squad_v2_em_f1,
    tag_accuracy,
    tatoeba_accuracy,
)


def _score_labels(
    metric_fn: Callable[..., dict], predictions_path: PathLike, references_path: PathLike,
    reader: Callable[[PathLike], list] = read_labels, unit: str = "lines",
) -> dict:
    predictions = reader(predictions_path)
    references = reader(references_path)
    if len(predictions) != len(references):
        raise ScoreInputError(
            f"number of examples differs: {len(predictions)} {unit} in {predictions_path} "
            f"(predictions) vs {len(references)} {unit} in {references_path} (references)"
        )
    return metric_fn(references, predictions)


def _score_tags(
    metric_fn: Callable[..., dict], predictions_path: PathLike, references_path: PathLike
) -> dict:
    predictions = read_tags(predictions_path)
    references = read_tags(references_path)
    if len(predictions) != len(references):
        raise ScoreInputError(
            f"number of sentences differs: {len(predictions)} in {predictions_path} "
            f"(predictions) vs {len(references)} in {references_path} (references)"
        )
    for index, (predicted, gold) in enumerate(zip(predictions, references)):
        if len(predicted) != len(gold):
            raise ScoreInputError(
                f"sentence {index} (0-based) has {len(predicted)} tags in {predictions_path} "
                f"(predictions) but {len(gold)} in {references_path} (references)"
            )
    return metric_fn(references, predictions)


def _score_qa(
    metric_fn: Callable[..., dict], predictions_path: PathLike, references_path: PathLike
) -> dict:
    return metric_fn(read_squad_references(references_path), read_qa_predictions(predictions_path))


def _score_bucc(predictions_path: PathLike, references_path: PathLike) -> dict:
    return bucc_f1(read_bucc_pairs(references_path), read_bucc_pairs(predictions_path))


def _score_xcopa(predictions_path: PathLike, references_path: PathLike) -> dict:
    return _score_labels(accuracy, predictions_path, references_path, reader=read_xcopa_labels, unit="labels")


def _score_lareqa(predictions_path: PathLike, references_path: PathLike) -> dict:
    gold = {q: set(ids) for q, ids in read_ranked_ids(references_path).items()}
    ranked = read_ranked_ids(predictions_path)
    extra = [q for q in ranked if q not in gold]
    if extra:
        raise ScoreInputError(
            f"{predictions_path}: {len(extra)} query ids are not in {references_path}, e.g. {extra[:3]}"
        )
    return mean_average_precision_at_k(ranked, gold, k=20)


def _score_mewslix(predictions_path: PathLike, references_path: PathLike) -> dict:
    return mewslix_map_at_k(read_ranked_ids(references_path), read_ranked_ids(predictions_path), k=20)


def _score_mlqa(predictions_path: PathLike, references_path: PathLike, lang: str | None) -> dict:
    if lang is None:
        raise ScoreInputError(
            f"metric 'mlqa' needs the answer language (lang=...) to score "
            f"{predictions_path}; one of {' '.join(MLQA_LANGUAGES)}"
        )
    if lang not in MLQA_LANGUAGES:
        raise ScoreInputError(
            f"unknown MLQA language {lang!r} for {predictions_path}; "
            f"supported: {' '.join(MLQA_LANGUAGES)}"
        )
    return _score_qa(lambda refs, preds: mlqa_em_f1(refs, preds, lang), predictions_path, references_path)


def _score_accuracy(predictions_path: PathLike, references_path: PathLike, xcopa: bool) -> dict:
    # XCOPA's labels come as JSON lines (test-<lang>.jsonl), everything else one per line.
    if xcopa or str(predictions_path).endswith(".jsonl"):
        return _score_xcopa(predictions_path, references_path)
    return _score_labels(accuracy, predictions_path, references_path)


# metric -> scorer(predictions, references, lang, xcopa): the one table from a metric to its
# official file readers (the in-memory path is the task format's score).
_SCORERS: dict[str, Callable[[PathLike, PathLike, str | None, bool], dict]] = {
    "accuracy": lambda p, r, lang, xcopa: _score_accuracy(p, r, xcopa),
    "tatoeba_accuracy": lambda p, r, lang, xcopa: _score_labels(tatoeba_accuracy, p, r),
    "seqeval_f1": lambda p, r, lang, xcopa: _score_tags(seqeval_f1, p, r),
    "tag_accuracy": lambda p, r, lang, xcopa: _score_tags(tag_accuracy, p, r),
    "squad_v1": lambda p, r, lang, xcopa: _score_qa(squad_v1_em_f1, p, r),
    "squad_v2": lambda p, r, lang, xcopa: _score_qa(squad_v2_em_f1, p, r),
    "mlqa": lambda p, r, lang, xcopa: _score_mlqa(p, r, lang),
    "bucc_f1": lambda p, r, lang, xcopa: _score_bucc(p, r),
    "lareqa_map_at_20": lambda p, r, lang, xcopa: _score_lareqa(p, r),
    "mewslix_map_at_20": lambda p, r, lang, xcopa: _score_mewslix(p, r),
}
assert set(_SCORERS) == set(METRICS), "every metric needs a file scorer"
FILE_FORMATS = (None, "xcopa")


def score_files(
    metric: str,
    predictions_path: PathLike,
    references_path: PathLike,
    lang: str | None = None,
    file_format: str | None = None,
) -> dict[str, Any]:
    """Read both files with the metric's readers and return the metric's score dict.

    ``file_format="xcopa"`` reads accuracy files as XCOPA JSON lines; with no format, an
    accuracy file named ``*.jsonl`` (the XTREME-R name test-<lang>.jsonl) is read so too.
    """
    if file_format not in FILE_FORMATS:
        raise ScoreInputError(f"unknown file_format {file_format!r}; known: xcopa")
    if metric not in METRICS:
        raise ScoreInputError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")

    def scorer(p: PathLike, r: PathLike) -> dict:
        return _SCORERS[metric](p, r, lang, file_format is not None)

    try:
        return scorer(predictions_path, references_path)
    except ScoreInputError:
        raise
    except ValueError as error:
        # The metric found the inputs unusable (empty, no gold answer...): say which files.
        raise ScoreInputError(
            f"cannot score {predictions_path} against {references_path} with {metric!r}: {error}"
        ) from error
