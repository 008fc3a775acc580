"""The BiLSTM additive-attention classifier of Snell et al. (2021), "Approximating How Single Head Attention Learns",
and its adapter.

**Model.** ``x_t`` (embeddings) → BiLSTM ``h_t`` → attention logit ``e_t = w₂ᵀ ReLU(W₁ h_t + b₁) + b₂`` and per-token
score ``β_t = W_β h_t + b_β`` (one value for a binary task, one per class otherwise) → ``α = softmax(e)`` over the real
tokens → ``s = Σ_t α_t β_t``. Binary: ``s`` is the logit of the positive class (BCE loss); the adapter's class
logits are ``[0, s]``, whose log-softmax is ``[log σ(−s), log σ(s)]``, so cross-entropy over them *is* the BCE.
Multi-class: ``s ∈ R^C`` are the class logits (cross-entropy). ``uniform_attention``: ``e`` is multiplied by 0, so
``α_t = 1/n`` over the ``n`` real tokens (``<bos>`` and ``<eos>`` included): the "uniform" run of the paper.

**Tokens.** :class:`BosEosTokenizer` wraps each text as ``<bos> words <eos>``, as the paper's models read it.

**Adapter.** :class:`SnellClassifierAdapter` is a :class:`~seqexplain.models.native_heads.PoolingClassifierAdapter`
(its keep-mask rule: a dropped token is deleted from the LSTM's input; nothing kept reads position 0), so every
seqexplain method runs on this model; its attention view is ``α``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn

from seqexplain.errors import InputError
from seqexplain.models.native import ConfigMixin
from seqexplain.models.native_heads import PoolingClassifierAdapter, length_mask, run_lstm
from seqexplain.models.rnn.vocab import Vocab, WordTokenizer


@dataclass
class SnellClassifierConfig(ConfigMixin):
    """Sizes of :class:`SnellClassifier`; ``n_classes == 2`` is the binary (one-β) model."""

    vocab_size: int
    n_classes: int = 2
    emb_dim: int = 64
    hidden: int = 64
    attn_dim: int = 64
    uniform_attention: bool = False

    def __post_init__(self) -> None:
        if self.n_classes < 2:
            raise InputError(f"a classifier needs at least 2 classes, got {self.n_classes}")
        if min(self.vocab_size, self.emb_dim, self.hidden, self.attn_dim) < 1:
            raise InputError("vocab_size, emb_dim, hidden and attn_dim must be positive")

    @property
    def n_beta(self) -> int:
        """Width of ``β_t``: 1 for a binary task, else one per class."""
        return 1 if self.n_classes == 2 else self.n_classes


class SnellParts(NamedTuple):
    """The pieces of one forward: ``alpha [N, n]`` (zero at padding), ``beta [N, n, K]`` (zero at padding),
    ``s [N, K]`` (``K = 1`` binary, else ``C``)."""

    alpha: Tensor
    beta: Tensor
    s: Tensor


class SnellClassifier(nn.Module):
    """Embeddings → BiLSTM → (α, β) → ``s = Σ α β`` (module docstring)."""

    def __init__(self, config: SnellClassifierConfig) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.emb_dim)
        self.lstm = nn.LSTM(config.emb_dim, config.hidden, batch_first=True, bidirectional=True)
        self.attn_in = nn.Linear(2 * config.hidden, config.attn_dim)  # W₁, b₁
        self.attn_out = nn.Linear(config.attn_dim, 1)  # w₂, b₂
        self.beta = nn.Linear(2 * config.hidden, config.n_beta)  # W_β, b_β

    @property
    def binary(self) -> bool:
        return self.config.n_classes == 2

    def parts(self, x: Tensor, lengths: Tensor | None = None) -> SnellParts:
        """``α, β, s`` for inputs ``x[N, n, D]`` with ``lengths[N]`` real steps per row (None: all real)."""
        h = run_lstm(self.lstm, x, lengths)
        e = self.attn_out(torch.relu(self.attn_in(h))).squeeze(-1)
        if self.config.uniform_attention:
            e = e * 0.0
        beta = self.beta(h)
        if lengths is not None:
            real = length_mask(lengths.to(e.device), x.shape[1])
            e = e.masked_fill(~real, float("-inf"))
            beta = beta * real.unsqueeze(-1).to(beta.dtype)
        alpha = torch.softmax(e, dim=-1)
        return SnellParts(alpha, beta, (alpha.unsqueeze(-1) * beta).sum(1))

    def class_logits(self, s: Tensor) -> Tensor:
        """``[N, C]`` class logits from ``s``: ``[0, s]`` for a binary model, ``s`` itself otherwise."""
        return torch.cat([torch.zeros_like(s), s], dim=-1) if self.binary else s

    def forward_embeds(self, x: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(class logits [N, C], α [N, n])`` (the pooling-classifier contract of the adapter)."""
        p = self.parts(x, lengths)
        return self.class_logits(p.s), p.alpha

    def forward(self, input_ids: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """:meth:`forward_embeds` of the ids' embeddings."""
        return self.forward_embeds(self.embedding(input_ids), lengths)


class BosEosTokenizer(WordTokenizer):
    """A :class:`WordTokenizer` that reads each text as ``<bos> words <eos>`` (specials have no offsets)."""

    def __init__(self, vocab: Vocab) -> None:
        super().__init__(vocab, add_bos=True)

    def tokenize_with_offsets(self, text: str, add_special_tokens: bool = True
                              ) -> tuple[list[int], list[str], list[tuple[int, int] | None]]:
        ids, tokens, offsets = super().tokenize_with_offsets(text, add_special_tokens)
        if add_special_tokens:
            ids, tokens, offsets = ids + [self.eos_token_id], tokens + [self.vocab.itos[self.eos_token_id]], \
                offsets + [None]
        return ids, tokens, offsets

    def encode_words(self, words: list[str] | tuple[str, ...]) -> list[int]:
        """Ids of ``<bos> words <eos>`` (unknown words → ``<unk>``)."""
        unk = self.unk_token_id
        return [self.bos_token_id, *(self.vocab.stoi.get(w, unk) for w in words), self.eos_token_id]


def pad_batch(seqs: Sequence[Sequence[int]], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids [N, n], lengths [N])`` of token-id lists padded with ``pad_id`` (padding is never read)."""
    n = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), n), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.as_tensor(list(s), dtype=torch.long)
    return ids, torch.tensor([len(s) for s in seqs])


class SnellClassifierAdapter(PoolingClassifierAdapter):
    """Adapter of :class:`SnellClassifier`: the pooling-classifier adapter's keep-mask rule and questions; the
    attention view is ``α`` (exactly uniform for a uniform-attention model)."""

    kind = "classifier"
