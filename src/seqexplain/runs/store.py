"""The streaming result store of a run: one Parquet file per shard, written atomically, plus ``run.json``.

Layout of a run folder::

    run.json                     config hash, the result-defining config, shard size, example count, provenance
    shards/shard-000000.parquet  rows of examples 0 .. shard_size-1, one row per example × method (:data:`SCHEMA`)
    manifest-rank-<r>.json       the shards rank r wrote or found (distributed runs; also written by one process)
    manifest.json                written when every shard is there: per-shard rows, skipped examples and the
                                 invocation that wrote it (``runs``: the distinct records; ``shards[i].run``: an index)
    results.parquet              (optional) every shard's rows in shard order

Contract: shard ``s`` holds the examples with index ``s·shard_size ≤ i < (s+1)·shard_size``. A shard file is
written to a temporary file in ``shards/`` and renamed into place, so it is either complete or absent; its Parquet
key-value metadata (``seqexplain``) records the config hash, shard index, row count, skipped examples and the
:func:`~seqexplain.runs.provenance.run_record` of the invocation that wrote it (a resumed run may use other threads
or library versions than the one ``run.json`` describes), and a shard counts as done only when that metadata reads
back and matches (a shard of an older format version, e.g. one without the ``rationale_reached`` column, is computed
again). Temporary files of a killed run (of shards, and of the merged file, manifests and reports in the folder) are
removed when the next run starts. A folder whose ``run.json`` holds
another config hash is refused (:class:`~seqexplain.errors.InputError`) before anything is written. Memory: one
shard's rows at a time.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from seqexplain.atomic import atomic_path, atomic_write_text
from seqexplain.errors import DataError, InputError

FORMAT_VERSION = 3  # 2: the rationale_reached column; 3: the config hash's model fingerprint reads the weights
RUN_FILE = "run.json"
MANIFEST = "manifest.json"
MERGED = "results.parquet"
META_KEY = b"seqexplain"
TIMING_COLUMNS = ("seconds", "metric_seconds")

# temporary files of seqexplain.atomic.atomic_path (".<name>.<random>.tmp")
_SHARD_TMP = re.compile(r"\.shard-\d+\.parquet\.\w+\.tmp")
_FOLDER_TMP = re.compile(r"\.(run\.json|manifest\.json|manifest-rank-\d+\.json|results\.parquet|report\.html"
                         r"|summary\.md)\.\w+\.tmp")
_F = pa.float64()
_MATRIX = pa.list_(pa.list_(_F))
SCHEMA = pa.schema([
    ("index", pa.int64()), ("id", pa.string()), ("method", pa.string()), ("method_name", pa.string()),
    ("options", pa.string()), ("text", pa.string()), ("target_text", pa.string()), ("target", pa.string()),
    ("tokens", pa.list_(pa.string())), ("offsets", pa.list_(pa.list_(pa.int64()))), ("segments", pa.list_(pa.string())),
    ("target_tokens", pa.list_(pa.string())), ("target_positions", pa.list_(pa.int64())),
    ("target_logprobs", pa.list_(_F)), ("scores", _MATRIX), ("rationale", pa.list_(pa.list_(pa.int64()))),
    ("rationale_reached", pa.list_(pa.bool_())), ("gold_positions", pa.list_(pa.int64())),
    ("warnings", pa.list_(pa.string())),
    ("comprehensiveness", _MATRIX), ("sufficiency", _MATRIX),
    ("aopc_comprehensiveness", _F), ("aopc_sufficiency", _F),
    ("random_comprehensiveness", _MATRIX), ("random_sufficiency", _MATRIX),
    ("random_aopc_comprehensiveness", _F), ("random_aopc_sufficiency", _F),
    ("auprc", _F), ("token_precision", _F), ("token_recall", _F), ("token_f1", _F), ("iou_f1", _F),
    ("predicted_rationale", pa.list_(pa.int64())), ("agreement", pa.string()),
    ("seconds", _F), ("metric_seconds", _F),
])
"""One row per example × method. ``scores[T][L]`` (NaN: not visible), ``comprehensiveness`` / ``sufficiency``
``[T][bins]``; ``aopc_*`` are means over targets; ``random_*`` the example's random-ranking baseline (the same in
every method's row); ``rationale`` / ``rationale_reached`` hold, per target, a rationale method's positions and
whether its search met the stopping rule (False: it used the whole context or stopped at a bound such as
``max_size``; null for other methods); plausibility columns are null without a gold rationale; ``agreement`` is JSON
``{metric: {other method: value}}``; ``seconds`` is the method's time for the example (a batched pack's time split
evenly), ``metric_seconds`` the metrics' time."""


