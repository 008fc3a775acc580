"""Online statistics of state gradients (Verwimp et al. 2018; the gradients themselves:
:mod:`seqexplain.analysis.state_gradients`).

:class:`StateGradientAccumulator` keeps, per class ``c`` (index 0 = all positions) and delay ``d``, the count, the
running mean of ``G_d`` and the running mean of ``G_dᵀ G_d`` ([E, E]); the class of a gradient is the class of the
**input word at t-d** (the word whose memory is measured). Memory is independent of the corpus length. Both
statistics can be normalised afterwards (:mod:`seqexplain.analysis.spectra`): for a right-multiplication by ``D``,
``mean(G D) = mean(G) D`` and ``mean((G D)ᵀ G D) = Dᵀ mean(GᵀG) D``. :func:`accumulate` consumes a stream of
:class:`~seqexplain.analysis.state_gradient_chunks.GradientChunk` into :class:`StateGradientStats` (saved as
safetensors + JSON).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from seqexplain.analysis.state_gradient_chunks import GradientChunk, GradientStoreWriter
from seqexplain.atomic import atomic_path, atomic_write_text
from seqexplain.errors import DataError, InputError


@dataclass
class StateGradientStats:
    """Per class (index 0 = ``all``) and delay: ``count[C, D+1]``, ``mean_grad[C, D+1, H, E]`` (mean of ``G_d``) and
    ``mean_gram[C, D+1, E, E]`` (mean of ``G_dᵀ G_d``), float64. ``meta``: how they were computed."""

    class_names: list[str]
    count: Tensor
    mean_grad: Tensor
    mean_gram: Tensor
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def max_delay(self) -> int:
        return int(self.count.shape[1]) - 1

    def class_index(self, name: str) -> int:
        if name not in self.class_names:
            raise InputError(f"unknown class {name!r}; known: {self.class_names}")
        return self.class_names.index(name)

    def save(self, directory: Path | str) -> Path:
        """Write ``stats.safetensors`` and ``stats.json`` (class names, meta) atomically."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        with atomic_path(d / "stats.safetensors") as tmp:
            save_file({"count": self.count.contiguous(), "mean_grad": self.mean_grad.contiguous(),
                       "mean_gram": self.mean_gram.contiguous()}, str(tmp))
        atomic_write_text(d / "stats.json", json.dumps({"class_names": self.class_names, "meta": self.meta},
                                                       indent=2))
        return d

    @classmethod
    def load(cls, directory: Path | str) -> StateGradientStats:
        """Read what :meth:`save` wrote; a missing, unreadable or inconsistent file is a :class:`DataError`."""
        d = Path(directory)
        if not (d / "stats.safetensors").is_file() or not (d / "stats.json").is_file():
            raise DataError(f"{d} holds no state-gradient statistics (stats.safetensors + stats.json)")
        try:
            t = load_file(str(d / "stats.safetensors"))
            count, mean_grad, mean_gram = t["count"], t["mean_grad"], t["mean_gram"]
        except (SafetensorError, OSError, KeyError) as exc:
            raise DataError(f"{d / 'stats.safetensors'} is not readable state-gradient statistics ({exc})") from exc
        try:
            info = json.loads((d / "stats.json").read_text(encoding="utf-8"))
            names, meta = [str(n) for n in info["class_names"]], dict(info["meta"])
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{d / 'stats.json'} is not readable ({type(exc).__name__}: {exc})") from exc
        c, dp1 = len(names), count.shape[-1] if count.dim() == 2 else -1
        if (tuple(count.shape) != (c, dp1) or mean_grad.dim() != 4 or tuple(mean_grad.shape[:2]) != (c, dp1)
                or tuple(mean_gram.shape) != (c, dp1, mean_grad.shape[3], mean_grad.shape[3])):
            raise DataError(f"{d / 'stats.json'} names {c} classes but stats.safetensors holds statistics of shapes "
                            f"{tuple(count.shape)}, {tuple(mean_grad.shape)}, {tuple(mean_gram.shape)}; the two files "
                            "are not of one run")
        return cls(names, count, mean_grad, mean_gram, meta)


