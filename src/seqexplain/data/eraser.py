"""ERASER (DeYoung et al., 2020) data sets with human rationales, read straight from the archive.

Layout (``<data>/eraser_movies/movies.tar.gz``, or the same tree extracted): ``movies/docs/<docid>`` holds one
tokenized document, one sentence per line, tokens separated by single spaces; ``movies/{train,val,test}.jsonl``
holds one annotation per line::

    {"annotation_id": "negR_900.txt", "classification": "NEG", "docids": null, "query": "...",
     "evidences": [[{"docid": "negR_900.txt", "start_token": 40, "end_token": 43,
                     "start_sentence": -1, "end_sentence": -1, "text": "i even giggled"}, ...], ...]}

Contract of :func:`read_eraser`, following ERASER's ``utils.load_documents``: blank lines of a document are
skipped, each line (lines end at ``\n``, ``\r\n`` or ``\r`` only, as when ERASER reads the file; U+2028 or
U+0085 inside a line stay inside its token) is split on single spaces (empty pieces dropped), and the document's
``tokens`` are the lines'
tokens in order; ``text`` is the tokens joined by one space (across sentences too), so token ``i`` is
``text[token_offsets[i][0]:token_offsets[i][1]]``. Evidence spans index those flattened tokens, end-exclusive
(``tokens[start_token:end_token]``). The evidence groups of a row are flattened into ``evidence_spans`` in file
order, exact duplicates dropped. A document without an explicit ``docids`` entry is ``annotation_id``'s.

Validation: a row that is not JSON, misses a field, names a document that is not there, or has a span outside its
document (``start < 0``, ``end > len(tokens)`` or ``start > end``) raises :class:`DataError` naming the file, the
line and the span. An empty evidence (``start == end``, text ``""``) is dropped and counted: one
:class:`EraserEmptySpanWarning` per split gives the count (movies' test split has 20, in 14 documents; train and val
none). ERASER's scorer would keep them as gold spans no prediction can match (IOU 0), lowering IOU-F1 recall; we
drop them because they mark no token. An evidence whose ``text`` differs from the joined tokens of its span is kept
(the span is what the metrics use) but counted, and one :class:`EraserTextMismatchWarning` reports the count per
split; ERASER's own movies data has no such row (``tests/test_eraser_reader.py`` checks the real archive when
present). A row may have no evidence at all (movies' train ``posR_161.txt``): its ``evidence_spans`` is empty.
"""

from __future__ import annotations

import functools
import json
import tarfile
import warnings
from dataclasses import dataclass
from pathlib import Path

from seqexplain.data.paths import require_data
from seqexplain.data.text_lines import split_text_lines
from seqexplain.errors import DataError, InputError

__all__ = [
    "SPLITS",
    "EraserDocument",
    "EraserEmptySpanWarning",
    "EraserTextMismatchWarning",
    "char_spans",
    "evidence_token_set",
    "read_eraser",
]

SPLITS = ("train", "val", "test")


class EraserTextMismatchWarning(UserWarning):
    """Some evidences' ``text`` is not the joined tokens of their span (the span is kept and used)."""


class EraserEmptySpanWarning(UserWarning):
    """Some evidences are empty (``start_token == end_token``) and were dropped."""


@dataclass(frozen=True)
class EraserDocument:
    """One annotated document: ``label`` is the row's ``classification`` (``"POS"``/``"NEG"`` for movies);
    ``token_offsets[i]`` is the ``(start, end)`` character range of ``tokens[i]`` in ``text``;
    ``sentence_starts[s]`` is the index of sentence ``s``'s first token; ``evidence_spans`` are
    ``(start_token, end_token)``, end-exclusive, with ``evidence_texts`` the annotated text of each."""

    annotation_id: str
    docid: str
    label: str
    text: str
    tokens: tuple[str, ...]
    token_offsets: tuple[tuple[int, int], ...]
    sentence_starts: tuple[int, ...]
    evidence_spans: tuple[tuple[int, int], ...]
    evidence_texts: tuple[str, ...]


