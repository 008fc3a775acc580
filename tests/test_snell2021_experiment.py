"""``seqexplain reproduce snell2021``: the quick SST-2 pipeline end to end through the CLI (results, plots, dumps,
resumption), AG News's deterministic split, and the bad inputs (exit 2, one line)."""

from __future__ import annotations

import json

import pytest

from seqexplain.cli import app
from seqexplain.errors import DataError, InputError


def _require(folder: str) -> None:
    from seqexplain.data.paths import require_data

    try:
        require_data(folder)
    except DataError as exc:
        pytest.skip(f"needs ../shared/data/{folder}: {exc}")


def test_tiny_sst2_through_the_cli(runner, tmp_path):
    """The pipeline at its smallest (fast): 10 updates, 30 examples per split."""
    _require("sst")
    args = ["reproduce", "snell2021", "sst2", "--quick", "--steps", "10", "--max-eval", "30", "--out", str(tmp_path)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["schedule"] == [0, 5, 10] and res["n_eval"] == {"val": 30, "train": 30}
    assert "| sst2 / val / top_k / accuracy |" in result.output
    _check_model_folder(tmp_path, res, "the movie is good", "positive")


def _check_model_folder(out, res, text, target) -> None:
    """``out/model`` is run A's best validation checkpoint, opened by load_model with the Snell adapter."""
    import torch
    from safetensors.torch import load_file

    import seqexplain
    from seqexplain.analysis.training_dynamics import read_dumps
    from seqexplain.training.snell import checkpoint_path

    step = res["model"]["step"]
    assert step in res["schedule"] and res["model"]["run"] == "normal_A"
    val = sorted((d for d in read_dumps(out / "dumps", "val") if d.run == "normal_A"), key=lambda d: d.step)
    accs = [sum(p == y for p, y in zip(d.predicted, d.labels, strict=True)) / len(d.labels) for d in val]
    assert step == val[accs.index(max(accs))].step  # the earliest checkpoint of best validation accuracy
    want = load_file(checkpoint_path(out / "runs" / "normal_A", step))
    got = load_file(out / "model" / "model.safetensors")
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)
    adapter = seqexplain.load_model(out / "model")
    assert type(adapter).__name__ in ("SnellClassifierAdapter", "SnellTranslationAdapter")
    for method in ("attention_last", "occlusion"):
        assert seqexplain.explain(adapter, text, target, method=method).scores.shape[0] >= 1


