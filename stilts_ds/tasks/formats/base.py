"""The Format protocol: everything that differs between task formats, in one object each.

Code outside ``stilts_ds.tasks`` never asks which format a task has; it asks the task's
format object what to do::

    from stilts_ds.tasks.formats import format_of

    fmt = format_of(spec)                              # one object per format
    length = fmt.max_length(256, 384)                  # span QA reads the longer one
    feats = fmt.featurize(spec, examples, tokenizer, length, labels)   # references ride along
    n = fmt.num_labels(spec, labels)                   # the head's output size
    batch = fmt.collate(feats, rows, seed=seed, step=step)
    inputs = fmt.model_inputs(batch.tensors)           # [B, C, L] -> [B*C, L] for multiple choice
    preds = fmt.decode(spec, feats, outputs)           # outputs: fmt.output_keys, gathered
    scores = fmt.score(spec, feats, preds, lang)       # the task's official metric
    stats = fmt.example_stats(spec, feats, preds, lang)   # per example; stats.score() == scores
    fmt.evaluate(spec, predict, splits, dev=..., examples=keep)   # phase 3: {lang: scores};
                                                       # keep(lang, stats) per language if given

Each format module (``pair_classification``, ``multiple_choice``, ``span_qa``, ``tagging``,
``retrieval``, ``mlm``) keeps its plain functions (featurize, collate, decode, references,
score) and defines one subclass of ``Format`` that calls them; its ``FORMAT`` is that
object. ``stilts_ds.tasks.formats.format_of`` returns it for a spec, a name or a Features.

Per-format options of a task are typed (``ChoiceOptions``, ``SpanOptions``) and live in
``TaskSpec.options``; a format reads its own with ``options_of(spec)``.
"""
from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from stilts_ds.metrics.example_stats import ExampleStats, score_mismatch
from stilts_ds.tasks.alignment import aligned
from stilts_ds.tasks.features import Batch, Features

if TYPE_CHECKING:  # the spec names its options' types; formats only read specs
    from stilts_ds.tasks.spec import TaskSpec


@dataclass(frozen=True)
class FormatOptions:
    """Base of a format's typed task options (a task without any holds None)."""


@dataclass(frozen=True)
class ChoiceOptions(FormatOptions):
    """Multiple choice: how many candidate answers each example has."""

    num_choices: int

    def __post_init__(self):
        if self.num_choices < 2:
            raise ValueError(f"num_choices must be at least 2, got {self.num_choices}")


@dataclass(frozen=True)
class SpanOptions(FormatOptions):
    """Span QA: SQuAD v2's unanswerable questions (the null answer competes with spans)."""

    version_2_with_negative: bool = False


# predict(features) -> {output key: array gathered in row order}; the engine supplies it.
Predict = Callable[[Features], Mapping[str, np.ndarray]]
# keep(lang, stats): what evaluate hands over per language besides the scores.
KeepExamples = Callable[[str, ExampleStats], None]

log = logging.getLogger(__name__)


