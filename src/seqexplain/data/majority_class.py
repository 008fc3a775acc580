"""The synthetic "majority class" language of Vafa et al. (2021): reader, vocabulary and exact posteriors.

Each line of ``{train,valid,test}.tok`` is 17 random bits, ``=``, then the label: the majority bit of the 17.
As a language-model sequence it reads ``<s> b1 ... b17 = label </s>``: 21 tokens, 20 of them predicted
(17 bits, ``=``, the label, ``</s>``). The bits are independent fair coins and everything else is a function of
them, so the best possible per-token perplexity over the 20 predicted tokens is ``2 ** (17 / 20) ≈ 1.8025``
(17 bits of entropy spread over 20 predictions: ``exp(17 ln 2 / 20)``).

With some bits hidden, the label's exact posterior is binomial: with ``n1`` ones among ``m`` visible bits,
``P(label = 1) = P(Binomial(17 - m, 1/2) >= 9 - n1)`` (:func:`label_posterior`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from seqexplain.atomic import atomic_write_text
from seqexplain.data.paths import require_data
from seqexplain.data.text_lines import read_text_lines
from seqexplain.errors import DataError, InputError

FOLDER = "majority_class"
N_BITS = 17
#: predicted tokens per sequence: 17 bits, "=", the label, "</s>"
N_PREDICTED = N_BITS + 3
#: log-perplexity optimum per predicted token: 17 fair bits, everything else determined
OPTIMAL_PERPLEXITY = 2.0 ** (N_BITS / N_PREDICTED)

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)
SYMBOLS = ("0", "1", "=")


class MajorityClassVocab:
    """The 7-token vocabulary (``<pad> <s> </s> <unk> 0 1 =``) with the small tokenizer interface seqexplain's
    model wrappers use (``tokenize_with_offsets``, ``convert_ids_to_tokens``, ``decode``, special ids)."""

    def __init__(self, itos: Sequence[str] = SPECIALS + SYMBOLS) -> None:
        self.itos = list(itos)
        self.stoi = {t: i for i, t in enumerate(self.itos)}
        missing = [t for t in SPECIALS + SYMBOLS if t not in self.stoi]
        if missing or len(self.stoi) != len(self.itos):
            raise DataError(f"majority-class vocabulary must hold {SPECIALS + SYMBOLS} once each; got {self.itos}")

    def __len__(self) -> int:
        return len(self.itos)

    @property
    def pad_token_id(self) -> int:
        return self.stoi[PAD]

    @property
    def bos_token_id(self) -> int:
        return self.stoi[BOS]

    @property
    def eos_token_id(self) -> int:
        return self.stoi[EOS]

    @property
    def unk_token_id(self) -> int:
        return self.stoi[UNK]

    @property
    def all_special_ids(self) -> list[int]:
        return [self.stoi[t] for t in SPECIALS]

    def convert_tokens_to_ids(self, tokens: Iterable[str]) -> list[int]:
        return [self.stoi.get(t, self.unk_token_id) for t in tokens]

    def convert_ids_to_tokens(self, ids: Iterable[int]) -> list[str]:
        return [self.itos[int(i)] for i in ids]

    def tokenize_with_offsets(self, text: str, add_special_tokens: bool = True
                              ) -> tuple[list[int], list[str], list[tuple[int, int] | None]]:
        """Whitespace tokens of ``text`` with character offsets; ``<s>`` (offset None) first when
        ``add_special_tokens``."""
        tokens: list[str] = []
        offsets: list[tuple[int, int] | None] = []
        pos = 0
        for word in text.split():
            start = text.index(word, pos)
            tokens.append(word)
            offsets.append((start, start + len(word)))
            pos = start + len(word)
        if add_special_tokens:
            tokens.insert(0, BOS)
            offsets.insert(0, None)
        return self.convert_tokens_to_ids(tokens), tokens, offsets

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False, **_: object) -> str:
        special = set(self.all_special_ids) if skip_special_tokens else set()
        return " ".join(self.itos[int(i)] for i in ids if int(i) not in special)

    def save(self, path: Path | str) -> None:
        atomic_write_text(path, json.dumps({"itos": self.itos}))

    @classmethod
    def load(cls, path: Path | str) -> MajorityClassVocab:
        try:
            return cls(json.loads(Path(path).read_text(encoding="utf-8"))["itos"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DataError(f"cannot read the majority-class vocabulary {path}: {exc}") from exc


@dataclass
class MajorityClassSplit:
    """One split: ``bits[N, 17]`` (0/1 long) and ``labels[N]``."""

    bits: torch.Tensor
    labels: torch.Tensor
    name: str = ""

    def __len__(self) -> int:
        return int(self.bits.shape[0])

    def prompt(self, i: int) -> str:
        """The text before the label: ``"b1 ... b17 ="``."""
        return " ".join(str(int(b)) for b in self.bits[i]) + " ="

    def subset(self, n: int) -> MajorityClassSplit:
        """The first ``n`` sequences (all when ``n`` exceeds the split)."""
        if n < 0:
            raise InputError(f"a subset needs a count >= 0, got {n}")
        return MajorityClassSplit(self.bits[:n], self.labels[:n], self.name)


def read_majority_class(path: Path | str) -> MajorityClassSplit:
    """Read a ``.tok`` file; raise :class:`DataError` naming the line for a malformed sequence or a wrong label."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"majority-class file {p} does not exist")
    bits: list[list[int]] = []
    labels: list[int] = []
    for lineno, line in enumerate(read_text_lines(p), start=1):  # DataError naming the file when not UTF-8
        toks = line.split()
        if not toks:
            continue
        if len(toks) != N_BITS + 2 or toks[N_BITS] != "=" or any(t not in ("0", "1") for t in toks[:N_BITS]) \
                or toks[-1] not in ("0", "1"):
            raise DataError(f"{p}:{lineno}: expected 17 bits, '=', and a 0/1 label; got {line.strip()!r}")
        row = [int(t) for t in toks[:N_BITS]]
        label = int(toks[-1])
        if label != int(sum(row) > N_BITS // 2):
            raise DataError(f"{p}:{lineno}: label {label} is not the majority bit of {''.join(toks[:N_BITS])}")
        bits.append(row)
        labels.append(label)
    if not bits:
        raise DataError(f"majority-class file {p} holds no sequences")
    return MajorityClassSplit(torch.tensor(bits, dtype=torch.long), torch.tensor(labels, dtype=torch.long), p.stem)


def load_split(split: str, data_root: Path | str | None = None) -> MajorityClassSplit:
    """``split`` in ``train``, ``valid``, ``test`` from ``<data root>/majority_class/<split>.tok``."""
    if split not in ("train", "valid", "test"):
        raise InputError(f"unknown split {split!r}; use train, valid or test")
    return read_majority_class(require_data(FOLDER, data_root) / f"{split}.tok")


def encode_split(split: MajorityClassSplit, vocab: MajorityClassVocab | None = None) -> torch.Tensor:
    """Token ids ``[N, 21]``: ``<s> b1 ... b17 = label </s>``."""
    v = vocab or MajorityClassVocab()
    n = len(split)
    sym = torch.tensor([v.stoi["0"], v.stoi["1"]])
    return torch.cat([
        torch.full((n, 1), v.bos_token_id), sym[split.bits], torch.full((n, 1), v.stoi["="]),
        sym[split.labels].unsqueeze(1), torch.full((n, 1), v.eos_token_id),
    ], dim=1)


#: position of "=" in an encoded sequence (it predicts the label), and of the label
EQUALS_POSITION = N_BITS + 1
LABEL_POSITION = N_BITS + 2


def label_posterior(ones_visible: int, n_visible: int, n_bits: int = N_BITS) -> float:
    """Exact ``P(label = 1)`` given ``ones_visible`` ones among ``n_visible`` visible bits (the rest fair coins)."""
    if not 0 <= ones_visible <= n_visible <= n_bits:
        raise InputError(f"need 0 <= ones ({ones_visible}) <= visible ({n_visible}) <= {n_bits}")
    hidden = n_bits - n_visible
    need = n_bits // 2 + 1 - ones_visible  # ones still needed among the hidden bits
    if need <= 0:
        return 1.0
    if need > hidden:
        return 0.0
    return sum(math.comb(hidden, j) for j in range(need, hidden + 1)) / 2.0 ** hidden
