"""Model adapters behind one interface (:class:`SequenceModel`); see ``base.py`` for the contract."""

from seqexplain.models.base import Example, SequenceModel, eval_mode
from seqexplain.models.hf import HFModel, eager_attention
from seqexplain.models.loading import load_model

__all__ = ["Example", "HFModel", "SequenceModel", "eager_attention", "eval_mode", "load_model"]
