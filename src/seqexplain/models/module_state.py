"""Helpers over a torch module's state, used around forwards: :func:`first_parameter` (where the model lives),
:func:`eval_mode` and :func:`frozen_parameters` (a block in eval mode / with parameter gradients off, every flag
restored afterwards)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


def first_parameter(module: torch.nn.Module) -> torch.nn.Parameter | None:
    """``next(module.parameters())`` without building the generator (read on every forward): the module's own
    parameters, then its children's depth first, as ``parameters()`` orders them."""
    for param in module._parameters.values():
        if param is not None:
            return param
    for child in module._modules.values():
        found = None if child is None else first_parameter(child)
        if found is not None:
            return found
    return None


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Put ``model`` in eval mode for the block and restore every module's previous mode afterwards, even on
    exceptions. A model whose modules are all in eval mode already is left untouched (``Module.train`` walks every
    module: ~1 ms a call on a BERT, a measurable share of one short example's explanation)."""
    modes = {m: m.training for m in model.modules()}
    if not any(modes.values()):
        yield model
        return
    model.eval()
    try:
        yield model
    finally:
        model.train(modes[model])
        for m, mode in modes.items():  # a mixed state (some modules frozen in eval mode) comes back as it was
            m.training = mode


@contextlib.contextmanager
def frozen_parameters(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Turn off ``requires_grad`` of every parameter for the block (so gradients w.r.t. inputs never compute
    weight gradients) and restore each flag afterwards, even on exceptions."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    for p in trainable:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p in trainable:
            p.requires_grad_(True)
