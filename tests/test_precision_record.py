"""Where and in which precision a result was computed is part of it: ``meta`` holds the device, the weights' dtype
and the autocast dtype, and the console and HTML headers name a reduced precision. A bf16-autocast result was told
apart from a float32 one only by its numbers."""

from __future__ import annotations

import json

import torch
from rich.console import Console

import seqexplain as se
from seqexplain.report import render_console, render_html


def _header(attr) -> str:
    console = Console(record=True, width=200, color_system=None)
    render_console(attr, console=console, numbers=True)
    return console.export_text()


def test_float32_records_device_and_dtype_and_shows_nothing(gpt2, tmp_path):
    attr = se.explain(se.load_model(*gpt2), "The cat sat on the", " mat", "gradient_norm")
    assert {k: attr.meta[k] for k in ("device", "dtype")} == {"device": "cpu", "dtype": "float32"}
    assert "autocast" not in attr.meta
    assert "precision" not in _header(attr) and "precision" not in render_html(attr)


def test_autocast_is_recorded_saved_and_shown(gpt2, tmp_path):
    attr = se.explain(se.load_model(*gpt2, autocast=torch.bfloat16), "The cat sat on the", " mat", "gradient_norm")
    assert attr.meta["autocast"] == "bfloat16" and attr.meta["dtype"] == "float32"
    attr.save(tmp_path / "a.json")
    assert json.loads((tmp_path / "a.json").read_text())["meta"]["autocast"] == "bfloat16"
    assert se.Attribution.load(tmp_path / "a.json").meta["autocast"] == "bfloat16"
    assert "precision=bfloat16 autocast" in _header(attr)
    assert "bfloat16 autocast" in render_html(attr)


def test_half_precision_weights_are_shown(gpt2):
    model, tok = gpt2
    half = type(model)(model.config).to(torch.bfloat16).eval()
    half.load_state_dict(model.state_dict())
    attr = se.explain(se.load_model(half, tok), "The cat sat on the", " mat", "occlusion")
    assert attr.meta["dtype"] == "bfloat16" and "precision=bfloat16 weights" in _header(attr)
