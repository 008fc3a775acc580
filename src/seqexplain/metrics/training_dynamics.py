"""Agreement of per-token score vectors and the A/ξ table of Snell et al. (2021), by the definitions of
Sea-Snell/AttentionDynamics.

* :func:`top_percent_match` ``(a, b, k_percent=5)``: 1 when the position ``i* = argmax a`` (first maximum) is among
  the top ``k = ceil(k_percent/100 · n)`` of ``b`` counted the original's way — fewer than ``k`` entries of ``b`` are
  **strictly** greater than ``b[i*]`` (ties with ``b[i*]`` count in its favour) — else 0. Asymmetric: ``a`` is the
  reference ("gold") vector. NaN (undefined, counted as such by :func:`mean_agreement`) when either vector holds NaN.
* :func:`kendall_tau_score`: Kendall's τ-b, as ``scipy.stats.kendalltau`` (NaN when a vector is constant).
* :func:`mean_agreement`: the mean of a metric over the examples (or target rows) where it is not NaN, the
  **seeded** shuffle baseline: the same mean with ``b`` permuted by ``numpy.random.default_rng(seed)`` (the
  original's shuffle is unseeded), and how many examples were left out as undefined (Kendall τ of a constant or
  length-1 vector) out of how many.
* :func:`dynamics_table`: for a gold run A, comparison runs, a uniform run and a reference β:
  ``A(α, β^uf) = max_c M(α_A*, β^uf_c)``, ``A(Δ, β^uf) = max_c M(Δ_A*, β^uf_c)``, ``A(β^px, β^uf) = max_c
  M(β^px, β^uf_c)`` over the uniform run's checkpoints ``c``, where ``*`` is A's checkpoint of best performance
  (first maximum, NaN checkpoints left out) and ``M(x, y)`` the mean agreement with ``x`` as reference; the
  agreement curve
  ``g_c = mean_r M(α_A*, α_{r,c})`` and performance curve ``p_c = mean_r perf_{r,c}`` over the comparison runs
  ``r``; ``ξ_x = p_{c_x}`` at the first checkpoint ``c_x`` with ``g_c > A_x`` (None: never); the baseline
  ``Â = mean_r mean_c`` of the shuffle baselines of ``M(α_A*, α_{r,c})``; the best performance ``perf_{A,*}``.
  ``undefined[q]``: for each quantity ``q`` (``agreement`` for the curve, ``unif``, ``px``, ``grad`` and each extra
  reference), the largest number of examples left out of any one of the means it was built from (out of
  ``n_examples``); when any is above 0 the table warns (:func:`undefined_warning`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import NamedTuple

import numpy as np

from seqexplain.errors import InputError
from seqexplain.metrics.percent import percent_count

Vectors = Sequence[np.ndarray]
MetricFn = Callable[[np.ndarray, np.ndarray], float]


def top_percent_match(a: np.ndarray | Sequence[float], b: np.ndarray | Sequence[float], k_percent: float = 5.0
                      ) -> float:
    """1.0 if ``argmax a`` is in the original's top ``k_percent``% of ``b``, else 0.0; NaN when a vector holds NaN
    (module docstring)."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or len(x) == 0:
        raise InputError(f"top_percent_match needs two non-empty vectors of one length, got {x.shape} and {y.shape}")
    if not 0 < k_percent <= 100:
        raise InputError(f"k_percent must be in (0, 100], got {k_percent}")
    if np.isnan(x).any() or np.isnan(y).any():  # argmax would pick a NaN, and NaN is never "strictly greater"
        return math.nan
    k = percent_count(k_percent, len(y), "ceil")
    return 1.0 if int(np.sum(y > y[int(np.argmax(x))])) < k else 0.0


