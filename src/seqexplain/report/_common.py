"""Helpers shared by the report renderers: readable token text, display matrices and the colour scale.

Token text contract (all renderers): an input token is shown as the text it covers (:func:`covered_text`:
its offsets into ``text`` / ``target_text``; the token string of a special token; the tokenizer's decoding,
or a byte-level / marker reading, when there are no offsets), made one-line and unambiguous by
:func:`visible_text` (``␣Paris`` for ``" Paris"``). Targets use the text at their own position
(:func:`target_label`), foils and labels :func:`display_token`. Raw byte-level strings (``Ã©``, ``ĠParis``)
are never printed.

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
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from seqexplain.attribution import Attribution, Normalization
from seqexplain.errors import InputError

NORMALIZATIONS: tuple[str, ...] = ("none", "max_abs", "row_max_abs", "row_sum_abs")

#: end colours of the scale (RGB); zero is white.
POSITIVE_RGB = (33, 102, 172)
NEGATIVE_RGB = (178, 24, 43)

# ------------------------------------------------------------------------------------ readable token text
#: A tokenizer's decoding of one token string into the text it stands for (see
#: :func:`seqexplain.models.tokenization.token_decoder`).
Decoder = Callable[[str], str]

# GPT-2 byte-level markers (space, newline, tab, carriage return) and the SentencePiece space marker: the
# last-resort reading of a token that has no offsets, no tokenizer and is not a whole byte-level sequence.
_MARKERS = {"\u0120": " ", "\u010a": "\n", "\u0109": "\t", "\u010d": "\r", "\u2581": " "}
#: visible stand-ins for whitespace: leading/trailing whitespace of a token, and line breaks and tabs anywhere.
VISIBLE_WHITESPACE = {" ": "\u2423", "\n": "\u23ce", "\t": "\u21e5", "\r": "\u240d", "\u00a0": "\u237d"}
EMPTY_TOKEN = "\u2205"
_SYMBOLS = {v: k for k, v in VISIBLE_WHITESPACE.items()}
_ESCAPED_LITERALS = {*_SYMBOLS, EMPTY_TOKEN}  # literal symbol characters are escaped so the form is reversible
_KEEP_FORMAT = {"\u200d"}  # zero-width joiner: left alone inside an emoji sequence, escaped at a token's edge
_HIDDEN_CATEGORIES = ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn")

#: the sentence every view prints to explain the token notation.
NOTATION = ("tokens show the text they cover; \u2423 = space, \u23ce = newline, \u21e5 = tab at a token's edge "
            "(so '\u2423Paris' and 'Paris' are different tokens), \\uXXXX = an invisible character")


def _byte_alphabet() -> dict[str, int]:
    """The byte-level BPE alphabet (GPT-2's ``bytes_to_unicode``): character → the byte it encodes."""
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    chars = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars, strict=True)}


_BYTE_OF = _byte_alphabet()


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def visible_text(text: str) -> str:
    """The one-line, unambiguous form of a token's text that every view prints.

    Leading and trailing whitespace is made visible (``␣`` space, ``⏎`` newline, ``⇥`` tab, ``␍`` carriage
    return, ``⍽`` no-break space, ``\\uXXXX`` for other whitespace), so ``" Paris"`` shows as ``␣Paris``; inside
    a token, spaces stay spaces but line breaks and tabs are always visible. Control, format and unassigned
    characters become ``\\uXXXX`` (``\\UXXXXXXXX`` above U+FFFF), the zero-width joiner too unless it stands between
    two characters of the token (an emoji sequence); the empty text is ``∅``. Literal ``␣⏎⇥␍⍽∅``
    characters, and a backslash followed by ``u``/``U``, are escaped too, so :func:`plain_text` reverses the
    form exactly. The result never contains a line break and is *not* escaped for any markup language.
    """
    if text == "":
        return EMPTY_TOKEN
    lead = len(text) - len(text.lstrip())
    trail = len(text.rstrip())
    out: list[str] = []
    for k, ch in enumerate(text):
        edge = k < lead or k >= trail
        if ch in VISIBLE_WHITESPACE and (edge or ch != " "):
            out.append(VISIBLE_WHITESPACE[ch])
        elif _needs_escape(ch, edge, text[k + 1:k + 2]) or (ch in _KEEP_FORMAT and not 0 < k < len(text) - 1):
            out.append(_escape(ch))
        else:
            out.append(ch)
    return "".join(out)


