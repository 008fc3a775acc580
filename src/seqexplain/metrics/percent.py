"""How many of ``n`` positions make ``k`` percent of them, computed exactly.

``ceil(k/100 · n)`` or ``floor(k/100 · n)`` in floating point is off by one whenever the product rounds to just
above or below a whole number (``0.07 · 100 = 7.000000000000001``, ``0.7 · 90 = 62.99999999999999``). Here ``k`` is
read as the decimal it prints as (``7.0`` is 7/1, ``0.1`` is 1/10) and the product is a :class:`fractions.Fraction`.
"""

from __future__ import annotations

import math
from fractions import Fraction
from numbers import Real
from typing import Literal

from seqexplain.errors import InputError

__all__ = ["percent_count"]


def percent_count(k_percent: float, n: int, rounding: Literal["ceil", "floor"]) -> int:
    """``ceil`` or ``floor`` of ``k_percent/100 · n``, exact for the decimal ``k_percent``.

    Raises:
        InputError: ``k_percent`` is not a finite number or ``n`` is negative.
    """
    if isinstance(k_percent, bool) or not isinstance(k_percent, Real) or not math.isfinite(k_percent):
        raise InputError(f"a percentage must be a finite number, got {k_percent!r}")
    if n < 0:
        raise InputError(f"the number of positions must be non-negative, got {n}")
    exact = Fraction(str(float(k_percent))) * n / 100
    return math.ceil(exact) if rounding == "ceil" else math.floor(exact)
