"""Audit of the Attribution result type's operations on scores: aggregation (against a brute-force loop, also on
real results of every model kind), top_k, normalized, the means of traces and the offsets aggregation relies on,
each checked against hand-computed values or a re-implementation written here."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from attribution_samples import INF, NAN, basic, full, same

from seqexplain.attribution import Attribution
from seqexplain.errors import InputError
from seqexplain.trace import AttributionTrace


# ------------------------------------------------------------------------ aggregation against brute force
def _brute_combine(values: list[float], how: str) -> float:
    """One group's value from its visible members, written out with Python loops."""
    seen = [v for v in values if v == v]
    if not seen:
        return NAN
    if how == "sum":
        total = 0.0
        for v in seen:
            total += v
        return total
    if how == "mean":
        return _brute_combine(seen, "sum") / len(seen)
    if how == "max":
        best = seen[0]
        for v in seen[1:]:
            best = v if v > best else best
        return best
    best = seen[0]
    for v in seen[1:]:
        best = v if abs(v) > abs(best) else best
    return best


def _brute_partition(groups: list[list[int]], n: int) -> list[list[int]]:
    covered = {j for g in groups for j in g}
    out = [sorted(g) for g in groups] + [[j] for j in range(n) if j not in covered]
    return sorted(out, key=lambda g: g[0])


@pytest.mark.parametrize("seed", range(40))
@pytest.mark.parametrize("how", ["sum", "mean", "max", "absmax"])
def test_aggregate_matches_a_brute_force_loop(seed, how):
    rng = np.random.default_rng(seed)
    n_t, n_l = int(rng.integers(1, 4)), int(rng.integers(1, 9))
    scores = rng.choice([-2.0, -1.0, -0.0, 0.0, 0.5, 3.0, NAN, INF, -INF], size=(n_t, n_l),
                        p=[.15, .15, .05, .05, .15, .15, .2, .05, .05])
    perm = [int(j) for j in rng.permutation(n_l)]
    groups, k = [], 0
    while k < n_l:  # random, possibly non-contiguous groups leaving some positions uncovered
        size = int(rng.integers(1, 4))
        if rng.random() < 0.7:
            groups.append(perm[k:k + size])
        k += size
    positions = [None if rng.random() < 0.3 else int(rng.integers(0, n_l)) for _ in range(n_t)]
    a = Attribution(tokens=[f"t{j}" for j in range(n_l)], scores=scores, target_tokens=[f"y{i}" for i in range(n_t)],
                    target_positions=positions)
    for by in (groups, "g"):
        b = dataclasses.replace(a, groups={"g": groups}).aggregate(how, by=by)  # type: ignore[arg-type]
        part = _brute_partition(groups, n_l)
        want = np.array([[_brute_combine([float(scores[i, j]) for j in g], how) for g in part] for i in range(n_t)])
        np.testing.assert_array_equal(b.scores, want)
        owner = {j: gi for gi, g in enumerate(part) for j in g}
        assert b.target_positions == [None if p is None else owner[p] for p in positions]
        assert b.tokens == ["…".join(_runs(g)) for g in part]
        flagged = {(i, owner[j]) for i in range(n_t) for j in range(n_l) if np.isinf(scores[i, j])}
        assert set(b.nonfinite_cells()) >= flagged | {tuple(c) for c in np.argwhere(np.isinf(want))}


def _runs(group: list[int]) -> list[str]:
    runs: list[list[int]] = []
    for j in group:
        if runs and j == runs[-1][-1] + 1:
            runs[-1].append(j)
        else:
            runs.append([j])
    return ["".join(f"t{j}" for j in run) for run in runs]


# ------------------------------------------------------------------------------------------ top_k
def test_top_k_refuses_a_target_that_is_not_one_with_an_input_error():
    a = basic(scores=np.array([[1.0, 3.0, 2.0], [NAN, 1.0, 2.0]]))
    assert a.top_k(1, 5) == [2, 1] and a.top_k(-1, 5) == [2, 1]  # NaN (not visible) never returned
    for target in (2, -3, True, 1.0, "0"):
        with pytest.raises(InputError, match="target"):
            a.top_k(target, 1)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ normalized
@pytest.mark.parametrize("how", ["max_abs", "row_max_abs", "row_sum_abs"])
def test_normalized_scales_by_the_finite_cells_and_keeps_infinities(how):
    """An infinite cell must not turn every other cell into 0 (x / inf) and itself into NaN (inf / inf)."""
    scores = np.array([[INF, 2.0, -4.0, NAN], [1.0, -INF, NAN, NAN], [NAN, NAN, NAN, NAN], [0.0, -0.0, 0.0, NAN]])
    got = basic(tokens=list("abcd"), scores=scores, target_tokens=list("wxyz"),
                 target_positions=[None] * 4).normalized(how)
    want = np.full_like(scores, NAN)
    for i, row in enumerate(scores):
        finite = [abs(v) for v in row if np.isfinite(v)]
        if how == "max_abs":
            d = max(abs(v) for v in scores.ravel() if np.isfinite(v))
        elif how == "row_max_abs":
            d = max(finite) if finite else 0.0
        else:
            d = sum(finite)
        for j, v in enumerate(row):
            want[i, j] = v if not np.isfinite(v) or d == 0 else v / d
    same(got, want)


