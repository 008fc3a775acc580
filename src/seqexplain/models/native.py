"""Pieces shared by seqexplain's own models (RNN LM, transformer LM, encoder-decoder): JSON-able dataclass
configs and Hugging-Face-like output records."""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any, TypeVar

from seqexplain.errors import InputError

C = TypeVar("C", bound="ConfigMixin")


class ConfigMixin:
    """For dataclass configs: ``to_dict`` / ``from_dict`` (unknown keys ignored, so older files still load)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in data.items() if k in known})


def check_drop_probabilities(config: Any, *names: str) -> None:
    """Raise :class:`InputError` unless each named field is a drop probability in [0, 1)."""
    for name in names:
        value = float(getattr(config, name))
        if not 0.0 <= value < 1.0:
            raise InputError(f"{name} is a drop probability in [0, 1), got {value}")


class OutputMixin:
    """For dataclass outputs: attribute access, ``out["name"]``, and ``out[i]`` over the fields that are set, in
    the order of ``_order`` (as Hugging Face ``ModelOutput`` tuples, which ``transformers.Trainer`` indexes)."""

    _order: tuple[str, ...] = ()

    def _present(self) -> list[tuple[str, Any]]:
        return [(n, getattr(self, n)) for n in self._order if getattr(self, n) is not None]

    def __getitem__(self, key: int | str) -> Any:
        if isinstance(key, str):
            return getattr(self, key)
        return self._present()[key][1]

    def keys(self) -> list[str]:
        return [n for n, _ in self._present()]
