"""Translation training (training/translation.py) and the Vafa et al. 2021 translation experiments, in quick mode."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from seqexplain.errors import DataError, InputError

torch.set_num_threads(1)


def _require_data() -> None:
    from seqexplain.data.multi30k import read_lines

    try:
        read_lines("val", "en")
    except DataError as exc:
        pytest.skip(f"Multi30K not available: {exc}")


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    """A folder holding a quick de→en model (trained once for the module)."""
    _require_data()
    from seqexplain.experiments.vafa2021_translation import train_translation_model

    folder = tmp_path_factory.mktemp("vafa_mt")
    res = train_translation_model(folder, quick=True, progress=False, max_train_examples=400)
    assert isinstance(res["test_bleu"], float)
    return folder


def test_quick_training_writes_model_logs_and_bleu(out):
    from seqexplain.training.translation import load_translation_model

    home = out / "models" / "de-en"
    for name in ("model.safetensors", "config.json", "tokenizer.json", "results.json", "training.json",
                 "test_hypotheses.txt"):
        assert (home / "model" / name).is_file(), name
    for name in ("train_state.json", "optimizer.safetensors", "optimizer.json"):
        assert (home / "checkpoint" / name).is_file(), name
    assert any(p.name.startswith("events.out.tfevents") for p in (home / "tb").iterdir())
    res = json.loads((home / "model" / "results.json").read_text())
    assert 0.0 <= res["test_bleu"] <= 100.0 and "tok:13a" in res["test_bleu_signature"]
    assert res["history"] and res["history"][0]["train_loss"] > 0
    model, tok = load_translation_model(home / "model")
    assert model.config.vocab_size == len(tok)


def test_resume_equals_uninterrupted(tmp_path):
    _require_data()
    from safetensors.torch import load_file

    from seqexplain.training.translation import TranslationTrainConfig, train_translation

    base = {"vocab_size": 300, "d_model": 16, "n_heads": 2, "ffn_dim": 32, "encoder_layers": 1,
            "decoder_layers": 1, "max_train_examples": 120, "epochs": 2, "batch_tokens": 800, "warmup_steps": 2,
            "valid_bleu_examples": 0, "test_bleu_examples": 5, "checkpoint_every": 3, "max_len": 40}
    train_translation(TranslationTrainConfig(**base), tmp_path / "a", progress=False, resume=False)
    stopped = train_translation(TranslationTrainConfig(**base, max_minutes=0.0), tmp_path / "b", progress=False,
                                resume=False)
    assert stopped.stopped_early and stopped.steps == 1
    done = train_translation(TranslationTrainConfig(**base), tmp_path / "b", progress=False, resume=True)
    assert not done.stopped_early
    a = load_file(str(tmp_path / "a" / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "b" / "model" / "model.safetensors"))
    assert set(a) == set(b)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    with pytest.raises(Exception, match="configuration"):
        train_translation(TranslationTrainConfig(**{**base, "d_model": 32}), tmp_path / "b", progress=False)


def test_config_validation():
    from seqexplain.training.translation import TranslationTrainConfig

    with pytest.raises(InputError):
        TranslationTrainConfig(word_dropout="everything")
    with pytest.raises(InputError):
        TranslationTrainConfig(schedule="linear_time")  # needs a time budget
    with pytest.raises(InputError):
        TranslationTrainConfig(max_len=200, max_position_embeddings=128)


def test_bleu_matches_sacrebleu_reference():
    pytest.importorskip("sacrebleu")
    from seqexplain.training.translation_eval import bleu

    score, sig = bleu(["A dog runs in the park ."], ["A dog runs in the park ."])
    assert score == pytest.approx(100.0)
    low, _ = bleu(["cat"], ["A dog runs in the park ."])
    assert low < 5.0


def test_distractor_counts_by_hand():
    from seqexplain.experiments.vafa2021_translation_distractors import distractor_counts, summarize_distractors

    # source: 3 tokens of sentence a, 2 of b, </s>; decoder start at 6; targets: 2 of a, 2 of b (positions 7..10)
    n_source = 6
    src_half = [0, 0, 0, 1, 1, None]
    tgt_half = [0, 0, 1, 1]
    rationales = [
        [6, 4],  # target 0 (first half): source 4 is from b -> 1 source distractor (all-targets measure)
        [7, 0],  # target 1 (first half): none
        [8, 1, 3, 7],  # target 2 (second half): source 1 from a; target 7 (= target 0, half a) -> 1 and 1
        [9, 5, 4, 8],  # target 3: </s> is not counted; target position 8 (= target 1, half a) -> 0 source, 1 target
    ]
    rows = distractor_counts(rationales, n_source, src_half, tgt_half)
    assert [r["source_distractors"] for r in rows] == [1, 0, 1, 0]
    assert [r["target_distractors"] for r in rows] == [0, 0, 1, 1]
    # the previous token (first element) is never counted on the target side
    rows2 = distractor_counts([[6], [7], [8], [9, 8]], n_source, src_half, tgt_half)
    assert [r["target_distractors"] for r in rows2] == [0, 0, 0, 1]
    s = summarize_distractors(rows)
    assert s["source_mean"] == pytest.approx(0.5) and s["source_frac"] == pytest.approx(0.5)
    assert s["target_mean"] == pytest.approx(1.0) and s["target_frac"] == pytest.approx(1.0)
    assert s["source_mean_all_targets"] == pytest.approx(0.5)
    assert s["n_second_half_targets"] == 2 and s["reached"] == 1.0
    rows3 = distractor_counts(rationales, n_source, src_half, tgt_half, [True, True, False, True])
    s3 = summarize_distractors(rows3)
    assert s3["source_mean_reached"] == pytest.approx(0.0) and s3["target_mean_reached"] == pytest.approx(1.0)
    assert s3["reached"] == pytest.approx(0.75)


def test_word_rationales_by_hand():
    from seqexplain.experiments.vafa2021_translation_alignments import word_rationales

    # source tokens: w0 w0 w1 </s>; decoder start 4; targets t0 (word 0), t1 t2 (word 1)
    src_word_of = [0, 0, 1, None, None, None, None, None]
    tgt_word_of = [0, 1, 1]
    rats = [[4, 2], [5, 0, 3], [6, 1, 2, 5]]
    assert word_rationales(rats, src_word_of, tgt_word_of, 3) == [[1], [0, 1], []]


def test_quick_distractors(out):
    from seqexplain.experiments.vafa2021_translation_distractors import run_distractors

    res = run_distractors(out, quick=True, n_pairs=1, baselines=("attention_last",), progress=False)
    assert set(res["methods"]) == {"greedy", "attention_last"}
    for m in res["methods"].values():
        for key in ("source_frac", "target_frac", "source_frac_all_targets"):
            assert 0.0 <= m[key] <= 1.0
        assert m["source_mean"] >= 0 and m["target_mean"] >= 0 and m["n_second_half_targets"] > 0
    assert "| Greedy |" in res["table"]
    assert (out / "distractors" / "table.md").read_text().startswith("**--quick smoke run")
    lines = (out / "distractors" / "rationales.jsonl").read_text().splitlines()
    assert len(lines) == 1 and "greedy" in json.loads(lines[0])["rationales"]


def test_quick_alignments_de_en_sample(out):
    from seqexplain.data.paths import require_data
    from seqexplain.experiments.vafa2021_translation_alignments import read_alignment_set, run_alignments

    try:
        require_data("word_alignment")
    except DataError as exc:
        pytest.skip(f"gold alignments not available: {exc}")
    data = read_alignment_set("europarl_de_en_sample")
    assert len(data) == 5
    src, tgt, gold = data[1]  # German "Das stimmt nicht !" / English "But this is not what happens ."
    assert src[0] == "Das" and tgt[0] == "But"
    assert (0, 1) in gold.sure  # Das – this (the file links English 1 – German 0)
    res = run_alignments(out, quick=True, sets=("europarl_de_en_sample",), n_sentences=1,
                         baselines=("attention_last",), progress=False)
    methods = res["sets"]["europarl_de_en_sample"]["methods"]
    assert set(methods) == {"greedy", "attention_last"}
    for m in methods.values():
        for key in ("aer", "aer_vafa", "iou", "f1", "top1"):
            assert 0.0 <= m[key] <= 1.0 or np.isnan(m[key])
    assert "| Greedy |" in res["table"] and "AER" in res["table"]


def test_hansards_reader_direction():
    from seqexplain.data.paths import require_data
    from seqexplain.experiments.vafa2021_translation_alignments import read_alignment_set

    try:
        require_data("word_alignment")
    except DataError as exc:
        pytest.skip(f"gold alignments not available: {exc}")
    data = read_alignment_set("hansards_en_fr")
    assert len(data) == 447
    src, tgt, gold = data[0]
    assert src == ["2", "."] and tgt == ["2", "."]
    assert gold.sure == {(0, 0), (1, 1)}
    with pytest.raises(InputError):
        read_alignment_set("nope")


def test_cli_reports_user_errors(tmp_path):
    from typer.testing import CliRunner

    from seqexplain.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["reproduce", "vafa2021", "translation_train", "--out", str(tmp_path / "o"), "--quick",
                                 "--data-root", str(tmp_path / "none")])
    assert result.exit_code == 2 and "multi30k" in result.stderr and "Traceback" not in result.output
    result = runner.invoke(app, ["reproduce", "vafa2021", "distractors", "--out", str(tmp_path / "o"), "--src", "fr"])
    assert result.exit_code == 2 and "--src is not used by vafa2021 distractors" in result.stderr
