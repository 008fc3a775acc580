"""Terminal rendering of an :class:`~seqexplain.attribution.Attribution` with rich.

Above the table: a header (method, model, options), a line saying what is explained (the objective, e.g.
``explains log p(target) − log p(foil '␣Paris')``) and the aggregation, the legend (colour scale, or the number
notation), the token notation (:data:`~seqexplain.report._common.NOTATION`), then a ``⚠ WARNING`` line for
every warning of :func:`~seqexplain.report._common.view_warnings` (the result's ``warnings``, and a rationale
search that did not reach its target or hit a bound) and for non-finite cells.

One row per target: the target (and ``vs 'foil'`` for a contrast), its log-probability (when known), then the
input tokens, wrapping to the console width; for a rationale method, a line ``rationale (reached): 3:tok →
5:tok`` whose status reads ``not reached`` or ``not reached · bound hit`` in the warning style when the search
failed.

Two ways to show the scores:

* **colour** (a colour terminal): each token's background from the colour scale (red negative / blue positive,
  or white to blue when no score is negative); not visible (NaN): dim grey; non-finite: ``token!`` in bold
  white on magenta; the target's own position: ``[token]`` in bold underlined yellow (underlined on its
  colour when that cell has a score: an aggregated group the target completes);
* **numbers** (``numbers=True``; by default whenever the console has no colour: not a terminal, ``NO_COLOR``):
  each visible position as ``token=score`` (the raw score, 3 significant digits), non-finite cells as
  ``token=inf!``, the target's position as ``[token]`` (``[token]=score`` when it has a score), positions the
  target cannot see left out (counted),
  then a top-k table per target (``top_k``, 5 by default in this mode).

Tokens are shown as the text they cover, with a token's leading/trailing whitespace visible (``␣Paris``), by
:func:`~seqexplain.report._common.input_labels`, and appended as plain :class:`rich.text.Text`, so markup-like
tokens (``[bold]``) are printed literally.
"""

from __future__ import annotations

import math

import numpy as np
from rich.console import Console, Group, RenderableType
from rich.style import Style
from rich.table import Table
from rich.text import Text

from seqexplain.attribution import Attribution, Normalization
from seqexplain.errors import InputError
from seqexplain.report._common import (
    NOTATION,
    Decoder,
    DisplayMatrix,
    bad_cells_summary,
    cell_rgb,
    describe_aggregation,
    describe_objective,
    describe_options,
    describe_precision,
    display_matrix,
    encodable,
    foil_of,
    format_score,
    input_labels,
    rationale_status,
    target_label,
    text_rgb,
    view_warnings,
)

NOT_VISIBLE_STYLE = Style(color="grey50", dim=True)
BAD_STYLE = Style(color="white", bgcolor="magenta", bold=True)
TARGET_STYLE = Style(color="yellow", bold=True, underline=True)
#: added to the colour of a target's own cell when that cell has a score (an aggregated group).
TARGET_MARK = Style(bold=True, underline=True)
WARNING_STYLE = Style(color="magenta", bold=True)
#: rows of the top-k table per target when numbers are shown and ``top_k`` is not given.
DEFAULT_TOP_K = 5


def colour_is_off(console: Console) -> bool:
    """Whether ``console`` cannot show the scores as colours: it prints no colour (not a terminal, ``NO_COLOR``
    set, or ``no_color=True``) or only 16 (``standard`` / ``windows``, where the heatmap's shades fold into a few
    greys and mid-range scores lose their sign); then :func:`render_console` shows the scores as numbers by
    default."""
    return bool(console.no_color) or console.color_system in (None, "standard", "windows")


def short_score(value: float) -> str:
    """A score in 3 significant digits with its sign (``+0.412``, ``-1.5e-05``; ``inf``/``nan`` spelled out)."""
    if not math.isfinite(value):
        return format_score(value)
    return f"{value:+.3g}"


def _cell_style(intensity: float) -> Style:
    bg = cell_rgb(intensity)
    fg = text_rgb(bg)
    return Style(color=f"rgb({fg[0]},{fg[1]},{fg[2]})", bgcolor=f"rgb({bg[0]},{bg[1]},{bg[2]})")


def _legend(signed: bool) -> Text:
    steps = [-1.0, -0.75, -0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0] if signed else [0.0, 0.25, 0.5, 0.75, 1.0]
    legend = Text("scale ")
    legend.append("−1 " if signed else "0 ")
    for v in steps:
        legend.append("  ", style=_cell_style(v))
    legend.append(" +1   ")
    legend.append("tok", style=NOT_VISIBLE_STYLE)
    legend.append(" not visible   ")
    legend.append("tok!", style=BAD_STYLE)
    legend.append(" non-finite   ")
    legend.append("[tok]", style=TARGET_STYLE)
    legend.append(" target position")
    return legend


def _numbers_legend() -> Text:
    return Text("scores: token=score, the raw score of each input position (3 significant digits); token=inf! "
                "non-finite; [token] target position; positions a target cannot see are left out")


