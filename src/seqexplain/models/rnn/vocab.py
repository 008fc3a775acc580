"""Word vocabularies and word2vec text-format embeddings.

Vocabulary: built from training text; the special tokens ``<unk>`` (words not in the vocabulary), ``<eos>`` (line
break) and ``<bos>`` (start of a text) come first, then words by descending frequency (ties alphabetical), so
building is deterministic.

word2vec text format: a header line ``<n_words> <dim>``, then one line per word: the word followed by ``dim``
floats, all separated by single spaces.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from seqexplain.atomic import atomic_write_text
from seqexplain.errors import DataError, InputError

UNK, EOS, BOS = "<unk>", "<eos>", "<bos>"
SPECIALS = (UNK, EOS, BOS)


@dataclass
class Vocab:
    """Bijection between words and ids. ``itos[i]`` is the word of id ``i``; unknown words map to ``<unk>``."""

    itos: list[str]

    def __post_init__(self) -> None:
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise DataError("vocabulary contains duplicate words")
        missing = [s for s in SPECIALS if s not in self.stoi]
        if missing:
            raise DataError(f"vocabulary lacks the special tokens {missing}")

    @classmethod
    def build(cls, tokens: Iterable[str], min_count: int = 1, max_size: int | None = None) -> Vocab:
        """Vocabulary of the words seen at least ``min_count`` times (at most ``max_size`` words, specials incl.)."""
        counts = Counter(t for t in tokens if t not in SPECIALS)
        words = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
        if max_size is not None:
            words = words[: max(0, max_size - len(SPECIALS))]
        return cls(list(SPECIALS) + words)

    def __len__(self) -> int:
        return len(self.itos)

    @property
    def unk_id(self) -> int:
        return self.stoi[UNK]

    @property
    def eos_id(self) -> int:
        return self.stoi[EOS]

    @property
    def bos_id(self) -> int:
        return self.stoi[BOS]

    def encode(self, tokens: Sequence[str]) -> torch.Tensor:
        """Ids of ``tokens`` (a LongTensor); unknown words become ``<unk>``."""
        unk = self.unk_id
        return torch.tensor([self.stoi.get(t, unk) for t in tokens], dtype=torch.long)

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.itos[int(i)] for i in ids]

    def save(self, path: Path | str) -> None:
        """Write the word list as JSON (atomically)."""
        atomic_write_text(path, json.dumps({"itos": self.itos}, ensure_ascii=False))

    @classmethod
    def load(cls, path: Path | str) -> Vocab:
        p = Path(path)
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
            return cls(list(data["itos"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DataError(f"cannot read vocabulary {p}: {exc}") from exc


def read_word2vec(path: Path | str) -> tuple[list[str], np.ndarray]:
    """Read a word2vec text file; return the words and a float32 matrix ``[n_words, dim]``."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"embedding file {p} does not exist")
    with p.open(encoding="utf-8") as fh:
        header = fh.readline().split()
        if len(header) != 2 or not all(h.isdigit() for h in header):
            raise DataError(f"{p}: line 1 must be '<n_words> <dim>' (word2vec text format), got {' '.join(header)!r}")
        n, dim = int(header[0]), int(header[1])
        words: list[str] = []
        rows = np.empty((n, dim), dtype=np.float32)
        for lineno, line in enumerate(fh, start=2):
            parts = line.rstrip("\n").split(" ")
            if parts == [""]:
                continue
            if len(words) == n:
                raise DataError(f"{p}: more than the {n} words announced in the header (line {lineno})")
            if len(parts) != dim + 1:
                raise DataError(f"{p}: line {lineno} has {len(parts) - 1} values, expected {dim}")
            try:
                rows[len(words)] = np.asarray(parts[1:], dtype=np.float32)
            except ValueError as exc:
                raise DataError(f"{p}: line {lineno}: {exc}") from exc
            words.append(parts[0])
    if len(words) != n:
        raise DataError(f"{p}: header announces {n} words, file has {len(words)}")
    return words, rows


