"""Adapter of :class:`~seqexplain.models.attention_rnn.AttentionRNN` (classifiers over precomputed token vectors).

An input is a :class:`VectorDocument`: its tokens (words), one vector per token ``[L, D]`` and, where the model or
the analysis uses event types, the event type of each token (an index into ``event_names``). :meth:`encode` gives an
:class:`~seqexplain.models.example.Example` with ``input_vectors`` set, the single target the label
(``target_positions = [None]``, every position visible) and the named grouping ``"events"``: one group per event
type present, in increasing type order, holding its positions (per-event explanations are
``Attribution.aggregate(how, by="events")``). ``example.extra["event_types"]`` holds the type of every position.

Keep-masks (rule 1 of :mod:`seqexplain.models.keep`, drop j = delete token j): each row's kept tokens (with their
event types) are compacted to the left in their original order and run as a packed sequence, so a dropped token is
neither an LSTM input, a BatchNorm statistic, an attention candidate nor an event-type member (a type whose tokens
are all dropped is absent). A row with nothing kept reads the label with position 0 visible, as the pooling
classifier of :mod:`seqexplain.models.native_heads` does.

Attention (:meth:`AttentionRNNAdapter.attention_view`): one ``[1, L]`` map, the position weights of the decoder's
context: ``α`` for ``"avg"``; ``a_s = β_{k(s)} α_{s,k(s)}`` for ``"hier"``, whose sum over each type's positions is
``β_k`` (so ``attention_last`` aggregated with ``sum`` by ``"events"`` holds the ``β_k`` of the types present; the
aggregated axis keeps reading order, so its columns follow each type's first token, not the type index: map them
back through ``example.groups["events"]``); rollout is undefined.

**Baselines** (integrated gradients): methods take ``baseline="zero"`` for precomputed vectors. :meth:`with_origin`
gives a view of the same model whose input axis is the offset ``x − u`` from a vector ``u`` (e.g. the ``<unk>``
vector, as the paper): the zero baseline of that view is ``u`` at every position, gradients are unchanged and
``grad_x_input`` becomes ``Σ_d (x − u)_d ∂f/∂x_d``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from seqexplain.errors import InputError
from seqexplain.models.attention_rnn import AttentionRNN
from seqexplain.models.base import SequenceModel
from seqexplain.models.example import AttentionSegment, Example, Part
from seqexplain.models.keep import head_visible_when_empty
from seqexplain.models.labels import ClassifierLabels
from seqexplain.models.module_state import eval_mode
from seqexplain.models.native_heads import compact, pad_steps


@dataclass
class VectorDocument:
    """One input of an attention RNN: ``tokens`` (words), ``vectors[L, D]`` and optionally ``event_types[L]``
    (indices into the adapter's event names) and the gold ``label``."""

    tokens: list[str]
    vectors: Tensor
    event_types: list[int] | None = None
    label: int | None = None

    @property
    def text(self) -> str:
        return " ".join(self.tokens)


def _whole(value: Any) -> bool:
    """Whether ``value`` is a finite number equal to an integer (an event type index)."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return False
    return math.isfinite(x) and x.is_integer()


class AttentionRNNAdapter(ClassifierLabels, SequenceModel):
    """Adapter of an :class:`AttentionRNN` (module docstring)."""

    kind = "classifier"

    def __init__(self, model: AttentionRNN, labels: Sequence[str], event_names: Sequence[str] = (),
                 model_id: str | None = None, origin: Tensor | None = None) -> None:
        cfg = model.config
        if cfg.decoder == "hier" and len(event_names) != cfg.n_event_types:
            raise InputError(f"the hierarchical model has {cfg.n_event_types} event types but {len(event_names)} "
                             "event names were given; give one name per event type")
        if len(labels) != cfg.n_classes:
            raise InputError(f"the model has {cfg.n_classes} classes but {len(labels)} label names were given")
        self.model = model
        self.tokenizer = None
        self.labels = [str(n) for n in labels]
        self.event_names = [str(n) for n in event_names]
        self.model_id = model_id or f"attention-rnn-{cfg.decoder}"
        self.origin = None if origin is None else self._check_width(origin.reshape(1, -1), "origin").view(-1)

    # ------------------------------------------------------------------ helpers
    def input_width(self) -> int:
        return self.model.config.input_dim

    def _check_width(self, vectors: Any, what: str) -> Tensor:
        """``vectors`` (a tensor, or an array or nested list of numbers) as a float tensor ``[n, D]``;
        :class:`InputError` for another shape or content."""
        width = self.input_width()
        try:
            vectors = torch.as_tensor(vectors)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise InputError(f"{what} is not an array of numbers ({exc}); give a float tensor [tokens, {width}]"
                             ) from exc
        if not vectors.is_floating_point():
            vectors = vectors.float() if vectors.dtype in (torch.int8, torch.int16, torch.int32, torch.int64,
                                                           torch.uint8) else vectors
        if not vectors.is_floating_point() or vectors.dim() != 2 or int(vectors.shape[1]) != width:
            raise InputError(f"{what} has shape {tuple(vectors.shape)} but the model takes vectors of width {width}; "
                             f"give one {width}-d vector per token")
        return vectors

    def with_origin(self, origin: Tensor | None) -> AttentionRNNAdapter:
        """The same model with input axis ``x − origin`` (module docstring)."""
        view = copy.copy(self)
        view.origin = None if origin is None else self._check_width(origin.reshape(1, -1), "origin").view(-1)
        return view

    def label_names(self) -> list[str]:
        return list(self.labels)

    # ------------------------------------------------------------------ encode
    def encode_input(self, text: Any, **_: Any) -> Example:
        """The :class:`Example` of a :class:`VectorDocument` with a placeholder label (labels:
        :class:`ClassifierLabels`)."""
        doc = text
        if not isinstance(doc, VectorDocument):
            raise InputError(f"an attention RNN explains VectorDocument inputs (tokens, vectors, event types), not "
                             f"{type(doc).__name__}")
        if not doc.tokens:
            raise InputError("the document has no tokens")
        vectors = self._check_width(doc.vectors, "the document's vectors")
        if int(vectors.shape[0]) != len(doc.tokens):
            raise InputError(f"{vectors.shape[0]} vectors for {len(doc.tokens)} tokens; give one vector per token")
        extra: dict[str, Tensor] = {}
        groups: dict[str, list[list[int]]] = {}
        if doc.event_types is not None:
            bad = [t for t in doc.event_types if isinstance(t, bool) or not _whole(t)]
            if bad:
                raise InputError("event types must be whole numbers (indices into the adapter's event names), not "
                                 f"{bad[:3]}")
            types = [int(t) for t in doc.event_types]
            n_k = len(self.event_names)
            if len(types) != len(doc.tokens):
                raise InputError(f"{len(types)} event types for {len(doc.tokens)} tokens; give one type per token")
            if n_k == 0:
                raise InputError("the event set is empty: give the adapter event_names to use event types")
            if min(types) < 0 or max(types) >= n_k:
                raise InputError(f"event types must lie in 0..{n_k - 1} (the adapter's {n_k} event names)")
            extra["event_types"] = torch.tensor(types, dtype=torch.long)
            groups["events"] = [[j for j, t in enumerate(types) if t == k] for k in sorted(set(types))]
        elif self.model.config.decoder == "hier":
            raise InputError("the hierarchical model needs the event type of every token (VectorDocument.event_types)")
        offsets, start = [], 0
        for tok in doc.tokens:
            offsets.append((start, start + len(tok)))
            start += len(tok) + 1
        param = next(self.model.parameters())
        return Example(kind="classifier", input_ids=None, tokens=list(doc.tokens), offsets=offsets,
                       segments=["source"] * len(doc.tokens), target_ids=torch.zeros(1, dtype=torch.long),
                       target_tokens=[""], target_positions=[None], n_source=len(doc.tokens), text=doc.text,
                       input_vectors=vectors.to(param.dtype), extra=extra, groups=groups)

    def embed(self, example: Example) -> Tensor:
        """``[1, L, D]`` the example's vectors (minus the origin, for a :meth:`with_origin` view)."""
        assert example.input_vectors is not None
        x = example.input_vectors.to(self.device).unsqueeze(0)
        return x if self.origin is None else x - self.origin.to(x.device, x.dtype)

    # --------------------------------------------------------------- questions
    def start_positions(self, example: Example, target: int) -> list[int]:
        """``[0]``: with nothing kept the label is read with position 0 visible."""
        return [0]

    def row_cost(self, example: Example, max_target: int, max_kept: int) -> int:
        return max(1, max_kept)

    # ------------------------------------------------------------------ logits
    def _row_inputs(self, part: Part) -> Tensor:
        assert part.keep is not None
        x = part.embeds.to(self.device) if part.embeds is not None else self.embed(part.example).expand(
            int(part.keep.shape[0]), -1, -1)
        return x if self.origin is None else x + self.origin.to(x.device, x.dtype)

    def _forward(self, parts: Sequence[Part]) -> tuple[Tensor, dict[str, Tensor], list[Tensor]]:
        """One packed forward of every row of every part; also each part's ``order [b, L]`` of compacted rows."""
        xs, lens, tys, orders = [], [], [], []
        for part in parts:
            keep = part.keep
            assert keep is not None
            keep = head_visible_when_empty(keep, 0)  # rule 4: nothing kept reads position 0
            x, n, order = compact(self._row_inputs(part), keep)
            types = part.example.extra.get("event_types")
            if types is not None:
                tys.append(types.to(self.device).view(1, -1).expand(keep.shape[0], -1).gather(1, order))
            xs.append(x)
            lens.append(n)
            orders.append(order)
        n_max = max(int(n.max()) for n in lens)
        x_all = torch.cat([pad_steps(x[:, :n_max], n_max) for x in xs])
        types_all = torch.cat([pad_steps(t[:, :n_max], n_max) for t in tys]) if len(tys) == len(parts) else None
        z, att = self.model(x_all, torch.cat(lens), types_all)
        return z, att, orders

    def logits_many(self, parts: Sequence[Part]) -> list[Tensor]:
        z, _, _ = self._forward(parts)
        out, start = [], 0
        for part in parts:
            out.append(z[start : start + part.n_rows].unsqueeze(1))
            start += part.n_rows
        return out

    # --------------------------------------------------------------- attention
    def attention_weights(self, example: Example) -> dict[str, Tensor]:
        """The decoder's attention on the whole input: ``"alpha" [L]`` (position weights of the context) and, for
        ``"hier"``, ``"beta" [K]`` over all event types (zero for types not present)."""
        part = self.normalise_part(Part(example))
        with torch.no_grad(), eval_mode(self.model), self._autocast():
            _, att, _ = self._forward([part])
        return {k: v[0].detach() for k, v in att.items() if k in ("alpha", "beta")}

    def attention_view(self, example: Example) -> list[AttentionSegment]:
        """The context's position weights as one float64 ``[1, L]`` map (row 0), rollout undefined (module
        docstring)."""
        alpha = self.attention_weights(example)["alpha"]
        return [AttentionSegment(0, example.length, [alpha.view(1, -1).double()], [0], rollout=False)]
