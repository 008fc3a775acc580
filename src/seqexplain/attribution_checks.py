"""Value and document-field checks shared by the attribution modules.

* :func:`is_int` / :func:`is_bool`: Python or NumPy integers (never booleans) / booleans;
* :func:`require_field`: one key of a JSON document, present and of the expected type, else an
  :class:`~seqexplain.errors.InputError` naming the key.

Imports only :mod:`seqexplain.errors` from the package.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from seqexplain.errors import InputError


def is_int(value: Any) -> bool:
    """True for a Python or NumPy integer that is not a boolean."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def is_bool(value: Any) -> bool:
    """True for a Python or NumPy boolean."""
    return isinstance(value, (bool, np.bool_))


def require_field(d: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str = "document") -> Any:
    """``d[key]``; :class:`InputError` when ``key`` is missing or its value is not a ``kind``."""
    if key not in d:
        raise InputError(f"{where} has no '{key}'")
    value = d[key]
    if not isinstance(value, kind):
        name = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise InputError(f"{where} '{key}' must be a {name}, got {type(value).__name__}")
    return value
