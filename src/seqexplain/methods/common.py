"""Helpers shared by method families: the token budget, batching under it, baselines, replacement tokens."""

from __future__ import annotations

import torch

from seqexplain.errors import InputError
from seqexplain.models.base import SequenceModel
from seqexplain.models.example import Example


def budget(model: SequenceModel, token_budget: int | None) -> int:
    """The token budget of a call: ``token_budget``, or the adapter's default for its device (4,096 tokens per
    forward on a CPU, the fastest measured; 65,536 on an accelerator: see ``docs/benchmarks.md``)."""
    if token_budget is None:
        return model.default_token_budget()
    if isinstance(token_budget, bool) or not isinstance(token_budget, int) or token_budget < 1:
        raise InputError("token_budget must be a positive number of tokens")
    return token_budget


def pack_limit(model: SequenceModel, token_budget: int) -> int:
    """Tokens up to which rows of *several examples* are packed into one forward (``explain_many``): the budget, or
    less where the device gains nothing from larger packs (:meth:`SequenceModel.default_pack_tokens`). Rows of one
    example still fill the whole budget."""
    return min(token_budget, model.default_pack_tokens())


def special_token_id(model: SequenceModel, which: str) -> int:
    """Id of the tokenizer's ``pad`` / ``unk`` / ``mask`` token, or a clear error if it has none."""
    attr = f"{which}_token_id"
    value = getattr(model.tokenizer, attr, None)
    if value is None:
        raise InputError(f"the tokenizer has no {which} token; choose another baseline / replacement")
    return int(value)


def token_id_for(model: SequenceModel, spec: str | int) -> int:
    """A token id from ``"pad"``/``"unk"``/``"mask"``, an integer id, or a string that is one token."""
    if isinstance(spec, int) and not isinstance(spec, bool):
        vocab = getattr(model, "vocab_size", None)
        size = vocab() if callable(vocab) else None
        if spec < 0 or (size is not None and spec >= size):
            raise InputError(f"token id {spec} is outside the vocabulary (0..{'?' if size is None else size - 1})")
        return spec
    if spec in ("pad", "unk", "mask"):
        return special_token_id(model, spec)
    ids = model.tokenizer.convert_tokens_to_ids([spec]) if hasattr(model.tokenizer, "convert_tokens_to_ids") else []
    unk = getattr(model.tokenizer, "unk_token_id", None)
    if ids and ids[0] is not None and (ids[0] != unk or spec == getattr(model.tokenizer, "unk_token", None)):
        return int(ids[0])
    raise InputError(f"{spec!r} is not a single token of this tokenizer; give pad, unk, mask, a token or an id")


def require_token_ids(example: Example) -> None:
    """:class:`InputError` for an example over precomputed vectors, where a token is asked to stand in for inputs
    (checked before the token is looked up: a model over vectors often has no tokenizer to look it up in)."""
    if example.input_ids is None:
        raise InputError("this example holds precomputed vectors, not tokens, so no token can stand in for them; use "
                         "baseline='zero' (integrated_gradients: zero vectors) or replace_with=None (occlusion: drop "
                         "the position)")


def embeddings_of_token(model: SequenceModel, example: Example, token: int) -> torch.Tensor:
    """``[1, L, D]`` embeddings of an input axis made of ``token`` at every position."""
    require_token_ids(example)
    filled = example.replace(input_ids=torch.full_like(example.input_ids, token))
    return model.embed(filled).detach()


def embeddings_of_named_token(model: SequenceModel, example: Example, spec: str | int) -> torch.Tensor:
    """:func:`embeddings_of_token` of the token ``spec`` names (:func:`token_id_for`), the example checked to hold
    token ids first (:func:`require_token_ids`)."""
    require_token_ids(example)
    return embeddings_of_token(model, example, token_id_for(model, spec))


def logprobs_if_objective(example: Example, values: torch.Tensor) -> list[float] | None:
    """``values`` as the targets' log-probabilities when the objective is ``log p`` (saves ``explain`` a forward),
    else None."""
    if example.objective != "logprob":
        return None
    return values.detach().double().cpu().view(-1).tolist()
