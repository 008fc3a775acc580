"""Paired view of the LM recipes, on hand-made stored results with hand-computed expectations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from seqexplain.cli import app
from seqexplain.errors import InputError
from seqexplain.experiments.vafa2021_lm_paired import analogies_paired, lambada_paired, run_paired

LABELS = {"greedy": "greedy", "occlusion": "occlusion", "exhaustive": "exhaustive"}


def _lam(key: str, idx: int, method: str, length: int, iou: float, reached: bool) -> dict:
    return {"key": key, "kind": "rationale", "lambada_index": idx, "method": method, "length": length, "iou": iou,
            "reached": reached}


def _ana(key: str, ex: str, method: str, rationale: list[int]) -> dict:
    # context positions 0..9; antecedent at 2, distractor at 5
    return {"key": key, "kind": "rationale", "id": ex, "method": method, "rationale": rationale,
            "antecedent": [2], "distractor": [5]}


def test_lambada_pairs_only_passages_reached_under_both() -> None:
    shipped = [_lam("a", 1, "greedy", 10, 0.2, True), _lam("b", 2, "greedy", 8, 0.5, True),
               _lam("c", 3, "greedy", 30, 0.1, False), _lam("d", 4, "greedy", 5, 0.3, True)]
    compatible = [_lam("e", 1, "greedy", 6, 0.4, True), _lam("f", 2, "greedy", 8, 0.3, True),
                  _lam("g", 3, "greedy", 4, 0.9, True), _lam("h", 4, "greedy", 9, 0.0, False)]
    (row,) = lambada_paired(shipped, compatible, LABELS)
    # passages 1 and 2 reached under both: lengths 10, 8 -> 6, 8; IOU 0.2, 0.5 -> 0.4, 0.3
    assert row["passages"] == 4 and row["reached both"] == 2
    assert row["Length shipped"] == 9.0 and row["Length compatible"] == 7.0
    assert (row["shorter"], row["longer"], row["equal"]) == (1, 0, 1)
    assert row["IOU shipped"] == pytest.approx(0.35) and row["IOU compatible"] == pytest.approx(0.35)


def test_analogies_pairs_shared_examples_and_found_exhaustive() -> None:
    shipped = [_ana("a", "x", "greedy", [2, 5, 9]), _ana("b", "y", "greedy", [9]), _ana("c", "z", "greedy", [2, 9]),
               _ana("d", "x", "exhaustive", [2, 9]), _ana("e", "y", "exhaustive", [])]
    compatible = [_ana("f", "x", "greedy", [2, 9]), _ana("g", "y", "greedy", [2, 5, 8, 9]),
                  _ana("h", "x", "exhaustive", [2, 9]), _ana("i", "y", "exhaustive", [5, 9])]
    rows = {r["method"]: r for r in analogies_paired(shipped, compatible, LABELS)}
    g = rows["greedy"]  # shared: x, y
    assert g["examples"] == 2
    assert g["Length shipped"] == 2.0 and g["Length compatible"] == 3.0
    assert g["Ante shipped"] == 0.5 and g["Ante compatible"] == 1.0
    assert g["No D shipped"] == 0.5 and g["No D compatible"] == 0.5
    e = rows["exhaustive"]  # y found only under the compatible model
    assert e["examples"] == 1 and e["Length shipped"] == 2.0 and e["No D compatible"] == 1.0
    assert "occlusion" not in rows


def _write_run(out: Path, experiment: str, variant: str, records: list[dict], model: str,
               keys: list[str] | None = None) -> None:
    summary = {"experiment": experiment, "variant": variant, "model": model}
    if keys is not None:
        summary["keys"] = keys
    (out / f"{experiment}_{variant}.json").write_text(json.dumps(summary), encoding="utf-8")
    # a stale record of another run and a line cut by an interruption must be ignored
    lines = [json.dumps(r) for r in records] + [json.dumps(_ana("stale", "x", "greedy", [0, 1, 2, 3]))[:-1],
                                                json.dumps({**records[0], "key": "other-settings", "rationale": []})]
    (out / f"{experiment}_{variant}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_run_paired_reads_the_tables_records_and_cli(tmp_path: Path) -> None:
    shipped = [_ana("a", "x", "greedy", [2, 5, 9])]
    compatible = [_ana("b", "x", "greedy", [2, 9])]
    with pytest.raises(InputError, match="no experiment run with both models"):
        run_paired(tmp_path, LABELS)
    _write_run(tmp_path, "analogies", "shipped", shipped, "M", keys=["a"])
    _write_run(tmp_path, "analogies", "compatible", compatible, "M + LoRA", keys=["b"])
    out = run_paired(tmp_path, LABELS)
    (row,) = out["tables"]["analogies"]["rows"]
    assert row["Length shipped"] == 3.0 and row["Length compatible"] == 2.0 and row["No D compatible"] == 1.0
    assert "lambada" not in out["tables"]
    assert "M vs M + LoRA" in (tmp_path / "paired.md").read_text(encoding="utf-8")
    # "seed": null beside a command with --seed 0 read as a lost seed: the record says why there is none
    assert out["run"]["seed"] is None and "its --seed is not used" in out["run"]["seed_note"]
    result = CliRunner().invoke(app, ["reproduce", "vafa2021", "lm_paired", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "Analogies, examples rationalized under both models" in result.stdout


def test_run_paired_errors_say_what_to_do(tmp_path: Path) -> None:
    _write_run(tmp_path, "lambada", "shipped", [_lam("a", 1, "greedy", 3, 0.1, True)], "M")  # no keys: older run
    _write_run(tmp_path, "lambada", "compatible", [_lam("b", 1, "greedy", 3, 0.1, True)], "M", keys=["b"])
    with pytest.raises(InputError, match=r"older version.*rerun seqexplain reproduce vafa2021 lambada"):
        run_paired(tmp_path, LABELS)
    _write_run(tmp_path, "lambada", "shipped", [_lam("a", 1, "greedy", 3, 0.1, True)], "M", keys=["a", "gone"])
    with pytest.raises(InputError, match="lacks 1 of the results"):
        run_paired(tmp_path, LABELS)
    result = CliRunner().invoke(app, ["reproduce", "vafa2021", "lm_paired", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "lacks 1 of the results" in result.stderr


def test_run_paired_refuses_runs_of_other_settings(tmp_path: Path) -> None:
    """A --quick run (tiny random model) or one with other method settings must not be paired with a full one: the
    table would read as a fine-tune effect. Settings of the fine-tune itself (train_steps, ...) may differ."""
    base = {"ig_steps": 8, "max_size": None, "exhaustive_max_size": 3, "exhaustive_fraction": 1 / 3,
            "train_steps": 400, "token_budget": 4096}
    for variant, extra in (("shipped", {"quick": False, "seed": 0, "settings": base}),
                           ("compatible", {"quick": False, "seed": 0, "settings": {**base, "train_steps": 50,
                                                                                    "token_budget": 64}})):
        _write_run(tmp_path, "analogies", variant, [_ana(variant, "x", "greedy", [2, 9])], "M", keys=[variant])
        path = tmp_path / f"analogies_{variant}.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **extra}), encoding="utf-8")
    assert run_paired(tmp_path, LABELS)["quick"] is False
    path = tmp_path / "analogies_compatible.json"
    saved = json.loads(path.read_text())
    for change in ({"quick": True}, {"seed": 1}, {"settings": {**base, "max_size": 5}}):
        path.write_text(json.dumps({**saved, **change}), encoding="utf-8")
        with pytest.raises(InputError, match="other settings"):
            run_paired(tmp_path, LABELS)
