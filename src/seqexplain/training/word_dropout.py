"""Word dropout for compatibility fine-tuning (Vafa et al. 2021, "Rationales for Sequential Predictions").

A model is *compatible* when its predictions from incomplete contexts are sensible conditionals. It is made so by
training with the standard loss while, with probability ``mixture`` per batch, dropping context tokens **by
attention mask**: a dropped token is invisible to every other token, but still sees itself (and the kept tokens
before it), so every position still makes a prediction and the loss is unchanged.

Two ways to choose the kept tokens of one example with ``L`` droppable positions:

* ``uniform_length``: the number kept ``k`` is uniform on ``{0, ..., L}``; a uniformly random order of the
  positions is drawn and its first ``k`` are kept;
* ``inverse_length``: each position is kept independently with probability ``1 / L`` (recommended for
  translation).

Positions that are not ``valid`` (padding) are never kept and do not count in ``L``; ``protect`` marks positions
that are always kept (and do not count in ``L`` either).

Masks: :func:`causal_attention_mask` turns per-example keep masks ``[B, L]`` into the 4-D masks ``[B, 1, L, L]``
(causal AND (kept OR diagonal)) that Hugging Face models (transformers >= 5 uses a 4-D mask as given) and
:class:`seqexplain.models.transformer.TransformerLM` accept; :func:`seq2seq_attention_masks` builds the encoder
self-attention, cross-attention and decoder self-attention masks of an encoder-decoder, and
:func:`seq2seq_logits` runs a Hugging Face encoder-decoder with them. Everything random is drawn from a
``torch.Generator``, so a seed fixes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from seqexplain.errors import InputError
from seqexplain.models import keep as keep_rule
from seqexplain.models.hf_seq2seq import empty_sources

DropoutKind = Literal["uniform_length", "inverse_length"]
KINDS: tuple[str, ...] = ("uniform_length", "inverse_length")


def _droppable(valid: Tensor, protect: Tensor | None) -> Tensor:
    valid = valid.to(torch.bool)
    if protect is None:
        return valid
    return valid & ~protect.to(device=valid.device, dtype=torch.bool).expand_as(valid)


def _finish(chosen: Tensor, valid: Tensor, protect: Tensor | None) -> Tensor:
    keep = chosen & valid.to(torch.bool)
    if protect is not None:
        keep = keep | (protect.to(device=valid.device, dtype=torch.bool).expand_as(keep) & valid.to(torch.bool))
    return keep


def uniform_length_keep(valid: Tensor, generator: torch.Generator | None = None,
                        protect: Tensor | None = None) -> Tensor:
    """Keep mask ``[B, L]``: per row, ``k ~ U{0..n}`` (``n`` droppable positions), then the first ``k`` of a
    uniformly random order of the droppable positions are kept."""
    droppable = _droppable(valid, protect)
    n_b, n_l = droppable.shape
    dev = droppable.device
    n = droppable.sum(1)
    u = torch.rand(n_b, dtype=torch.float64, generator=generator, device=dev)
    k = torch.minimum((u * (n + 1).double()).floor().long(), n)
    scores = torch.rand(n_b, n_l, generator=generator, device=dev)
    scores = scores.masked_fill(~droppable, 2.0)  # non-droppable positions sort last
    rank = torch.argsort(torch.argsort(scores, dim=1), dim=1)  # position's place in the random order
    return _finish((rank < k.unsqueeze(1)) & droppable, valid, protect)


def inverse_length_keep(valid: Tensor, generator: torch.Generator | None = None,
                        protect: Tensor | None = None) -> Tensor:
    """Keep mask ``[B, L]``: each droppable position is kept independently with probability ``1 / n`` (``n``
    droppable positions in its row)."""
    droppable = _droppable(valid, protect)
    n = droppable.sum(1, keepdim=True).clamp(min=1).double()
    u = torch.rand(droppable.shape, dtype=torch.float64, generator=generator, device=droppable.device)
    return _finish((u < 1.0 / n) & droppable, valid, protect)


def sample_keep(valid: Tensor, kind: str, generator: torch.Generator | None = None,
                protect: Tensor | None = None) -> Tensor:
    """Keep mask ``[B, L]`` drawn with ``kind`` (``"uniform_length"`` or ``"inverse_length"``)."""
    if kind == "uniform_length":
        return uniform_length_keep(valid, generator, protect)
    if kind == "inverse_length":
        return inverse_length_keep(valid, generator, protect)
    raise InputError(f"unknown word-dropout type {kind!r}; use one of {', '.join(KINDS)}")


def causal_attention_mask(keep: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    """4-D mask ``[B, 1, L, L]`` of a causal LM under ``keep[B, L]``: query ``q`` attends to key ``k`` iff
    ``k <= q`` and (``keep[k]`` or ``k == q``). Boolean (True = attend) when ``dtype`` is None, otherwise
    additive in ``dtype`` (0 / the dtype's minimum), the form Hugging Face eager and SDPA attention add."""
    allowed = keep_rule.self_attention_allowed(keep, causal=True)
    return allowed if dtype is None else keep_rule.additive(allowed, dtype)


@dataclass
class Seq2SeqMasks:
    """Attention masks of an encoder-decoder (boolean, True = attend, or additive floats):
    ``encoder[B, 1, S, S]``, ``cross[B, 1, T, S]``, ``decoder[B, 1, T, T]``, and ``source_empty[B]``: rows that
    keep no source position (their cross-attention contributes nothing, rule 5 of :mod:`seqexplain.models.keep`)."""

    encoder: Tensor
    cross: Tensor
    decoder: Tensor
    source_empty: Tensor


def seq2seq_attention_masks(src_keep: Tensor, tgt_keep: Tensor, dtype: torch.dtype | None = None) -> Seq2SeqMasks:
    """Masks for an encoder-decoder under ``src_keep[B, S]`` and ``tgt_keep[B, T]`` (decoder inputs), by the rule
    of :mod:`seqexplain.models.keep`:

    * encoder self-attention (bidirectional): ``q`` sees ``k`` iff ``src_keep[k]`` or ``k == q``;
    * cross-attention: every decoder position sees the kept source positions; a row with no kept source sees none
      and gets no source information (:func:`seq2seq_logits` makes Hugging Face models honour it);
    * decoder self-attention: causal and (``tgt_keep[k]`` or ``k == q``).
    """
    src_keep = src_keep.to(torch.bool)
    tgt_keep = tgt_keep.to(torch.bool)
    if src_keep.shape[0] != tgt_keep.shape[0]:
        raise InputError(f"source and target keep masks have batch sizes {src_keep.shape[0]} and {tgt_keep.shape[0]}")
    empty = keep_rule.source_empty(src_keep)
    encoder = keep_rule.self_attention_allowed(src_keep, causal=False)
    cross = keep_rule.cross_attention_allowed(src_keep, tgt_keep.shape[1])
    decoder = keep_rule.self_attention_allowed(tgt_keep, causal=True)
    if dtype is not None:
        encoder, cross, decoder = (keep_rule.additive(m, dtype) for m in (encoder, cross, decoder))
    return Seq2SeqMasks(encoder=encoder, cross=cross, decoder=decoder, source_empty=empty)


def seq2seq_logits(model: Any, input_ids: Tensor, decoder_input_ids: Tensor, masks: Seq2SeqMasks) -> Tensor:
    """Logits ``[B, T, V]`` of a Hugging Face (or seqexplain) encoder-decoder under :class:`Seq2SeqMasks`
    (additive, in the model's dtype). The encoder runs with ``masks.encoder``; the decoder gets ``masks.decoder``
    as its self-attention mask and ``masks.cross`` as the encoder attention mask (passed as ``attention_mask``
    together with the precomputed ``encoder_outputs``, which transformers uses as given when 4-D). Rows in
    ``masks.source_empty`` allow no source key; their cross-attention output is zeroed before its output
    projection (:func:`seqexplain.models.hf_seq2seq.empty_sources`)."""
    encoder_outputs = model.get_encoder()(input_ids=input_ids, attention_mask=masks.encoder)
    with empty_sources(model, masks.source_empty):
        out = model(encoder_outputs=encoder_outputs, attention_mask=masks.cross, decoder_input_ids=decoder_input_ids,
                    decoder_attention_mask=masks.decoder)
    return out.logits


@dataclass
class WordDropout:
    """Per-batch word dropout: with probability ``mixture`` a batch gets keep masks drawn with ``kind``;
    otherwise every valid token is kept. ``protect_first`` leading positions are never dropped."""

    kind: str = "uniform_length"
    mixture: float = 0.5
    protect_first: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InputError(f"unknown word-dropout type {self.kind!r}; use one of {', '.join(KINDS)}")
        if not 0.0 <= self.mixture <= 1.0:
            raise InputError(f"mixture is a probability in [0, 1], got {self.mixture}")
        if self.protect_first < 0:
            raise InputError(f"protect_first must be >= 0, got {self.protect_first}")

    def sample(self, valid: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, bool]:
        """``(keep[B, L], applied)``. One uniform draw decides whether the batch is dropped; the keep masks are
        then drawn (the generator advances the same way whatever the outcome of later draws)."""
        valid = valid.to(torch.bool)
        applied = bool(torch.rand((), generator=generator, device=valid.device) < self.mixture)
        if not applied:
            return valid.clone(), False
        protect = None
        if self.protect_first:
            protect = torch.zeros(valid.shape[1], dtype=torch.bool, device=valid.device)
            protect[: self.protect_first] = True
        return sample_keep(valid, self.kind, generator, protect), True


class WordDropoutCollator:
    """A data collator for ``transformers.Trainer`` (causal LMs): pads ``input_ids`` on the right, sets
    ``labels`` (-100 at padding), ``position_ids`` (0..L-1) and ``attention_mask``: the 2-D padding mask, or, for
    a batch drawn for word dropout, the 4-D additive mask of :func:`causal_attention_mask` in ``dtype``."""

    def __init__(self, pad_token_id: int, dropout: WordDropout, seed: int = 0,
                 dtype: torch.dtype = torch.float32) -> None:
        self.pad_token_id = pad_token_id
        self.dropout = dropout
        self.dtype = dtype
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Tensor]:
        rows = [list(map(int, f["input_ids"])) for f in features]
        n_l = max(len(r) for r in rows)
        ids = torch.full((len(rows), n_l), self.pad_token_id, dtype=torch.long)
        valid = torch.zeros(len(rows), n_l, dtype=torch.bool)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
            valid[i, : len(r)] = True
        keep, applied = self.dropout.sample(valid, self.generator)
        mask = causal_attention_mask(keep, self.dtype) if applied else valid.long()
        labels = ids.masked_fill(~valid, -100)
        positions = torch.arange(n_l).unsqueeze(0).expand(len(rows), -1)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels, "position_ids": positions}
