"""Attention methods: head-averaged attention rows that the model adapter names for each target
(:meth:`~seqexplain.models.base.SequenceModel.attention_view`): for a causal LM the row of ``p_i − 1``; for a
classifier the row of the head's position; for an encoder-decoder the cross-attention row of decoder position ``i``
over the source followed by its decoder self-attention row.

* ``attention_last``: the last layer's row.
* ``attention_all``: the mean of the rows over layers.
* ``attention_rollout`` (Abnar & Zuidema, 2020): the row of ``R = Â_N ⋯ Â_1`` with ``Â_l = ½ A_l + ½ I``
  (``A_l`` head-averaged). Where the adapter's map is a cross-attention over another stack (encoder-decoders'
  source part), the row is the last layer's cross-attention row composed with that stack's rollout, ``c · R_enc``.

Attentions are computed with eager attention (switched on for the call and restored afterwards). No option.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from seqexplain.errors import UnsupportedError
from seqexplain.methods.registry import MethodResult, register
from seqexplain.models.base import SequenceModel
from seqexplain.models.example import Example

Mode = Literal["last", "all", "rollout"]


def _rollout(mats: list[torch.Tensor]) -> torch.Tensor:
    """``Â_N ⋯ Â_1`` with ``Â_l = ½ A_l + ½ I``."""
    eye = torch.eye(mats[0].shape[-1], dtype=mats[0].dtype, device=mats[0].device)
    out = eye
    for a in mats:
        out = (0.5 * a + 0.5 * eye) @ out
    return out


def attention_scores(model: SequenceModel, example: Example, mode: Mode) -> MethodResult:
    """``[T, L]`` attention scores of every target (module docstring), NaN outside the adapter's segments, with the
    segments' warnings."""
    scores = np.full((example.n_targets, example.length), np.nan)
    warnings: list[str] = []
    for seg in model.attention_view(example):
        warnings += [w for w in seg.warnings if w not in warnings]
        if mode == "last":
            m = seg.maps[-1]
        elif mode == "all":
            m = torch.stack(seg.maps).mean(0)
        elif not seg.rollout:
            raise UnsupportedError(f"{model.model_id}: attention rollout is not defined for this model's attention "
                                   "(not a stack of self-attention layers over the input: e.g. one pooling or "
                                   "cross-attention over RNN states); use attention_last")
        elif seg.key_rollout is not None:
            m = seg.maps[-1] @ _rollout(seg.key_rollout)
        else:
            m = _rollout(seg.maps)
        rows = m[torch.tensor(seg.rows, device=m.device)].detach().cpu().numpy()
        width = min(seg.stop - seg.start, rows.shape[1])
        scores[:, seg.start : seg.start + width] = rows[:, :width]
    return MethodResult(scores, warnings=warnings)


NO_OBJECTIVE = "attention weights do not depend on the objective"


@register("attention_last", "attention", "last layer's head-averaged attention row of the predicting position",
          ignores_objective=NO_OBJECTIVE, drops_tokens=False)
def attention_last(model: SequenceModel, example: Example) -> MethodResult:
    """``a_i = Ā_N[q_i]``: the last layer's head-averaged attention row of target ``i``'s reading position ``q_i``
    (module docstring). No options."""
    return attention_scores(model, example, "last")


@register("attention_all", "attention", "head-averaged attention row of the predicting position, mean over layers",
          ignores_objective=NO_OBJECTIVE, drops_tokens=False)
def attention_all(model: SequenceModel, example: Example) -> MethodResult:
    """``a_i = (1/N) Σ_l Ā_l[q_i]``: the head-averaged attention rows of the reading position, averaged over the
    ``N`` layers (module docstring). No options."""
    return attention_scores(model, example, "all")


@register("attention_rollout", "attention", "attention rollout (Abnar & Zuidema 2020): product of ½A + ½I",
          ignores_objective=NO_OBJECTIVE, drops_tokens=False)
def attention_rollout(model: SequenceModel, example: Example) -> MethodResult:
    """``a_i = R[q_i]``, ``R = Â_N ⋯ Â_1``, ``Â_l = ½ Ā_l + ½ I`` (module docstring; cross-attention composed with
    the source stack's rollout). No options."""
    return attention_scores(model, example, "rollout")
