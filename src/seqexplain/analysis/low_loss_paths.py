"""Low-loss paths between two trained weight sets ``w₁``, ``w₂`` (Ger et al.; Garipov et al. 2018).

Everything works on flat weight vectors through an :class:`Objective` (the loss and its gradient at a vector), so the
same code runs on a model (:class:`ModelObjective`) and on a small test problem with a known barrier.

* :func:`straight_line`: ``w(t) = (1 − t) w₁ + t w₂`` at ``n`` evenly spaced ``t``; the last point is ``w₂`` itself
  (``t = 1`` exactly, no rounding).
* :func:`valley_track` (the paper's method): from the last accepted point ``w₀`` step along the straight line to
  ``w₂`` (``t += step``, clamped at 1); accept while ``L ≤ B = max(L(w₁), L(w₂)) + ε``. When a proposal would exceed
  ``B``, find a direction ``d`` by **constrained dual ascent**: maximise ``cos(d, w₂ − ŵ)`` subject to
  ``gᵀd/‖d‖ ≤ −ε_c`` (``g = ∇L(ŵ)``: the step must descend) with the Lagrangian
  ``−cos(d, w₂ − ŵ) + λ (gᵀd/‖d‖ + ε_c)``, minimised over ``d`` by Adam for ``inner_steps``, then the projected
  dual step ``λ ← max(0, λ + η_λ (gᵀd/‖d‖ + ε_c))`` with ``η_λ`` decaying by ``dual_decay``, for ``max_outer``
  rounds or until the objective changes by less than ``1e-5`` and the constraint holds. (The original adds
  ``λ gᵀd`` unnormalised, which is not invariant to the scale of ``d``; here the constraint is the normalised one
  it checks. When ``‖g‖ ≤ ε_c`` the constraint cannot hold and ``ε_c`` is set to ``‖g‖/2`` for that step.) Then
  backtrack ``ŵ + α d/‖d‖``, ``α ← τ α`` from ``alpha``, until ``L ≤ B``; the new point restarts the line
  (``w₀ ← ŵ``, ``t ← 0``). From the first step that starts within ``constraint_dist`` of ``w₂`` on, ``ε_c`` is 0
  (for the rest of the walk, even if it moves away again). **Fallback**: when ``α`` falls below
  ``min_alpha`` the step ``min_alpha · d/‖d‖`` is taken even if its loss is above ``B`` (as the original does); such
  points are counted (``fallbacks``) and marked ``"fallback"``; no other point above ``B`` is ever accepted. The walk
  stops within ``stop_distance`` of ``w₂`` and ends with ``w₂`` (kind ``"end"``); after ``max_steps`` steps it
  stops with ``reached = False`` and ends with an unchecked jump to ``w₂`` (kind ``"jump"``: the loss along that
  last segment is not known).
* :func:`bezier_curve` (Garipov et al. 2018, "mode connectivity"): ``φ(t) = (1 − t)² w₁ + 2t(1 − t) θ + t² w₂``
  with ``θ`` (from the midpoint) trained by Adam on ``L(φ(t))``, ``t ~ U(0, 1)`` per step; evaluated at ``n``
  evenly spaced ``t``.

:func:`barrier`: the largest loss along a path minus the larger endpoint loss.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from seqexplain.errors import InputError
from seqexplain.models.attention_rnn import AttentionRNN, same_architecture


class Objective(Protocol):
    def loss(self, w: Tensor) -> float: ...

    def grad(self, w: Tensor) -> Tensor: ...


@dataclass
class Path:
    """Points of a path (flat weights), their positions ``t`` (fraction of the path's length for a tracked path),
    losses, and per point how it was reached (``"start"``, ``"line"``, ``"descent"``, ``"fallback"``, ``"end"``)."""

    points: list[Tensor]
    t: list[float]
    losses: list[float]
    kinds: list[str]
    bound: float | None = None
    fallbacks: int = 0
    reached: bool = True
    log: list[dict[str, float]] = field(default_factory=list)

    def summary(self) -> dict[str, object]:
        return {"points": len(self.points), "max_loss": _max(self.losses), "barrier": barrier(self.losses),
                "bound": self.bound, "fallbacks": self.fallbacks, "reached": self.reached,
                "kinds": {k: self.kinds.count(k) for k in sorted(set(self.kinds))}}


def _max(values: Sequence[float]) -> float:
    """The largest value, NaN when any is NaN (Python's ``max`` skips a NaN that is not first: order-dependent)."""
    return float(np.max(np.asarray(values, dtype=np.float64)))


def barrier(losses: Sequence[float]) -> float:
    """``max_t L(t) − max(L(start), L(end))``; NaN when any loss is NaN (a diverged point: the barrier is unknown)."""
    return _max(losses) - _max([losses[0], losses[-1]])


def _check_pair(w1: Tensor, w2: Tensor) -> None:
    if w1.shape != w2.shape or w1.dim() != 1:
        raise InputError(f"the two weight vectors differ in shape ({tuple(w1.shape)} and {tuple(w2.shape)}); a path "
                         "needs two weight sets of one architecture")


def straight_line(obj: Objective, w1: Tensor, w2: Tensor, n: int = 11) -> Path:
    """``n ≥ 2`` evenly spaced points of the segment, ending exactly at ``w₂``."""
    _check_pair(w1, w2)
    if n < 2:
        raise InputError("a straight line needs at least 2 points")
    ts = [k / (n - 1) for k in range(n)]
    pts = [w1.clone() if t == 0 else w2.clone() if t == 1 else w1 + t * (w2 - w1) for t in ts]
    return Path(pts, ts, [obj.loss(p) for p in pts], ["start", *["line"] * (n - 2), "end"])


@dataclass
class ValleyConfig:
    eps: float = 0.01
    step: float = 0.05
    stop_distance: float = 1e-3
    constraint_eps: float = 0.5
    constraint_dist: float = 5.0
    alpha: float = 0.5
    tau: float = 0.8
    min_alpha: float = 1e-5
    dual_lr: float = 0.5
    dual_decay: float = 0.95
    max_outer: int = 20
    inner_steps: int = 200
    inner_lr: float = 0.05
    max_steps: int = 500


def dual_ascent_direction(g: Tensor, r: Tensor, c_eps: float, cfg: ValleyConfig) -> tuple[Tensor, dict[str, float]]:
    """Unit ``d`` maximising ``cos(d, r)`` subject to ``gᵀd ≤ −c_eps`` by the dual ascent of the module docstring;
    also ``{"lambda", "constraint", "cos", "rounds"}``."""
    g, r = g.double(), r.double()
    d = (r / r.norm()).clone().requires_grad_(True)
    opt = torch.optim.Adam([d], lr=cfg.inner_lr)
    lam, lam_lr = 1.0, cfg.dual_lr
    prev = float("inf")

    def parts(v: Tensor) -> tuple[Tensor, Tensor]:
        n = v.norm()
        return (r @ v) / (r.norm() * n), (g @ v) / n

    rounds = 0
    for rounds in range(1, cfg.max_outer * 5 + 1):  # the extra rounds only while the constraint is violated
        for _ in range(cfg.inner_steps):
            cos, con = parts(d)
            obj = -cos + lam * (con + c_eps)
            opt.zero_grad()
            obj.backward()
            opt.step()
        with torch.no_grad():
            cos, con = parts(d)
            lam = max(0.0, lam + lam_lr * (float(con) + c_eps))
            lam_lr *= cfg.dual_decay
            value = float(-cos)
        feasible = float(con) <= -c_eps + 1e-6
        if (abs(prev - value) < 1e-5 or rounds >= cfg.max_outer) and feasible:
            break
        prev = value
    with torch.no_grad():
        out = d.detach() / d.detach().norm()
        cos, con = parts(out)
    return out, {"lambda": lam, "constraint": float(con), "cos": float(cos), "rounds": float(rounds)}


def valley_track(obj: Objective, w1: Tensor, w2: Tensor, cfg: ValleyConfig | None = None,
                 progress: Callable[[int, float], None] | None = None) -> Path:
    """The tracked path from ``w₁`` to ``w₂`` (module docstring)."""
    cfg = cfg or ValleyConfig()
    _check_pair(w1, w2)
    w1, w2 = w1.double(), w2.double()
    l1, l2 = obj.loss(w1), obj.loss(w2)
    bound = max(l1, l2) + cfg.eps
    path = Path([w1.clone()], [0.0], [l1], ["start"], bound=bound)
    w_hat, w0, t = w1.clone(), w1.clone(), 0.0
    c_eps = cfg.constraint_eps
    steps = 0
    while float((w_hat - w2).norm()) > cfg.stop_distance and steps < cfg.max_steps:
        steps += 1
        if float((w_hat - w2).norm()) < cfg.constraint_dist:
            c_eps = 0.0
        t = min(1.0, t + cfg.step)
        proposal = w2.clone() if t >= 1.0 else w0 + t * (w2 - w0)
        loss = obj.loss(proposal)
        if loss <= bound:  # False for a NaN loss: it is never below the bound
            w_hat = proposal
            path.points.append(w_hat.clone())
            path.losses.append(loss)
            path.kinds.append("line")
        else:
            g = obj.grad(w_hat).double()
            gn = float(g.norm())
            eff = c_eps if gn > c_eps else 0.5 * gn
            d, info = dual_ascent_direction(g, w2 - w_hat, eff, cfg)
            alpha = cfg.alpha
            cand = w_hat + alpha * d
            loss = obj.loss(cand)
            kind = "descent"
            while not loss <= bound:
                alpha *= cfg.tau
                if alpha < cfg.min_alpha:
                    alpha = cfg.min_alpha
                    cand = w_hat + alpha * d
                    loss = obj.loss(cand)
                    kind = "fallback" if not loss <= bound else "descent"
                    break
                cand = w_hat + alpha * d
                loss = obj.loss(cand)
            path.fallbacks += kind == "fallback"
            w_hat, w0, t = cand, cand.clone(), 0.0
            path.points.append(w_hat.clone())
            path.losses.append(loss)
            path.kinds.append(kind)
            path.log.append({**info, "alpha": alpha, "loss": loss, "grad_norm": gn, "constraint_eps": eff})
        if progress is not None:
            progress(steps, float((w_hat - w2).norm()))
    path.reached = float((w_hat - w2).norm()) <= cfg.stop_distance
    if not torch.equal(path.points[-1], w2):  # within stop_distance ("end"), or a jump after max_steps ("jump")
        path.points.append(w2.clone())
        path.losses.append(l2)
        path.kinds.append("end" if path.reached else "jump")
    else:
        path.kinds[-1] = "end"
    lengths = np.cumsum([0.0] + [float((b - a).norm()) for a, b in zip(path.points, path.points[1:], strict=False)])
    path.t = (lengths / lengths[-1]).tolist() if lengths[-1] > 0 else [0.0] * len(path.points)
    return path


def bezier_curve(obj: Objective, w1: Tensor, w2: Tensor, steps: int = 200, lr: float = 0.01, n: int = 11,
                 seed: int = 0) -> tuple[Path, Tensor]:
    """The trained quadratic Bézier curve (module docstring) at ``n ≥ 2`` points, and its control point ``θ``."""
    _check_pair(w1, w2)
    if n < 2:
        raise InputError("a Bézier curve needs at least 2 points")
    w1, w2 = w1.double(), w2.double()
    theta = (0.5 * (w1 + w2)).clone().requires_grad_(True)
    opt = torch.optim.Adam([theta], lr=lr)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        t = float(torch.rand((), generator=gen))
        point = (1 - t) ** 2 * w1 + 2 * t * (1 - t) * theta.detach() + t**2 * w2
        opt.zero_grad()
        theta.grad = 2 * t * (1 - t) * obj.grad(point).double()
        opt.step()
    ctrl = theta.detach()
    ts = [k / (n - 1) for k in range(n)]
    pts = [w1.clone() if t == 0 else w2.clone() if t == 1 else (1 - t) ** 2 * w1 + 2 * t * (1 - t) * ctrl + t**2 * w2
           for t in ts]
    return Path(pts, ts, [obj.loss(p) for p in pts], ["start", *["bezier"] * (n - 2), "end"]), ctrl


# --------------------------------------------------------------------------- models
def _slots(model: torch.nn.Module) -> list[tuple[str, Tensor, bool]]:
    """``(name, tensor, trainable)`` of every parameter and floating buffer (BatchNorm statistics) in state-dict
    order; integer buffers (``num_batches_tracked``) are not part of the flat vector."""
    params = dict(model.named_parameters())
    return [(k, v, k in params) for k, v in model.state_dict(keep_vars=True).items() if v.is_floating_point()]


def flat_weights(model: torch.nn.Module) -> Tensor:
    """Parameters and BatchNorm statistics of ``model`` as one flat float64 vector (:func:`_slots` order)."""
    return torch.cat([v.detach().double().reshape(-1) for _, v, _ in _slots(model)])


def load_flat(model: torch.nn.Module, flat: Tensor) -> None:
    """Write a vector of :func:`flat_weights` back into ``model``."""
    size = sum(v.numel() for _, v, _ in _slots(model))
    if flat.dim() != 1 or flat.numel() != size:
        raise InputError(f"a flat weight vector of {flat.numel()} values for a model of {size}")
    start = 0
    with torch.no_grad():
        for _, v, _ in _slots(model):
            n = v.numel()
            v.copy_(flat[start : start + n].view_as(v).to(v.dtype))
            start += n


class ModelObjective:
    """Mean cross-entropy of an :class:`AttentionRNN` (eval mode) on labelled documents at flat weights; gradients
    w.r.t. the parameters (zero for the BatchNorm statistics)."""

    def __init__(self, model: AttentionRNN, docs: Sequence[object], batch_size: int = 256) -> None:
        from seqexplain.training.attention_rnn import batch_loss, batches

        if not docs:
            raise InputError("a path objective needs at least one labelled document")
        self.model, self.docs, self.batch_size = model.eval(), list(docs), batch_size
        self._batch_loss, self._batches = batch_loss, batches

    def loss(self, w: Tensor) -> float:
        load_flat(self.model, w)
        total = 0.0
        with torch.no_grad():
            for chunk in self._batches(self.docs, self.batch_size):
                total += float(self._batch_loss(self.model, chunk)) * len(chunk)
        return total / len(self.docs)

    def grad(self, w: Tensor) -> Tensor:
        load_flat(self.model, w)
        self.model.zero_grad()
        for chunk in self._batches(self.docs, self.batch_size):
            (self._batch_loss(self.model, chunk) * (len(chunk) / len(self.docs))).backward()
        parts = [v.grad.detach().double().reshape(-1) if trainable and v.grad is not None
                 else torch.zeros(v.numel(), dtype=torch.float64) for _, v, trainable in _slots(self.model)]
        self.model.zero_grad()
        return torch.cat(parts)


def load_weight_pair(path1: str | os.PathLike[str], path2: str | os.PathLike[str]
                     ) -> tuple[AttentionRNN, AttentionRNN]:
    """The two models of two weight files of :func:`~seqexplain.models.attention_rnn.save_attention_rnn`, checked to
    be of one architecture (:class:`InputError` otherwise)."""
    from seqexplain.models.attention_rnn import load_attention_rnn, read_config

    a, b = read_config(path1), read_config(path2)
    if not same_architecture(a, b):
        diff = sorted(k for k, v in a.to_dict().items() if v != b.to_dict()[k] and k != "numerics")
        raise InputError(f"{path1} and {path2} hold different architectures (they differ in {', '.join(diff)}); a path "
                         "needs two weight sets of one architecture")
    return load_attention_rnn(path1), load_attention_rnn(path2)


def check_same_architecture(a: AttentionRNN, b: AttentionRNN, names: tuple[str, str] = ("w1", "w2")) -> None:
    """:class:`InputError` when two models' weights cannot be interpolated."""
    if not same_architecture(a.config, b.config):
        raise InputError(f"{names[0]} and {names[1]} are of different architectures ({a.config.to_dict()} vs "
                         f"{b.config.to_dict()}); a path needs two weight sets of one architecture")
