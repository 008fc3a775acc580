"""The ``device`` option of the Snell et al. (2021) pipeline: ``device="cpu"`` is the default run exactly (weights,
resume files, dumps, baselines); ``cuda`` without CUDA is a one-line error (API and CLI exit 2); and, marked ``gpu``
(skipped without CUDA), a tiny training run on CUDA matches the CPU's per-checkpoint losses within 1e-4 relative.
``SEQEXPLAIN_TEST_DEVICE=cpu`` runs the GPU comparison CPU against CPU, to check the test itself without a GPU."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from seqexplain.analysis.snell_baselines import px_scores, train_bag_of_embeddings
from seqexplain.analysis.training_dynamics import make_dump
from seqexplain.analysis.translation_dynamics import make_translation_dump
from seqexplain.cli import app
from seqexplain.data.tokenizers import train_bpe_tokenizer
from seqexplain.errors import InputError
from seqexplain.models.rnn import Vocab
from seqexplain.models.snell_classifier import BosEosTokenizer, SnellClassifierConfig
from seqexplain.models.snell_translation import SnellTranslatorConfig
from seqexplain.training.snell import (
    SnellTrainConfig,
    load_checkpoint,
    resolve_device,
    train_snell_classifier,
)
from seqexplain.training.snell_translation import load_translator, teacher_forced, train_snell_translator

WORDS = ["good", "great", "bad", "awful", "the", "movie", "plot"]
SRC = ["ein hund läuft", "eine katze schläft im haus", "der mann isst", "ein mann schläft"]
TGT = ["a dog runs", "a cat sleeps in the house", "the man eats", "a man sleeps"]
GPU = os.environ.get("SEQEXPLAIN_TEST_DEVICE", "cuda")
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error of a machine without CUDA")


@pytest.fixture(scope="module")
def data() -> tuple[Vocab, list[tuple[list[int], int]]]:
    vocab = Vocab.build(WORDS)
    tok = BosEosTokenizer(vocab)
    rng = np.random.default_rng(0)
    out = []
    for _ in range(40):
        words = [WORDS[int(i)] for i in rng.integers(0, len(WORDS), int(rng.integers(1, 5)))]
        out.append((tok.encode_words(words), int(sum(w in ("good", "great") for w in words) >
                                                  sum(w in ("bad", "awful") for w in words))))
    return vocab, out


@pytest.fixture(scope="module")
def tok():
    return train_bpe_tokenizer(SRC + TGT, vocab_size=80, min_frequency=1)


def _cfg() -> SnellTrainConfig:
    return SnellTrainConfig(steps=6, batch_size=8, lr=0.01, seed=3, checkpoint_steps=[2], tensorboard=False)


def _translator_cfg(tok) -> SnellTranslatorConfig:  # dropout on: the RNG state must travel too
    return SnellTranslatorConfig(len(tok), 6, 4, 2, 0.2, False, tok.pad_token_id, tok.bos_token_id, tok.eos_token_id)


def _pairs(tok) -> list[tuple[list[int], list[int]]]:
    return [(tok(s)["input_ids"], tok(t)["input_ids"]) for s, t in zip(SRC, TGT, strict=True)]


def _same_files(a, b) -> None:
    for name in ("checkpoints/step_0000002.safetensors", "checkpoints/step_0000006.safetensors", "resume.safetensors"):
        x, y = load_file(a / name), load_file(b / name)
        assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x), name
    assert "rng.cuda" not in load_file(a / "resume.safetensors")  # a CPU run stores the CPU RNG state only


def test_cpu_equals_the_default_classifier_run(tmp_path, data):
    vocab, train = data
    mcfg = SnellClassifierConfig(len(vocab), 2, 5, 4, 3)
    train_snell_classifier(mcfg, train, _cfg(), tmp_path / "default", vocab)
    train_snell_classifier(mcfg, train, _cfg(), tmp_path / "cpu", vocab, device="cpu")
    _same_files(tmp_path / "default", tmp_path / "cpu")
    a = make_dump(load_checkpoint(tmp_path / "default", 6), train, run="A", step=6, split="val", dataset="t",
                  vocab_hash="v")
    b = make_dump(load_checkpoint(tmp_path / "cpu", 6, "cpu"), train, run="A", step=6, split="val", dataset="t",
                  vocab_hash="v")
    assert a.predicted == b.predicted and a.extra == b.extra
    for name in ("alpha", "beta", "delta"):
        assert all(np.array_equal(x, y) for x, y in zip(getattr(a, name), getattr(b, name), strict=True))
    boe_a, info_a = train_bag_of_embeddings(train, train[:10], len(vocab), 2, emb_dim=4, epochs=2)
    boe_b, info_b = train_bag_of_embeddings(train, train[:10], len(vocab), 2, emb_dim=4, epochs=2, device="cpu")
    assert info_a == info_b
    assert all(np.array_equal(x, y) for x, y in zip(px_scores(boe_a, train), px_scores(boe_b, train), strict=True))


def test_cpu_equals_the_default_translator_run(tmp_path, tok):
    pairs = _pairs(tok)
    cfg = SnellTrainConfig(steps=6, batch_size=2, lr=0.01, seed=1, checkpoint_steps=[2], tensorboard=False)
    train_snell_translator(_translator_cfg(tok), pairs, cfg, tmp_path / "default", "vh")
    train_snell_translator(_translator_cfg(tok), pairs, cfg, tmp_path / "cpu", "vh", device="cpu")
    _same_files(tmp_path / "default", tmp_path / "cpu")
    a, b = load_translator(tmp_path / "default", 6), load_translator(tmp_path / "cpu", 6, "cpu")
    assert teacher_forced(a, pairs) == teacher_forced(b, pairs)


def test_settings_resolve_the_device():
    from seqexplain.experiments.snell2021 import settings

    assert settings(True, device="cpu") == settings(True)
    assert settings(True).device == "cpu"
    assert settings(True, device="auto").device == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(InputError, match="is not a device"):
        resolve_device("tpu9")


@no_cuda
def test_cuda_without_cuda_is_one_line(tmp_path, data):
    vocab, train = data
    for call in (lambda: resolve_device("cuda:1"),
                 lambda: train_snell_classifier(SnellClassifierConfig(len(vocab)), train, _cfg(), tmp_path / "r", vocab,
                                                device="cuda"),
                 lambda: load_checkpoint(tmp_path / "r", 0, "cuda"), lambda: load_translator(tmp_path / "r", 0, "cuda"),
                 lambda: train_bag_of_embeddings(train, train, len(vocab), 2, device="cuda")):
        with pytest.raises(InputError, match="CUDA is not available") as info:
            call()
        assert "\n" not in str(info.value)


@no_cuda
def test_cli_cuda_without_cuda_exits_2(runner, tmp_path):
    result = runner.invoke(app, ["reproduce", "snell2021", "sst2", "--quick", "--device", "cuda", "--out",
                                 str(tmp_path)])
    assert result.exit_code == 2 and "CUDA is not available" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "runs").exists()


@pytest.mark.gpu
@pytest.mark.skipif(GPU.startswith("cuda") and not torch.cuda.is_available(), reason="CUDA is not available")
def test_training_on_the_gpu_matches_the_cpu(tmp_path, data, tok):
    """Per-checkpoint losses (and token accuracy) of tiny runs on ``GPU`` within 1e-4 relative of the CPU's; the
    folders hold CPU tensors, so the GPU's checkpoints load on the CPU."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        vocab, train = data
        mcfg = SnellClassifierConfig(len(vocab), 2, 5, 4, 3)
        for dev in ("cpu", GPU):
            train_snell_classifier(mcfg, train, _cfg(), tmp_path / f"c_{dev}", vocab, device=dev)
        for step in (0, 2, 6):
            losses = [make_dump(load_checkpoint(tmp_path / f"c_{dev}", step, dev), train, run="A", step=step,
                                split="val", dataset="t", vocab_hash="v").extra["loss"] for dev in ("cpu", GPU)]
            assert losses[1] == pytest.approx(losses[0], rel=1e-4), step
        on_cpu = load_checkpoint(tmp_path / f"c_{GPU}", 6)  # the GPU run's files load on the CPU
        assert next(on_cpu.parameters()).device.type == "cpu"
        pairs = _pairs(tok)
        cfg = SnellTrainConfig(steps=6, batch_size=2, lr=0.01, seed=1, checkpoint_steps=[2], tensorboard=False)
        nt_cfg = SnellTranslatorConfig(**{**_translator_cfg(tok).to_dict(), "dropout": 0.0})  # same masks on both
        for dev in ("cpu", GPU):
            train_snell_translator(nt_cfg, pairs, cfg, tmp_path / f"t_{dev}", "vh", device=dev)
        for step in (2, 6):
            tf = [teacher_forced(load_translator(tmp_path / f"t_{dev}", step, dev), pairs) for dev in ("cpu", GPU)]
            assert tf[1]["perplexity"] == pytest.approx(tf[0]["perplexity"], rel=1e-4), step
            dumps = [make_translation_dump(load_translator(tmp_path / f"t_{dev}", step, dev), pairs, run="A",
                                           step=step, split="val", dataset="t", vocab_hash="vh")
                     for dev in ("cpu", GPU)]
            for x, y in zip(dumps[0].alpha, dumps[1].alpha, strict=True):
                np.testing.assert_allclose(y, x, rtol=1e-4, atol=1e-6)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
