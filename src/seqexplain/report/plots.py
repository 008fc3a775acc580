"""Matplotlib heatmap of an :class:`~seqexplain.attribution.Attribution` (targets × input tokens).

matplotlib is imported lazily, and figures are built with :class:`matplotlib.figure.Figure` on an Agg canvas,
so nothing here touches pyplot's global state or needs a display. Colours follow the shared contract of
:mod:`seqexplain.report._common`: ``RdBu`` (red negative, blue positive) on ``[-1, 1]`` when any score is
negative, ``Blues`` on ``[0, 1]`` otherwise; NaN (not visible) cells are masked (light grey); non-finite cells
are masked too and marked with a magenta ``!``; the target's own position is outlined. The title names the method,
model, objective and options, and carries a ``WARNING:`` line per warning of ``view_warnings``. Tick labels
are the text each token covers, leading/trailing whitespace visible (``␣Paris``), as in every view.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from seqexplain.atomic import atomic_write_bytes
from seqexplain.attribution import Attribution, Normalization
from seqexplain.errors import InputError
from seqexplain.report._common import (
    Decoder,
    describe_objective,
    describe_options,
    display_matrix,
    encodable,
    input_labels,
    target_label,
    view_warnings,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SAVE_FORMATS = ("png", "pdf", "svg")


def plot_heatmap(
    attr: Attribution,
    path: str | os.PathLike[str] | None = None,
    normalize: Normalization | str = "row_max_abs",
    annotate: bool | None = None,
    dpi: int = 150,
    *,
    decode: Decoder | None = None,
) -> Figure:
    """Draw ``attr`` as a heatmap (rows: targets, columns: input tokens) and return the Figure.

    Args:
        attr: the attribution; it must have at least one target and one input token.
        path: when given, the figure is saved there atomically; the format comes from the suffix (``.png``,
            ``.pdf`` or ``.svg``).
        normalize: display normalisation (``none``, ``max_abs``, ``row_max_abs``, ``row_sum_abs``).
        annotate: write the shown value in each cell; default: only when there are at most 300 cells.
        dpi: resolution for raster output.
        decode: the tokenizer's decoding of a token string, for tokens without offsets (foils, labels).

    Raises:
        InputError: an empty attribution, an unknown ``normalize``, or an unsupported file suffix.
    """
    n_t, n_l = attr.shape
    if n_t == 0 or n_l == 0:
        raise InputError(f"nothing to plot: the attribution has {n_t} targets and {n_l} input tokens")
    fmt = None
    if path is not None:
        fmt = Path(path).suffix.lower().lstrip(".")
        if fmt not in SAVE_FORMATS:
            raise InputError(f"cannot save a plot as {Path(path).name!r}; use a .png, .pdf or .svg file name")
    dm = display_matrix(attr, normalize)

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    width = min(40.0, max(4.0, 1.2 + 0.42 * n_l))
    tick_labels = input_labels(attr, decode)
    longest = max(len(t) for t in tick_labels)
    height = min(40.0, max(2.2, 1.6 + 0.36 * n_t + 0.075 * min(longest, 40)))
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    cmap_name, vmin = ("RdBu", -1.0) if dm.signed else ("Blues", 0.0)
    from matplotlib import colormaps

    cmap = colormaps[cmap_name].with_extremes(bad="#e6e6e6")
    masked = np.ma.masked_invalid(dm.intensity)
    image = ax.imshow(masked, cmap=cmap, vmin=vmin, vmax=1.0, aspect="auto", interpolation="nearest")
    cbar = fig.colorbar(image, ax=ax, fraction=0.04, pad=0.01)
    cbar.set_label(dm.normalize, fontsize=8)
    cbar.ax.tick_params(labelsize=7)

    ax.set_xticks(range(n_l))
    ax.set_xticklabels(tick_labels, rotation=90, fontsize=8)
    labels = []
    for i in range(n_t):
        label = target_label(attr, i, decode)
        if attr.target_logprobs is not None and i < len(attr.target_logprobs):
            label += f" ({attr.target_logprobs[i]:.2f})"
        labels.append(label)
    ax.set_yticks(range(n_t))
    ax.set_yticklabels([encodable(x) for x in labels], fontsize=8)
    ax.set_xlabel("input tokens")
    ax.set_ylabel("targets (log p)" if attr.target_logprobs is not None else "targets")
    title = attr.method or "attribution"
    if attr.model_id:
        title += f" · {attr.model_id}"
    options = describe_options(attr)
    lines = [title, describe_objective(attr, decode), *([options] if options else [])]
    lines += [f"WARNING: {w}" for w in view_warnings(attr, decode)]
    ax.set_title(encodable("\n".join(lines)), fontsize=9)

    if annotate is None:
        annotate = n_t * n_l <= 300
    for i in range(n_t):
        pos = attr.target_positions[i]
        if pos is not None and 0 <= pos < n_l:
            ax.add_patch(Rectangle((pos - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="#bf8700", linewidth=2))
        for j in range(n_l):
            if dm.bad[i, j]:
                ax.text(j, i, "!", ha="center", va="center", color="magenta", fontsize=11, fontweight="bold")
            elif annotate and not dm.not_visible[i, j]:
                colour = "white" if abs(float(dm.intensity[i, j])) > 0.6 else "black"
                ax.text(j, i, f"{float(dm.shown[i, j]):.2f}", ha="center", va="center", color=colour, fontsize=6)

    if path is not None:
        buffer = io.BytesIO()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*[Gg]lyph.*missing.*")
            fig.savefig(buffer, format=fmt, dpi=dpi)
        atomic_write_bytes(path, buffer.getvalue())
    return fig
