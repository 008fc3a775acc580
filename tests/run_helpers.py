"""Helpers for the run tests: a tiny random-weight BERT classifier saved to a folder, a JSONL corpus and a
configuration writer. Nothing is downloaded (the tokenizer is MiniLM's WordPiece when installed, else one trained
in code: see ``conftest.wordpiece_tokenizer``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SENTENCES = [
    "the film is a delight from start to end",
    "a dull , lifeless and overlong movie",
    "great acting but the plot is thin",
    "i would not watch it again",
    "an honest and moving story",
    "the jokes fall flat every time",
    "quietly brilliant work by the cast",
    "too long and too loud",
    "a warm , funny film",
    "nothing here is new or fresh",
    "the best film of the year",
    "bad script , worse direction",
    "charming in its own small way",
    "it drags in the middle",
    "an easy film to love",
    "the ending ruins it",
]


#: the CLI's environment in the run tests: no colour, wide lines (one error line stays one line)
CLI_ENV = {"NO_COLOR": "1", "COLUMNS": "400"}


def run_cli(*args: Any) -> tuple[int, str]:
    """``seqexplain run ARGS --no-progress`` through typer's runner: ``(exit code, output)``."""
    from typer.testing import CliRunner

    from seqexplain.cli import app

    result = CliRunner().invoke(app, ["run", *[str(a) for a in args], "--no-progress"], env=CLI_ENV)
    return result.exit_code, result.output


def tiny_classifier(folder: Path) -> Path:
    """Save a 2-layer BERT classifier (hidden size 16, labels negative / positive, seeded) and its tokenizer."""
    import torch
    from conftest import wordpiece_tokenizer
    from transformers import BertConfig, BertForSequenceClassification

    tok = wordpiece_tokenizer()
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=64, num_labels=2,
                     id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1})
    model = BertForSequenceClassification(cfg).eval()
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def corpus(path: Path, n: int = 16, rationales: bool = True) -> Path:
    """``n`` JSONL records (text, label, id, gold rationale = the first word's character span)."""
    lines = []
    for i in range(n):
        text = SENTENCES[i % len(SENTENCES)]
        record: dict[str, Any] = {"text": text, "label": i % 2, "id": f"ex{i}"}
        if rationales:
            record["rationale"] = [[0, len(text.split()[0])]]
        lines.append(json.dumps(record))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def config_dict(model_dir: Path, data_file: Path, out_dir: Path, /, **overrides: Any) -> dict[str, Any]:
    """A run configuration: three methods (gradient norm, grad×input, occlusion), all metrics with 2 random
    repeats, shard size 4. ``overrides`` replace top-level keys; a dict value merges into that section."""
    cfg: dict[str, Any] = {
        "seed": 3,
        "shard_size": 4,
        "data": {"format": "jsonl", "path": str(data_file), "target_field": "label", "id_field": "id",
                 "rationale_field": "rationale"},
        "model": {"path": str(model_dir)},
        "methods": [{"name": "gradient_norm"}, {"name": "grad_x_input"},
                    {"name": "occlusion", "options": {"token_budget": 4096}}],
        "metrics": {"faithfulness": {"random_repeats": 2, "bins": [10.0, 50.0]}},
        "output": {"dir": str(out_dir), "report": False},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    return cfg


def write_config(path: Path, cfg: dict[str, Any]) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path


def canonical(tables) -> str:
    """The rows of ``tables`` sorted by (example, method), timings dropped, as JSON (NaN compares equal)."""
    from seqexplain.runs.store import canonical_rows

    return json.dumps(canonical_rows(tables), sort_keys=True)


def shard_tables(out: Path) -> list:
    import pyarrow.parquet as pq

    return [pq.read_table(p) for p in sorted((out / "shards").glob("shard-*.parquet"))]
