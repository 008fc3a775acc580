"""``seqexplain run``: a configuration in, a finished run folder out (:mod:`seqexplain.runs.store`).

Order of work, so that a refused run writes nothing and a killed run loses nothing:

1. check the output folder (writable?) and the model's device and path, fingerprint the data and the model, hash
   the result-defining config (:mod:`seqexplain.runs.config`); in a distributed run every rank compares hashes
   (:mod:`.distributed`);
2. read the whole data once (malformed rows and rationale spans outside their text fail here);
3. rank 0 locks the folder, refuses one made by another config (unless it holds no shard: a start that failed
   loading the model), writes ``run.json`` and removes a killed run's temporary files;
4. each rank explains the shards it owns that have no finished file, one shard in memory at a time, each written
   atomically; a progress bar counts examples, with an ETA;
5. after a barrier, rank 0 writes ``manifest.json``, the merged ``results.parquet`` and the reports.
"""

from __future__ import annotations

import contextlib
import importlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from seqexplain.errors import InputError, ModelLoadError, SeqExplainError
from seqexplain.explain import precision_meta
from seqexplain.models.base import SequenceModel
from seqexplain.models.loading import check_device, load_model
from seqexplain.runs import output_dir
from seqexplain.runs.compute import encode, shard_rows
from seqexplain.runs.config import ModelConfig, RunConfig, config_hash, model_fingerprint, result_defining
from seqexplain.runs.data import Item, count_items, data_fingerprint, iter_items
from seqexplain.runs.distributed import Context, context
from seqexplain.runs.lock import lock_run_folder
from seqexplain.runs.provenance import apply_threads, run_record
from seqexplain.runs.store import RunStore
from seqexplain.runs.warning_log import warning_log

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class RunResult:
    """What a call of :func:`run` did: ``written`` (shards computed now), ``found`` (finished before),
    ``skipped`` (examples skipped in the shards written now), ``manifest`` (rank 0, once all shards are there),
    ``reports`` (files written)."""

    folder: Path
    config_hash: str
    n_items: int
    n_shards: int
    rank: int = 0
    world: int = 1
    written: list[int] = field(default_factory=list)
    found: list[int] = field(default_factory=list)
    skipped: int = 0
    seconds: float = 0.0
    manifest: dict[str, Any] | None = None
    reports: list[Path] = field(default_factory=list)


def load_run_model(cfg: ModelConfig, seed: int, device: str | None) -> SequenceModel:
    """The model of the run; a new (randomly initialised) head is drawn from ``seed``."""
    path = cfg.path
    if cfg.package is not None:
        try:
            path = str(importlib.import_module(cfg.package).get_model_path())
        except (ImportError, AttributeError) as exc:
            raise ModelLoadError(f"model.package {cfg.package!r} is not an installed model package with "
                                 f"get_model_path() ({exc}); install it or give model.path") from None
    torch.manual_seed(seed)
    return load_model(path, kind=cfg.kind, device=device, dtype=None if cfg.dtype is None else _DTYPES[cfg.dtype],
                      autocast=cfg.autocast, allow_new_head=cfg.allow_new_head)


def _check_model(cfg: ModelConfig, device: str | None) -> None:
    """What is wrong with the model's settings that can be told before anything is written: a device this machine
    lacks, a model path that does not exist."""
    if device is not None:
        check_device(device)
    if cfg.path is not None and not Path(cfg.path).exists():
        raise ModelLoadError(f"model path {cfg.path} does not exist; give a local model directory or a .gguf file "
                             "as model.path")


def run(cfg: RunConfig, *, progress: bool = True, command: str | None = None,
        shard_hook: Any = None) -> RunResult:
    """Run (or resume) ``cfg``; under a distributed launcher this process does its rank's part
    (:mod:`seqexplain.runs.distributed`). ``shard_hook(shard)`` is called after each shard is written."""
    ctx = context(cfg.model.device)
    try:
        return _run(cfg, ctx, progress, command, shard_hook)
    except OSError as exc:  # a write refused by the file system (full, read-only) after the checks
        raise InputError(f"cannot write the run folder {cfg.output.dir}: {exc.strerror or exc}; free space or "
                         "choose another output.dir (finished shards are kept; rerun to resume)") from exc
    finally:
        ctx.close()


