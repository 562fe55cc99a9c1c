"""Task heads, one class per task format, keyed by the format name.

A head turns the encoder's last hidden states into the outputs its format's ``decode``
expects, and into a loss when the batch carries targets. Heads know nothing about the
encoder; ``stilts_ds.modeling.multitask.MultiTaskModel`` owns the encoder and routes each
batch to its task's head.

Usage::

    head = make_head("pair_classification", hidden_size=1024, num_labels=3, dropout=0.1)
    out = head(hidden_states, batch.tensors)   # hidden_states [B, L, H] from the encoder
    out["logits"]                              # [B, 3]
    out["loss"]                                # present only when batch.tensors has "labels"

Outputs by format (``B`` rows, ``L`` tokens, ``C`` choices, ``K`` labels):

=====================  ==========================  =====================================  ==================
format                 hidden_states               outputs                                targets (tensors)
=====================  ==========================  =====================================  ==================
pair_classification    [B, L, H]                   logits [B, K]                          labels [B]
multiple_choice        [B*C, L, H]                 logits [B, C]                          labels [B]
span_qa                [B, L, H]                   start_logits, end_logits [B, L]        start/end_positions [B]
tagging                [B, L, H]                   logits [B, L, K]                       labels [B, L]
=====================  ==========================  =====================================  ==================

Every loss ignores the ``-100`` label (unlabelled rows, non-first sub-words) and is the mean
over the targets that count. A batch with no target that counts gets a loss of 0 that is
still connected to the graph, not NaN (see ``masked_cross_entropy``).

Retrieval (BUCC, Tatoeba) has no head: embeddings come from ``MultiTaskModel.embed``.

Masked language modelling (format ``mlm``) uses ``MaskedLMHead``, which wraps the
pretrained model's own LM head (XLM-R's ``lm_head``: dense, GELU, layer norm, decoder tied
to the input embeddings). It is not in ``HEADS``/``make_head``: it is built from the
encoder's checkpoint, not from a hidden size (``stilts_ds.modeling.multitask``).
"""
from __future__ import annotations

from typing import Mapping

import torch
from torch import nn
from torch.nn import functional as F

from stilts_ds.errors import StiltsError

IGNORE_INDEX = -100