def kendall_tau_score(a: np.ndarray | Sequence[float], b: np.ndarray | Sequence[float]) -> float:
    """Kendall's τ-b, ``Σ_{i<j} sx_ij sy_ij / sqrt(Σ|sx_ij| · Σ|sy_ij|)`` with ``sx_ij = sign(a_i − a_j)`` (the
    value of ``scipy.stats.kendalltau``, computed over all pairs at once: the vectors here are short and many;
    signs by comparison, so equal infinite values tie); NaN when a vector is constant, shorter than 2 or holds NaN."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape:
        raise InputError(f"kendall_tau_score needs two vectors of one length, got {x.shape} and {y.shape}")
    if len(x) < 2 or np.isnan(x).any() or np.isnan(y).any():
        return math.nan
    i, j = np.triu_indices(len(x), k=1)
    # not np.sign(x_i − x_j): inf − inf is NaN
    sx = (x[i] > x[j]).astype(np.float64) - (x[i] < x[j])
    sy = (y[i] > y[j]).astype(np.float64) - (y[i] < y[j])
    norm = float(np.abs(sx).sum()) * float(np.abs(sy).sum())
    return math.nan if norm == 0 else float((sx * sy).sum() / math.sqrt(norm))


def metric_by_name(name: str, k_percent: float = 5.0) -> MetricFn:
    """``"top_k"`` (top ``k_percent``% match) or ``"kendall_tau"``."""
    if name == "top_k":
        return lambda a, b: top_percent_match(a, b, k_percent)
    if name == "kendall_tau":
        return kendall_tau_score
    raise InputError(f"unknown agreement metric {name!r}; use top_k or kendall_tau")


class Agreement(NamedTuple):
    """:func:`mean_agreement`'s answer: ``mean`` and ``baseline`` over the ``total − undefined`` examples where the
    metric is defined (both NaN when none is)."""

    mean: float
    baseline: float
    undefined: int
    total: int


def mean_agreement(ref: Vectors, other: Vectors, metric: MetricFn, seed: int = 0) -> Agreement:
    """The mean agreement and seeded shuffle baseline over the pairs where the metric is defined, with the number of
    pairs left out because it is NaN there (module docstring)."""
    if len(ref) != len(other):
        raise InputError(f"agreement needs one vector per example on both sides, got {len(ref)} and {len(other)}")
    rng = np.random.default_rng(seed)
    vals, base = [], []
    for a, b in zip(ref, other, strict=True):
        if len(a) != len(b):
            raise InputError(f"vectors of one example differ in length ({len(a)} vs {len(b)}); compare dumps of the "
                             "same examples")
        v = metric(a, b)
        if math.isnan(v):
            continue
        vals.append(v)
        base.append(metric(a, rng.permutation(np.asarray(b))))
    undefined = len(ref) - len(vals)
    if not vals:
        return Agreement(math.nan, math.nan, undefined, len(ref))
    return Agreement(float(np.mean(vals)), float(np.nanmean(base)), undefined, len(ref))


@dataclass
class RunCurves:
    """One run's per-checkpoint vectors: ``steps`` ascending; ``alpha[c]`` / ``beta[c]`` / ``delta[c]`` per example;
    ``perf[c]`` the performance measure at checkpoint ``c``."""

    steps: list[int]
    alpha: list[Vectors]
    beta: list[Vectors]
    delta: list[Vectors]
    perf: list[float]


@dataclass
class DynamicsRow:
    """One row of the paper's table (module docstring); ξ is None when the runs never agree that well."""

    agr_unif: float
    agr_px: float
    agr_grad: float
    baseline: float
    xi_unif: float | None
    xi_px: float | None
    xi_grad: float | None
    best_perf: float
    best_step: int
    agreement_curve: list[float]
    perf_curve: list[float]
    agreement_by_run: list[list[float]]
    perf_by_run: list[list[float]]
    extra: dict[str, dict[str, float | None]] = field(default_factory=dict)
    n_examples: int = 0
    undefined: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def undefined_warning(row: DynamicsRow, label: str = "") -> str | None:
    """The warning for a row whose means left examples out as undefined (None: every example counted)."""
    bad = {q: n for q, n in row.undefined.items() if n > 0}
    if not bad:
        return None
    where = ", ".join(f"{q}: up to {n} of {row.n_examples}" for q, n in bad.items())
    return (f"{label + ': ' if label else ''}the agreement metric is undefined (NaN, e.g. Kendall τ of a "
            f"constant vector) for some examples, left out of the means ({where} examples)")


def first_passing(curve: Sequence[float], threshold: float) -> int | None:
    """Index of the first value strictly above ``threshold`` (None: none)."""
    for i, v in enumerate(curve):
        if v > threshold:
            return i
    return None


