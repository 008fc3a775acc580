"""Tests of the word-level recurrent LM, its vocabulary / embedding I/O, corpora readers and training."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from seqexplain.data.corpus import batchify, load_corpus, read_tokens
from seqexplain.data.paths import ENV_VAR, data_root, require_data
from seqexplain.errors import DataError, InputError, ModelLoadError
from seqexplain.models.rnn import (
    RNNLanguageModel,
    RNNLMConfig,
    Vocab,
    dropout_from_keep_prob,
    embeddings_for_vocab,
    load_rnn_lm,
    read_word2vec,
    write_word2vec,
)
from seqexplain.training.lm import TrainConfig, perplexity, train_lm

torch.set_num_threads(1)


def _model(cell: str = "lstm", layers: int = 2, vocab: int = 40, seed: int = 0) -> RNNLanguageModel:
    torch.manual_seed(seed)
    return RNNLanguageModel(RNNLMConfig(vocab_size=vocab, cell=cell, embedding_size=6, hidden_size=9,  # type: ignore[arg-type]
                                        num_layers=layers, init_scale=0.4)).eval()


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh", "rnn_relu"])
def test_masked_forward_equals_deleting_tokens(cell: str) -> None:
    model = _model(cell)
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 40, (5, 11), generator=gen)
    keep = torch.rand(5, 11, generator=gen) > 0.4
    keep[1] = False  # nothing kept
    keep[2] = True  # everything kept
    keep[3, :4] = False  # leading drops
    init = tuple(tuple(torch.randn(5, 9, generator=gen) for _ in model.state_names) for _ in range(2))
    for state in (None, init):
        out = model(input_ids=ids, attention_mask=keep.long(), state=state, output_hidden_states=True)
        for b in range(5):
            row_state = None if state is None else tuple(tuple(s[b : b + 1] for s in lay) for lay in state)
            kept = ids[b][keep[b]]
            h0 = torch.zeros(9) if state is None else state[-1][0][b]
            initial_logits = model.decoder(h0)
            expected = initial_logits.expand(11, -1).clone()
            if kept.numel():
                ref = model(input_ids=kept.unsqueeze(0), state=row_state)
                last = keep[b].long().cumsum(0) - 1
                for p in range(11):
                    if last[p] >= 0:
                        expected[p] = ref.logits[0, last[p]]
                ref_state = ref.state
            else:
                ref_state = row_state if row_state is not None else model.initial_state(1)
            torch.testing.assert_close(out.logits[b], expected, rtol=1e-5, atol=1e-6)
            for lay_out, lay_ref in zip(out.state, ref_state, strict=True):
                for s_out, s_ref in zip(lay_out, lay_ref, strict=True):
                    torch.testing.assert_close(s_out[b], s_ref[0], rtol=1e-5, atol=1e-6)


def test_forward_conventions() -> None:
    model = _model("lstm", layers=1)
    ids = torch.randint(0, 40, (2, 7))
    a = model(input_ids=ids).logits
    b = model(inputs_embeds=model.get_input_embeddings()(ids), position_ids=torch.arange(7).expand(2, -1)).logits
    torch.testing.assert_close(a, b)
    c = model(input_ids=ids, attention_mask=torch.ones(2, 7, dtype=torch.long)).logits
    torch.testing.assert_close(a, c)
    assert a.shape == (2, 7, 40)
    assert RNNLanguageModel.seqexplain_kind == "causal"
    assert isinstance(model.get_input_embeddings(), torch.nn.Embedding)
    with pytest.raises(InputError):
        model()
    with pytest.raises(InputError):
        model(input_ids=ids, attention_mask=torch.ones(2, 6))


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh"])
def test_step_matches_fused_forward(cell: str) -> None:
    model = _model(cell)
    ids = torch.randint(0, 40, (3, 8))
    out = model(input_ids=ids, output_hidden_states=True)
    s = model.initial_state(3)
    x = model.embedding(ids)
    hs = []
    for t in range(8):
        s = model.step(x[:, t], s)
        hs.append(s[-1][0])
    assert out.hidden_states is not None
    torch.testing.assert_close(torch.stack(hs, 1), out.hidden_states[-1], rtol=1e-5, atol=1e-6)
    for lay_a, lay_b in zip(s, out.state, strict=True):
        for a, b in zip(lay_a, lay_b, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_dropout_is_a_drop_probability() -> None:
    assert dropout_from_keep_prob(0.5) == 0.5
    assert dropout_from_keep_prob(0.8) == pytest.approx(0.2)
    with pytest.raises(InputError):
        RNNLMConfig(vocab_size=5, dropout=1.0)
    with pytest.raises(InputError):
        RNNLMConfig(vocab_size=5, cell="lstmx")  # type: ignore[arg-type]


def _tiny_corpus() -> list[str]:
    rng = np.random.default_rng(0)
    lines = []
    for _ in range(300):
        n = int(rng.integers(1, 4))
        lines += ["the", "cat", *(["sat"] * n), "on", "the", "mat", "<eos>"]
        lines += ["a", "dog", "ran", "home", "<eos>"]
    return lines


def test_training_lowers_perplexity_and_resume_is_exact(tmp_path: Path) -> None:
    tokens = _tiny_corpus()
    vocab = Vocab.build(tokens)
    ids = vocab.encode(tokens)
    cfg = TrainConfig(batch_size=4, num_steps=10, epochs=2, max_epoch=1, lr=1.0, lr_decay=0.5, seed=3)
    torch.manual_seed(7)
    model = RNNLanguageModel(RNNLMConfig(vocab_size=len(vocab), embedding_size=8, hidden_size=16, dropout=0.3))
    before = perplexity(model, ids, batch_size=4, num_steps=10)
    res = train_lm(model, ids, ids, cfg, out_dir=tmp_path / "a", vocab=vocab, progress=False)
    after = perplexity(model, ids, batch_size=4, num_steps=10)
    assert after < before / 2, (before, after)
    assert res.history[-1]["valid_ppl"] == pytest.approx(perplexity(model, ids, cfg.eval_batch_size, 10), rel=1e-5)
    assert [r["lr"] for r in res.history] == [1.0, 0.5]
    # interrupted after one epoch, then resumed: identical weights
    torch.manual_seed(7)
    m2 = RNNLanguageModel(RNNLMConfig(vocab_size=len(vocab), embedding_size=8, hidden_size=16, dropout=0.3))
    cfg1 = TrainConfig(**{**cfg.__dict__, "epochs": 1})
    train_lm(m2, ids, None, cfg1, out_dir=tmp_path / "b", vocab=vocab, progress=False)
    m3 = RNNLanguageModel(RNNLMConfig(vocab_size=len(vocab), embedding_size=8, hidden_size=16, dropout=0.3))
    res3 = train_lm(m3, ids, ids, cfg, out_dir=tmp_path / "b", vocab=vocab, progress=False)
    assert len(res3.history) == 2
    for (k, a), (_, b) in zip(model.state_dict().items(), m3.state_dict().items(), strict=True):
        torch.testing.assert_close(a, b, msg=k)


def test_lr_schedule() -> None:
    cfg = TrainConfig(lr=1.0, lr_decay=0.5, max_epoch=4)
    assert [cfg.lr_at(e) for e in range(6)] == [1.0, 1.0, 1.0, 1.0, 0.5, 0.25]


def test_save_load_round_trip(tmp_path: Path) -> None:
    vocab = Vocab.build(["a", "b", "c", "a", "b", "a"])
    model = _model("gru", layers=2, vocab=len(vocab))
    model.save(tmp_path / "m", vocab)
    loaded, v2 = load_rnn_lm(tmp_path / "m")
    assert v2 is not None and v2.itos == vocab.itos
    ids = torch.randint(0, len(vocab), (2, 5))
    torch.testing.assert_close(model(input_ids=ids).logits, loaded(input_ids=ids).logits)
    assert not any(p.name.endswith(".tmp") for p in (tmp_path / "m").iterdir())
    with pytest.raises(ModelLoadError):
        load_rnn_lm(tmp_path / "nothing")


def test_word2vec_round_trip_and_vocabulary_mismatch(tmp_path: Path) -> None:
    vocab = Vocab.build(["x", "y", "z", "x"])
    model = _model("lstm", layers=1, vocab=len(vocab))
    path = tmp_path / "emb.txt"
    write_word2vec(path, vocab.itos, model.get_input_embeddings().weight)
    words, mat = read_word2vec(path)
    assert words == vocab.itos
    np.testing.assert_array_equal(mat, model.get_input_embeddings().weight.detach().numpy())
    m2 = _model("lstm", layers=1, vocab=len(vocab), seed=5)
    m2.set_input_embeddings(embeddings_for_vocab(vocab, path), freeze=True)
    torch.testing.assert_close(m2.get_input_embeddings().weight, model.get_input_embeddings().weight)
    assert not m2.get_input_embeddings().weight.requires_grad
    # frozen embeddings stay put during training
    ids = vocab.encode(["x", "y", "z", "x", "y", "z", "x", "y"] * 4)
    before = m2.get_input_embeddings().weight.clone()
    train_lm(m2, ids, None, TrainConfig(batch_size=2, num_steps=4, epochs=1), progress=False)
    torch.testing.assert_close(m2.get_input_embeddings().weight, before)
    # a vocabulary with words the file lacks
    other = Vocab.build(["x", "y", "w", "v"])
    with pytest.raises(DataError, match="does not match the vocabulary"):
        embeddings_for_vocab(other, path)
    assert embeddings_for_vocab(other, path, allow_missing=True).shape == (len(other), 6)
    bad = tmp_path / "bad.txt"
    bad.write_text("2 3\nx 1 2 3\ny 1 2\n")
    with pytest.raises(DataError, match="line 3"):
        read_word2vec(bad)


def test_vocab_and_corpus_helpers(tmp_path: Path) -> None:
    f = tmp_path / "t.txt"
    f.write_text(" a b \n\n c a \n")
    toks = read_tokens(f)
    assert toks == ["a", "b", "<eos>", "c", "a", "<eos>"]
    v = Vocab.build(toks)
    assert v.itos[:4] == ["<unk>", "<eos>", "<bos>", "a"]
    assert v.encode(["a", "zzz"]).tolist() == [3, v.unk_id]
    v.save(tmp_path / "v.json")
    assert Vocab.load(tmp_path / "v.json").itos == v.itos
    b = batchify(torch.arange(10), 3)
    assert b.tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]


def test_data_root_and_missing_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    assert data_root() == tmp_path
    with pytest.raises(DataError, match="'ptb'"):
        require_data("ptb")
    with pytest.raises(DataError, match="'wikitext2'"):
        load_corpus("wikitext2")


@pytest.mark.parametrize("name,folder", [("wikitext2", "wikitext2"), ("ptb", "ptb")])
def test_real_corpora_if_present(name: str, folder: str) -> None:
    root = data_root()
    if not (root / folder).is_dir():
        pytest.skip(f"needs the shared data folder '{folder}' under {root} (set {ENV_VAR})")
    c = load_corpus(name, root)  # type: ignore[arg-type]
    assert len(c.train) > 50_000 and len(c.eval) > 50_000
    assert c.train.count("<eos>") > 1000
    assert os.fspath(c.train_path).endswith(("valid.txt",))


def test_short_training_on_ptb_if_present() -> None:
    root = data_root()
    if not (root / "ptb").is_dir():
        pytest.skip(f"needs the shared data folder 'ptb' under {root} (set {ENV_VAR})")
    c = load_corpus("ptb", root, max_train_tokens=20_000, max_eval_tokens=5_000)
    vocab = Vocab.build(c.train)
    model = RNNLanguageModel(RNNLMConfig(vocab_size=len(vocab), embedding_size=16, hidden_size=32))
    ev = vocab.encode(c.eval)
    before = perplexity(model, ev)
    train_lm(model, vocab.encode(c.train), None, TrainConfig(epochs=1), progress=False)
    after = perplexity(model, ev)
    assert after < before and math.isfinite(after)


def test_a_four_d_attention_mask_says_an_rnn_takes_none() -> None:
    """Word-dropout training passes 4-D attention masks; an RNN LM said only "has shape (4, 1, 6, 6), expected
    (4, 6)", not that it cannot take one."""
    from seqexplain.errors import UnsupportedError

    model = _model()
    ids = torch.randint(0, 40, (2, 5))
    with pytest.raises(UnsupportedError, match="takes a \\[batch, length\\] mask, not a 4-D attention mask"):
        model(input_ids=ids, attention_mask=torch.ones(2, 1, 5, 5))
