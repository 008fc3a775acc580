"""The Snell et al. LSTM translator: keep masks = deleting tokens (brute force on the raw module), every registered
method through the adapter, α, β (one-hot attention) and Δ (finite differences, sign asserted) against independent
computations, beam search against greedy decoding, SentencePiece segmentation, resumable training, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import seqexplain
from seqexplain.analysis.translation_dynamics import (
    make_translation_dump,
    px_rows,
    train_word_translation,
    translation_rows,
)
from seqexplain.data.sentencepiece_vocab import read_parallel_files, train_sentencepiece
from seqexplain.data.tokenizers import train_bpe_tokenizer
from seqexplain.errors import DataError, UnsupportedError
from seqexplain.methods.registry import available_methods
from seqexplain.models.snell_translation import SnellTranslationAdapter, SnellTranslator, SnellTranslatorConfig
from seqexplain.training.snell import SnellTrainConfig, checkpoint_path
from seqexplain.training.snell_translation import load_translator, teacher_forced, train_snell_translator

SRC = ["ein hund läuft", "eine katze schläft im haus", "der mann isst"]
TGT = ["a dog runs", "a cat sleeps in the house", "the man eats"]


@pytest.fixture(scope="module")
def tok():
    return train_bpe_tokenizer(SRC + TGT, vocab_size=80, min_frequency=1)


def make(tok, uniform: bool = False, seed: int = 0) -> SnellTranslator:
    torch.manual_seed(seed)
    cfg = SnellTranslatorConfig(len(tok), 6, 4, 2, 0.0, uniform, tok.pad_token_id, tok.bos_token_id, tok.eos_token_id)
    return SnellTranslator(cfg).double().eval()


def pairs_of(tok) -> list[tuple[list[int], list[int]]]:
    return [(tok(s)["input_ids"], tok(t)["input_ids"]) for s, t in zip(SRC, TGT, strict=True)]


def raw_logp(net: SnellTranslator, src: list[int], dec: list[int]) -> torch.Tensor:
    """``[T, V]`` log-probabilities of the raw module on exactly these token lists (no masks)."""
    with torch.no_grad():
        z = net(input_ids=torch.tensor([src]), decoder_input_ids=torch.tensor([dec])).logits[0]
    return torch.log_softmax(z, -1)


@pytest.fixture(scope="module", params=[False, True], ids=["normal", "uniform"])
def adapter(request, tok):
    return SnellTranslationAdapter(make(tok, request.param, seed=2), tok, "snell-lstm")


def test_alpha_sums_to_one_and_uniform_is_exact(tok):
    for uniform in (False, True):
        net = make(tok, uniform)
        src, tgt = pairs_of(tok)[1]
        with torch.no_grad():
            out = net(input_ids=torch.tensor([src]), decoder_input_ids=torch.tensor([[1, *tgt[:-1]]]),
                      output_attentions=True)
        a = out.cross_attentions[0][0, 0]
        assert torch.allclose(a.sum(-1), torch.ones(len(tgt), dtype=a.dtype), atol=1e-12)
        if uniform:
            assert torch.equal(a, torch.full_like(a, 1.0 / len(src)))


def test_every_registered_method_runs(adapter):
    for method in available_methods():
        opts = {"steps": 4} if method.name == "integrated_gradients" else {}
        if method.name == "exhaustive":
            opts = {"max_size": 2}
        if method.name == "attention_rollout":
            with pytest.raises(UnsupportedError, match="not a stack of self-attention layers"):
                seqexplain.explain(adapter, SRC[0], TGT[0], method=method.name)
            continue
        got = seqexplain.explain(adapter, SRC[0], TGT[0], method=method.name, **opts)
        assert got.scores.shape[0] == len(adapter.encode(SRC[0], TGT[0]).target_ids), method.name


def test_occlusion_is_deleting_tokens(adapter, tok):
    net = adapter.model
    ex = adapter.encode(SRC[1], TGT[1])
    got = seqexplain.explain(adapter, SRC[1], TGT[1], method="occlusion").scores
    src = pairs_of(tok)[1][0]
    tgt = ex.target_ids.tolist()  # the adapter's targets: the target text's tokens (no </s>)
    n_s, start = len(src), tok.bos_token_id
    dec = [start, *tgt]
    base = raw_logp(net, src, dec[:-1])
    for j in range(n_s):  # source token j deleted
        lp = raw_logp(net, [w for k, w in enumerate(src) if k != j], dec[:-1])
        want = [float(base[t, y] - lp[t, y]) for t, y in enumerate(tgt)]
        np.testing.assert_allclose(got[:, j], want, rtol=1e-4, atol=1e-6)
    # decoder token 2 (target 1) deleted: targets after it are read one position earlier
    j = 2
    kept = [w for k, w in enumerate(dec[:-1]) if k != j]
    lp = raw_logp(net, src, kept)
    for t in range(j + 1, len(tgt)):
        want = float(base[t, tgt[t]] - lp[t - 1, tgt[t]])
        assert abs(got[t, n_s + j] - want) < 1e-5 * max(1, abs(want))
    assert ex.n_source == n_s


def test_attention_view_is_alpha(adapter, tok):
    got = seqexplain.explain(adapter, SRC[1], TGT[1], method="attention_last").scores
    src = pairs_of(tok)[1][0]
    tgt = adapter.encode(SRC[1], TGT[1]).target_ids.tolist()
    with torch.no_grad():
        a = adapter.model(input_ids=torch.tensor([src]), decoder_input_ids=torch.tensor([[1, *tgt]]),
                          output_attentions=True).cross_attentions[0][0, 0]
    np.testing.assert_allclose(got[:, : len(src)], a.numpy()[: len(tgt)], atol=1e-6)
    assert np.all(got[:, len(src) + 1 :][np.isfinite(got[:, len(src) + 1 :])] == 0)  # no attention over the decoder


def test_beta_is_log_p_under_onehot_attention(tok):
    net = make(tok)
    pairs = pairs_of(tok)
    rows = translation_rows(net, pairs)
    for (src, tgt), q in zip(pairs, rows, strict=True):
        for s in range(len(src)):  # force α_t = onehot(s) in the raw module's forward
            original = net.attention

            def onehot(d, memory, s=s):
                a = torch.zeros(d.shape[0], d.shape[1], memory.states.shape[1], dtype=d.dtype)
                a[..., s] = 1.0
                return a

            net.attention = onehot  # type: ignore[method-assign]
            try:
                lp = raw_logp(net, src, [1, *tgt[:-1]])
            finally:
                net.attention = original  # type: ignore[method-assign]
            np.testing.assert_allclose(q["beta"][:, s], [float(lp[t, y]) for t, y in enumerate(tgt)], atol=1e-5)


def test_delta_against_finite_differences_with_sign(tok):
    net = make(tok)
    pairs = pairs_of(tok)[:2]
    rows = translation_rows(net, pairs, batch_size=2)
    orig = translation_rows(net, pairs, batch_size=2, sign="original")
    eps = 1e-6
    for (src, tgt), q, o in zip(pairs, rows, orig, strict=True):
        x = net.embed_tokens(torch.tensor([src])).detach()
        dec = torch.tensor([[1, *tgt[:-1]]])

        def logp(scale: torch.Tensor, x: torch.Tensor = x, dec: torch.Tensor = dec, tgt: list[int] = tgt
                 ) -> torch.Tensor:
            with torch.no_grad():
                z = net(inputs_embeds=x * scale.view(1, -1, 1), decoder_input_ids=dec).logits[0]
            return torch.log_softmax(z, -1)[torch.arange(len(tgt)), torch.tensor(tgt)]

        for s in range(len(src)):
            up, down = torch.ones(len(src), dtype=x.dtype), torch.ones(len(src), dtype=x.dtype)
            up[s] += eps
            down[s] -= eps
            fd = ((logp(up) - logp(down)) / (2 * eps)).numpy()  # ∂ log p(y_t)/∂m_s: positive supports y_t
            np.testing.assert_allclose(q["delta"][:, s], fd, rtol=1e-4, atol=1e-6)
            np.testing.assert_allclose(o["delta"][:, s], -fd, rtol=1e-4, atol=1e-6)


def test_beam_one_is_greedy(tok):
    net = make(tok, seed=5)
    src = pairs_of(tok)[0][0]
    seq = [1]
    for _ in range(8):
        nxt = int(raw_logp(net, src, seq)[-1].argmax())
        seq.append(nxt)
        if nxt == tok.eos_token_id:
            break
    want = seq[1:-1] if seq[-1] == tok.eos_token_id else seq[1:]
    assert net.beam_search(src, beam=1, max_len=8) == want
    assert net.beam_search_ended(src, beam=1, max_len=8) == (want, seq[-1] == tok.eos_token_id)
    assert len(net.beam_search(src, beam=3, max_len=8)) <= 8


def test_translations_cut_at_max_len_are_counted_and_warned(tok):
    from seqexplain.training.snell_translation import beam_bleu

    net = make(tok, seed=5)
    with torch.no_grad():  # </s> can never win: every translation runs to max_len
        net.vocab.bias[tok.eos_token_id] = -1e9
    src = pairs_of(tok)[0][0]
    ids, ended = net.beam_search_ended(src, beam=3, max_len=4)
    assert not ended and len(ids) == 4
    with pytest.warns(UserWarning, match="2 of 2 beam-search translations reached max_len=4"):
        *_, n_cut = beam_bleu(net, tok, [src, src], ["a b", "a b"], beam=3, max_len=4)
    assert n_cut == 2


def test_dump_rows_and_px_baseline(tok):
    net = make(tok)
    pairs = pairs_of(tok)
    d = make_translation_dump(net, pairs, run="normal_A", step=0, split="val", dataset="toy", vocab_hash="v")
    assert len(d.labels) == sum(len(t) for _, t in pairs) and len(d.alpha[0]) == len(pairs[0][0])
    tf = teacher_forced(net, pairs)
    assert abs(d.accuracy - tf["accuracy"]) < 1e-12
    base, info = train_word_translation(pairs, pairs, len(tok), tok.pad_token_id, emb_dim=4, epochs=2)
    rows = px_rows(base, pairs)
    assert len(rows) == len(d.labels)
    with torch.no_grad():  # hand: log softmax(W E[x_s] + b)[y_t]
        lp = torch.log_softmax(base.linear(base.embedding(torch.tensor(pairs[0][0]))), -1)
    np.testing.assert_allclose(rows[0], lp[:, pairs[0][1][0]].numpy(), atol=1e-6)


def test_training_resumes_exactly_with_dropout(tmp_path, tok):
    pairs = pairs_of(tok) * 4
    cfg = SnellTranslatorConfig(len(tok), 6, 4, 2, 0.3, False, tok.pad_token_id, tok.bos_token_id, tok.eos_token_id)
    tc = SnellTrainConfig(steps=6, batch_size=4, lr=0.01, seed=1, checkpoint_steps=[3], tensorboard=False)
    a = train_snell_translator(cfg, pairs, tc, tmp_path / "a", "v")
    train_snell_translator(cfg, pairs, tc, tmp_path / "b", "v", stop_at=3)
    b = train_snell_translator(cfg, pairs, tc, tmp_path / "b", "v")
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    assert checkpoint_path(tmp_path / "b", 6).is_file()
    assert torch.equal(load_translator(tmp_path / "a", 3).w_q.weight, load_translator(tmp_path / "b", 3).w_q.weight)


def test_sentencepiece_tokenizer_matches_sentencepiece():
    texts = [f"{w} {v} {u}" for w in ("ein", "eine", "der", "die") for v in ("hund", "katze", "mann")
             for u in ("läuft", "schläft", "a dog runs", "the cat")]
    fast, sp = train_sentencepiece(texts, vocab_size=28)
    for t in texts[:10]:
        assert fast(t)["input_ids"] == sp.encode(t) + [2]
    assert fast.convert_ids_to_tokens([0, 1, 2, 3]) == ["<pad>", "<s>", "</s>", "<unk>"]


def test_parallel_files_with_unequal_lines(tmp_path):
    (tmp_path / "a.de").write_text("eins\nzwei\n", encoding="utf-8")
    (tmp_path / "a.en").write_text("one\n", encoding="utf-8")
    with pytest.raises(DataError, match="has 2 lines but .* has 1"):
        read_parallel_files(tmp_path / "a.de", tmp_path / "a.en")
    (tmp_path / "a.en").write_text("one\ntwo\n", encoding="utf-8")
    assert read_parallel_files(tmp_path / "a.de", tmp_path / "a.en") == (["eins", "zwei"], ["one", "two"])


@pytest.mark.parametrize("name", ["pad_token_id", "decoder_start_token_id", "eos_token_id"])
def test_special_ids_outside_the_vocabulary_are_refused(name):
    """An id past the vocabulary was accepted and every method then raised a bare IndexError."""
    from seqexplain.errors import InputError
    from seqexplain.models.snell_translation import SnellTranslatorConfig

    with pytest.raises(InputError, match=f"{name}=44 is outside the vocabulary"):
        SnellTranslatorConfig(vocab_size=39, **{name: 44})


def test_special_ids_may_be_numpy_or_tensor_integers_but_not_fractions():
    """numpy and 0-d tensor ids (Seq2SeqConfig took them before) were refused as "outside the vocabulary"."""
    import numpy as np
    import torch

    from seqexplain.errors import InputError
    from seqexplain.models.seq2seq_config import Seq2SeqConfig
    from seqexplain.models.snell_translation import SnellTranslatorConfig

    SnellTranslatorConfig(vocab_size=39, pad_token_id=np.int64(0), eos_token_id=torch.tensor(2))
    Seq2SeqConfig(vocab_size=100, pad_token_id=np.int64(0))
    with pytest.raises(InputError, match="pad_token_id=0.5 is not a token id"):
        SnellTranslatorConfig(vocab_size=39, pad_token_id=0.5)
