"""The rationale part of an attribution: what a rationale method found, per target.

:class:`Rationale` holds, per target, the input positions in the order they were added, whether the model shown
only them predicts the target (``reached``), whether the search stopped at a bound (``bound_hit``), a per-step
log and method counters. :class:`~seqexplain.attribution.Attribution` carries it in its ``rationale`` field and
remaps it when aggregating (:meth:`Rationale.remapped`). ``Rationale`` is public; it is also importable as
``seqexplain.attribution.Rationale``.

Imports only :mod:`seqexplain.errors` and :mod:`seqexplain.attribution_checks` from the package.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from seqexplain.attribution_checks import is_bool, is_int, require_field
from seqexplain.errors import InputError


@dataclass
class Rationale:
    """What a rationale method found, per target (all lists have one entry per target).

    Attributes:
        positions: input positions in the order they were added (the start set first). Empty when the search
            gave up (e.g. an exhaustive search that hit its size bound).
        reached: whether the model, shown only the rationale, predicts the target (the stopping rule was met).
        bound_hit: whether the search stopped at a bound (size, number of subsets) before it could decide.
        log: per-step records of the method (``size``, ``added`` — the positions added in the step —,
            ``added_tokens``, probabilities, ...); empty lists when the method keeps no log.
        meta: method-specific counters (forwards, rows, seconds, ...), JSON-serialisable.

    Raises:
        InputError: lists of different lengths, a non-integer or repeated position, a non-boolean flag.
    """

    positions: list[list[int]]
    reached: list[bool]
    bound_hit: list[bool] = field(default_factory=list)
    log: list[list[dict[str, Any]]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.positions)
        out: list[list[int]] = []
        for i, r in enumerate(self.positions):
            if not all(is_int(j) for j in r):
                raise InputError(f"rationale of target {i} holds a non-integer position; use input positions")
            if len(set(r)) != len(r):
                raise InputError(f"rationale of target {i} lists a position twice; list each position once")
            out.append([int(j) for j in r])
        self.positions = out
        if not self.bound_hit:
            self.bound_hit = [False] * n
        if not self.log:
            self.log = [[] for _ in range(n)]
        for name in ("reached", "bound_hit", "log"):
            value = getattr(self, name)
            if len(value) != n:
                raise InputError(f"rationale {name} has {len(value)} entries for {n} targets; give one per target")
        if not all(is_bool(x) for x in [*self.reached, *self.bound_hit]):
            raise InputError("rationale reached / bound_hit must be booleans (one per target)")
        self.reached = [bool(x) for x in self.reached]
        self.bound_hit = [bool(x) for x in self.bound_hit]

    @classmethod
    def from_method(cls, rationales: list[list[int]] | None, log: list[list[dict[str, Any]]] | None,
                    meta: dict[str, Any], n_targets: int) -> Rationale | None:
        """Build the part from a method's result fields (``MethodResult.rationales``, ``.rationale_log``,
        ``.meta``); ``None`` when the method gave no rationales.

        ``reached``: ``meta["reached"]`` (one flag per target) when present, else the ``reached`` of each
        target's last log record, else False. ``bound_hit``: ``meta["bound_hit"]`` lists target *indices*; a
        target whose last log record says ``bound_hit`` counts too. ``meta`` of the part: the other keys of
        ``meta``.

        Raises:
            InputError: ``rationales`` or ``log`` does not have ``n_targets`` entries, a log that is not lists of
                records (dicts), or as the constructor.
        """
        if rationales is None:
            return None
        if len(rationales) != n_targets:
            raise InputError(f"{len(rationales)} rationales for {n_targets} targets; give one per target")
        logs = _checked_log(log) if log is not None else [[] for _ in range(n_targets)]
        if len(logs) != n_targets:
            raise InputError(f"{len(logs)} rationale logs for {n_targets} targets; give one per target")
        if "reached" in meta:
            reached = [bool(x) for x in meta["reached"]]
        else:
            reached = [bool(steps[-1].get("reached", False)) if steps else False for steps in logs]
        hit = {int(i) for i in meta.get("bound_hit") or []}
        bound_hit = [i in hit or bool(steps and steps[-1].get("bound_hit", False)) for i, steps in enumerate(logs)]
        extra = {k: v for k, v in meta.items() if k not in ("reached", "bound_hit", "nonfinite_cells")}
        return cls(positions=[list(r) for r in rationales], reached=reached, bound_hit=bound_hit, log=logs,
                   meta=extra)

    def check_inputs(self, n_inputs: int) -> None:
        """Raise :class:`InputError` unless every position (rationales and log ``added``) is in ``0..n_inputs-1``."""
        for i, (r, steps) in enumerate(zip(self.positions, self.log, strict=True)):
            added = [j for step in steps for j in step.get("added", [])]
            if not all(is_int(j) for j in added):
                raise InputError(f"rationale log of target {i}: 'added' holds a non-integer; use input positions")
            bad = [j for j in [*r, *added] if not 0 <= j < n_inputs]
            if bad:
                raise InputError(f"rationale of target {i} holds position {bad[0]}, outside 0..{n_inputs - 1}")

    def remapped(self, new_of: dict[int, int], tokens: list[str]) -> Rationale:
        """The part with every position ``j`` replaced by ``new_of[j]`` (duplicates dropped, first occurrence
        kept), in ``positions`` and in each log record's ``added``; ``added_tokens`` is rebuilt from ``tokens``
        (the new input axis). Other log keys (``size``, probabilities) describe the original search and are
        kept as they are."""
        log = []
        for steps in self.log:
            new_steps = []
            for step in steps:
                step = copy.deepcopy(step)
                if "added" in step:
                    step["added"] = _dedupe(new_of[int(j)] for j in step["added"])
                    if "added_tokens" in step:
                        step["added_tokens"] = [tokens[g] for g in step["added"]]
                new_steps.append(step)
            log.append(new_steps)
        return Rationale(positions=[_dedupe(new_of[j] for j in r) for r in self.positions],
                         reached=list(self.reached), bound_hit=list(self.bound_hit), log=log,
                         meta=copy.deepcopy(self.meta))

    def to_dict(self) -> dict[str, Any]:
        return {"positions": self.positions, "reached": self.reached, "bound_hit": self.bound_hit,
                "log": self.log, "meta": self.meta}

    @classmethod
    def from_dict(cls, d: Any) -> Rationale:
        """Read :meth:`to_dict` output; :class:`InputError` when a field is missing or of the wrong type."""
        if not isinstance(d, dict):
            raise InputError("'rationale' must be an object")
        positions = require_field(d, "positions", list, "rationale")
        if not all(isinstance(r, list) for r in positions):
            raise InputError("rationale 'positions' must be a list of lists of positions")
        log = _checked_log(d.get("log") or [])
        for key in ("added", "added_tokens"):
            if any(key in x and not isinstance(x[key], list) for s in log for x in s):
                raise InputError(f"rationale log records must hold '{key}' as a list")
        meta = d.get("meta") or {}
        if not isinstance(meta, dict):
            raise InputError("rationale 'meta' must be an object")
        return cls(positions=positions, reached=require_field(d, "reached", list, "rationale"),
                   bound_hit=d.get("bound_hit") or [], log=log, meta=meta)


def _checked_log(log: Any) -> list[list[dict[str, Any]]]:
    """``log`` as a list (per target) of lists of records (dicts); :class:`InputError` for anything else."""
    if not isinstance(log, list) or not all(isinstance(s, list) and all(isinstance(x, dict) for x in s) for s in log):
        raise InputError("rationale log must be a list (per target) of lists of records")
    return [list(steps) for steps in log]


def _dedupe(values: Any) -> list[int]:
    out: list[int] = []
    for v in values:
        if v not in out:
            out.append(v)
    return out
