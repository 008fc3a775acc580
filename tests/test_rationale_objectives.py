"""Greedy rationales honour the explained function (``objective``): each step adds the candidate with the highest
objective of the target — ``p``, the raw logit, or ``log p(target) − log p(foil)`` — and stops, as with the
default, when the model predicts the target.

Oracle: Vafa et al.'s greedy loop written again over plain Hugging Face forwards that return *raw* logits (the
subset's tokens only with their original position ids for a causal LM; an attention mask for a classifier), with
the objective computed from those logits here, not by the library. Each test also checks that the logit and the
contrast change at least one choice against ``log p`` (and ``p``, monotone in it, none), so the comparison could
not pass by a ``log p`` search alone.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from test_rationale import CAUSAL_TEXT, CLS_TEXT, _starts, sharpened, with_subset_targets

import seqexplain as se
from seqexplain.methods.rationale import greedy

Logits = Callable[[list[list[int]]], torch.Tensor]


@torch.no_grad()
def causal_logits(module, ids: torch.Tensor, subsets: list[list[int]]) -> torch.Tensor:
    """``[R, V]`` raw logits read at each subset's last token (the subset alone, original position ids)."""
    x = torch.stack([ids[s] for s in subsets])
    return module(input_ids=x, attention_mask=torch.ones_like(x), position_ids=torch.tensor(subsets)).logits[:, -1]


@torch.no_grad()
def classifier_logits(module, ids: torch.Tensor, subsets: list[list[int]]) -> torch.Tensor:
    mask = torch.zeros(len(subsets), ids.shape[0], dtype=torch.long)
    for r, s in enumerate(subsets):
        mask[r, s] = 1
    return module(input_ids=ids.expand(len(subsets), -1), attention_mask=mask).logits


def objective_of(z: torch.Tensor, objective: str, target: int, foil: int | None) -> float:
    """The explained function from raw logits ``z[V]`` (float64, by hand)."""
    z = z.double()
    if objective == "logit":
        return float(z[target])
    logp = z.log_softmax(-1)
    if objective == "prob":
        return float(logp[target].exp())
    if objective == "contrast":
        assert foil is not None
        return float(logp[target] - logp[foil])
    return float(logp[target])


def reference_greedy(logits: Logits, start: list[int], visible: list[int], target: int, objective: str,
                     foil: int | None) -> tuple[list[int], bool]:
    """Add the candidate with the highest objective (strict ``>`` scan in position order) until the argmax is the
    target or nothing is left."""
    rationale = list(start)
    z = logits([sorted(rationale)])[0]
    while int(z.argmax()) != target:
        cands = [j for j in visible if j not in rationale]
        if not cands:
            return rationale, False
        zs = logits([sorted([*rationale, j]) for j in cands])
        values = [objective_of(zs[k], objective, target, foil) for k in range(len(cands))]
        best = 0
        for k in range(1, len(cands)):
            if values[k] > values[best]:
                best = k
        rationale.append(cands[best])
        z = zs[best]
    return rationale, True


def _causal_cases(request):
    """GPT-2 and Llama (sharpened), each with short searches (targets reached from two positions) and long ones
    (given targets, some never reached)."""
    for name in ("gpt2", "llama"):
        wrapped = sharpened(request.getfixturevalue(name))
        yield wrapped, with_subset_targets(wrapped, wrapped.encode(CAUSAL_TEXT, None, max_new_tokens=4))
        yield wrapped, wrapped.encode("The cat sat on", " the mat")


def _check(wrapped, ex, logits_for: Callable[[int], Logits], objective: str, foils: list[int] | None
           ) -> tuple[list[list[int]], list[list[int]]]:
    """Greedy under ``objective`` equals the oracle target by target; returns its rationales and the oracle's
    under ``log p``."""
    res = greedy(wrapped, ex)
    vis = ex.visible()
    by_logp = []
    for i in range(ex.n_targets):
        visible = [int(j) for j in torch.nonzero(vis[i]).flatten()]
        foil = foils[i] if foils else None
        ref, reached = reference_greedy(logits_for(i), _starts(ex, i), visible, int(ex.target_ids[i]), objective, foil)
        assert res.rationales[i] == ref, f"target {i}"
        assert res.meta["reached"][i] == reached
        by_logp.append(reference_greedy(logits_for(i), _starts(ex, i), visible, int(ex.target_ids[i]), "logprob",
                                        None)[0])
    return res.rationales, by_logp


@pytest.mark.parametrize("objective", ["logit", "contrast", "prob"])
def test_greedy_causal_objectives_match_reference(request, objective):
    same = True
    for wrapped, base in _causal_cases(request):
        ids = base.input_ids
        foils = None
        if objective == "contrast":  # per target, the token predicted from its start position alone
            alone = [int(causal_logits(wrapped.model, ids, [[p - 1]])[0].argmax()) for p in base.target_positions]
            foils = [f if f != int(t) else f + 1 for f, t in zip(alone, base.target_ids, strict=True)]
        ex = wrapped.with_objective(base, objective, foils)
        module = wrapped.model
        ours, by_logp = _check(wrapped, ex, lambda i, m=module, ids=ids: (lambda subs: causal_logits(m, ids, subs)),
                               objective, foils)
        same &= ours == by_logp
    # p is monotone in log p: the same choices; the logit and the contrast change some step's choice
    assert same == (objective == "prob")


@pytest.mark.parametrize("objective", ["logit", "contrast"])
def test_greedy_classifier_objectives_match_reference(bert, objective):
    wrapped = sharpened(bert)
    ids = wrapped.encode(CLS_TEXT, 0).input_ids
    changed = False
    for label in range(3):
        foil = (label + 1) % 3 if objective == "contrast" else None
        ex = wrapped.with_objective(wrapped.encode(CLS_TEXT, label), objective, None if foil is None else [foil])
        ours, by_logp = _check(wrapped, ex, lambda i: (lambda subs: classifier_logits(wrapped.model, ids, subs)),
                               objective, None if foil is None else [foil])
        changed |= ours != by_logp
    assert changed


def test_explain_passes_the_objective_to_greedy(gpt2):
    wrapped = sharpened(gpt2)
    ex = wrapped.with_objective(wrapped.encode("The cat sat on the", " mat"), "logit")
    attr = se.explain(wrapped, "The cat sat on the", " mat", "greedy", objective="logit")
    assert attr.objective == "logit"
    assert attr.rationale is not None and attr.rationale.positions == greedy(wrapped, ex).rationales
