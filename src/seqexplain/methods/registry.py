"""The method registry: one line per method, looked up by name.

A method is ``fn(model: SequenceModel, example: Example, *, <options>) -> MethodResult``; its keyword-only
parameters are its options (with their defaults), checked before the call.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from seqexplain.errors import InputError, UnknownMethodError


@dataclass
class MethodResult:
    """What a method returns: ``scores[T, L]`` plus optional rationale information and metadata.

    ``target_logprobs``: ``log p(target_i | full context)`` when the method computed it anyway (saves
    :func:`seqexplain.explain` a forward)."""

    scores: np.ndarray
    target_logprobs: list[float] | None = None
    rationales: list[list[int]] | None = None
    rationale_log: list[list[dict[str, Any]]] | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Method:
    name: str
    fn: Callable[..., MethodResult]
    family: str
    description: str
    many: Callable[..., list[MethodResult]] | None = None

    def defaults(self) -> dict[str, Any]:
        """Options and their default values (the function's keyword-only parameters)."""
        params = inspect.signature(self.fn).parameters.values()
        return {p.name: p.default for p in params if p.kind == p.KEYWORD_ONLY}

    def check_options(self, options: dict[str, Any]) -> None:
        known = self.defaults()
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise InputError(
                f"{self.name} has no option {', '.join(map(repr, unknown))}; its options are: "
                + (", ".join(f"{k}={v!r}" for k, v in known.items()) or "none")
            )


_REGISTRY: dict[str, Method] = {}


def register(name: str, family: str, description: str, many: Callable[..., list[MethodResult]] | None = None
             ) -> Callable[[Callable[..., MethodResult]], Callable[..., MethodResult]]:
    """Decorator adding a method under ``name`` (``family``: attention / gradient / perturbation / rationale).
    ``many(model, examples, **options) -> list[MethodResult]``, where given, explains several examples in shared
    forwards (``explain_many``) with the same results as one call per example."""

    def deco(fn: Callable[..., MethodResult]) -> Callable[..., MethodResult]:
        _REGISTRY[name] = Method(name, fn, family, description, many)
        return fn

    return deco


def get_method(name: str) -> Method:
    _ensure_loaded()
    if name not in _REGISTRY:
        raise UnknownMethodError(f"unknown method {name!r}; known methods: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def available_methods() -> list[Method]:
    _ensure_loaded()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def _ensure_loaded() -> None:
    # Importing the family modules runs their @register lines.
    from seqexplain.methods import attention, gradient, perturbation, rationale  # noqa: F401