def evidence_token_set(doc: EraserDocument) -> frozenset[int]:
    """The token indices covered by at least one evidence span of ``doc``."""
    return frozenset(i for start, end in doc.evidence_spans for i in range(start, end))


def char_spans(doc: EraserDocument) -> list[tuple[int, int]]:
    """The ``(start, end)`` character range in ``doc.text`` of each evidence span (end-exclusive)."""
    return [(doc.token_offsets[start][0], doc.token_offsets[end - 1][1]) for start, end in doc.evidence_spans]


def _tokenize_document(raw: str) -> tuple[list[str], list[int]]:
    tokens: list[str] = []
    sentence_starts: list[int] = []
    for line in split_text_lines(raw):
        words = [w for w in line.strip().split(" ") if w]
        if words:
            sentence_starts.append(len(tokens))
            tokens.extend(words)
    return tokens, sentence_starts


def _offsets(tokens: list[str]) -> list[tuple[int, int]]:
    offsets = []
    pos = 0
    for token in tokens:
        offsets.append((pos, pos + len(token)))
        pos += len(token) + 1
    return offsets


@functools.lru_cache(maxsize=2)
def _archive_members(archive: Path, dataset: str, _mtime_ns: int, _size: int) -> dict[str, str]:
    """Every ``<dataset>/…`` text member of the archive, keyed by its path below ``<dataset>/`` (one sequential
    pass: a gzip stream is slow to seek)."""
    prefix = f"{dataset}/"
    members: dict[str, str] = {}
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                if not member.isfile() or not member.name.startswith(prefix):
                    continue
                handle = tar.extractfile(member)
                if handle is not None:
                    members[member.name[len(prefix) :]] = handle.read().decode("utf-8")
    except (tarfile.TarError, OSError, EOFError, UnicodeDecodeError) as exc:
        raise DataError(f"{archive}: not a readable ERASER archive ({exc}); download it again") from exc
    return members


class _Source:
    """Reads ``<name>`` below the data set's folder, from an archive or an extracted tree."""

    def __init__(self, root: Path | str | None, dataset: str) -> None:
        base = Path(root) if root is not None else require_data(f"eraser_{dataset}")
        self.dataset = dataset
        self.archive: Path | None = None
        self.folder: Path | None = None
        candidates_archive = [base] if base.is_file() else [base / f"{dataset}.tar.gz", base / f"{dataset}.tgz"]
        for folder in (base / dataset, base):
            if (folder / "docs").is_dir():
                self.folder = folder
                break
        else:
            self.archive = next((p for p in candidates_archive if p.is_file()), None)
        if self.folder is None and self.archive is None:
            raise DataError(
                f"no ERASER '{dataset}' data under {base}: expected {dataset}.tar.gz or a {dataset}/docs folder"
            )

    def describe(self, name: str) -> str:
        if self.archive is not None:
            return f"{self.archive}:{self.dataset}/{name}"
        assert self.folder is not None
        return str(self.folder / name)

    def read(self, name: str) -> str | None:
        if self.archive is not None:
            stat = self.archive.stat()
            return _archive_members(self.archive, self.dataset, stat.st_mtime_ns, stat.st_size).get(name)
        assert self.folder is not None
        path = self.folder / name
        try:
            return path.read_text(encoding="utf-8") if path.is_file() else None
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"{path}: cannot be read ({exc})") from exc


def _evidences(row: dict, where: str) -> list[dict]:
    groups = row.get("evidences")
    if not isinstance(groups, list):
        raise DataError(f"{where}: 'evidences' must be a list of lists of evidence objects")
    flat: list[dict] = []
    for group in groups:
        for ev in group if isinstance(group, list) else [group]:
            if not isinstance(ev, dict) or not all(k in ev for k in ("docid", "start_token", "end_token", "text")):
                raise DataError(f"{where}: an evidence without docid/start_token/end_token/text: {ev!r:.80}")
            flat.append(ev)
    return flat


