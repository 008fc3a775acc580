"""Pieces of hand-written oracles that several test files share (written from the rules in the docs, never from
the code under test)."""

from __future__ import annotations

import numpy as np
import torch


def seq2seq_read(logits: torch.Tensor, ex, keep_row: torch.Tensor) -> torch.Tensor:
    """Per target of an encoder-decoder example, ``log p(target)`` read from decoder ``logits[T, V]`` at the last
    kept decoder position before it, or at ``p_i − 1`` when none is kept (rules 3–4 of models/keep.py)."""
    s = ex.n_source
    out = []
    for i in range(ex.n_targets):
        p = s + 1 + i
        r = next((j for j in range(p - 1, s - 1, -1) if keep_row[j]), p - 1)
        out.append(torch.log_softmax(logits[r - s], -1)[ex.target_ids[i]])
    return torch.stack(out)


def finite_stand_in(scores: object) -> np.ndarray:
    """The same order and ties with finite values, for references that take no infinities (scipy, sklearn): +inf
    above every finite score, -inf below, NaN left as it is."""
    import numpy as np

    s = np.asarray(scores, dtype=np.float64)
    finite = s[np.isfinite(s)]
    top = (finite.max() if finite.size else 0.0) + 10.0
    low = (finite.min() if finite.size else 0.0) - 10.0
    return np.where(s == np.inf, top, np.where(s == -np.inf, low, s))


def transformers_rates(schedule: str, warmup: int, total: int, lr: float = 1.0) -> list[float]:
    """The learning rate of each of ``total`` steps under transformers' ``get_{linear,cosine}_schedule_with_warmup``
    (read off an optimiser stepped through it)."""
    from transformers import get_cosine_schedule_with_warmup, get_linear_schedule_with_warmup

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    make = get_linear_schedule_with_warmup if schedule == "linear" else get_cosine_schedule_with_warmup
    sched = make(opt, num_warmup_steps=warmup, num_training_steps=total)
    rates = []
    for _ in range(total):
        rates.append(float(opt.param_groups[0]["lr"]))
        opt.step()
        sched.step()
    return rates
