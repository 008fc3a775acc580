"""Model adapters behind one interface (:class:`SequenceModel`); see ``base.py`` for the contract and ``keep.py`` for
the keep-mask rule."""

from seqexplain.models.base import SequenceModel
from seqexplain.models.example import AttentionSegment, Example, Part
from seqexplain.models.hf import HFAdapter, HFModel
from seqexplain.models.hf_module import eager_attention
from seqexplain.models.loading import load_model
from seqexplain.models.module_state import eval_mode

__all__ = ["AttentionSegment", "Example", "HFAdapter", "HFModel", "Part", "SequenceModel", "eager_attention",
           "eval_mode", "load_model"]
