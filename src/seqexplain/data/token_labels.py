"""Token-labelled sentences for zero-shot sequence labelling (Rei & Søgaard 2018; Bujel et al. 2021).

A :class:`LabelledSentence` holds ``words`` and one label per word; its sentence label is positive when any word
carries the positive label. Three readers:

* :func:`read_token_tsv` — the token-per-line TSV format (FCE: ``word<TAB>label``, labels ``c``/``i``; blank line
  between sentences). The word is the first column, the label the last; every non-blank line of a file must have
  the width of its first line (else :class:`DataError` naming the file and line).
* :func:`read_bioscope` — BioScope XML → hedge-cue token labels in the CoNLL-2010 style: a word is ``C`` (cue)
  when any of its characters lies inside a ``<cue type="speculation">`` element (cues may span several words:
  every word of "indicate that" is ``C``), else ``O``. Words are tokenised from the sentence's text by
  :data:`WORD_PATTERN` (runs of word characters joined by ``-``, ``'``, ``.`` or ``/``, or one punctuation
  character).
* :func:`read_sst_token_labels` — SST trees → sentiment token labels: with ``polarity="positive"`` a word is ``P``
  when its own leaf label is 3 or 4 (``mode="word"``), or additionally when it lies in a phrase of at most
  ``max_phrase_words`` words labelled 3 or 4 (``mode="phrase"``); ``"negative"`` likewise with 0 or 1 (``N``).
  The sentence is positive when its root label has the polarity (neutral roots are kept as negative sentences).

:func:`check_label_sets` raises :class:`InputError` when a test file holds labels never seen in training.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from seqexplain.data.paths import require_data
from seqexplain.data.sst import SPLITS as SST_SPLITS
from seqexplain.data.sst import ZIP_NAME as SST_ZIP
from seqexplain.data.text_lines import read_text_lines
from seqexplain.errors import DataError, InputError

WORD_PATTERN = re.compile(r"\w+(?:[-'./]\w+)*|[^\w\s]")
CUE, OUTSIDE = "C", "O"
_BRACKETS = {"-LRB-": "(", "-RRB-": ")", "-LSB-": "[", "-RSB-": "]", "-LCB-": "{", "-RCB-": "}"}


@dataclass(frozen=True)
class LabelledSentence:
    """``words`` with one ``labels[i]`` per word; ``positive`` is the positive token label and ``sentence_label``
    (None: positive when any word is positive) overrides the sentence's label when the data gives it."""

    words: tuple[str, ...]
    labels: tuple[str, ...]
    positive: str
    sentence_label: int | None = None

    def __post_init__(self) -> None:
        if len(self.words) != len(self.labels):
            raise DataError(f"{len(self.words)} words but {len(self.labels)} labels")

    @property
    def text(self) -> str:
        return " ".join(self.words)

    @property
    def gold(self) -> list[int]:
        """0/1 per word (1 = the positive label)."""
        return [int(lab == self.positive) for lab in self.labels]

    @property
    def label(self) -> int:
        """Sentence label: ``sentence_label`` when given, else 1 when any word is positive."""
        if self.sentence_label is not None:
            return self.sentence_label
        return int(any(lab == self.positive for lab in self.labels))


