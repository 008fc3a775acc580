"""Hand-built attributions and a recording console shared by the report tests (``tests/test_report_views.py``,
``tests/test_report_warnings.py``)."""

from __future__ import annotations

import numpy as np
from rich.console import Console

from seqexplain.attribution import Attribution
from seqexplain.report import render_console


def classifier_attr() -> Attribution:
    """A classifier's attribution: one label, finite scores, no warning, no rationale."""
    return Attribution(
        tokens=["[CLS]", "great", "movie", "[SEP]"],
        scores=np.array([[0.0, 0.8, 0.2, 0.0]]),
        target_tokens=["POSITIVE"],
        target_positions=[None],
        method="occlusion",
        model_id="clf",
        model_kind="classifier",
    )


def console_text(attr: Attribution, width: int = 160, **kwargs: object) -> str:
    """What :func:`render_console` prints for ``attr`` on a truecolor terminal of ``width`` columns, as text."""
    console = Console(record=True, width=width, force_terminal=True, color_system="truecolor")
    render_console(attr, console=console, **kwargs)  # type: ignore[arg-type]
    return console.export_text()