def _window(n_inputs: int, position: int | None, max_tokens: int | None) -> range:
    """Input positions shown for one target: all, or ``max_tokens`` ending at the target's position."""
    if max_tokens is None or n_inputs <= max_tokens:
        return range(n_inputs)
    end = n_inputs if position is None else min(n_inputs, position + 1)
    start = max(0, end - max_tokens)
    return range(start, end)


def _colour_cells(attr: Attribution, dm: DisplayMatrix, labels: list[str], i: int, window: range) -> Text:
    pos = attr.target_positions[i]
    cells = Text()
    for j in window:
        if j > window.start:
            cells.append(" ")
        tok = labels[j]
        if dm.bad[i, j]:
            part, style = f"{tok}!", BAD_STYLE
        elif dm.not_visible[i, j]:
            part, style = tok, NOT_VISIBLE_STYLE
        else:
            part, style = tok, _cell_style(float(dm.intensity[i, j]))
        if pos is not None and j == pos:  # the target's own cell keeps its score's colour when it has one
            part, style = f"[{part}]", TARGET_STYLE if dm.not_visible[i, j] else style + TARGET_MARK
        cells.append(part, style=style)
    return cells


def _number_cells(attr: Attribution, dm: DisplayMatrix, labels: list[str], i: int, window: range) -> Text:
    pos = attr.target_positions[i]
    cells = Text()
    hidden = 0
    for j in window:
        tok = f"[{labels[j]}]" if pos is not None and j == pos else labels[j]
        if dm.bad[i, j]:
            part, style = f"{tok}={format_score(float(attr.scores[i, j]))}!", BAD_STYLE
        elif dm.not_visible[i, j] and tok != labels[j]:
            part, style = tok, TARGET_STYLE
        elif dm.not_visible[i, j]:
            hidden += 1
            continue
        else:  # a visible cell, the target's own included (an aggregated group the target completes)
            part, style = f"{tok}={short_score(float(attr.scores[i, j]))}", TARGET_STYLE if tok != labels[j] else None
        if cells:
            cells.append(" ")
        cells.append(part, style=style)
    if hidden:
        cells.append(f"{' ' if cells else ''}(+{hidden} not visible)", style="dim italic")
    return cells


def top_k_table(attr: Attribution, i: int, k: int, dm: DisplayMatrix | None = None,
                decode: Decoder | None = None, labels: list[str] | None = None) -> Table:
    """The ``k`` highest-ranked input positions of target ``i`` (:meth:`Attribution.top_k`; fewer when fewer
    are visible): rank, position, token, raw score and shown (normalised) value. Positions whose score is a
    flagged NaN (:meth:`Attribution.nonfinite_cells`) have no rank; a red caption names them."""
    dm = dm or display_matrix(attr)
    labels = labels if labels is not None else input_labels(attr, decode)
    ranked = attr.top_k(i, k)
    title = Text(f"top {len(ranked)} inputs for target {i} ")
    title.append(repr(target_label(attr, i, decode)))
    table = Table(title=title, title_justify="left", show_header=True, header_style="bold", expand=False,
                  pad_edge=False)
    # on a narrow terminal the numbers fold, never the rank, position or token (they shrank to nothing at 40 columns)
    table.add_column("rank", justify="right", no_wrap=True, min_width=4)
    table.add_column("#", justify="right", no_wrap=True, min_width=3)
    table.add_column("token", overflow="fold", min_width=8)
    table.add_column("score", justify="right", overflow="fold")
    table.add_column(f"shown ({dm.normalize})", justify="right", overflow="fold")
    for rank, j in enumerate(ranked, start=1):
        raw = float(attr.scores[i, j])
        shown = float(dm.shown[i, j])
        table.add_row(str(rank), str(j), Text(labels[j]), format_score(raw),
                      "non-finite" if dm.bad[i, j] else f"{shown:+.3f}")
    unranked = [int(j) for j in np.flatnonzero(dm.bad[i] & np.isnan(attr.scores[i]))]
    if unranked:  # a flagged NaN has no rank: say so rather than leave a visible position out unseen
        table.caption = Text(f"not ranked (non-finite score): {', '.join(f'#{j} {labels[j]}' for j in unranked)}",
                             style="bold red")
        table.caption_justify = "left"
    return table


