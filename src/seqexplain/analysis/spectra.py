"""Normalisation of the embedding space and spectral summaries of state gradients (Verwimp et al. 2018).

**Equal-variance normalisation.** Embeddings ``x`` (rows of the embedding matrix, optionally weighted, e.g. by word
frequency) have mean ``μ`` and covariance ``Σ = D Dᵀ`` (``D``: lower Cholesky factor). ``z = Z (x - μ)`` with
``Z = D⁻¹`` has identity covariance: every direction of the normalised space has unit variance, so the size of a
gradient no longer reflects how spread out the embeddings are along a direction. With ``x = μ + D z`` the gradient
with respect to the normalised input is ``∂s/∂z = G D`` (**normalised on the input side**).

**Spectra.** Per delay ``d``: the singular values ``σ_1 >= σ_2 >= ...`` of the mean normalised gradient
``mean_t(G_d(t)) D`` (the paper's analysis; its sum is the total "memory" of the word ``d`` steps back), and the RMS
spectrum ``sqrt(eig(Dᵀ mean_t(G_dᵀ G_d) D))``, the root-mean-square singular values of the individual normalised
gradients (insensitive to sign cancellation in the mean).

**Directions.** For an embedding-space direction ``v`` (e.g. the difference of two class-mean embeddings) the
normalised direction is ``u = Z v / ||Z v||``.

* relative memory ``r_d(u) = uᵀ M̂_d u / (tr(M̂_d) / E)`` with ``M̂_d = Dᵀ mean(G_dᵀ G_d) D``: the mean squared gain
  ``||Ĝ u||²`` of direction ``u`` relative to that of an average direction (1 = remembered like a random direction,
  > 1 better). ``relative_memory(..., use="mean")`` applies the same ratio to the mean gradient ``Ĝ = mean(G) D``.
* subspace cosine ``cos_d(u, k) = ||V_kᵀ u||``: cosine between ``u`` and the span of the top-``k`` right singular
  vectors ``V_k`` of the mean normalised gradient (1 = the direction lies in the best-remembered subspace).

These two definitions are this library's precise readings of the paper's "relative memory of a property" and
"comparison with the best-preserved directions".
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from seqexplain.analysis.state_gradient_stats import StateGradientStats
from seqexplain.errors import InputError


@dataclass
class EmbeddingNormalizer:
    """``mean[E]``, ``cov[E, E]``, Cholesky factor ``chol`` = ``D`` (``cov = D Dᵀ``), ``whiten`` = ``D⁻¹``; float64."""

    mean: Tensor
    cov: Tensor
    chol: Tensor
    whiten: Tensor

    @classmethod
    def fit(cls, embeddings: Tensor | np.ndarray, weights: Tensor | np.ndarray | None = None,
            eps: float = 1e-8) -> EmbeddingNormalizer:
        """Fit to the rows of ``embeddings[V, E]``, weighted by ``weights[V]`` (default uniform).

        ``cov = Σ_v w_v (x_v - μ)(x_v - μ)ᵀ / Σ_v w_v`` (population covariance); ``eps · mean(diag)`` is added to the
        diagonal if needed to make it positive definite. A covariance of numerical rank below ``E`` (eigenvalues at
        most ``eps · mean(diag)``: fewer spread-out rows than dimensions) is warned about (``RuntimeWarning``):
        directions outside the embeddings' span are then amplified by up to ``1/sqrt(eps · mean(diag))``.
        Non-finite embeddings or weights, and weighted rows that are all equal (zero covariance), raise
        :class:`InputError`.
        """
        x = torch.as_tensor(np.asarray(embeddings) if not isinstance(embeddings, Tensor) else embeddings.detach())
        x = x.to(torch.float64)
        if x.dim() != 2 or x.shape[0] < 2:
            raise InputError(f"need an embedding matrix [V >= 2, E], got {tuple(x.shape)}")
        w = torch.ones(x.shape[0], dtype=torch.float64) if weights is None else torch.as_tensor(
            np.asarray(weights), dtype=torch.float64)
        if not bool(torch.isfinite(x).all()):
            raise InputError("the embedding matrix holds NaN or infinite values (did training diverge?)")
        if w.shape != (x.shape[0],) or not bool(torch.isfinite(w).all()) or bool((w < 0).any()) \
                or float(w.sum()) <= 0:
            raise InputError("weights must be finite and non-negative, one per embedding row, with a positive sum")
        w = w / w.sum()
        mean = w @ x
        xc = x - mean
        cov = (xc * w.unsqueeze(1)).T @ xc
        if float(cov.diagonal().sum()) == 0.0:
            raise InputError("the embedding rows with positive weight are all equal: they have no covariance to "
                             "normalise by; give rows that differ (or more rows positive weight)")
        floor = eps * float(cov.diagonal().mean())
        rank = int((torch.linalg.eigvalsh(cov) > floor).sum())
        if rank < cov.shape[0]:
            warnings.warn(f"the embedding covariance has numerical rank {rank} of {cov.shape[0]} (fewer spread-out "
                          "rows than dimensions); directions outside the embeddings' span are amplified by up to "
                          f"{floor ** -0.5:.3g} in the normalised space", RuntimeWarning, stacklevel=2)
        chol, info = torch.linalg.cholesky_ex(cov)
        if int(info) != 0:
            cov = cov + eps * float(cov.diagonal().mean()) * torch.eye(cov.shape[0], dtype=cov.dtype)
            chol = torch.linalg.cholesky(cov)
        whiten = torch.linalg.solve_triangular(chol, torch.eye(chol.shape[0], dtype=chol.dtype), upper=False)
        return cls(mean=mean, cov=cov, chol=chol, whiten=whiten)

    def transform(self, x: Tensor) -> Tensor:
        """Normalised embeddings ``z = Z (x - μ)`` (rows)."""
        return (x.to(torch.float64) - self.mean) @ self.whiten.T

    def normalize_gradient(self, grad: Tensor) -> Tensor:
        """``G D``: gradient with respect to the normalised input (works on ``[..., H, E]``)."""
        return grad.to(torch.float64) @ self.chol

    def normalize_gram(self, gram: Tensor) -> Tensor:
        """``Dᵀ M D`` for a mean Gram matrix ``M = mean(GᵀG)`` (``[..., E, E]``)."""
        return self.chol.T @ gram.to(torch.float64) @ self.chol

    def direction(self, v: Tensor) -> Tensor:
        """Unit normalised direction ``u = Z v / ||Z v||`` of an embedding-space direction ``v[E]``."""
        v = torch.as_tensor(v)
        if tuple(v.shape) != (self.whiten.shape[0],):
            raise InputError(f"a direction of shape {tuple(v.shape)} for embeddings of width {self.whiten.shape[0]}; "
                             "give one value per embedding dimension")
        u = self.whiten @ v.to(torch.float64)
        n = torch.linalg.vector_norm(u)
        if float(n) == 0.0:
            raise InputError("the direction is the zero vector")
        return u / n


def _identity_if_none(norm: EmbeddingNormalizer | None, e: int) -> EmbeddingNormalizer:
    """``norm`` (checked to be of width ``e``), or the identity normalisation of width ``e``."""
    if norm is not None:
        if norm.chol.shape[0] != e:
            raise InputError(f"the embedding normaliser is of width {norm.chol.shape[0]} but the gradients are of "
                             f"width {e}; fit it on the analysed model's embeddings")
        return norm
    eye = torch.eye(e, dtype=torch.float64)
    return EmbeddingNormalizer(torch.zeros(e, dtype=torch.float64), eye, eye, eye)


def _check_k(k: int | None) -> None:
    if k is not None and k < 1:
        raise InputError(f"k must be at least 1 (the number of top singular values), got {k}")


def singular_values(mean_grad: Tensor, normalizer: EmbeddingNormalizer | None = None, k: int | None = None) -> Tensor:
    """Singular values (descending) of ``mean_grad[..., H, E] · D`` → ``[..., min(H, E)]`` (top ``k ≥ 1`` if given)."""
    _check_k(k)
    norm = _identity_if_none(normalizer, mean_grad.shape[-1])
    s = torch.linalg.svdvals(norm.normalize_gradient(mean_grad))
    return s[..., :k] if k is not None else s


def rms_singular_values(mean_gram: Tensor, normalizer: EmbeddingNormalizer | None = None,
                        k: int | None = None) -> Tensor:
    """``sqrt(eig(Dᵀ M D))`` descending for ``mean_gram[..., E, E]`` (RMS singular values of the gradients; top
    ``k ≥ 1`` if given)."""
    _check_k(k)
    norm = _identity_if_none(normalizer, mean_gram.shape[-1])
    ev = torch.linalg.eigvalsh(norm.normalize_gram(mean_gram)).flip(-1).clamp(min=0).sqrt()
    return ev[..., :k] if k is not None else ev


def relative_memory(stats: StateGradientStats, direction: Tensor, normalizer: EmbeddingNormalizer | None = None,
                    use: Literal["gram", "mean"] = "gram") -> Tensor:
    """Relative memory ``[C, D+1]`` of the embedding-space ``direction[E]`` (see the module docstring)."""
    e = stats.mean_gram.shape[-1]
    norm = _identity_if_none(normalizer, e)
    u = norm.direction(direction)
    if use == "gram":
        m = norm.normalize_gram(stats.mean_gram)
    elif use == "mean":
        g = norm.normalize_gradient(stats.mean_grad)
        m = g.transpose(-1, -2) @ g
    else:
        raise InputError(f"use must be 'gram' or 'mean', got {use!r}")
    gain = torch.einsum("e,...ef,f->...", u, m, u)
    avg = m.diagonal(dim1=-2, dim2=-1).sum(-1) / e
    return torch.where(avg > 0, gain / avg.clamp(min=1e-300), torch.full_like(gain, float("nan")))


def subspace_cosine(stats: StateGradientStats, direction: Tensor, k: int,
                    normalizer: EmbeddingNormalizer | None = None) -> Tensor:
    """``||V_kᵀ u||`` ``[C, D+1]``: cosine of the normalised direction with the top-``k`` right singular subspace;
    NaN where the class has no gradient at that delay (``count == 0``: the singular vectors of the zero matrix are
    arbitrary)."""
    e = stats.mean_grad.shape[-1]
    if not 1 <= k <= e:
        raise InputError(f"k must be in 1..{e}, got {k}")
    norm = _identity_if_none(normalizer, e)
    u = norm.direction(direction)
    _, _, vh = torch.linalg.svd(norm.normalize_gradient(stats.mean_grad), full_matrices=False)
    proj = vh[..., :k, :] @ u
    cos = torch.linalg.vector_norm(proj, dim=-1)
    return torch.where(stats.count > 0, cos, torch.full_like(cos, float("nan")))


@dataclass
class SpectrumSummary:
    """Per class and delay: top-``k`` singular values ``top[C, D+1, k]`` and their sum over all values ``total``."""

    class_names: list[str]
    top: Tensor
    total: Tensor
    kind: str

    def to_markdown(self, delays: list[int] | None = None, digits: int = 4) -> str:
        """Markdown table: one row per class and delay, columns σ_1..σ_k and the sum of all singular values."""
        k = self.top.shape[-1]
        ds = delays if delays is not None else list(range(self.top.shape[1]))
        head = "| class | delay | " + " | ".join(f"σ{i + 1}" for i in range(k)) + " | Σσ |"
        sep = "|---|---:|" + "---:|" * (k + 1)
        rows = [head, sep]
        for ci, name in enumerate(self.class_names):
            for d in ds:
                vals = " | ".join(f"{float(v):.{digits}g}" for v in self.top[ci, d])
                rows.append(f"| {name} | {d} | {vals} | {float(self.total[ci, d]):.{digits}g} |")
        return "\n".join(rows) + "\n"


def summarize(stats: StateGradientStats, normalizer: EmbeddingNormalizer | None = None, k: int = 5,
              kind: Literal["mean", "rms"] = "mean") -> SpectrumSummary:
    """Top-``k`` (``k ≥ 1``) singular values and their total per class and delay (``kind``: mean-gradient or RMS
    spectrum)."""
    _check_k(k)
    if kind == "mean":
        s = singular_values(stats.mean_grad, normalizer)
    elif kind == "rms":
        s = rms_singular_values(stats.mean_gram, normalizer)
    else:
        raise InputError(f"kind must be 'mean' or 'rms', got {kind!r}")
    empty = stats.count == 0
    s = torch.where(empty[..., None], torch.full_like(s, float("nan")), s)
    return SpectrumSummary(list(stats.class_names), s[..., :k], s.sum(-1), kind)
