"""Scale-out with torch.distributed (gloo on CPU): two ranks write the shards they own and their manifests, rank 0
merges, and the merged output equals a one-process run; a rerun after a rank died redoes only its unfinished
shards; a rank started with another configuration stops every rank with one line.

The fast tests fork two ranks from this process (the launcher's environment set by hand: ``RANK``,
``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``, as ``torchrun`` sets it); the slow test launches
``python -m torch.distributed.run --nproc-per-node 2`` like a user.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from run_helpers import canonical, config_dict, corpus, tiny_classifier, write_config

from seqexplain.errors import SeqExplainError
from seqexplain.runs.config import read_config
from seqexplain.runs.runner import run

ROOT = Path(__file__).resolve().parents[1]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("dist")
    model, data = tiny_classifier(base / "model"), corpus(base / "data.jsonl", 10)
    ref = write_config(base / "ref.yaml", config_dict(model, data, base / "ref"))
    run(read_config(ref), progress=False)
    return model, data, base, canonical(pq.read_table(base / "ref" / "results.parquet"))


def _fork_ranks(configs: list[Path], tmp_path: Path) -> list[tuple[int, str]]:
    """Run rank r on ``configs[r]`` in forked processes; their exit codes and error messages."""
    port = _port()
    pids = []
    for rank, config in enumerate(configs):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(len(configs)),
                              MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
            code, message = 0, ""
            try:
                run(read_config(config), progress=False)
            except Exception as exc:  # noqa: BLE001 - reported to the parent
                code, message = (2 if isinstance(exc, SeqExplainError) else 1), f"{type(exc).__name__}: {exc}"
            (tmp_path / f"rank{rank}.txt").write_text(message)
            os._exit(code)
        pids.append(pid)
    codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids]
    return [(c, (tmp_path / f"rank{r}.txt").read_text()) for r, c in enumerate(codes)]


def test_two_ranks_equal_one_process_and_resume_a_dead_rank(tmp_path, setup):
    model, data, _, reference = setup
    cfg = write_config(tmp_path / "run.yaml", config_dict(model, data, tmp_path / "out"))
    assert _fork_ranks([cfg, cfg], tmp_path) == [(0, ""), (0, "")]
    out = tmp_path / "out"
    assert canonical(pq.read_table(out / "results.parquet")) == reference
    ranks = [json.loads((out / f"manifest-rank-{r}.json").read_text()) for r in (0, 1)]
    assert [m["shards"] for m in ranks] == [[0, 2], [1]] and {m["world_size"] for m in ranks} == {2}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["n_rows"] == 30 and [m["rank"] for m in manifest["ranks"]] == [0, 1]

    # rank 1 "died" before writing shard 1: a rerun redoes shard 1 only
    kept = {s: (out / "shards" / f"shard-00000{s}.parquet").stat().st_mtime_ns for s in (0, 2)}
    (out / "shards" / "shard-000001.parquet").unlink()
    (out / "manifest.json").unlink()
    assert _fork_ranks([cfg, cfg], tmp_path) == [(0, ""), (0, "")]
    assert kept == {s: (out / "shards" / f"shard-00000{s}.parquet").stat().st_mtime_ns for s in (0, 2)}
    assert canonical(pq.read_table(out / "results.parquet")) == reference


def test_a_rank_with_another_config_stops_every_rank(tmp_path, setup):
    model, data, _, _ = setup
    a = write_config(tmp_path / "a.yaml", config_dict(model, data, tmp_path / "out"))
    b = write_config(tmp_path / "b.yaml", config_dict(model, data, tmp_path / "out", seed=9))
    results = _fork_ranks([a, b], tmp_path)
    for code, message in results:
        assert code == 2 and "rank 1 was started with another configuration" in message, results
        assert "\n" not in message
    assert not (tmp_path / "out").exists()  # nothing was written


@pytest.mark.slow
def test_torchrun_two_processes_equal_one_process(tmp_path, setup):
    model, data, _, reference = setup
    cfg = write_config(tmp_path / "run.yaml", config_dict(model, data, tmp_path / "out"))
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(_port()),
           "-m", "seqexplain.cli", "run", str(cfg), "--no-progress"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert canonical(pq.read_table(tmp_path / "out" / "results.parquet")) == reference
