"""Gradient methods over the input embeddings ``e[L, D]``, for the attributed function
``f_i(e) = log p(target_i | e)``.

* ``gradient_norm``: ``a_ij = ‖∂f_i/∂e_j‖₂`` (L2 over the embedding dimension).
* ``grad_x_input``: ``a_ij = Σ_d e_jd · ∂f_i/∂e_jd``.
* ``integrated_gradients`` (Sundararajan et al., 2017):
  ``a_ij = Σ_d (e_jd − b_jd) · Σ_k w_k ∂f_i/∂e_jd |_{b + α_k (e − b)}``
  with the ``(α_k, w_k)`` of the chosen quadrature rule on [0, 1] (Gauss-Legendre by default, as in captum).

All targets are handled together: one forward of the input (IG: of a chunk of path points) gives every
target's log-probability, and one backward batched over one-hot cotangents gives every target's gradient
(``autograd.grad(..., is_grads_batched=True)``), instead of one forward per target. Chunks hold at most
``token_budget`` tokens, counting every (target, row) pair of the batched backward.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from seqexplain.errors import InputError
from seqexplain.methods.common import DEFAULT_TOKEN_BUDGET, embeddings_of_token, token_id_for
from seqexplain.methods.registry import MethodResult, register
from seqexplain.models.base import Example, SequenceModel, eval_mode, frozen_parameters

Rule = Literal["gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid"]


def quadrature(steps: int, rule: str) -> tuple[np.ndarray, np.ndarray]:
    """Points ``α_k`` in [0, 1] and weights ``w_k`` (summing to 1) of the IG path integral."""
    if steps < 1:
        raise InputError("steps must be at least 1")
    if rule == "gausslegendre":
        x, w = np.polynomial.legendre.leggauss(steps)
        return 0.5 * (x + 1.0), 0.5 * w
    if rule == "riemann_trapezoid":
        if steps < 2:
            raise InputError("the trapezoid rule needs at least 2 steps")
        alphas = np.linspace(0.0, 1.0, steps)
        weights = np.full(steps, 1.0 / (steps - 1))
        weights[[0, -1]] /= 2.0
        return alphas, weights
    offsets = {"riemann_left": 0.0, "riemann_right": 1.0, "riemann_middle": 0.5}
    if rule not in offsets:
        raise InputError(f"unknown rule {rule!r}; use gausslegendre, riemann_left, riemann_right, riemann_middle "
                         "or riemann_trapezoid")
    alphas = (np.arange(steps) + offsets[rule]) / steps
    return alphas, np.full(steps, 1.0 / steps)


def rows_targets_gradients(model: SequenceModel, example: Example, points: torch.Tensor,
                           targets: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """``[len(targets), R, L, D]``: ``∂f_t / ∂points[r]`` for every listed target ``t`` and row ``r``, and the
    forward's ``f [R, T]``.

    One forward of the ``R`` rows, then one backward per target, batched over targets with one-hot cotangents
    (``is_grads_batched``; a plain loop keeping the graph where an operation does not support batching)."""
    x = points.detach().clone().requires_grad_(True)
    out = model.score(example, embeds=x)  # [R, T]
    cot = torch.zeros(len(targets), *out.shape, dtype=out.dtype, device=out.device)
    for k, t in enumerate(targets):
        cot[k, :, t] = 1.0
    try:
        (g,) = torch.autograd.grad(out, x, grad_outputs=cot, is_grads_batched=True)
    except (RuntimeError, NotImplementedError):
        g = torch.stack([torch.autograd.grad(out, x, grad_outputs=c, retain_graph=k < len(targets) - 1)[0]
                         for k, c in enumerate(cot)])
    return g, out.detach()


def _target_chunks(n_targets: int, row_tokens: int, token_budget: int) -> list[list[int]]:
    per = max(1, token_budget // max(1, row_tokens))
    return [list(range(i, min(n_targets, i + per))) for i in range(0, n_targets, per)]


def _all_targets_gradients(model: SequenceModel, example: Example, token_budget: int
                           ) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """Input embeddings ``[L, D]``, the gradient of every target w.r.t. them ``[T, L, D]``, and the targets'
    log-probabilities."""
    e = model.embed(example).detach()  # [1, L, D]
    grads = []
    with eval_mode(model.model), frozen_parameters(model.model):
        for chunk in _target_chunks(example.n_targets, example.length, token_budget):
            g, out = rows_targets_gradients(model, example, e, chunk)
            grads.append(g[:, 0])
    return e[0], torch.cat(grads), out[0].double().cpu().tolist()


@register("gradient_norm", "gradient", "L2 norm of the gradient of log p(target) w.r.t. each input embedding")
def gradient_norm(model: SequenceModel, example: Example, *, token_budget: int = DEFAULT_TOKEN_BUDGET
                  ) -> MethodResult:
    _, g, logp = _all_targets_gradients(model, example, token_budget)
    return MethodResult(g.norm(dim=-1).detach().cpu().double().numpy(), target_logprobs=logp)


@register("grad_x_input", "gradient", "gradient × input embedding, summed over the embedding dimension (signed)")
def grad_x_input(model: SequenceModel, example: Example, *, token_budget: int = DEFAULT_TOKEN_BUDGET
                 ) -> MethodResult:
    e, g, logp = _all_targets_gradients(model, example, token_budget)
    return MethodResult((g * e.unsqueeze(0)).sum(-1).detach().cpu().double().numpy(), target_logprobs=logp)


def baseline_embeddings(model: SequenceModel, example: Example, baseline: str | int) -> torch.Tensor:
    """``[1, L, D]`` IG baseline: ``"zero"`` embeddings, or a token (``pad``/``unk``/``mask``/id) everywhere."""
    if baseline == "zero":
        return torch.zeros_like(model.embed(example).detach())
    return embeddings_of_token(model, example, token_id_for(model, baseline))


@register("integrated_gradients", "gradient",
          "integrated gradients from a baseline to the input embeddings (Gauss-Legendre, 50 steps by default)")
def integrated_gradients(model: SequenceModel, example: Example, *, steps: int = 50, rule: Rule = "gausslegendre",
                         baseline: str | int = "zero", token_budget: int = DEFAULT_TOKEN_BUDGET) -> MethodResult:
    alphas, weights = quadrature(steps, rule)
    e = model.embed(example).detach()  # [1, L, D]
    b = baseline_embeddings(model, example, baseline).to(e.dtype)
    n_t, n_k = example.n_targets, len(alphas)
    a = torch.tensor(alphas, dtype=e.dtype, device=e.device)
    w = torch.tensor(weights, dtype=torch.float64, device=e.device)
    total = torch.zeros(n_t, *e.shape[1:], dtype=torch.float64, device=e.device)
    # One forward per chunk of path points, one batched backward per chunk of targets: a chunk holds at most
    # token_budget tokens counting every (target, point) pair, as the batched backward materialises them all.
    rows_budget = max(1, token_budget // example.length)
    per_targets = min(n_t, rows_budget)
    per_steps = max(1, rows_budget // per_targets)
    with eval_mode(model.model), frozen_parameters(model.model):
        for k0 in range(0, n_k, per_steps):
            ks = torch.arange(k0, min(n_k, k0 + per_steps), device=e.device)
            x = b + a[ks].view(-1, 1, 1) * (e - b)  # [K, L, D]
            for t0 in range(0, n_t, per_targets):
                chunk = list(range(t0, min(n_t, t0 + per_targets)))
                g, _ = rows_targets_gradients(model, example, x, chunk)  # [t, K, L, D]
                total[chunk] += (g.double() * w[ks].view(1, -1, 1, 1)).sum(1)
        attributions = (total * (e - b).double()).sum(-1)  # [T, L]
        with torch.no_grad():
            f_x = model.score(example, embeds=e)[0].double()
            f_b = model.score(example, embeds=b)[0].double()
    delta = (attributions.sum(-1) - (f_x - f_b)).cpu().numpy()
    return MethodResult(attributions.detach().cpu().numpy(), target_logprobs=f_x.cpu().tolist(),
                        meta={"convergence_delta": delta.tolist()})
