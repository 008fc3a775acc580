"""Plots of state-gradient spectra against delay (matplotlib, Agg backend, no global pyplot state)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from torch import Tensor

from seqexplain.atomic import atomic_path


def plot_curves(
    curves: Mapping[str, Sequence[float] | np.ndarray | Tensor],
    path: Path | str,
    title: str,
    ylabel: str,
    xlabel: str = "delay d (words back)",
    logy: bool = False,
    x: Sequence[int] | None = None,
) -> Path:
    """One line per label (e.g. per class, or one RNN and one transformer) against delay; saved as PNG atomically.

    NaN values (no data for that delay) leave gaps.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.2), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for label, ys in curves.items():
        arr = np.asarray(ys.detach().cpu() if isinstance(ys, Tensor) else ys, dtype=float)
        xs = np.arange(len(arr)) if x is None else np.asarray(x)
        ax.plot(xs, arr, marker="o", markersize=2.5, linewidth=1.2, label=str(label))
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(path)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png")
    return out


def plot_top_singular_values(top: Tensor | np.ndarray, path: Path | str, title: str, logy: bool = True) -> Path:
    """Plot ``top[D+1, k]``: the ``k`` largest singular values (one line each) against delay."""
    arr = np.asarray(top.detach().cpu() if isinstance(top, Tensor) else top, dtype=float)
    return plot_curves({f"σ{i + 1}": arr[:, i] for i in range(arr.shape[1])}, path, title, "singular value",
                       logy=logy)