def to_rich(
    attr: Attribution,
    normalize: Normalization | str = "row_max_abs",
    max_tokens: int | None = None,
    *,
    numbers: bool = False,
    top_k: int | None = None,
    decode: Decoder | None = None,
) -> RenderableType:
    """Build the renderable for ``attr``: header, legend, notation, warnings, and the table.

    Args:
        attr: the attribution to show.
        normalize: how scores are scaled for display (``none``, ``max_abs``, ``row_max_abs``, ``row_sum_abs``).
        max_tokens: when set and the input is longer, each target row shows only the ``max_tokens`` positions
            ending at the target's own position (the last ones for a classifier), with an ``…N earlier`` note.
        numbers: show each score as ``token=score`` instead of as a colour.
        top_k: add a table of the ``top_k`` highest-ranked inputs per target (default: 5 with ``numbers``,
            none without; 0 for none).
        decode: the tokenizer's decoding of a token string, for tokens without offsets (foils, labels).

    Raises:
        InputError: unknown ``normalize``, ``max_tokens < 1`` or ``top_k < 0``.
    """
    if max_tokens is not None and max_tokens < 1:
        raise InputError(f"max_tokens must be at least 1, got {max_tokens}")
    if top_k is not None and top_k < 0:
        raise InputError(f"top_k must be 0 or more, got {top_k}")
    if top_k is None:
        top_k = DEFAULT_TOP_K if numbers else 0
    dm = display_matrix(attr, normalize)
    labels = input_labels(attr, decode)
    parts: list[RenderableType] = []

    header = Text()
    header.append(encodable(attr.method or "attribution"), style="bold")
    if attr.model_id:
        header.append("  model ")
        header.append(encodable(attr.model_id), style="cyan")
    if attr.model_kind:
        header.append(encodable(f" ({attr.model_kind})"))
    header.append(f"  normalize={normalize}")
    precision = describe_precision(attr)
    if precision:
        header.append(f"  {precision}", style="bold yellow")
    options = describe_options(attr)
    if options:
        header.append(encodable(f"  options: {options}"), style="dim")
    parts.append(header)
    what = Text(describe_objective(attr, decode))
    aggregation = describe_aggregation(attr)
    if aggregation:
        what.append(encodable(f"  {aggregation}"))
    parts.append(what)
    parts.append(_numbers_legend() if numbers else _legend(dm.signed))
    parts.append(Text(NOTATION, style="dim"))
    for warning in view_warnings(attr, decode):
        parts.append(Text(encodable(f"⚠ WARNING: {warning}"), style=WARNING_STYLE))

    summary = bad_cells_summary(attr, decode=decode)
    if summary:
        n_bad = len(attr.nonfinite_cells())
        parts.append(Text(f"⚠ WARNING: {n_bad} non-finite score(s) at {summary}", style=WARNING_STYLE))

    n_t, n_l = attr.shape
    if n_t == 0 or n_l == 0:
        parts.append(Text(f"(empty attribution: {n_t} targets × {n_l} input tokens)", style="dim"))
        return Group(*parts)

    has_lp = attr.target_logprobs is not None
    table = Table(show_header=True, header_style="bold", expand=False, show_lines=n_t > 1, pad_edge=False)
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("target", no_wrap=True, max_width=24)
    if has_lp:
        table.add_column("log p", justify="right", no_wrap=True)
    table.add_column("input tokens" + (" = score" if numbers else ""), overflow="fold", ratio=1)

    for i in range(n_t):
        pos = attr.target_positions[i]
        window = _window(n_l, pos, max_tokens)
        cells = Text()
        if window.start > 0:
            cells.append(f"…{window.start} earlier ", style="dim italic")
        cells.append_text((_number_cells if numbers else _colour_cells)(attr, dm, labels, i, window))
        if window.stop < n_l:
            cells.append(f" …{n_l - window.stop} later", style="dim italic")
        status, failed = rationale_status(attr, i)
        if attr.rationale is not None and status:
            order = " → ".join(f"{j}:{labels[j]}" for j in attr.rationale.positions[i])
            cells.append("\nrationale ", style="bold")
            cells.append(f"({status})", style=WARNING_STYLE if failed else "bold")
            cells.append(": ", style="bold")
            cells.append(order or "(empty)")
        target = Text(target_label(attr, i, decode), style="bold")
        foil = foil_of(attr, i, decode)
        if foil:
            target.append(f"\n{foil}", style="italic")
        row: list[RenderableType] = [str(i), target]
        if has_lp:
            lp = attr.target_logprobs[i] if attr.target_logprobs and i < len(attr.target_logprobs) else math.nan
            row.append(f"{lp:.3f}")
        row.append(cells)
        table.add_row(*row)
    parts.append(table)
    if top_k:
        parts += [top_k_table(attr, i, top_k, dm, decode, labels) for i in range(n_t)]
    return Group(*parts)


def render_console(
    attr: Attribution,
    console: Console | None = None,
    normalize: Normalization | str = "row_max_abs",
    max_tokens: int | None = None,
    *,
    numbers: bool | None = None,
    top_k: int | None = None,
    decode: Decoder | None = None,
) -> None:
    """Print ``attr`` to ``console`` (a new stdout :class:`~rich.console.Console` if None).

    ``numbers=None`` (the default) shows the scores as numbers exactly when the console prints no colour
    (:func:`colour_is_off`), as a colour heatmap otherwise. See :func:`to_rich` for the layout and the other
    arguments.
    """
    console = console or Console()
    if numbers is None:
        numbers = colour_is_off(console)
    elif not numbers and colour_is_off(console):
        console.print(Text("note: this console shows too few colours and numbers are off (--no-numbers): the scores "
                           "are not shown; drop --no-numbers to print them", style="yellow"), soft_wrap=True)
    console.print(to_rich(attr, normalize=normalize, max_tokens=max_tokens, numbers=numbers, top_k=top_k,
                          decode=decode))
