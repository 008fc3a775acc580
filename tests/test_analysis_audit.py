"""Audit of ``seqexplain.analysis``: each test failed on the code before its fix (a silent wrong result or a
traceback instead of a one-line ``seqexplain.errors`` error); the oracles are hand-computed cases, numpy and
scikit-learn, and autograd on the raw modules."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seqexplain.analysis.event_types import event_vector
from seqexplain.attribution import Attribution
from seqexplain.errors import InputError

torch.set_num_threads(1)


def test_event_vector_refuses_a_grouping_that_disagrees_with_the_types() -> None:
    # two groups of type 2 ([0] and [2, 3]): the second overwrote the first (2.25 instead of 0.5 + 2.25 = 2.75)
    attr = Attribution(tokens=["a", "b", "c", "d"], scores=np.array([[0.5, -1.0, 2.0, 0.25]]),
                       target_tokens=["pos"], target_positions=[None], groups={"events": [[0], [1], [2, 3]]})
    with pytest.raises(InputError, match="type 2 .* 2 groups"):
        event_vector(attr, [2, 0, 2, 2], 3)
    # one group holding two types ([1, 2]: types 0 and 2) was credited to the first member's type only
    mixed = Attribution(tokens=["a", "b", "c", "d"], scores=np.array([[0.5, -1.0, 2.0, 0.25]]),
                        target_tokens=["pos"], target_positions=[None], groups={"events": [[0, 3], [1, 2]]})
    with pytest.raises(InputError, match="group .* types 0 and 2"):
        event_vector(mixed, [2, 0, 2, 2], 3)
    # a type outside 0..K-1: -1 was written into the last slot (<other>), 3 raised an IndexError
    good = Attribution(tokens=["a", "b"], scores=np.array([[0.5, -1.0]]), target_tokens=["pos"],
                       target_positions=[None], groups={"events": [[0], [1]]})
    for bad in ([-1, 0], [3, 0]):
        with pytest.raises(InputError, match="event type"):
            event_vector(good, bad, 3)
    np.testing.assert_allclose(event_vector(good, [2, 0], 3), [-1.0, 0.0, 0.5])  # hand-computed
