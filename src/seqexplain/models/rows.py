"""Evaluating many keep-rows of one example under a token budget: a service of the models layer used by
rationales, occlusion-style perturbations and faithfulness metrics alike.

A *keep-row* is ``(target index, kept positions)``: what the model predicts for that target when only those
positions are visible (the rule of :mod:`seqexplain.models.keep`). :func:`evaluate_rows` takes rows of any targets
in the given order, cuts them into forwards of at most ``token_budget`` tokens as the adapter prices them
(:meth:`~seqexplain.models.base.SequenceModel.row_cost`), runs each forward on the smallest example that serves
its rows (:meth:`~seqexplain.models.base.SequenceModel.rows_example`) asking for each row's own target only, and
returns per row the model's argmax, ``log p(target)``, ``log p(argmax)`` and the example's objective.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from seqexplain.errors import InputError, UnsupportedError
from seqexplain.models.base import SequenceModel
from seqexplain.models.example import Example
from seqexplain.models.objective import row_objective
from seqexplain.progress import add_total, advance


@dataclass
class Evaluation:
    """Per row: model argmax, ``log p(target)``, ``log p(argmax)``, and the example's objective (e.g. the contrast
    with the foil)."""

    argmax: np.ndarray
    target_logp: np.ndarray
    max_logp: np.ndarray
    objective: np.ndarray


@dataclass
class Counter:
    """Forwards, rows and row tokens spent (as the adapter prices them)."""

    forwards: int = 0
    rows: int = 0
    tokens: int = 0


def require_keep_support(model: SequenceModel) -> None:
    """Raise :class:`UnsupportedError` unless ``model`` can evaluate inputs with dropped positions."""
    if not isinstance(model, SequenceModel):
        raise UnsupportedError(f"{type(model).__name__} is not a seqexplain model adapter; wrap it with load_model")
    model.require_keep_mask()


def evaluate_rows(model: SequenceModel, example: Example, rows: Sequence[tuple[int, Sequence[int]]],
                  token_budget: int, counter: Counter | None = None) -> Evaluation:
    """Evaluate keep-rows ``(target, kept positions)`` (module docstring)."""
    if token_budget < 1:
        raise InputError("token_budget must be a positive number of tokens")
    n = len(rows)
    argmax = np.zeros(n, dtype=np.int64)
    tlogp = np.zeros(n, dtype=np.float64)
    mlogp = np.zeros(n, dtype=np.float64)
    obj = np.zeros(n, dtype=np.float64)
    add_total(n)
    start = 0
    while start < n:
        stop = start + 1
        max_t, max_kept = rows[start][0], len(rows[start][1])
        while stop < n:
            t, kept = rows[stop]
            t2, k2 = max(max_t, t), max(max_kept, len(kept))
            if (stop - start + 1) * model.row_cost(example, t2, k2) > token_budget:
                break
            max_t, max_kept = t2, k2
            stop += 1
        batch = rows[start:stop]
        sub = model.rows_example(example, max(t for t, _ in batch))
        keep = torch.zeros(len(batch), sub.length, dtype=torch.bool)
        for r, (_, kept) in enumerate(batch):
            keep[r, list(kept)] = True
        own = torch.tensor([t for t, _ in batch], dtype=torch.long)
        logits = model.logits(sub, keep.to(model.device), rows_target=own.to(model.device))[:, 0].detach()
        logp = torch.log_softmax(logits.float(), dim=-1).cpu()
        best = logp.max(-1)
        argmax[start:stop] = best.indices.numpy()
        mlogp[start:stop] = best.values.double().numpy()
        tid = example.target_ids[own]
        tlogp[start:stop] = logp.gather(1, tid.view(-1, 1)).squeeze(1).double().numpy()
        if sub.objective == "logprob":
            obj[start:stop] = tlogp[start:stop]
        else:
            obj[start:stop] = row_objective(sub, logits.cpu(), own).double().numpy()
        if counter is not None:
            counter.forwards += 1
            counter.rows += len(batch)
            counter.tokens += len(batch) * model.row_cost(example, max_t, max_kept)
        advance(len(batch))
        start = stop
    return Evaluation(argmax, tlogp, mlogp, obj)
