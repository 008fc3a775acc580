"""Progress reporting: every method reports as much work done as it announced, so a bar ends at 100 %."""

from __future__ import annotations

import pytest

import seqexplain as se
from seqexplain import progress


class FakeBar:
    def __init__(self) -> None:
        self.total = 0
        self.n = 0

    def refresh(self) -> None:
        pass

    def update(self, n: int) -> None:
        self.n += n


@pytest.mark.parametrize("method,options", [("occlusion", {}), ("gradient_norm", {"token_budget": 16}),
                                            ("integrated_gradients", {"steps": 5, "token_budget": 32}),
                                            ("greedy", {"max_size": 3}), ("exhaustive", {"max_size": 2})])
def test_work_done_equals_work_announced(gpt2, method, options):
    bar = FakeBar()
    token = progress._BAR.set(bar)
    try:
        se.explain(se.load_model(*gpt2), "The cat sat on the mat", " and the dog", method, **options)
    finally:
        progress._BAR.reset(token)
    assert bar.total > 0 and bar.n == bar.total


def test_no_bar_no_cost():
    progress.add_total(5)  # no bar open: nothing happens, nothing raises
    progress.advance(5)
