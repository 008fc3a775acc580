"""Clustering explanation vectors (Ger et al.): do two equally good models explain the same predictions the same
way?

Each sequence has one explanation vector (length K, one value per event type). :func:`cluster_explanations` runs
KMeans (scikit-learn, ``random_state=seed``, ``n_init`` restarts) for every k in a range and scores each with the
silhouette (Euclidean, scikit-learn); the chosen k has the highest silhouette (ties: the smaller k; a chosen k with
fewer distinct clusters than k, from duplicate vectors, is warned about and counted in the summary). Vectors are
**standardised** per event type (zero mean, unit variance over the sequences; constant columns are only centred) by
default, since the methods' scales differ by orders of magnitude; ``standardise=False`` clusters the raw values.
Agreement between two clusterings of the same sequences (two models, two methods, two points of a path) is the
adjusted Rand index (:func:`ari`, scikit-learn).

Plots (matplotlib, written atomically as PNG): silhouette over k per clustering; per cluster, violins of the
explanation values of the most important event types (the cluster's size in its label); a 2-D PCA embedding
coloured by cluster.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from seqexplain.atomic import atomic_path
from seqexplain.errors import InputError


@dataclass
class Clustering:
    """KMeans of explanation vectors for every k tried: ``silhouettes[k]``, the chosen ``k`` and its ``labels``
    (``labels_by_k`` for every k), whether the vectors were standardised, and the seed."""

    silhouettes: dict[int, float]
    k: int
    labels: np.ndarray
    labels_by_k: dict[int, np.ndarray] = field(repr=False)
    standardised: bool
    seed: int

    def summary(self) -> dict[str, object]:
        """The chosen k, its silhouette and cluster sizes, ``clusters_found`` (distinct clusters among its labels:
        fewer than k when the vectors hold fewer distinct points), the silhouettes of every k, standardisation and
        seed."""
        sizes = np.bincount(self.labels, minlength=self.k).tolist()
        return {"k": self.k, "silhouette": self.silhouettes[self.k], "silhouettes": self.silhouettes,
                "cluster_sizes": sizes, "clusters_found": int(len(np.unique(self.labels))),
                "standardised": self.standardised, "seed": self.seed}


def standardise(vectors: np.ndarray) -> np.ndarray:
    """Columns centred and divided by their (population) standard deviation; constant columns, also those constant up
    to rounding, only centred (scikit-learn's ``StandardScaler``)."""
    from sklearn.preprocessing import StandardScaler

    return StandardScaler().fit_transform(np.asarray(vectors, dtype=np.float64))


def cluster_explanations(vectors: np.ndarray, k_range: Sequence[int] = range(2, 9), seed: int = 0,
                         standardise_columns: bool = True, n_init: int = 10) -> Clustering:
    """KMeans for every k in ``k_range`` with silhouettes and the chosen k (module docstring)."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 3:
        raise InputError(f"clustering needs at least 3 explanation vectors as an [N, K] array, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise InputError("explanation vectors hold NaN or infinite values; fill absent event types first")
    ks = sorted({int(k) for k in k_range})
    if not ks or ks[0] < 2 or ks[-1] >= x.shape[0]:
        raise InputError(f"k must range within 2..{x.shape[0] - 1} (the silhouette needs 2 ≤ k < N), got {ks}")
    data = standardise(x) if standardise_columns else x
    sil: dict[int, float] = {}
    labels: dict[int, np.ndarray] = {}
    for k in ks:
        got = KMeans(n_clusters=k, random_state=seed, n_init=n_init).fit_predict(data)
        labels[k] = got
        sil[k] = float(silhouette_score(data, got)) if len(set(got.tolist())) > 1 else float("nan")
    valid = [k for k in ks if np.isfinite(sil[k])]
    if not valid:
        raise InputError("every clustering put all vectors in one cluster (identical explanations?)")
    best = max(valid, key=lambda k: (sil[k], -k))
    found = len(np.unique(labels[best]))
    if found < best:
        warnings.warn(f"the chosen k = {best} has only {found} distinct clusters (the vectors hold fewer distinct "
                      "points); its silhouette is that of the clusters found", RuntimeWarning, stacklevel=2)
    return Clustering(sil, best, labels[best], labels, standardise_columns, seed)


def ari(a: Sequence[int] | np.ndarray, b: Sequence[int] | np.ndarray) -> float:
    """Adjusted Rand index of two clusterings of the same (at least one) sequences (scikit-learn)."""
    from sklearn.metrics import adjusted_rand_score

    if len(a) != len(b):
        raise InputError(f"two clusterings of different sequences ({len(a)} and {len(b)} labels)")
    if len(a) == 0:
        raise InputError("two clusterings of no sequences have no agreement to measure")
    return float(adjusted_rand_score(np.asarray(a), np.asarray(b)))


# --------------------------------------------------------------------------- plots
def save_figure(fig: object, path: Path) -> Path:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")  # type: ignore[attr-defined]
    plt.close(fig)  # type: ignore[arg-type]
    return path


def plot_silhouettes(results: Mapping[str, Clustering], path: Path | str) -> Path:
    """Silhouette over k, one line per named clustering, the chosen k marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, res in results.items():
        ks = sorted(res.silhouettes)
        line = ax.plot(ks, [res.silhouettes[k] for k in ks], marker="o", label=name)[0]
        ax.plot([res.k], [res.silhouettes[res.k]], marker="*", markersize=14, color=line.get_color())
    ax.set_xlabel("k (KMeans clusters)")
    ax.set_ylabel("silhouette")
    ax.legend(fontsize=7)
    return save_figure(fig, Path(path))


def _check_clustered(x: np.ndarray, res: Clustering) -> None:
    if x.ndim != 2 or x.shape[0] != len(res.labels):
        raise InputError(f"the clustering is of {len(res.labels)} sequences but the vectors are of shape {x.shape}; "
                         "plot the vectors that were clustered")


def plot_cluster_violins(vectors: np.ndarray, res: Clustering, event_names: Sequence[str], path: Path | str,
                         top: int = 5) -> Path:
    """Per cluster, violins of the (unstandardised) explanation values of the ``top`` event types of largest mean
    magnitude; each panel's title gives the cluster's size. ``event_names``: one per column of ``vectors``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.asarray(vectors, dtype=np.float64)
    _check_clustered(x, res)
    if len(event_names) != x.shape[1]:
        raise InputError(f"{len(event_names)} event names for vectors of {x.shape[1]} event types")
    order = np.argsort(-np.abs(x).mean(0))[:top]
    fig, axes = plt.subplots(1, res.k, figsize=(3.2 * res.k, 3.4), squeeze=False)
    for c in range(res.k):
        ax = axes[0, c]
        members = x[res.labels == c][:, order]
        if len(members) > 1:
            ax.violinplot([members[:, j] for j in range(len(order))], showmedians=True)
        ax.set_xticks(range(1, len(order) + 1), [event_names[j] for j in order], rotation=60, fontsize=7)
        ax.set_title(f"cluster {c} (n={int((res.labels == c).sum())})", fontsize=9)
    return save_figure(fig, Path(path))


def plot_embedding(vectors: np.ndarray, res: Clustering, path: Path | str) -> Path:
    """2-D PCA (scikit-learn) of the (standardised, as clustered) vectors coloured by cluster."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA

    x = np.asarray(vectors, dtype=np.float64)
    _check_clustered(x, res)
    data = standardise(x) if res.standardised else x
    xy = PCA(n_components=2, random_state=res.seed).fit_transform(data)
    fig, ax = plt.subplots(figsize=(5, 4))
    sc = ax.scatter(xy[:, 0], xy[:, 1], c=res.labels, s=8, cmap="tab10")
    ax.legend(*sc.legend_elements(), title="cluster", fontsize=7)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    return save_figure(fig, Path(path))
