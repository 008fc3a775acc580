"""Runs that cannot clobber each other and reproductions that record (and apply) their seed, thread count,
versions and a command that reruns them: ``reproduce``/``demo`` check their ``--out`` folder before the work, a
run folder is locked while a run uses it, and the results files name a runnable ``seqexplain`` command."""

from __future__ import annotations

import inspect
import json
import os
import shlex
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from write_checks import assert_one_error_line, invoke, snapshot

from seqexplain.errors import InputError
from seqexplain.runs import lock_run_folder

SRC = Path(__file__).resolve().parents[1] / "src"


# --------------------------------------------------------------------------- reproduce / demo --out checks
@pytest.fixture
def fake_runs(monkeypatch):
    """Replace the experiments behind the CLI by recorders (the real ones take minutes)."""
    import seqexplain.demo as demo_mod
    import seqexplain.experiments.vafa2021 as vafa
    import seqexplain.experiments.verwimp2018 as verwimp

    calls: list[tuple[str, dict[str, Any]]] = []

    def fake_majority(out_dir, quick=False, data_root=None, settings=None, progress=True, seed=None):
        calls.append(("vafa2021", {"experiment": "majority_class", "out": out_dir, "quick": quick, "seed": seed,
                                   "threads": torch.get_num_threads()}))
        return {"markdown": "table"}

    def fake_verwimp(out_dir, data_root=None, quick=False, seed=0, command=None, **_):
        calls.append(("verwimp2018", {"out": out_dir, "quick": quick, "seed": seed, "command": command,
                                      "threads": torch.get_num_threads()}))
        return {"ok": 1}

    def fake_demo(out_dir, methods=(), console=None, **_):
        calls.append(("demo", {"out": out_dir}))
        return []

    monkeypatch.setattr(vafa, "run_majority_class", fake_majority)
    monkeypatch.setattr(verwimp, "run_reproduction", fake_verwimp)
    monkeypatch.setattr(demo_mod, "run_demo", fake_demo)
    return calls


COMMANDS = {
    "vafa2021": ["reproduce", "vafa2021", "majority_class"],
    "verwimp2018": ["reproduce", "verwimp2018"],
    "demo": ["demo"],
}


@pytest.mark.parametrize("name", list(COMMANDS))
@pytest.mark.parametrize("kind", ["file", "symlink_to_file", "fifo"])
def test_out_onto_a_file_fails_before_the_work(tmp_path, runner, fake_runs, name, kind):
    target = tmp_path / "target"
    keep = tmp_path / "keep.txt"
    keep.write_text("precious\n")
    if kind == "file":
        target.write_text("precious\n")
    elif kind == "symlink_to_file":
        target.symlink_to(keep.name)
    else:
        os.mkfifo(target)
    before = snapshot(tmp_path)
    assert_one_error_line(invoke(runner, *COMMANDS[name], "--out", target), "not a folder", str(target))
    assert not fake_runs
    assert snapshot(tmp_path) == before


def test_run_demo_checks_its_folder_before_loading(tmp_path):
    from seqexplain.demo import run_demo

    (tmp_path / "out").write_text("x")
    with pytest.raises(InputError, match="not a folder"):
        run_demo(tmp_path / "out", model=object())  # type: ignore[arg-type]
    (tmp_path / "d").mkdir()
    os.mkfifo(tmp_path / "d" / "demo.html")
    with pytest.raises(InputError, match="FIFO"):
        run_demo(tmp_path / "d", model=object())  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------- run folder lock
def test_two_locks_on_one_folder(tmp_path):
    folder = tmp_path / "run"
    with lock_run_folder(folder, "first command"):
        t0 = time.perf_counter()
        with pytest.raises(InputError) as ei, lock_run_folder(folder, "second"):
            pass
        assert time.perf_counter() - t0 < 2.0
        msg = str(ei.value)
        assert str(folder) in msg and "in use" in msg and f"process {os.getpid()}" in msg
    with lock_run_folder(folder):  # released: free again
        pass


