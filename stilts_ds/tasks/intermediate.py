"""The nine English intermediate tasks of Phang et al. (2020), as TaskSpecs."""
from __future__ import annotations

from stilts_ds.tasks import readers
from stilts_ds.tasks.formats.base import ChoiceOptions, SpanOptions
from stilts_ds.tasks.spec import INTERMEDIATE, PARQUET_BRANCH, HubPart, TaskSpec

EN = ("en",)


def _anli_plus_parts(split: str, lang: str):
    # ANLI+ = ANLI rounds 1-3 + MNLI + SNLI under one 3-way NLI label set (one head).
    anli = {"train": "train", "validation": "dev", "test": "test"}[split]
    mnli = {"train": "train", "validation": "validation_matched"}.get(split)
    parts = [HubPart("facebook/anli", None, f"{anli}_r{r}") for r in (1, 2, 3)]
    if mnli:  # MNLI's test labels are hidden
        parts.append(HubPart("nyu-mll/glue", "mnli", mnli))
    parts.append(HubPart("stanfordnlp/snli", None, split))
    return parts


def _simple(path: str, name: str | None, mapping: dict[str, str], revision: str | None = None):
    return lambda split, lang: [HubPart(path, name, mapping[split], revision=revision)]


TRAIN_DEV = {"train": EN, "validation": EN}

INTERMEDIATE_TASKS = [
    TaskSpec(
        name="anli_plus", kind=INTERMEDIATE, format="pair_classification", metric="accuracy",
        description="ANLI r1-r3 + MNLI + SNLI, one 3-way NLI head",
        splits={"train": EN, "validation": EN, "test": EN}, reader=readers.nli,
        hub_parts=_anli_plus_parts, labels=readers.NLI_LABELS,
    ),
    TaskSpec(
        name="mnli", kind=INTERMEDIATE, format="pair_classification", metric="accuracy",
        description="MultiNLI (GLUE), 3-way NLI", splits=TRAIN_DEV, reader=readers.nli,
        hub_parts=_simple("nyu-mll/glue", "mnli", {"train": "train", "validation": "validation_matched"}),
        labels=readers.NLI_LABELS,
    ),
    TaskSpec(
        name="qqp", kind=INTERMEDIATE, format="pair_classification", metric="accuracy",
        description="Quora Question Pairs (GLUE), paraphrase", splits=TRAIN_DEV, reader=readers.qqp,
        hub_parts=_simple("nyu-mll/glue", "qqp", {"train": "train", "validation": "validation"}),
        labels=readers.QQP_LABELS,
    ),
    TaskSpec(
        name="squad_v1", kind=INTERMEDIATE, format="span_qa", metric="squad_v1",
        description="SQuAD v1.1, extractive QA", splits=TRAIN_DEV, reader=readers.squad,
        hub_parts=_simple("rajpurkar/squad", None, {"train": "train", "validation": "validation"}),
    ),
    TaskSpec(
        name="squad_v2", kind=INTERMEDIATE, format="span_qa", metric="squad_v2",
        description="SQuAD v2.0, extractive QA with unanswerable questions", splits=TRAIN_DEV,
        reader=readers.squad,
        hub_parts=_simple("rajpurkar/squad_v2", None, {"train": "train", "validation": "validation"}),
        options=SpanOptions(version_2_with_negative=True),
    ),
    TaskSpec(
        name="hellaswag", kind=INTERMEDIATE, format="multiple_choice", metric="accuracy",
        description="HellaSwag, 4-way sentence completion", splits=TRAIN_DEV, reader=readers.hellaswag,
        hub_parts=_simple("Rowan/hellaswag", None, {"train": "train", "validation": "validation"},
                          revision=PARQUET_BRANCH),
        options=ChoiceOptions(num_choices=4),
    ),
    TaskSpec(
        name="cosmosqa", kind=INTERMEDIATE, format="multiple_choice", metric="accuracy",
        description="CosmosQA, 4-way commonsense reading comprehension", splits=TRAIN_DEV,
        reader=readers.cosmosqa,
        hub_parts=_simple("allenai/cosmos_qa", None, {"train": "train", "validation": "validation"},
                          revision=PARQUET_BRANCH),
        options=ChoiceOptions(num_choices=4),
    ),
    TaskSpec(
        name="commonsenseqa", kind=INTERMEDIATE, format="multiple_choice", metric="accuracy",
        description="CommonsenseQA, 5-way", splits=TRAIN_DEV, reader=readers.commonsenseqa,
        hub_parts=_simple("tau/commonsense_qa", None, {"train": "train", "validation": "validation"}),
        options=ChoiceOptions(num_choices=5),
    ),
    TaskSpec(
        name="ccg", kind=INTERMEDIATE, format="tagging", metric="tag_accuracy",
        description="CCGbank supertagging (licensed: local files only)",
        splits={"train": EN, "validation": EN, "test": EN}, reader=readers.ccg, hub_parts=None,
        labels_file="tags.txt",
        local_only_help=(
            "CCGbank is licensed (LDC2005T13) and cannot be downloaded: convert your copy to "
            "<data-dir>/ccg/{train,validation,test}.jsonl with one sentence per line as "
            '{"tokens": ["Pierre", ...], "tags": ["N/N", ...]} (one supertag per token) and '
            "list every supertag, one per line, in <data-dir>/ccg/tags.txt"
        ),
    ),
]
