"""``explain``: text in, :class:`Attribution` out, for any wrapped model and registered method."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch

from seqexplain.attribution import Attribution, Rationale
from seqexplain.errors import NonFiniteScoresError
from seqexplain.methods.registry import get_method
from seqexplain.models.base import Example, SequenceModel
from seqexplain.models.loading import load_model


def explain(
    model: Any,
    text: str,
    target: str | int | None = None,
    method: str = "integrated_gradients",
    *,
    tokenizer: Any = None,
    max_new_tokens: int = 10,
    truncate: bool = False,
    strict: bool = False,
    **options: Any,
) -> Attribution:
    """Explain the model's prediction of ``target`` from ``text`` with ``method``.

    ``text`` is the prompt (causal LM), the source (encoder-decoder) or the input (classifier); ``target`` is the
    continuation / target text / label (index or name), or ``None`` for the model's own prediction (greedy,
    up to ``max_new_tokens``; the argmax label). ``options`` go to the method (see ``seqexplain methods``).
    The attributed function is ``log p(target_i | context)``; ``scores[i, j]`` is NaN where input ``j`` cannot
    influence target ``i``. Non-finite scores at visible cells are recorded in ``meta["nonfinite_cells"]`` and
    warned about, or raise :class:`NonFiniteScoresError` with ``strict=True``.
    """
    wrapped = model if isinstance(model, SequenceModel) else load_model(model, tokenizer)
    get_method(method).check_options(options)  # before encoding, which may generate
    example = wrapped.encode(text, target, max_new_tokens=max_new_tokens, truncate=truncate)
    return explain_example(wrapped, example, method, strict=strict, **options)


def explain_example(wrapped: SequenceModel, example: Example, method: str, *, strict: bool = False,
                    **options: Any) -> Attribution:
    """:func:`explain` for an already encoded :class:`Example`."""
    spec = get_method(method)
    spec.check_options(options)
    result = spec.fn(wrapped, example, **options)
    visible = example.visible().numpy()
    scores = np.asarray(result.scores, dtype=np.float64).copy()
    bad = visible & ~np.isfinite(scores)
    scores[~visible] = np.nan
    logprobs = result.target_logprobs
    if logprobs is None:
        with torch.no_grad():
            logprobs = wrapped.score(example)[0].double().cpu().tolist()
    meta = dict(result.meta)
    attr = Attribution(
        tokens=list(example.tokens),
        scores=scores,
        target_tokens=list(example.target_tokens),
        target_positions=list(example.target_positions),
        offsets=list(example.offsets),
        segments=list(example.segments),
        method=method,
        options={**spec.defaults(), **options},
        model_id=wrapped.model_id,
        model_kind=wrapped.kind,
        text=example.text,
        target_text=example.target_text,
        target_logprobs=logprobs,
        rationale=Rationale.from_method(result.rationales, result.rationale_log, result.meta,
                                        len(example.target_tokens)),
        meta=meta,
    )
    if bad.any():
        attr.meta["nonfinite_cells"] = [[int(i), int(j)] for i, j in zip(*np.nonzero(bad), strict=True)]
        try:
            attr.check_finite()
        except NonFiniteScoresError as exc:
            if strict:
                raise
            warnings.warn(str(exc), RuntimeWarning, stacklevel=2)
    return attr
