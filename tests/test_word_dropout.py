"""Word-dropout masks: distributions (fixed seeds, statistical tests), self-visibility, 4-D vs 2-D masks on
Hugging Face models, encoder-decoder masks."""

from __future__ import annotations

import copy

import pytest
import torch
from scipy import stats

from seqexplain.errors import InputError
from seqexplain.training.word_dropout import (
    WordDropout,
    WordDropoutCollator,
    causal_attention_mask,
    inverse_length_keep,
    sample_keep,
    seq2seq_attention_masks,
    seq2seq_logits,
    uniform_length_keep,
)


def test_uniform_length_kept_count_is_uniform() -> None:
    gen = torch.Generator().manual_seed(0)
    n_l, n_b = 12, 26000
    keep = uniform_length_keep(torch.ones(n_b, n_l, dtype=torch.bool), gen)
    counts = torch.bincount(keep.sum(1), minlength=n_l + 1).double()
    assert counts.numel() == n_l + 1  # every count 0..L occurs, none above L
    chi2 = stats.chisquare(counts.numpy())
    assert chi2.pvalue > 0.01
    # given k, the kept set is a uniformly random k-subset: each position is kept with probability mean(k)/L
    per_position = keep.double().mean(0)
    assert torch.allclose(per_position, torch.full((n_l,), 0.5, dtype=torch.float64), atol=0.015)


def test_uniform_length_subset_uniform_given_count() -> None:
    gen = torch.Generator().manual_seed(1)
    keep = uniform_length_keep(torch.ones(60000, 4, dtype=torch.bool), gen)
    k2 = keep[keep.sum(1) == 2]
    codes = (k2.long() * torch.tensor([1, 2, 4, 8])).sum(1)
    hist = torch.bincount(codes, minlength=16)[[3, 5, 6, 9, 10, 12]]  # the 6 two-element subsets
    assert stats.chisquare(hist.double().numpy()).pvalue > 0.01


def test_inverse_length_binomial_mean_and_variance() -> None:
    gen = torch.Generator().manual_seed(2)
    n_l, n_b = 10, 40000
    kept = inverse_length_keep(torch.ones(n_b, n_l, dtype=torch.bool), gen).sum(1).double()
    p = 1 / n_l
    mean, var = n_l * p, n_l * p * (1 - p)
    se_mean = (var / n_b) ** 0.5
    assert abs(float(kept.mean()) - mean) < 4 * se_mean
    assert abs(float(kept.var()) - var) < 0.03 * var


def test_padding_and_protected_positions() -> None:
    gen = torch.Generator().manual_seed(3)
    valid = torch.ones(2000, 8, dtype=torch.bool)
    valid[:, 5:] = False  # 5 real tokens
    protect = torch.zeros(8, dtype=torch.bool)
    protect[0] = True
    for kind in ("uniform_length", "inverse_length"):
        keep = sample_keep(valid, kind, gen, protect)
        assert not keep[:, 5:].any()
        assert keep[:, 0].all()
    keep = uniform_length_keep(valid, gen, protect)
    counts = torch.bincount(keep[:, 1:5].sum(1), minlength=5)
    assert counts.numel() == 5 and (counts > 300).all()  # k ~ U{0..4} over the 4 droppable positions
    with pytest.raises(InputError):
        sample_keep(valid, "nope", gen)


def test_mixture_fraction_and_seeding() -> None:
    wd = WordDropout("uniform_length", mixture=0.3)
    gen = torch.Generator().manual_seed(4)
    valid = torch.ones(2, 6, dtype=torch.bool)
    applied = [wd.sample(valid, gen)[1] for _ in range(4000)]
    frac = sum(applied) / len(applied)
    assert abs(frac - 0.3) < 4 * (0.3 * 0.7 / 4000) ** 0.5
    a = [wd.sample(valid, torch.Generator().manual_seed(9))[0] for _ in range(2)]
    assert torch.equal(a[0], a[1])
    keep, applied_flag = WordDropout(mixture=0.0).sample(valid, gen)
    assert not applied_flag and keep.all()


def test_every_token_sees_itself_and_only_kept_past() -> None:
    gen = torch.Generator().manual_seed(5)
    keep = uniform_length_keep(torch.ones(50, 7, dtype=torch.bool), gen)
    m = causal_attention_mask(keep)[:, 0]
    assert m.shape == (50, 7, 7)
    assert m.diagonal(dim1=1, dim2=2).all()
    for b in range(50):
        for q in range(7):
            for k in range(7):
                assert bool(m[b, q, k]) == (k == q or (k < q and bool(keep[b, k])))
    add = causal_attention_mask(keep, torch.float32)
    assert add.dtype == torch.float32
    assert torch.equal(add == 0, causal_attention_mask(keep))


