"""The explained function: each target's objective from the model's raw logits.

:attr:`~seqexplain.models.example.Example.objective` names what is explained; from the logits ``z`` at target
``i``'s reading position (``log p = log_softmax(z)``) the objective of target ``y_i`` is

* ``"logprob"`` (default): ``log p(y_i)``;
* ``"prob"``: ``p(y_i)``;
* ``"logit"``: the raw logit ``z_{y_i}``;
* ``"contrast"``: ``log p(y_i) − log p(f_i)``, with a foil ``f_i`` per target (``Example.foil_ids``): "why this
  token rather than that one".

:func:`objective_values` computes it for every target of every row (what
:meth:`~seqexplain.models.base.SequenceModel.score` returns), :func:`row_objective` for one target per row.
"""

from __future__ import annotations

import torch

from seqexplain.models.example import Example


def objective_values(example: Example, logits: torch.Tensor) -> torch.Tensor:
    """``[B, T]`` the example's objective from raw logits ``[B, T, V]`` of all its targets."""
    z = logits.float()
    n_b, n_t = z.shape[0], z.shape[1]
    targets = example.target_ids.to(z.device)[:n_t].view(1, -1, 1).expand(n_b, -1, 1)
    if example.objective == "logit":
        return z.gather(2, targets).squeeze(-1)
    logp = torch.log_softmax(z, dim=-1)
    tgt = logp.gather(2, targets).squeeze(-1)
    if example.objective == "prob":
        return tgt.exp()
    if example.objective == "contrast":
        assert example.foil_ids is not None
        foils = example.foil_ids.to(z.device)[:n_t].view(1, -1, 1).expand(n_b, -1, 1)
        return tgt - logp.gather(2, foils).squeeze(-1)
    return tgt


def row_objective(example: Example, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``[B]`` the objective of row ``b``'s own target ``targets[b]`` from ``[B, V]`` logits."""
    z = logits.float()
    tid = example.target_ids.to(z.device)[targets].view(-1, 1)
    if example.objective == "logit":
        return z.gather(1, tid).squeeze(1)
    logp = torch.log_softmax(z, dim=-1)
    tgt = logp.gather(1, tid).squeeze(1)
    if example.objective == "prob":
        return tgt.exp()
    if example.objective == "contrast":
        assert example.foil_ids is not None
        return tgt - logp.gather(1, example.foil_ids.to(z.device)[targets].view(-1, 1)).squeeze(1)
    return tgt
