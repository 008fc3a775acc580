"""A run killed with SIGKILL at random moments and started again ends with exactly the rows of an uninterrupted
run: none lost, none duplicated, every row equal (timings aside) after a canonical sort.

The run is a subprocess on a tiny random-weight BERT classifier: a fresh Python (``python -c`` calling
:func:`seqexplain.runs.runner.run`) in the slow test, a fork of the test process (no start-up) in the fast one;
the uninterrupted reference run is such a child too. Every other kill comes a delay after the child's imports are
done, drawn uniformly in (0, duration of the reference run after its imports) from a seeded generator, so kills land
while the model loads, while the data is read, in the middle of a shard, or while a shard file is written; the
kills between them wait for the run's first shard file and then a delay drawn in (0, half that duration), so that
many kills hit a run with shards on disk however the machine's load shifts the timings. When a run finishes before
the next kill, a fresh output folder starts, so every kill hits a run that is not finished.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from run_helpers import canonical, config_dict, corpus, shard_tables, tiny_classifier, write_config

from seqexplain.runs.config import read_config
from seqexplain.runs.runner import run

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ("import sys, torch; torch.set_num_threads(1)\n"
          "from seqexplain.runs.config import read_config\n"
          "from seqexplain.runs.runner import run\n"
          "print('started', flush=True)\n"
          "run(read_config(sys.argv[1]), progress=False)\n")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error")
    return env


class _Interpreter:
    """The run in a fresh Python (as a user runs it); ``wait`` returns True when it ended by itself."""

    def __init__(self, config: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(config)], env=_env(),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "started"

    def wait(self, timeout: float) -> bool:
        try:
            _, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        assert self.proc.returncode == 0, err[-3000:]
        return True

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.communicate()


class _Fork:
    """The run in a forked copy of this process (no start-up: the fast test); ``os._exit`` skips pytest's
    clean-up in the child."""

    def __init__(self, config: Path) -> None:
        self.pid = os.fork()
        if self.pid == 0:  # pragma: no cover - the child
            code = 0
            try:
                run(read_config(config), progress=False)
            except BaseException:
                import traceback

                traceback.print_exc()
                code = 1
            os._exit(code)

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                assert os.waitstatus_to_exitcode(status) == 0, "the forked run failed"
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)


def _shards(out: Path) -> int:
    return len(list((out / "shards").glob("shard-*.parquet"))) if (out / "shards").exists() else 0


def _wait_for_a_shard(proc: _Interpreter | _Fork, out: Path, timeout: float = 600.0) -> bool:
    """Poll until ``out`` holds a shard file; True when the run ended by itself first."""
    deadline = time.monotonic() + timeout
    while not _shards(out):
        if proc.wait(0.01):
            return True
        assert time.monotonic() < deadline, f"no shard in {out} after {timeout} s"
    return False


def _kill_and_resume(tmp_path: Path, n_examples: int, n_kills: int, seed: int, runner: type) -> dict[str, int]:
    model = tiny_classifier(tmp_path / "model")
    data = corpus(tmp_path / "data.jsonl", n_examples)
    overrides = {"shard_size": 2, "metrics": {"faithfulness": {"random_repeats": 1, "bins": [10.0, 50.0]}}}
    ref_cfg = write_config(tmp_path / "ref.yaml", config_dict(model, data, tmp_path / "ref", **overrides))
    reference_run = runner(ref_cfg)
    t0 = time.monotonic()
    assert reference_run.wait(600)  # the uninterrupted run, timed from the end of the child's imports
    duration = time.monotonic() - t0
    reference = canonical(shard_tables(tmp_path / "ref"))
    rng = random.Random(seed)
    stats = {"kills": 0, "folders": 0, "kills_after_a_shard": 0}
    while stats["kills"] < n_kills:
        out = tmp_path / f"run{stats['folders']}"
        cfg = write_config(tmp_path / f"run{stats['folders']}.yaml", config_dict(model, data, out, **overrides))
        stats["folders"] += 1
        while stats["kills"] < n_kills:
            proc = runner(cfg)
            after_a_shard = stats["kills"] % 2 == 1
            delay = rng.uniform(0.0, duration / 2 if after_a_shard else duration)
            if (after_a_shard and _wait_for_a_shard(proc, out)) or proc.wait(delay):
                break  # finished before the kill: check it, then a fresh folder
            before = _shards(out)
            proc.kill()
            stats["kills"] += 1
            stats["kills_after_a_shard"] += before > 0
        assert runner(cfg).wait(600)
        assert canonical(shard_tables(out)) == reference, f"{out} differs from the uninterrupted run"
        assert not [p for p in (out / "shards").iterdir() if p.name.endswith(".tmp")]
        assert (out / "manifest.json").is_file() and (out / "results.parquet").is_file()
    return stats


def test_three_kills_lose_and_duplicate_nothing(tmp_path):
    stats = _kill_and_resume(tmp_path, n_examples=8, n_kills=3, seed=1, runner=_Fork)
    assert stats["kills"] == 3, stats


@pytest.mark.slow
@pytest.mark.timeout(2400)  # 20+ fresh interpreters: minutes on a loaded 2-core machine
def test_twenty_kills_lose_and_duplicate_nothing(tmp_path):
    stats = _kill_and_resume(tmp_path, n_examples=16, n_kills=20, seed=12, runner=_Interpreter)
    assert stats["kills"] == 20
    assert stats["kills_after_a_shard"] >= 5, stats  # many kills landed in the middle of the work
