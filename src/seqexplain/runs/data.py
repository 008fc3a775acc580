"""The examples of a run, in a fixed order: CSV, TSV and Parquet files through Hugging Face ``datasets``
(streamed, so only the current example is held), JSONL line by line with :mod:`json` (each value keeps the type
it is written with: ``datasets`` would cast a field that mixes ``"1"`` and ``1`` to one type), SST and ERASER
through seqexplain's readers.

CSV and TSV files are checked line by line before ``datasets`` reads them, so a malformed row is a
:class:`~seqexplain.errors.DataError` naming the file and its line (``datasets`` reports a row number that skips
blank lines, or wraps pandas' message), as is a JSONL line that is not an object or lacks a configured field. A
CSV / TSV file's text and id fields are read as the strings written (``007`` stays ``007``); other fields keep
pandas' types (a label column of numerals is class indices; where the model's labels are themselves numerals,
set ``data.labels``). Gold
rationales are ``[start, end)`` character spans of the text; a span outside the text is a :class:`DataError`
naming the example. Also refused, naming the line: bytes that are not UTF-8, a configured target or id field that
is null (JSONL ``null``), and an id that repeats an earlier example's (the rows of the results are told apart by id).
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqexplain.atomic import special_file
from seqexplain.errors import DataError, InputError
from seqexplain.runs.config import DataConfig

_BUILDERS = {"jsonl": "json", "csv": "csv", "tsv": "csv", "parquet": "parquet"}


@dataclass(frozen=True)
class Item:
    """One example: its ``index`` in the corpus, ``id``, ``text``, ``target`` (a label index or name, a target text,
    or ``None`` for the model's prediction) and gold rationale ``spans`` (character ``[start, end)``, or ``None``)."""

    index: int
    id: str
    text: str
    target: Any
    spans: tuple[tuple[int, int], ...] | None
    where: str  # "file:line" or "file row n", for messages


def _sha256(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def _files(cfg: DataConfig) -> list[Path]:
    if cfg.format in _BUILDERS:
        p = Path(str(cfg.path))
        if p.is_dir():
            raise DataError(f"data file {p} is a folder, not a file; set data.path to the {cfg.format} file")
        if (what := special_file(p)) is not None:
            raise DataError(f"data file {p} is {what}, not a regular file; set data.path to the {cfg.format} file")
        if not p.is_file():
            raise DataError(f"data file {p} not found; check data.path in the configuration")
        return [p]
    if cfg.format == "sst":
        from seqexplain.data.paths import require_data
        from seqexplain.data.sst import FOLDER, ZIP_NAME

        return [require_data(FOLDER, cfg.path) / ZIP_NAME]
    root = Path(cfg.path) if cfg.path else None
    if root is None:
        from seqexplain.data.paths import require_data

        root = require_data("eraser_movies")
    archive = root if root.is_file() else root / "movies.tar.gz"
    if archive.is_file():
        return [archive]
    return sorted(p for p in root.rglob("*") if p.is_file() and (p.suffix == ".jsonl" or p.parent.name == "docs"))


def data_fingerprint(cfg: DataConfig) -> str:
    """sha256 of the data file(s): a run folder refuses a configuration whose data changed."""
    return _sha256(_files(cfg))


def _decode(raw: bytes, path: Path, n: int) -> str:
    """Line ``n`` of ``path`` as text (a byte order mark on the first line is dropped, as ``datasets`` does);
    :class:`DataError` naming the line when it is not UTF-8."""
    try:
        return raw.decode("utf-8-sig" if n == 1 else "utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}:{n}: not UTF-8 (byte {raw[exc.start]:#04x} at column {exc.start + 1}); save the file "
                        "as UTF-8") from None


def _jsonl(path: Path, fields: list[str]) -> Iterator[tuple[dict[str, Any], str]]:
    """Each record and its line, as JSON wrote it (``datasets`` would cast a field that mixes ``"1"`` and ``1`` to
    one type, turning label names into indices); :class:`DataError` at the first line that is not a JSON object or
    lacks one of ``fields`` (a missing target would read as "no target": the model's prediction would be explained
    for that record alone)."""
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            line = _decode(raw, path, n)
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{n}: malformed JSON ({exc.msg} at column {exc.colno}); fix or remove the "
                                "line") from None
            if not isinstance(record, dict):
                raise DataError(f"{path}:{n}: a JSONL line must be an object, not {type(record).__name__}")
            for name in fields:
                _field(record, name, f"{path}:{n}")
            yield record, f"{path}:{n}"


def _check_csv(path: Path, delimiter: str) -> list[int]:
    """The line number of each record; :class:`DataError` at the first row whose field count differs from the
    header's."""
    lines = []
    with open(path, "rb") as raw:
        for n, line in enumerate(raw, 1):
            _decode(line, path, n)
    with open(path, encoding="utf-8-sig", newline="") as f:
        # TSV has no quoting: a row is a line and a quote character is text (as SST and GLUE files are written)
        reader = csv.reader(f, delimiter=delimiter, quoting=csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL)
        try:
            header = next(reader)
        except StopIteration:
            raise DataError(f"{path}: the file is empty; it needs a header row") from None
        start = reader.line_num + 1
        for row in reader:
            if not row:
                start = reader.line_num + 1
                continue
            if len(row) != len(header):
                raise DataError(f"{path}:{start}: {len(row)} fields but the header has {len(header)}; fix or remove "
                                "the row")
            lines.append(start)
            start = reader.line_num + 1
    return lines


def _check_parquet(path: Path) -> None:
    """:class:`DataError` for a file whose Parquet footer cannot be read (before ``datasets``, which logs its own
    error line first)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pq.read_metadata(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{path}: cannot read it as parquet: {str(exc).splitlines()[0]}") from None


def _records(cfg: DataConfig) -> Iterator[tuple[dict[str, Any], str]]:
    path = Path(str(cfg.path))
    if cfg.format == "jsonl":
        fields = [cfg.text_field, cfg.target_field, cfg.id_field, cfg.rationale_field]
        yield from _jsonl(path, [f for f in fields if f is not None])
        return
    if cfg.format in ("csv", "tsv"):
        lines = _check_csv(path, "\t" if cfg.format == "tsv" else ",")
    else:
        lines = []
        _check_parquet(path)
    if cfg.format != "parquet" and not lines:
        return  # no record (an empty file: datasets would fail inside its generator)
    import datasets

    kwargs: dict[str, Any] = {"delimiter": "\t", "quoting": csv.QUOTE_NONE} if cfg.format == "tsv" else {}
    if cfg.format in ("csv", "tsv"):
        kwargs["keep_default_na"] = False  # an empty field stays "", not NaN
        # the text and the id as written: pandas would read the id 007 as 7 and a column of numerals as numbers
        kwargs["converters"] = {name: str for name in (cfg.text_field, cfg.id_field) if name is not None}
    was = datasets.utils.logging.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        stream = datasets.load_dataset(_BUILDERS[cfg.format], data_files=str(path), split="train", streaming=True,
                                       **kwargs)
        for n, record in enumerate(stream):
            yield record, (f"{path}:{lines[n]}" if n < len(lines) else f"{path} row {n + 1} (of rows counted from 1)")
    except (ValueError, OSError) as exc:
        raise DataError(f"{path}: cannot read it as {cfg.format}: {str(exc).splitlines()[0]}") from None
    finally:
        if was:
            datasets.enable_progress_bars()


def check_spans(spans: Any, text: str, where: str) -> tuple[tuple[int, int], ...]:
    """Gold rationale spans as ``(start, end)`` pairs inside ``text``; :class:`DataError` naming ``where``."""
    if not isinstance(spans, (list, tuple)):
        raise DataError(f"{where}: the rationale must be a list of [start, end] character spans")
    out = []
    for span in spans:
        if (not isinstance(span, (list, tuple)) or len(span) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in span)):
            raise DataError(f"{where}: rationale span {span!r} is not a [start, end] pair of character offsets")
        a, b = int(span[0]), int(span[1])
        if not 0 <= a < b <= len(text):
            raise DataError(f"{where}: rationale span [{a}, {b}] is outside the text (0..{len(text)} characters) or "
                            "empty; fix the annotation")
        out.append((a, b))
    return tuple(out)


def _field(record: dict[str, Any], name: str, where: str) -> Any:
    if name not in record:
        raise DataError(f"{where}: no field {name!r} (fields: {', '.join(sorted(record))}); set data.*_field in the "
                        "configuration")
    return record[name]


def _present(record: dict[str, Any], name: str, where: str) -> Any:
    """A configured field's value; :class:`DataError` when it is null (a null target would read as "explain the
    prediction" for that example alone, a null id would become the id ``"None"``)."""
    value = _field(record, name, where)
    if value is None:
        raise DataError(f"{where}: field {name!r} is null; give every example a value (or unset data.*_field)")
    return value


def _from_records(cfg: DataConfig) -> Iterator[Item]:
    seen: dict[str, str] = {}  # id -> where it first occurs
    for index, (record, where) in enumerate(_records(cfg)):
        text = _field(record, cfg.text_field, where)
        if not isinstance(text, str):  # a blank text is read, and skipped as unreadable with its reason
            raise DataError(f"{where}: field {cfg.text_field!r} must be a text, not {type(text).__name__}")
        target = None if cfg.target_field is None else _present(record, cfg.target_field, where)
        ident = str(_present(record, cfg.id_field, where)) if cfg.id_field else str(index)
        if cfg.id_field:
            if ident in seen:
                raise DataError(f"{where}: id {ident!r} repeats the id of {seen[ident]}; ids name the rows of the "
                                "results, so make them unique (or unset data.id_field to number the examples)")
            seen[ident] = where
        spans = None
        if cfg.rationale_field is not None:
            spans = check_spans(_field(record, cfg.rationale_field, where), text, where)
        yield Item(index, ident, text, target, spans, where)


def _from_sst(cfg: DataConfig) -> Iterator[Item]:
    from seqexplain.data.sst import read_sst

    for index, s in enumerate(read_sst(cfg.split, binary=cfg.binary, root=cfg.path)):
        yield Item(index, f"sst-{cfg.split}-{index}", s.text, s.label if cfg.target_field else None, None,
                   f"SST {cfg.split} sentence {index}")


def _from_eraser(cfg: DataConfig) -> Iterator[Item]:
    from seqexplain.data.eraser import char_spans, read_eraser

    for index, doc in enumerate(read_eraser(cfg.split, root=cfg.path)):
        where = f"ERASER {cfg.split} {doc.annotation_id}"
        spans = check_spans([list(s) for s in char_spans(doc)], doc.text, where)
        yield Item(index, doc.annotation_id, doc.text, doc.label if cfg.target_field else None, spans, where)


def iter_items(cfg: DataConfig) -> Iterator[Item]:
    """The examples in corpus order (at most ``cfg.limit``)."""
    if cfg.format == "sst":
        source = _from_sst(cfg)
    elif cfg.format == "eraser":
        source = _from_eraser(cfg)
    elif cfg.format in _BUILDERS:
        source = _from_records(cfg)
    else:  # pragma: no cover - the config's Literal forbids it
        raise InputError(f"unknown data format {cfg.format!r}")
    for item in source:
        if cfg.limit is not None and item.index >= cfg.limit:
            return
        yield item


def count_items(cfg: DataConfig) -> int:
    """How many examples :func:`iter_items` yields (one pass over the data)."""
    return sum(1 for _ in iter_items(cfg))


__all__ = ["Item", "check_spans", "count_items", "data_fingerprint", "iter_items"]
