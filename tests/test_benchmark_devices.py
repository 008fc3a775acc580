"""What benchmarks/gpu_check.sh relies on, checked without a GPU: every benchmark takes ``--device`` and refuses a
device this machine lacks with exit status 2 and one line, before it loads any model; the gpu-marked tests pass when
run CPU against CPU."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p.name for p in (ROOT / "benchmarks").glob("bench_*.py"))
# a GPU index no machine has: refused whether or not CUDA is there
MISSING = "cuda" if not torch.cuda.is_available() else f"cuda:{torch.cuda.device_count()}"


def test_every_benchmark_is_listed():
    assert len(SCRIPTS) >= 10 and "bench_explain_many.py" in SCRIPTS


@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_refuses_a_missing_device_with_exit_2(script):
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--device", MISSING], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"{script}: error: --device"), last
    assert "Traceback" not in proc.stderr


@pytest.fixture()
def common(benchmark_module):
    return benchmark_module("_common")


@pytest.mark.parametrize("device,message", [("bogus", "is not a torch device"), ("meta", "run on cpu or cuda"),
                                            (MISSING, "CUDA is not available" if MISSING == "cuda" else "GPU(s)")])
def test_check_device_messages(common, capsys, device, message):
    ap = argparse.ArgumentParser(prog="bench")
    with pytest.raises(SystemExit) as exc:
        common.check_device(ap, device)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_check_device_accepts_cpu(common):
    common.check_device(argparse.ArgumentParser(prog="bench"), "cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="with CUDA the gpu-marked tests run for real")
def test_gpu_marked_tests_pass_cpu_against_cpu():
    """The CUDA comparisons skip on a machine without CUDA, so nothing else would notice when they fall behind the
    code (they once still read an Attribution field that v2 had moved): run them CPU against CPU."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), HF_HUB_OFFLINE="1", SEQEXPLAIN_TEST_DEVICE="cpu",
               OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
                           "-m", "gpu", "tests/test_gpu_oracles.py", "tests/test_snell_device.py"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert " passed" in proc.stdout and " failed" not in proc.stdout
