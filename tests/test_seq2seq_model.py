"""seqexplain's own encoder-decoder (models/seq2seq.py), its tokenizer (data/tokenizers.py) and the Multi30K reader,
under the model interface."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from oracles import seq2seq_read

import seqexplain as se
from seqexplain.data.tokenizers import train_bpe_tokenizer, word_index_of_tokens, word_spans
from seqexplain.errors import DataError, InputError, ModelLoadError
from seqexplain.models.seq2seq import Seq2SeqTransformer, load_seq2seq
from seqexplain.models.seq2seq_config import Seq2SeqConfig
from seqexplain.models.seq2seq_layers import cross_keep_mask, decoder_keep_mask, encoder_keep_mask

torch.set_num_threads(1)

SOURCES = [
    "Ein Mann fährt Fahrrad auf der Straße.",
    "Zwei Hunde spielen im Schnee.",
    "Eine Frau liest ein Buch im Park.",
    "Kinder spielen Fußball am Strand.",
]
TARGETS = [
    "A man rides a bike on the street.",
    "Two dogs play in the snow.",
    "A woman reads a book in the park.",
    "Children play soccer on the beach.",
]


@pytest.fixture(scope="module")
def tok():
    return train_bpe_tokenizer((SOURCES + TARGETS) * 3, vocab_size=200, min_frequency=1)


def _model(tok, positions: str = "sinusoidal", seed: int = 0) -> Seq2SeqTransformer:
    torch.manual_seed(seed)
    cfg = Seq2SeqConfig(vocab_size=len(tok), d_model=16, n_heads=2, ffn_dim=32, encoder_layers=2, decoder_layers=2,
                        max_position_embeddings=64, positions=positions, dropout=0.0,  # type: ignore[arg-type]
                        pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                        decoder_start_token_id=tok.bos_token_id)
    return Seq2SeqTransformer(cfg).eval()


@pytest.fixture(scope="module", params=["sinusoidal", "learned"])
def model(request, tok):
    return _model(tok, request.param)


# ----------------------------------------------------------------------------------------------- tokenizer
def test_tokenizer_offsets_and_round_trip(tok):
    text = "Zwei Hunde  spielen. im Schnee."
    enc = tok(text, return_offsets_mapping=True, add_special_tokens=True)
    toks = tok.convert_ids_to_tokens(enc["input_ids"])
    assert toks[-1] == "</s>" and enc["offset_mapping"][-1] == (0, 0)
    for t, (a, b) in zip(toks[:-1], enc["offset_mapping"][:-1], strict=True):
        piece = t.replace("▁", "")
        assert text[a:b].strip() == piece, (t, text[a:b])
    # punctuation is isolated, whitespace collapsed on decoding
    assert "." in toks
    assert tok.decode(enc["input_ids"], skip_special_tokens=True) == "Zwei Hunde spielen. im Schnee."
    # through seqexplain's tokenize(): the end-of-sequence token has no offset
    from seqexplain.models.tokenization import tokenize

    t = tokenize(tok, text, add_special_tokens=True)
    assert t.offsets[-1] is None and all(o is not None for o in t.offsets[:-1])


def test_word_index_of_tokens(tok):
    text = "Zwei Hunde spielen ! im Schnee ."
    enc = tok(text, return_offsets_mapping=True, add_special_tokens=True, return_special_tokens_mask=True)
    offs = [None if s else o for o, s in zip(enc["offset_mapping"], enc["special_tokens_mask"], strict=True)]
    words = word_spans(text)
    assert [text[a:b] for a, b in words] == text.split()
    idx = word_index_of_tokens(offs, text, words)
    assert idx[-1] is None
    toks = tok.convert_ids_to_tokens(enc["input_ids"])
    for t, w in zip(toks[:-1], idx[:-1], strict=True):
        assert w is not None
        assert t.replace("▁", "") in text.split()[w] or t in ("▁", "<unk>")
    assert idx[: len(idx) - 1] == sorted(idx[: len(idx) - 1])  # monotone


def test_tokenizer_save_load(tok, tmp_path):
    from seqexplain.data.tokenizers import load_tokenizer, save_tokenizer

    save_tokenizer(tok, tmp_path)
    back = load_tokenizer(tmp_path)
    assert back(SOURCES[0])["input_ids"] == tok(SOURCES[0])["input_ids"]
    assert back.eos_token_id == tok.eos_token_id and back.pad_token_id == tok.pad_token_id
    with pytest.raises(ModelLoadError):
        load_tokenizer(tmp_path / "missing")
    with pytest.raises(InputError):
        train_bpe_tokenizer(["a b"], vocab_size=3)


# --------------------------------------------------------------------------------------------------- masks
def test_keep_masks_by_brute_force():
    keep = torch.tensor([[1, 0, 1, 0], [0, 0, 0, 0]], dtype=torch.bool)
    enc, dec, cross = encoder_keep_mask(keep), decoder_keep_mask(keep), cross_keep_mask(keep, 3)
    for b in range(2):
        for q in range(4):
            for k in range(4):
                assert bool(enc[b, 0, q, k]) == bool(keep[b, k] or k == q)
                assert bool(dec[b, 0, q, k]) == bool(k <= q and (keep[b, k] or k == q))
        for t in range(3):
            for k in range(4):
                assert bool(cross[b, 0, t, k]) == bool(keep[b, k])


def _brute_force_scores(model, ex, keep_row: torch.Tensor) -> torch.Tensor:
    """log p(target_i) under keep_row with hand-built 4-D masks and a hand-computed reading position."""
    s, n_t = ex.n_source, ex.n_targets
    ids = ex.input_ids
    ks, kt = keep_row[:s].tolist(), keep_row[s : s + n_t].tolist()
    enc = torch.tensor([[bool(ks[k] or k == q) for k in range(s)] for q in range(s)])[None, None]
    dec = torch.tensor([[bool(k <= q and (kt[k] or k == q)) for k in range(n_t)] for q in range(n_t)])[None, None]
    cross = torch.tensor([[bool(ks[k]) for k in range(s)] for _ in range(n_t)])[None, None]
    with torch.no_grad():
        logits = model(input_ids=ids[None, :s], attention_mask=enc, decoder_input_ids=ids[None, s : s + n_t],
                       decoder_attention_mask=dec, cross_attention_mask=cross).logits[0]
    return seq2seq_read(logits, ex, keep_row)


def test_score_with_keep_equals_direct_masked_forward(model, tok):
    w = se.load_model(model, tok)
    assert w.kind == "seq2seq"
    ex = w.encode(SOURCES[0], TARGETS[0])
    s, n = ex.n_source, ex.length
    g = torch.Generator().manual_seed(1)
    keeps = torch.rand(6, n, generator=g) > 0.4
    keeps[0] = True
    keeps[1, :s] = False  # no source at all: cross-attention contributes nothing
    keeps[2, s + 1 :] = False  # only the decoder start on the target side
    with torch.no_grad():
        got = w.score(ex, keeps)
        full = w.score(ex)
        direct_full = torch.log_softmax(model(input_ids=ex.input_ids[None, :s],
                                              decoder_input_ids=ex.input_ids[None, s:-1]).logits[0], -1)
    ref_full = direct_full[torch.arange(ex.n_targets), ex.target_ids]
    np.testing.assert_allclose(full[0].numpy(), ref_full.numpy(), rtol=1e-5, atol=1e-5)
    for b in range(keeps.shape[0]):
        np.testing.assert_allclose(got[b].numpy(), _brute_force_scores(model, ex, keeps[b]).numpy(), rtol=1e-5,
                                   atol=1e-5)


def test_dropped_positions_are_invisible(model, tok):
    """Changing the tokens at dropped positions changes nothing (a dropped token only sees itself)."""
    w = se.load_model(model, tok)
    ex = w.encode(SOURCES[1], TARGETS[1])
    s = ex.n_source
    keep = torch.ones(1, ex.length, dtype=torch.bool)
    keep[0, [1, 3, s + 2]] = False
    other = ex.input_ids.clone()
    other[[1, 3, s + 2]] = tok.unk_token_id
    ex2 = type(ex)(**{**ex.__dict__, "input_ids": other})
    with torch.no_grad():
        a, b = w.score(ex, keep), w.score(ex2, keep)
    vis = [i for i in range(ex.n_targets) if s + 1 + i != s + 2]  # target read at the dropped position itself
    np.testing.assert_allclose(a[0, vis].numpy(), b[0, vis].numpy(), rtol=1e-5, atol=1e-6)
    # no source kept: the source tokens do not matter at all
    keep_none = torch.ones(1, ex.length, dtype=torch.bool)
    keep_none[0, :s] = False
    other2 = ex.input_ids.clone()
    other2[: s - 1] = tok.unk_token_id
    ex3 = type(ex)(**{**ex.__dict__, "input_ids": other2})
    with torch.no_grad():
        np.testing.assert_allclose(w.score(ex, keep_none).numpy(), w.score(ex3, keep_none).numpy(), atol=1e-6)


def test_additive_masks_and_word_dropout_helper_match_keep_masks(tok):
    from seqexplain.training.word_dropout import seq2seq_attention_masks, seq2seq_logits

    model = _model(tok)
    src = tok(SOURCES[:2], padding=True, return_tensors="pt")
    dec = torch.tensor([[tok.bos_token_id, 10, 11, 12], [tok.bos_token_id, 13, 14, 15]])
    src_keep = src["attention_mask"].bool().clone()
    src_keep[0, 1] = False
    tgt_keep = torch.tensor([[1, 0, 1, 1], [1, 1, 0, 1]], dtype=torch.bool)
    with torch.no_grad():
        ref = model(input_ids=src["input_ids"], attention_mask=src_keep, decoder_input_ids=dec,
                    decoder_attention_mask=tgt_keep).logits
        masks = seq2seq_attention_masks(src_keep, tgt_keep, dtype=torch.float32)
        got = seq2seq_logits(model, src["input_ids"], dec, masks)
        bool_masks = seq2seq_attention_masks(src_keep, tgt_keep)
        got_bool = model(input_ids=src["input_ids"], attention_mask=bool_masks.encoder, decoder_input_ids=dec,
                         decoder_attention_mask=bool_masks.decoder, cross_attention_mask=bool_masks.cross).logits
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got_bool, ref, rtol=1e-5, atol=1e-5)
    with pytest.raises(InputError):
        model(input_ids=src["input_ids"], attention_mask=bool_masks.encoder, decoder_input_ids=dec)


# ------------------------------------------------------------------------------------------------- methods
@pytest.mark.parametrize("method", ["integrated_gradients", "occlusion", "attention_last"])
def test_explain_methods(model, tok, method):
    opts = {"steps": 8} if method == "integrated_gradients" else {}
    attr = se.explain(model, SOURCES[2], TARGETS[2], method=method, tokenizer=tok, **opts)
    ex = se.load_model(model, tok).encode(SOURCES[2], TARGETS[2])
    assert attr.scores.shape == (ex.n_targets, ex.length)
    vis = ex.visible().numpy()
    assert np.isfinite(attr.scores[vis]).all()
    assert np.isnan(attr.scores[~vis]).all()
    assert attr.model_kind == "seq2seq"


def test_greedy_rationale_runs(model, tok):
    attr = se.explain(model, SOURCES[3], TARGETS[3], method="greedy", tokenizer=tok, max_size=4)
    assert attr.rationale is not None and len(attr.rationale.positions) == len(attr.target_tokens)
    assert all(1 <= len(r) <= 4 for r in attr.rationale.positions)


@torch.no_grad()
def test_attention_shapes(model, tok):
    src = tok(SOURCES[:2], padding=True, return_tensors="pt")
    dec = torch.tensor([[tok.bos_token_id, 10, 11], [tok.bos_token_id, 12, 13]])
    out = model(input_ids=src["input_ids"], attention_mask=src["attention_mask"], decoder_input_ids=dec,
                output_attentions=True)
    b, s = src["input_ids"].shape
    cfg = model.config
    assert out.logits.shape == (b, 3, cfg.vocab_size)
    assert len(out.encoder_attentions) == cfg.encoder_layers and len(out.decoder_attentions) == cfg.decoder_layers
    assert len(out.cross_attentions) == cfg.decoder_layers
    assert out.encoder_attentions[0].shape == (b, cfg.n_heads, s, s)
    assert out.decoder_attentions[0].shape == (b, cfg.n_heads, 3, 3)
    assert out.cross_attentions[0].shape == (b, cfg.n_heads, 3, s)
    pad = ~src["attention_mask"].bool()
    for a in out.cross_attentions:
        torch.testing.assert_close(a.sum(-1), torch.ones(b, cfg.n_heads, 3))
        assert float(a.masked_select(pad[:, None, None, :].expand_as(a)).abs().sum()) == 0.0
    for a in out.decoder_attentions:
        assert float(a.triu(1).abs().sum()) == 0.0
    wrapped = se.load_model(model, tok)
    ex = wrapped.encode(SOURCES[0], TARGETS[0])
    src_part, dec_part = wrapped.attention_view(ex)
    assert (src_part.start, src_part.stop, dec_part.start, dec_part.stop) == (0, ex.n_source, ex.n_source,
                                                                              ex.n_source + ex.n_targets)
    assert len(src_part.key_rollout) == cfg.encoder_layers and dec_part.key_rollout is None
    # no source kept: the cross-attention weights are all zero
    keep = torch.zeros(1, s, dtype=torch.bool)
    out0 = model(input_ids=src["input_ids"][:1], attention_mask=keep, decoder_input_ids=dec[:1],
                 output_attentions=True)
    assert all(float(a.abs().sum()) == 0.0 for a in out0.cross_attentions)


# ---------------------------------------------------------------------------------------------- save / load
def test_save_load_round_trip(tok, tmp_path):
    model = _model(tok, "learned", seed=3)
    model.save(tmp_path)
    back = load_seq2seq(tmp_path)
    assert back.config.to_dict() == {**model.config.to_dict(), "name_or_path": str(tmp_path)}
    assert back.lm_head.weight.data_ptr() == back.shared.weight.data_ptr()
    src = tok(SOURCES[:1], return_tensors="pt")["input_ids"]
    dec = torch.tensor([[tok.bos_token_id, 5, 6]])
    with torch.no_grad():
        torch.testing.assert_close(back(input_ids=src, decoder_input_ids=dec).logits,
                                   model(input_ids=src, decoder_input_ids=dec).logits)
    (tmp_path / "config.json").write_text('{"model_type": "other"}')
    with pytest.raises(ModelLoadError):
        load_seq2seq(tmp_path)
    with pytest.raises(ModelLoadError):
        load_seq2seq(tmp_path / "nothing")


def test_config_validation():
    with pytest.raises(InputError):
        Seq2SeqConfig(vocab_size=10, d_model=10, n_heads=3)
    with pytest.raises(InputError):
        Seq2SeqConfig(vocab_size=10, positions="rotary")  # type: ignore[arg-type]
    with pytest.raises(InputError):
        Seq2SeqConfig(vocab_size=2)  # special ids outside the vocabulary


def test_too_long_input_is_a_clear_error(tok):
    model = _model(tok)
    with pytest.raises(InputError, match="positions"):
        model(input_ids=torch.zeros(1, 65, dtype=torch.long), decoder_input_ids=torch.zeros(1, 2, dtype=torch.long))


# ------------------------------------------------------------------------------------------------ training
def test_tiny_training_lowers_loss_and_generates(tok):
    from seqexplain.training.translation_batches import EncodedPair, collate, sample_keep, special_ids
    from seqexplain.training.translation_eval import batch_loss

    model = _model(tok, seed=5)
    ids = special_ids(tok)
    pairs = [EncodedPair(tok(s)["input_ids"], tok(t, add_special_tokens=False)["input_ids"])
             for s, t in zip(SOURCES, TARGETS, strict=True)]
    batch = collate(pairs, list(range(len(pairs))), ids)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    model.train()
    losses = []
    for step in range(60):
        sk, _ = sample_keep(batch["src_valid"], "inverse_length", 0.3, gen)
        tk, _ = sample_keep(batch["tgt_valid"], "inverse_length", 0.3, gen)
        with torch.no_grad():
            losses.append(float(batch_loss(model, batch, batch["src_valid"], batch["tgt_valid"])[0]))
        loss, _ = batch_loss(model, batch, sk, tk)
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert math.isfinite(float(loss.detach())), step
    assert losses[-1] < 0.5 * losses[0]
    out = model.greedy_generate([p.src for p in pairs], max_new_tokens=12)
    assert len(out) == len(pairs) and all(isinstance(x, list) for x in out)
    assert sum(o == p.tgt for o, p in zip(out, pairs, strict=True)) >= 2  # memorised
    assert model.training  # greedy_generate restores the previous mode


# ----------------------------------------------------------------------------------------------- Multi30K
def test_multi30k_reader():
    from seqexplain.data.multi30k import read_lines, read_multi30k

    try:
        train = read_multi30k("train", "de", "en")
    except DataError as exc:
        pytest.skip(f"Multi30K not available: {exc}")
    assert len(train) == 29000
    assert train.source[0].startswith("Zwei junge weiße Männer")
    assert train.target[0].startswith("Two young, White males")
    assert len(read_multi30k("val", "en", "fr")) == 1014
    test = read_multi30k("test", "de", "fr")
    assert len(test) == 1000 and test.split == "test_2016_flickr"
    assert len(train.subset(10)) == 10
    assert len(read_lines("valid", "fr")) == 1014
    with pytest.raises(InputError):
        read_lines("train", "es")
    with pytest.raises(InputError):
        read_multi30k("dev")
    with pytest.raises(InputError):
        read_multi30k("train", "de", "de")


def test_multi30k_missing_data(tmp_path):
    from seqexplain.data.multi30k import read_multi30k

    with pytest.raises(DataError, match="multi30k"):
        read_multi30k("train", root=tmp_path)


def test_saved_seq2seq_with_tokenizer_loads_through_load_model(tmp_path):
    from seqexplain.data.tokenizers import save_tokenizer


    tok = train_bpe_tokenizer(["ein kleiner hund", "a small dog", "eine katze", "a cat"] * 5, vocab_size=120,
                              min_frequency=1)
    torch.manual_seed(0)
    cfg = Seq2SeqConfig(vocab_size=len(tok), d_model=16, n_heads=2, ffn_dim=32, encoder_layers=1, decoder_layers=1,
                        pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                        decoder_start_token_id=tok.bos_token_id)
    model = Seq2SeqTransformer(cfg).eval()
    model.save(tmp_path / "mt")
    save_tokenizer(tok, tmp_path / "mt")
    wrapped = se.load_model(tmp_path / "mt")
    assert wrapped.kind == "seq2seq"
    attr = se.explain(wrapped, "ein kleiner hund", "a small dog", method="occlusion")
    assert np.isfinite(attr.scores[0, : attr.target_positions[0] - 1]).all()
