"""Faithfulness: comprehensiveness and sufficiency (DeYoung et al., 2020, ERASER), through the keep-mask.

For target ``i`` with visible positions ``V_i`` ranked by :func:`seqexplain.ranking.rank_positions`, ``top_k`` holds
the first ``n_k = max(1, ceil(k/100 · |V_i|))`` of them. With ``f(s) = log p(y_i | x_s)``
(only the positions in ``s`` visible, original position ids kept; the rule of :mod:`seqexplain.models.keep`):

* comprehensiveness ``c_i(k) = f(V_i) − f(V_i \\ top_k)`` (large: the top tokens were needed);
* sufficiency ``s_i(k) = f(V_i) − f(top_k)`` (small: the top tokens alone suffice).

AOPC aggregates over the bins ``B`` (default 1, 5, 10, 20, 50 %): ``AOPC_c = (1/|B|) Σ_k c_i(k)`` and likewise for
sufficiency (ERASER's formula adds a ``k = 0`` term that is 0 for both and divides by ``|B| + 1``; multiply by
``|B|/(|B|+1)`` to get that convention). Removing everything is never evaluated for comprehensiveness: when
``top_k`` would be all of ``V_i``, ``V_i \\ top_k`` is empty and the model sees only the predicting position
(rule 4 of :mod:`seqexplain.models.keep`).

All (target, bin, kind) subsets are evaluated in shared batches under ``token_budget`` tokens per forward.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from seqexplain.attribution import Attribution
from seqexplain.errors import InputError
from seqexplain.models.base import Example, SequenceModel, eval_mode
from seqexplain.models.rows import evaluate_rows, require_keep_support
from seqexplain.ranking import rank_positions

DEFAULT_BINS = (1.0, 5.0, 10.0, 20.0, 50.0)


@dataclass
class Faithfulness:
    """``comprehensiveness[i, b]`` / ``sufficiency[i, b]`` per target and bin, their AOPC per target and means."""

    bins: list[float]
    full_logprob: np.ndarray  # [T]
    comprehensiveness: np.ndarray  # [T, K]
    sufficiency: np.ndarray  # [T, K]

    @property
    def aopc_comprehensiveness(self) -> np.ndarray:
        return self.comprehensiveness.mean(axis=1)

    @property
    def aopc_sufficiency(self) -> np.ndarray:
        return self.sufficiency.mean(axis=1)

    def summary(self) -> dict[str, float]:
        return {"aopc_comprehensiveness": float(self.aopc_comprehensiveness.mean()),
                "aopc_sufficiency": float(self.aopc_sufficiency.mean())}


def top_positions(scores: np.ndarray, visible: Sequence[int], k_percent: float) -> list[int]:
    """The ``max(1, ceil(k/100 · |visible|))`` visible positions ranked first by
    :func:`seqexplain.ranking.rank_positions` (decreasing score, ties to the lowest position), in position order."""
    n = max(1, math.ceil(k_percent / 100 * len(visible)))
    return sorted(rank_positions(scores, visible)[:n])


def faithfulness(model: SequenceModel, example: Example, scores: Attribution | np.ndarray,
                 bins: Sequence[float] = DEFAULT_BINS, token_budget: int | None = None) -> Faithfulness:
    """Comprehensiveness and sufficiency of ``scores`` (an :class:`Attribution` or a ``[T, L]`` array) for every
    target of ``example`` at every bin (module docstring)."""
    require_keep_support(model)
    s = scores.scores if isinstance(scores, Attribution) else np.asarray(scores, dtype=np.float64)
    if s.shape != (example.n_targets, example.length):
        raise InputError(f"scores have shape {s.shape} but the example has {example.n_targets} targets × "
                         f"{example.length} positions")
    if not bins or any(not 0 < b <= 100 for b in bins):
        raise InputError("bins must be percentages in (0, 100]")
    rows: list[tuple[int, list[int]]] = []
    visible = example.visible()
    for i in range(example.n_targets):
        vis = torch.nonzero(visible[i]).flatten().tolist()
        rows.append((i, vis))
        for b in bins:
            top = top_positions(s[i], vis, b)
            top_set = set(top)
            rows.append((i, [j for j in vis if j not in top_set]))
            rows.append((i, top))
    with torch.no_grad(), eval_mode(model.model):
        budget = model.default_token_budget() if token_budget is None else token_budget
        ev = evaluate_rows(model, example, rows, budget)
    per = 1 + 2 * len(bins)
    lp = ev.target_logp.reshape(example.n_targets, per)
    full = lp[:, 0]
    comp = full[:, None] - lp[:, 1::2]
    suff = full[:, None] - lp[:, 2::2]
    return Faithfulness(list(bins), full, comp, suff)
