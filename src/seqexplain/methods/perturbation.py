"""Perturbation methods.

``occlusion`` (leave-one-out): ``a_ij = f_i(all) − f_i(all but j)`` for the example's objective ``f`` (default
``log p(target_i)``). By default position ``j`` is *dropped* (removed from attention / the RNN input, other positions
keep their ids: the model interface's keep-mask); with ``replace_with`` its embedding is replaced by a token's
instead. Every target is scored in the same forward of each perturbed input; perturbed inputs are batched under
``token_budget`` tokens per forward as the adapter prices them (:func:`seqexplain.models.rows.plan_forwards`), and
rows of several examples of one length (``explain_many`` sorts them) share a forward up to the device's pack size
(:func:`seqexplain.methods.common.pack_limit`).

Options: ``replace_with`` (None to drop; ``"pad"``, ``"unk"``, ``"mask"``, a single token or a token id),
``token_budget`` (int ≥ 1 or None: the adapter's default for its device).
"""

from __future__ import annotations

import numpy as np
import torch

from seqexplain.methods.common import (
    budget,
    embeddings_of_token,
    logprobs_if_objective,
    pack_limit,
    require_token_ids,
    token_id_for,
)
from seqexplain.methods.registry import MethodResult, register
from seqexplain.models.base import SequenceModel
from seqexplain.models.example import Example, Part
from seqexplain.models.module_state import eval_mode
from seqexplain.models.rows import plan_forwards, require_keep_support
from seqexplain.progress import add_total, advance


def _rows(model: SequenceModel, ex: Example, positions: list[int], replacement: torch.Tensor | None,
          e: torch.Tensor | None) -> Part:
    """One perturbed row per position: dropped through the keep-mask, or its embedding replaced."""
    pos = torch.tensor(positions, device=model.device)
    rows = torch.arange(len(pos), device=model.device)
    if replacement is None:
        keep = torch.ones(len(pos), ex.length, dtype=torch.bool, device=model.device)
        keep[rows, pos] = False
        return Part(ex, keep=keep)
    assert e is not None
    x = e.expand(len(pos), -1, -1).clone()
    x[rows, pos] = replacement[pos]
    return Part(ex, embeds=x)


def occlusion_many(model: SequenceModel, examples: list[Example], *, replace_with: str | int | None = None,
                   token_budget: int | None = None) -> list[MethodResult]:
    token_budget = budget(model, token_budget)
    if replace_with is None:
        require_keep_support(model)
    else:
        for ex in examples:
            require_token_ids(ex)
        token = token_id_for(model, replace_with)
    work = []  # (example index, position) in order
    for k, ex in enumerate(examples):
        work.extend((k, j) for j in ex.context_positions())
    scores = [np.full((ex.n_targets, ex.length), np.nan) for ex in examples]
    add_total(len(work))
    with torch.no_grad(), eval_mode(model.model):
        bases: list[torch.Tensor] = [torch.empty(0)] * len(examples)
        by_length: dict[int, list[int]] = {}
        for k, ex in enumerate(examples):  # one forward per length: no padding, scores as one call per example
            by_length.setdefault(ex.length, []).append(k)
        for ks in by_length.values():
            for k, b in zip(ks, model.score_many([Part(examples[k]) for k in ks]), strict=True):
                bases[k] = b[0]
        embeds, repl = [None] * len(examples), [None] * len(examples)
        if replace_with is not None:
            embeds = [e.detach() for e in model.embed_many(examples)]
            repl = [embeddings_of_token(model, ex, token)[0] for ex in examples]
        limit = pack_limit(model, token_budget)

        def may_join(start: int, i: int, cost: int) -> bool:
            # another example's rows join only when they need no padding (same length: their scores stay bit-equal
            # to one call per example) and the pack stays within the device's pack size
            k, before = examples[work[i][0]], examples[work[i - 1][0]]
            return k is before or (k.length == before.length and cost <= limit)

        # a row holds every target of one perturbed input: the adapter prices it like a keep-row of the last target
        # with every position but one kept (dropped) or all of them (replaced)
        dropped = 1 if replace_with is None else 0
        prices = [model.row_cost(ex, ex.n_targets - 1, ex.length - dropped) for ex in examples]
        sizes = [(prices[k],) for k, _ in work]
        for start, stop in plan_forwards(sizes, lambda m: m[0], token_budget, may_join):
            chunk = work[start:stop]
            parts, owners = [], []
            for k in dict.fromkeys(k for k, _ in chunk):
                pos = [j for kk, j in chunk if kk == k]
                parts.append(_rows(model, examples[k], pos, repl[k], embeds[k]))
                owners.append((k, pos))
            for (k, pos), out in zip(owners, model.score_many(parts), strict=True):
                scores[k][:, pos] = (bases[k].unsqueeze(0) - out).T.double().cpu().numpy()
            advance(len(chunk))
    return [MethodResult(s, target_logprobs=logprobs_if_objective(ex, b))
            for s, ex, b in zip(scores, examples, bases, strict=True)]


@register("occlusion", "perturbation",
          "leave-one-out: f(target | all) − f(target | all but position j), j dropped or replaced",
          many=occlusion_many, drops_tokens=lambda o: o["replace_with"] is None)
def occlusion(model: SequenceModel, example: Example, *, replace_with: str | int | None = None,
              token_budget: int | None = None) -> MethodResult:
    """Occlusion (module docstring).

    Options:

    * ``replace_with``: str or int or None (default None): None drops the position (keep-mask); "pad", "unk",
      "mask", a string that is one token, or a token id in ``0 … vocabulary size − 1`` replaces its embedding;
    * ``token_budget``: int ≥ 1 or None (default None): tokens per forward (perturbed rows × length); None: the
      adapter's default for its device."""
    return occlusion_many(model, [example], replace_with=replace_with, token_budget=token_budget)[0]
