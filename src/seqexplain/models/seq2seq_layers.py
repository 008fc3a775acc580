"""The encoder and decoder stacks of :class:`~seqexplain.models.seq2seq.Seq2SeqTransformer` and their parts.

* Masks: the model's 2-D keep masks as boolean attention masks (:func:`encoder_keep_mask`, :func:`cross_keep_mask`,
  :func:`decoder_keep_mask`, all from the one keep-mask rule of :mod:`seqexplain.models.keep`) and a caller's 4-D
  masks read as boolean (True = may attend); the calling convention is stated in :mod:`seqexplain.models.seq2seq`.
* Modules: :func:`sinusoidal_table` (fixed positions), :class:`Attention` (multi-head, a query row with no allowed
  key outputs zero), :class:`EncoderLayer` / :class:`DecoderLayer` (pre- or post-LN), and the stacks
  :class:`Seq2SeqEncoder` (returns :class:`EncoderOutput`) and :class:`Seq2SeqDecoder`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqexplain.errors import InputError
from seqexplain.models import keep as keep_rule
from seqexplain.models.native import OutputMixin
from seqexplain.models.seq2seq_config import Seq2SeqConfig


@dataclass
class EncoderOutput(OutputMixin):
    """What :class:`Seq2SeqEncoder` returns (``out[0]`` is the last hidden state, as in Hugging Face)."""

    last_hidden_state: Tensor
    attentions: tuple[Tensor, ...] | None = None
    hidden_states: tuple[Tensor, ...] | None = None
    _order = ("last_hidden_state", "hidden_states", "attentions")


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
