"""The data the model interface (:class:`~seqexplain.models.base.SequenceModel`) passes around.

* :class:`Example`: one input and its targets on the adapter's input axis, with ``visibility[T, L]`` and the
  objective (what ``SequenceModel.encode`` returns and every method explains).
* :class:`Part`: rows of one example in a shared forward (``keep`` / ``embeds`` / ``rows_target``: what
  ``SequenceModel.logits_many`` evaluates).
* :class:`AttentionSegment`: which attention maps and rows explain a stretch of the input axis (what
  ``SequenceModel.attention_view`` returns).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch

from seqexplain.errors import InputError


@dataclass
class Example:
    """One input and its targets on the adapter's input axis.

    ``input_ids[L]`` (token ids) or ``input_vectors[L, D]`` (precomputed vectors, for models over frozen encoder
    features); ``tokens`` / ``offsets`` / ``segments`` per position (offsets into ``text`` for segment "source",
    into ``target_text`` for "target", ``None`` for special tokens); ``target_positions[i]`` is the position of
    target ``i`` on the axis (``None`` when the target has no position, e.g. a classifier's label);
    ``visibility[i, j]`` is True when position ``j`` can influence target ``i`` (set by the adapter; when an example
    is built by hand without it, a target sees the positions before its own, and a target without a position
    sees all);
    ``groups`` names groupings of positions (each a list of groups, each a list of positions); ``warnings`` hold for
    every result on the example, ``keep_warnings`` only for results of methods that drop positions through the
    keep-mask (occlusion, rationales, faithfulness with ``removal="drop"``): what deleting a token means for this
    model when it cannot keep the kept tokens' original positions."""

    kind: str
    input_ids: torch.Tensor | None
    tokens: list[str]
    offsets: list[tuple[int, int] | None]
    segments: list[str]
    target_ids: torch.Tensor  # [T] long (token ids, or the label index)
    target_tokens: list[str]
    target_positions: list[int | None]
    n_source: int  # causal: prompt length; seq2seq: encoder length S; classifier: L
    text: str = ""
    target_text: str = ""
    extra: dict[str, torch.Tensor] = field(default_factory=dict)  # e.g. token_type_ids [L]
    visibility: torch.Tensor | None = None  # [T, L] bool
    input_vectors: torch.Tensor | None = None  # [L, D]
    groups: dict[str, list[list[int]]] = field(default_factory=dict)
    objective: str = "logprob"
    foil_ids: torch.Tensor | None = None  # [T] long, for objective "contrast"
    foil_tokens: list[str] | None = None
    warnings: list[str] = field(default_factory=list)
    keep_warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.input_ids is None and self.input_vectors is None:
            raise InputError("an example needs input_ids or input_vectors")
        if self.visibility is None:  # adapters set it; by hand: a target sees what comes before it (or all)
            pos = torch.tensor([self.length if p is None else int(p) for p in self.target_positions])
            self.visibility = torch.arange(self.length).view(1, -1) < pos.view(-1, 1)

    @property
    def length(self) -> int:
        src = self.input_ids if self.input_ids is not None else self.input_vectors
        assert src is not None
        return int(src.shape[0])

    @property
    def n_targets(self) -> int:
        return int(self.target_ids.shape[0])

    def visible(self) -> torch.Tensor:
        """Bool ``[T, L]``: which input positions each target can see."""
        assert self.visibility is not None
        return self.visibility

    def context_positions(self) -> list[int]:
        """Positions visible to at least one target (the positions methods attribute to)."""
        return [int(j) for j in torch.nonzero(self.visible().any(0)).flatten()]

    def visible_positions(self, target: int) -> list[int]:
        """Positions visible to ``target``, in increasing order."""
        return torch.nonzero(self.visible()[target]).flatten().tolist()

    def replace(self, **changes: Any) -> Example:
        return replace(self, **changes)

    def positions_tensor(self) -> torch.Tensor:
        """``[T]`` target positions (``-1`` where a target has none)."""
        return torch.tensor([-1 if p is None else int(p) for p in self.target_positions], dtype=torch.long)


@dataclass
class Part:
    """Rows of one example in a shared forward: ``keep[b, L]`` (None: one row, all visible), ``embeds[b, L, D]``
    (None: the example's own inputs), ``rows_target[b]`` (None: every target of each row; else only that target,
    so the output has one target per row)."""

    example: Example
    keep: torch.Tensor | None = None
    embeds: torch.Tensor | None = None
    rows_target: torch.Tensor | None = None

    @property
    def n_rows(self) -> int:
        if self.keep is not None:
            return int(self.keep.shape[0]) if self.keep.dim() == 2 else 1
        return 1 if self.embeds is None else int(self.embeds.shape[0])


@dataclass
class AttentionSegment:
    """Which attention explains the positions ``[start, stop)`` of the input axis.

    ``maps``: per layer, head-averaged attention ``[Lq, stop − start]``; ``rows[i]``: the query row of ``maps`` that
    explains target ``i``; ``key_rollout``: per layer, the self-attention ``[K, K]`` of the keys' own stack when
    ``maps`` is a cross-attention (attention rollout then composes ``maps[-1] @ rollout(key_rollout)``), None when
    ``maps`` is a self-attention (rollout over ``maps`` itself); ``rollout``: False when rollout is undefined for
    this map (e.g. a single pooling attention); ``warnings``: what makes the maps less than the whole story (a hybrid
    model's recurrent layers mix tokens no map shows), passed on as the attention methods' result warnings."""

    start: int
    stop: int
    maps: list[torch.Tensor]
    rows: list[int]
    key_rollout: list[torch.Tensor] | None = None
    rollout: bool = True
    warnings: list[str] = field(default_factory=list)
