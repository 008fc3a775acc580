"""The LSTM encoder-decoder with attention of Snell et al. (2021), with the Hugging Face calling convention, so
:class:`~seqexplain.models.hf_seq2seq.HFSeq2SeqLM` explains it (:class:`SnellTranslationAdapter`).

Architecture (:class:`SnellTranslatorConfig`): one embedding table ``E`` shared by source and target; a
``layers``-layer BiLSTM encoder (``hidden`` units per direction) gives ``e_s``; a ``layers``-layer LSTM decoder of
``2·hidden`` units starts from the encoder's final states (both directions concatenated, per layer) and reads the
previous target token, giving ``d_t``; attention ``α_t = softmax_s((W_q d_t) · e_s)`` over the kept source positions
(``uniform_attention``: the scores multiplied by 0, so ``α_t`` is uniform); context ``c_t = W_p Σ_s α_{t,s} e_s``;
output ``ReLU(W [d_t; c_t] + b)`` → vocabulary logits. Dropout (``dropout``) on embeddings and the output layer's
input; none in eval mode. The decoder does not read ``c_t`` back (no input feeding), so ``d_t`` does not depend on the
attention: the one-hot-attention scores ``β[t, s] = log p(y_t | α_t = onehot(s))`` (:meth:`SnellTranslator.beta`)
need no second pass.

Keep masks (rule 1 of :mod:`seqexplain.models.keep`: drop j = delete token j). ``attention_mask[B, S]`` and
``decoder_attention_mask[B, T]`` (1 keep, 0 drop; padding is a drop): each row's kept tokens are compacted to the left
and run through the LSTMs as packed sequences, so a dropped token is neither an RNN input nor an attention key;
decoder outputs return to their original positions (a dropped decoder position's output is zero: it is never read,
since a target is read at the last *kept* position before it). A row that keeps no source position has no attention
key: its context is zero and the decoder starts from zero states (rule 5).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from seqexplain.errors import InputError
from seqexplain.models.example import AttentionSegment, Example
from seqexplain.models.hf_seq2seq import HFSeq2SeqLM
from seqexplain.models.module_state import eval_mode
from seqexplain.models.native import ConfigMixin, OutputMixin, check_drop_probabilities, check_token_ids
from seqexplain.models.native_heads import compact, length_mask


@dataclass
class SnellTranslatorConfig(ConfigMixin):
    """Sizes and special ids of :class:`SnellTranslator`."""

    vocab_size: int
    emb_dim: int = 128
    hidden: int = 128
    layers: int = 2
    dropout: float = 0.1
    uniform_attention: bool = False
    pad_token_id: int = 0
    decoder_start_token_id: int = 1
    eos_token_id: int = 2
    is_encoder_decoder: bool = True

    def __post_init__(self) -> None:
        if min(self.vocab_size, self.emb_dim, self.hidden, self.layers) < 1:
            raise InputError("vocab_size, emb_dim, hidden and layers must be positive")
        check_drop_probabilities(self, "dropout")
        check_token_ids(self, "pad_token_id", "decoder_start_token_id", "eos_token_id")


@dataclass
class TranslatorOutput(OutputMixin):
    """``logits [B, T, V]``; ``cross_attentions``: a one-layer tuple of ``α`` as ``[B, 1, T, S]``."""

    logits: Tensor
    cross_attentions: tuple[Tensor, ...] | None = None
    encoder_attentions: tuple[Tensor, ...] | None = None
    decoder_attentions: tuple[Tensor, ...] | None = None
    _order = ("logits", "cross_attentions")


class Memory(NamedTuple):
    """Encoder results: ``states [B, S, 2H]`` at the original source positions, ``keep [B, S]``, decoder start
    ``(h0, c0)`` each ``[layers, B, 2H]``."""

    states: Tensor
    keep: Tensor
    h0: Tensor
    c0: Tensor


def _scatter_back(x: Tensor, order: Tensor, lengths: Tensor, n: int) -> Tensor:
    """Rows of compacted steps ``x[B, m, D]`` put back at their original positions ``order`` (zeros elsewhere)."""
    out = x.new_zeros(x.shape[0], n, x.shape[-1])
    m = x.shape[1]
    real = length_mask(lengths, m).unsqueeze(-1)
    out.scatter_(1, order[:, :m].unsqueeze(-1).expand(-1, -1, x.shape[-1]), x * real)
    return out


class SnellTranslator(nn.Module):
    """The LSTM encoder-decoder of the module docstring."""

    seqexplain_kind = "seq2seq"

    def __init__(self, config: SnellTranslatorConfig) -> None:
        super().__init__()
        self.config = config
        h2 = 2 * config.hidden
        self.embed_tokens = nn.Embedding(config.vocab_size, config.emb_dim)
        drop = config.dropout if config.layers > 1 else 0.0
        self.encoder = nn.LSTM(config.emb_dim, config.hidden, config.layers, batch_first=True, bidirectional=True,
                               dropout=drop)
        self.decoder = nn.LSTM(config.emb_dim, h2, config.layers, batch_first=True, dropout=drop)
        self.w_q = nn.Linear(h2, h2, bias=False)
        self.w_p = nn.Linear(h2, h2, bias=False)
        self.w_out = nn.Linear(2 * h2, h2)
        self.vocab = nn.Linear(h2, config.vocab_size)
        self.drop = nn.Dropout(config.dropout)

    # HF-convention accessors (the adapter reads the embedding layer through them)
    def get_encoder(self) -> SnellTranslator:
        return self

    def get_decoder(self) -> SnellTranslator:
        return self

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    # ------------------------------------------------------------------ pieces
    def encode(self, x: Tensor, keep: Tensor | None = None) -> Memory:
        """Encoder over embeddings ``x[B, S, D]`` with ``keep[B, S]`` (None: all kept)."""
        b, s = x.shape[0], x.shape[1]
        keep = torch.ones(b, s, dtype=torch.bool, device=x.device) if keep is None else keep.bool()
        moved, lengths, order = compact(self.drop(x), keep)
        empty = lengths == 0
        out, (h, c) = self.encoder(nn.utils.rnn.pack_padded_sequence(
            moved, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False))
        out = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=s)[0]
        states = _scatter_back(out, order, lengths, s)

        def join(z: Tensor) -> Tensor:  # [layers·2, B, H] → [layers, B, 2H], empty rows zeroed
            z = z.view(self.config.layers, 2, b, -1)
            return torch.cat([z[:, 0], z[:, 1]], dim=-1) * (~empty).view(1, -1, 1).to(z.dtype)

        return Memory(states, keep, join(h), join(c))

    def decode_states(self, y: Tensor, memory: Memory, keep: Tensor | None = None,
                      state: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """Decoder states ``d [B, T, 2H]`` for target-input embeddings ``y[B, T, D]`` (``keep``: decoder keep mask;
        ``state``: continue from it instead of the encoder's final states) and the final state."""
        start = (memory.h0, memory.c0) if state is None else state
        if keep is None:
            d, last = self.decoder(self.drop(y), start)
            return d, last
        moved, lengths, order = compact(self.drop(y), keep.bool())
        packed = nn.utils.rnn.pack_padded_sequence(moved, lengths.clamp(min=1).cpu(), batch_first=True,
                                                   enforce_sorted=False)
        out, last = self.decoder(packed, start)
        out = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=y.shape[1])[0]
        return _scatter_back(out, order, lengths, y.shape[1]), last

    def attention(self, d: Tensor, memory: Memory) -> Tensor:
        """``α [B, T, S]`` over the kept source positions (all zero for a row that keeps none)."""
        scores = torch.einsum("btk,bsk->bts", self.w_q(d), memory.states)
        if self.config.uniform_attention:
            scores = scores * 0.0
        scores = scores.masked_fill(~memory.keep.unsqueeze(1), float("-inf"))
        alpha = torch.softmax(scores, dim=-1)
        return torch.nan_to_num(alpha, nan=0.0)

    def output(self, d: Tensor, context: Tensor) -> Tensor:
        """Vocabulary logits of ``ReLU(W [d; W_p context] + b)``."""
        return self.vocab(self.drop(torch.relu(self.w_out(torch.cat([d, self.w_p(context)], dim=-1)))))

    def beta(self, d: Tensor, memory: Memory, targets: Tensor) -> Tensor:
        """``β [B, T, S] = log p(y_t | α_t = onehot(s))`` for ``targets [B, T]`` (kept source positions only;
        NaN elsewhere)."""
        n_b, n_t, n_s = d.shape[0], d.shape[1], memory.states.shape[1]
        ctx = memory.states.unsqueeze(1).expand(n_b, n_t, n_s, -1)
        logp = torch.log_softmax(self.output(d.unsqueeze(2).expand(-1, -1, n_s, -1), ctx).float(), dim=-1)
        got = logp.gather(-1, targets.view(n_b, n_t, 1, 1).expand(-1, -1, n_s, 1)).squeeze(-1)
        return got.masked_fill(~memory.keep.unsqueeze(1), float("nan"))

    # ------------------------------------------------------------------ forward
    def forward(self, input_ids: Tensor | None = None, attention_mask: Tensor | None = None,
                decoder_input_ids: Tensor | None = None, decoder_attention_mask: Tensor | None = None,
                inputs_embeds: Tensor | None = None, decoder_inputs_embeds: Tensor | None = None,
                output_attentions: bool = False, **_: Any) -> TranslatorOutput:
        """Logits ``[B, T, V]`` of the decoder inputs (masks: module docstring)."""
        x = self._embed(input_ids, inputs_embeds, "source")
        y = self._embed(decoder_input_ids, decoder_inputs_embeds, "decoder")
        memory = self.encode(x, attention_mask)
        d, _ = self.decode_states(y, memory, decoder_attention_mask)
        alpha = self.attention(d, memory)
        logits = self.output(d, torch.bmm(alpha, memory.states))
        return TranslatorOutput(logits, (alpha.unsqueeze(1),) if output_attentions else None)

    def _embed(self, ids: Tensor | None, embeds: Tensor | None, what: str) -> Tensor:
        if embeds is not None:
            return embeds
        if ids is None:
            raise InputError(f"pass the {what} ids or embeddings")
        return self.embed_tokens(ids)

    @torch.no_grad()
    def beam_search(self, src: list[int], beam: int = 5, max_len: int = 60) -> list[int]:
        """The highest-scoring translation of ``src`` (ids) by beam search: hypotheses ranked by total
        log-probability divided by their length (ending with ``</s>``, which is not returned). A hypothesis still
        open after ``max_len`` steps competes as it is; :meth:`beam_search_ended` tells whether the answer did."""
        return self.beam_search_ended(src, beam, max_len)[0]

    @torch.no_grad()
    def beam_search_ended(self, src: list[int], beam: int = 5, max_len: int = 60) -> tuple[list[int], bool]:
        """:meth:`beam_search` and whether its translation ended with ``</s>`` (False: cut off at ``max_len``).
        Decodes in eval mode (no dropout), every module's mode restored afterwards."""
        if beam < 1:
            raise InputError(f"beam must be at least 1, got {beam}")
        with eval_mode(self):
            return self._beam_search(src, beam, max_len)

    def _beam_search(self, src: list[int], beam: int, max_len: int) -> tuple[list[int], bool]:
        dev = self.embed_tokens.weight.device
        memory = self.encode(self.embed_tokens(torch.tensor([src], device=dev)))
        cfg = self.config
        live: list[tuple[float, list[int], tuple[Tensor, Tensor]]] = [
            (0.0, [cfg.decoder_start_token_id], (memory.h0, memory.c0))]
        done: list[tuple[float, list[int], bool]] = []
        for _ in range(max_len):
            cands = []
            for score, seq, state in live:
                last = self.embed_tokens(torch.tensor([[seq[-1]]], device=dev))
                d, new = self.decode_states(last, memory, state=state)
                ctx = torch.bmm(self.attention(d, memory), memory.states)
                logp = torch.log_softmax(self.output(d, ctx)[0, 0].float(), -1)
                top = torch.topk(logp, beam)
                cands += [(score + float(v), [*seq, int(i)], new) for v, i in zip(top.values, top.indices,
                                                                                 strict=True)]
            cands.sort(key=lambda c: -c[0])
            live = []
            for score, seq, state in cands:
                if seq[-1] == cfg.eos_token_id:
                    done.append((score / (len(seq) - 1), seq[1:-1], True))
                else:
                    live.append((score, seq, state))
                if len(live) == beam:
                    break
            if len(done) >= beam or not live:
                break
        done += [(score / (len(seq) - 1), seq[1:], False) for score, seq, _ in live]
        best = max(done, key=lambda d: d[0])
        return best[1], best[2]