def _parse_row(line: str, where: str) -> dict:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: not a JSON object ({exc.msg})") from exc
    if not isinstance(row, dict) or not all(k in row for k in ("annotation_id", "classification", "evidences")):
        raise DataError(f"{where}: a row needs 'annotation_id', 'classification' and 'evidences'")
    return row


def read_eraser(split: str, root: Path | str | None = None, dataset: str = "movies") -> list[EraserDocument]:
    """The annotated documents of ``split`` (``"train"``, ``"val"`` or ``"test"``) in file order.

    ``root`` is the folder holding ``<dataset>.tar.gz`` (default ``<data>/eraser_<dataset>``), the archive itself,
    or an extracted tree (a folder holding ``<dataset>/docs`` or ``docs`` and the JSONL files). See the module
    docstring for the tokenization and the checks.
    """
    if split not in SPLITS:
        raise InputError(f"unknown ERASER split {split!r}; choose one of {', '.join(SPLITS)}")
    source = _Source(root, dataset)
    name = f"{split}.jsonl"
    content = source.read(name)
    if content is None:
        raise DataError(f"{source.describe(name)} not found; the ERASER archive is incomplete")
    documents: list[EraserDocument] = []
    mismatches = 0
    empty = 0
    tokenized: dict[str, tuple[list[str], list[int]]] = {}
    for lineno, line in enumerate(split_text_lines(content), start=1):
        if not line.strip():
            continue
        where = f"{source.describe(name)} line {lineno}"
        row = _parse_row(line, where)
        docids = row.get("docids")
        docid = docids[0] if isinstance(docids, list) and len(docids) == 1 else str(row["annotation_id"])
        if docid not in tokenized:
            raw = source.read(f"docs/{docid}")
            if raw is None:
                raise DataError(f"{where}: document {source.describe(f'docs/{docid}')} not found")
            tokenized[docid] = _tokenize_document(raw)
        tokens, sentence_starts = tokenized[docid]
        spans: list[tuple[int, int]] = []
        texts: list[str] = []
        for ev in _evidences(row, where):
            start, end = ev["start_token"], ev["end_token"]
            if ev["docid"] != docid:
                raise DataError(f"{where}: evidence in document {ev['docid']!r}, not the row's document {docid!r}")
            if not (isinstance(start, int) and isinstance(end, int) and 0 <= start <= end <= len(tokens)):
                raise DataError(
                    f"{where}: evidence span [{start}, {end}) is outside document {docid!r} "
                    f"({len(tokens)} tokens); fix or drop that evidence"
                )
            if start == end:
                empty += 1
                continue
            if (start, end) in spans:
                continue
            if " ".join(tokens[start:end]) != str(ev["text"]).strip():
                mismatches += 1
            spans.append((start, end))
            texts.append(str(ev["text"]))
        documents.append(
            EraserDocument(
                annotation_id=str(row["annotation_id"]),
                docid=docid,
                label=str(row["classification"]),
                text=" ".join(tokens),
                tokens=tuple(tokens),
                token_offsets=tuple(_offsets(tokens)),
                sentence_starts=tuple(sentence_starts),
                evidence_spans=tuple(spans),
                evidence_texts=tuple(texts),
            )
        )
    if empty:
        warnings.warn(
            f"{source.describe(name)}: {empty} empty evidence span(s) (start_token == end_token) dropped",
            EraserEmptySpanWarning,
            stacklevel=2,
        )
    if mismatches:
        warnings.warn(
            f"{source.describe(name)}: {mismatches} evidence text(s) differ from the tokens of their span; "
            "the spans are used",
            EraserTextMismatchWarning,
            stacklevel=2,
        )
    return documents
