"""Hyper-parameters of seqexplain's own encoder-decoder transformer (:class:`Seq2SeqConfig`, checked on
construction), read by :class:`~seqexplain.models.seq2seq.Seq2SeqTransformer` and its layers
(:mod:`seqexplain.models.seq2seq_layers`); ``MODEL_TYPE`` is the ``model_type`` its saved ``config.json`` holds."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from seqexplain.errors import InputError
from seqexplain.models.native import ConfigMixin, check_drop_probabilities, check_token_ids

MODEL_TYPE = "seqexplain-seq2seq"


@dataclass
class Seq2SeqConfig(ConfigMixin):
    """Hyper-parameters of :class:`~seqexplain.models.seq2seq.Seq2SeqTransformer`."""

    vocab_size: int
    d_model: int = 256
    n_heads: int = 4
    ffn_dim: int = 1024
    encoder_layers: int = 3
    decoder_layers: int = 3
    max_position_embeddings: int = 256
    positions: Literal["learned", "sinusoidal"] = "sinusoidal"
    dropout: float = 0.1
    attention_dropout: float = 0.0
    norm: Literal["pre", "post"] = "pre"
    activation: Literal["relu", "gelu"] = "relu"
    tie_embeddings: bool = True
    scale_embeddings: bool = True
    layer_norm_eps: float = 1e-5
    pad_token_id: int = 0
    bos_token_id: int = 1
    eos_token_id: int = 2
    decoder_start_token_id: int = 1
    is_encoder_decoder: bool = True
    name_or_path: str = ""
    model_type: str = field(default=MODEL_TYPE)

    def __post_init__(self) -> None:
        for name in ("vocab_size", "d_model", "n_heads", "ffn_dim", "encoder_layers", "decoder_layers",
                     "max_position_embeddings"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.d_model % self.n_heads:
            raise InputError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        if self.positions not in ("learned", "sinusoidal"):
            raise InputError(f"positions must be 'learned' or 'sinusoidal', got {self.positions!r}")
        if self.positions == "sinusoidal" and self.d_model % 2:
            raise InputError(f"sinusoidal positions need an even d_model, got {self.d_model}")
        if self.norm not in ("pre", "post"):
            raise InputError(f"norm must be 'pre' or 'post', got {self.norm!r}")
        if self.activation not in ("relu", "gelu"):
            raise InputError(f"activation must be 'relu' or 'gelu', got {self.activation!r}")
        check_drop_probabilities(self, "dropout", "attention_dropout")
        check_token_ids(self, "pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id")
