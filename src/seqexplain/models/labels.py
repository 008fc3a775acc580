"""The label of a classifier input: given (an index or a name) or the model's own prediction, for one input or
for many at once.

Classifier adapters mix in :class:`ClassifierLabels` before :class:`~seqexplain.models.base.SequenceModel` and
define :meth:`ClassifierLabels.encode_input` (the input's :class:`Example` with a placeholder label) and
``label_names()``; encoding, label lookup and foils are then the same for every classifier. The predicted labels
of several inputs (``target=None``) come from shared forwards (:func:`predicted_labels`), so ``explain_many`` on
unlabelled texts does not run one forward per text before explaining them; a label too close to call in a shared
forward is predicted again alone (:mod:`seqexplain.models.batching`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from seqexplain.errors import InputError
from seqexplain.models.base import SequenceModel
from seqexplain.models.batching import length_groups, near_tie, tie_margin
from seqexplain.models.example import Example, Part
from seqexplain.models.module_state import eval_mode
from seqexplain.progress import add_total, advance


def label_index(names: Sequence[str], label: Any) -> int:
    """The index of ``label`` among ``names``: an index (int, 0-d tensor or a string of ASCII digits written as
    Python writes the number: "1", not "01" or "¹") or a name (case-insensitive); :class:`InputError` naming the
    labels otherwise."""
    if isinstance(label, (int, np.integer, torch.Tensor)) and not isinstance(label, bool):
        i = int(label)
        if not 0 <= i < len(names):
            raise InputError(f"label index {i} is out of range; the labels are 0..{len(names) - 1}: "
                             f"{', '.join(names)}")
        return i
    lowered = {str(n).lower(): i for i, n in enumerate(names)}
    key = str(label).strip().lower()
    if key in lowered:
        return lowered[key]
    if (i := _written_index(key)) is not None:
        return label_index(names, i)
    raise InputError(f"unknown label {label!r}; the labels are: {', '.join(names)}")


def _written_index(key: str) -> int | None:
    """``key`` as a label index when it is one written plainly (ASCII digits, no leading zero), else None."""
    return int(key) if key.isascii() and key.isdigit() and key == str(int(key)) else None


def label_readings(names: Sequence[str], label: Any) -> tuple[int, int] | None:
    """``(as_index, as_name)`` for a label that reads both as an index and as the name of another label (labels
    named "1", "2", "3": 1 and "1" read as index 1, "2", and as the name of index 0); None when it reads one way
    only. :func:`label_index` takes an int as an index and a string as a name."""
    if isinstance(label, bool) or label is None:
        return None
    if isinstance(label, torch.Tensor) and label.numel() != 1:
        return None
    lowered = {str(n).strip().lower(): i for i, n in enumerate(names)}
    if isinstance(label, (int, np.integer, torch.Tensor)):
        i: int | None = int(label)
        j = lowered.get(str(i))
    else:
        key = str(label).strip().lower()
        i, j = _written_index(key), lowered.get(key)
    if i is None or j is None or i == j or not 0 <= i < len(names):
        return None
    return i, j


def ambiguous_label(names: Sequence[str], label: Any, what: str = "target") -> str | None:
    """The warning for a label that reads both as an index and as the name of another label
    (:func:`label_readings`), saying which reading :func:`label_index` took and how to give the other; None when
    the label reads one way only."""
    readings = label_readings(names, label)
    if readings is None:
        return None
    i, j = readings
    if isinstance(label, (int, np.integer, torch.Tensor)):
        return (f"{what} label {i} is read as the index {i} ({names[i]!r}), but the model also has a label named "
                f"{str(i)!r} (index {j}): give the name {names[j]!r} as a string to explain that one")
    return (f"{what} label {label!r} is read as the label named {names[j]!r} (index {j}), not as the index {i} "
            f"({names[i]!r}): give the name {names[i]!r} to explain that one")


def predicted_labels(model: SequenceModel, examples: Sequence[Example]) -> list[list[int]]:
    """The argmax label of every target of each example (placeholder target ids; one target for a classifier, one
    per token for a labeller): examples sorted by length and packed into forwards of up to
    :meth:`~SequenceModel.default_pack_tokens` tokens (:func:`~seqexplain.models.batching.length_groups`). An
    example with a target whose two best logits are too close for a shared forward to decide
    (:func:`~seqexplain.models.batching.near_tie`) is predicted again alone, so every label is the one a forward of
    that example alone gives."""
    labels: list[list[int]] = [[] for _ in examples]
    margin = tie_margin(model.autocast)
    groups = length_groups([ex.length for ex in examples], model.default_pack_tokens())
    add_total(len(examples))
    with torch.no_grad(), eval_mode(model.model):
        for group in groups:
            outs = [z[0] for z in model.logits_parts([Part(examples[k]) for k in group])]  # [T, C] each
            for k, out in zip(group, outs, strict=True):
                if len(group) > 1 and any(near_tie(row, margin) for row in out):
                    out = model.logits(examples[k])[0]
                labels[k] = out.float().argmax(-1).tolist()
            advance(len(group))
    return labels


class ClassifierLabels:
    """Encoding, label lookup and foils of a classifier adapter (module docstring). The adapter supplies
    ``label_names()`` (:meth:`SequenceModel.label_names`) and :meth:`encode_input`."""

    label_names: Any  # the adapter's SequenceModel.label_names

    def encode_input(self, text: Any, **options: Any) -> Example:
        """The :class:`Example` of ``text`` with a placeholder label (``target_ids`` one zero)."""
        raise NotImplementedError

    def encode_inputs(self, texts: Sequence[Any], **options: Any) -> list[Example]:
        """:meth:`encode_input` of each text, in order (an adapter whose tokenizer reads many texts in one call
        overrides it)."""
        return [self.encode_input(text, **options) for text in texts]

    def label_index(self, label: Any) -> int:
        """A label given as an index or a name (:func:`label_index`)."""
        return label_index(self.label_names(), label)

    def target_name(self, example: Example, token_id: int) -> str:
        names = self.label_names()
        return names[token_id] if 0 <= token_id < len(names) else str(token_id)

    def encode(self, text: Any, target: Any = None, **options: Any) -> Example:
        """Encode ``text``; ``target`` is a label index or name (``None``: the predicted label)."""
        return self.encode_many([(text, target)], **options)[0]

    def encode_many(self, requests: Sequence[tuple[Any, Any]], **options: Any) -> list[Example]:
        """:meth:`encode` of each ``(text, target)``, in order; the labels of those without a target predicted in
        shared forwards (:func:`predicted_labels`), each equal to one :meth:`encode`'s."""
        names = self.label_names()
        examples = self.encode_inputs([text for text, _ in requests], **options)
        labels: list[int | None] = [None if target is None else label_index(names, target) for _, target in requests]
        todo = [k for k, label in enumerate(labels) if label is None]
        assert isinstance(self, SequenceModel)
        for k, (label,) in zip(todo, predicted_labels(self, [examples[k] for k in todo]), strict=True):
            labels[k] = label
        out = []
        for ex, label, (_, target) in zip(examples, labels, requests, strict=True):
            assert label is not None
            warning = ambiguous_label(names, target)
            out.append(ex.replace(target_ids=torch.tensor([label], dtype=torch.long), target_tokens=[names[label]],
                                  target_text=names[label], warnings=[*ex.warnings, *([warning] if warning else [])]))
        return out

    def with_objective(self, example: Example, objective: str = "logprob", foil: Any = None) -> Example:
        """:meth:`SequenceModel.with_objective`, warning when the foil label reads both as an index and as another
        label's name (:func:`ambiguous_label`)."""
        out = super().with_objective(example, objective, foil)  # type: ignore[misc]
        label = foil[0] if isinstance(foil, (list, tuple)) and len(foil) == 1 else foil
        warning = ambiguous_label(self.label_names(), label, "foil") if objective == "contrast" else None
        return out if warning is None else out.replace(warnings=[*out.warnings, warning])

    def foil_ids(self, example: Example, foil: Any) -> tuple[torch.Tensor, list[str]]:
        """A foil label (index or name, or a list of one): "why this label rather than that one"."""
        if isinstance(foil, (list, tuple)):
            if len(foil) != 1:
                raise InputError("a classifier takes one foil label")
            foil = foil[0]
        label = self.label_index(foil)
        return torch.tensor([label], dtype=torch.long), [self.label_names()[label]]
