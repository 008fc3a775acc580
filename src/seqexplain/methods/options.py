"""Method options: one declaration per method — its keyword-only parameters, their type annotations and defaults,
plus ranges — checked before any model work, and shown by ``seqexplain methods``.

Types understood: ``int`` (not bool), ``float`` (ints accepted), ``bool``, ``str``, ``None``, ``Literal[...]``,
``dict`` and unions of these. Ranges: :data:`RANGES` by option name, overridable per method at registration.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from seqexplain.errors import InputError

RANGES: dict[str, tuple[float | None, float | None]] = {
    "token_budget": (1, None),
    "steps": (1, 100_000),
    "max_size": (1, None),
    "max_subsets": (1, None),
}
"""Ranges ``(minimum, maximum)`` (inclusive; None: unbounded) of options every method that has them shares."""


@dataclass(frozen=True)
class OptionSpec:
    """One option: its allowed types (``int``, ``float``, ``bool``, ``str``, ``dict``, ``None``), allowed literal
    values (when the annotation is a ``Literal``), range and default."""

    name: str
    default: Any
    types: tuple[type, ...]
    literals: tuple[Any, ...] = ()
    minimum: float | None = None
    maximum: float | None = None

    def describe(self) -> str:
        """E.g. ``int ≥ 1 or None (default None)``."""
        parts = []
        for t in self.types:
            if t is type(None):
                continue
            text = t.__name__
            if t in (int, float) and (self.minimum is not None or self.maximum is not None):
                lo = "" if self.minimum is None else f" ≥ {_num(self.minimum)}"
                hi = "" if self.maximum is None else f" ≤ {_num(self.maximum)}"
                text += lo + ("," if lo and hi else "") + hi
            parts.append(text)
        if self.literals:
            parts.insert(0, " | ".join(repr(v) for v in self.literals))
        if type(None) in self.types:
            parts.append("None")
        return " or ".join(parts) + f" (default {self.default!r})"

    def check(self, value: Any, method: str) -> Any:
        """``value`` if it fits, else :class:`InputError` saying what the option takes."""
        if value is None and type(None) in self.types:
            return value
        if self.literals and value in self.literals and not isinstance(value, bool):
            return value
        ok = False
        for t in self.types:
            if t is bool:
                ok = ok or isinstance(value, bool)
            elif t is int:
                ok = ok or (isinstance(value, int) and not isinstance(value, bool))
            elif t is float:
                ok = ok or (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value))
            elif t is not type(None):
                ok = ok or isinstance(value, t)
        if not ok:
            raise InputError(f"{method} option {self.name} takes {self.describe()}, got {value!r}")
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if number and ((self.minimum is not None and value < self.minimum)
                       or (self.maximum is not None and value > self.maximum)):
            raise InputError(f"{method} option {self.name} takes {self.describe()}, got {value!r}")
        return value


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def option_specs(fn: Callable[..., Any], ranges: Mapping[str, tuple[float | None, float | None]] | None = None
                 ) -> dict[str, OptionSpec]:
    """The options of a method function: its keyword-only parameters with their annotations and defaults."""
    import inspect

    spec = inspect.getfullargspec(fn)
    hints = typing.get_type_hints(fn)
    defaults = spec.kwonlydefaults or {}
    out: dict[str, OptionSpec] = {}
    for name in spec.kwonlyargs:
        types, literals = _types_of(hints.get(name, Any))
        lo, hi = {**RANGES, **(ranges or {})}.get(name, (None, None))
        out[name] = OptionSpec(name, defaults.get(name), types, literals, lo, hi)
    return out


def _types_of(annotation: Any) -> tuple[tuple[type, ...], tuple[Any, ...]]:
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return (object,), ()
    if origin is typing.Literal:
        return (), tuple(typing.get_args(annotation))
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        types: list[type] = []
        literals: list[Any] = []
        for arg in typing.get_args(annotation):
            t, lits = _types_of(arg)
            types.extend(x for x in t if x not in types)
            literals.extend(lits)
        return tuple(types), tuple(literals)
    if origin in (dict, Mapping) or annotation in (dict, Mapping):
        return (dict,), ()
    if annotation is None or annotation is type(None):
        return (type(None),), ()
    if isinstance(annotation, type):
        return (annotation,), ()
    return (object,), ()
