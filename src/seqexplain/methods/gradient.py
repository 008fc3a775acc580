"""Gradient methods over the input embeddings ``e[L, D]``, for the attributed function
``f_i(e) = log p(target_i | e)``.

* ``gradient_norm``: ``a_ij = ‖∂f_i/∂e_j‖₂`` (L2 over the embedding dimension).
* ``grad_x_input``: ``a_ij = Σ_d e_jd · ∂f_i/∂e_jd``.
* ``integrated_gradients`` (Sundararajan et al., 2017):
  ``a_ij = Σ_d (e_jd − b_jd) · Σ_k w_k ∂f_i/∂e_jd |_{b + α_k (e − b)}``
  with the ``(α_k, w_k)`` of the chosen quadrature rule on [0, 1] (Gauss-Legendre by default, as in captum).

All targets are handled together: the embeddings are replicated once per target (and per step for IG) in
one batch, each row's own target is summed, and one backward gives every row's gradient. Rows are chunked so
that a forward holds at most ``token_budget`` tokens.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from seqexplain.errors import InputError
from seqexplain.methods.common import DEFAULT_TOKEN_BUDGET, chunks, embeddings_of_token, token_id_for
from seqexplain.methods.registry import MethodResult, register
from seqexplain.models.base import Example, SequenceModel, eval_mode

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


def target_gradients(model: SequenceModel, example: Example, points: torch.Tensor, rows_target: torch.Tensor,
                     token_budget: int) -> torch.Tensor:
    """Gradients ``∂f_{rows_target[r]} / ∂points[r]`` for every row ``r`` of ``points [R, L, D]``."""
    grads = torch.empty_like(points)
    n_l = example.length
    with eval_mode(model.model):
        for sl in chunks(points.shape[0], n_l, token_budget):
            x = points[sl].detach().clone().requires_grad_(True)
            out = model.score(example, embeds=x)  # [r, T]
            picked = out.gather(1, rows_target[sl].to(out.device).unsqueeze(1)).sum()
            (g,) = torch.autograd.grad(picked, x)
            grads[sl] = g
    return grads


def _all_targets_gradients(model: SequenceModel, example: Example, token_budget: int) -> tuple[torch.Tensor,
                                                                                               torch.Tensor]:
    e = model.embed(example).detach()  # [1, L, D]
    n_t = example.n_targets
    points = e.expand(n_t, -1, -1)
    rows_target = torch.arange(n_t)
    return e[0], target_gradients(model, example, points, rows_target, token_budget)


@register("gradient_norm", "gradient", "L2 norm of the gradient of log p(target) w.r.t. each input embedding")
def gradient_norm(model: SequenceModel, example: Example, *, token_budget: int = DEFAULT_TOKEN_BUDGET
                  ) -> MethodResult:
    _, g = _all_targets_gradients(model, example, token_budget)
    return MethodResult(g.norm(dim=-1).detach().cpu().double().numpy())


@register("grad_x_input", "gradient", "gradient × input embedding, summed over the embedding dimension (signed)")
def grad_x_input(model: SequenceModel, example: Example, *, token_budget: int = DEFAULT_TOKEN_BUDGET
                 ) -> MethodResult:
    e, g = _all_targets_gradients(model, example, token_budget)
    return MethodResult((g * e.unsqueeze(0)).sum(-1).detach().cpu().double().numpy())


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
    # Rows are (step k, target i) pairs; build them lazily per chunk to bound memory.
    n_rows = n_k * n_t
    with eval_mode(model.model):
        for sl in chunks(n_rows, example.length, token_budget):
            idx = torch.arange(sl.start, sl.stop, device=e.device)
            k, i = idx // n_t, idx % n_t
            x = (b + a[k].view(-1, 1, 1) * (e - b)).detach().requires_grad_(True)
            out = model.score(example, embeds=x)
            (g,) = torch.autograd.grad(out.gather(1, i.unsqueeze(1)).sum(), x)
            total.index_add_(0, i, g.double() * w[k].view(-1, 1, 1))
        attributions = (total * (e - b).double()).sum(-1)  # [T, L]
        with torch.no_grad():
            f_x = model.score(example, embeds=e)[0].double()
            f_b = model.score(example, embeds=b)[0].double()
    delta = (attributions.sum(-1) - (f_x - f_b)).cpu().numpy()
    return MethodResult(attributions.detach().cpu().numpy(), meta={"convergence_delta": delta.tolist()})
