"""Helpers shared by the report renderers: readable token text, display matrices and the colour scale.

Everything here is pure (numpy + stdlib) so console, HTML, markdown and plots colour and label cells the same way.

Colour contract (all renderers):

* the *shown* value of a cell is ``attr.normalized(normalize)`` computed with non-finite cells left out;
* its *intensity* is the shown value divided by the largest ``|shown|`` of the whole matrix, clipped to
  ``[-1, 1]`` (so the full colour range is always used, whatever the normalisation);
* the scale is *signed* (diverging: red for negative, blue for positive) when any finite score is negative,
  else *sequential* (white to blue);
* NaN cells that :meth:`Attribution.nonfinite_cells` does not report are "not visible" (no colour);
  cells it reports (``±inf``, or NaN at a visible position) are flagged, never coloured.
"""

from __future__ import annotations

import dataclasses
import math
import unicodedata
from dataclasses import dataclass

import numpy as np

from seqexplain.attribution import Attribution, Normalization
from seqexplain.errors import InputError

NORMALIZATIONS: tuple[str, ...] = ("none", "max_abs", "row_max_abs", "row_sum_abs")

#: end colours of the scale (RGB); zero is white.
POSITIVE_RGB = (33, 102, 172)
NEGATIVE_RGB = (178, 24, 43)

# GPT-2 byte-level markers (space, newline, tab, carriage return) and the SentencePiece space marker.
_MARKERS = {"\u0120": " ", "\u010a": "\n", "\u0109": "\t", "\u010d": "\r", "\u2581": " "}
_VISIBLE_WS = {" ": "\u2423", "\n": "\u23ce", "\t": "\u21e5", "\r": "\u240d", "\u00a0": "\u237d"}
_KEEP_FORMAT = {"\u200d"}  # zero-width joiner: part of emoji sequences, leave it alone


def display_token(token: str, keep_spaces: bool = False) -> str:
    """A readable, single-line form of a token.

    Tokenizer markers (``Ġ``, ``Ċ``, ``ĉ``, ``▁``) become the whitespace they stand for; newlines, tabs and
    carriage returns always become visible symbols (``⏎``, ``⇥``, ``␍``); a token made only of whitespace shows
    every character visibly (``␣`` for a space); other control and invisible format characters are shown as
    ``\\uXXXX`` escapes; the empty token is ``∅``. With ``keep_spaces`` ordinary leading/trailing spaces are
    kept (for flowing text); without it they are stripped (for space-separated layouts).
    The result never contains a newline. It is *not* escaped for any markup language.
    """
    if token == "":
        return "\u2205"
    text = "".join(_MARKERS.get(ch, ch) for ch in token)
    if text.strip() == "":
        return "".join(_VISIBLE_WS.get(ch, f"\\u{ord(ch):04x}") for ch in text)
    if not keep_spaces:
        text = text.strip(" ")
    out = []
    for ch in text:
        if ch in ("\n", "\t", "\r"):
            out.append(_VISIBLE_WS[ch])
        elif ch not in _KEEP_FORMAT and unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"):
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out)


def format_score(value: float) -> str:
    """The exact value of a score as text (shortest round-trip repr; ``nan``/``inf``/``-inf`` spelled out)."""
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return repr(float(value))


@dataclass
class DisplayMatrix:
    """Everything a renderer needs to draw the cells of one attribution.

    Attributes:
        shown: ``[T, L]`` normalised scores (NaN for not-visible and for flagged cells).
        intensity: ``[T, L]`` in ``[-1, 1]`` (``[0, 1]`` when not signed); NaN where ``shown`` is NaN.
        not_visible: ``[T, L]`` bool, NaN cells that are legitimately hidden from the target.
        bad: ``[T, L]`` bool, cells reported by :meth:`Attribution.nonfinite_cells`.
        signed: whether the colour scale is diverging.
        normalize: the normalisation used.
    """

    shown: np.ndarray
    intensity: np.ndarray
    not_visible: np.ndarray
    bad: np.ndarray
    signed: bool
    normalize: str


def check_normalize(normalize: str) -> None:
    """Raise :class:`InputError` unless ``normalize`` is one of :data:`NORMALIZATIONS`."""
    if normalize not in NORMALIZATIONS:
        raise InputError(f"unknown normalization {normalize!r}; use one of {', '.join(NORMALIZATIONS)}")


def display_matrix(attr: Attribution, normalize: Normalization | str = "row_max_abs") -> DisplayMatrix:
    """Compute shown values, colour intensities and cell kinds (see the module docstring for the contract)."""
    check_normalize(normalize)
    bad = np.zeros(attr.scores.shape, dtype=bool)
    for i, j in attr.nonfinite_cells():
        bad[i, j] = True
    clean = attr.scores.copy()
    clean[bad | ~np.isfinite(clean)] = np.nan
    not_visible = np.isnan(attr.scores) & ~bad
    shown = dataclasses.replace(attr, scores=clean).normalized(normalize)  # type: ignore[arg-type]
    finite = np.isfinite(shown)
    signed = bool(finite.any() and (shown[finite] < 0).any())
    top = float(np.abs(shown[finite]).max()) if finite.any() else 0.0
    intensity = np.clip(shown / top, -1.0, 1.0) if top > 0 else np.where(finite, 0.0, np.nan)
    return DisplayMatrix(
        shown=shown, intensity=intensity, not_visible=not_visible, bad=bad, signed=signed, normalize=normalize
    )


