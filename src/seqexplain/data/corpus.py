"""Word-level language-modelling corpora: WikiText-2 and the Penn Treebank (Mikolov's preprocessing).

Only the validation and test splits are in the shared data (the training splits could not be stored), so the
recipes train on one of them and evaluate on the other; :func:`load_corpus` makes that explicit with
``train_split`` / ``eval_split``.

Token convention (as in the TensorFlow PTB tutorial and the original state-gradient code): each non-blank line is
split on whitespace and followed by ``<eos>``. Blank lines (WikiText separates paragraphs with them) are skipped by
default (the recorded perplexities use it: WikiText-2 valid has 216,347 tokens so); ``blank_line_eos=True`` gives a
blank line an ``<eos>`` too, the count of the data set's SOURCE.md and of Merity et al. (217,646; PyTorch's
word-language-model example). PTB has no blank lines, so both give its standard 73,760 / 82,430 tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from seqexplain.data.paths import require_data
from seqexplain.data.text_lines import read_text_lines
from seqexplain.errors import DataError, InputError

EOS = "<eos>"

CorpusName = Literal["wikitext2", "ptb"]

#: folder under the data root and file of each split
CORPUS_FILES: dict[str, tuple[str, dict[str, str]]] = {
    "wikitext2": ("wikitext2", {"valid": "valid.txt", "test": "test.txt", "train": "train.txt"}),
    "ptb": ("ptb", {"valid": "ptb.valid.txt", "test": "ptb.test.txt", "train": "ptb.train.txt"}),
}


def read_tokens(path: Path | str, add_eos: bool = True, blank_line_eos: bool = False) -> list[str]:
    """Read a whitespace-tokenised text file: the tokens of each non-blank line, each line followed by ``<eos>``
    (with ``blank_line_eos``, a blank line is an ``<eos>`` alone; module docstring)."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"corpus file {p} does not exist")
    tokens: list[str] = []
    for line in read_text_lines(p):  # DataError naming the file when it is not UTF-8
        words = line.split()
        if not words and not (add_eos and blank_line_eos):
            continue
        tokens.extend(words)
        if add_eos:
            tokens.append(EOS)
    if not tokens:
        raise DataError(f"corpus file {p} contains no tokens")
    return tokens


@dataclass
class Corpus:
    """A corpus split into the text a model is trained on and the text it is evaluated on."""

    name: str
    train: list[str]
    eval: list[str]
    train_path: Path
    eval_path: Path
    notes: list[str] = field(default_factory=list)


def load_corpus(
    name: CorpusName,
    root: Path | str | None = None,
    train_split: str = "valid",
    eval_split: str = "test",
    max_train_tokens: int | None = None,
    max_eval_tokens: int | None = None,
    blank_line_eos: bool = False,
) -> Corpus:
    """Load ``name`` from ``<data root>/<folder>``; train on ``train_split``, evaluate on ``eval_split``.

    The shared data holds only ``valid`` and ``test``; the defaults train on ``valid`` and evaluate on ``test``.
    ``max_*_tokens`` truncate the token lists (for quick runs); ``blank_line_eos``: see :func:`read_tokens`.
    """
    if name not in CORPUS_FILES:
        raise InputError(f"unknown corpus {name!r}; choose one of {sorted(CORPUS_FILES)}")
    folder, files = CORPUS_FILES[name]
    for split in (train_split, eval_split):
        if split not in files:
            raise InputError(f"unknown split {split!r} for {name}; choose one of {sorted(files)}")
    for name, limit in (("max_train_tokens", max_train_tokens), ("max_eval_tokens", max_eval_tokens)):
        if limit is not None and limit < 1:  # a negative limit would slice from the end
            raise InputError(f"{name} must be >= 1 or None (all), got {limit}")
    if train_split == eval_split:
        raise InputError(f"train_split and eval_split are the same split ({train_split!r}): the model would be "
                         "evaluated on the text it was trained on; choose two different splits")
    base = require_data(folder, root)
    train_path, eval_path = base / files[train_split], base / files[eval_split]
    train = read_tokens(train_path, blank_line_eos=blank_line_eos)
    ev = read_tokens(eval_path, blank_line_eos=blank_line_eos)
    if max_train_tokens is not None:
        train = train[:max_train_tokens]
    if max_eval_tokens is not None:
        ev = ev[:max_eval_tokens]
    notes = [f"trained on the {train_split} split, evaluated on the {eval_split} split"]
    return Corpus(name=name, train=train, eval=ev, train_path=train_path, eval_path=eval_path, notes=notes)


def batchify(ids: torch.Tensor | list[int], batch_size: int) -> torch.Tensor:
    """Reshape a token-id stream to ``[batch_size, N]`` row-major (TF PTB reader); the tail that does not fit is cut.

    Row ``b`` holds tokens ``ids[b*N:(b+1)*N]``, so consecutive segments ``[:, k*L:(k+1)*L]`` of a row continue each
    other and a recurrent state can be carried from one segment to the next.
    """
    t = torch.as_tensor(ids, dtype=torch.long).flatten()
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    n = t.numel() // batch_size
    if n < 2:
        raise InputError(f"{t.numel()} tokens are too few for batch size {batch_size}")
    return t[: n * batch_size].view(batch_size, n)
