"""Faithfulness: comprehensiveness and sufficiency (DeYoung et al., 2020, ERASER), their AOPC, ferret's variant
and a seeded random-ranking baseline.

**ERASER** (``variant="eraser"``, default). For target ``i`` (a classifier's label, or each generated / translated
token) with visible positions ``V_i`` ranked by :func:`seqexplain.ranking.rank_positions` (decreasing score, ties to
the lowest position; a NaN score at a visible position ranks last, with a ``RuntimeWarning``), ``top_k`` holds the
first ``n_k = max(1, ceil(k/100 · |V_i|))`` of them. With
``f(x̃) = log p(y_i | x̃)``:

* comprehensiveness ``c_i(k) = f(x) − f(x without top_k)`` (large: the top tokens were needed);
* sufficiency ``s_i(k) = f(x) − f(x with only top_k of V_i)`` (small: the top tokens alone suffice).

AOPC aggregates over the bins ``B`` (default 1, 5, 10, 20, 50 %): ``AOPC_c = (1/|B|) Σ_k c_i(k)`` and likewise for
sufficiency (ERASER's formula adds a ``k = 0`` term that is 0 for both and divides by ``|B| + 1``; multiply by
``|B|/(|B|+1)`` to get that convention).

**Removal** of a set ``R`` of positions:

* ``removal="drop"`` (default): the keep-mask, i.e. ``R`` is deleted, the other positions keep their position ids
  (the rule of :mod:`seqexplain.models.keep`). Removing every position of ``V_i`` leaves the model only the
  predicting position (rule 4 there).
* ``removal="replace"``: the input embeddings of ``R`` are replaced by the embedding of one token ``r``
  (``replace_with``: a token id, or ``"pad"`` / ``"unk"`` / ``"mask"``: that special token of the tokenizer); the
  sequence keeps its length and every position stays visible. Evaluated through ``model.distributions(example,
  embeds=...)``, the same log-softmax of the logits that ``model.score`` uses.

**ferret** (``variant="ferret"``; Attanasio et al., 2022, ``AOPC_Comprehensiveness`` / ``AOPC_Sufficiency`` with
``only_pos=True``). What is implemented, per target ``i``:

* candidates ``C_i``: the positions of ``V_i`` that are not special tokens (ferret strips ``[CLS]``/``[SEP]``;
  special positions are never removed);
* thresholds ``t`` = 10, 20, …, 100 % (or ``bins``); ``n_t = floor(t/100 · |C_i|)``;
* the rationale ``R_t``: the first ``n_t`` positions of the ranking of ``C_i`` **keeping only those with a score
  > 0** (only positive scores are evidence), so ``|R_t| ≤ n_t``;
* a threshold is *skipped* (NaN in the table) when ``n_t = 0``, ``R_t`` is empty, or ``R_t`` equals the rationale
  of the last threshold that was not skipped;
* the quantity is a probability, ``g(x̃) = p(y_i | x̃)``: ``c_i(t) = g(x) − g(x without R_t)`` and
  ``s_i(t) = g(x) − g(x without C_i \\ R_t)``;
* ``AOPC`` = the mean over the thresholds not skipped; 0 when every threshold is skipped (ferret's convention).

ferret removes tokens by decoding and re-tokenising the text; here removal is ``removal`` (the keep-mask by default,
so positions keep their ids and no re-tokenisation happens).

**Random baseline** (:func:`random_baseline`): the same quantities for ``repeats`` random rankings. Run ``r``
ranks with scores ``1 + π_{r,i}``, ``π_{r,i}`` a permutation of ``0..L−1`` drawn by
``numpy.random.default_rng(seed)`` in the order ``r = 0, 1, …``, ``i = 0, 1, …`` (all positive, so ferret's
positive-evidence filter keeps them all); the visible positions are thus in a uniformly random order. It reports
the mean over runs of the tables and of the per-run AOPCs.

All (target, bin, kind) rows are evaluated in shared batches under ``token_budget`` tokens per forward. The full
input's ``log p(y_i | x)`` depends only on the model, the example and the removal, not on the scores: a caller that
scores several rankings of one example passes it on (``full_logprob``) instead of evaluating it again, as
:func:`random_baseline` and the corpus runs do.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from seqexplain.attribution import Attribution
from seqexplain.errors import InputError
from seqexplain.metrics.percent import percent_count
from seqexplain.models.base import SequenceModel
from seqexplain.models.example import Example
from seqexplain.models.module_state import eval_mode
from seqexplain.models.rows import evaluate_rows, require_keep_support
from seqexplain.ranking import rank_positions

DEFAULT_BINS = (1.0, 5.0, 10.0, 20.0, 50.0)
FERRET_THRESHOLDS = tuple(float(t) for t in range(10, 101, 10))
Variant = Literal["eraser", "ferret"]
Removal = Literal["drop", "replace"]
ReplaceWith = int | Literal["pad", "unk", "mask"]


@dataclass
class Faithfulness:
    """``comprehensiveness[i, b]`` / ``sufficiency[i, b]`` per target and bin, their AOPC per target and means.

    ``variant`` / ``removal`` say how they were computed (module docstring); ``quantity`` is ``"logprob"`` (ERASER:
    differences of ``log p``) or ``"prob"`` (ferret: differences of ``p``). ferret's skipped thresholds are NaN."""

    bins: list[float]
    full_logprob: np.ndarray  # [T]
    comprehensiveness: np.ndarray  # [T, K]
    sufficiency: np.ndarray  # [T, K]
    variant: str = "eraser"
    removal: str = "drop"
    quantity: str = "logprob"

    def _aopc(self, table: np.ndarray) -> np.ndarray:
        if self.variant != "ferret":
            return table.mean(axis=1)
        finite = ~np.isnan(table)
        counts = finite.sum(axis=1)
        sums = np.where(finite, table, 0.0).sum(axis=1)
        return np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)

    @property
    def aopc_comprehensiveness(self) -> np.ndarray:
        """``[T]`` mean comprehensiveness over the bins (ferret: over the thresholds not skipped, 0 if none)."""
        return self._aopc(self.comprehensiveness)

    @property
    def aopc_sufficiency(self) -> np.ndarray:
        """``[T]`` mean sufficiency over the bins (ferret: over the thresholds not skipped, 0 if none)."""
        return self._aopc(self.sufficiency)

    def summary(self) -> dict[str, float]:
        return {"aopc_comprehensiveness": float(self.aopc_comprehensiveness.mean()),
                "aopc_sufficiency": float(self.aopc_sufficiency.mean())}


