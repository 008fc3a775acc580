"""seqexplain's own small encoder-decoder transformer (Vaswani et al. 2017), with the Hugging Face calling convention.

Architecture (configurable, :class:`Seq2SeqConfig`)::

    encoder:  h_0 = drop(s · E[x] + P[0..S-1]);   L_e × [self-attention, FFN];              final LN (pre-LN)
    decoder:  g_0 = drop(s · E[y] + P[0..T-1]);   L_d × [causal self-attn, cross-attn, FFN]; final LN (pre-LN)
    logits  = W_out g                                  (W_out = E, one matrix shared by encoder, decoder and output
                                                        when ``tie_embeddings``)

with ``s = sqrt(d_model)`` when ``scale_embeddings`` and ``P`` learned (``positions="learned"``) or fixed sinusoids
(``"sinusoidal"``, the fairseq layout: sines in the first half of the dimensions, cosines in the second).

Masks. ``forward(input_ids, attention_mask, decoder_input_ids, decoder_attention_mask, ...)`` takes

* 2-D **keep masks** (1 keep, 0 drop; padding is simply "drop"): ``attention_mask[B, S]`` over the source and
  ``decoder_attention_mask[B, T]`` over the decoder inputs. A dropped position is invisible to every other position
  but still sees itself (so its output stays defined):

  - encoder self-attention: query ``q`` sees key ``k`` iff ``keep_src[k]`` or ``k == q``;
  - cross-attention: every decoder position sees the kept source positions; when none is kept the
    cross-attention's weighted sum of values is **zero** (the model has no source information, rather than some
    arbitrary one): rule 5 of :mod:`seqexplain.models.keep`, which states the whole keep-mask rule;
  - decoder self-attention: ``k <= q`` and (``keep_tgt[k]`` or ``k == q``).

  Position ids are always ``0..S-1`` / ``0..T-1``, so dropping a position equals deleting it with the original
  positions of the others kept — the semantics of :meth:`seqexplain.models.base.SequenceModel.score`;
* 4-D masks used as given: boolean (True = may attend) or additive float (``0`` / very negative; read as allowed
  where the value is above half the dtype's minimum), ``[B | 1, 1 | H, Lq, Lk]``. A 4-D ``attention_mask`` is the
  encoder's self-attention mask, except when ``encoder_outputs`` is given, where (as in Hugging Face models) it is the
  cross-attention mask ``[B, 1, T, S]``; ``cross_attention_mask`` (2-D keep or 4-D) overrides the cross-attention mask
  in every case. A query row with no allowed key gets a zero attention output. (So
  :func:`seqexplain.training.word_dropout.seq2seq_logits` runs this model as it runs Hugging Face ones.)

Outputs: :class:`Seq2SeqLMOutput` with ``logits [B, T, V]`` (``loss`` when ``labels`` are given, decoder inputs then
shifted from them as in Hugging Face models), and with ``output_attentions=True`` the per-layer weights
``encoder_attentions`` ``[B, H, S, S]``, ``decoder_attentions`` ``[B, H, T, T]`` and ``cross_attentions``
``[B, H, T, S]``. Class attribute ``seqexplain_kind = "seq2seq"``, so :func:`seqexplain.load_model` wraps it with a
tokenizer (:mod:`seqexplain.data.tokenizers`).

Persistence: :meth:`Seq2SeqTransformer.save` writes ``model.safetensors`` + ``config.json`` (atomically);
:func:`load_seq2seq` reads them back.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from safetensors.torch import load_model as st_load_model
from safetensors.torch import save_model as st_save_model
from torch import Tensor, nn

from seqexplain.atomic import atomic_path, atomic_write_text
from seqexplain.errors import InputError, ModelLoadError
from seqexplain.models import keep as keep_rule
from seqexplain.models.native import ConfigMixin, OutputMixin, check_drop_probabilities

MODEL_TYPE = "seqexplain-seq2seq"
CONFIG_NAME, WEIGHTS_NAME = "config.json", "model.safetensors"


@dataclass
class Seq2SeqConfig(ConfigMixin):
    """Hyper-parameters of :class:`Seq2SeqTransformer`."""

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
        for name in ("pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id"):
            if not 0 <= int(getattr(self, name)) < self.vocab_size:
                raise InputError(f"{name}={getattr(self, name)} is outside the vocabulary (size {self.vocab_size})")



@dataclass
class EncoderOutput(OutputMixin):
    """What :class:`Seq2SeqEncoder` returns (``out[0]`` is the last hidden state, as in Hugging Face)."""

    last_hidden_state: Tensor
    attentions: tuple[Tensor, ...] | None = None
    hidden_states: tuple[Tensor, ...] | None = None
    _order = ("last_hidden_state", "hidden_states", "attentions")


@dataclass
class Seq2SeqLMOutput(OutputMixin):
    """What :meth:`Seq2SeqTransformer.forward` returns (attribute access like a Hugging Face ``ModelOutput``;
    ``out[0]`` / ``out["loss"]`` also work)."""

    logits: Tensor
    loss: Tensor | None = None
    encoder_last_hidden_state: Tensor | None = None
    encoder_attentions: tuple[Tensor, ...] | None = None
    decoder_attentions: tuple[Tensor, ...] | None = None
    cross_attentions: tuple[Tensor, ...] | None = None
    decoder_hidden_states: tuple[Tensor, ...] | None = None
    encoder_hidden_states: tuple[Tensor, ...] | None = None
    _order = ("loss", "logits", "decoder_hidden_states", "decoder_attentions", "cross_attentions",
              "encoder_last_hidden_state", "encoder_hidden_states", "encoder_attentions")


# ----------------------------------------------------------------------------------------------------- masks
def encoder_keep_mask(keep: Tensor) -> Tensor:
    """Boolean ``[B, 1, S, S]``: query ``q`` sees key ``k`` iff ``keep[b, k]`` or ``k == q`` (rule 2 of
    :mod:`seqexplain.models.keep`)."""
    return keep_rule.self_attention_allowed(keep, causal=False)


def cross_keep_mask(keep: Tensor, n_target: int) -> Tensor:
    """Boolean ``[B, 1, T, S]``: every decoder position sees the kept source positions (none: rule 5, zero
    cross-attention output)."""
    return keep_rule.cross_attention_allowed(keep, n_target)


def decoder_keep_mask(keep: Tensor) -> Tensor:
    """Boolean ``[B, 1, T, T]``: query ``q`` sees key ``k`` iff ``k <= q`` and (``keep[b, k]`` or ``k == q``)."""
    return keep_rule.self_attention_allowed(keep, causal=True)


def _as_bool4(mask: Tensor, bsz: int, n_q: int, n_k: int, name: str) -> Tensor:
    """A 4-D mask given by the caller, as boolean (True = may attend)."""
    if mask.shape[-2:] != (n_q, n_k) or mask.shape[0] not in (1, bsz):
        raise InputError(f"4-D {name} has shape {tuple(mask.shape)}, expected [{bsz}, 1 or heads, {n_q}, {n_k}]")
    if mask.dtype == torch.bool:
        return mask
    if mask.is_floating_point():
        return mask > torch.finfo(mask.dtype).min / 2
    return mask != 0


def _self_mask(mask: Tensor | None, bsz: int, n: int, device: torch.device, causal: bool, name: str) -> Tensor:
    if mask is None:
        keep = torch.ones(1, n, dtype=torch.bool, device=device)
        return decoder_keep_mask(keep) if causal else encoder_keep_mask(keep)
    mask = mask.to(device)
    if mask.dim() == 2:
        if tuple(mask.shape) != (bsz, n) and tuple(mask.shape) != (1, n):
            raise InputError(f"{name} has shape {tuple(mask.shape)}, expected {(bsz, n)}")
        keep = mask != 0
        return decoder_keep_mask(keep) if causal else encoder_keep_mask(keep)
    if mask.dim() == 4:
        return _as_bool4(mask, bsz, n, n, name)
    raise InputError(f"{name} must be 2-D [B, L] (keep mask) or 4-D [B, 1, L, L], got {mask.dim()}-D")


def _cross_mask(mask: Tensor | None, bsz: int, n_t: int, n_s: int, device: torch.device, name: str) -> Tensor:
    if mask is None:
        return torch.ones(1, 1, n_t, n_s, dtype=torch.bool, device=device)
    mask = mask.to(device)
    if mask.dim() == 2:
        if mask.shape[1] != n_s or mask.shape[0] not in (1, bsz):
            raise InputError(f"{name} has shape {tuple(mask.shape)}, expected {(bsz, n_s)}")
        return cross_keep_mask(mask != 0, n_t)
    if mask.dim() == 4:
        return _as_bool4(mask, bsz, n_t, n_s, name)
    raise InputError(f"{name} must be 2-D [B, S] (keep mask) or 4-D [B, 1, T, S], got {mask.dim()}-D")


# ------------------------------------------------------------------------------------------------ modules
def sinusoidal_table(n_positions: int, dim: int) -> Tensor:
    """``[n_positions, dim]`` fixed position encodings: ``sin(p · w_i)`` in the first half of the dimensions,
    ``cos(p · w_i)`` in the second, ``w_i = 10000^(-i / (dim/2 - 1))`` (the fairseq / tensor2tensor layout)."""
    half = dim // 2
    scale = math.log(10000.0) / max(1, half - 1)
    freqs = torch.exp(torch.arange(half, dtype=torch.float32) * -scale)
    args = torch.arange(n_positions, dtype=torch.float32)[:, None] * freqs[None, :]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


class Attention(nn.Module):
    """Multi-head attention with a boolean mask; query rows with no allowed key output zero."""

    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        self.n_heads = config.n_heads
        self.head_dim = config.d_model // config.n_heads
        self.q = nn.Linear(config.d_model, config.d_model)
        self.kv = nn.Linear(config.d_model, 2 * config.d_model)
        self.out = nn.Linear(config.d_model, config.d_model)
        self.attn_drop = config.attention_dropout

    def forward(self, x: Tensor, memory: Tensor, allowed: Tensor,
                output_attentions: bool = False) -> tuple[Tensor, Tensor | None]:
        bsz, n_q, d = x.shape
        n_k = memory.shape[1]
        q = self.q(x).view(bsz, n_q, self.n_heads, self.head_dim).transpose(1, 2)
        k, v = self.kv(memory).view(bsz, n_k, 2, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        empty = ~allowed.any(-1, keepdim=True)  # [B|1, 1|H, Lq, 1]
        mask = allowed | empty  # an empty row attends everywhere, then its output is zeroed
        p = self.attn_drop if self.training else 0.0
        weights: Tensor | None = None
        if output_attentions:
            scores = (q @ k.transpose(-1, -2)) / math.sqrt(self.head_dim)
            scores = scores.masked_fill(~mask, float("-inf"))
            weights = torch.softmax(scores.float(), dim=-1).to(q.dtype).masked_fill(empty, 0.0)
            y = F.dropout(weights, p, self.training) @ v
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        y = y.masked_fill(empty, 0.0)
        return self.out(y.transpose(1, 2).reshape(bsz, n_q, d)), weights


def _ffn(config: Seq2SeqConfig) -> nn.Sequential:
    act: nn.Module = nn.ReLU() if config.activation == "relu" else nn.GELU()
    return nn.Sequential(nn.Linear(config.d_model, config.ffn_dim), act, nn.Dropout(config.dropout),
                         nn.Linear(config.ffn_dim, config.d_model))


class EncoderLayer(nn.Module):
    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        self.pre = config.norm == "pre"
        self.self_attn = Attention(config)
        self.ln_attn = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.ffn = _ffn(config)
        self.ln_ffn = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, h: Tensor, mask: Tensor, output_attentions: bool) -> tuple[Tensor, Tensor | None]:
        if self.pre:
            x = self.ln_attn(h)
            a, w = self.self_attn(x, x, mask, output_attentions)
            h = h + self.drop(a)
            return h + self.drop(self.ffn(self.ln_ffn(h))), w
        a, w = self.self_attn(h, h, mask, output_attentions)
        h = self.ln_attn(h + self.drop(a))
        return self.ln_ffn(h + self.drop(self.ffn(h))), w


class DecoderLayer(nn.Module):
    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        self.pre = config.norm == "pre"
        self.self_attn = Attention(config)
        self.cross_attn = Attention(config)
        self.ln_self = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.ln_cross = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.ffn = _ffn(config)
        self.ln_ffn = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, g: Tensor, memory: Tensor, self_mask: Tensor, cross_mask: Tensor,
                output_attentions: bool) -> tuple[Tensor, Tensor | None, Tensor | None]:
        if self.pre:
            x = self.ln_self(g)
            a, ws = self.self_attn(x, x, self_mask, output_attentions)
            g = g + self.drop(a)
            c, wc = self.cross_attn(self.ln_cross(g), memory, cross_mask, output_attentions)
            g = g + self.drop(c)
            return g + self.drop(self.ffn(self.ln_ffn(g))), ws, wc
        a, ws = self.self_attn(g, g, self_mask, output_attentions)
        g = self.ln_self(g + self.drop(a))
        c, wc = self.cross_attn(g, memory, cross_mask, output_attentions)
        g = self.ln_cross(g + self.drop(c))
        return self.ln_ffn(g + self.drop(self.ffn(g))), ws, wc


class _Stack(nn.Module):
    """Shared embedding logic of the encoder and the decoder."""

    def __init__(self, config: Seq2SeqConfig, embed_tokens: nn.Embedding) -> None:
        super().__init__()
        self.config = config
        self.embed_tokens = embed_tokens
        self.scale = math.sqrt(config.d_model) if config.scale_embeddings else 1.0
        self.embed_positions: nn.Embedding | None = None
        if config.positions == "learned":
            self.embed_positions = nn.Embedding(config.max_position_embeddings, config.d_model)
        else:
            self.register_buffer("sinusoids", sinusoidal_table(config.max_position_embeddings, config.d_model),
                                 persistent=False)
        self.drop = nn.Dropout(config.dropout)
        self.final_norm: nn.Module = (nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
                                      if config.norm == "pre" else nn.Identity())

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def _embed(self, input_ids: Tensor | None, inputs_embeds: Tensor | None, what: str) -> Tensor:
        if (input_ids is None) == (inputs_embeds is None):
            raise InputError(f"pass exactly one of {what}_ids and {what}s_embeds")
        x = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        n = x.shape[1]
        if n > self.config.max_position_embeddings:
            raise InputError(f"sequence of {n} tokens is longer than the model's "
                             f"{self.config.max_position_embeddings} positions; shorten it")
        if self.embed_positions is not None:
            pos = self.embed_positions(torch.arange(n, device=x.device))
        else:
            pos = self.sinusoids[:n].to(x.dtype)  # type: ignore[index]
        return self.drop(x * self.scale + pos)


class Seq2SeqEncoder(_Stack):
    """The encoder: ``forward(input_ids=None, attention_mask=None, inputs_embeds=None, output_attentions=False)``
    returns :class:`EncoderOutput` (``attention_mask``: 2-D keep mask or 4-D self-attention mask)."""

    def __init__(self, config: Seq2SeqConfig, embed_tokens: nn.Embedding) -> None:
        super().__init__(config, embed_tokens)
        self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.encoder_layers))

    def forward(self, input_ids: Tensor | None = None, attention_mask: Tensor | None = None,
                inputs_embeds: Tensor | None = None, output_attentions: bool = False,
                output_hidden_states: bool = False, **kwargs: Any) -> EncoderOutput:
        h = self._embed(input_ids, inputs_embeds, "input")
        mask = _self_mask(attention_mask, h.shape[0], h.shape[1], h.device, causal=False, name="attention_mask")
        attns: list[Tensor] = []
        states: list[Tensor] = [h] if output_hidden_states else []
        for layer in self.layers:
            h, w = layer(h, mask, output_attentions)
            if w is not None:
                attns.append(w)
            if output_hidden_states:
                states.append(h)
        h = self.final_norm(h)
        return EncoderOutput(h, tuple(attns) if output_attentions else None,
                             tuple(states) if output_hidden_states else None)


class Seq2SeqDecoder(_Stack):
    """The decoder: ``forward(input_ids=None, attention_mask=None, encoder_hidden_states=..., encoder_attention_mask=
    None, inputs_embeds=None, output_attentions=False)`` returns ``(hidden [B, T, D], self-attentions,
    cross-attentions, hidden states)``."""

    def __init__(self, config: Seq2SeqConfig, embed_tokens: nn.Embedding) -> None:
        super().__init__(config, embed_tokens)
        self.layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.decoder_layers))

    def forward(self, input_ids: Tensor | None = None, attention_mask: Tensor | None = None,
                encoder_hidden_states: Tensor | None = None, encoder_attention_mask: Tensor | None = None,
                inputs_embeds: Tensor | None = None, output_attentions: bool = False,
                output_hidden_states: bool = False, **kwargs: Any
                ) -> tuple[Tensor, tuple[Tensor, ...] | None, tuple[Tensor, ...] | None, tuple[Tensor, ...] | None]:
        if encoder_hidden_states is None:
            raise InputError("the decoder needs encoder_hidden_states")
        g = self._embed(input_ids, inputs_embeds, "input")
        bsz, n_t = g.shape[:2]
        self_mask = _self_mask(attention_mask, bsz, n_t, g.device, causal=True, name="decoder_attention_mask")
        cross = _cross_mask(encoder_attention_mask, bsz, n_t, encoder_hidden_states.shape[1], g.device,
                            "cross-attention mask")
        self_w: list[Tensor] = []
        cross_w: list[Tensor] = []
        states: list[Tensor] = [g] if output_hidden_states else []
        for layer in self.layers:
            g, ws, wc = layer(g, encoder_hidden_states, self_mask, cross, output_attentions)
            if ws is not None and wc is not None:
                self_w.append(ws)
                cross_w.append(wc)
            if output_hidden_states:
                states.append(g)
        g = self.final_norm(g)
        return (g, tuple(self_w) if output_attentions else None, tuple(cross_w) if output_attentions else None,
                tuple(states) if output_hidden_states else None)


class Seq2SeqTransformer(nn.Module):
    """Encoder-decoder transformer with the Hugging Face calling convention (see the module docstring)."""

    seqexplain_kind = "seq2seq"

    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.shared = nn.Embedding(c.vocab_size, c.d_model)
        dec_embed = self.shared if c.tie_embeddings else nn.Embedding(c.vocab_size, c.d_model)
        self.encoder = Seq2SeqEncoder(c, self.shared)
        self.decoder = Seq2SeqDecoder(c, dec_embed)
        self.lm_head = nn.Linear(c.d_model, c.vocab_size, bias=False)
        self.apply(self._init_weights)
        if c.tie_embeddings:
            self.lm_head.weight = self.shared.weight

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            std = self.config.d_model ** -0.5 if self.config.scale_embeddings else 0.02
            nn.init.normal_(module.weight, mean=0.0, std=std)

    # -- HF-style accessors ---------------------------------------------------------------------------------
    def get_encoder(self) -> Seq2SeqEncoder:
        return self.encoder

    def get_decoder(self) -> Seq2SeqDecoder:
        return self.decoder

    def get_input_embeddings(self) -> nn.Embedding:
        return self.shared

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    @property
    def max_positions(self) -> int:
        return self.config.max_position_embeddings

    def shift_right(self, labels: Tensor) -> Tensor:
        """Decoder inputs for ``labels``: the decoder start token, then the labels but the last (``-100`` → pad)."""
        start = torch.full_like(labels[:, :1], self.config.decoder_start_token_id)
        shifted = torch.cat([start, labels[:, :-1]], dim=1)
        return shifted.masked_fill(shifted == -100, self.config.pad_token_id)

    # -- forward --------------------------------------------------------------------------------------------
    def forward(
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        decoder_input_ids: Tensor | None = None,
        decoder_attention_mask: Tensor | None = None,
        inputs_embeds: Tensor | None = None,
        decoder_inputs_embeds: Tensor | None = None,
        encoder_outputs: Any = None,
        cross_attention_mask: Tensor | None = None,
        labels: Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        **kwargs: Any,
    ) -> Seq2SeqLMOutput:
        """Logits ``[B, T, V]`` of the decoder inputs (see the module docstring for the masks)."""
        if decoder_input_ids is None and decoder_inputs_embeds is None:
            if labels is None:
                raise InputError("pass decoder_input_ids (or decoder_inputs_embeds, or labels)")
            decoder_input_ids = self.shift_right(labels)
        enc_attn: tuple[Tensor, ...] | None = None
        enc_states: tuple[Tensor, ...] | None = None
        if encoder_outputs is None:
            enc = self.encoder(input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds,
                               output_attentions=output_attentions, output_hidden_states=output_hidden_states)
            memory, enc_attn, enc_states = enc.last_hidden_state, enc.attentions, enc.hidden_states
            if cross_attention_mask is None and attention_mask is not None and attention_mask.dim() == 4:
                raise InputError("with a 4-D encoder attention_mask also pass cross_attention_mask ([B, S] keep "
                                 "mask or [B, 1, T, S])")
            cross = cross_attention_mask if cross_attention_mask is not None else attention_mask
        else:
            memory = encoder_outputs[0] if isinstance(encoder_outputs, (tuple, list)) else \
                encoder_outputs.last_hidden_state
            enc_attn = getattr(encoder_outputs, "attentions", None)
            cross = cross_attention_mask if cross_attention_mask is not None else attention_mask
        hidden, dec_attn, cross_attn, dec_states = self.decoder(
            input_ids=decoder_input_ids, attention_mask=decoder_attention_mask, encoder_hidden_states=memory,
            encoder_attention_mask=cross, inputs_embeds=decoder_inputs_embeds, output_attentions=output_attentions,
            output_hidden_states=output_hidden_states)
        logits = self.lm_head(hidden)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1),
                                   ignore_index=-100)
        return Seq2SeqLMOutput(logits=logits, loss=loss, encoder_last_hidden_state=memory,
                               encoder_attentions=enc_attn if output_attentions else None,
                               decoder_attentions=dec_attn, cross_attentions=cross_attn,
                               decoder_hidden_states=dec_states, encoder_hidden_states=enc_states)

    # -- generation -----------------------------------------------------------------------------------------
    @torch.no_grad()
    def greedy_generate(self, sources: Sequence[Sequence[int]], max_new_tokens: int = 64, batch_size: int = 64,
                        max_len_a: float = 1.5, max_len_b: int = 10) -> list[list[int]]:
        """Greedy decoding of each source (token ids, usually ending with ``</s>``); returns the generated ids
        without the decoder start and without the final ``</s>``. Each output is at most
        ``min(max_new_tokens, max_len_a · len(source) + max_len_b)`` tokens. Sources are decoded in batches of
        ``batch_size``, sorted by length to limit padding; the encoder runs once per batch."""
        was_training = self.training
        self.eval()
        try:
            device = self.shared.weight.device
            order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
            out: list[list[int]] = [[] for _ in sources]
            limit_pos = self.config.max_position_embeddings
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                n_s = max(len(sources[i]) for i in idx)
                if n_s > limit_pos:
                    raise InputError(f"a source of {n_s} tokens exceeds the model's {limit_pos} positions")
                x = torch.full((len(idx), n_s), self.config.pad_token_id, dtype=torch.long, device=device)
                keep = torch.zeros(len(idx), n_s, dtype=torch.bool, device=device)
                for r, i in enumerate(idx):
                    x[r, : len(sources[i])] = torch.tensor(list(sources[i]), dtype=torch.long)
                    keep[r, : len(sources[i])] = True
                memory = self.encoder(input_ids=x, attention_mask=keep).last_hidden_state
                caps = torch.tensor([min(max_new_tokens, int(max_len_a * len(sources[i]) + max_len_b))
                                     for i in idx], device=device)
                steps = min(int(caps.max()), limit_pos - 1)
                dec = torch.full((len(idx), 1), self.config.decoder_start_token_id, dtype=torch.long, device=device)
                done = torch.zeros(len(idx), dtype=torch.bool, device=device)
                for step in range(steps):
                    hidden = self.decoder(input_ids=dec, encoder_hidden_states=memory, encoder_attention_mask=keep)[0]
                    nxt = self.lm_head(hidden[:, -1]).argmax(-1)
                    nxt = torch.where(done, torch.full_like(nxt, self.config.pad_token_id), nxt)
                    dec = torch.cat([dec, nxt[:, None]], dim=1)
                    done = done | (nxt == self.config.eos_token_id) | (caps <= step + 1)
                    if bool(done.all()):
                        break
                for r, i in enumerate(idx):
                    ids = dec[r, 1:].tolist()
                    cut = []
                    for t in ids[: int(caps[r])]:
                        if t in (self.config.eos_token_id, self.config.pad_token_id):
                            break
                        cut.append(int(t))
                    out[i] = cut
            return out
        finally:
            self.train(was_training)

    # -- persistence ----------------------------------------------------------------------------------------
    def save(self, directory: Path | str) -> Path:
        """Write ``model.safetensors`` and ``config.json`` into ``directory`` (atomically); return it."""
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        with atomic_path(path / WEIGHTS_NAME) as tmp:
            st_save_model(self, str(tmp))
        atomic_write_text(path / CONFIG_NAME, json.dumps(self.config.to_dict(), indent=2))
        return path


def load_seq2seq(directory: Path | str, device: str | torch.device | None = None) -> Seq2SeqTransformer:
    """Load a :class:`Seq2SeqTransformer` written by :meth:`Seq2SeqTransformer.save` (eval mode)."""
    path = Path(directory)
    cfg_file, weights = path / CONFIG_NAME, path / WEIGHTS_NAME
    if not cfg_file.is_file() or not weights.is_file():
        raise ModelLoadError(f"{path} needs {CONFIG_NAME} and {WEIGHTS_NAME} (written by Seq2SeqTransformer.save)")
    try:
        data = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"cannot read {cfg_file}: {exc}") from exc
    if data.get("model_type") != MODEL_TYPE:
        raise ModelLoadError(f"{cfg_file} describes a {data.get('model_type')!r} model, not {MODEL_TYPE!r}")
    try:
        config = Seq2SeqConfig.from_dict(data)
    except (TypeError, InputError) as exc:
        raise ModelLoadError(f"invalid configuration in {cfg_file}: {exc}") from exc
    model = Seq2SeqTransformer(config)
    try:
        missing, unexpected = st_load_model(model, str(weights), strict=False)
    except Exception as exc:  # corrupt or truncated file
        raise ModelLoadError(f"cannot read the weights in {weights}: {exc}") from exc
    if unexpected or [m for m in missing if m not in _tied_names(model)]:
        raise ModelLoadError(f"{weights} does not match its config (missing {missing}, unexpected {unexpected})")
    if not config.name_or_path:
        config.name_or_path = str(path)
    if device is not None:
        model.to(device)
    model.eval()
    return model


def _tied_names(model: Seq2SeqTransformer) -> set[str]:
    """Parameter names that share storage with another one (safetensors stores one of them)."""
    seen: dict[int, str] = {}
    tied: set[str] = set()
    for name, p in model.state_dict(keep_vars=True).items():
        ptr = p.data_ptr()
        if ptr in seen:
            tied.update({name, seen[ptr]})
        else:
            seen[ptr] = name
    return tied


def load_pretrained(directory: Path | str, device: str | torch.device | None = None) -> tuple[Seq2SeqTransformer, Any]:
    """``(model, tokenizer)`` from a folder holding both (as written by the translation trainer), ready for
    :func:`seqexplain.load_model` (``load_model(*load_pretrained(path))``)."""
    from seqexplain.data.tokenizers import load_tokenizer

    return load_seq2seq(directory, device), load_tokenizer(directory)