def write_word2vec(path: Path | str, words: Sequence[str], matrix: np.ndarray | torch.Tensor) -> None:
    """Write ``matrix[i]`` as the vector of ``words[i]`` in word2vec text format (atomically, full float precision)."""
    m = matrix.detach().cpu().numpy() if isinstance(matrix, torch.Tensor) else np.asarray(matrix)
    if m.ndim != 2 or m.shape[0] != len(words):
        raise InputError(f"matrix of shape {m.shape} does not match {len(words)} words")
    for w in words:
        if not w or any(c.isspace() for c in w):
            raise InputError(f"word {w!r} cannot be written in word2vec text format (empty or contains whitespace)")
    lines = [f"{m.shape[0]} {m.shape[1]}"]
    lines += [w + " " + " ".join(repr(float(x)) for x in row.astype(np.float32))
              for w, row in zip(words, m, strict=True)]
    atomic_write_text(path, "\n".join(lines) + "\n")


def embeddings_for_vocab(
    vocab: Vocab, path: Path | str, allow_missing: bool = False, init_scale: float = 0.1, seed: int = 0
) -> torch.Tensor:
    """Embedding matrix ``[len(vocab), dim]`` whose row ``i`` is the file's vector of ``vocab.itos[i]``.

    Raises :class:`DataError` when a vocabulary word (special tokens excepted) has no vector in the file, unless
    ``allow_missing``; then such rows (and the specials) are drawn from ``U(-init_scale, init_scale)`` with ``seed``.
    """
    words, rows = read_word2vec(path)
    index = {w: i for i, w in enumerate(words)}
    missing = [w for w in vocab.itos if w not in index and w not in SPECIALS]
    if missing and not allow_missing:
        shown = ", ".join(repr(w) for w in missing[:10])
        raise DataError(
            f"embedding file {path} does not match the vocabulary: {len(missing)} of {len(vocab)} words have no "
            f"vector (e.g. {shown}); use an embedding file made for this corpus or pass allow_missing=True"
        )
    gen = torch.Generator().manual_seed(seed)
    out = torch.empty(len(vocab), rows.shape[1]).uniform_(-init_scale, init_scale, generator=gen)
    for i, w in enumerate(vocab.itos):
        j = index.get(w)
        if j is not None:
            out[i] = torch.from_numpy(rows[j])
    return out


class WordTokenizer:
    """The tokenizer side of a :class:`Vocab` for seqexplain's model interface: whitespace-delimited words with
    their character offsets (so attributions map back to the text), ``<bos>`` prepended as the special token.

    Words outside the vocabulary become ``<unk>`` (shown as such: that is what the model sees)."""

    is_fast = False

    def __init__(self, vocab: Vocab, add_bos: bool = True) -> None:
        self.vocab = vocab
        self.add_bos = add_bos
        self.bos_token_id, self.eos_token_id, self.unk_token_id = vocab.bos_id, vocab.eos_id, vocab.unk_id
        self.pad_token_id = vocab.eos_id
        self.unk_token = UNK
        self.all_special_ids = [vocab.stoi[s] for s in SPECIALS]

    def __len__(self) -> int:
        return len(self.vocab)

    def tokenize_with_offsets(self, text: str, add_special_tokens: bool = True
                              ) -> tuple[list[int], list[str], list[tuple[int, int] | None]]:
        ids: list[int] = []
        offsets: list[tuple[int, int] | None] = []
        if add_special_tokens and self.add_bos:
            ids.append(self.bos_token_id)
            offsets.append(None)
        for match in re.finditer(r"\S+", text):
            ids.append(self.vocab.stoi.get(match.group(), self.unk_token_id))
            offsets.append((match.start(), match.end()))
        return ids, self.vocab.decode(ids), offsets

    def convert_ids_to_tokens(self, ids: Iterable[int]) -> list[str]:
        return self.vocab.decode(ids)

    def convert_tokens_to_ids(self, tokens: Iterable[str]) -> list[int]:
        return [self.vocab.stoi.get(t, self.unk_token_id) for t in tokens]

    def decode(self, ids: Iterable[int], **_: object) -> str:
        return " ".join(self.vocab.decode(ids))
