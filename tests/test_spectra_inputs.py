"""Inputs :meth:`EmbeddingNormalizer.fit` cannot normalise: a diverged (NaN) embedding matrix, NaN weights, and
weighted rows that are all equal. Each used to end in torch's LinAlgError traceback from the Cholesky factorisation
(identity covariance of usable inputs is checked in test_state_gradients.py)."""

from __future__ import annotations

import pytest
import torch

from seqexplain.analysis.spectra import EmbeddingNormalizer
from seqexplain.errors import InputError

GOOD = torch.tensor([[0.0, 1.0], [1.0, 0.0], [2.0, 2.0], [3.0, -1.0]])


@pytest.mark.parametrize(("embeddings", "weights", "message"), [
    (torch.tensor([[0.0, float("nan")], [1.0, 0.0], [2.0, 2.0]]), None, "NaN or infinite"),
    (GOOD, torch.tensor([1.0, float("nan"), 1.0, 1.0]), "weights must be finite"),
    (torch.ones(3, 2), None, "all equal"),
    (GOOD, torch.tensor([0.0, 5.0, 0.0, 0.0]), "all equal"),  # one row carries all the weight
])
def test_unusable_embeddings_are_input_errors(embeddings: torch.Tensor, weights: torch.Tensor | None,
                                              message: str) -> None:
    with pytest.raises(InputError, match=message):
        EmbeddingNormalizer.fit(embeddings, weights)

