"""Gradient methods over the input embeddings ``e[L, D]``, for the attributed function
``f_i(e)``, the example's objective (``log p(target_i | e)`` by default; ``p``, the logit, or the contrast with a
foil: :mod:`seqexplain.models.base`).

* ``gradient_norm``: ``a_ij = ‖∂f_i/∂e_j‖₂`` (L2 over the embedding dimension).
* ``grad_x_input``: ``a_ij = Σ_d e_jd · ∂f_i/∂e_jd``.
* ``integrated_gradients`` (Sundararajan et al., 2017):
  ``a_ij = Σ_d (e_jd − b_jd) · Σ_k w_k ∂f_i/∂e_jd |_{b + α_k (e − b)}``
  with the ``(α_k, w_k)`` of the chosen quadrature rule on [0, 1] (Gauss-Legendre by default, as in captum).
  ``meta["convergence_delta"]``: per target ``δ_i = Σ_j a_ij − (f_i(e) − f_i(b))``; a warning names the targets
  where ``|δ_i| > max(5 % of |f_i(e) − f_i(b)|, 1e-4)`` (:func:`completeness_warnings`).

Options: ``token_budget`` (int ≥ 1 or None: the adapter's default for its device) for all three; IG also takes
``steps`` (int 1 … 100,000, default 50; the trapezoid rule needs 2, Gauss-Legendre takes at most 1,000), ``rule``
(gausslegendre | riemann_left | riemann_right | riemann_middle | riemann_trapezoid) and ``baseline`` (``"zero"``,
``"pad"``, ``"unk"``, ``"mask"``, a token or a token id); the functions' docstrings list them as validated.

All targets are handled together: one forward of the input (IG: of a chunk of path points) gives every
target's log-probability, and one backward batched over one-hot cotangents gives every target's gradient
(``autograd.grad(..., is_grads_batched=True)``), instead of one forward per target. Chunks hold at most
``token_budget`` tokens, counting every (target, row) pair of the batched backward. Several examples share these
forwards and backwards (``explain_many``): their rows are padded into one batch, and a target index's cotangent
covers every example holding that target.
"""

from __future__ import annotations

import warnings
import weakref
from typing import Literal

import numpy as np
import torch

from seqexplain.errors import InputError
from seqexplain.methods.common import budget, embeddings_of_named_token, logprobs_if_objective, pack_limit
from seqexplain.methods.registry import MethodResult, register
from seqexplain.models.base import SequenceModel
from seqexplain.models.batching import consecutive_groups
from seqexplain.models.example import Example, Part
from seqexplain.models.module_state import eval_mode, frozen_parameters
from seqexplain.progress import add_total, advance

Rule = Literal["gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid"]


#: Gauss-Legendre nodes solve an eigenproblem of size steps² (numpy's leggauss, as captum): 0.08 s at 1,000 steps,
#: 6 s at 4,000, 74.5 GiB at 100,000; a rule exact to degree 1,999 needs no more
MAX_GAUSS_LEGENDRE_STEPS = 1000


def check_quadrature(steps: int, rule: str) -> None:
    """:class:`InputError` for steps the rule cannot take: fewer than 1 (2 for the trapezoid rule), more than
    :data:`MAX_GAUSS_LEGENDRE_STEPS` for Gauss-Legendre, or an unknown rule."""
    if rule not in ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid"):
        raise InputError(f"unknown rule {rule!r}; use gausslegendre, riemann_left, riemann_right, riemann_middle "
                         "or riemann_trapezoid")
    if steps < 1:
        raise InputError("steps must be at least 1")
    if rule == "riemann_trapezoid" and steps < 2:
        raise InputError("the trapezoid rule needs at least 2 steps")
    if rule == "gausslegendre" and steps > MAX_GAUSS_LEGENDRE_STEPS:
        raise InputError(f"rule='gausslegendre' takes at most {MAX_GAUSS_LEGENDRE_STEPS} steps (its nodes cost "
                         f"memory and time growing with steps², and {MAX_GAUSS_LEGENDRE_STEPS} are exact far beyond "
                         "need); use fewer steps or a riemann rule (e.g. rule=riemann_middle) for more")


def quadrature(steps: int, rule: str) -> tuple[np.ndarray, np.ndarray]:
    """Points ``α_k`` in [0, 1] and weights ``w_k`` (summing to 1) of the IG path integral."""
    check_quadrature(steps, rule)
    if rule == "gausslegendre":
        x, w = np.polynomial.legendre.leggauss(steps)
        return 0.5 * (x + 1.0), 0.5 * w
    if rule == "riemann_trapezoid":
        alphas = np.linspace(0.0, 1.0, steps)
        weights = np.full(steps, 1.0 / (steps - 1))
        weights[[0, -1]] /= 2.0
        return alphas, weights
    offsets = {"riemann_left": 0.0, "riemann_right": 1.0, "riemann_middle": 0.5}
    alphas = (np.arange(steps) + offsets[rule]) / steps
    return alphas, np.full(steps, 1.0 / steps)


