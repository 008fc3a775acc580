"""seqexplain's own small decoder-only transformer language model.

Architecture (GPT-style, configurable)::

    h_0 = dropout(E_tok[w] + E_pos[position_ids])                 (learned positions)
    pre-LN:  h = h + drop(Attn(LN(h)));  h = h + drop(FFN(LN(h)))  ... final LN
    post-LN: h = LN(h + drop(Attn(h)));  h = LN(h + drop(FFN(h)))
    logits = W_out h                                              (tied to E_tok unless tie_embeddings=False)

It follows the Hugging Face causal-LM calling convention, so :func:`seqexplain.load_model` wraps it like any
HF model: ``forward(input_ids=None, inputs_embeds=None, attention_mask=None, position_ids=None, labels=None,
output_attentions=False, output_hidden_states=False, logits_to_keep=0)`` returns an object with ``.logits``
(and ``.loss``, ``.attentions``, ``.hidden_states``).

``attention_mask`` may be

* ``None``: plain causal attention;
* a 2-D **keep mask** ``[B, L]`` (1 keep, 0 drop): query ``q`` attends to key ``k`` iff ``k <= q`` and
  (``keep[k]`` or ``k == q``). A dropped position is invisible to every other position but still sees itself
  (and the kept positions before it), so its output is defined; together with the original ``position_ids``
  this equals deleting the dropped tokens (see :func:`causal_keep_mask`);
* a 4-D mask ``[B, 1 | H, L, L]``, used as given: boolean (True = may attend) or additive float (0 / large
  negative). It replaces the causal mask, so it must contain it.

Persistence: :meth:`TransformerLM.save` writes ``model.safetensors`` + ``config.json``;
:func:`load_transformer_lm` reads them back.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from safetensors.torch import save_model as st_save_model
from torch import Tensor, nn

from seqexplain.atomic import atomic_path, atomic_write_text
from seqexplain.errors import InputError, ModelLoadError
from seqexplain.models import keep as keep_rule
from seqexplain.models.native import (
    ConfigMixin,
    OutputMixin,
    build_from_config,
    check_drop_probabilities,
    load_safetensors_weights,
    read_config_json,
)

MODEL_TYPE = "seqexplain-transformer-lm"
CONFIG_NAME, WEIGHTS_NAME = "config.json", "model.safetensors"


@dataclass
class TransformerLMConfig(ConfigMixin):
    """Hyper-parameters of :class:`TransformerLM` (defaults: the majority-class model of Vafa et al. 2021:
    4 layers, d_model 64, FFN 256, 2 heads)."""

    vocab_size: int
    d_model: int = 64
    n_layers: int = 4
    n_heads: int = 2
    ffn_dim: int = 256
    max_position_embeddings: int = 64
    dropout: float = 0.1
    attention_dropout: float = 0.0
    norm: Literal["pre", "post"] = "pre"
    activation: Literal["relu", "gelu"] = "relu"
    tie_embeddings: bool = True
    layer_norm_eps: float = 1e-5
    init_std: float = 0.02
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    model_type: str = field(default=MODEL_TYPE)

    def __post_init__(self) -> None:
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "ffn_dim", "max_position_embeddings"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.d_model % self.n_heads:
            raise InputError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        if self.norm not in ("pre", "post"):
            raise InputError(f"norm must be 'pre' or 'post', got {self.norm!r}")
        if self.activation not in ("relu", "gelu"):
            raise InputError(f"activation must be 'relu' or 'gelu', got {self.activation!r}")
        check_drop_probabilities(self, "dropout", "attention_dropout")


@dataclass
class TransformerLMOutput(OutputMixin):
    """What :meth:`TransformerLM.forward` returns (attribute access like a Hugging Face ``ModelOutput``;
    ``out[0]`` / ``out["loss"]`` also work, for ``transformers.Trainer``)."""

    logits: Tensor
    loss: Tensor | None = None
    attentions: tuple[Tensor, ...] | None = None
    hidden_states: tuple[Tensor, ...] | None = None
    _order = ("loss", "logits", "hidden_states", "attentions")


def causal_keep_mask(keep: Tensor) -> Tensor:
    """Boolean ``[B, 1, L, L]`` mask (True = may attend) of causal attention under a keep mask ``[B, L]``:
    query ``q`` sees key ``k`` iff ``k <= q`` and (``keep[b, k]`` or ``k == q``) (:mod:`seqexplain.models.keep`)."""
    return keep_rule.self_attention_allowed(keep, causal=True)


def additive_mask(allowed: Tensor, dtype: torch.dtype) -> Tensor:
    """Boolean mask → additive float mask (0 where allowed, the dtype's minimum elsewhere)."""
    return keep_rule.additive(allowed, dtype)


class SelfAttention(nn.Module):
    """Multi-head self-attention with an additive mask; returns the weights when asked."""

    def __init__(self, config: TransformerLMConfig) -> None:
        super().__init__()
        self.n_heads = config.n_heads
        self.head_dim = config.d_model // config.n_heads
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model)
        self.out = nn.Linear(config.d_model, config.d_model)
        self.attn_drop = nn.Dropout(config.attention_dropout)

    def forward(self, x: Tensor, mask: Tensor, output_attentions: bool = False) -> tuple[Tensor, Tensor | None]:
        bsz, n_l, d = x.shape
        q, k, v = self.qkv(x).view(bsz, n_l, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        weights: Tensor | None = None
        if output_attentions:
            scores = (q @ k.transpose(-1, -2)) / math.sqrt(self.head_dim) + mask
            weights = torch.softmax(scores.float(), dim=-1).to(q.dtype)
            y = self.attn_drop(weights) @ v
        else:
            p = self.attn_drop.p if self.training else 0.0
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        return self.out(y.transpose(1, 2).reshape(bsz, n_l, d)), weights


class DecoderLayer(nn.Module):
    def __init__(self, config: TransformerLMConfig) -> None:
        super().__init__()
        self.pre = config.norm == "pre"
        self.attn = SelfAttention(config)
        self.ln_attn = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.ln_ffn = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        act: nn.Module = nn.ReLU() if config.activation == "relu" else nn.GELU()
        self.ffn = nn.Sequential(nn.Linear(config.d_model, config.ffn_dim), act,
                                 nn.Linear(config.ffn_dim, config.d_model))
        self.drop = nn.Dropout(config.dropout)

    def forward(self, h: Tensor, mask: Tensor, output_attentions: bool) -> tuple[Tensor, Tensor | None]:
        if self.pre:
            a, w = self.attn(self.ln_attn(h), mask, output_attentions)
            h = h + self.drop(a)
            return h + self.drop(self.ffn(self.ln_ffn(h))), w
        a, w = self.attn(h, mask, output_attentions)
        h = self.ln_attn(h + self.drop(a))
        return self.ln_ffn(h + self.drop(self.ffn(h))), w


class TransformerLM(nn.Module):
    """Decoder-only transformer LM with the Hugging Face calling convention (see the module docstring)."""

    seqexplain_kind = "causal"

    def __init__(self, config: TransformerLMConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.embed_tokens = nn.Embedding(c.vocab_size, c.d_model)
        self.embed_positions = nn.Embedding(c.max_position_embeddings, c.d_model)
        self.drop = nn.Dropout(c.dropout)
        self.layers = nn.ModuleList(DecoderLayer(c) for _ in range(c.n_layers))
        self.final_norm: nn.Module = nn.LayerNorm(c.d_model, eps=c.layer_norm_eps) if c.norm == "pre" else nn.Identity()
        self.lm_head = nn.Linear(c.d_model, c.vocab_size, bias=False)
        self.apply(self._init_weights)
        if c.tie_embeddings:
            self.lm_head.weight = self.embed_tokens.weight

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=self.config.init_std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    # -- HF-style accessors ---------------------------------------------------------------------------------
    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    @property
    def max_positions(self) -> int:
        return self.config.max_position_embeddings

    # -- forward --------------------------------------------------------------------------------------------
    def _attention_mask(self, attention_mask: Tensor | None, bsz: int, n_l: int, device: torch.device,
                        dtype: torch.dtype) -> Tensor:
        if attention_mask is None:
            keep = torch.ones(1, n_l, dtype=torch.bool, device=device)
            return additive_mask(causal_keep_mask(keep), dtype)
        if attention_mask.dim() == 2:
            if tuple(attention_mask.shape) != (bsz, n_l):
                raise InputError(f"attention_mask has shape {tuple(attention_mask.shape)}, expected {(bsz, n_l)}")
            return additive_mask(causal_keep_mask(attention_mask.to(device) != 0), dtype)
        if attention_mask.dim() == 4:
            if attention_mask.shape[-2:] != (n_l, n_l) or attention_mask.shape[0] not in (1, bsz):
                raise InputError(f"4-D attention_mask has shape {tuple(attention_mask.shape)}, expected "
                                 f"[{bsz}, 1 or heads, {n_l}, {n_l}]")
            m = attention_mask.to(device)
            return additive_mask(m, dtype) if m.dtype == torch.bool else m.to(dtype)
        raise InputError(f"attention_mask must be 2-D [B, L] or 4-D [B, 1, L, L], got {attention_mask.dim()}-D")

    def forward(
        self,
        input_ids: Tensor | None = None,
        inputs_embeds: Tensor | None = None,
        attention_mask: Tensor | None = None,
        position_ids: Tensor | None = None,
        labels: Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        logits_to_keep: int | Tensor = 0,
        **kwargs: Any,
    ) -> TransformerLMOutput:
        """Logits ``[B, L, V]`` (or at ``logits_to_keep``: the last ``k`` positions for an int ``k > 0``, the
        given indices for a 1-D tensor).

        ``labels[B, L]``: ``loss`` = mean cross-entropy of ``logits[:, t]`` against ``labels[:, t + 1]`` (shifted
        inside, as in Hugging Face causal LMs; -100 is ignored).
        """
        del kwargs  # e.g. use_cache, return_dict: accepted for compatibility, not used
        if (input_ids is None) == (inputs_embeds is None):
            raise InputError("pass exactly one of input_ids and inputs_embeds")
        x = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        if x.dim() != 3:
            raise InputError(f"expected inputs of shape [B, L(, D)], got {tuple(x.shape)}")
        bsz, n_l = x.shape[:2]
        if position_ids is None:
            position_ids = torch.arange(n_l, device=x.device).unsqueeze(0)
        if int(position_ids.max()) >= self.config.max_position_embeddings:
            raise InputError(f"position {int(position_ids.max())} exceeds the model's "
                             f"{self.config.max_position_embeddings} positions")
        mask = self._attention_mask(attention_mask, bsz, n_l, x.device, x.dtype)
        h = self.drop(x + self.embed_positions(position_ids))
        hiddens: list[Tensor] = [h]
        attns: list[Tensor] = []
        for layer in self.layers:
            h, w = layer(h, mask, output_attentions)
            hiddens.append(h)
            if w is not None:
                attns.append(w)
        h = self.final_norm(h)
        if isinstance(logits_to_keep, Tensor):
            h_out = h[:, logits_to_keep.to(h.device)]
        elif logits_to_keep > 0:
            h_out = h[:, -logits_to_keep:]
        else:
            h_out = h
        logits = self.lm_head(h_out)
        loss = None
        if labels is not None:
            if h_out is not h:
                raise InputError("labels need the logits of every position; do not combine them with logits_to_keep")
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
                                   labels[:, 1:].reshape(-1).to(logits.device), ignore_index=-100)
        return TransformerLMOutput(logits=logits, loss=loss,
                                   attentions=tuple(attns) if output_attentions else None,
                                   hidden_states=tuple(hiddens) if output_hidden_states else None)

    # -- persistence ----------------------------------------------------------------------------------------
    def save(self, directory: Path | str) -> Path:
        """Write ``model.safetensors`` and ``config.json`` into ``directory`` (each atomically)."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        with atomic_path(d / WEIGHTS_NAME) as tmp:
            st_save_model(self, str(tmp), metadata={"format": "pt", "model_type": MODEL_TYPE})
        atomic_write_text(d / CONFIG_NAME, json.dumps(self.config.to_dict(), indent=2))
        return d

    # Hugging Face spelling, so code that saves HF models saves this one too.
    def save_pretrained(self, directory: Path | str, **_: Any) -> Path:
        return self.save(directory)

    @classmethod
    def load(cls, directory: Path | str, map_location: str | torch.device = "cpu") -> TransformerLM:
        return load_transformer_lm(directory, map_location)


def load_transformer_lm(directory: Path | str, map_location: str | torch.device = "cpu") -> TransformerLM:
    """Load a model written by :meth:`TransformerLM.save` (returned in eval mode)."""
    d = Path(directory)
    cfg_path, w_path = d / CONFIG_NAME, d / WEIGHTS_NAME
    if not cfg_path.is_file() or not w_path.is_file():
        raise ModelLoadError(f"{d} is not a saved seqexplain transformer LM: it needs {CONFIG_NAME} and "
                             f"{WEIGHTS_NAME}")
    cfg = read_config_json(cfg_path)
    if cfg.get("model_type") != MODEL_TYPE:
        raise ModelLoadError(f"{cfg_path} describes model_type {cfg.get('model_type')!r}, expected {MODEL_TYPE!r}")
    model = build_from_config(lambda: TransformerLM(TransformerLMConfig.from_dict(cfg)), cfg_path)
    load_safetensors_weights(model, w_path, map_location)
    model.eval()
    return model
