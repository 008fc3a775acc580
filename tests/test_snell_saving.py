"""Snell model folders: ``seqexplain.load_model(folder)`` gives the Snell adapters (not the generic Hugging Face
seq2seq adapter), whose attention and occlusion scores equal the in-memory adapter's; ``seqexplain explain --model
folder`` works on them; bad folders are one-line :class:`ModelLoadError`s."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import seqexplain
from seqexplain.cli import app
from seqexplain.data.tokenizers import train_bpe_tokenizer
from seqexplain.errors import InputError, ModelLoadError
from seqexplain.models.rnn import Vocab
from seqexplain.models.snell_classifier import (
    BosEosTokenizer,
    SnellClassifier,
    SnellClassifierAdapter,
    SnellClassifierConfig,
)
from seqexplain.models.snell_saving import save_snell_classifier, save_snell_translator
from seqexplain.models.snell_translation import SnellTranslationAdapter, SnellTranslator, SnellTranslatorConfig

WORDS = ["good", "great", "bad", "awful", "the", "movie", "plot"]
TEXT = "the movie plot is great"
SRC = ["ein hund läuft", "eine katze schläft im haus", "der mann isst"]
TGT = ["a dog runs", "a cat sleeps in the house", "the man eats"]


@pytest.fixture(scope="module")
def classifier() -> SnellClassifierAdapter:
    vocab = Vocab.build(WORDS)
    torch.manual_seed(0)
    model = SnellClassifier(SnellClassifierConfig(len(vocab), 3, 6, 5, 4)).eval()
    return SnellClassifierAdapter(model, BosEosTokenizer(vocab), ["neg", "neutral", "pos"], "snell-clf")


@pytest.fixture(scope="module")
def translator() -> SnellTranslationAdapter:
    tok = train_bpe_tokenizer(SRC + TGT, vocab_size=80, min_frequency=1)
    torch.manual_seed(1)
    cfg = SnellTranslatorConfig(len(tok), 6, 4, 2, 0.1, False, tok.pad_token_id, tok.bos_token_id, tok.eos_token_id)
    return SnellTranslationAdapter(SnellTranslator(cfg).eval(), tok, "snell-mt")


def _same(a, b, text, target) -> None:
    for method in ("attention_last", "occlusion"):
        x = seqexplain.explain(a, text, target, method=method)
        y = seqexplain.explain(b, text, target, method=method)
        assert x.tokens == y.tokens and x.target_tokens == y.target_tokens and not x.warnings
        np.testing.assert_array_equal(np.asarray(x.scores), np.asarray(y.scores))


def test_classifier_folder_loads_with_its_adapter(tmp_path, classifier):
    save_snell_classifier(classifier.model, classifier.tokenizer.vocab, tmp_path / "clf", classifier.labels)
    assert json.loads((tmp_path / "clf" / "config.json").read_text())["model_type"] == "seqexplain-snell-classifier"
    loaded = seqexplain.load_model(tmp_path / "clf")
    assert type(loaded) is SnellClassifierAdapter and loaded.label_names() == ["neg", "neutral", "pos"]
    _same(classifier, loaded, TEXT, "pos")
    _same(classifier, loaded, TEXT, None)  # the predicted label


def test_translator_folder_loads_with_its_adapter(tmp_path, translator):
    save_snell_translator(translator.model, translator.tokenizer, tmp_path / "mt")
    loaded = seqexplain.load_model(tmp_path / "mt")
    assert type(loaded) is SnellTranslationAdapter and not loaded.model.training  # eval mode: dropout off
    _same(translator, loaded, SRC[1], TGT[1])
    # the attention view is the cross-attention α over the source (the generic adapter's would fail)
    att = seqexplain.explain(loaded, SRC[1], TGT[1], method="attention_last").scores
    assert np.allclose(np.asarray(att)[:, : loaded.encode(SRC[1], TGT[1]).n_source].sum(-1), 1.0)


def test_explain_cli_on_saved_folders(runner, tmp_path, classifier, translator):
    save_snell_classifier(classifier.model, classifier.tokenizer.vocab, tmp_path / "clf", classifier.labels)
    save_snell_translator(translator.model, translator.tokenizer, tmp_path / "mt")
    for folder, text, target in (("clf", TEXT, "pos"), ("mt", SRC[0], TGT[0])):
        out = tmp_path / f"{folder}.json"
        result = runner.invoke(app, ["explain", "--model", str(tmp_path / folder), "--text", text, "--target", target,
                                     "--method", "attention_last", "--json", str(out)])
        assert result.exit_code == 0, result.output
        want = seqexplain.explain(classifier if folder == "clf" else translator, text, target, method="attention_last")
        got = np.asarray(json.loads(out.read_text())["scores"], dtype=float)  # null (not visible) → NaN
        np.testing.assert_allclose(got, np.asarray(want.scores), rtol=1e-6, atol=1e-7)


def test_bad_folders(runner, tmp_path, classifier):
    with pytest.raises(InputError, match="2 label names for a 3-class model"):
        save_snell_classifier(classifier.model, classifier.tokenizer.vocab, tmp_path / "x", ["a", "b"])
    folder = save_snell_classifier(classifier.model, classifier.tokenizer.vocab, tmp_path / "clf", classifier.labels)
    assert seqexplain.load_model(folder, device="cpu").device.type == "cpu"
    assert seqexplain.load_model(folder, kind="classifier").kind == "classifier"
    with pytest.raises(InputError, match="holds a classifier model"):
        seqexplain.load_model(folder, kind="causal")  # never silently ignored
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA is not available"):
            seqexplain.load_model(folder, device="cuda")
    (folder / "model.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="model.safetensors is missing") as info:
        seqexplain.load_model(folder)
    assert "\n" not in str(info.value)
    result = runner.invoke(app, ["explain", "--model", str(folder), "--text", TEXT, "--method", "occlusion"])
    assert result.exit_code == 2 and "Traceback" not in result.output
