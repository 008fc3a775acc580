"""Hand-built attributions and a bit-exact comparison shared by the Attribution audits
(``tests/test_attribution_audit_files.py``, ``tests/test_attribution_audit_scores.py``)."""

from __future__ import annotations

import numpy as np

from seqexplain.attribution import Attribution

NAN, INF = float("nan"), float("inf")


def basic(**kw) -> Attribution:
    """Three tokens, two classifier targets, scores holding +inf, -inf, -0.0 and NaN; ``kw`` replaces fields."""
    fields = dict(tokens=["a", "b", "c"], scores=np.array([[INF, -INF, -0.0], [1.5, NAN, 2.0]]),
                  target_tokens=["x", "y"], target_positions=[None, None], model_kind="classifier")
    fields.update(kw)
    return Attribution(**fields)  # type: ignore[arg-type]


def same(a: np.ndarray, b: np.ndarray) -> None:
    """Bit-for-bit equal values: NaN where NaN, the same infinities, the sign of zero kept."""
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(np.signbit(a) & ~np.isnan(a), np.signbit(b) & ~np.isnan(b))


TRICKY = ["<s>", "\u05e9\u05dc\u05d5\u05dd", "e\u0301", "\x00\x07\x1b[31m", "\ud800", "\u2028", " ", "x" * 20_000,
          "</script>&\"'"]


def full(**kw) -> Attribution:
    """Every field of an Attribution set, with the TRICKY tokens and every kind of non-finite score; ``kw`` replaces
    fields."""
    from seqexplain.attribution_rationale import Rationale

    n = len(TRICKY)
    scores = np.linspace(-2, 2, 2 * n).reshape(2, n)
    scores[0, 1], scores[0, 2], scores[1, 3], scores[1, 4] = INF, -INF, -0.0, NAN
    fields = dict(tokens=list(TRICKY), scores=scores, target_tokens=["\U0001f600", "\t"], target_positions=[5, None],
                  offsets=[None] * n, segments=["special"] + ["source"] * (n - 1), method="m\u00e9thode",
                  options={"k": [1, 2], "s": "\u2028"}, model_id="id", model_kind="causal", text="t\u00e9xt",
                  target_text="", target_logprobs=[-1.5, -0.0], objective="contrast", foil_tokens=["\x00", "</style>"],
                  rationale=Rationale(positions=[[3, 1], []], reached=[True, False], bound_hit=[False, True],
                                      log=[[{"added": [3, 1], "added_tokens": [TRICKY[3], TRICKY[1]]}], []],
                                      meta={"forwards": 3}),
                  groups={"g": [[1, 3], [2]]}, aggregation=None, warnings=["w\u00e4rning <b>", ""],
                  meta={"nonfinite_cells": [[1, 4]], "x": {"y": [1]}})
    fields.update(kw)
    return Attribution(**fields)  # type: ignore[arg-type]