# --------------------------------------------------------------------------- TSV
def read_token_tsv(path: Path | str, positive: str = "i") -> list[LabelledSentence]:
    """Sentences of a token-per-line TSV file (module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} is not a file; give a token-per-line TSV file")
    out: list[LabelledSentence] = []
    words: list[str] = []
    labels: list[str] = []
    width: int | None = None
    for number, line in enumerate(read_text_lines(path), start=1):
        if not line.strip():
            if words:
                out.append(LabelledSentence(tuple(words), tuple(labels), positive))
                words, labels = [], []
            continue
        cols = line.split("\t")
        if width is None:
            if len(cols) < 2:
                raise DataError(f"{path}, line {number}: {len(cols)} column(s); a token line needs at least "
                                "a word and a label separated by a tab")
            width = len(cols)
        if len(cols) != width:
            raise DataError(f"{path}, line {number}: {len(cols)} columns where the file's lines have {width}; "
                            "fix the line (tab-separated word ... label)")
        words.append(cols[0])
        labels.append(cols[-1])
    if words:
        out.append(LabelledSentence(tuple(words), tuple(labels), positive))
    if not out:
        raise DataError(f"{path} holds no sentences")
    return out


def label_set(sentences: Iterable[LabelledSentence]) -> set[str]:
    return {lab for s in sentences for lab in s.labels}


def check_label_sets(train: Sequence[LabelledSentence], test: Sequence[LabelledSentence], what: str = "test") -> None:
    """:class:`InputError` when ``test`` holds token labels that ``train`` never does."""
    unseen = sorted(label_set(test) - label_set(train))
    if unseen:
        raise InputError(f"the {what} data has label(s) {', '.join(map(repr, unseen))} never seen in training "
                         f"(training labels: {', '.join(sorted(label_set(train)))}); fix the labels or the files")


# --------------------------------------------------------------------------- BioScope
def _char_marks(elem: ET.Element, cue_type: str, inside: bool, chars: list[str], marks: list[bool]) -> None:
    """Append the element's text (and its children's, in document order) with one cue flag per character."""
    here = inside or (elem.tag == "cue" and elem.get("type") == cue_type)
    if elem.text:
        chars.append(elem.text)
        marks.extend([here] * len(elem.text))
    for child in elem:
        _char_marks(child, cue_type, here, chars, marks)
        if child.tail:
            chars.append(child.tail)
            marks.extend([here] * len(child.tail))


def bioscope_sentence(elem: ET.Element, cue_type: str = "speculation") -> LabelledSentence:
    """One ``<sentence>`` element as words labelled ``C`` (inside a cue of ``cue_type``) or ``O``."""
    chars: list[str] = []
    marks: list[bool] = []
    _char_marks(elem, cue_type, False, chars, marks)
    text = "".join(chars)
    words, labels = [], []
    for m in WORD_PATTERN.finditer(text):
        words.append(m.group())
        labels.append(CUE if any(marks[m.start():m.end()]) else OUTSIDE)
    return LabelledSentence(tuple(words), tuple(labels), CUE)


def read_bioscope(path: Path | str, cue_type: str = "speculation") -> list[list[LabelledSentence]]:
    """The documents of a BioScope XML file, each a list of its non-empty sentences (module docstring)."""
    if cue_type not in ("speculation", "negation"):
        raise InputError(f"cue_type is 'speculation' or 'negation', not {cue_type!r}")
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise DataError(f"cannot read BioScope XML {path}: {exc}") from exc
    docs = []
    for doc in root.iter("Document"):
        sents = [bioscope_sentence(s, cue_type) for s in doc.iter("sentence")]
        sents = [s for s in sents if s.words]
        if sents:
            docs.append(sents)
    if not docs:
        raise DataError(f"{path} holds no <Document> with sentences")
    return docs


def bioscope_splits(root: Path | str | None = None, cue_type: str = "speculation", dev_every: int = 10
                    ) -> dict[str, list[LabelledSentence]]:
    """Train / dev / test from ``<data>/bioscope``: the abstracts' documents split by position (every
    ``dev_every``-th document to dev, the rest to train) and the full papers as test (CoNLL-2010 also tested on
    full articles). The official CoNLL-2010 files are not available (see the folder's SOURCE.md)."""
    folder = require_data("bioscope", root)
    abstracts = read_bioscope(folder / "abstracts.xml", cue_type)
    papers = read_bioscope(folder / "full_papers.xml", cue_type)
    train = [s for i, d in enumerate(abstracts) if i % dev_every != dev_every - 1 for s in d]
    dev = [s for i, d in enumerate(abstracts) if i % dev_every == dev_every - 1 for s in d]
    return {"train": train, "dev": dev, "test": [s for d in papers for s in d]}


# --------------------------------------------------------------------------- SST
@dataclass(frozen=True)
class TreeNode:
    """A labelled constituent: words ``[start, end)`` with its 0–4 sentiment label."""

    start: int
    end: int
    label: int


def tree_spans(line: str) -> tuple[list[str], list[TreeNode]]:
    """The leaves of one PTB-style SST tree and every node's span (leaves included, root last). A leaf holding a
    space (``8 1\\/2``) is one word here, its pieces joined by a space (:mod:`seqexplain.data.sst` splits it)."""
    tokens = line.replace("(", " ( ").replace(")", " ) ").split()
    words: list[str] = []
    nodes: list[TreeNode] = []
    stack: list[tuple[int, int]] = []  # (label, start)
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok == "(":
            if i + 1 >= len(tokens) or not tokens[i + 1].isdigit():
                raise InputError(f"a node without a numeric label in {line[:60]!r}")
            stack.append((int(tokens[i + 1]), len(words)))
            i += 2
            leaf = []
            while i < len(tokens) and tokens[i] not in ("(", ")"):
                leaf.append(tokens[i])
                i += 1
            if leaf:
                words.append(" ".join(_BRACKETS.get(t, t).replace("\\/", "/").replace("\\*", "*") for t in leaf))
        elif tok == ")":
            if not stack:
                raise InputError(f"unbalanced brackets in {line[:60]!r}")
            label, start = stack.pop()
            nodes.append(TreeNode(start, len(words), label))
            i += 1
        else:
            raise InputError(f"text outside a node: {tok!r} in {line[:60]!r}")
    if stack or not nodes:
        raise InputError(f"unbalanced brackets in {line[:60]!r}")
    return words, nodes


def sst_token_labels(line: str, polarity: str = "positive", mode: str = "word", max_phrase_words: int = 3
                     ) -> LabelledSentence:
    """One tree as sentiment token labels (module docstring)."""
    if polarity not in ("positive", "negative"):
        raise InputError(f"polarity is 'positive' or 'negative', not {polarity!r}")
    if mode not in ("word", "phrase"):
        raise InputError(f"mode is 'word' or 'phrase', not {mode!r}")
    words, nodes = tree_spans(line)
    wanted = {3, 4} if polarity == "positive" else {0, 1}
    tag = "P" if polarity == "positive" else "N"
    width = 1 if mode == "word" else max_phrase_words
    marked = [False] * len(words)
    for node in nodes:
        if node.label in wanted and node.end - node.start <= width:
            for j in range(node.start, node.end):
                marked[j] = True
    labels = tuple(tag if m else "O" for m in marked)
    return LabelledSentence(tuple(words), labels, tag, sentence_label=int(nodes[-1].label in wanted))


def read_sst_token_labels(split: str = "test", polarity: str = "positive", mode: str = "word",
                          max_phrase_words: int = 3, root: Path | str | None = None) -> list[LabelledSentence]:
    """The sentences of an SST split (train, dev, test) with sentiment token labels (module docstring)."""
    if split not in SST_SPLITS:
        raise InputError(f"unknown SST split {split!r}; use one of {', '.join(SST_SPLITS)}")
    path = require_data("sst", root) / SST_ZIP
    if not path.is_file():
        raise DataError(f"{path} is missing (see shared/data/sst/SOURCE.md)")
    with zipfile.ZipFile(path) as zf:
        text = zf.read(f"trees/{split}.txt").decode("utf-8")
    return [sst_token_labels(line, polarity, mode, max_phrase_words) for line in text.splitlines() if line.strip()]
