"""Behavioural probes of an adapter, run once per adapter on the first input that needs them: the model honours
the keep mask (:func:`verify_keep_mask`) and reads its own input embeddings as it reads the token ids
(:func:`verify_vectors`). They test what the module does, not its signature, and mark the adapter
(``_keep_verified``, ``_vectors_verified``) so that later inputs and the probes' own forwards skip them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from seqexplain.errors import UnsupportedError

if TYPE_CHECKING:
    from seqexplain.models.base import SequenceModel
    from seqexplain.models.example import Example


def verify_keep_mask(model: SequenceModel, example: Example) -> None:
    """Check once per adapter, by behaviour rather than by signature, that dropping positions changes what the
    model sees: with one of target 0's context positions dropped that is not a start position (the last one,
    nearest the reading position, then the first), its logits must differ from the full input's for at least
    one of the two. A module that takes an attention mask but ignores it (or swallows it in ``**kwargs``) fails,
    with :class:`UnsupportedError`, instead of giving all-zero occlusion and whole-context rationales; a model
    that reads only a window of recent positions passes (the last position is inside any window). Skipped
    when target 0 sees nothing beyond its start positions."""
    if model._keep_verified is not None:
        return
    visible = set(example.visible_positions(0)) if example.n_targets else set()
    try:
        start = set(model.start_positions(example, 0))
    except UnsupportedError:
        return
    if not visible - start:
        return
    model._keep_verified = False  # in progress: the probe's own forwards must not probe again
    try:
        target = torch.zeros(1, dtype=torch.long, device=model.device)
        changed = False
        with torch.no_grad():
            full = model.logits(example, rows_target=target)[0, 0]
            for dropped in sorted({max(visible - start), min(visible - start)}, reverse=True):
                probe = torch.ones(1, example.length, dtype=torch.bool, device=model.device)
                probe[0, dropped] = False
                if not torch.equal(model.logits(example, probe, rows_target=target)[0, 0], full):
                    changed = True
                    break
    except BaseException:
        model._keep_verified = None
        raise
    if not changed:
        model._keep_verified = None
        raise UnsupportedError(
            f"{model.model_id} ({type(model.model).__name__}) ignores its attention mask: with a context "
            "position dropped, its prediction did not change at all. Occlusion, rationales and faithfulness "
            "drop positions through the mask, so they would give all-zero scores and whole-context rationales; "
            "use gradient or attention methods, or a model whose forward honours attention_mask")
    model._keep_verified = True


def verify_vectors(model: SequenceModel, example: Example) -> None:
    """Check once per adapter, by behaviour, that feeding :meth:`embed`'s vectors gives the logits the token
    ids give (the contract gradient methods, IG and precomputed vectors rest on). A model that transforms its
    token embeddings only when it reads ids, in a way its adapter does not know, fails with
    :class:`UnsupportedError` instead of having another function explained."""
    if model._vectors_verified:
        return
    probe = model.ids_probe(example)
    if probe is None:
        return
    model._vectors_verified = True  # the probe's own forwards must not probe again
    try:
        with torch.no_grad():
            by_ids = model.logits(probe).float()
            by_vectors = model.logits(probe, embeds=model.embed(probe).detach()).float()
    except BaseException:
        model._vectors_verified = False
        raise
    if not (bool(torch.isfinite(by_ids).all()) and bool(torch.isfinite(by_vectors).all())):
        model._vectors_verified = False  # non-finite logits compare with nothing; the explanation flags them
        return
    scale = float(by_ids.abs().max()) if by_ids.numel() else 0.0
    if not torch.allclose(by_vectors, by_ids, rtol=1e-3, atol=1e-3 * scale + 1e-5):
        model._vectors_verified = False
        raise UnsupportedError(
            f"{model.model_id} ({type(model.model).__name__}) gives other predictions when fed its own input "
            f"embeddings than when it reads the token ids (max logit difference "
            f"{float((by_vectors - by_ids).abs().max()):.3g}): it transforms token embeddings only on the ids "
            "path, so gradient methods, integrated gradients and precomputed vectors would explain another "
            "function; use occlusion or a rationale method")