@dataclass
class RandomBaseline:
    """:func:`faithfulness` of ``repeats`` seeded random rankings: ``runs[r]`` per run, and their means."""

    seed: int
    runs: list[Faithfulness]

    @property
    def bins(self) -> list[float]:
        return self.runs[0].bins

    @property
    def comprehensiveness(self) -> np.ndarray:
        """``[T, K]`` mean over runs (ignoring NaN = skipped ferret thresholds; NaN where every run skipped)."""
        return _nanmean_stack([r.comprehensiveness for r in self.runs])

    @property
    def sufficiency(self) -> np.ndarray:
        """``[T, K]`` mean over runs (as :attr:`comprehensiveness`)."""
        return _nanmean_stack([r.sufficiency for r in self.runs])

    @property
    def aopc_comprehensiveness(self) -> np.ndarray:
        """``[T]`` mean over runs of each run's AOPC."""
        return np.mean([r.aopc_comprehensiveness for r in self.runs], axis=0)

    @property
    def aopc_sufficiency(self) -> np.ndarray:
        """``[T]`` mean over runs of each run's AOPC."""
        return np.mean([r.aopc_sufficiency for r in self.runs], axis=0)

    def summary(self) -> dict[str, float]:
        return {"aopc_comprehensiveness": float(self.aopc_comprehensiveness.mean()),
                "aopc_sufficiency": float(self.aopc_sufficiency.mean())}


def _nanmean_stack(tables: list[np.ndarray]) -> np.ndarray:
    stack = np.stack(tables)
    finite = ~np.isnan(stack)
    counts = finite.sum(axis=0)
    sums = np.where(finite, stack, 0.0).sum(axis=0)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def top_positions(scores: np.ndarray, visible: Sequence[int], k_percent: float) -> list[int]:
    """The ``max(1, ceil(k/100 · |visible|))`` visible positions ranked first by
    :func:`seqexplain.ranking.rank_positions` (decreasing score, ties to the lowest position), in position order."""
    n = max(1, percent_count(k_percent, len(visible), "ceil"))
    return sorted(rank_positions(scores, visible)[:n])


def ferret_rationale(scores: np.ndarray, candidates: Sequence[int], k_percent: float) -> list[int]:
    """ferret's rationale at threshold ``k_percent``: of the first ``floor(k/100 · |candidates|)`` candidates in
    :func:`~seqexplain.ranking.rank_positions` order, those with a score > 0, in position order (may be empty)."""
    n = percent_count(k_percent, len(candidates), "floor")
    return sorted(j for j in rank_positions(scores, candidates)[:n] if scores[j] > 0)