class SnellTranslationAdapter(HFSeq2SeqLM):
    """:class:`HFSeq2SeqLM` for :class:`SnellTranslator`: the same input axis, targets and keep-mask handling; the
    attention view is the cross-attention ``α`` over the source, and zero over the decoder tokens (the decoder has no
    attention over them: it reads them only through its recurrence); rollout is undefined."""

    def attention_view(self, example: Example) -> list[AttentionSegment]:
        """``α`` of the whole example (token ids, or precomputed vectors fed as the embeddings, as
        :meth:`HFSeq2SeqLM.attention_view` does) in eval mode."""
        s, m = example.n_source, example.n_targets
        inputs = {**self.span_inputs(example, 0, s), **self.span_inputs(example, s, s + m, prefix="decoder_")}
        with torch.no_grad(), eval_mode(self.model), self._autocast():
            out = self.model(**inputs, output_attentions=True)
        rows = list(range(m))
        return [AttentionSegment(0, s, [out.cross_attentions[0][0, 0].double()], rows, rollout=False),
                AttentionSegment(s, s + m, [torch.zeros(m, m, dtype=torch.float64, device=self.device)], rows,
                                 rollout=False)]


__all__ = ["SnellTranslator", "SnellTranslatorConfig", "SnellTranslationAdapter"]