class RunStore:
    """A run folder (module docstring). Open it with :meth:`open`."""

    def __init__(self, folder: Path, config_hash: str, n_items: int, shard_size: int) -> None:
        self.folder = folder
        self.config_hash = config_hash
        self.n_items = n_items
        self.shard_size = shard_size
        self.shards = folder / "shards"

    @property
    def n_shards(self) -> int:
        return (self.n_items + self.shard_size - 1) // self.shard_size

    def shard_range(self, s: int) -> range:
        return range(s * self.shard_size, min(self.n_items, (s + 1) * self.shard_size))

    @classmethod
    def open(cls, folder: Path, config_hash: str, defining: dict[str, Any], n_items: int, shard_size: int,
             record: dict[str, Any], create: bool = True) -> RunStore:
        """Open ``folder`` for a run of ``config_hash``: refuse one made by another config (or data of another
        length) once it holds a shard; write ``run.json`` when the folder is new or holds only the ``run.json`` of a
        start that failed before its first shard (``create``; in a distributed run only rank 0 does)."""
        run_file = folder / RUN_FILE
        if run_file.exists():
            try:
                existing = json.loads(run_file.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise InputError(f"{run_file} is unreadable ({exc}); it is not a seqexplain run folder — choose "
                                 "another output.dir") from None
            old = existing.get("config_hash")
            if old == config_hash and existing.get("n_items") == n_items:
                return cls(folder, config_hash, n_items, shard_size)
            if not create or any((folder / "shards").glob("shard-*.parquet")):
                if old != config_hash and int(existing.get("format_version") or 1) < 3:
                    raise InputError(f"the output folder {folder} holds a run made by an earlier seqexplain (run "
                                     f"format {existing.get('format_version') or 1}), whose model fingerprint did not "
                                     "read the weights, so this version cannot tell its model from yours; finish it "
                                     "with the version that started it, or choose another output.dir")
                if old != config_hash:
                    raise InputError(f"the output folder {folder} holds a run of another configuration (hash "
                                     f"{str(old)[:12]}, this one {config_hash[:12]}); choose another output.dir — "
                                     "results are never mixed")
                raise InputError(f"{run_file} counts {existing.get('n_items')} examples but the data now has "
                                 f"{n_items}; choose another output.dir")
            # else a start that failed before its first shard (a model that would not load): nothing to mix
        elif not create:
            raise InputError(f"{run_file} is missing; rank 0 creates it — start every rank with the same "
                             "configuration")
        else:
            stray = [p.name for p in folder.iterdir() if not p.name.startswith(".")] if folder.is_dir() else []
            if stray:
                raise InputError(f"the output folder {folder} is not empty and holds no {RUN_FILE} "
                                 f"({', '.join(stray[:3])}); choose an empty or new output.dir")
        folder.mkdir(parents=True, exist_ok=True)
        body = {"format_version": FORMAT_VERSION, "config_hash": config_hash, "n_items": n_items,
                "shard_size": shard_size, "config": defining, "run": record}
        atomic_write_text(run_file, json.dumps(body, indent=2, sort_keys=True) + "\n")
        return cls(folder, config_hash, n_items, shard_size)

    # ------------------------------------------------------------------------------------------ shards
    def shard_path(self, s: int) -> Path:
        return self.shards / f"shard-{s:06d}.parquet"

    def clean_temporaries(self) -> list[str]:
        """Remove the temporary files a killed run left (of shards, and of the run's own files in the folder: the
        merged file, manifests, reports); return their names. Other files are never touched."""
        gone = []
        for folder, pattern in ((self.shards, _SHARD_TMP), (self.folder, _FOLDER_TMP)):
            for p in folder.iterdir() if folder.is_dir() else []:
                if pattern.fullmatch(p.name) and p.is_file() and not p.is_symlink():
                    p.unlink()
                    gone.append(p.name)
        return gone

    def shard_info(self, s: int) -> dict[str, Any] | None:
        """The metadata of shard ``s`` when its file is complete and belongs to this run, else ``None``."""
        path = self.shard_path(s)
        if not path.is_file():
            return None
        try:
            meta = pq.read_metadata(path)
            info = json.loads((meta.metadata or {})[META_KEY])
        except (OSError, KeyError, ValueError, pa.ArrowException):
            return None
        ok = (info.get("config_hash") == self.config_hash and info.get("shard") == s
              and info.get("n_rows") == meta.num_rows and info.get("format_version") == FORMAT_VERSION)
        return info if ok else None

    def done(self, s: int) -> bool:
        return self.shard_info(s) is not None

    def write_shard(self, s: int, rows: list[dict[str, Any]], skipped: list[dict[str, Any]],
                    run: dict[str, Any] | None = None) -> Path:
        """Write shard ``s`` atomically: its rows and, in the file's metadata, the skipped examples and ``run`` (the
        record of the invocation writing it)."""
        self.shards.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pylist(rows, schema=SCHEMA)
        info = {"config_hash": self.config_hash, "shard": s, "n_rows": table.num_rows, "skipped": skipped,
                "format_version": FORMAT_VERSION, "run": run}
        table = table.replace_schema_metadata({META_KEY: json.dumps(info).encode()})
        path = self.shard_path(s)
        try:
            with atomic_path(path) as tmp:  # .shard-XXXXXX.parquet.<random>.tmp, renamed when complete
                pq.write_table(table, tmp)
        except OSError as exc:
            raise InputError(f"cannot write {path}: {exc.strerror or exc}; free space or choose another output.dir "
                             "(finished shards are kept; rerun to resume)") from exc
        return path

    def read_shard(self, s: int, columns: list[str] | None = None) -> pa.Table:
        if self.shard_info(s) is None:
            raise DataError(f"shard {s} of {self.folder} is missing or incomplete; rerun the run to finish it")
        return pq.read_table(self.shard_path(s), columns=columns)

    def tables(self, columns: list[str] | None = None) -> Iterator[pa.Table]:
        """Each shard's rows in shard order (one shard in memory at a time)."""
        for s in range(self.n_shards):
            yield self.read_shard(s, columns)

    def missing(self) -> list[int]:
        return [s for s in range(self.n_shards) if not self.done(s)]

    # ------------------------------------------------------------------------------------- manifests
    def write_rank_manifest(self, rank: int, world: int, shards: list[int]) -> Path:
        body = {"rank": rank, "world_size": world, "config_hash": self.config_hash, "shards": shards}
        path = self.folder / f"manifest-rank-{rank}.json"
        atomic_write_text(path, json.dumps(body, indent=1) + "\n")
        return path

    def finish(self, merge: bool, world: int = 1) -> dict[str, Any]:
        """Once every shard is there: ``manifest.json`` (per shard: rows, skipped; the manifests of this
        invocation's ``world`` ranks — a rank manifest left by an earlier invocation with more processes is not
        listed) and, with ``merge``, ``results.parquet``. Raises :class:`DataError` naming missing shards."""
        missing = self.missing()
        if missing:
            raise DataError(f"{len(missing)} shard(s) of {self.folder} are not finished (first: {missing[0]}); rerun "
                            "the same command to finish them")
        shards, runs = [], []
        for s in range(self.n_shards):
            info = self.shard_info(s)
            assert info is not None
            made = info.get("run")
            if made is not None and made not in runs:
                runs.append(made)
            shards.append({"shard": s, "file": self.shard_path(s).name, "n_rows": info["n_rows"],
                           "skipped": info["skipped"], "run": None if made is None else runs.index(made)})
        ranks = []
        for p in sorted(self.folder.glob("manifest-rank-*.json")):
            try:
                body = json.loads(p.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if (isinstance(body, dict) and body.get("world_size") == world
                    and body.get("config_hash") == self.config_hash):
                ranks.append(body)
        manifest = {"config_hash": self.config_hash, "n_items": self.n_items, "shard_size": self.shard_size,
                    "n_rows": sum(s["n_rows"] for s in shards),
                    "n_skipped": sum(len(s["skipped"]) for s in shards), "shards": shards, "runs": runs,
                    "ranks": ranks}
        if merge:
            with atomic_path(self.folder / MERGED) as tmp, pq.ParquetWriter(tmp, SCHEMA) as writer:
                for table in self.tables():
                    writer.write_table(table.replace_schema_metadata(None))
            manifest["merged"] = MERGED
        atomic_write_text(self.folder / MANIFEST, json.dumps(manifest, indent=1) + "\n")
        return manifest


def canonical_rows(tables: list[pa.Table] | pa.Table, drop_timing: bool = True) -> list[dict[str, Any]]:
    """Rows sorted by (example index, method), timing columns dropped: what equal runs agree on."""
    table = pa.concat_tables(tables) if isinstance(tables, list) else tables
    if drop_timing:
        table = table.drop_columns([c for c in TIMING_COLUMNS if c in table.column_names])
    rows = table.replace_schema_metadata(None).to_pylist()
    return sorted(rows, key=lambda r: (r["index"], r["method"]))


__all__ = ["MANIFEST", "MERGED", "RUN_FILE", "SCHEMA", "TIMING_COLUMNS", "RunStore", "canonical_rows"]
