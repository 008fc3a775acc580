"""The method registry: one line per method, looked up by name.

A method is ``fn(model: SequenceModel, example: Example, *, <options>) -> MethodResult``; its keyword-only
parameters are its options (with their defaults), checked before the call. Its docstring lists every option as
``name``: <what :meth:`OptionSpec.describe` prints: types, range, default> (or says "No options.").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from seqexplain.errors import InputError, UnknownMethodError
from seqexplain.methods.options import OptionSpec, option_specs


@dataclass
class MethodResult:
    """What a method returns: ``scores[T, L]`` plus optional rationale information and metadata.

    ``target_logprobs``: ``log p(target_i | full context)`` when the method computed it anyway (saves
    :func:`seqexplain.explain` a forward). ``warnings``: what makes the result not what it seems (they go into the
    Attribution's warnings)."""

    scores: np.ndarray
    target_logprobs: list[float] | None = None
    rationales: list[list[int]] | None = None
    rationale_log: list[list[dict[str, Any]]] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Method:
    name: str
    fn: Callable[..., MethodResult]
    family: str
    description: str
    many: Callable[..., list[MethodResult]] | None = None
    ranges: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    check: Callable[[dict[str, Any]], None] | None = None
    #: why the method's result does not depend on the example's objective (None: it does); the result warns so
    ignores_objective: str | None = None
    #: whether the method drops input positions (keep-masks) under the given options (all of them filled in); a
    #: result that did carries the example's ``keep_warnings`` (what deleting a token means for this model)
    drops_tokens: bool | Callable[[dict[str, Any]], bool] = True

    def drops(self, options: dict[str, Any]) -> bool:
        """Whether the method drops input positions through the model's keep-mask under ``options``."""
        if callable(self.drops_tokens):
            return bool(self.drops_tokens({**self.defaults(), **options}))
        return self.drops_tokens

    @cached_property
    def _option_specs(self) -> dict[str, OptionSpec]:
        # read from the function's signature once: every explained item asks for them (checks and defaults)
        return option_specs(self.fn, self.ranges)

    def options(self) -> dict[str, OptionSpec]:
        """The method's options (:mod:`seqexplain.methods.options`): types, ranges, defaults."""
        return dict(self._option_specs)

    def defaults(self) -> dict[str, Any]:
        """Options and their default values (the function's keyword-only parameters)."""
        return {name: spec.default for name, spec in self.options().items()}

    def check_options(self, options: dict[str, Any]) -> None:
        """Raise :class:`InputError` for an unknown option or a value of the wrong type or out of range."""
        specs = self.options()
        unknown = sorted(set(options) - set(specs))
        if unknown:
            raise InputError(
                f"{self.name} has no option {', '.join(map(repr, unknown))}; its options are: "
                + ("; ".join(f"{k}: {s.describe()}" for k, s in specs.items()) or "none")
            )
        for key, value in options.items():
            specs[key].check(value, self.name)
        if self.check is not None:
            self.check({**self.defaults(), **options})


_REGISTRY: dict[str, Method] = {}


def register(name: str, family: str, description: str, many: Callable[..., list[MethodResult]] | None = None,
             ranges: dict[str, tuple[float | None, float | None]] | None = None,
             check: Callable[[dict[str, Any]], None] | None = None, ignores_objective: str | None = None,
             drops_tokens: bool | Callable[[dict[str, Any]], bool] = True,
             ) -> Callable[[Callable[..., MethodResult]], Callable[..., MethodResult]]:
    """Decorator adding a method under ``name`` (``family``: attention / gradient / perturbation / rationale).
    ``many(model, examples, **options) -> list[MethodResult]``, where given, explains several examples in shared
    forwards (``explain_many``) with the same results as one call per example. ``ranges`` adds or overrides option
    ranges (:data:`seqexplain.methods.options.RANGES`); types come from the function's annotations. ``check(options)``,
    where given, checks what one option's type and range cannot (combinations, names of other methods): it gets
    every option (defaults filled in) and raises a :mod:`seqexplain.errors` error; it runs before any model work.
    ``ignores_objective``, where given, says why the result is the same for every objective (attention weights, a
    search that stops on the argmax alone): a result explaining another objective than ``logprob`` warns with it.
    ``drops_tokens`` (a bool, or a function of the options) says whether the method drops input positions through
    the keep-mask; only then does its result carry the example's ``keep_warnings`` (True, the default, when unsure)."""

    def deco(fn: Callable[..., MethodResult]) -> Callable[..., MethodResult]:
        _REGISTRY[name] = Method(name, fn, family, description, many, dict(ranges or {}), check, ignores_objective,
                                 drops_tokens)
        return fn

    return deco


def get_method(name: str) -> Method:
    _ensure_loaded()
    if not isinstance(name, str):
        raise UnknownMethodError(f"a method is given by its name (a string), not a {type(name).__name__}; known "
                                 f"methods: {', '.join(sorted(_REGISTRY))}")
    if name not in _REGISTRY:
        raise UnknownMethodError(f"unknown method {name!r}; known methods: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def available_methods() -> list[Method]:
    _ensure_loaded()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def _ensure_loaded() -> None:
    # Importing the family modules runs their @register lines.
    from seqexplain.methods import attention, gradient, perturbation, rationale  # noqa: F401