@pytest.mark.parametrize("name", ["gpt2", "llama"])
@pytest.mark.parametrize("impl", ["eager", "sdpa"])
def test_hf_4d_mask(request: pytest.FixtureRequest, name: str, impl: str) -> None:
    model, _ = request.getfixturevalue(name)
    model.set_attn_implementation(impl)
    try:
        torch.manual_seed(0)
        ids = torch.randint(5, 200, (2, 9))
        pos = torch.arange(9).unsqueeze(0).expand(2, -1)
        with torch.no_grad():
            ref = model(input_ids=ids, attention_mask=torch.ones_like(ids), position_ids=pos).logits
            keep = torch.ones(2, 9, dtype=torch.bool)
            full = model(input_ids=ids, attention_mask=causal_attention_mask(keep, torch.float32),
                         position_ids=pos).logits
            torch.testing.assert_close(full, ref, atol=1e-5, rtol=1e-5)  # nothing dropped == 2-D path
            keep[0, 3] = False
            a = model(input_ids=ids, attention_mask=causal_attention_mask(keep, torch.float32), position_ids=pos).logits
            ids2 = ids.clone()
            ids2[0, 3] = 7 if int(ids[0, 3]) != 7 else 8
            b = model(input_ids=ids2, attention_mask=causal_attention_mask(keep, torch.float32),
                      position_ids=pos).logits
            torch.testing.assert_close(a[0, 4:], b[0, 4:], atol=1e-5, rtol=1e-5)  # invisible to others
            assert (a[0, 3] - b[0, 3]).abs().max() > 1e-3  # but sees itself
            idx = torch.tensor([0, 1, 2, 4, 5, 6, 7, 8])
            deleted = model(input_ids=ids[:1, idx], position_ids=idx.unsqueeze(0)).logits
            torch.testing.assert_close(a[0, idx], deleted[0], atol=1e-5, rtol=1e-5)  # == deletion
            torch.testing.assert_close(a[1], ref[1], atol=1e-5, rtol=1e-5)
    finally:
        model.set_attn_implementation("sdpa")


def test_seq2seq_masks_on_bart(bart) -> None:
    model, _ = bart
    torch.manual_seed(0)
    src, tgt = torch.randint(5, 200, (2, 7)), torch.randint(5, 200, (2, 5))
    sk, tk = torch.ones(2, 7, dtype=torch.bool), torch.ones(2, 5, dtype=torch.bool)
    with torch.no_grad():
        ref = model(input_ids=src, attention_mask=torch.ones_like(src), decoder_input_ids=tgt).logits
        full = seq2seq_logits(model, src, tgt, seq2seq_attention_masks(sk, tk, torch.float32))
        torch.testing.assert_close(full, ref, atol=1e-5, rtol=1e-5)
        sk[0, 2] = False
        tk[0, 1] = False
        masks = seq2seq_attention_masks(sk, tk, torch.float32)
        a = seq2seq_logits(model, src, tgt, masks)
        src2, tgt2 = src.clone(), tgt.clone()
        src2[0, 2] = 9
        tgt2[0, 1] = 9
        b = seq2seq_logits(model, src2, tgt2, masks)
    torch.testing.assert_close(a[0, 2:], b[0, 2:], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a[0, 0], b[0, 0], atol=1e-5, rtol=1e-5)
    assert (a[0, 1] - b[0, 1]).abs().max() > 1e-3
    # a row with no kept source token gets no source information (rule 5 of seqexplain.models.keep): the same
    # logits as a model whose cross-attention values are all zero
    none = seq2seq_attention_masks(torch.zeros(1, 7, dtype=torch.bool), torch.ones(1, 5, dtype=torch.bool),
                                   torch.float32)
    assert none.source_empty.tolist() == [True]
    assert none.encoder[0, 0].diagonal().eq(0).all()
    oracle = copy.deepcopy(model)
    for layer in oracle.get_decoder().layers:
        layer.encoder_attn.v_proj.weight.data.zero_()
        layer.encoder_attn.v_proj.bias.data.zero_()
    with torch.no_grad():
        got = seq2seq_logits(model, src[:1], tgt[:1], none)
        ref = oracle(input_ids=src[:1], attention_mask=torch.ones_like(src[:1]), decoder_input_ids=tgt[:1]).logits
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


def test_collator_for_trainer(gpt2) -> None:
    model, tok = gpt2
    coll = WordDropoutCollator(tok.pad_token_id, WordDropout(mixture=1.0), seed=0)
    batch = coll([{"input_ids": [5, 6, 7, 8]}, {"input_ids": [9, 10]}])
    assert batch["attention_mask"].shape == (2, 1, 4, 4)
    assert batch["labels"][1].tolist() == [9, 10, -100, -100]
    with torch.no_grad():
        out = model(**batch)
    assert torch.isfinite(out.loss)
    plain = WordDropoutCollator(tok.pad_token_id, WordDropout(mixture=0.0))([{"input_ids": [5, 6, 7]}])
    assert plain["attention_mask"].tolist() == [[1, 1, 1]]
