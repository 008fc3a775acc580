"""Reference state gradients (Verwimp et al. 2018) by plain autograd, for tests and the benchmark baseline.

:func:`state_gradient_loop` runs one backward pass per ``(t, d)`` on one segment and :func:`state_gradient` one
Jacobian ``G_d(t) = ∂ s_t / ∂ x_{t-d}``; both treat the state entering the segment as a constant, like the fast
forward-mode computation of :mod:`seqexplain.analysis.state_gradients` they check.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

from seqexplain.analysis.state_gradients import StateKind, check_gradient_args, state_index
from seqexplain.errors import InputError
from seqexplain.models.module_state import eval_mode
from seqexplain.models.rnn.lm import RNNLanguageModel, State


def state_gradient_loop(
    model: RNNLanguageModel,
    segment_ids: Tensor,
    layer: int = 0,
    state: StateKind = "cell",
    max_delay: int = 50,
    initial_state: State | None = None,
    positions: Iterable[int] | None = None,
) -> tuple[Tensor, Tensor]:
    """Reference implementation: one (unit-batched) backward pass per ``(t, d)`` on one segment ``segment_ids[L]``.

    Returns ``grads[L, max_delay+1, H, E]`` and ``valid[L, max_delay+1]`` (``d <= t``). Slow; for tests and the
    benchmark baseline. ``initial_state`` (per layer ``(h, c)`` with batch 1) is treated as a constant.
    ``positions`` restricts the computation to those ``t`` (the others stay zero and invalid).
    """
    check_gradient_args(max_delay, 1)
    li, si = state_index(model, layer, state)
    length = int(segment_ids.numel())
    emb = model.get_input_embeddings().weight.detach()
    with eval_mode(model):
        s = initial_state if initial_state is not None else model.initial_state(1, emb.device)
        s = tuple(tuple(v.detach() for v in lay) for lay in s)[: li + 1]
        xs = [emb[segment_ids[t]].unsqueeze(0).clone().requires_grad_(True) for t in range(length)]
        states: list[Tensor] = []
        for t in range(length):
            s = model.step(xs[t], s, li + 1)
            states.append(s[li][si])
        h = states[0].shape[-1]
        eye = torch.eye(h, dtype=emb.dtype, device=emb.device).unsqueeze(1)
        grads = torch.zeros(length, max_delay + 1, h, emb.shape[1], dtype=emb.dtype)
        valid = torch.zeros(length, max_delay + 1, dtype=torch.bool)
        for t in range(length) if positions is None else positions:
            if not 0 <= t < length:
                raise InputError(f"time step t={t} is outside the segment (0 <= t < {length})")
            for d in range(min(t, max_delay) + 1):
                (g,) = torch.autograd.grad(states[t], xs[t - d], grad_outputs=eye, is_grads_batched=True,
                                           retain_graph=True)
                grads[t, d] = g[:, 0, :]
                valid[t, d] = True
    return grads, valid


def state_gradient(
    model: RNNLanguageModel,
    segment_ids: Tensor,
    t: int,
    d: int,
    layer: int = 0,
    state: StateKind = "cell",
    initial_state: State | None = None,
) -> Tensor:
    """One state gradient ``G_d(t) = ∂ s_t / ∂ x_{t-d}`` ([H, E]) within the segment ``segment_ids[L]``.

    Raises :class:`InputError` when ``t`` is not a position of the segment or ``t - d`` falls outside it.
    """
    length = int(segment_ids.numel())
    if not 0 <= t < length:
        raise InputError(f"time step t={t} is outside the segment (0 <= t < {length})")
    if not 0 <= d <= t:
        raise InputError(f"delay d={d} reaches outside the segment at t={t} (0 <= d <= t required; gradients are "
                         "stopped at segment boundaries)")
    li, si = state_index(model, layer, state)
    emb = model.get_input_embeddings().weight.detach()
    with eval_mode(model):
        s = initial_state if initial_state is not None else model.initial_state(1, emb.device)
        s = tuple(tuple(v.detach() for v in lay) for lay in s)[: li + 1]
        xs = emb[segment_ids[: t + 1]].clone()
        src = xs[t - d].unsqueeze(0).clone().requires_grad_(True)

        def run(x_src: Tensor) -> Tensor:
            st = s
            for k in range(t + 1):
                st = model.step(x_src if k == t - d else xs[k].unsqueeze(0), st, li + 1)
            return st[li][si][0]

        return torch.autograd.functional.jacobian(run, src)[:, 0, :]
