"""Soft-attention sentence classifiers whose attention labels tokens (Rei & Søgaard 2018; Bujel et al. 2021).

**Head** (:class:`SoftAttentionHead`) over token vectors ``h_i`` (after dropout):

* evidence ``ẽ_i = w_aᵀ tanh(W_e h_i + b_e) + b_a``;
* unnormalised token score ``a_i = σ(ẽ_i)`` (``activation="soft"``) or ``exp(ẽ_i)`` (``"sharp"``), set to 0 at
  positions that are not attended (padding, special tokens);
* weights ``â_i = a_i / Σ_j a_j`` (or ``a_i² / Σ_j a_j²`` with ``square_attention``); a row with nothing attended
  gets all-zero weights;
* sentence vector ``s = Σ_i â_i h_i`` → ``tanh(W_f s + b_f)`` → output logits ``[C]``.

``a_i`` are the token scores (the zero-shot labels); :class:`SoftAttentionOutput` returns them as computed inside
the forward, so explanations read the module's own values.

**Encoder model** (:class:`SoftAttentionClassifier`): any Hugging Face encoder (``AutoModel``) + the head, in the
Hugging Face calling convention (``input_ids`` / ``inputs_embeds``, ``attention_mask``, ``position_ids``), so the
library's :class:`~seqexplain.models.hf_classifier.HFClassifier` packing of keep-masks applies unchanged.
**Special tokens are never attended** by default: which positions are special comes from the tokenizer (a
``special_tokens_mask`` input, which :class:`SoftAttentionAdapter` derives from the tokenizer's offsets; without it,
from the tokenizer's ``all_special_ids``), never from hard-coded ids. ``attend_final_special=True`` reproduces the
original code's quirk: the last real position (``[SEP]`` / ``</s>``) is attended.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from seqexplain.errors import InputError
from seqexplain.models.example import Example
from seqexplain.models.hf_classifier import HFClassifier
from seqexplain.models.module_state import eval_mode
from seqexplain.models.tokenization import Tokenized

ACTIVATIONS = ("soft", "sharp")
INITIALIZERS = {"glorot": nn.init.xavier_normal_, "xavier": nn.init.xavier_uniform_, "normal": nn.init.normal_}


class SoftAttentionHead(nn.Module):
    """The soft-attention composition and output layers (module docstring)."""

    def __init__(self, hidden: int, n_labels: int = 2, evidence_size: int = 100, final_hidden: int = 300,
                 activation: str = "soft", square_attention: bool = False, dropout: float = 0.1,
                 initializer: str = "glorot") -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise InputError(f"attention_activation is one of {', '.join(ACTIVATIONS)}, not {activation!r}")
        if initializer not in INITIALIZERS:
            raise InputError(f"initializer is one of {', '.join(INITIALIZERS)}, not {initializer!r}")
        self.activation = activation
        self.square_attention = square_attention
        self.dropout = nn.Dropout(dropout)
        self.evidence = nn.Linear(hidden, evidence_size)  # W_e, b_e
        self.weight = nn.Linear(evidence_size, 1)  # w_a, b_a
        self.final = nn.Linear(hidden, final_hidden)  # W_f, b_f
        self.output = nn.Linear(final_hidden, n_labels)
        for layer in (self.evidence, self.weight, self.final, self.output):
            INITIALIZERS[initializer](layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, h: Tensor, attend: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(logits [N, C], a [N, L], â [N, L])`` for token vectors ``h[N, L, H]`` and ``attend[N, L]`` (bool:
        positions that may be attended)."""
        x = self.dropout(h)
        e = self.weight(torch.tanh(self.evidence(x))).squeeze(-1)
        a = torch.sigmoid(e) if self.activation == "soft" else torch.exp(e)
        a = torch.where(attend, a, torch.zeros_like(a))
        w = a * a if self.square_attention else a
        w = w / w.sum(-1, keepdim=True).clamp_min(torch.finfo(w.dtype).tiny)
        s = (w.unsqueeze(-1) * x).sum(1)
        return self.output(torch.tanh(self.final(s))), a, w


@dataclass
class SoftAttentionOutput:
    """``logits [N, C]``; ``token_scores [N, L]`` (``a_i``); ``weights [N, L]`` (``â_i``); ``attend [N, L]``;
    ``attentions``: the encoder's per-layer attentions when asked for."""

    logits: Tensor
    token_scores: Tensor
    weights: Tensor
    attend: Tensor
    attentions: tuple[Tensor, ...] | None = None


