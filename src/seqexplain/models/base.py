"""Contract 1: the model interface every attribution method sees.

A wrapped model turns ``(text, target)`` into an :class:`Example` whose *input axis* is

* causal LM: prompt tokens, then target tokens (target ``i`` sits at position ``p_i``);
* encoder-decoder: ``S`` source tokens, the decoder start token (position ``S``), then the target tokens
  (target ``i`` at ``p_i = S + 1 + i``);
* classifier: the input tokens; the single target is the label (no position).

and exposes one primitive, :meth:`SequenceModel.score`::

    score(example, keep=None, embeds=None) -> Tensor[B, T]    # log p(target_i | visible context)

``keep[B, L]`` (bool) says which positions are visible. A dropped position is removed from attention (for
an RNN: from its input) and the original position ids of the others are kept. Target ``i`` is read from the
output at ``r_i``, the last *kept* position before ``p_i`` on its side of the axis (the position that would
predict the next token if the dropped tokens were deleted); if none is kept, from ``p_i - 1``, which then sees
only itself. Dropping a position never changes the reading position of the targets when that position is
not the last visible one, so "drop j" equals "delete token j" for RNNs and attention models alike.

``embeds[B, L, D]`` replaces the input-embedding layer's output (:meth:`SequenceModel.embed`), so gradient
methods differentiate ``score`` w.r.t. ``embeds``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from seqexplain.errors import InputError

ModelKind = Literal["causal", "seq2seq", "classifier"]


@dataclass
class Example:
    """One input (and its targets) on the input axis described in the module docstring.

    ``visible[i, j]`` is True when input position ``j`` can influence target ``i``: for a causal LM
    ``j < p_i``; for an encoder-decoder ``j < S`` or ``S <= j < p_i``; for a classifier every position.
    """

    kind: ModelKind
    input_ids: torch.Tensor  # [L] long
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

    @property
    def length(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def n_targets(self) -> int:
        return int(self.target_ids.shape[0])

    def visible(self) -> torch.Tensor:
        """Bool ``[T, L]``: which input positions each target can see."""
        n_t, n_l = self.n_targets, self.length
        vis = torch.zeros(n_t, n_l, dtype=torch.bool)
        for i, p in enumerate(self.target_positions):
            if p is None:
                vis[i] = True
            elif self.kind == "seq2seq":
                vis[i, : self.n_source] = True
                vis[i, self.n_source : p] = True
            else:
                vis[i, :p] = True
        return vis

    def context_positions(self) -> list[int]:
        """Positions visible to at least one target (the positions methods attribute to)."""
        return [int(j) for j in torch.nonzero(self.visible().any(0)).flatten()]


class SequenceModel:
    """Base of every wrapper. Subclasses implement :meth:`encode`, :meth:`embed` and :meth:`distributions`
    (from which :meth:`score` and :meth:`predictions` follow), and :meth:`attentions` where they can."""

    kind: ModelKind
    model: torch.nn.Module
    tokenizer: Any
    model_id: str

    # ------------------------------------------------------------------ abstract
    def encode(self, text: str, target: str | int | None = None, **options: Any) -> Example:
        raise NotImplementedError

    def embed(self, example: Example) -> torch.Tensor:
        """``[1, L, D]`` output of the input-embedding layer for the example's input axis."""
        raise NotImplementedError

    def distributions(self, example: Example, keep: torch.Tensor | None = None,
                      embeds: torch.Tensor | None = None, rows_target: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, T, V]`` log-distribution at each target's reading position (classifier: over labels, T = 1);
        with ``rows_target[B]``, only that target of each row: ``[B, 1, V]`` (cheaper when rows are built for
        one target each, as in rationale search)."""
        raise NotImplementedError

    def score(self, example: Example, keep: torch.Tensor | None = None,
              embeds: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, T]`` log-probability of each target; see the module docstring for ``keep``/``embeds``."""
        logp = self.distributions(example, keep, embeds)
        targets = example.target_ids.to(logp.device)
        return torch.gather(logp, 2, targets.view(1, -1, 1).expand(logp.shape[0], -1, 1)).squeeze(-1)

    def predictions(self, example: Example, keep: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(argmax [B, T], log p(target) [B, T])`` under ``keep``: what the model predicts from each visible
        subset (for rationale stopping rules)."""
        logp = self.distributions(example, keep)
        targets = example.target_ids.to(logp.device)
        tgt = torch.gather(logp, 2, targets.view(1, -1, 1).expand(logp.shape[0], -1, 1)).squeeze(-1)
        return logp.argmax(-1), tgt

    def attentions(self, example: Example) -> dict[str, list[torch.Tensor]]:
        """Per-layer attention weights ``[1, H, Lq, Lk]`` by stack name ("self"; or "encoder", "decoder",
        "cross" for encoder-decoders)."""
        from seqexplain.errors import UnsupportedError

        raise UnsupportedError(f"{self.model_id} ({type(self.model).__name__}) cannot return attention weights")

    # ------------------------------------------------------------------ helpers
    @property
    def device(self) -> torch.device:
        try:
            return next(self.model.parameters()).device
        except StopIteration:  # pragma: no cover - parameterless module
            return torch.device("cpu")

    def max_positions(self) -> int | None:
        """Largest sequence length the model's position embeddings allow (None: unbounded)."""
        return None

    def batch_keep(self, example: Example, keep: torch.Tensor | None, embeds: torch.Tensor | None) -> torch.Tensor:
        """Normalise ``keep`` to a bool ``[B, L]`` tensor on the model's device (all-True if None)."""
        n_l = example.length
        if keep is None:
            b = 1 if embeds is None else int(embeds.shape[0])
            return torch.ones(b, n_l, dtype=torch.bool, device=self.device)
        keep = keep.to(self.device).bool()
        if keep.dim() == 1:
            keep = keep.unsqueeze(0)
        if keep.shape[-1] != n_l:
            raise InputError(f"keep mask has {keep.shape[-1]} positions but the example has {n_l}")
        if embeds is not None and keep.shape[0] == 1 and embeds.shape[0] > 1:
            keep = keep.expand(int(embeds.shape[0]), n_l)
        return keep

    def label_names(self) -> list[str]:
        return []

    def keep_mask_problem(self) -> str | None:
        """Why this model cannot evaluate a keep-mask that drops positions (None: it can)."""
        return None

    def require_keep_mask(self) -> None:
        """Raise :class:`UnsupportedError` naming why, if the model cannot drop positions."""
        problem = self.keep_mask_problem()
        if problem is not None:
            from seqexplain.errors import UnsupportedError

            raise UnsupportedError(
                f"{self.model_id}: {problem}; methods that drop positions (occlusion, rationales, faithfulness) "
                "need a model whose forward takes an attention mask"
            )


def reading_positions(keep: torch.Tensor, target_positions: list[int], floor: int) -> torch.Tensor:
    """``[B, T]`` index of the last kept position before each ``p_i`` and at or after ``floor``
    (``p_i - 1`` when none is kept).

    ``floor`` is the first position of the side the target lives on (0 for a causal LM, the decoder start ``S``
    for an encoder-decoder)."""
    n_b, n_l = keep.shape
    idx = torch.arange(n_l, device=keep.device).expand(n_b, n_l)
    marked = torch.where(keep & (idx >= floor), idx, torch.full_like(idx, -1))
    last_kept = torch.cummax(marked, dim=1).values  # [B, L]: last kept index at or before each position
    p = torch.tensor(target_positions, device=keep.device)
    r = last_kept[:, p - 1]  # [B, T]
    fallback = (p - 1).expand_as(r)
    return torch.where(r >= 0, r, fallback)


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Put ``model`` in eval mode for the block and restore its previous mode, even on exceptions."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@contextlib.contextmanager
def frozen_parameters(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Turn off ``requires_grad`` of every parameter for the block (so gradients w.r.t. inputs never compute
    weight gradients) and restore each flag afterwards, even on exceptions."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    for p in trainable:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p in trainable:
            p.requires_grad_(True)