@pytest.mark.slow
def test_quick_sst2_through_the_cli(runner, tmp_path):
    _require("sst")
    out = tmp_path / "sst2"
    args = ["reproduce", "snell2021", "sst2", "--quick", "--out", str(out), "--threads", "1", "--seed", "0"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    res = json.loads((out / "results.json").read_text())
    assert res["run"]["seed"] == 0 and res["run"]["threads"] == 1 and "snell2021 sst2" in res["run"]["command"]
    assert res["schedule"] == [0, 5, 10, 20, 40, 60]
    row = res["table"]["sst2 / val / top_k / accuracy"]
    for key in ("agr_unif", "agr_px", "agr_grad", "baseline", "xi_unif", "xi_px", "xi_grad", "best_perf"):
        assert key in row
    assert 0 <= row["agr_unif"] <= 1 and 0 <= row["baseline"] <= 1 and 0.4 <= row["best_perf"] <= 1
    assert 0 <= row["extra"]["lr"]["agr"] <= 1
    assert len(row["agreement_curve"]) == 6 and len(row["agreement_by_run"]) == 1  # run B
    plots = out / "plots"
    assert (plots / "sst2_val_agreement.png").is_file() and (plots / "sst2_train_accuracy.png").is_file()
    assert len(list((out / "dumps").glob("*.parquet"))) == 3 * 6 * 2  # runs × checkpoints × splits
    assert "A(α,β^uf)" in (out / "results.md").read_text()
    # a rerun in the same folder reuses runs, dumps and baselines and gives the same table
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert json.loads((out / "results.json").read_text())["table"] == res["table"]


def test_checkpoints_beyond_training_exit_2(runner, tmp_path):
    args = ["reproduce", "snell2021", "sst2", "--quick", "--steps", "8", "--checkpoint-steps", "4,12", "--out",
            str(tmp_path)]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "checkpoint steps [12] lie outside the training length 0..8" in result.output
    assert "Traceback" not in result.output


def test_unknown_experiment_and_too_few_runs(runner, tmp_path):
    from seqexplain.experiments.snell2021 import settings

    result = runner.invoke(app, ["reproduce", "snell2021", "imdb", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "unknown experiment 'imdb'" in result.output
    with pytest.raises(InputError, match="at least one more normal run"):
        settings(True, n_runs=1)
    assert settings(True, steps=8).checkpoint_steps == (5,)  # default checkpoints follow --steps
    bad = runner.invoke(app, ["reproduce", "snell2021", "sst2", "--checkpoint-steps", "a,b", "--out", str(tmp_path)])
    assert bad.exit_code == 2 and "comma-separated" in bad.output


def test_ag_news_split_is_deterministic_and_disjoint():
    _require("ag_news")
    from seqexplain.data.ag_news import read_ag_news, split_ag_news

    items = read_ag_news()
    parts = {s: split_ag_news(items, s) for s in ("train", "val", "test")}
    assert [len(parts[s]) for s in ("train", "val", "test")] == [6080, 760, 760]
    assert parts["val"][0] == items[8] and parts["test"][0] == items[9] and parts["train"][8] == items[10]
    assert {x.label for x in parts["val"]} == {0, 1, 2, 3}
    assert items[0].words[:5] == ("fears", "for", "t", "n", "pension")
    with pytest.raises(InputError):
        split_ag_news(items, "dev")


@pytest.mark.slow
def test_quick_multi30k(tmp_path):
    _require("multi30k")
    from seqexplain.experiments.snell2021 import run

    res = run("multi30k", tmp_path, quick=True, progress=False)
    row = res["table"]["multi30k / val / top_k / token_accuracy"]
    assert 0 <= row["agr_unif"] <= 1 and len(row["agreement_curve"]) == len(res["schedule"])
    assert res["n_rows"]["val"] > res["n_eval"]["val"]  # several target rows per sentence
    assert res["best_run_a"]["bleu"] >= 0 and res["best_run_a"]["perplexity"] > 1
    assert (tmp_path / "tokenizer" / "tokenizer.json").is_file()
    assert res["model"]["step"] == res["best_run_a"]["step"]
    assert res["run"]["quick"] is True and "--quick" in (tmp_path / "results.md").read_text().splitlines()[0]
    _check_model_folder(tmp_path, res, "Ein Hund läuft.", "A dog runs.")


def test_tables_save_and_warn_about_undefined_kendall_tau(tmp_path):
    """Run A's attention is constant on one of 3 examples: Kendall τ leaves it out of the means, and the saved table
    and Markdown say so (top-5% match is defined everywhere and stays silent)."""
    import numpy as np

    from seqexplain.analysis.training_dynamics import Dump, fingerprint, write_dump
    from seqexplain.experiments.snell2021 import tables

    up, down, flat = np.array([0.2, 0.3, 0.5], np.float32), np.array([0.5, 0.3, 0.2], np.float32), np.full(3, 1 / 3,
                                                                                                          np.float32)
    examples = [([1, 2, 3], 0), ([4, 5, 6], 1), ([7, 8, 9], 1)]
    alphas = {"normal_A": [up, flat, down], "normal_B": [up, up, down], "uniform": [flat, flat, flat]}
    for run, alpha in alphas.items():
        for step in (0, 5):
            write_dump(Dump(run, step, "val", "toy", fingerprint(examples), "v", run == "uniform", [0, 1, 1],
                            [np.asarray(x, np.int32) for x, _ in examples], alpha, [up, down, up], [down, up, up],
                            [0, 1, 1 - step // 5]), tmp_path / "dumps")
    refs = {"val": {"px": [up, up, up], "extra": {}}}
    with pytest.warns(RuntimeWarning, match="toy / val / kendall_tau / accuracy: the agreement metric is undefined"):
        table, markdown, notes = tables(tmp_path, "toy", ["val"], list(alphas), [0, 5], refs, seed=0)
    tau, top = table["toy / val / kendall_tau / accuracy"], table["toy / val / top_k / accuracy"]
    assert tau["n_examples"] == 3 and tau["undefined"] == {"agreement": 1, "unif": 1, "px": 0, "grad": 0}
    assert set(top["undefined"].values()) == {0}
    said = " ".join(notes)
    assert "agreement: up to 1 of 3" in said and "top_k / accuracy: the agreement" not in said
    assert not any(n.startswith("warning:") for n in notes)  # the views add the prefix once (it was doubled)
    json.dumps(table)  # the fields go into results.json as they are