def replacement_id(model: SequenceModel, replace_with: ReplaceWith) -> int:
    """The token id that ``removal="replace"`` puts in place of removed positions: an int as given (inside the
    model's vocabulary), or the tokenizer's ``pad`` / ``unk`` / ``mask`` token id."""
    if isinstance(replace_with, (int, np.integer)) and not isinstance(replace_with, bool):
        if replace_with < 0:
            raise InputError(f"replace_with={replace_with} is not a token id; give a non-negative id or "
                             "'pad' / 'unk' / 'mask'")
        vocab = getattr(model, "vocab_size", None)
        size = vocab() if callable(vocab) else None
        if size is not None and replace_with >= size:
            raise InputError(f"replace_with={replace_with} is outside the vocabulary (0..{size - 1}); give a token id "
                             "of this model or 'pad' / 'unk' / 'mask'")
        return int(replace_with)
    if replace_with not in ("pad", "unk", "mask"):
        raise InputError(f"replace_with={replace_with!r}: give a token id or 'pad' / 'unk' / 'mask'")
    tok = getattr(model, "tokenizer", None)
    value = getattr(tok, f"{replace_with}_token_id", None)
    if not isinstance(value, int):
        raise InputError(f"the model's tokenizer has no {replace_with} token; pass replace_with=<token id> or "
                         "another of 'pad' / 'unk' / 'mask'")
    return value


def _check_options(variant: str, removal: str) -> None:
    if variant not in ("eraser", "ferret"):
        raise InputError(f"unknown variant {variant!r}; use 'eraser' or 'ferret'")
    if removal not in ("drop", "replace"):
        raise InputError(f"unknown removal {removal!r}; use 'drop' (keep-mask) or 'replace' (a replacement token)")


