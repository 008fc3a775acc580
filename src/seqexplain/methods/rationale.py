"""Sequential rationales (Vafa, Deng, Blei & Rush, "Rationales for Sequential Predictions", EMNLP 2021).

A *rationale* for target ``y_i`` is a subset ``s`` of the positions visible to it such that the model, shown only
``s`` (every other position dropped through the model interface's keep-mask, original position ids kept), still
predicts the target: ``argmax_y p(y | x_s) = y_i``. The objective is the smallest such subset.

Start set ``s_0`` (always included; the model adapter's answer, :meth:`SequenceModel.start_positions`):

* causal LM and encoder-decoder: the most recent context position ``p_i − 1`` (the previous token; for an
  encoder-decoder the previous decoder position, i.e. the decoder start for the first target);
* classifier: the special tokens (``segments == "special"``, e.g. ``[CLS]``/``[SEP]``); when there are none, the
  position the classification head reads (first or last token).

Methods (all registered in the ``rationale`` family):

* ``greedy`` — ``s ← s_0``; while ``argmax p(· | x_s) ≠ y_i`` and candidates remain:
  ``s ← s ∪ {argmax_{j ∈ V_i \\ s} f_i(x_{s ∪ {j}})}`` (``f``: the example's objective, ``log p(y_i | ·)`` by
  default) where ``V_i`` are the positions visible to target
  ``i`` (source and target positions compete in the same step for an encoder-decoder). Ties go to the lowest
  position; a candidate whose objective is NaN ranks below every number (:func:`best_candidate`).
* ``exhaustive`` — the smallest sufficient ``s ⊇ s_0``: sizes ``|s_0| + 1, …, max_size`` (starting with ``s_0``
  itself), the added positions enumerated as :func:`itertools.combinations` of the sorted candidates, i.e. in
  lexicographic order; the first sufficient subset wins. When no subset of size ``≤ max_size`` suffices (or the
  next size has more than ``max_subsets`` subsets) the rationale is the empty list ``[]``, the log's last record
  says ``bound_hit`` and ``meta["bound_hit"]`` lists the targets. When every subset was tried, the whole context
  included, and none suffices, the rationale is ``[]`` too, but no bound was hit: the last record says
  ``exhausted``.
* ``baseline_rationale`` — the order of another registered attribution method (``order_by``: gradient_norm,
  grad_x_input, integrated_gradients, attention_last / attention_all / attention_rollout, occlusion, …; its
  options in ``order_options``): per target, ``s_0`` first, then the visible positions by decreasing score (ties
  to the lowest position; the order of :func:`seqexplain.ranking.rank_positions` for non-finite scores), added one at a
  time with the same stopping rule.

The result: ``rationales[i]`` = positions in the order they were added (``s_0`` first, in position order);
``scores[i, j] = (n_i − r) / n_i`` for the member added at rank ``r`` (0-based) of a rationale of ``n_i`` members
(so ``s_0`` scores 1 and the last added ``1/n_i``), ``0`` for visible non-members; ``rationale_log[i]`` has one
record per step: ``size``, ``added`` (positions added in the step), ``added_tokens``, ``predicted_id``,
``predicted``, ``predicted_prob``, ``target_prob``, ``reached``, ``elapsed_s`` (seconds since the method
started). ``meta["reached"][i]`` says whether the stopping rule was met (False: the whole context was used, or the
``max_size`` bound was hit, without the model predicting the target); ``meta["bound_hit"]`` lists the targets whose
search stopped at a bound (``max_size`` with visible positions left; exhaustive: also ``max_subsets``).

Speed: all targets of a sequence are rationalized together. Each greedy round builds, for every unfinished
target, one keep-mask row per candidate, concatenates the rows of all targets, evaluates them under
``token_budget`` tokens per forward and splits the results back. Each row asks the model interface for its own
target only (:func:`seqexplain.models.rows.evaluate_rows`), and a causal LM row keeps only its subset, so the
interface packs it to its kept tokens (original position ids), runs leading tokens that rows share only once
(``models/prefix_cache.py``: candidates ``s ∪ {j}`` share the members of ``s`` before ``j``) and applies the
output layer at one position. For an encoder-decoder a batch is evaluated on the prefix example holding its largest
target (:meth:`SequenceModel.rows_example`).

Options (all methods): ``token_budget`` (int ≥ 1 or None: the adapter's default for its device); ``max_size``
(int ≥ 1; greedy and baseline orders: None for no cap; exhaustive: default 6); exhaustive also ``max_subsets``
(int ≥ 1, default 1,000,000: subsets tried at one size); baseline_rationale ``order_by`` (an attribution
method's name) and ``order_options`` (a dict of its options).
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from seqexplain.errors import InputError
from seqexplain.methods.common import budget
from seqexplain.methods.registry import MethodResult, get_method, register
from seqexplain.models.base import SequenceModel
from seqexplain.models.example import Example
from seqexplain.models.module_state import eval_mode
from seqexplain.models.rows import Counter, Evaluation, evaluate_rows, require_keep_support
from seqexplain.ranking import rank_positions


# --------------------------------------------------------------------------- bookkeeping
@dataclass
class _Track:
    """State of one target's search."""

    target: int
    visible: list[int]
    rationale: list[int]
    log: list[dict[str, Any]] = field(default_factory=list)
    done: bool = False
    reached: bool = False


