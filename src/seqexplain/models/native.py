"""Pieces shared by seqexplain's own models (RNN LM, transformer LM, encoder-decoder, Snell models): JSON-able
dataclass configs, Hugging-Face-like output records, and reading their folders (every corrupt or mismatched file a
:class:`~seqexplain.errors.ModelLoadError`)."""

from __future__ import annotations

import json
import operator
from collections.abc import Callable
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from seqexplain.errors import InputError, ModelLoadError

C = TypeVar("C", bound="ConfigMixin")
M = TypeVar("M")


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


def check_token_ids(config: Any, *names: str) -> None:
    """Raise :class:`InputError` unless each named field is a token id inside ``config.vocab_size`` (an id past it
    was an IndexError in the first forward)."""
    for name in names:
        value = getattr(config, name)
        try:
            index = operator.index(value)  # int, numpy integers, integer 0-d tensors
        except TypeError:
            index = None
        if isinstance(value, bool) or index is None:
            raise InputError(f"{name}={value!r} is not a token id (an integer)")
        if not 0 <= index < config.vocab_size:
            raise InputError(f"{name}={value!r} is outside the vocabulary (size {config.vocab_size})")


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


def read_config_json(path: Path) -> dict[str, Any]:
    """The JSON object in a model folder's ``config.json``, or :class:`ModelLoadError` (unreadable, not JSON, or
    not an object)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read {path} (not valid JSON?): {exc}") from exc
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path} holds a JSON {type(data).__name__}, not an object of settings; rewrite it "
                             "with the model's save function")
    return data


def build_from_config(build: Callable[[], M], path: Path) -> M:
    """``build()`` (a config and module made from a folder's settings), a setting of a wrong type or value being a
    :class:`ModelLoadError` naming ``path``."""
    try:
        return build()
    except (TypeError, ValueError, KeyError, InputError) as exc:
        raise ModelLoadError(f"{path} is not a valid configuration: {exc}") from exc


STORED_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}


def stored_float_dtype(path: Path) -> torch.dtype | None:
    """The floating dtype of every floating tensor in the safetensors file ``path`` (None: none, or several)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        kinds = {fh.get_slice(k).get_dtype() for k in fh.keys()}  # noqa: SIM118 (safe_open is no dict)
    floats = {STORED_DTYPES[k] for k in kinds if k in STORED_DTYPES}
    return floats.pop() if len(floats) == 1 else None


def load_safetensors_weights(model: nn.Module, path: Path, device: str | torch.device = "cpu") -> None:
    """Load the safetensors file ``path`` into ``model`` (every tensor, no more) in the dtype the weights were saved
    in (a float64 or bfloat16 model comes back as it was saved, with identical logits), then move the model to
    ``device``; a corrupt file or weights of other names or shapes are a :class:`ModelLoadError`. Parameters that
    share storage (tied embeddings) may be stored once."""
    from safetensors import SafetensorError
    from safetensors.torch import load_model

    try:
        dtype = stored_float_dtype(path)
        if dtype is not None:
            model.to(dtype)
        missing, unexpected = load_model(model, str(path), strict=False)
    except (SafetensorError, OSError) as exc:
        raise ModelLoadError(f"{path} is not a readable safetensors file (corrupt or truncated?): {exc}") from exc
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise ModelLoadError(f"{path} does not fit its config: {' '.join(first[:2])}") from exc
    if unexpected or missing:
        raise ModelLoadError(f"{path} does not fit its config (missing {sorted(missing)[:4]}, unexpected "
                             f"{sorted(unexpected)[:4]}); save the model and its config together")
    model.to(device)