def test_cli_reproduce_fails_fast_on_a_folder_another_process_holds(tmp_path, runner, fake_runs):
    folder = tmp_path / "run"
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(SRC)!r})
        from seqexplain.runs import lock_run_folder
        with lock_run_folder({str(folder)!r}, "holder"):
            print("locked", flush=True)
            sys.stdin.readline()
    """)
    holder = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        (folder / "results.json").write_text("theirs")
        before = snapshot(tmp_path)
        t0 = time.perf_counter()
        for name in COMMANDS:
            assert_one_error_line(invoke(runner, *COMMANDS[name], "--out", folder), "in use", str(folder),
                                  f"process {holder.pid}")
        assert time.perf_counter() - t0 < 10.0
        assert not fake_runs and snapshot(tmp_path) == before
    finally:
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.close()
        holder.wait(timeout=30)
    assert invoke(runner, *COMMANDS["verwimp2018"], "--out", folder).exit_code == 0  # released with the process


# -------------------------------------------------------------------------------------- reproductions
@pytest.fixture
def keep_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("name", ["vafa2021", "verwimp2018"])
def test_reproduce_applies_threads_and_seed_and_names_a_runnable_command(tmp_path, runner, fake_runs, keep_threads,
                                                                        name):
    out = tmp_path / "o"
    threads = 3 if torch.get_num_threads() != 3 else 2
    args = [*COMMANDS[name], "--out", out, "--quick", "--threads", threads, "--seed", 7]
    assert invoke(runner, *args).exit_code == 0
    kind, got = fake_runs[-1]
    assert kind == name and got["seed"] == 7 and got["quick"] and got["threads"] == threads
    if name == "verwimp2018":  # the command the results file names reruns the same thing
        argv = shlex.split(got["command"])
        assert argv[0] == "seqexplain"
        torch.set_num_threads(1)
        assert invoke(runner, *argv[1:]).exit_code == 0
        assert fake_runs[-1][1] == got


def test_reproduce_defaults_are_one_thread_and_seed_0(tmp_path, runner, fake_runs, keep_threads):
    torch.set_num_threads(2)
    assert invoke(runner, "reproduce", "vafa2021", "majority_class", "--out", tmp_path / "o").exit_code == 0
    assert fake_runs[-1][1]["threads"] == 1 and fake_runs[-1][1]["seed"] == 0


def needs_data(name: str) -> None:
    from seqexplain.data.paths import data_root

    try:
        found = (data_root() / name).exists()
    except Exception:  # noqa: BLE001 - no data root configured
        found = False
    if not found:
        pytest.skip(f"the {name} data set is not installed")


def check_run_record(record: dict[str, Any], seed: int, threads: int) -> list[str]:
    assert record["seed"] == seed and record["threads"] == threads
    versions = record["versions"]
    assert versions["torch"] == torch.__version__.split("+")[0] or versions["torch"] == torch.__version__
    assert versions["python"] == ".".join(map(str, sys.version_info[:3]))
    assert versions["seqexplain"] and versions["transformers"]
    return shlex.split(record["command"])


def test_majority_class_results_record_the_run(tmp_path, runner, monkeypatch, keep_threads):
    """A real (tiny) majority-class run through the CLI: the results file holds the seed, threads, versions and a
    command that the CLI parses back into the same call."""
    import seqexplain.experiments.vafa2021 as vafa

    pytest.importorskip("matplotlib")
    real = vafa.run_majority_class
    seen: list[dict[str, Any]] = []

    def tiny(out_dir, quick=False, data_root=None, seed=None, **_):
        seen.append({"threads": torch.get_num_threads(), "seed": seed})
        s = vafa.MajoritySettings(steps=4, batch_size=8, lr=3e-3, warmup_steps=1, dropout=0.0, mixture=0.5,
                                  n_train=64, n_test=32, n_compat=8, n_curve=2, n_rationales=1, compat_steps=2,
                                  n_valid=16)
        return real(out_dir, quick=quick, data_root=data_root, settings=s, progress=False, seed=seed)

    monkeypatch.setattr(vafa, "run_majority_class", tiny)
    needs_data("majority_class")
    out = tmp_path / "run"
    result = invoke(runner, "reproduce", "vafa2021", "majority_class", "--out", out, "--quick", "--threads", 2,
                    "--seed", 3)
    assert result.exit_code == 0, result.output
    assert seen == [{"threads": 2, "seed": 3}]
    summary = json.loads((out / "results.json").read_text())
    assert summary["settings"]["seed"] == 3
    argv = check_run_record(summary["run"], seed=3, threads=2)
    assert argv[:4] == ["seqexplain", "reproduce", "vafa2021", "majority_class"]
    # the recorded command parses into the same call (run it with the heavy part recorded only)
    calls: list[Any] = []
    monkeypatch.setattr(vafa, "run_majority_class", lambda *a, **k: calls.append((a, k)) or {})
    torch.set_num_threads(1)
    assert invoke(runner, *argv[1:]).exit_code == 0
    assert calls == [((out,), {"quick": True, "data_root": None, "seed": 3})]
    assert torch.get_num_threads() == 2


def test_recorded_lm_paired_command_runs(tmp_path, runner, monkeypatch, keep_threads):
    """``seqexplain reproduce vafa2021 lm_paired`` (reads stored results; seconds): the results file names the
    command with --threads and --seed, and that command runs."""
    out = tmp_path / "lm"
    monkeypatch.setattr("seqexplain.experiments.vafa2021_lm_paired.table_records",
                        lambda out_dir, experiment, variant: ({"model": variant, "keys": []}, []))
    monkeypatch.setattr("seqexplain.experiments.vafa2021_lm_paired.PAIRINGS",
                        {"lambada": ("title", lambda shipped, compatible, labels: [{"method": "m", "n": 0}])})
    assert invoke(runner, "reproduce", "vafa2021", "lm_paired", "--out", out, "--threads", 2, "--seed", 5
                  ).exit_code == 0
    summary = json.loads((out / "paired.json").read_text())
    argv = check_run_record(summary["run"], seed=None, threads=2)  # type: ignore[arg-type]
    assert argv[:4] == ["seqexplain", "reproduce", "vafa2021", "lm_paired"]
    assert "--threads" in argv and "--seed" in argv
    torch.set_num_threads(1)
    assert invoke(runner, *argv[1:]).exit_code == 0
    assert torch.get_num_threads() == 2


def test_verwimp2018_quick_results_name_the_command_that_made_them(tmp_path, runner, monkeypatch, keep_threads):
    """A real ``--quick`` run (seconds): results.md and results.json name the seqexplain command (before, they named
    ``python -m seqexplain.experiments.verwimp2018 reproduce verwimp2018 ...``, which does not run)."""
    import seqexplain.experiments.verwimp2018 as verwimp

    needs_data("wikitext2")
    out = tmp_path / "v"
    result = invoke(runner, "reproduce", "verwimp2018", "--out", out, "--quick", "--threads", 2, "--seed", 4)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "results.json").read_text())
    assert summary["seed"] == 4 and summary["torch_threads"] == 2
    argv = check_run_record(summary["run"], seed=4, threads=2)
    assert f"Command: `{summary['run']['command']}`" in (out / "results.md").read_text()
    assert argv[:3] == ["seqexplain", "reproduce", "verwimp2018"]
    calls: list[dict[str, Any]] = []
    real = inspect.signature(verwimp.run_reproduction)

    def record(*args: Any, **kwargs: Any) -> dict[str, Any]:
        calls.append(dict(real.bind(*args, **kwargs).arguments))
        return {"test_ppl": 1.0, "spearman_delay_vs_sum_sv": -1.0, "decays_with_delay": True, "out_dir": "x"}

    monkeypatch.setattr(verwimp, "run_reproduction", record)
    torch.set_num_threads(1)
    assert invoke(runner, *argv[1:]).exit_code == 0
    assert calls[0]["out_dir"] == out and calls[0]["quick"] and calls[0]["seed"] == 4
    assert torch.get_num_threads() == 2


def test_lm_recipe_results_record_the_run(tmp_path, runner, keep_threads):
    """A real quick ``timing`` run of the LM recipes (a tiny random Llama, one prompt; seconds)."""
    needs_data("questions_words")
    out = tmp_path / "lm"
    args = ["reproduce", "vafa2021", "timing", "--quick", "--out", out, "--limit", 1, "--methods", "greedy",
            "--no-progress"]
    assert invoke(runner, *args, "--threads", 2, "--seed", 5).exit_code == 0
    summary = json.loads((out / "timing_shipped.json").read_text())
    assert summary["seed"] == 5 and summary["threads"] == 2
    argv = check_run_record(summary["run"], seed=5, threads=2)
    assert argv[:4] == ["seqexplain", "reproduce", "vafa2021", "timing"]
    torch.set_num_threads(1)
    assert invoke(runner, *argv[1:]).exit_code == 0  # the recorded command runs (its results are cached: seconds)
    assert torch.get_num_threads() == 2
    assert json.loads((out / "timing_shipped.json").read_text())["run"]["command"] == summary["run"]["command"]
