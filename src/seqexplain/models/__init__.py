"""Model adapters behind one interface (:class:`SequenceModel`); see ``base.py`` for the contract and ``keep.py`` for
the keep-mask rule."""

from seqexplain.models.base import AttentionSegment, Example, Part, SequenceModel, eval_mode
from seqexplain.models.hf import HFAdapter, HFModel, eager_attention
from seqexplain.models.loading import load_model

__all__ = ["AttentionSegment", "Example", "HFAdapter", "HFModel", "Part", "SequenceModel", "eager_attention",
           "eval_mode", "load_model"]