class SoftAttentionClassifier(nn.Module):
    """A Hugging Face encoder + :class:`SoftAttentionHead` (module docstring)."""

    seqexplain_kind = "classifier"

    def __init__(self, encoder: nn.Module, head: SoftAttentionHead, special_ids: Sequence[int],
                 labels: Sequence[str] = ("negative", "positive"), attend_final_special: bool = False) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.attend_final_special = attend_final_special
        self.register_buffer("special_ids", torch.tensor(sorted(set(int(i) for i in special_ids)), dtype=torch.long),
                             persistent=False)
        self.config = encoder.config
        self.config.id2label = dict(enumerate(labels))
        self.config.label2id = {name: i for i, name in enumerate(labels)}
        self.config.num_labels = len(labels)

    def get_input_embeddings(self) -> nn.Module:
        return self.encoder.get_input_embeddings()

    def set_attn_implementation(self, implementation: str) -> None:
        self.encoder.set_attn_implementation(implementation)

    def attend_mask(self, attention_mask: Tensor, special: Tensor) -> Tensor:
        """``[N, L]`` bool: real, non-special positions (plus the last real position with
        ``attend_final_special``). Rows are right-padded."""
        real = attention_mask.bool()
        attend = real & ~special.bool()
        if self.attend_final_special:
            last = real.long().sum(1).clamp_min(1) - 1
            attend = attend.clone()
            attend[torch.arange(attend.shape[0], device=attend.device), last] = True
            attend &= real
        return attend

    def forward(self, input_ids: Tensor | None = None, attention_mask: Tensor | None = None,
                position_ids: Tensor | None = None, token_type_ids: Tensor | None = None,
                inputs_embeds: Tensor | None = None, special_tokens_mask: Tensor | None = None,
                output_attentions: bool = False, **_: Any) -> SoftAttentionOutput:
        ref = input_ids if input_ids is not None else inputs_embeds
        if ref is None:
            raise InputError("give input_ids or inputs_embeds")
        shape = ref.shape[:2]
        if attention_mask is None:
            attention_mask = torch.ones(shape, dtype=torch.long, device=ref.device)
        if special_tokens_mask is None:
            special_tokens_mask = (torch.isin(input_ids, self.special_ids) if input_ids is not None
                                   else torch.zeros(shape, dtype=torch.bool, device=ref.device))
        kwargs: dict[str, Any] = {"attention_mask": attention_mask}
        if position_ids is not None:
            kwargs["position_ids"] = position_ids
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        if output_attentions:
            kwargs["output_attentions"] = True
        out = self.encoder(input_ids=input_ids, inputs_embeds=inputs_embeds, **kwargs)
        attend = self.attend_mask(attention_mask, special_tokens_mask)
        logits, a, w = self.head(out.last_hidden_state, attend)
        return SoftAttentionOutput(logits, a, w, attend, getattr(out, "attentions", None))


class SoftAttentionAdapter(HFClassifier):
    """:class:`HFClassifier` for a :class:`SoftAttentionClassifier`: every example carries its
    ``special_tokens_mask`` (from the tokenizer's offsets: a position without a character span is special) as an
    extra input, packed with the kept positions like any other; :meth:`token_scores` reads ``a_i``.

    ``max_length``: the longest input (e.g. the training ``max_seq_length``); a longer one is an
    :class:`InputError`, or with ``truncate=True`` (here, or per :meth:`encode` call) cut at the end with a warning
    that the example and every result made from it carry."""

    def __init__(self, model: SoftAttentionClassifier, tokenizer: Any, model_id: str | None = None,
                 max_length: int | None = None, truncate: bool = False) -> None:
        super().__init__(model, tokenizer, model_id or "soft-attention", head_position="first")
        self.max_length = max_length
        self.truncate = truncate

    def max_positions(self) -> int | None:
        """``max_length`` when set (the training length, e.g. the original's ``max_seq_length``), capped by the
        encoder's position embeddings."""
        own = super().max_positions()
        if self.max_length is None:
            return own
        return self.max_length if own is None else min(own, self.max_length)

    def encode_inputs(self, texts: Sequence[Any], *, truncate: bool = False, **options: Any) -> list[Example]:
        """:meth:`HFClassifier.encode_inputs`, cut to ``max_length`` when the adapter was built with
        ``truncate=True``."""
        return super().encode_inputs(texts, truncate=truncate or self.truncate, **options)

    def input_example(self, text: str, src: Tokenized, warnings: list[str]) -> Example:
        """The example with a placeholder label and its ``special_tokens_mask``."""
        ex = super().input_example(text, src, warnings)
        special = torch.tensor([o is None for o in src.offsets], dtype=torch.long)
        return ex.replace(extra={"special_tokens_mask": special})

    def forward_example(self, example: Example, output_attentions: bool = False) -> SoftAttentionOutput:
        """One forward of the whole example (eval mode, no gradient)."""
        assert example.input_ids is not None
        ids = example.input_ids.to(self.device).unsqueeze(0)
        kwargs = {k: v.to(self.device).unsqueeze(0) for k, v in example.extra.items()}
        with torch.no_grad(), eval_mode(self.model):
            if output_attentions:
                from seqexplain.models.hf_module import eager_attention

                with eager_attention(self.model):
                    return self.model(input_ids=ids, attention_mask=torch.ones_like(ids), output_attentions=True,
                                      **kwargs)
            return self.model(input_ids=ids, attention_mask=torch.ones_like(ids), **kwargs)

    def token_scores(self, example: Example) -> np.ndarray:
        """``a_i`` at every position of the example (0 at positions that are not attended)."""
        return self.forward_example(example).token_scores[0].float().cpu().numpy()
