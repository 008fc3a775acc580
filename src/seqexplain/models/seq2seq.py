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

This module holds the model (:class:`Seq2SeqTransformer`, its output, greedy decoding, saving and loading); the
encoder and decoder stacks, their layers and masks are in :mod:`seqexplain.models.seq2seq_layers`, the
hyper-parameters in :mod:`seqexplain.models.seq2seq_config`. :class:`Seq2SeqConfig`, the model's constructor
argument, is public here too (re-exported: ``from seqexplain.models.seq2seq import Seq2SeqConfig`` works).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import save_model as st_save_model
from torch import Tensor, nn

from seqexplain.atomic import atomic_path, atomic_write_text
from seqexplain.errors import InputError, ModelLoadError
from seqexplain.models.module_state import eval_mode
from seqexplain.models.native import OutputMixin, build_from_config, load_safetensors_weights, read_config_json
from seqexplain.models.seq2seq_config import MODEL_TYPE, Seq2SeqConfig
from seqexplain.models.seq2seq_layers import Seq2SeqDecoder, Seq2SeqEncoder

CONFIG_NAME, WEIGHTS_NAME = "config.json", "model.safetensors"


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
        ``batch_size``, sorted by length to limit padding; the encoder runs once per batch. Runs in eval mode, every
        module's own mode restored afterwards."""
        with eval_mode(self):
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
    data = read_config_json(cfg_file)
    if data.get("model_type") != MODEL_TYPE:
        raise ModelLoadError(f"{cfg_file} describes a {data.get('model_type')!r} model, not {MODEL_TYPE!r}")
    model = build_from_config(lambda: Seq2SeqTransformer(Seq2SeqConfig.from_dict(data)), cfg_file)
    config = model.config
    load_safetensors_weights(model, weights)
    if not config.name_or_path:
        config.name_or_path = str(path)
    if device is not None:
        model.to(device)
    model.eval()
    return model


def load_pretrained(directory: Path | str, device: str | torch.device | None = None) -> tuple[Seq2SeqTransformer, Any]:
    """``(model, tokenizer)`` from a folder holding both (as written by the translation trainer), ready for
    :func:`seqexplain.load_model` (``load_model(*load_pretrained(path))``)."""
    from seqexplain.data.tokenizers import load_tokenizer

    return load_seq2seq(directory, device), load_tokenizer(directory)


__all__ = ["Seq2SeqConfig", "Seq2SeqLMOutput", "Seq2SeqTransformer", "load_pretrained", "load_seq2seq"]