class Format:
    """One task format. Subclasses set the class attributes and override what differs; the
    default hooks call the plain functions of the module the subclass is defined in
    (``references(examples)``, ``collate(features, rows)``, ``decode(features, logits)``,
    ``score(metric, references, predictions, lang)``), which fits the formats decoded from
    one ``logits`` output."""

    name: str = ""
    # The options type a task of this format carries (None: it takes none).
    options_type: type | None = None
    # Model outputs decode needs, as the engine collects them.
    output_keys: tuple[str, ...] = ("logits",)
    # Outputs with one value per token, padded back to the table's width after dynamic
    # padding (and the value they are padded with).
    token_outputs: bool = False
    output_pad: float = 0.0
    # A head on the encoder (False: scored from the bare encoder's embeddings).
    has_head: bool = True
    # The head's output size is the label count, so tasks share a head only at equal counts.
    sized_by_labels: bool = True
    # The head is the encoder checkpoint's own (mlm: its LM head), not a fresh one.
    pretrained_head: bool = False
    # Phase 1/2 can train on it; phase 3 can score it (mlm trains only, retrieval scores only).
    trains: bool = True
    scores: bool = True
    # Its training rows count toward a phase's epochs. False for raw text (mlm): a corpus
    # counted in blocks says nothing about how long the tasks should train, so it is an extra
    # sampling share on top of them (TrainConfig.epoch_rows).
    counts_toward_epochs: bool = True
    # Reads the config's long-input length (span QA's contexts) instead of the common one.
    long_inputs: bool = False
    # One label per row of one sequence ([B, L] in, [B, K] out): the shape of the serving
    # benchmark's default task and of synthetic throughput rows.
    row_label: bool = False

    # ------------------------------------------------------------------ options and shapes
    def options_of(self, spec: "TaskSpec"):
        """The spec's typed options for this format (checked)."""
        opts = spec.options
        if self.options_type is None:
            if opts is not None:
                raise TypeError(f"task {spec.name!r}: format {self.name} takes no options, got {opts!r}")
            return None
        if opts is None:
            return self.options_type()  # every field defaulted, or a TypeError naming the missing one
        if not isinstance(opts, self.options_type):
            raise TypeError(f"task {spec.name!r}: format {self.name} takes {self.options_type.__name__}, "
                            f"got {type(opts).__name__}")
        return opts

    def max_length(self, max_length: int, long_max_length: int) -> int:
        return long_max_length if self.long_inputs else max_length

    def num_labels(self, spec: "TaskSpec", labels: Sequence[str] | None) -> int:
        """The head's output size: the label count (``labels``: the task's label set, from
        the spec or the user's labels file)."""
        if labels is None:
            raise ValueError(f"task {spec.name!r} has no label set: pass the labels from its labels file")
        return len(labels)

    def sequences_per_row(self, spec: "TaskSpec") -> int:
        """Encoder sequences one feature row costs (a multiple-choice row: one per choice)."""
        return 1

    # ------------------------------------------------------------------ data
    def featurize(self, spec: "TaskSpec", examples: Sequence, tokenizer, max_length: int,
                  labels: Sequence[str] | None = None) -> Features:
        """The examples' feature table, with their gold answers in ``extras["references"]``
        so that evaluation scores from the cache alone."""
        feats = self._featurize(spec, examples, tokenizer, max_length, labels)
        return replace(feats, extras={**feats.extras, "references": self.references(examples)})

    def _featurize(self, spec, examples, tokenizer, max_length, labels) -> Features:
        raise NotImplementedError

    @property
    def module(self):
        """The format's module: its Example type and plain functions."""
        return sys.modules[type(self).__module__]

    def references(self, examples: Sequence) -> Mapping[str, Any]:
        return self.module.references(examples)

    def quality(self, feats: Features, max_length: int, unk_id: int | None = None) -> dict[str, Any]:
        """Figures that say whether a featurized split is what it should be: rows, examples,
        examples cut short (a row that fills ``max_length``) and, given the tokenizer's
        ``unk_id``, the share of real tokens it could not represent (``unk_rate``: a
        tokenizer that does not cover the language)."""
        lengths = feats.columns.get("lengths")
        truncated = 0
        if lengths is not None and len(lengths):
            full = np.asarray(lengths) >= max_length
            truncated = len({str(g) for g in feats.guids[full]}) if full.any() else 0
        figures: dict[str, Any] = {"rows": len(feats), "examples": len(set(map(str, feats.guids))),
                                   "truncated": truncated}
        ids, mask = feats.columns.get("input_ids"), feats.columns.get("attention_mask")
        if unk_id is not None and ids is not None and mask is not None:
            real = int(np.asarray(mask).sum())
            figures["unk_rate"] = round(float(((np.asarray(ids) == unk_id) & (np.asarray(mask) == 1)).sum()) / real,
                                        4) if real else 0.0
        return figures

    def collate(self, feats: Features, rows: Sequence[int], *, seed: int = 0, step: int = 0) -> Batch:
        """A batch of ``rows``; ``seed``/``step`` reach formats that draw per batch (mlm)."""
        return self.module.collate(feats, rows)

    # ------------------------------------------------------------------ model
    def model_inputs(self, tensors: Mapping[str, Any]) -> Mapping[str, Any]:
        """Encoder inputs of a batch, shaped as the encoder takes them ([N, L])."""
        return tensors

    def pad_output(self, key: str, values: np.ndarray, width: int) -> np.ndarray:
        """A batch's token-axis output padded back to the table's ``width`` (dynamic padding
        made batches narrower) so that batches of different widths stack."""
        if not self.token_outputs or values.ndim < 2 or values.shape[1] >= width:
            return values
        pad = [(0, 0)] * values.ndim
        pad[1] = (0, width - values.shape[1])
        return np.pad(values, pad, constant_values=self.output_pad)

    # ------------------------------------------------------------------ scoring
    def decode(self, spec: "TaskSpec", feats: Features, outputs: Mapping[str, np.ndarray], *,
               tuned: Any = None) -> Mapping[str, Any]:
        """``{guid: prediction}`` from the gathered ``outputs``; ``tuned``: what
        ``tune`` found on the dev split, for formats that tune (BUCC's threshold)."""
        return self.module.decode(feats, outputs["logits"])

    def score(self, spec: "TaskSpec", feats: Features, predictions: Mapping[str, Any],
              lang: str | None) -> dict[str, float]:
        """The task's official metric over ``predictions`` against the references in ``feats``."""
        return self.module.score(spec.metric, feats.extras["references"], predictions, lang)

    def example_stats(self, spec: "TaskSpec", feats: Features, predictions: Mapping[str, Any],
                      lang: str | None) -> ExampleStats:
        """``score``'s per-example sufficient statistics (``stilts_ds.metrics.example_stats``):
        one row per example, guid order kept, whose column sums give ``score`` back
        (``stats.score()``); what the bootstrap resamples."""
        stats = getattr(self.module, "example_stats", None)
        if stats is None:
            raise NotImplementedError(f"format {self.name} is not scored")
        return stats(spec.metric, feats.extras["references"], predictions, lang)

    def needs_dev(self, spec: "TaskSpec") -> bool:
        """Whether evaluation first tunes on the task's dev split in the same language."""
        return False

    def tune(self, spec: "TaskSpec", dev: Features, outputs: Mapping[str, np.ndarray]) -> Any:
        """What evaluation tunes on the dev split (``needs_dev``); None when nothing."""
        return None

    def evaluate(self, spec: "TaskSpec", predict: Predict, splits: Iterable[tuple[str, Features]], *,
                 dev: Features | None = None, examples: KeepExamples | None = None) -> dict[str, dict[str, float]]:
        """Phase 3 of one task: ``{lang: scores}`` for each (lang, features) of ``splits``
        (an iterable: a caller may read one language's table at a time), tuning on ``dev``
        first where the format does. With ``examples``, each language's per-example
        statistics go to ``examples(lang, stats)`` as soon as it is scored."""
        tuned = self.tune(spec, dev, predict(dev)) if self.needs_dev(spec) and dev is not None else None
        out = {}
        for lang, feats in splits:
            preds = self.decode(spec, feats, predict(feats), tuned=tuned)
            out[lang] = self.score(spec, feats, preds, lang)
            if examples is not None:
                stats = self.example_stats(spec, feats, preds, lang)
                off = score_mismatch(stats, out[lang])
                if off:  # a bug in the statistics: the intervals would not be about this score
                    log.warning("%s %s: per-example statistics do not reproduce %s (%s vs %s)", spec.name, lang,
                                ", ".join(off), stats.score(), out[lang])
                examples(lang, stats)
        return out

    def __repr__(self) -> str:
        return f"<format {self.name}>"


def accuracy_pairs(what: str, metric: str, refs: Mapping, predictions: Mapping) -> tuple:
    """(gold, predicted) aligned by guid, for a format scored by accuracy alone (``what``
    names it in the error): its ``score`` and ``example_stats`` share this one check."""
    if metric != "accuracy":
        raise ValueError(f"{what} is scored by accuracy, not {metric!r}")
    return aligned(refs, predictions)