def _record(model: SequenceModel, example: Example, track: _Track, added: list[int], ev: Evaluation, r: int,
            t0: float, **extra: Any) -> bool:
    """Append a step record for row ``r`` of ``ev``; return whether the target is predicted."""
    pred = int(ev.argmax[r])
    reached = pred == int(example.target_ids[track.target])
    track.log.append({
        "size": len(track.rationale),
        "added": [int(j) for j in added],
        "added_tokens": [example.tokens[j] for j in added],
        "predicted_id": pred,
        "predicted": model.target_name(example, pred),
        "predicted_prob": float(math.exp(ev.max_logp[r])),
        "target_prob": float(math.exp(ev.target_logp[r])),
        "reached": bool(reached),
        "elapsed_s": float(time.perf_counter() - t0),
        **extra,
    })
    return reached


def order_scores(example: Example, rationales: Sequence[Sequence[int]]) -> np.ndarray:
    """``scores[i, j] = (n_i − rank) / n_i`` for rationale members, 0 for other visible positions, NaN elsewhere."""
    vis = example.visible().numpy()
    scores = np.where(vis, 0.0, np.nan)
    for i, rat in enumerate(rationales):
        n = len(rat)
        for rank, j in enumerate(rat):
            scores[i, j] = (n - rank) / n
    return scores


def _start_tracks(model: SequenceModel, example: Example) -> list[_Track]:
    # s_0: the adapter's answer (module docstring)
    return [_Track(i, example.visible_positions(i), list(model.start_positions(example, i)))
            for i in range(example.n_targets)]


def _result(model: SequenceModel, example: Example, tracks: list[_Track], counter: Counter, t0: float,
            **meta: Any) -> MethodResult:
    rationales = [list(t.rationale) for t in tracks]
    return MethodResult(
        scores=order_scores(example, rationales),
        rationales=rationales,
        rationale_log=[t.log for t in tracks],
        meta={"reached": [t.reached for t in tracks], "forwards": counter.forwards, "rows": counter.rows,
              "row_tokens": counter.tokens, "seconds": time.perf_counter() - t0, **meta},
    )


def _evaluate_starts(model: SequenceModel, example: Example, tracks: list[_Track], token_budget: int,
                     counter: Counter, t0: float) -> None:
    ev = evaluate_rows(model, example, [(t.target, sorted(t.rationale)) for t in tracks], token_budget, counter)
    for r, t in enumerate(tracks):
        t.reached = _record(model, example, t, list(t.rationale), ev, r, t0)
        t.done = t.reached or len(t.rationale) >= len(t.visible)