#: modules whose backward failed to batch over targets once: their later calls take one backward per target
_UNBATCHABLE: weakref.WeakSet[torch.nn.Module] = weakref.WeakSet()


def parts_gradients(model: SequenceModel, items: list[tuple[Example, torch.Tensor]], targets: list[int]
                    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """For each ``(example, points [R, L, D])``: ``∂f_t / ∂points[r]`` as ``[len(targets), R, L, D]`` for every
    listed target index ``t`` (zero where the example has no target ``t``), and the forward's ``f [R, T]``.

    One forward of every example's rows (padded into one batch by the adapter), then one backward batched over
    targets with one-hot cotangents (``is_grads_batched``). Where an operation's backward does not support
    batching, the failed pass has already freed part of the graph: the forward runs again and one backward per
    target follows, keeping the graph until the last (and later calls on that module loop from the start)."""

    def forward() -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        xs = [x.detach().clone().requires_grad_(True) for _, x in items]
        return xs, model.score_many([Part(ex, embeds=x) for (ex, _), x in zip(items, xs, strict=True)])

    xs, outs = forward()
    cots = []
    for out in outs:
        cot = torch.zeros(len(targets), *out.shape, dtype=out.dtype, device=out.device)
        for k, t in enumerate(targets):
            if t < out.shape[1]:
                cot[k, :, t] = 1.0
        cots.append(cot)
    grads: list[torch.Tensor | None] | None = None
    if len(targets) == 1:  # one cotangent: a plain backward (vmap over a batch of one only adds overhead)
        single = torch.autograd.grad(outs, xs, grad_outputs=[c[0] for c in cots], allow_unused=True)
        grads = [None if g is None else g.unsqueeze(0) for g in single]
    elif model.model not in _UNBATCHABLE:
        try:
            grads = list(torch.autograd.grad(outs, xs, grad_outputs=cots, is_grads_batched=True, allow_unused=True))
        except (RuntimeError, NotImplementedError):
            _UNBATCHABLE.add(model.model)  # later calls go straight to the loop
            xs, outs = forward()
    if grads is None:
        per_k = [torch.autograd.grad(outs, xs, grad_outputs=[c[k] for c in cots],
                                     retain_graph=k < len(targets) - 1, allow_unused=True)
                 for k in range(len(targets))]
        grads = [None if per_k[0][i] is None else torch.stack([g[i] for g in per_k]) for i in range(len(xs))]
    grads = [torch.zeros(len(targets), *x.shape, dtype=x.dtype, device=x.device) if g is None else g
             for g, x in zip(grads, xs, strict=True)]
    return grads, [o.detach() for o in outs]


def _warn_long(examples: list[Example], token_budget: int) -> None:
    """Say where memory goes when one input is longer than the token budget: the budget bounds rows per forward,
    but a backward pass keeps the activations of a whole row, so memory grows with the input's length."""
    longest = max(ex.length for ex in examples)
    if longest > token_budget:
        warnings.warn(
            f"an input of {longest} positions is longer than token_budget={token_budget}: gradient methods run it as "
            "one row and keep all its activations for the backward pass, so memory grows with its length, not with "
            "the budget (docs/methods.md, 'Memory': about 1.2 MB per token for a 135M-parameter LM); occlusion needs "
            "no backward pass", RuntimeWarning, stacklevel=4)


def _gradients_many(model: SequenceModel, examples: list[Example], token_budget: int
                    ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Per example: input embeddings ``[L, D]``, the gradient of every target w.r.t. them ``[T, L, D]``, and the
    targets' objective values ``[T]``."""
    results: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    _warn_long(examples, token_budget)
    with eval_mode(model.model), frozen_parameters(model.model):
        embeds = [e.detach() for e in model.embed_many(examples)]
        n_t = max(ex.n_targets for ex in examples)
        per = max(1, token_budget // max(ex.length for ex in examples))
        chunks = [list(range(i, min(n_t, i + per))) for i in range(0, n_t, per)]
        packs = consecutive_groups([len(chunks[0]) * ex.length for ex in examples], pack_limit(model, token_budget))
        add_total(sum(len(pack) for pack in packs) * len(chunks))
        for pack in packs:
            grads: list[list[torch.Tensor]] = [[] for _ in pack]
            out: list[torch.Tensor] = []
            for chunk in chunks:
                if chunk[0] >= max(examples[i].n_targets for i in pack):
                    break
                g, out = parts_gradients(model, [(examples[i], embeds[i]) for i in pack], chunk)
                for k, gi in enumerate(g):
                    grads[k].append(gi[:, 0])
                advance(len(pack))
            for k, i in enumerate(pack):
                g_all = torch.cat(grads[k])[: examples[i].n_targets]
                results.append((embeds[i][0], g_all, out[k][0]))
    return results


def _gradient_result(example: Example, values: torch.Tensor, f: torch.Tensor) -> MethodResult:
    return MethodResult(values.detach().cpu().double().numpy(), target_logprobs=logprobs_if_objective(example, f))


def gradient_norm_many(model: SequenceModel, examples: list[Example], *, token_budget: int | None = None
                       ) -> list[MethodResult]:
    return [_gradient_result(ex, g.norm(dim=-1), f)
            for ex, (_, g, f) in zip(examples, _gradients_many(model, examples, budget(model, token_budget)),
                                     strict=True)]


def grad_x_input_many(model: SequenceModel, examples: list[Example], *, token_budget: int | None = None
                      ) -> list[MethodResult]:
    return [_gradient_result(ex, (g * e.unsqueeze(0)).sum(-1), f)
            for ex, (e, g, f) in zip(examples, _gradients_many(model, examples, budget(model, token_budget)),
                                     strict=True)]


@register("gradient_norm", "gradient", "L2 norm of the gradient of the objective w.r.t. each input embedding",
          many=gradient_norm_many, drops_tokens=False)
def gradient_norm(model: SequenceModel, example: Example, *, token_budget: int | None = None) -> MethodResult:
    """``a_ij = ‖∂f_i/∂e_j‖₂``.

    Options: ``token_budget``: int ≥ 1 or None (default None): tokens per forward, counting every (target, row)
    pair of the batched backward; None: the adapter's default for its device."""
    return gradient_norm_many(model, [example], token_budget=token_budget)[0]


@register("grad_x_input", "gradient", "gradient × input embedding, summed over the embedding dimension (signed)",
          many=grad_x_input_many, drops_tokens=False)
def grad_x_input(model: SequenceModel, example: Example, *, token_budget: int | None = None) -> MethodResult:
    """``a_ij = Σ_d e_jd ∂f_i/∂e_jd``.

    Options: ``token_budget``: int ≥ 1 or None (default None): tokens per forward, counting every (target, row)
    pair of the batched backward; None: the adapter's default for its device."""
    return grad_x_input_many(model, [example], token_budget=token_budget)[0]


def baseline_embeddings(model: SequenceModel, example: Example, baseline: str | int) -> torch.Tensor:
    """``[1, L, D]`` IG baseline: ``"zero"`` embeddings, or a token (``pad``/``unk``/``mask``/id) everywhere."""
    if baseline == "zero":
        return torch.zeros_like(model.embed(example).detach())
    return embeddings_of_named_token(model, example, baseline)


def integrated_gradients_many(model: SequenceModel, examples: list[Example], *, steps: int = 50,
                              rule: Rule = "gausslegendre", baseline: str | int = "zero",
                              token_budget: int | None = None) -> list[MethodResult]:
    """IG of several examples; their path points share forwards (module docstring)."""
    token_budget = budget(model, token_budget)
    _warn_long(examples, token_budget)
    alphas, weights = quadrature(steps, rule)
    n_k = len(alphas)
    with eval_mode(model.model), frozen_parameters(model.model):
        es = [e.detach() for e in model.embed_many(examples)]
        bs = [baseline_embeddings(model, ex, baseline).to(e.dtype) for ex, e in zip(examples, es, strict=True)]
    device = es[0].device
    a = torch.tensor(alphas, dtype=es[0].dtype, device=device)
    w = torch.tensor(weights, dtype=torch.float64, device=device)
    totals = [torch.zeros(ex.n_targets, *e.shape[1:], dtype=torch.float64, device=device)
              for ex, e in zip(examples, es, strict=True)]
    n_t = max(ex.n_targets for ex in examples)
    longest = max(ex.length for ex in examples)
    # A chunk holds at most token_budget tokens counting every (target, point) pair, as the batched backward
    # materialises them all; examples are packed while all their path points fit.
    rows_budget = max(1, token_budget // longest)
    per_targets = min(n_t, rows_budget)
    per_steps = max(1, rows_budget // per_targets)
    packs = consecutive_groups([n_k * per_targets * ex.length for ex in examples], pack_limit(model, token_budget)) \
        if per_steps >= n_k else \
        [[i] for i in range(len(examples))]
    add_total(sum(len(pack) * n_k * -(-max(examples[i].n_targets for i in pack) // per_targets) for pack in packs))
    with eval_mode(model.model), frozen_parameters(model.model):
        for pack in packs:
            for k0 in range(0, n_k, per_steps):
                ks = torch.arange(k0, min(n_k, k0 + per_steps), device=device)
                items = [(examples[i], bs[i] + a[ks].view(-1, 1, 1) * (es[i] - bs[i])) for i in pack]
                for t0 in range(0, max(examples[i].n_targets for i in pack), per_targets):
                    chunk = list(range(t0, min(n_t, t0 + per_targets)))
                    grads, _ = parts_gradients(model, items, chunk)  # each [t, K, L, D]
                    for i, g in zip(pack, grads, strict=True):
                        mine = [c for c in chunk if c < examples[i].n_targets]
                        if mine:
                            totals[i][mine] += (g[: len(mine)].double() * w[ks].view(1, -1, 1, 1)).sum(1)
                    advance(len(pack) * len(ks))
        results = []
        for ex, e, b, total in zip(examples, es, bs, totals, strict=True):
            attributions = (total * (e - b).double()).sum(-1)  # [T, L]
            with torch.no_grad():
                f_x = model.score(ex, embeds=e)[0].double()  # two forwards: each row alone fits the budget
                f_b = model.score(ex, embeds=b)[0].double()
            gap = (f_x - f_b).cpu().numpy()
            delta = attributions.sum(-1).cpu().numpy() - gap
            results.append(MethodResult(attributions.detach().cpu().numpy(),
                                        target_logprobs=logprobs_if_objective(ex, f_x),
                                        meta={"convergence_delta": delta.tolist()},
                                        warnings=completeness_warnings(delta, gap, steps, rule, baseline)))
    if baseline == 0 and not isinstance(baseline, bool):  # captum's baselines=0 means zeros; here it is a token id
        tok = getattr(model, "tokenizer", None)
        name = tok.convert_ids_to_tokens(0) if hasattr(tok, "convert_ids_to_tokens") else "?"
        for r in results:
            r.warnings.append(f"integrated_gradients: baseline=0 is token id 0 ({name!r}) at every position, not zero "
                              "embeddings; use baseline='zero' for those")
    return results


#: IG's completeness check (Sundararajan et al. 2017, section 3): attributions should add up to f(x) − f(b) within 5 %
COMPLETENESS_TOLERANCE = 0.05


def completeness_warnings(delta: np.ndarray, gap: np.ndarray, steps: int, rule: str, baseline: str | int = "zero"
                          ) -> list[str]:
    """A warning naming the targets whose convergence delta ``δ_i = Σ_j a_ij − (f_i(x) − f_i(b))`` exceeds
    ``max(5 % of |f_i(x) − f_i(b)|, 1e-4)`` (the path integral is not approximated well), else none."""
    bad = [i for i, (d, g) in enumerate(zip(delta, gap, strict=True))
           if not abs(d) <= max(COMPLETENESS_TOLERANCE * abs(g), 1e-4)]
    if not bad:
        return []
    listed = ", ".join(f"target {i} (δ={delta[i]:.3g}, f(x)−f(b)={gap[i]:.3g})" for i in bad[:5])
    return [f"integrated_gradients: the completeness check fails for {len(bad)} target(s): {listed}"
            + (" …" if len(bad) > 5 else "") + f"; the scores miss f(x) − f(baseline) by more than "
            f"{COMPLETENESS_TOLERANCE:.0%}: the path integral is poorly approximated with steps={steps}, "
            f"rule={rule}; raise steps" + (" (or try a token baseline such as baseline='unk': near zero embeddings "
                                            "normalisation layers change fastest, so such paths need more steps)"
                                            if baseline == "zero" else "")]


@register("integrated_gradients", "gradient",
          "integrated gradients from a baseline to the input embeddings (Gauss-Legendre, 50 steps by default)",
          many=integrated_gradients_many, check=lambda o: check_quadrature(o["steps"], o["rule"]),
          drops_tokens=False)
def integrated_gradients(model: SequenceModel, example: Example, *, steps: int = 50, rule: Rule = "gausslegendre",
                         baseline: str | int = "zero", token_budget: int | None = None) -> MethodResult:
    """Integrated gradients (module docstring).

    Options:

    * ``steps``: int ≥ 1, ≤ 100000 (default 50): quadrature points (``riemann_trapezoid`` needs at least 2,
      ``gausslegendre`` takes at most 1000: :func:`check_quadrature`);
    * ``rule``: 'gausslegendre' | 'riemann_left' | 'riemann_right' | 'riemann_middle' | 'riemann_trapezoid'
      (default 'gausslegendre'): the quadrature rule (:func:`quadrature`);
    * ``baseline``: str or int (default 'zero'): "zero" (zero embeddings), "pad", "unk", "mask", a string that is
      one token, or a token id in ``0 … vocabulary size − 1``, placed at every position;
    * ``token_budget``: int ≥ 1 or None (default None): tokens per forward, counting every (target, path point)
      pair; None: the adapter's default for its device."""
    return integrated_gradients_many(model, [example], steps=steps, rule=rule, baseline=baseline,
                                     token_budget=token_budget)[0]
