"""AG News (Zhang, Zhao & LeCun 2015) from the data root's ``ag_news/test.csv`` — the only split stored here.

Rows are ``"class","title","description"`` with class 1..4 = World, Sports, Business, Sci/Tech; a text is the title
and description joined by a space, with the corpus' ``\\`` line breaks turned into spaces. Labels are 0-based.

:func:`split_ag_news` splits the 7,600 rows deterministically by file position: row ``i`` (0-based) goes to
validation when ``i % 10 == 8``, to test when ``i % 10 == 9``, else to training (80 / 10 / 10 %: 6,080 / 760 / 760).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from seqexplain.data.paths import require_data
from seqexplain.errors import DataError, InputError

FOLDER = "ag_news"
LABELS = ("World", "Sports", "Business", "Sci/Tech")
SPLITS = ("train", "val", "test")
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]")


@dataclass(frozen=True)
class NewsItem:
    """One article: ``text`` (title + description) and ``label`` (0..3, :data:`LABELS`)."""

    text: str
    label: int

    @property
    def words(self) -> tuple[str, ...]:
        """Lower-cased word and punctuation tokens."""
        return tuple(_TOKEN.findall(self.text.lower()))


def read_ag_news(root: Path | str | None = None) -> list[NewsItem]:
    """Every row of ``ag_news/test.csv`` in file order."""
    path = require_data(FOLDER, root) / "test.csv"
    if not path.is_file():
        raise DataError(f"{path} is missing (see shared/data/ag_news/SOURCE.md)")
    try:
        return _read_rows(path)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text: {exc}") from exc


def _read_rows(path: Path) -> list[NewsItem]:
    out = []
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        lineno = 1  # the physical line a record starts on (a quoted field may span lines)
        for row in reader:
            if len(row) != 3 or not row[0].strip().isdigit() or not 1 <= int(row[0]) <= 4:
                raise DataError(f"{path}: line {lineno} is not \"class\",\"title\",\"description\" with class 1..4")
            lineno = reader.line_num + 1
            text = f"{row[1]} {row[2]}".replace("\\", " ")
            out.append(NewsItem(" ".join(text.split()), int(row[0]) - 1))
    return out


def split_ag_news(items: list[NewsItem], split: str) -> list[NewsItem]:
    """The rows of ``split`` by the module's deterministic rule."""
    if split not in SPLITS:
        raise InputError(f"unknown AG News split {split!r}; use one of {', '.join(SPLITS)}")
    want = {"val": {8}, "test": {9}, "train": set(range(8))}[split]
    return [x for i, x in enumerate(items) if i % 10 in want]
