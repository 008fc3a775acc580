"""Terminal rendering of an :class:`~seqexplain.attribution.Attribution` with rich.

Above the table: a header (method, model, options), a line saying what is explained (the objective, e.g.
``explains log p(target) − log p(foil ' Paris')``) and the aggregation, the colour legend, then a ``⚠ WARNING``
line for every warning of :func:`~seqexplain.report._common.view_warnings` (the result's ``warnings``, and a
rationale search that did not reach its target or hit a bound) and for non-finite cells.

One row per target: the target token (and ``vs 'foil'`` for a contrast), its log-probability (when known), then
the input tokens coloured by score, wrapping to the console width; for a rationale method, a line
``rationale (reached): 3:tok → 5:tok`` whose status reads ``not reached`` or ``not reached · bound hit`` in
the warning style when the search failed. Cell kinds (see :mod:`seqexplain.report._common` for the colour
contract):

* scored cell: background from the colour scale (red negative / blue positive, or white to blue when no
  score is negative);
* not visible (NaN): dim grey text, no background;
* non-finite (``attr.nonfinite_cells()``): ``token!`` in bold white on magenta, and a warning line above the
  table names every such cell;
* the target's own position: ``[token]`` in bold underlined yellow.

Token text is shown through :func:`~seqexplain.report._common.display_token` and appended as plain
:class:`rich.text.Text`, so markup-like tokens (``[bold]``) are printed literally.
"""

from __future__ import annotations

import math

from rich.console import Console, Group, RenderableType
from rich.style import Style
from rich.table import Table
from rich.text import Text

from seqexplain.attribution import Attribution, Normalization
from seqexplain.errors import InputError
from seqexplain.report._common import (
    bad_cells_summary,
    cell_rgb,
    describe_aggregation,
    describe_objective,
    describe_options,
    display_matrix,
    display_token,
    foil_of,
    rationale_status,
    text_rgb,
    view_warnings,
)

NOT_VISIBLE_STYLE = Style(color="grey50", dim=True)
BAD_STYLE = Style(color="white", bgcolor="magenta", bold=True)
TARGET_STYLE = Style(color="yellow", bold=True, underline=True)
WARNING_STYLE = Style(color="magenta", bold=True)


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


def _window(n_inputs: int, position: int | None, max_tokens: int | None) -> range:
    """Input positions shown for one target: all, or ``max_tokens`` ending at the target's position."""
    if max_tokens is None or n_inputs <= max_tokens:
        return range(n_inputs)
    end = n_inputs if position is None else min(n_inputs, position + 1)
    start = max(0, end - max_tokens)
    return range(start, end)


def to_rich(
    attr: Attribution,
    normalize: Normalization | str = "row_max_abs",
    max_tokens: int | None = None,
) -> RenderableType:
    """Build the renderable for ``attr``: header, legend, optional non-finite warning, and the heatmap table.

    Args:
        attr: the attribution to show.
        normalize: how scores are scaled for display (``none``, ``max_abs``, ``row_max_abs``, ``row_sum_abs``).
        max_tokens: when set and the input is longer, each target row shows only the ``max_tokens`` positions
            ending at the target's own position (the last ones for a classifier), with an ``…N earlier`` note.

    Raises:
        InputError: unknown ``normalize`` or ``max_tokens < 1``.
    """
    if max_tokens is not None and max_tokens < 1:
        raise InputError(f"max_tokens must be at least 1, got {max_tokens}")
    dm = display_matrix(attr, normalize)
    parts: list[RenderableType] = []

    header = Text()
    header.append(attr.method or "attribution", style="bold")
    if attr.model_id:
        header.append("  model ")
        header.append(attr.model_id, style="cyan")
    if attr.model_kind:
        header.append(f" ({attr.model_kind})")
    header.append(f"  normalize={normalize}")
    options = describe_options(attr)
    if options:
        header.append(f"  options: {options}", style="dim")
    parts.append(header)
    what = Text(describe_objective(attr))
    aggregation = describe_aggregation(attr)
    if aggregation:
        what.append(f"  {aggregation}")
    parts.append(what)
    parts.append(_legend(dm.signed))
    for warning in view_warnings(attr):
        parts.append(Text(f"⚠ WARNING: {warning}", style=WARNING_STYLE))

    summary = bad_cells_summary(attr)
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
    table.add_column("input tokens", overflow="fold", ratio=1)

    for i in range(n_t):
        pos = attr.target_positions[i]
        cells = Text()
        window = _window(n_l, pos, max_tokens)
        if window.start > 0:
            cells.append(f"…{window.start} earlier ", style="dim italic")
        for j in window:
            if j > window.start:
                cells.append(" ")
            tok = display_token(attr.tokens[j])
            if pos is not None and j == pos:
                cells.append(f"[{tok}]", style=TARGET_STYLE)
            elif dm.bad[i, j]:
                cells.append(f"{tok}!", style=BAD_STYLE)
            elif dm.not_visible[i, j]:
                cells.append(tok, style=NOT_VISIBLE_STYLE)
            else:
                cells.append(tok, style=_cell_style(float(dm.intensity[i, j])))
        if window.stop < n_l:
            cells.append(f" …{n_l - window.stop} later", style="dim italic")
        status, failed = rationale_status(attr, i)
        if attr.rationale is not None and status:
            order = " → ".join(f"{j}:{display_token(attr.tokens[j])}" for j in attr.rationale.positions[i])
            cells.append("\nrationale ", style="bold")
            cells.append(f"({status})", style=WARNING_STYLE if failed else "bold")
            cells.append(": ", style="bold")
            cells.append(order or "(empty)")
        target = Text(display_token(attr.target_tokens[i]), style="bold")
        foil = foil_of(attr, i)
        if foil:
            target.append(f"\n{foil}", style="italic")
        row: list[RenderableType] = [str(i), target]
        if has_lp:
            lp = attr.target_logprobs[i] if attr.target_logprobs and i < len(attr.target_logprobs) else math.nan
            row.append(f"{lp:.3f}")
        row.append(cells)
        table.add_row(*row)
    parts.append(table)
    return Group(*parts)


def render_console(
    attr: Attribution,
    console: Console | None = None,
    normalize: Normalization | str = "row_max_abs",
    max_tokens: int | None = None,
) -> None:
    """Print ``attr`` as a coloured heatmap to ``console`` (a new stdout :class:`~rich.console.Console` if None).

    See :func:`to_rich` for the layout and arguments.
    """
    (console or Console()).print(to_rich(attr, normalize=normalize, max_tokens=max_tokens))