class StateGradientAccumulator:
    """Running means of ``G_d`` and ``G_dᵀ G_d`` per class and delay (memory independent of the number of positions).

    ``class_mask[n_tokens, C]`` (bool) marks the classes of each token of the analysed stream; a gradient ``G_d(t)``
    counts for the classes of the input token ``t - d``. Update rule for a chunk with ``n`` new gradients of sum
    ``S``: ``mean += (S - n·mean) / (count + n)``. A non-finite gradient makes the means of its own classes and delay
    NaN (with a ``RuntimeWarning``), no other.
    """

    def __init__(self, max_delay: int, hidden_size: int, embedding_size: int,
                 class_names: Iterable[str] = (), class_mask: np.ndarray | Tensor | None = None) -> None:
        self.class_names = ["all", *class_names]
        c = len(self.class_names)
        if class_mask is not None:
            cm = torch.as_tensor(np.asarray(class_mask), dtype=torch.bool)
            if cm.dim() != 2 or cm.shape[1] != c - 1:
                raise InputError(f"class_mask must be [n_tokens, {c - 1}], got {tuple(cm.shape)}")
            self.class_mask: Tensor | None = cm
        else:
            if c > 1:
                raise InputError("class names were given without a class mask")
            self.class_mask = None
        self.count = torch.zeros(c, max_delay + 1, dtype=torch.float64)
        self.mean_grad = torch.zeros(c, max_delay + 1, hidden_size, embedding_size, dtype=torch.float64)
        self.mean_gram = torch.zeros(c, max_delay + 1, embedding_size, embedding_size, dtype=torch.float64)

    def update(self, chunk: GradientChunk) -> None:
        """Add a chunk's valid gradients. The chunk's sums are taken in float64 for float64 gradients and in float32
        otherwise (the running means are float64 either way)."""
        dtype = torch.float64 if chunk.grads.dtype == torch.float64 else torch.float32
        g = chunk.grads.detach().to("cpu", dtype)
        if g.shape[1:] != self.mean_grad.shape[1:]:
            raise InputError(f"chunk gradients of shape {tuple(g.shape[1:])} do not fit "
                             f"{tuple(self.mean_grad.shape[1:])}")
        valid = chunk.valid.to("cpu")
        cast = Tensor.double if dtype == torch.float64 else Tensor.float  # not .to(dtype): it leaks Python memory
        w = cast(valid.unsqueeze(-1))  # [N, D+1, 1]
        if self.class_mask is not None:
            src = chunk.source_positions.to("cpu").clamp(min=0)
            if int(src.max()) >= self.class_mask.shape[0]:
                raise InputError("class_mask is shorter than the analysed token stream")
            cls = self.class_mask[src] & valid.unsqueeze(-1)
            w = torch.cat([w, cast(cls)], dim=-1)  # [N, D+1, C]
        n_new = w.sum(0).T.double()  # [C, D+1]
        gram = torch.einsum("ndhe,ndhf->ndef", g, g)
        if bool(torch.isfinite(g.sum())):  # a NaN or ±inf anywhere makes the sum non-finite (32 ms → 1 ms a chunk)
            s_grad = torch.einsum("ndc,ndhe->cdhe", w, g).double()
            s_gram = torch.einsum("ndc,ndef->cdef", w, gram).double()
        else:  # a weight of 0 times NaN is NaN: select the members instead, so only their own classes turn NaN
            bad = int(((~torch.isfinite(g)).flatten(2).any(-1) & valid).any(-1).sum())
            if bad:
                warnings.warn(f"{bad} of {g.shape[0]} positions have non-finite state gradients (did the model "
                              "diverge?); the means of their classes and delays are NaN", RuntimeWarning,
                              stacklevel=2)
            keep = w.permute(2, 0, 1)[..., None, None] > 0  # [C, N, D+1, 1, 1]
            s_grad = torch.where(keep, g, 0.0).sum(1).double()
            s_gram = torch.where(keep, gram, 0.0).sum(1).double()
        total = self.count + n_new
        safe = total.clamp(min=1.0)[..., None, None]
        self.mean_grad += (s_grad - n_new[..., None, None] * self.mean_grad) / safe
        self.mean_gram += (s_gram - n_new[..., None, None] * self.mean_gram) / safe
        self.count = total

    def stats(self, meta: dict[str, Any] | None = None) -> StateGradientStats:
        return StateGradientStats(list(self.class_names), self.count.clone(), self.mean_grad.clone(),
                                  self.mean_gram.clone(), dict(meta or {}))


def accumulate(
    chunks: Iterable[GradientChunk],
    class_names: Iterable[str] = (),
    class_mask: np.ndarray | Tensor | None = None,
    store: GradientStoreWriter | None = None,
    meta: dict[str, Any] | None = None,
    on_chunk: Callable[[GradientChunk], None] | None = None,
) -> StateGradientStats:
    """Consume gradient chunks into :class:`StateGradientStats` (optionally also writing them to ``store``)."""
    acc: StateGradientAccumulator | None = None
    names = list(class_names)
    for chunk in chunks:
        if acc is None:
            _, dp1, h, e = chunk.grads.shape
            acc = StateGradientAccumulator(dp1 - 1, h, e, names, class_mask)
        acc.update(chunk)
        if store is not None:
            store.write(chunk)
        if on_chunk is not None:
            on_chunk(chunk)
    if store is not None:
        store.close()
    if acc is None:
        raise InputError("no positions to analyse: the token stream is empty or too short")
    return acc.stats(meta)
