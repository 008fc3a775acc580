"""What users hold around a model, unwrapped to the module and tokenizer seqexplain explains.

* a ``transformers`` pipeline (text classification, text generation, translation, …): its ``model`` and, unless
  a tokenizer is given, its ``tokenizer``;
* a ``torch.compile``-d module: the module it compiles (the same parameters, so the same numbers; seqexplain's
  forwards change shape from call to call, which would make the compiled one recompile);
* a PEFT model: :func:`seqexplain.models.peft_models.unwrap_peft` (the fine-tuned network an injected adapter runs;
  prompt-learning adapters refused).

They nest (a pipeline over a compiled PEFT model): :func:`held_module` unwraps until nothing changes.
"""

from __future__ import annotations

from typing import Any

from seqexplain.models.peft_models import unwrap_peft


def _is_pipeline(obj: Any) -> bool:
    return any(c.__name__ == "Pipeline" and c.__module__.startswith("transformers.") for c in type(obj).__mro__)


def held_module(obj: Any, tokenizer: Any = None) -> tuple[Any, Any]:
    """``(module, tokenizer)`` for ``obj`` (module docstring); anything else is returned as it is."""
    import torch

    while True:
        if _is_pipeline(obj):
            tokenizer = tokenizer if tokenizer is not None else getattr(obj, "tokenizer", None)
            obj = obj.model
        elif type(obj).__name__ == "OptimizedModule" and isinstance(getattr(obj, "_orig_mod", None), torch.nn.Module):
            obj = obj._orig_mod
        elif isinstance(obj, torch.nn.Module) and (inner := unwrap_peft(obj)) is not obj:
            obj = inner
        else:
            return obj, tokenizer
