"""Evaluation metrics: pure functions from labels/predictions to scores (x100).

Usage::

    from stilts_ds.metrics import METRICS, accuracy, squad_v1_em_f1, mlqa_em_f1, seqeval_f1

    accuracy(["a", "b"], ["a", "a"])                        # {"accuracy": 50.0}
    squad_v1_em_f1({"q1": ["Paris"]}, {"q1": "paris."})     # {"exact_match": 100.0, "f1": 100.0}

Every function here reproduces the official XTREME scorer (xtreme ``evaluate.py`` and its
``third_party`` SQuAD/MLQA scripts, the official SQuAD v2.0 script, seqeval 1.2.2),
quirks included; each module's docstring lists the quirks. ``METRICS`` names the metrics
a task spec may refer to (``stilts_ds.evaluation.score_files`` scores files by these
names). This package imports nothing from torch, deepspeed, ray or ``stilts_ds.tasks``.

Every metric also has per-example sufficient statistics (``example_stats``: rows whose column
sums give the score back, ``ExampleStats``, ``STATS``), from which ``uncertainty`` draws
bootstrap intervals and paired tests.
"""

from stilts_ds.metrics.aggregate import (
    XTREME_R_GROUPS,
    XTREME_R_LANGUAGES,
    task_score,
    xtreme_r_score,
    xtreme_score,
)
from stilts_ds.metrics.classification import accuracy, accuracy_example_stats
from stilts_ds.metrics.example_stats import STATS, ExampleStats, combine
from stilts_ds.metrics.mlqa import (
    SUPPORTED_LANGUAGES as MLQA_LANGUAGES,
    mixed_segmentation,
    mlqa_em_f1,
    mlqa_example_stats,
    mlqa_normalize_answer,
)
from stilts_ds.metrics.qa_common import UnansweredQuestionWarning
from stilts_ds.metrics.retrieval import (
    bucc_best_threshold,
    bucc_example_stats,
    bucc_f1,
    bucc_pairs_above,
    map_at_k_example_stats,
    mean_average_precision_at_k,
    mewslix_map_at_k,
    tatoeba_accuracy,
    tatoeba_example_stats,
)
from stilts_ds.metrics.squad import (
    normalize_answer,
    squad_v1_em_f1,
    squad_v1_example_stats,
    squad_v2_em_f1,
    squad_v2_example_stats,
)
from stilts_ds.metrics.tagging import (
    seqeval_example_stats,
    seqeval_f1,
    tag_accuracy,
    tag_accuracy_example_stats,
)

METRICS: dict[str, str] = {
    "accuracy": "classification accuracy, x100 (XNLI, PAWS-X, XCOPA)",
    "squad_v1": "SQuAD v1.1 exact match and F1, x100 (XQuAD, TyDiQA-GoldP, SQuAD v1.1)",
    "mlqa": "MLQA exact match and F1 with per-language normalisation, x100 (needs lang)",
    "squad_v2": "SQuAD v2.0 exact match and F1 with has-answer/no-answer breakdown, x100",
    "seqeval_f1": "seqeval chunk F1/precision/recall, x100 (PAN-X, UD-POS)",
    "tag_accuracy": "token-level tagging accuracy, x100 (CCG supertags)",
    "bucc_f1": "F1/precision/recall of mined sentence-id pairs, x100 (BUCC)",
    "tatoeba_accuracy": "accuracy of retrieved sentence indices, x100 (Tatoeba)",
    "lareqa_map_at_20": "mAP@20 of ranked answer sentences, every listed gold relevant, x100 (LAReQA)",
    "mewslix_map_at_20": "mAP@20 (= MRR@20) of ranked entity ids against the first gold id, x100 (Mewsli-X)",
}

__all__ = [
    "METRICS",
    "STATS",
    "ExampleStats",
    "MLQA_LANGUAGES",
    "UnansweredQuestionWarning",
    "accuracy",
    "accuracy_example_stats",
    "bucc_best_threshold",
    "bucc_example_stats",
    "bucc_f1",
    "bucc_pairs_above",
    "XTREME_R_GROUPS",
    "XTREME_R_LANGUAGES",
    "combine",
    "map_at_k_example_stats",
    "mean_average_precision_at_k",
    "mewslix_map_at_k",
    "mixed_segmentation",
    "mlqa_em_f1",
    "mlqa_example_stats",
    "mlqa_normalize_answer",
    "normalize_answer",
    "seqeval_example_stats",
    "seqeval_f1",
    "squad_v1_em_f1",
    "squad_v1_example_stats",
    "squad_v2_em_f1",
    "squad_v2_example_stats",
    "tag_accuracy",
    "tag_accuracy_example_stats",
    "task_score",
    "tatoeba_accuracy",
    "tatoeba_example_stats",
    "xtreme_r_score",
    "xtreme_score",
]
