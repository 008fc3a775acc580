"""Stanford Sentiment Treebank (Socher et al. 2013) from its PTB-tree zip, ``<data>/sst/trainDevTestTrees_PTB.zip``.

Each line of ``trees/{train,dev,test}.txt`` is one sentence as a binarised tree with a 0–4 sentiment label on every
node, e.g. ``(3 (2 (2 The) (2 Rock)) (4 (2 is) ...))``; a leaf may hold a space (``(2 8 1\\/2)``, a no-break
space in three train leaves): here each space-separated piece is a word of :attr:`SSTSentence.words` (the text is the
same either way), while the token-label reader (:func:`seqexplain.data.token_labels.tree_spans`) keeps such a leaf
as one word, since a label belongs to a leaf.
:func:`read_sst` returns the sentences (leaves joined by spaces, ``-LRB-``/``-RRB-`` turned back into brackets,
``\\/`` into ``/``) with the root label; ``binary=True`` gives SST-2: neutral sentences (root 2) dropped,
0/1 → 0 (negative), 3/4 → 1 (positive).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

from seqexplain.data.paths import require_data
from seqexplain.errors import DataError, InputError

FOLDER = "sst"
ZIP_NAME = "trainDevTestTrees_PTB.zip"
SPLITS = ("train", "dev", "test")
BINARY_LABELS = ("negative", "positive")
_BRACKETS = {"-LRB-": "(", "-RRB-": ")", "-LSB-": "[", "-RSB-": "]", "-LCB-": "{", "-RCB-": "}"}


@dataclass(frozen=True)
class SSTSentence:
    """One sentence: its ``words``, ``text`` (the words joined by spaces), ``label`` (0/1 for SST-2, else the 0–4
    root label) and ``fine_label`` (the 0–4 root label)."""

    words: tuple[str, ...]
    label: int
    fine_label: int

    @property
    def text(self) -> str:
        return " ".join(self.words)


def _word(token: str) -> str:
    return _BRACKETS.get(token, token).replace("\\/", "/").replace("\\*", "*")


def parse_tree(line: str) -> tuple[int, list[str]]:
    """The root label and the leaves (in order) of one PTB-style tree; :class:`InputError` if it is malformed."""
    tokens = line.replace("(", " ( ").replace(")", " ) ").split()
    if len(tokens) < 4 or tokens[0] != "(":
        raise InputError(f"not a labelled tree: {line[:60]!r}")
    words: list[str] = []
    depth = 0
    i = 0
    root_label: int | None = None
    while i < len(tokens):
        tok = tokens[i]
        if tok == "(":
            if i + 1 >= len(tokens) or not tokens[i + 1].lstrip("-").isdigit():
                raise InputError(f"a node without a numeric label in {line[:60]!r}")
            if depth == 0 and root_label is not None:
                raise InputError(f"more than one tree on a line: {line[:60]!r}")
            if depth == 0:
                root_label = int(tokens[i + 1])
            depth += 1
            i += 2
            while i < len(tokens) and tokens[i] not in ("(", ")"):  # a leaf may hold spaces: (2 8 1\\/2)
                words.append(_word(tokens[i]))
                i += 1
        elif tok == ")":
            depth -= 1
            if depth < 0:
                raise InputError(f"unbalanced brackets in {line[:60]!r}")
            i += 1
        else:
            raise InputError(f"text outside a node: {tok!r} in {line[:60]!r}")
    if depth != 0 or root_label is None:
        raise InputError(f"unbalanced brackets in {line[:60]!r}")
    return root_label, words


def parse_lines(lines: list[str] | tuple[str, ...], binary: bool = True) -> list[SSTSentence]:
    """Sentences of the non-blank tree lines (SST-2 labels with ``binary``)."""
    out: list[SSTSentence] = []
    for line in lines:
        if not line.strip():
            continue
        fine, words = parse_tree(line.strip())
        if not 0 <= fine <= 4:
            raise InputError(f"root label {fine} outside 0..4 in {line[:60]!r}")
        if binary:
            if fine == 2:
                continue
            label = int(fine > 2)
        else:
            label = fine
        out.append(SSTSentence(tuple(words), label, fine))
    return out


def read_sst(split: str = "test", *, binary: bool = True, root: Path | str | None = None) -> list[SSTSentence]:
    """The sentences of ``split`` (train, dev or test) from the data root's ``sst`` zip, in file order."""
    if split not in SPLITS:
        raise InputError(f"unknown SST split {split!r}; use one of {', '.join(SPLITS)}")
    path = require_data(FOLDER, root) / ZIP_NAME
    if not path.is_file():
        raise DataError(f"{path} is missing (see shared/data/sst/SOURCE.md)")
    with zipfile.ZipFile(path) as zf:
        text = zf.read(f"trees/{split}.txt").decode("utf-8")
    return parse_lines(text.splitlines(), binary=binary)
