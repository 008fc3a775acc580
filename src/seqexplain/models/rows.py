"""Evaluating many keep-rows under a token budget: a service of the models layer used by rationales, occlusion and
faithfulness metrics alike.

:func:`plan_forwards` cuts rows, in order, into forwards of at most ``token_budget`` tokens as the adapter prices
them (:meth:`~seqexplain.models.base.SequenceModel.row_cost`); occlusion plans its perturbed inputs (every target
of one input in each row, rows of several examples) with it, and :func:`evaluate_rows` its keep-rows.

A *keep-row* is ``(target index, kept positions)``: what the model predicts for that target when only those
positions are visible (the rule of :mod:`seqexplain.models.keep`). :func:`evaluate_rows` takes rows of any targets
in the given order, cuts them into forwards of at most ``token_budget`` tokens as the adapter prices them
(:meth:`~seqexplain.models.base.SequenceModel.row_cost`), runs each forward on the smallest example that serves
its rows (:meth:`~seqexplain.models.base.SequenceModel.rows_example`) asking for each row's own target only, and
returns per row the model's argmax, ``log p(target)``, ``log p(argmax)`` and the example's objective.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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


def plan_forwards(sizes: Sequence[tuple[int, ...]], price: Callable[[tuple[int, ...]], int], token_budget: int,
                  may_join: Callable[[int, int, int], bool] | None = None) -> list[tuple[int, int]]:
    """Cut rows ``0 … n−1``, in order, into forwards ``[start, stop)``. Rows are padded alike, so a forward of rows
    ``start … i`` costs ``(i − start + 1) × price(m)``, ``m`` the element-wise maximum of their ``sizes`` (e.g.
    largest target index and most kept positions, priced by the adapter's ``row_cost``). A forward takes the next
    row while its cost stays ≤ ``token_budget`` and ``may_join(start, i, cost)`` (where given) allows row ``i``; it
    always holds at least one row."""
    if token_budget < 1:
        raise InputError("token_budget must be a positive number of tokens")
    out, start, n = [], 0, len(sizes)
    while start < n:
        top, stop = sizes[start], start + 1
        while stop < n:
            grown = tuple(map(max, top, sizes[stop]))
            cost = (stop - start + 1) * price(grown)
            if cost > token_budget or (may_join is not None and not may_join(start, stop, cost)):
                break
            top, stop = grown, stop + 1
        out.append((start, stop))
        start = stop
    return out


def evaluate_rows(model: SequenceModel, example: Example, rows: Sequence[tuple[int, Sequence[int]]],
                  token_budget: int, counter: Counter | None = None) -> Evaluation:
    """Evaluate keep-rows ``(target, kept positions)`` (module docstring)."""
    n = len(rows)
    argmax = np.zeros(n, dtype=np.int64)
    tlogp = np.zeros(n, dtype=np.float64)
    mlogp = np.zeros(n, dtype=np.float64)
    obj = np.zeros(n, dtype=np.float64)
    sizes = [(t, len(kept)) for t, kept in rows]
    forwards = plan_forwards(sizes, lambda m: model.row_cost(example, *m), token_budget)
    add_total(n)
    for start, stop in forwards:
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
            counter.tokens += len(batch) * model.row_cost(example, *map(max, zip(*sizes[start:stop], strict=True)))
        advance(len(batch))
    return Evaluation(argmax, tlogp, mlogp, obj)