def _capped(tracks: list[_Track], max_size: int | None) -> list[int]:
    """Targets whose search stopped at ``max_size`` unreached while visible positions remained (a bound hit)."""
    return [t.target for t in tracks if max_size is not None and not t.reached
            and max_size <= len(t.rationale) < len(t.visible)]


def _check_max(name: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise InputError(f"{name} must be a positive number of positions (or None for no limit)")


# --------------------------------------------------------------------------- greedy
def best_candidate(values: np.ndarray) -> int:
    """Index of the largest value, ties to the lowest index; NaN ranks below every number (a NaN objective says
    nothing about a candidate), and only when every value is NaN does the first index win."""
    numbers = np.flatnonzero(~np.isnan(values))
    return int(numbers[np.argmax(values[numbers])]) if numbers.size else 0


@register("greedy", "rationale",
          "greedy sequential rationale (Vafa et al. 2021): add the context token that most raises log p(target) "
          "until the model predicts the target")
def greedy(model: SequenceModel, example: Example, *, token_budget: int | None = None,
           max_size: int | None = None) -> MethodResult:
    """Greedy rationales for every target (algorithm in the module docstring).

    Options:

    * ``token_budget``: int ≥ 1 or None (default None): tokens per forward; None: the adapter's default;
    * ``max_size``: int ≥ 1 or None (default None): caps the rationale size (a target that stops at the cap
      without reaching is recorded as not reached and bound hit); None: no cap. The start set is always included,
      even when it is larger than the cap."""
    require_keep_support(model)
    _check_max("max_size", max_size)
    token_budget = budget(model, token_budget)
    t0 = time.perf_counter()
    counter = Counter()
    tracks = _start_tracks(model, example)
    arbitrary: dict[int, int] = {}  # target → steps where every candidate was NaN
    with torch.no_grad(), eval_mode(model.model):
        _evaluate_starts(model, example, tracks, token_budget, counter, t0)
        while True:
            active = [t for t in tracks if not t.done and (max_size is None or len(t.rationale) < max_size)]
            if not active:
                break
            rows: list[tuple[int, list[int]]] = []
            spans: list[tuple[_Track, int, list[int]]] = []
            for t in active:
                members = set(t.rationale)
                cands = [j for j in t.visible if j not in members]
                spans.append((t, len(rows), cands))
                base = sorted(members)
                rows.extend((t.target, sorted([*base, j])) for j in cands)
            ev = evaluate_rows(model, example, rows, token_budget, counter)
            for t, off, cands in spans:
                best = best_candidate(ev.objective[off : off + len(cands)])
                if np.isnan(ev.objective[off + best]):  # every candidate NaN: the lowest position, arbitrarily
                    arbitrary[t.target] = arbitrary.get(t.target, 0) + 1
                t.rationale.append(cands[best])
                t.reached = _record(model, example, t, [cands[best]], ev, off + best, t0)
                t.done = t.reached or len(t.rationale) >= len(t.visible)
            for t in tracks:
                if not t.done and max_size is not None and len(t.rationale) >= max_size:
                    t.done = True
    out = _result(model, example, tracks, counter, t0, bound_hit=_capped(tracks, max_size))
    out.warnings.extend(f"greedy: target {i}: in {n} step(s) every candidate's objective was NaN (the model gave "
                        "NaN), so the position added there is arbitrary (the lowest)" for i, n in arbitrary.items())
    return out


# --------------------------------------------------------------------------- exhaustive
@register("exhaustive", "rationale",
          "smallest sufficient subset by exhaustive search over subsets of increasing size (first in lexicographic "
          "order), up to max_size",
          ignores_objective="the search stops at the first subset for which the model predicts the target, whatever "
          "the objective")
def exhaustive(model: SequenceModel, example: Example, *, max_size: int = 6, max_subsets: int = 1_000_000,
               token_budget: int | None = None) -> MethodResult:
    """Exhaustive search (module docstring).

    Options:

    * ``max_size``: int ≥ 1 (default 6): the largest rationale tried, start set included;
    * ``max_subsets``: int ≥ 1 (default 1000000): the search gives up (bound hit) before a size with more subsets;
    * ``token_budget``: int ≥ 1 or None (default None): tokens per forward; None: the adapter's default."""
    require_keep_support(model)
    _check_max("max_size", max_size)
    token_budget = budget(model, token_budget)
    t0 = time.perf_counter()
    counter = Counter()
    tracks = _start_tracks(model, example)
    bound_hit: list[int] = []
    with torch.no_grad(), eval_mode(model.model):
        _evaluate_starts(model, example, tracks, token_budget, counter, t0)
        for t in tracks:
            if t.reached:  # a start set that is the whole context without reaching goes on: nothing suffices
                continue
            base = list(t.rationale)
            cands = [j for j in t.visible if j not in set(base)]
            found: list[int] | None = None
            size = len(base)
            exhausted = False  # every subset, the whole context included, was tried: no bound stopped the search
            while found is None:
                size += 1
                n_add = size - len(base)
                exhausted = n_add > len(cands)
                if exhausted or size > max_size or math.comb(len(cands), n_add) > max_subsets:
                    break
                per = max(1, token_budget // max(1, model.row_cost(example, t.target, size)))
                combos = itertools.combinations(cands, n_add)
                offset = 0
                while found is None:
                    chunk = list(itertools.islice(combos, per))
                    if not chunk:
                        break
                    rows = [(t.target, sorted([*base, *c])) for c in chunk]
                    ev = evaluate_rows(model, example, rows, token_budget, counter)
                    hits = np.nonzero(ev.argmax == int(example.target_ids[t.target]))[0]
                    if hits.size:
                        k = int(hits[0])
                        found = list(chunk[k])
                        t.rationale = base + found
                        t.reached = _record(model, example, t, found, ev, k, t0, subsets_tried=offset + k + 1)
                    offset += len(chunk)
            if found is None:
                t.rationale = []
                if not exhausted:
                    bound_hit.append(t.target)
                t.log.append({"size": min(size, max_size), "added": [], "added_tokens": [], "reached": False,
                              "bound_hit": not exhausted, "exhausted": exhausted,
                              "elapsed_s": float(time.perf_counter() - t0)})
            t.done = True
    return _result(model, example, tracks, counter, t0, bound_hit=bound_hit)


# --------------------------------------------------------------------------- baseline orders
def ranked_positions(scores: np.ndarray, visible: Iterable[int], start: Sequence[int]) -> list[int]:
    """``start`` first, then the other visible positions in :func:`seqexplain.ranking.rank_positions` order
    (decreasing score; ``+inf`` first, ``-inf`` then NaN last; ties to the lowest position)."""
    first = list(start)
    taken = set(first)
    return first + rank_positions(scores, [j for j in visible if j not in taken])


def rationale_from_scores(model: SequenceModel, example: Example, scores: np.ndarray, *,
                          token_budget: int | None = None, max_size: int | None = None,
                          order_name: str = "") -> MethodResult:
    """Rationales that add positions in the order of ``scores[T, L]`` (see :func:`ranked_positions`) until the
    model predicts the target. All prefixes of all targets' orders are evaluated in shared batches, smallest
    prefix size first; a target's remaining prefixes are skipped once it is reached."""
    require_keep_support(model)
    _check_max("max_size", max_size)
    token_budget = budget(model, token_budget)
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (example.n_targets, example.length):
        raise InputError(f"scores have shape {scores.shape}, expected {(example.n_targets, example.length)}")
    t0 = time.perf_counter()
    counter = Counter()
    tracks = _start_tracks(model, example)
    orders = [ranked_positions(scores[t.target], t.visible, t.rationale) for t in tracks]
    with torch.no_grad(), eval_mode(model.model):
        _evaluate_starts(model, example, tracks, token_budget, counter, t0)
        while True:
            active = [t for t in tracks if not t.done and (max_size is None or len(t.rationale) < max_size)]
            if not active:
                break
            # One window of prefix sizes per round, so reached targets stop consuming rows.
            window = 4
            rows, spans = [], []
            for t in active:
                order = orders[t.target]
                stop = min(len(order), len(t.rationale) + window)
                if max_size is not None:
                    stop = min(stop, max_size)
                spans.append((t, len(rows), list(range(len(t.rationale) + 1, stop + 1))))
                rows.extend((t.target, sorted(order[:k])) for k in range(len(t.rationale) + 1, stop + 1))
            ev = evaluate_rows(model, example, rows, token_budget, counter)
            for t, off, sizes in spans:
                order = orders[t.target]
                for n, k in enumerate(sizes):
                    t.rationale.append(order[k - 1])
                    t.reached = _record(model, example, t, [order[k - 1]], ev, off + n, t0)
                    if t.reached:
                        break
                t.done = t.reached or len(t.rationale) >= len(t.visible) or (
                    max_size is not None and len(t.rationale) >= max_size)
    return _result(model, example, tracks, counter, t0, order_by=order_name, bound_hit=_capped(tracks, max_size))


def check_order(options: dict[str, Any]) -> None:
    """:class:`InputError` / :class:`UnknownMethodError` unless ``order_by`` names a registered attribution method
    that takes ``order_options``."""
    order_by = options["order_by"]
    if order_by in ("greedy", "exhaustive", "baseline_rationale"):
        raise InputError(f"order_by={order_by!r} is a rationale method; give an attribution method such as "
                         "gradient_norm, integrated_gradients, attention_last or occlusion")
    get_method(order_by).check_options(dict(options.get("order_options") or {}))


@register("baseline_rationale", "rationale",
          "rationale built in the order of another method's scores (order_by=gradient_norm, attention_*, "
          "integrated_gradients, occlusion, ...), with greedy's stopping rule", check=check_order)
def baseline_rationale(model: SequenceModel, example: Example, *, order_by: str = "gradient_norm",
                       order_options: dict[str, Any] | None = None, token_budget: int | None = None,
                       max_size: int | None = None) -> MethodResult:
    """Rank each target's context with the registered method ``order_by`` (options ``order_options``), then add
    positions in that order (start set first) until the model predicts the target.

    Options:

    * ``order_by``: str (default 'gradient_norm'): a registered attribution (not rationale) method;
    * ``order_options``: dict or None (default None): ``order_by``'s options, checked as that method checks them;
    * ``token_budget``: int ≥ 1 or None (default None): tokens per forward of the search (not of the order);
    * ``max_size``: int ≥ 1 or None (default None): caps the rationale size as in :func:`greedy`."""
    opts = dict(order_options or {})
    check_order({"order_by": order_by, "order_options": opts})
    require_keep_support(model)
    ranked = get_method(order_by).fn(model, example, **opts)
    out = rationale_from_scores(model, example, ranked.scores, token_budget=token_budget, max_size=max_size,
                                order_name=order_by)
    out.meta["order_options"] = opts
    out.warnings.extend(f"the order ({order_by}): {w}" for w in ranked.warnings)
    bad = int((example.visible().cpu().numpy() & ~np.isfinite(np.asarray(ranked.scores, dtype=np.float64))).sum())
    if bad:
        out.warnings.append(f"the order ({order_by}) has {bad} NaN or infinite score(s) where a target can see the "
                            "input: +inf ranks first, -inf and NaN last (seqexplain.ranking), not by the method")
    return out