def _removed_logp(model: SequenceModel, example: Example, rows: Sequence[tuple[int, Sequence[int]]],
                  removal: str, replace_id: int | None, budget: int) -> np.ndarray:
    """``log p(y_i)`` per row ``(i, removed positions)``: dropped (keep-mask over ``V_i`` minus the removed ones) or
    replaced (embeddings of the removed positions replaced by the replacement token's)."""
    visible = example.visible()
    if removal == "drop":
        kept_rows = []
        for i, removed in rows:
            gone = set(removed)
            kept_rows.append((i, [j for j in torch.nonzero(visible[i]).flatten().tolist() if j not in gone]))
        return evaluate_rows(model, example, kept_rows, budget).target_logp
    if example.input_ids is None:
        raise InputError("removal='replace' needs token ids, but this example has precomputed input vectors; "
                         "use removal='drop'")
    assert replace_id is not None
    base = model.embed(example)[0]
    rep = model.embed(example.replace(input_ids=torch.full_like(example.input_ids, replace_id)))[0]
    per = max(1, budget // max(1, example.length))
    out = np.zeros(len(rows), dtype=np.float64)
    for start in range(0, len(rows), per):
        chunk = rows[start:start + per]
        embeds = base.unsqueeze(0).repeat(len(chunk), 1, 1)
        for r, (_, removed) in enumerate(chunk):
            idx = list(removed)
            embeds[r, idx] = rep[idx]
        own = torch.tensor([i for i, _ in chunk], dtype=torch.long)
        logp = model.distributions(example, embeds=embeds, rows_target=own.to(model.device))[:, 0].float().cpu()
        out[start:start + len(chunk)] = logp.gather(1, example.target_ids[own].view(-1, 1)).squeeze(1).double().numpy()
    return out


def faithfulness(model: SequenceModel, example: Example, scores: Attribution | np.ndarray,
                 bins: Sequence[float] | None = None, token_budget: int | None = None, *,
                 variant: Variant = "eraser", removal: Removal = "drop",
                 replace_with: ReplaceWith = "mask", full_logprob: np.ndarray | None = None) -> Faithfulness:
    """Comprehensiveness and sufficiency of ``scores`` (an :class:`Attribution` or a ``[T, L]`` array) for every
    target of ``example`` at every bin (module docstring).

    Args:
        bins: percentages in (0, 100]; default ERASER's 1, 5, 10, 20, 50 (``variant="eraser"``) or ferret's
            10, 20, …, 100 (``variant="ferret"``).
        token_budget: tokens per forward (default: the model's).
        variant: ``"eraser"`` or ``"ferret"``.
        removal: ``"drop"`` (keep-mask) or ``"replace"`` (embeddings of ``replace_with``).
        replace_with: a token id or ``"pad"`` / ``"unk"`` / ``"mask"`` (only for ``removal="replace"``).
        full_logprob: ``[T]`` ``log p(y_i | x)`` of the full input, as :attr:`Faithfulness.full_logprob` of an
            earlier call on the same model, example, ``removal`` and ``replace_with`` returned it (it depends on
            nothing else): those rows are then not evaluated again. Default: evaluated here.
    """
    _check_options(variant, removal)
    require_keep_support(model)
    s = scores.scores if isinstance(scores, Attribution) else np.asarray(scores, dtype=np.float64)
    if s.shape != (example.n_targets, example.length):
        raise InputError(f"scores have shape {s.shape} but the example has {example.n_targets} targets × "
                         f"{example.length} positions")
    if bins is None:
        bins = FERRET_THRESHOLDS if variant == "ferret" else DEFAULT_BINS
    if not bins or any(not 0 < b <= 100 for b in bins):
        raise InputError("bins must be percentages in (0, 100]")
    replace_id = replacement_id(model, replace_with) if removal == "replace" else None
    n_t, n_b = example.n_targets, len(bins)
    given = None if full_logprob is None else np.asarray(full_logprob, dtype=np.float64)
    if given is not None and given.shape != (n_t,):
        raise InputError(f"full_logprob has shape {given.shape} but the example has {n_t} targets")
    rows: list[tuple[int, list[int]]] = []
    where: list[tuple[int, int, int]] = []  # (target, bin, 0 = comprehensiveness / 1 = sufficiency) per row > full
    unscored: dict[int, int] = {}
    for i in range(n_t):
        vis = example.visible_positions(i)
        holes = int(np.isnan(s[i, vis]).sum()) if vis else 0
        if holes:
            unscored[i] = holes
        if given is None:
            rows.append((i, []))
            where.append((i, -1, -1))
        if variant == "eraser":
            for b, k in enumerate(bins):
                top = top_positions(s[i], vis, k)
                top_set = set(top)
                rows.append((i, top))
                where.append((i, b, 0))
                rows.append((i, [j for j in vis if j not in top_set]))
                where.append((i, b, 1))
        else:
            cand = [j for j in vis if example.segments[j] != "special"]
            last: list[int] | None = None
            for b, k in enumerate(bins):
                top = ferret_rationale(s[i], cand, k)
                if not top or top == last:
                    continue
                last = top
                top_set = set(top)
                rows.append((i, top))
                where.append((i, b, 0))
                rows.append((i, [j for j in cand if j not in top_set]))
                where.append((i, b, 1))
    if unscored:
        first = next(iter(unscored))
        warnings.warn(f"faithfulness: the scores are NaN at {unscored[first]} position(s) visible to target {first} "
                      f"({len(unscored)} target(s) affected); NaN ranks last, so those positions count as the least "
                      "important (NaN should mark only positions a target cannot see)", RuntimeWarning, stacklevel=2)
    with torch.no_grad(), eval_mode(model.model):
        budget = model.default_token_budget() if token_budget is None else token_budget
        if budget < 1:
            raise InputError("token_budget must be a positive number of tokens")
        lp = _removed_logp(model, example, rows, removal, replace_id, budget)
    full = np.zeros(n_t, dtype=np.float64) if given is None else given.copy()
    tables = np.full((2, n_t, n_b), np.nan, dtype=np.float64)
    for (i, b, _), value in zip(where, lp, strict=True):
        if b < 0:
            full[i] = value
    for (i, b, kind), value in zip(where, lp, strict=True):
        if b >= 0:
            tables[kind, i, b] = (full[i] - value) if variant == "eraser" else math.exp(full[i]) - math.exp(value)
    return Faithfulness(list(bins), full, tables[0], tables[1], variant=variant, removal=removal,
                        quantity="logprob" if variant == "eraser" else "prob")


def random_baseline(model: SequenceModel, example: Example, bins: Sequence[float] | None = None, seed: int = 0,
                    repeats: int = 10, token_budget: int | None = None, *, variant: Variant = "eraser",
                    removal: Removal = "drop", replace_with: ReplaceWith = "mask",
                    full_logprob: np.ndarray | None = None) -> RandomBaseline:
    """:func:`faithfulness` of ``repeats`` random rankings drawn from ``seed`` (module docstring): the same seed
    gives the same numbers. The full input's ``log p`` is evaluated once (by the first run, unless
    ``full_logprob`` gives it, as in :func:`faithfulness`) and reused by the others."""
    if isinstance(repeats, bool) or not isinstance(repeats, (int, np.integer)) or repeats < 1:
        raise InputError(f"repeats must be a positive number of random rankings, got {repeats!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed!r}")
    rng = np.random.default_rng(int(seed))
    runs = []
    for _ in range(int(repeats)):
        scores = np.stack([1.0 + rng.permutation(example.length) for _ in range(example.n_targets)])
        runs.append(faithfulness(model, example, scores, bins, token_budget, variant=variant, removal=removal,
                                 replace_with=replace_with, full_logprob=full_logprob))
        full_logprob = runs[-1].full_logprob
    return RandomBaseline(seed, runs)
