"""The Rei & Søgaard (2018) labeller: a BiLSTM over word embeddings (optionally with character features) under
the same :class:`~seqexplain.models.soft_attention.SoftAttentionHead`.

Model (:class:`SoftAttentionBiLSTM`): word vector ``x_t`` = word embedding, concatenated with the final states of a
character BiLSTM over the word's characters when ``char_dim > 0`` (:class:`WordCharEmbedding`, one vector per word
id, so gradient methods differentiate the whole word vector) → BiLSTM ``h_t`` → (``word_hidden > 0``)
``tanh(W h_t + b)`` (mltagger's ``whidden_layer_size``) → soft-attention head. Every word is attended (there are
no special tokens).

Words are normalised before lookup (:class:`NormalisingWordTokenizer`: lower-cased and digits → ``0`` by default,
as mltagger's ``lowercase`` / ``replace_digits``). The adapter is
:class:`~seqexplain.models.native_heads.PoolingClassifierAdapter` (keep-masks delete words; the label sees every
word; the attention view is ``â``) with :meth:`SoftAttentionLSTMAdapter.token_scores` reading ``a_i``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from seqexplain.models.example import Example
from seqexplain.models.module_state import eval_mode
from seqexplain.models.native_heads import PoolingClassifierAdapter, length_mask, run_lstm
from seqexplain.models.rnn.vocab import Vocab, WordTokenizer
from seqexplain.models.soft_attention import SoftAttentionHead


def normalise_word(word: str, lowercase: bool = True, replace_digits: bool = True) -> str:
    if lowercase:
        word = word.lower()
    return re.sub(r"\d", "0", word) if replace_digits else word


class NormalisingWordTokenizer(WordTokenizer):
    """:class:`WordTokenizer` without ``<bos>`` that looks words up after :func:`normalise_word`."""

    def __init__(self, vocab: Vocab, lowercase: bool = True, replace_digits: bool = True) -> None:
        super().__init__(vocab, add_bos=False)
        self.lowercase, self.replace_digits = lowercase, replace_digits

    def tokenize_with_offsets(self, text: str, add_special_tokens: bool = True
                              ) -> tuple[list[int], list[str], list[tuple[int, int] | None]]:
        ids, offsets = [], []
        for match in re.finditer(r"\S+", text):
            word = normalise_word(match.group(), self.lowercase, self.replace_digits)
            ids.append(self.vocab.stoi.get(word, self.unk_token_id))
            offsets.append((match.start(), match.end()))
        return ids, [text[a:b] for a, b in offsets], list(offsets)

    def encode_words(self, words: Iterable[str]) -> list[int]:
        return [self.vocab.stoi.get(normalise_word(w, self.lowercase, self.replace_digits), self.unk_token_id)
                for w in words]


def char_table(vocab: Vocab, max_chars: int = 20) -> tuple[Tensor, dict[str, int]]:
    """``[V, max_chars]`` character ids of every vocabulary word (0 = padding, 1 = unknown character) and the
    character index; special entries (``<unk>``…) get one unknown character."""
    chars = sorted({c for w in vocab.itos for c in w})
    index = {c: i + 2 for i, c in enumerate(chars)}
    table = torch.zeros(len(vocab), max_chars, dtype=torch.long)
    for i, word in enumerate(vocab.itos):
        ids = [index.get(c, 1) for c in word[:max_chars]] if not word.startswith("<") else [1]
        table[i, : len(ids)] = torch.tensor(ids)
    return table, index


class WordCharEmbedding(nn.Module):
    """Word id → ``[word embedding; char BiLSTM final states]`` (module docstring)."""

    def __init__(self, vocab_size: int, word_dim: int, chars: Tensor | None = None, n_chars: int = 0,
                 char_dim: int = 0, char_hidden: int = 0) -> None:
        super().__init__()
        self.words = nn.Embedding(vocab_size, word_dim)
        self.use_chars = chars is not None and char_dim > 0 and char_hidden > 0
        self.embedding_dim = word_dim + (2 * char_hidden if self.use_chars else 0)
        if self.use_chars:
            assert chars is not None
            self.register_buffer("chars", chars)
            self.char_embedding = nn.Embedding(n_chars + 2, char_dim, padding_idx=0)
            self.char_lstm = nn.LSTM(char_dim, char_hidden, batch_first=True, bidirectional=True)

    @property
    def num_embeddings(self) -> int:
        """Rows of the word table (the vocabulary size, as ``nn.Embedding``'s)."""
        return self.words.num_embeddings

    def forward(self, ids: Tensor) -> Tensor:
        x = self.words(ids)
        if not self.use_chars:
            return x
        flat = ids.reshape(-1)
        chars = self.chars[flat]
        lengths = (chars > 0).sum(1).clamp_min(1)
        h = run_lstm(self.char_lstm, self.char_embedding(chars), lengths)  # [n, c, 2H]
        half = h.shape[-1] // 2
        fwd = h[torch.arange(h.shape[0], device=h.device), lengths - 1, :half]
        bwd = h[:, 0, half:]
        return torch.cat([x, torch.cat([fwd, bwd], -1).view(*ids.shape, -1)], -1)


class SoftAttentionBiLSTM(nn.Module):
    """Word (and character) embeddings → BiLSTM → optional tanh layer → soft-attention head."""

    def __init__(self, embedding: WordCharEmbedding, hidden: int = 100, word_hidden: int = 100,
                 head: dict[str, Any] | None = None, dropout: float = 0.5) -> None:
        super().__init__()
        self.embedding = embedding
        self.input_dropout = nn.Dropout(dropout)
        self.lstm = nn.LSTM(embedding.embedding_dim, hidden, batch_first=True, bidirectional=True)
        self.word_hidden = nn.Linear(2 * hidden, word_hidden) if word_hidden > 0 else None
        width = word_hidden if word_hidden > 0 else 2 * hidden
        self.head = SoftAttentionHead(width, **(head or {}))

    def scores_embeds(self, x: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(logits [N, C], a [N, n], â [N, n], attend [N, n])`` for word vectors ``x[N, n, D]`` with
        ``lengths[N]`` real steps (None: all)."""
        h = run_lstm(self.lstm, self.input_dropout(x), lengths)
        if self.word_hidden is not None:
            h = torch.tanh(self.word_hidden(h))
        n_b, n = x.shape[:2]
        attend = (length_mask(lengths.to(x.device), n) if lengths is not None
                  else torch.ones(n_b, n, dtype=torch.bool, device=x.device))
        logits, a, w = self.head(h, attend)
        return logits, a, w, attend

    def forward_embeds(self, x: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(logits, â)``: the interface of :class:`PoolingClassifierAdapter`."""
        logits, _, w, _ = self.scores_embeds(x, lengths)
        return logits, w

    def forward(self, input_ids: Tensor, lengths: Tensor | None = None, return_scores: bool = False
                ) -> tuple[Tensor, ...]:
        """``(logits, â)``; with ``return_scores`` :meth:`scores_embeds`' four tensors (training goes through
        ``forward`` so that a data-parallel wrapper sees the call)."""
        if return_scores:
            return self.scores_embeds(self.embedding(input_ids), lengths)
        return self.forward_embeds(self.embedding(input_ids), lengths)


class SoftAttentionLSTMAdapter(PoolingClassifierAdapter):
    """:class:`PoolingClassifierAdapter` of a :class:`SoftAttentionBiLSTM`, plus :meth:`token_scores`."""

    def __init__(self, model: SoftAttentionBiLSTM, tokenizer: NormalisingWordTokenizer,
                 labels: Sequence[str] = ("negative", "positive"), model_id: str | None = None) -> None:
        super().__init__(model, tokenizer, labels, model_id or "soft-attention-bilstm")

    def token_scores(self, example: Example) -> np.ndarray:
        """``a_i`` of every word, as computed inside the module's forward."""
        with torch.no_grad(), eval_mode(self.model):
            _, a, _, _ = self.model.scores_embeds(self.embed(example))
        return a[0].float().cpu().numpy()
