"""Attention methods: rows of head-averaged attention at the position that predicts each target.

For a causal LM the row of ``p_i − 1``; for a classifier the position its head reads (first token for BERT-style
poolers, last token for decoder-style heads); for an encoder-decoder the cross-attention row of decoder position
``i`` over the source followed by its decoder self-attention row.

* ``attention_last``: the last layer's row.
* ``attention_all``: the mean of the rows over layers.
* ``attention_rollout`` (Abnar & Zuidema, 2020): the row of ``R = Â_N ⋯ Â_1`` with ``Â_l = ½ A_l + ½ I``
  (``A_l`` head-averaged). For encoder-decoders the decoder part is the rollout of decoder self-attention and the
  source part is the last layer's cross-attention row composed with the encoder rollout, ``c · R_enc``.

Attentions are computed with eager attention (switched on for the call and restored afterwards).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from seqexplain.methods.registry import MethodResult, register
from seqexplain.models.base import Example, SequenceModel

Mode = Literal["last", "all", "rollout"]


def _query_rows(model: SequenceModel, example: Example) -> list[int]:
    """Per target, the query position (on the model's own sequence) whose attention row explains it."""
    if example.kind == "classifier":
        head = getattr(model, "head_position", "first")
        return [0 if head == "first" else example.length - 1]
    if example.kind == "seq2seq":
        return [i for i in range(example.n_targets)]  # decoder index i predicts target i
    return [int(p) - 1 for p in example.target_positions]  # type: ignore[operator]


def _head_mean(layers: list[torch.Tensor]) -> list[torch.Tensor]:
    return [a[0].double().mean(0) for a in layers]  # each [Lq, Lk]


def _rollout(mats: list[torch.Tensor]) -> torch.Tensor:
    """``Â_N ⋯ Â_1`` with ``Â_l = ½ A_l + ½ I``."""
    eye = torch.eye(mats[0].shape[-1], dtype=mats[0].dtype)
    out = eye
    for a in mats:
        out = (0.5 * a + 0.5 * eye) @ out
    return out


def attention_scores(model: SequenceModel, example: Example, mode: Mode) -> np.ndarray:
    stacks = model.attentions(example)
    rows = _query_rows(model, example)
    n_t, n_l = example.n_targets, example.length
    scores = np.full((n_t, n_l), np.nan)
    if example.kind == "seq2seq":
        enc, dec, cross = (_head_mean(stacks[k]) for k in ("encoder", "decoder", "cross"))
        s, n_dec = example.n_source, dec[0].shape[-1]
        if mode == "last":
            src_part, dec_part = cross[-1], dec[-1]
        elif mode == "all":
            src_part, dec_part = torch.stack(cross).mean(0), torch.stack(dec).mean(0)
        else:
            src_part, dec_part = cross[-1] @ _rollout(enc), _rollout(dec)
        for i, q in enumerate(rows):
            scores[i, :s] = src_part[q].numpy()
            scores[i, s : s + n_dec] = dec_part[q].numpy()
        return scores
    mats = _head_mean(stacks["self"])
    if mode == "last":
        m = mats[-1]
    elif mode == "all":
        m = torch.stack(mats).mean(0)
    else:
        m = _rollout(mats)
    for i, q in enumerate(rows):
        scores[i, : m.shape[-1]] = m[q].numpy()
    return scores


@register("attention_last", "attention", "last layer's head-averaged attention row of the predicting position")
def attention_last(model: SequenceModel, example: Example) -> MethodResult:
    return MethodResult(attention_scores(model, example, "last"))


@register("attention_all", "attention", "head-averaged attention row of the predicting position, mean over layers")
def attention_all(model: SequenceModel, example: Example) -> MethodResult:
    return MethodResult(attention_scores(model, example, "all"))


@register("attention_rollout", "attention", "attention rollout (Abnar & Zuidema 2020): product of ½A + ½I")
def attention_rollout(model: SequenceModel, example: Example) -> MethodResult:
    return MethodResult(attention_scores(model, example, "rollout"))