# ------------------------------------------------------------------------------------------ traces
def test_trace_mean_of_opposite_infinities_stays_flagged():
    """+inf in one layer and -inf in another average to NaN; that cell must stay flagged as non-finite, not
    become 'not visible'."""
    base = basic(tokens=["a", "b"], scores=np.zeros((1, 2)), target_tokens=["y"], target_positions=[None])
    t = AttributionTrace(base=base, scores=np.array([[[[INF, 1.0]], [[-INF, 2.0]]], [[[0.0, 1.0]], [[2.0, 2.0]]]]),
                         axes=["layer", "head"])
    by_head = t.mean("head")
    assert isinstance(by_head, AttributionTrace)
    plain = by_head.mean("layer")
    assert isinstance(plain, Attribution)
    assert plain.nonfinite_cells() == [(0, 0)]  # layer 1's finite mean fills the cell; it stays flagged
    np.testing.assert_array_equal(plain.scores, [[1.0, 1.5]])
    assert t.mean("head").select(layer=0).nonfinite_cells() == [(0, 0)]
    assert t.select(layer=1, head=0).nonfinite_cells() == []  # a slice of finite entries is not flagged


@pytest.mark.parametrize(("offset", "match"), [((0, 5), "lie beyond its source text of 2"), ((3, 1), "lie beyond"),
                                               ((-2, 1), "lie beyond"), (("0", "1"), r"\[start, end\]"),
                                               ((0,), r"\[start, end\]")])
def test_offsets_beyond_their_text_are_refused_on_construction(offset, match):
    """The loader refused them, the constructor did not, and aggregate then crashed with an IndexError."""
    with pytest.raises(InputError, match=match):
        Attribution(tokens=["a", "b"], scores=np.ones((1, 2)), target_tokens=["y"], target_positions=[None],
                    offsets=[offset, None], text="ab")


@pytest.mark.parametrize("seed", range(30))
def test_top_k_matches_a_sort_written_out(seed):
    """+inf first, then finite descending (-0.0 ties 0.0), then -inf; NaN never; ties to the lowest position."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 12))
    row = rng.choice([INF, -INF, NAN, 0.0, -0.0, 1.0, -1.0, 2.5], size=n)
    a = basic(tokens=[str(j) for j in range(n)], scores=row[None, :], target_tokens=["y"], target_positions=[None])

    def key(j: int) -> tuple[int, float, int]:
        v = float(row[j])
        return (0, 0.0, j) if v == INF else (2, 0.0, j) if v == -INF else (1, -v + 0.0, j)

    want = sorted((j for j in range(n) if row[j] == row[j]), key=key)
    for k in range(n + 2):
        assert a.top_k(0, k) == want[:k]


@pytest.mark.parametrize("fixture", ["gpt2", "bart", "t5", "bert"])
def test_word_aggregation_of_real_results_against_a_loop(request, fixture):
    """Real results of every model kind: words never straddle segments, each word's score is the loop-computed
    sum of its visible tokens, target positions land on the word holding the target, and aggregating the words
    again by words changes nothing."""
    import seqexplain as se

    model, tok = request.getfixturevalue(fixture)
    target = None if fixture == "bert" else "the dog ran"  # the classifier explains its own label
    a = se.explain(model, "the cat sat on the mat", target, method="grad_x_input", tokenizer=tok)
    words = a.aggregate("sum")
    part = a.partition("words")
    for g, members in enumerate(part):
        assert len({a.segments[j] for j in members}) == 1
        for i in range(a.shape[0]):
            seen = [float(a.scores[i, j]) for j in members if not np.isnan(a.scores[i, j])]
            if seen:
                assert words.scores[i, g] == pytest.approx(sum(seen), rel=1e-12, abs=1e-15)
            else:
                assert np.isnan(words.scores[i, g])
    owner = {j: g for g, members in enumerate(part) for j in members}
    assert words.target_positions == [None if p is None else owner[p] for p in a.target_positions]
    again = words.aggregate("sum")
    same(again.scores, words.scores)
    assert again.tokens == words.tokens and again.aggregation["of"] == words.aggregation


def test_an_aggregated_result_shares_nothing_mutable_with_its_source():
    a = full()
    before = json.dumps(a.to_dict(), sort_keys=True)
    b = a.aggregate("sum", by=[[1, 3]])
    b.options["k"].append(9)
    b.meta["x"]["y"].append(9)
    b.rationale.meta["forwards"] = 99  # type: ignore[union-attr]
    b.rationale.log[0][0]["added_tokens"].append("z")  # type: ignore[union-attr]
    assert json.dumps(a.to_dict(), sort_keys=True) == before


@pytest.mark.parametrize("how", ["sum", "mean", "max", "absmax"])
def test_a_word_holding_a_flagged_nan_is_nan(how):
    """A visible NaN cell (flagged in meta) was dropped like a not-visible one, so the word showed the partial
    value 1.0 with the flag; a not-visible NaN is still ignored. Hand-computed."""
    a = Attribution(tokens=["a", "b", " c", "d"], scores=np.array([[1.0, np.nan, 2.0, np.nan]]), target_tokens=["x"],
                    target_positions=[None], offsets=[(0, 1), (1, 2), (2, 4), (4, 5)], segments=["source"] * 4,
                    text="ab cd", meta={"nonfinite_cells": [[0, 1]]})
    words = a.aggregate(how)
    assert np.isnan(words.scores[0, 0]) and words.nonfinite_cells() == [(0, 0)]
    assert words.scores[0, 1] == 2.0  # "cd": d is not visible (its NaN not flagged), so c alone
