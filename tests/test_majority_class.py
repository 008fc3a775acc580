"""Majority-class data, exact posteriors, and the Vafa et al. (2021) majority-class experiment end to end."""

from __future__ import annotations

import json
import math

import pytest
import torch
from scipy import stats

from seqexplain.data.majority_class import (
    OPTIMAL_PERPLEXITY,
    MajorityClassVocab,
    encode_split,
    label_posterior,
    load_split,
    read_majority_class,
)
from seqexplain.data.paths import data_root
from seqexplain.errors import DataError, InputError

HAS_DATA = (data_root() / "majority_class" / "test.tok").is_file()
needs_data = pytest.mark.skipif(not HAS_DATA, reason="shared majority_class data not available")


def test_optimum_formula() -> None:
    # 17 fair bits (ln 2 nats each) and 3 determined tokens ("=", label, </s>) over 20 predictions
    assert math.isclose(OPTIMAL_PERPLEXITY, math.exp(17 * math.log(2) / 20), rel_tol=1e-12)
    assert abs(OPTIMAL_PERPLEXITY - 1.8025) < 1e-4


def test_label_posterior_matches_scipy_and_brute_force() -> None:
    for visible in range(18):
        for ones in range(visible + 1):
            hidden = 17 - visible
            ref = float(stats.binom.sf(9 - ones - 1, hidden, 0.5)) if hidden else float(ones >= 9)
            assert label_posterior(ones, visible) == pytest.approx(ref, abs=1e-12)
    # brute force over the hidden bits for a small case: 12 visible bits with 7 ones
    total = sum(1 for x in range(2 ** 5) if 7 + bin(x).count("1") >= 9)
    assert label_posterior(7, 12) == pytest.approx(total / 32)
    assert label_posterior(0, 0) == pytest.approx(0.5)
    with pytest.raises(InputError):
        label_posterior(3, 2)


def test_reader_vocab_and_encoding(tmp_path) -> None:
    good = tmp_path / "x.tok"
    good.write_text("0 1 1 1 1 1 0 0 1 0 0 1 1 0 0 1 1 = 1\n1 0 0 0 0 0 1 1 0 1 1 0 0 1 1 0 0 = 0\n")
    split = read_majority_class(good)
    assert len(split) == 2 and split.labels.tolist() == [1, 0]
    assert split.prompt(0) == "0 1 1 1 1 1 0 0 1 0 0 1 1 0 0 1 1 ="
    vocab = MajorityClassVocab()
    ids = encode_split(split, vocab)
    assert ids.shape == (2, 21)
    toks = vocab.convert_ids_to_tokens(ids[0].tolist())
    assert toks[0] == "<s>" and toks[18] == "=" and toks[19] == "1" and toks[20] == "</s>"
    got_ids, got_toks, offs = vocab.tokenize_with_offsets(split.prompt(0), add_special_tokens=True)
    assert got_ids == ids[0, :19].tolist() and offs[0] is None and offs[1] == (0, 1) and offs[-1] == (34, 35)
    assert vocab.decode(ids[0, :3].tolist(), skip_special_tokens=True) == "0 1"
    vocab.save(tmp_path / "v.json")
    assert MajorityClassVocab.load(tmp_path / "v.json").itos == vocab.itos
    bad = tmp_path / "bad.tok"
    bad.write_text("0 1 1 1 1 1 0 0 1 0 0 1 1 0 0 1 1 = 0\n")
    with pytest.raises(DataError, match=":1:"):
        read_majority_class(bad)
    short = tmp_path / "short.tok"
    short.write_text("0 1 = 1\n")
    with pytest.raises(DataError):
        read_majority_class(short)
    with pytest.raises(DataError):
        read_majority_class(tmp_path / "missing.tok")


@needs_data
def test_shared_test_split() -> None:
    split = load_split("test")
    assert len(split) == 5000
    assert torch.equal(split.labels, (split.bits.sum(1) >= 9).long())
    with pytest.raises(InputError):
        load_split("dev")


def _tiny_settings():
    from seqexplain.experiments.vafa2021 import MajoritySettings

    return MajoritySettings(steps=8, batch_size=16, lr=3e-3, warmup_steps=2, dropout=0.0, mixture=0.5, n_train=256,
                            n_test=64, n_compat=16, n_curve=2, n_rationales=2, n_valid=32)


@needs_data
def test_experiment_tiny_run_writes_table_and_plot(tmp_path) -> None:
    from seqexplain.experiments.vafa2021 import run_majority_class

    summary = run_majority_class(tmp_path, settings=_tiny_settings(), progress=False)
    md = (tmp_path / "majority_class.md").read_text()
    assert "| training" in md and "standard" in md and "compatible" in md
    assert (tmp_path / "majority_class_compatibility.png").stat().st_size > 1000
    saved = json.loads((tmp_path / "results.json").read_text())
    for name in ("standard", "compatible"):
        r = saved["results"][name]
        assert r["test_ppl"] > 1.0 and len(r["compatibility"]["curve"]) == 18
        assert r["greedy"]["n"] == 2 and all(row["has_equals"] for row in r["greedy"]["rows"])
    assert (tmp_path / "compatible" / "model" / "model.safetensors").is_file()
    assert summary["results"]["standard"]["train_seconds"] > 0


def test_registry_rejects_unknown(tmp_path) -> None:
    from seqexplain.experiments.registry import run_experiment

    with pytest.raises(InputError, match="majority_class"):
        run_experiment("vafa2021", "nope", tmp_path)


@needs_data
@pytest.mark.slow
def test_quick_mode_cli(tmp_path) -> None:
    from typer.testing import CliRunner

    from seqexplain.cli import app

    result = CliRunner().invoke(app, ["reproduce", "vafa2021", "majority_class", "--out", str(tmp_path), "--quick",
                                      "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert "--quick" in (tmp_path / "majority_class.md").read_text().splitlines()[0]