def masked_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Cross entropy of ``logits`` [N, K] against ``targets`` [N], averaged over the targets
    that are not ``ignore_index``.

    Equal to ``F.cross_entropy(..., ignore_index=...)`` whenever one target counts. When none
    does (an unlabelled evaluation batch; a multi-task step that drew only unlabelled rows)
    the PyTorch mean is 0/0 = NaN, which would poison the optimizer state of every
    parameter; here it is an exact 0 that still depends on the logits, so backward and
    DeepSpeed's gradient bookkeeping run as for any other batch.
    """
    # float32 loss: under fp16/bf16 autocast the logits may be half precision.
    total = F.cross_entropy(logits.float(), targets.long(), ignore_index=ignore_index, reduction="sum")
    counted = (targets != ignore_index).sum().clamp(min=1)
    return total / counted


def _init_linear(layer: nn.Linear, initializer_range: float) -> None:
    # The encoder's own init (BERT/RoBERTa: N(0, initializer_range), zero bias): a fresh
    # head starts at the same scale as the rest of the model instead of PyTorch's
    # Kaiming-uniform default.
    nn.init.normal_(layer.weight, mean=0.0, std=initializer_range)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


class _FirstTokenScorer(nn.Module):
    """RoBERTa's classification head on the first token (<s> / [CLS]): dropout, dense,
    tanh, dropout, out_proj. The dense + tanh pair plays the part of BERT's pooler, which
    the encoders here are built without."""

    def __init__(self, hidden_size: int, num_outputs: int, dropout: float, initializer_range: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.out_proj = nn.Linear(hidden_size, num_outputs)
        _init_linear(self.dense, initializer_range)
        _init_linear(self.out_proj, initializer_range)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        x = self.dropout(hidden_states[:, 0])
        x = torch.tanh(self.dense(x))
        return self.out_proj(self.dropout(x))


class ClassificationHead(nn.Module):
    """Sentence(-pair) classification: ``num_labels`` logits from the first token."""

    FORMAT = "pair_classification"

    def __init__(self, hidden_size: int, num_labels: int, dropout: float = 0.1, initializer_range: float = 0.02):
        super().__init__()
        if num_labels < 2:
            raise ValueError(f"a classification head needs at least 2 labels, got {num_labels}")
        self.num_labels = num_labels
        self.scorer = _FirstTokenScorer(hidden_size, num_labels, dropout, initializer_range)

    def forward(self, hidden_states: torch.Tensor, tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        logits = self.scorer(hidden_states)
        out = {"logits": logits}
        if "labels" in tensors:
            out["loss"] = masked_cross_entropy(logits, tensors["labels"].reshape(-1))
        return out


class MultipleChoiceHead(nn.Module):
    """One score per (prompt, choice) pair from its first token; the C scores of an example
    are its logits and the loss is cross entropy over them.

    The parameters do not depend on the number of choices, so one head can serve tasks
    with 4 and 5 choices (HellaSwag, CommonsenseQA); ``num_choices`` is only the fallback
    when the batch tensors do not show it (``input_ids`` [B, C, L]).
    """

    FORMAT = "multiple_choice"

    def __init__(self, hidden_size: int, num_choices: int, dropout: float = 0.1, initializer_range: float = 0.02):
        super().__init__()
        if num_choices < 2:
            raise ValueError(f"a multiple-choice head needs at least 2 choices, got {num_choices}")
        self.num_choices = num_choices
        self.scorer = _FirstTokenScorer(hidden_size, 1, dropout, initializer_range)

    def forward(self, hidden_states: torch.Tensor, tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        ids = tensors.get("input_ids")
        num_choices = ids.shape[1] if ids is not None and ids.dim() == 3 else self.num_choices
        if hidden_states.shape[0] % num_choices:
            raise ValueError(
                f"multiple choice: {hidden_states.shape[0]} (prompt, choice) rows do not split into "
                f"{num_choices} choices per example"
            )
        logits = self.scorer(hidden_states).view(-1, num_choices)
        out = {"logits": logits}
        if "labels" in tensors:
            out["loss"] = masked_cross_entropy(logits, tensors["labels"].reshape(-1))
        return out


class SpanQAHead(nn.Module):
    """Extractive QA: a start and an end logit per token (Hugging Face ``qa_outputs``).

    Padding positions (``attention_mask`` 0) get the most negative value of the logits'
    dtype, so neither the softmax of the loss nor a later top-k ever picks them. The loss
    is the mean of the start and end cross entropies; positions are clamped to
    ``[0, L]`` and ``L`` is ignored, as Hugging Face does for a gold position that falls
    outside a (trimmed) sequence.
    """

    FORMAT = "span_qa"

    def __init__(self, hidden_size: int, num_labels: int = 2, dropout: float = 0.1, initializer_range: float = 0.02):
        super().__init__()
        # num_labels and dropout are accepted so every head has one constructor; a span
        # head always has two outputs and, like HF's, no dropout of its own.
        self.qa_outputs = nn.Linear(hidden_size, 2)
        _init_linear(self.qa_outputs, initializer_range)

    def forward(self, hidden_states: torch.Tensor, tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        start_logits, end_logits = self.qa_outputs(hidden_states).unbind(dim=-1)  # [B, L] each
        mask = tensors.get("attention_mask")
        if mask is not None:
            pad = mask == 0
            very_negative = torch.finfo(start_logits.dtype).min
            start_logits = start_logits.masked_fill(pad, very_negative)
            end_logits = end_logits.masked_fill(pad, very_negative)
        out = {"start_logits": start_logits, "end_logits": end_logits}
        if "start_positions" in tensors and "end_positions" in tensors:
            length = start_logits.shape[1]
            start = tensors["start_positions"].reshape(-1).clamp(0, length)
            end = tensors["end_positions"].reshape(-1).clamp(0, length)
            out["loss"] = (
                masked_cross_entropy(start_logits, start, ignore_index=length)
                + masked_cross_entropy(end_logits, end, ignore_index=length)
            ) / 2
        return out


class TaggingHead(nn.Module):
    """Token tagging: dropout and a linear layer on every token; the loss counts only the
    first sub-word of each word (the others carry -100)."""

    FORMAT = "tagging"

    def __init__(self, hidden_size: int, num_labels: int, dropout: float = 0.1, initializer_range: float = 0.02):
        super().__init__()
        if num_labels < 1:
            raise ValueError(f"a tagging head needs at least 1 label, got {num_labels}")
        self.num_labels = num_labels
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_size, num_labels)
        _init_linear(self.classifier, initializer_range)

    def forward(self, hidden_states: torch.Tensor, tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        logits = self.classifier(self.dropout(hidden_states))
        out = {"logits": logits}
        if "labels" in tensors:
            out["loss"] = masked_cross_entropy(logits.reshape(-1, self.num_labels), tensors["labels"].reshape(-1))
        return out


class MaskedLMHead(nn.Module):
    """Masked language modelling with a transformers LM head module (``lm_head`` maps hidden
    states [..., H] to vocabulary logits [..., V]).

    With ``labels`` (-100 except at the predicted positions) the head runs only on the
    predicted positions: logits [M, V] for the M of them and the mean cross entropy. Full
    [B, L, V] logits would cost B x L x 250k floats for XLM-R's vocabulary, mostly for
    positions the loss ignores. Without labels: logits [B, L, V].
    """

    FORMAT = "mlm"

    def __init__(self, lm_head: nn.Module):
        super().__init__()
        self.lm_head = lm_head

    def forward(self, hidden_states: torch.Tensor, tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        labels = tensors.get("labels")
        if labels is None:
            return {"logits": self.lm_head(hidden_states)}
        keep = labels != IGNORE_INDEX
        # Boolean indexing keeps the graph; with no predicted position the head still runs
        # (on zero rows), so ZeRO-3 sees the same parameters used on every rank.
        logits = self.lm_head(hidden_states[keep])
        return {"logits": logits, "loss": masked_cross_entropy(logits, labels[keep])}


HEADS: dict[str, type[nn.Module]] = {
    "pair_classification": ClassificationHead,
    "multiple_choice": MultipleChoiceHead,
    "span_qa": SpanQAHead,
    "tagging": TaggingHead,
}


def _format(name: str):
    from stilts_ds.tasks.formats import format_of

    try:
        return format_of(name)
    except KeyError as e:
        raise StiltsError(str(e.args[0])) from None


def make_head(format: str, hidden_size: int, num_labels: int, dropout: float = 0.1, initializer_range: float = 0.02) -> nn.Module:
    """A fresh head for ``format``; ``num_labels`` is the number of choices for multiple
    choice and is ignored for span QA."""
    fmt = _format(format)
    if not fmt.has_head:
        raise StiltsError(f"{format} tasks have no trained head; score them with MultiTaskModel.embed")
    if fmt.pretrained_head:
        raise StiltsError(f"the {format} head is the pretrained model's LM head: build it with MultiTaskModel.build, "
                          "which loads it with the encoder")
    if format not in HEADS:
        raise StiltsError(f"no head for format {format!r}; known: {', '.join(HEADS)}")
    return HEADS[format](hidden_size, num_labels, dropout=dropout, initializer_range=initializer_range)