def _needs_escape(ch: str, edge: bool, following: str) -> bool:
    if ch in _ESCAPED_LITERALS or (edge and ch.isspace()):
        return True
    if ch == "\\":  # a backslash that could be read as the start of an escape
        return following in ("u", "U")
    if ch.isspace():  # inside a token: line breaks and other non-space-separator whitespace
        return ch != " " and unicodedata.category(ch) != "Zs"
    return ch not in _KEEP_FORMAT and unicodedata.category(ch) in _HIDDEN_CATEGORIES


def plain_text(shown: str) -> str:
    """The text :func:`visible_text` was given: the exact inverse (visible whitespace and escapes reverted)."""
    if shown == EMPTY_TOKEN:
        return ""
    out: list[str] = []
    k = 0
    while k < len(shown):
        ch = shown[k]
        if ch == "\\" and shown[k + 1:k + 2] in ("u", "U"):
            width = 4 if shown[k + 1] == "u" else 8
            digits = shown[k + 2:k + 2 + width]
            if len(digits) == width and all(c in "0123456789abcdefABCDEF" for c in digits):
                out.append(chr(int(digits, 16)))
                k += 2 + width
                continue
        out.append(_SYMBOLS.get(ch, ch))
        k += 1
    return "".join(out)


def decode_token(token: str, decode: Decoder | None = None) -> str:
    """The text a token string stands for, when no offsets say which text it covers.

    With ``decode`` (a tokenizer's own decoding), its result. Without: a token made only of byte-level BPE
    characters (``Ã©``, ``ĠParis``) that spell valid UTF-8 is decoded from its bytes; otherwise the markers
    ``Ġ``/``▁`` (space), ``Ċ`` (newline), ``ĉ`` (tab) are read as whitespace and the rest is kept raw.
    """
    if decode is not None:
        try:
            return str(decode(token))
        except Exception:  # noqa: BLE001 - a display fallback: a failing decoder must not hide the token
            pass
    if token and all(ch in _BYTE_OF for ch in token):
        try:
            return bytes(_BYTE_OF[ch] for ch in token).decode("utf-8")
        except UnicodeDecodeError:
            pass
    return "".join(_MARKERS.get(ch, ch) for ch in token)


def display_token(token: str, decode: Decoder | None = None) -> str:
    """:func:`visible_text` of :func:`decode_token`: the readable form of a token string without offsets
    (foils, labels, tokens of a hand-built attribution)."""
    return visible_text(decode_token(token, decode))


def covered_text(attr: Attribution, j: int, decode: Decoder | None = None) -> str:
    """The text input token ``j`` stands for (not yet made visible).

    With offsets, the characters they cover in its segment's string (``text`` for ``"source"``,
    ``target_text`` for ``"target"``); a byte-level token holding part of a multi-byte character covers that
    whole character, like its neighbours. A special token (segment ``"special"``) is its token string. A token
    without usable offsets goes through :func:`decode_token`.
    """
    token = attr.tokens[j]
    segment = attr.segments[j] if j < len(attr.segments) else "source"
    if segment == "special":
        return token
    span = attr.offsets[j] if j < len(attr.offsets) else None
    source = {"source": attr.text, "target": attr.target_text}.get(segment)
    if span is not None and source is not None and 0 <= span[0] < span[1] <= len(source):
        return source[span[0]:span[1]]
    return decode_token(token, decode)


def input_labels(attr: Attribution, decode: Decoder | None = None) -> list[str]:
    """:func:`visible_text` of :func:`covered_text` for every input token: what every view prints."""
    return [visible_text(covered_text(attr, j, decode)) for j in range(len(attr.tokens))]


def target_label(attr: Attribution, i: int, decode: Decoder | None = None) -> str:
    """The printed form of target ``i``: the text at its own input position when that position holds the
    target token (causal LM, encoder-decoder), else its token string decoded (a label, an aggregated result)."""
    token = attr.target_tokens[i]
    pos = attr.target_positions[i] if i < len(attr.target_positions) else None
    if pos is not None and attr.aggregation is None and attr.tokens[pos] == token:
        return visible_text(covered_text(attr, pos, decode))
    return display_token(token, decode)