def _run(cfg: RunConfig, ctx: Context, progress: bool, command: str | None, shard_hook: Any) -> RunResult:
    start = time.perf_counter()
    apply_threads(cfg.threads)
    folder = output_dir(cfg.output.dir)
    _check_model(cfg.model, ctx.device(cfg.model.device))
    defining = result_defining(cfg, data_fingerprint(cfg.data), model_fingerprint(cfg.model))
    digest = config_hash(defining)
    ctx.check_same_config(digest)
    n_items = count_items(cfg.data)
    if n_items == 0:
        raise InputError(f"the data ({cfg.data.format}) holds no examples; check data.path and data.limit")
    with contextlib.ExitStack() as stack:
        error = None
        store: RunStore | None = None
        record = run_record(cfg.seed, command, world_size=ctx.world)  # this invocation's, stored in its shards
        if ctx.rank == 0:
            try:
                stack.enter_context(lock_run_folder(folder, command))
                store = RunStore.open(folder, digest, defining, n_items, cfg.shard_size, record, create=True)
                store.clean_temporaries()
                stack.enter_context(warning_log(folder, command))  # written before the lock is let go
            except SeqExplainError as exc:
                error = str(exc)
            except OSError as exc:  # a read-only or full file system
                error = (f"cannot write the output folder {folder}: {exc.strerror or exc}; make it writable, free "
                         "space or choose another output.dir")
        ctx.agree(error)
        if store is None:
            store = RunStore.open(folder, digest, defining, n_items, cfg.shard_size, {}, create=False)
        result = RunResult(folder, digest, n_items, store.n_shards, ctx.rank, ctx.world)
        mine = [s for s in range(store.n_shards) if ctx.owns(s)]
        todo = {s for s in mine if not store.done(s)}
        result.found = [s for s in mine if s not in todo]
        if todo:
            wrapped = load_run_model(cfg.model, cfg.seed, ctx.device(cfg.model.device))
            record = {**record, "precision": precision_meta(wrapped)}  # what the shards were computed in
            _work(cfg, store, wrapped, todo, mine, result, progress, ctx, shard_hook, record)
        store.write_rank_manifest(ctx.rank, ctx.world, mine)
        ctx.barrier()
        if ctx.rank == 0:
            result.manifest = store.finish(cfg.output.merge, ctx.world)
            if cfg.output.report:
                from seqexplain.runs.summary import write_reports

                result.reports = write_reports(store, cfg)
    result.seconds = time.perf_counter() - start
    return result


def _work(cfg: RunConfig, store: RunStore, wrapped: SequenceModel, todo: set[int], mine: list[int],
          result: RunResult, progress: bool, ctx: Context, shard_hook: Any, record: dict[str, Any]) -> None:
    from tqdm.auto import tqdm

    total = sum(len(store.shard_range(s)) for s in mine)
    done = sum(len(store.shard_range(s)) for s in result.found)
    desc = f"seqexplain run (rank {ctx.rank}/{ctx.world})" if ctx.distributed else "seqexplain run"
    with tqdm(total=total, initial=done, desc=desc, unit="example", disable=not progress, dynamic_ncols=True) as bar:
        pending: list[Item] = []
        for item in iter_items(cfg.data):
            s = item.index // store.shard_size
            if s not in todo:
                continue
            pending.append(item)
            if item.index == store.shard_range(s)[-1]:
                result.skipped += _do_shard(cfg, store, wrapped, s, pending, record)
                result.written.append(s)
                bar.update(len(pending))
                pending = []
                if shard_hook is not None:
                    shard_hook(s)


def _do_shard(cfg: RunConfig, store: RunStore, wrapped: SequenceModel, s: int, items: list[Item],
              record: dict[str, Any]) -> int:
    encoded, skipped = [], []
    for item in items:
        enc, reason = encode(wrapped, item, cfg)
        if enc is None:
            skipped.append({"index": item.index, "id": item.id, "reason": reason})
        else:
            encoded.append(enc)
    rows = shard_rows(wrapped, cfg, encoded, items[0].index) if encoded else []
    store.write_shard(s, rows, skipped, record)
    return len(skipped)


__all__ = ["RunResult", "load_run_model", "run"]
