"""Precomputed input vectors (``Example.input_vectors``): the one check of their shape, width and type, and the one
cast to the weights' dtype, which :meth:`~seqexplain.models.base.SequenceModel.check_vectors` and
:meth:`~seqexplain.models.base.SequenceModel.vectors_of` apply for every adapter."""

from __future__ import annotations

import torch

from seqexplain.errors import InputError
from seqexplain.models.example import Example
from seqexplain.models.module_state import first_parameter


def check_vectors(example: Example, width: int | None) -> None:
    """:class:`InputError` unless ``example.input_vectors`` (when set) is a floating-point ``[L, D]`` tensor, one row
    per token (``L = len(example.tokens)``), ``D = width`` (when the model has one)."""
    x = example.input_vectors
    if x is None:
        return
    n = len(example.tokens)
    shape = f"[{n}, {width}]" if width is not None else f"[{n}, width]"
    if (not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() != 2
            or int(x.shape[0]) != n or (width is not None and int(x.shape[1]) != width)):
        got = f"shape {tuple(x.shape)}, {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise InputError(f"precomputed input vectors are {got} but the model takes a float tensor {shape}; give one "
                         "vector " + (f"of width {width} " if width is not None else "") + "per position")


def cast_vectors(vectors: torch.Tensor, module: object, device: torch.device) -> torch.Tensor:
    """``vectors`` on ``device`` in the floating dtype of ``module``'s weights (float64 vectors from numpy on a
    float32 model are cast), as a batch of one ``[1, L, D]``."""
    param = first_parameter(module) if isinstance(module, torch.nn.Module) else None
    dtype = param.dtype if param is not None and param.is_floating_point() else vectors.dtype
    return vectors.to(device=device, dtype=dtype).unsqueeze(0)
