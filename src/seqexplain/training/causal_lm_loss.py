"""Logits and next-token loss of a causal language model, with or without word-dropout keep masks, and its
evaluation (per-token loss and perplexity, optionally from dropped contexts).

Any module with the Hugging Face causal-LM calling convention works (a Hugging Face model, a ``peft`` LoRA model,
:class:`seqexplain.models.transformer.TransformerLM`). A keep mask is passed as the 4-D attention mask
of :func:`seqexplain.training.word_dropout.causal_attention_mask`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from seqexplain.models.module_state import eval_mode
from seqexplain.training.causal_lm_data import TokenData
from seqexplain.training.word_dropout import causal_attention_mask, sample_keep


def _accepts_position_ids(model: nn.Module) -> bool:
    import inspect

    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False
    return "position_ids" in params or any(p.kind == p.VAR_KEYWORD for p in params.values())


def _param_dtype(model: nn.Module) -> torch.dtype:
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float32


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (CPU for a module without parameters)."""
    try:
        return next(model.parameters()).device
    except StopIteration:  # pragma: no cover
        return torch.device("cpu")


def lm_logits(model: nn.Module, input_ids: Tensor, valid: Tensor, keep: Tensor | None = None) -> Tensor:
    """Logits ``[B, L, V]`` of a causal LM: with the 2-D padding mask when ``keep`` is None, else with the 4-D
    word-dropout mask of ``keep`` (position ids 0..L-1 either way)."""
    kwargs: dict[str, Any] = {"input_ids": input_ids}
    if keep is None:
        kwargs["attention_mask"] = valid.long()
    else:
        kwargs["attention_mask"] = causal_attention_mask(keep, _param_dtype(model))
    if _accepts_position_ids(model):
        kwargs["position_ids"] = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0).expand(
            input_ids.shape[0], -1)
    return model(**kwargs).logits


def lm_loss(logits: Tensor, input_ids: Tensor, valid: Tensor, reduction: str = "mean") -> Tensor:
    """Next-token cross-entropy: ``logits[:, t]`` against ``input_ids[:, t + 1]`` where ``valid[:, t + 1]``."""
    tgt = input_ids[:, 1:].masked_fill(~valid[:, 1:], -100)
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), tgt.reshape(-1),
                           ignore_index=-100, reduction=reduction)


@torch.no_grad()
def evaluate_lm(model: nn.Module, data: TokenData, batch_size: int = 256, progress: bool = False,
                word_dropout: str | None = None, seed: int = 0) -> dict[str, float]:
    """Per-token loss and perplexity ``exp(mean NLL)`` over every predicted, non-padding token (eval mode).

    ``word_dropout=None``: full context. ``"uniform_length"`` / ``"inverse_length"``: every row's context is
    dropped with a keep mask of that kind (:func:`sample_keep`, seeded with ``seed``; each token still sees
    itself), so the loss is ``−log p(x_{t+1} | kept part of x_{≤t})`` — how well the model predicts from
    incomplete contexts, i.e. its compatibility with the subsets that rationale search evaluates. Loss and perplexity
    are NaN when no token is predicted."""
    dev = model_device(model)
    generator = torch.Generator().manual_seed(seed)
    total, count = 0.0, 0
    with eval_mode(model):
        for start in tqdm(range(0, len(data), batch_size), desc="eval", disable=not progress, leave=False):
            ids = data.input_ids[start : start + batch_size].to(dev)
            valid = data.valid[start : start + batch_size].to(dev)
            keep = None
            if word_dropout is not None:
                keep = sample_keep(data.valid[start : start + batch_size], word_dropout, generator).to(dev)
            logits = lm_logits(model, ids, valid, keep)
            total += float(lm_loss(logits, ids, valid, reduction="sum"))
            count += int(valid[:, 1:].sum())
    loss = total / count if count else float("nan")  # nothing predicted: no loss, not a perfect 0
    return {"loss": loss, "ppl": math.exp(loss), "tokens": float(count)}
