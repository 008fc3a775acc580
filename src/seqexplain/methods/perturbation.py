"""Perturbation methods.

``occlusion`` (leave-one-out): ``a_ij = log p(t_i | all) − log p(t_i | all but j)``. By default position ``j``
is *dropped* (removed from attention / the RNN input, other positions keep their ids: the model interface's
keep-mask); with ``replace_with`` its embedding is replaced by a token's instead. Every target is scored in the
same forward of each perturbed input, and perturbed inputs are batched under ``token_budget``.
"""

from __future__ import annotations

import numpy as np
import torch

from seqexplain.methods.common import DEFAULT_TOKEN_BUDGET, chunks, embeddings_of_token, token_id_for
from seqexplain.methods.registry import MethodResult, register
from seqexplain.models.base import Example, SequenceModel, eval_mode


@register("occlusion", "perturbation",
          "leave-one-out: log p(target | all) − log p(target | all but position j), j dropped or replaced")
def occlusion(model: SequenceModel, example: Example, *, replace_with: str | int | None = None,
              token_budget: int = DEFAULT_TOKEN_BUDGET) -> MethodResult:
    positions = example.context_positions()
    n_l = example.length
    scores = np.full((example.n_targets, n_l), np.nan)
    with torch.no_grad(), eval_mode(model.model):
        base = model.score(example)[0]  # [T]
        replacement = None
        if replace_with is not None:
            e = model.embed(example).detach()
            replacement = embeddings_of_token(model, example, token_id_for(model, replace_with))[0]
        for sl in chunks(len(positions), n_l, token_budget):
            pos = torch.tensor(positions[sl], device=model.device)
            rows = torch.arange(len(pos), device=model.device)
            if replacement is None:
                keep = torch.ones(len(pos), n_l, dtype=torch.bool, device=model.device)
                keep[rows, pos] = False
                out = model.score(example, keep=keep)
            else:
                x = e.expand(len(pos), -1, -1).clone()
                x[rows, pos] = replacement[pos]
                out = model.score(example, embeds=x)
            scores[:, pos.cpu().numpy()] = (base.unsqueeze(0) - out).T.double().cpu().numpy()
    return MethodResult(scores, target_logprobs=base.double().cpu().tolist())