def cell_rgb(intensity: float) -> tuple[int, int, int]:
    """Background colour of a cell: white blended towards blue (positive) or red (negative) by ``|intensity|``."""
    v = max(-1.0, min(1.0, float(intensity)))
    hue = POSITIVE_RGB if v >= 0 else NEGATIVE_RGB
    a = abs(v)
    return (
        int(255 + (hue[0] - 255) * a + 0.5),
        int(255 + (hue[1] - 255) * a + 0.5),
        int(255 + (hue[2] - 255) * a + 0.5),
    )


def text_rgb(background: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black or white, whichever reads better on ``background``."""
    r, g, b = background
    luminance = (0.299 * r + 0.587 * g + 0.114 * b) / 255.0
    return (0, 0, 0) if luminance > 0.55 else (255, 255, 255)


def hex_rgb(rgb: tuple[int, int, int]) -> str:
    """``#rrggbb`` for an RGB triple."""
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def bad_cells_summary(attr: Attribution, limit: int = 10) -> str:
    """A one-line list of the non-finite cells, e.g. ``(target 0 'a', input 3 'b') = inf``; empty if none."""
    cells = attr.nonfinite_cells()
    if not cells:
        return ""
    parts = []
    for i, j in cells[:limit]:
        tgt = display_token(attr.target_tokens[i])
        tok = display_token(attr.tokens[j])
        parts.append(f"(target {i} {tgt!r}, input {j} {tok!r}) = {format_score(float(attr.scores[i, j]))}")
    more = f" and {len(cells) - limit} more" if len(cells) > limit else ""
    return ", ".join(parts) + more


def describe_options(attr: Attribution) -> str:
    """``key=value`` pairs of the method options, sorted by key (values via ``repr`` for non-strings)."""
    return ", ".join(f"{k}={v if isinstance(v, str) else repr(v)}" for k, v in sorted(attr.options.items()))


# ------------------------------------------------------------------------------- what the result says
_OBJECTIVE_TEXT = {
    "logprob": "log p(target)",
    "prob": "p(target)",
    "logit": "the logit of the target",
}


def _foil_text(foil: str) -> str:
    return repr(display_token(foil, keep_spaces=True))


def describe_objective(attr: Attribution) -> str:
    """What the scores explain, e.g. ``explains log p(target)`` or, for a contrast whose targets share one foil,
    ``explains log p(target) − log p(foil ' Paris')`` (per-target foils: see :func:`foil_of`)."""
    if attr.objective != "contrast":
        return f"explains {_OBJECTIVE_TEXT.get(attr.objective, attr.objective)}"
    foils = sorted(set(attr.foil_tokens or []))
    foil = f"foil {_foil_text(foils[0])}" if len(foils) == 1 else "foil"
    return f"explains log p(target) − log p({foil})"


def foil_of(attr: Attribution, i: int) -> str:
    """``vs ' Paris'`` for target ``i`` of a contrast, else the empty string."""
    if attr.objective != "contrast" or not attr.foil_tokens or i >= len(attr.foil_tokens):
        return ""
    return f"vs {_foil_text(attr.foil_tokens[i])}"


def describe_aggregation(attr: Attribution) -> str:
    """``aggregated=sum over words`` (and ``, of …`` for an aggregation of an aggregation); empty if none."""
    parts = []
    record = attr.aggregation
    while record is not None:
        by = record.get("by", "?")
        parts.append(f"{record.get('how', '?')} over {'explicit groups' if by == 'groups' else by}")
        record = record.get("of")
    return ("aggregated=" + ", of ".join(parts)) if parts else ""


def rationale_status(attr: Attribution, i: int) -> tuple[str, bool]:
    """The state of target ``i``'s rationale search as text (``reached``, ``not reached`` or
    ``not reached · bound hit``) and whether it is a problem (anything but reached); ``("", False)`` when
    there is no rationale."""
    r = attr.rationale
    if r is None or i >= len(r.positions):
        return "", False
    words = ["reached"] if r.reached[i] else ["not reached"]
    if r.bound_hit[i]:
        words.append("bound hit")
    return " · ".join(words), not r.reached[i] or r.bound_hit[i]


def view_warnings(attr: Attribution) -> list[str]:
    """The warnings every view shows: :attr:`Attribution.warnings`, then one line when a rationale search did
    not reach its target or hit a bound (non-finite cells have their own block)."""
    out = list(attr.warnings)
    r = attr.rationale
    if r is not None:
        missed = [i for i, ok in enumerate(r.reached) if not ok]
        hit = [i for i, b in enumerate(r.bound_hit) if b]
        if missed or hit:
            n = len(r.reached)
            line = f"rationale not reached for {len(missed)} of {n} target(s)"
            if missed:
                line += " (" + ", ".join(f"{i} {display_token(attr.target_tokens[i])!r}" for i in missed[:10])
                line += " …)" if len(missed) > 10 else ")"
            if hit:
                line += f"; search bound hit for {len(hit)}"
            if missed:
                line += ": the model does not predict those targets from their rationale alone"
            out.append(line)
    return out