def dynamics_table(gold: RunCurves, others: Sequence[RunCurves], uniform: RunCurves, px: Vectors,
                   metric: MetricFn, seed: int = 0, extra: Mapping[str, Vectors] | None = None, label: str = ""
                   ) -> DynamicsRow:
    """The A/ξ row for one data set, split and performance measure (module docstring). ``extra``: more reference
    β's treated as β^px is (e.g. logistic regression); their ``{"agr", "xi"}`` land in ``row.extra``. Warns
    (``RuntimeWarning``, naming ``label``) when a metric was undefined for some examples."""
    if not others:
        raise InputError("the table needs at least one comparison run besides the gold run")
    for run in (*others, uniform):
        if run.steps != gold.steps:
            raise InputError(f"runs have different checkpoint steps ({run.steps} vs {gold.steps}); dump every run at "
                             "the same checkpoints")
    perf = np.asarray(gold.perf, dtype=np.float64)
    if perf.shape != (len(gold.steps),):
        raise InputError(f"the gold run has {perf.size} performance values for {len(gold.steps)} checkpoints")
    if np.isnan(perf).all():
        raise InputError("the gold run has no defined performance (all NaN); its best checkpoint is undefined")
    best = int(np.nanargmax(perf))  # a NaN (diverged) checkpoint is never the best
    ref_alpha, ref_delta = gold.alpha[best], gold.delta[best]
    curves, perfs, baselines = [], [], []
    undefined = {"agreement": 0}
    for r, run in enumerate(others):
        pairs = [mean_agreement(ref_alpha, run.alpha[c], metric, seed + 1000 * r + c) for c in range(len(run.steps))]
        curves.append([p.mean for p in pairs])
        baselines.append(float(np.mean([p.baseline for p in pairs])))
        perfs.append(list(run.perf))
        undefined["agreement"] = max([undefined["agreement"], *(p.undefined for p in pairs)])
    g = np.mean(np.asarray(curves, dtype=np.float64), axis=0)
    p = np.mean(np.asarray(perfs, dtype=np.float64), axis=0)

    def best_over_uniform(name: str, ref: Vectors) -> float:
        got = [mean_agreement(ref, uniform.beta[c], metric, seed) for c in range(len(uniform.steps))]
        undefined[name] = max(a.undefined for a in got)
        defined = [a.mean for a in got if not math.isnan(a.mean)]  # max() with a NaN depends on where it stands
        return max(defined) if defined else math.nan

    agr = {"unif": best_over_uniform("unif", ref_alpha), "px": best_over_uniform("px", px),
           "grad": best_over_uniform("grad", ref_delta)}
    for name, ref in (extra or {}).items():
        agr[name] = best_over_uniform(name, ref)

    def xi(name: str) -> float | None:
        i = first_passing(g.tolist(), agr[name])
        return None if i is None else float(p[i])

    row = DynamicsRow(agr["unif"], agr["px"], agr["grad"], float(np.mean(baselines)), xi("unif"), xi("px"),
                      xi("grad"), float(gold.perf[best]), int(gold.steps[best]), g.tolist(), p.tolist(), curves, perfs,
                      {name: {"agr": agr[name], "xi": xi(name)} for name in (extra or {})}, len(ref_alpha), undefined)
    msg = undefined_warning(row, label)
    if msg:
        warnings.warn(msg, RuntimeWarning, stacklevel=2)
    return row


def format_table(rows: Mapping[str, DynamicsRow], digits: int = 3) -> str:
    """A Markdown table of rows keyed by a label (data set / split / measure)."""
    def f(v: float | None) -> str:
        return "none" if v is None else ("nan" if math.isnan(v) else f"{v:.{digits}f}")

    lines = ["| setting | A(α,β^uf) | A(β^uf,β^px) | A(Δ,β^uf) | Â | ξ_unif | ξ_px | ξ_grad | best |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {f(r.agr_unif)} | {f(r.agr_px)} | {f(r.agr_grad)} | {f(r.baseline)} | "
                     f"{f(r.xi_unif)} | {f(r.xi_px)} | {f(r.xi_grad)} | {f(r.best_perf)} |")
    return "\n".join(lines)
