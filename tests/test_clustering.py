"""Clustering of explanation vectors: silhouette against a hand loop and scikit-learn, ARI against the
contingency-table formula, the chosen k, plots."""

from __future__ import annotations

from math import comb

import numpy as np
import pytest

from seqexplain.analysis.clustering import (
    ari,
    cluster_explanations,
    plot_cluster_violins,
    plot_embedding,
    plot_silhouettes,
    standardise,
)
from seqexplain.errors import InputError


def _blobs(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.array([[0, 0, 0, 5], [6, 0, 0, 0], [0, 6, 1, 0]], dtype=float)
    return np.concatenate([c + rng.normal(scale=0.5, size=(15, 4)) for c in centres])


def silhouette_by_hand(x: np.ndarray, labels: np.ndarray) -> float:
    vals = []
    for i in range(len(x)):
        d = np.sqrt(((x - x[i]) ** 2).sum(1))
        own = labels == labels[i]
        if own.sum() == 1:
            vals.append(0.0)
            continue
        a = d[own].sum() / (own.sum() - 1)
        b = min(d[labels == c].mean() for c in set(labels.tolist()) if c != labels[i])
        vals.append((b - a) / max(a, b))
    return float(np.mean(vals))


def ari_by_hand(a: list[int], b: list[int]) -> float:
    n = len(a)
    table = {}
    for u, v in zip(a, b, strict=True):
        table[(u, v)] = table.get((u, v), 0) + 1
    idx = sum(comb(c, 2) for c in table.values())
    sa = sum(comb(a.count(u), 2) for u in set(a))
    sb = sum(comb(b.count(v), 2) for v in set(b))
    expected = sa * sb / comb(n, 2)
    return (idx - expected) / (0.5 * (sa + sb) - expected)


def test_silhouettes_and_chosen_k():
    x = _blobs()
    res = cluster_explanations(x, range(2, 6), seed=1)
    data = standardise(x)
    for k, labels in res.labels_by_k.items():
        assert abs(res.silhouettes[k] - silhouette_by_hand(data, labels)) < 1e-10
    assert res.k == 3 and sorted(np.bincount(res.labels).tolist()) == [15, 15, 15]
    raw = cluster_explanations(x, [3], standardise_columns=False)
    assert abs(raw.silhouettes[3] - silhouette_by_hand(x, raw.labels)) < 1e-10
    assert res.summary()["cluster_sizes"] == np.bincount(res.labels).tolist()
    np.testing.assert_allclose(standardise(np.array([[1.0, 2.0], [3.0, 2.0]])), [[-1.0, 0.0], [1.0, 0.0]])


def test_ari_matches_the_formula():
    rng = np.random.default_rng(2)
    for _ in range(5):
        a = rng.integers(0, 3, size=30).tolist()
        b = rng.integers(0, 4, size=30).tolist()
        assert abs(ari(a, b) - ari_by_hand(a, b)) < 1e-12
    assert ari([0, 0, 1, 1], [1, 1, 0, 0]) == 1.0
    with pytest.raises(InputError, match="different sequences"):
        ari([0, 1], [0, 1, 1])


def test_bad_clustering_inputs():
    x = _blobs()
    with pytest.raises(InputError, match="2 ≤ k < N"):
        cluster_explanations(x[:4], range(2, 6))
    with pytest.raises(InputError, match="NaN"):
        cluster_explanations(np.full((5, 2), np.nan), [2])
    with pytest.raises(InputError, match="at least 3"):
        cluster_explanations(x[:2], [2])


def test_plots(tmp_path):
    x = _blobs()
    res = cluster_explanations(x, range(2, 5))
    for path in (plot_silhouettes({"a": res}, tmp_path / "s.png"),
                 plot_cluster_violins(x, res, ["e0", "e1", "e2", "e3"], tmp_path / "v.png", top=3),
                 plot_embedding(x, res, tmp_path / "e.png")):
        assert path.read_bytes()[:4] == b"\x89PNG"
