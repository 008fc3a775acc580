"""Reader for Multi30K task 1 (image-caption translation), raw text in German, English and French.

Files (``<data root>/multi30k/``): ``{train,val,test_2016_flickr}.{de,en,fr}.gz``, gzip'd UTF-8, one untokenised
sentence per line, lines aligned across languages (train 29,000 lines, val 1,014, test 1,000). Split names:
``"train"``, ``"val"`` (alias ``"valid"``) and ``"test"`` (alias ``"test_2016_flickr"``).
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

from seqexplain.data.paths import require_data
from seqexplain.errors import DataError, InputError

LANGUAGES: tuple[str, ...] = ("de", "en", "fr")
SPLITS: dict[str, str] = {"train": "train", "val": "val", "valid": "val", "test": "test_2016_flickr",
                          "test_2016_flickr": "test_2016_flickr"}
FOLDER = "multi30k"


@dataclass
class ParallelCorpus:
    """Aligned sentence pairs: ``source[i]`` translates to ``target[i]``."""

    source: list[str]
    target: list[str]
    src_lang: str
    tgt_lang: str
    split: str

    def __len__(self) -> int:
        return len(self.source)

    def pairs(self) -> list[tuple[str, str]]:
        return list(zip(self.source, self.target, strict=True))

    def subset(self, n: int | None) -> ParallelCorpus:
        """The first ``n`` pairs (all when ``n`` is None)."""
        if n is None:
            return self
        if n < 0:
            raise InputError(f"a subset needs a count >= 0, got {n}")
        return ParallelCorpus(self.source[:n], self.target[:n], self.src_lang, self.tgt_lang, self.split)


def multi30k_dir(root: Path | str | None = None) -> Path:
    """``<root>/multi30k`` (``root`` defaults to the data root); :class:`DataError` when missing."""
    return require_data(FOLDER, root)


def read_lines(split: str, lang: str, root: Path | str | None = None) -> list[str]:
    """The sentences of ``split`` in ``lang`` (trailing newlines and surrounding whitespace removed)."""
    if lang not in LANGUAGES:
        raise InputError(f"Multi30K has no language {lang!r}; use one of {', '.join(LANGUAGES)}")
    if split not in SPLITS:
        raise InputError(f"unknown Multi30K split {split!r}; use train, val or test")
    path = multi30k_dir(root) / f"{SPLITS[split]}.{lang}.gz"
    if not path.is_file():
        raise DataError(f"Multi30K file {path} is missing; see the data folder's SOURCE.md for where it comes from")
    try:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            return [line.strip() for line in fh]
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {path} as gzip'd UTF-8 text: {exc}") from exc


def read_multi30k(split: str, src_lang: str = "de", tgt_lang: str = "en",
                  root: Path | str | None = None) -> ParallelCorpus:
    """Sentence pairs of ``split`` from ``src_lang`` to ``tgt_lang``; raises :class:`DataError` when the two
    files have different numbers of lines."""
    if src_lang == tgt_lang:
        raise InputError(f"source and target language are both {src_lang!r}")
    src = read_lines(split, src_lang, root)
    tgt = read_lines(split, tgt_lang, root)
    if len(src) != len(tgt):
        raise DataError(f"Multi30K {split}: {len(src)} {src_lang} lines but {len(tgt)} {tgt_lang} lines")
    return ParallelCorpus(src, tgt, src_lang, tgt_lang, SPLITS[split])