def encodable(text: str) -> str:
    """``text`` with every lone surrogate (UTF-16 half, which UTF-8 cannot encode: a file may hold one as
    ``"\\ud800"``) written as the six characters ``\\ud800``; any other text unchanged."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


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


def _luminance(rgb: tuple[int, int, int]) -> float:
    """WCAG 2 relative luminance of an sRGB colour."""
    lin = [c / 255 / 12.92 if c / 255 <= 0.04045 else ((c / 255 + 0.055) / 1.055) ** 2.4 for c in rgb]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def text_rgb(background: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black or white, whichever has the higher WCAG contrast ratio on ``background`` (at least 4.58:1 for any
    background; white on mid-blue gave 3.15:1 where black gives 6.6:1)."""
    lum = _luminance(background)
    return (0, 0, 0) if (lum + 0.05) / 0.05 >= 1.05 / (lum + 0.05) else (255, 255, 255)


def hex_rgb(rgb: tuple[int, int, int]) -> str:
    """``#rrggbb`` for an RGB triple."""
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def bad_cells_summary(attr: Attribution, limit: int = 10, decode: Decoder | None = None) -> str:
    """A one-line list of the non-finite cells, e.g. ``(target 0 'a', input 3 'b') = inf``; empty if none."""
    cells = attr.nonfinite_cells()
    if not cells:
        return ""
    parts = []
    for i, j in cells[:limit]:
        tgt = target_label(attr, i, decode)
        tok = visible_text(covered_text(attr, j, decode))
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


def _foil_text(foil: str, decode: Decoder | None = None) -> str:
    return repr(display_token(foil, decode))


def describe_objective(attr: Attribution, decode: Decoder | None = None) -> str:
    """What the scores explain, e.g. ``explains log p(target)`` or, for a contrast whose targets share one foil,
    ``explains log p(target) − log p(foil ' Paris')`` (per-target foils: see :func:`foil_of`)."""
    if attr.objective != "contrast":
        return f"explains {_OBJECTIVE_TEXT.get(attr.objective, attr.objective)}"
    foils = sorted(set(attr.foil_tokens or []))
    foil = f"foil {_foil_text(foils[0], decode)}" if len(foils) == 1 else "foil"
    return f"explains log p(target) − log p({foil})"


def foil_of(attr: Attribution, i: int, decode: Decoder | None = None) -> str:
    """``vs '␣Paris'`` for target ``i`` of a contrast, else the empty string."""
    if attr.objective != "contrast" or not attr.foil_tokens or i >= len(attr.foil_tokens):
        return ""
    return f"vs {_foil_text(attr.foil_tokens[i], decode)}"


def describe_aggregation(attr: Attribution) -> str:
    """``aggregated=sum over words`` (and ``, of …`` for an aggregation of an aggregation); empty if none."""
    parts = []
    record = attr.aggregation
    while record is not None:
        by = record.get("by", "?")
        parts.append(f"{record.get('how', '?')} over {'explicit groups' if by == 'groups' else by}")
        record = record.get("of")
    return ("aggregated=" + ", of ".join(parts)) if parts else ""


def describe_precision(attr: Attribution) -> str:
    """``precision=bfloat16 autocast`` / ``precision=float16 weights`` for a result computed in reduced precision
    (``meta`` of :func:`~seqexplain.explain.precision_meta`); empty for float32 and float64, or when not recorded."""
    text = reduced_precision(attr.meta or {})
    return f"precision={text}" if text else ""


def reduced_precision(meta: dict[str, str]) -> str:
    """``bfloat16 autocast, float16 weights`` from :func:`~seqexplain.explain.precision_meta`'s fields; empty for
    float32 and float64, or when not recorded."""
    parts = []
    if meta.get("autocast"):
        parts.append(f"{meta['autocast']} autocast")
    if meta.get("dtype") not in (None, "float32", "float64"):
        parts.append(f"{meta['dtype']} weights")
    return ", ".join(parts)


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


def view_warnings(attr: Attribution, decode: Decoder | None = None) -> list[str]:
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
                line += " (" + ", ".join(f"{i} {target_label(attr, i, decode)!r}" for i in missed[:10])
                line += " …)" if len(missed) > 10 else ")"
            if hit:
                line += f"; search bound hit for {len(hit)}"
            if missed:
                line += ": the model does not predict those targets from their rationale alone"
            out.append(line)
    return out
