"""Edge cases of the registered methods' options, each against an independent oracle (a brute-force loop or a
hand-computed case): found by an audit of the methods for silent wrong results."""

from __future__ import annotations

import numpy as np
import torch

import seqexplain as se

PROMPT, TARGET = "The cat sat on the mat.", " The dog"


def _objective(model, ex, target: int, kept: list[int]) -> float:
    """The brute-force objective of ``target`` with only ``kept`` visible (one forward of its own)."""
    keep = torch.zeros(1, ex.length, dtype=torch.bool)
    keep[0, kept] = True
    with torch.no_grad():
        return float(model.score(ex, keep=keep)[0, target])


def test_greedy_never_prefers_a_nan_candidate(no_attention_lm):
    # The model's logits are NaN in every row that drops position 1: in the second step only the candidate 1 has a
    # number. A NaN objective must never beat a number (it ranks last, as in seqexplain.ranking); greedy took the
    # first candidate, position 0, because no value compares greater than NaN.
    model = no_attention_lm(nan_when_dropped=True)
    ex = model.encode(PROMPT, TARGET)
    start = model.start_positions(ex, 0)
    cands = [j for j in range(ex.length) if ex.visible()[0, j] and j not in start]
    values = {j: _objective(model, ex, 0, sorted([*start, j])) for j in cands}
    finite = {j: v for j, v in values.items() if not np.isnan(v)}
    assert finite and len(finite) < len(values)  # the case holds: some candidates are NaN, some are not
    expected = max(finite, key=lambda j: (finite[j], -j))
    attr = se.explain_example(model, ex, "greedy", max_size=len(start) + 1)
    assert attr.rationale.positions[0] == [*start, expected]
