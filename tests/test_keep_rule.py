"""The keep-mask rule (seqexplain.models.keep) honoured by the Hugging Face adapters on GPT-2, Llama, BART, T5 and
BERT, against oracles built by hand: deleting tokens (with their original position ids), hand-built 4-D masks, and
models whose cross-attention values are zeroed."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from oracles import seq2seq_read

import seqexplain as se


def _causal_deleted(model, ids: torch.Tensor, kept: list[int], read: int, target: int) -> float:
    """log p(target) read at position ``read`` after deleting every position not in ``kept`` (ids kept)."""
    pos = torch.tensor(sorted(set(kept)))
    with torch.no_grad():
        logits = model(input_ids=ids[pos][None], position_ids=pos[None],
                       attention_mask=torch.ones(1, len(pos), dtype=torch.long)).logits[0]
    return float(torch.log_softmax(logits[int((pos == read).nonzero())], -1)[target])


def _assert_causal_rows(w, ex, keeps: torch.Tensor, expected_of) -> None:
    """Every row's score under ``keeps`` equals ``expected_of(kept, read, target)`` for each target: ``kept`` the
    positions kept before ``p_i`` (rule 4: nothing kept = only the predicting token ``p_i − 1``), ``read`` the last
    of them (rule 3)."""
    with torch.no_grad():
        got = w.score(ex, keeps)
    for b in range(keeps.shape[0]):
        for i, (p, t) in enumerate(zip(ex.target_positions, ex.target_ids.tolist(), strict=True)):
            before = [j for j in range(p) if keeps[b, j]]
            read = before[-1] if before else p - 1
            expected = expected_of(before or [p - 1], read, t)
            np.testing.assert_allclose(float(got[b, i]), expected, rtol=1e-4, atol=1e-5, err_msg=f"row {b} t {i}")


def _deleting(model, ex):
    return lambda kept, read, t: _causal_deleted(model, ex.input_ids, kept, read, t)


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_causal_rows_equal_deleting_tokens(request, name):
    model, tok = request.getfixturevalue(name)
    w = se.load_model(model, tok)
    ex = w.encode("The cat sat on the mat.", " The dog")
    g = torch.Generator().manual_seed(0)
    keeps = torch.rand(8, ex.length, generator=g) > 0.5
    keeps[0, : ex.target_positions[0]] = False  # nothing kept before the first target (rule 4)
    keeps[1] = False  # nothing kept at all: every target falls back, rows are split per target
    _assert_causal_rows(w, ex, keeps, _deleting(model, ex))


def test_nothing_kept_equals_only_the_predicting_token_on_gpt2(gpt2):
    """The case the old fallback got wrong: with nothing kept, GPT-2 attended over masked positions."""
    model, tok = gpt2
    w = se.load_model(model, tok)
    ex = w.encode("Paris is the capital of", " France")
    p = ex.target_positions[0]
    nothing = torch.zeros(1, ex.length, dtype=torch.bool)
    only = nothing.clone()
    only[0, p - 1] = True
    with torch.no_grad():
        a, b = w.score(ex, nothing), w.score(ex, only)
    assert float(a[0, 0]) == pytest.approx(float(b[0, 0]), abs=1e-6)
    assert float(a[0, 0]) == pytest.approx(_causal_deleted(model, ex.input_ids, [p - 1], p - 1, int(ex.target_ids[0])),
                                     abs=1e-5)


def test_split_rows_keep_fallback_private_to_its_target(gpt2):
    """Target 0 falls back to p0 − 1; target 1 reads target 0's token and must not see the fallback position."""
    model, tok = gpt2
    w = se.load_model(model, tok)
    ex = w.encode("Paris", " is the")
    assert ex.target_positions[0] == ex.n_source
    keep = torch.ones(1, ex.length, dtype=torch.bool)
    keep[0, : ex.n_source] = False
    with torch.no_grad():
        got = w.score(ex, keep)[0]
    p0, p1 = ex.target_positions[:2]
    t0, t1 = ex.target_ids.tolist()[:2]
    assert float(got[0]) == pytest.approx(_causal_deleted(model, ex.input_ids, [p0 - 1], p0 - 1, t0), abs=1e-5)
    assert float(got[1]) == pytest.approx(_causal_deleted(model, ex.input_ids, [p1 - 1], p1 - 1, t1), abs=1e-5)


def test_bert_rows_equal_deleting_tokens_and_nothing_kept_reads_cls(bert):
    model, tok = bert
    w = se.load_model(model, tok)
    ex = w.encode("the cat sat on the mat", "positive")
    g = torch.Generator().manual_seed(1)
    keeps = torch.rand(5, ex.length, generator=g) > 0.4
    keeps[:, 0] = True  # the head reads [CLS]
    keeps[4] = False  # nothing kept: only [CLS] (rule 4)
    with torch.no_grad():
        got = w.score(ex, keeps)[:, 0]
        for b in range(keeps.shape[0]):
            pos = torch.nonzero(keeps[b]).flatten() if keeps[b].any() else torch.tensor([0])
            # an explicit attention mask: without one, transformers reads non-contiguous position ids as packed
            # sequences and attends within each run only
            logits = model(input_ids=ex.input_ids[pos][None], position_ids=pos[None],
                           attention_mask=torch.ones(1, len(pos), dtype=torch.long)).logits[0]
            expected = float(torch.log_softmax(logits, -1)[ex.target_ids[0]])
            assert float(got[b]) == pytest.approx(expected, abs=1e-5), b


def test_decoder_classifier_reads_last_kept_token(gpt2_classifier):
    """A decoder-style head reads the last token: dropping it moves the head to the last kept token."""
    model, tok = gpt2_classifier
    w = se.load_model(model, tok)
    ex = w.encode("The cat sat on the mat.", 1)
    keep = torch.ones(2, ex.length, dtype=torch.bool)
    keep[0, -1] = False
    keep[1, [1, 2]] = False
    with torch.no_grad():
        got = w.score(ex, keep)[:, 0]
        for b in range(2):
            pos = torch.nonzero(keep[b]).flatten()
            # an explicit attention mask: without one, transformers reads non-contiguous position ids as packed
            # sequences and attends within each run only
            logits = model(input_ids=ex.input_ids[pos][None], position_ids=pos[None],
                           attention_mask=torch.ones(1, len(pos), dtype=torch.long)).logits[0]
            assert float(got[b]) == pytest.approx(float(torch.log_softmax(logits, -1)[1]), abs=1e-5)


def _seq2seq_masked(model, ex, keep_row: torch.Tensor) -> torch.Tensor:
    """Per target, log p(target) with hand-built 4-D masks (rule 2), reading at rule 3's position; rows without a
    kept source use a copy of the model whose cross-attention values are zero (rule 5)."""
    s, n_t = ex.n_source, ex.n_targets
    ks, kt = keep_row[:s].tolist(), keep_row[s : s + n_t].tolist()
    enc = torch.tensor([[bool(ks[k] or k == q) for k in range(s)] for q in range(s)])[None, None]
    dec = torch.tensor([[bool(k <= q and (kt[k] or k == q)) for k in range(n_t)] for q in range(n_t)])[None, None]
    neg = torch.finfo(torch.float32).min
    add = [torch.zeros(m.shape).masked_fill(~m, neg) for m in (enc, dec)]
    runner = model
    cross = torch.tensor([[bool(ks[k]) for k in range(s)] for _ in range(n_t)])[None, None]
    if not any(ks):
        runner = copy.deepcopy(model)
        for name, mod in runner.named_modules():
            if name.endswith(("encoder_attn.v_proj", "EncDecAttention.v")):
                mod.weight.data.zero_()
                if mod.bias is not None:
                    mod.bias.data.zero_()
        cross = torch.ones_like(cross)
    add_cross = torch.zeros(cross.shape).masked_fill(~cross, neg)
    ids = ex.input_ids
    with torch.no_grad():
        enc_out = runner.get_encoder()(input_ids=ids[None, :s], attention_mask=add[0])
        logits = runner(encoder_outputs=enc_out, attention_mask=add_cross, decoder_input_ids=ids[None, s : s + n_t],
                        decoder_attention_mask=add[1]).logits[0]
    return seq2seq_read(logits, ex, keep_row)


@pytest.mark.parametrize("name", ["bart", "t5"])
def test_seq2seq_rows_follow_the_rule(request, name):
    model, tok = request.getfixturevalue(name)
    w = se.load_model(model, tok)
    ex = w.encode("The quick brown fox jumps.", "The dog sat")
    s = ex.n_source
    g = torch.Generator().manual_seed(2)
    keeps = torch.rand(6, ex.length, generator=g) > 0.5
    keeps[0, :s] = False  # no source kept: cross-attention contributes nothing (rule 5)
    keeps[1, s:] = False  # nothing on the decoder side: each target reads p_i − 1 seeing only itself
    keeps[2] = False
    with torch.no_grad():
        got = w.score(ex, keeps)
    for b in range(keeps.shape[0]):
        row = keeps[b].clone()
        np.testing.assert_allclose(got[b].numpy(), _seq2seq_masked(model, ex, row).numpy(), rtol=1e-4, atol=1e-5,
                                   err_msg=f"row {b}")


def test_causal_rows_keep_positions_on_a_model_without_position_ids(bpe):
    """MPT (ALiBi) has no ``position_ids`` parameter (its forward takes ``**kwargs``, which swallowed them): sparse
    rows used to be packed, so the kept tokens moved left and their ALiBi distances shrank, while dense rows kept
    them; every row must equal the model run on the whole prefix with the dropped positions masked in place."""
    from transformers import MptConfig, MptForCausalLM

    torch.manual_seed(0)
    model = MptForCausalLM(MptConfig(d_model=32, n_heads=2, n_layers=2, vocab_size=len(bpe), max_seq_len=64,
                                     expansion_ratio=2)).eval()
    w = se.load_model(model, bpe, kind="causal")
    ex = w.encode("The quick brown fox jumps over the lazy dog and", " the cat")
    g = torch.Generator().manual_seed(1)
    keeps = torch.rand(6, ex.length, generator=g) > torch.tensor([0.2, 0.5, 0.8, 0.9, 0.9, 0.9]).view(-1, 1)

    def masked_in_place(kept: list[int], read: int, t: int) -> float:
        mask = torch.zeros(1, read + 1, dtype=torch.long)
        mask[0, kept] = 1
        with torch.no_grad():
            logits = model(input_ids=ex.input_ids[None, : read + 1], attention_mask=mask).logits[0, read]
        return float(torch.log_softmax(logits, -1)[t])

    _assert_causal_rows(w, ex, keeps, masked_in_place)


def _scaled_head_lm(name: str, bpe):
    """Causal LMs whose logits are not the output layer on the last hidden state (Granite divides them by
    ``logits_scaling``, Gemma-2 soft-caps them), so the adapter reads the model's own logits at the reading
    positions instead of applying the output layer there."""
    import transformers

    torch.manual_seed(0)
    common = dict(num_hidden_layers=2, hidden_size=32, intermediate_size=64, num_attention_heads=4,
                  num_key_value_heads=2, vocab_size=len(bpe), max_position_embeddings=128,
                  pad_token_id=bpe.pad_token_id, eos_token_id=bpe.eos_token_id, bos_token_id=bpe.bos_token_id)
    if name == "granite":
        return transformers.GraniteForCausalLM(transformers.GraniteConfig(logits_scaling=4.0, **common)).eval()
    return transformers.Gemma2ForCausalLM(transformers.Gemma2Config(
        head_dim=8, final_logit_softcapping=3.0, sliding_window=128, **common)).eval()


@pytest.mark.parametrize("name", ["granite", "gemma2"])
def test_causal_rows_equal_deleting_tokens_when_logits_are_rescaled(bpe, name):
    model = _scaled_head_lm(name, bpe)
    w = se.load_model(model, bpe, kind="causal")
    ex = w.encode("The quick brown fox jumps over the lazy dog and", " the cat sat")
    g = torch.Generator().manual_seed(0)
    keeps = torch.rand(5, ex.length, generator=g) > torch.tensor([0.2, 0.5, 0.8, 0.9, 0.0]).view(-1, 1)
    _assert_causal_rows(w, ex, keeps, _deleting(model, ex))
    assert w._head_ok is False  # the fallback ran


def _masking_is_not_deleting_lm(name: str, bpe):
    """Causal LMs on which masking a token in place differs from deleting it: Gemma-2 with a sliding window shorter
    than the input (the window counts the tokens read), and the hybrid attention/state-space Falcon-H1 (its
    recurrent layers step through masked tokens; its cache holds recurrent states besides keys and values)."""
    import transformers

    torch.manual_seed(0)
    if name == "gemma2":
        return transformers.Gemma2ForCausalLM(transformers.Gemma2Config(
            num_hidden_layers=2, hidden_size=32, intermediate_size=64, num_attention_heads=4, num_key_value_heads=2,
            head_dim=8, sliding_window=4, vocab_size=len(bpe), max_position_embeddings=128)).eval()
    return transformers.FalconH1ForCausalLM(transformers.FalconH1Config(
        vocab_size=len(bpe), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=16, mamba_d_ssm=32, mamba_n_heads=2, mamba_d_head=16, mamba_d_state=8,
        mamba_n_groups=1, mamba_chunk_size=8, max_position_embeddings=64)).eval()


@pytest.mark.parametrize("name", ["gemma2", "falcon_h1"])
def test_causal_rows_equal_deleting_tokens_where_masking_is_not_deleting(bpe, name):
    """Dense and sparse rows in one call: dense rows used to be masked in place (a different model input), and a
    sparse row's result depended on whether a dense row shared its forward; Falcon-H1's sparse rows crashed in the
    shared-prefix path, which rebuilt its hybrid cache from keys and values alone."""
    model = _masking_is_not_deleting_lm(name, bpe)
    w = se.load_model(model, bpe, kind="causal")
    ex = w.encode("The quick brown fox jumps over the lazy dog and", " the cat sat")
    g = torch.Generator().manual_seed(0)
    keeps = torch.rand(6, ex.length, generator=g) > torch.tensor([0.1, 0.3, 0.8, 0.9, 0.9, 0.9]).view(-1, 1)
    _assert_causal_rows(w, ex, keeps, _deleting(model, ex))


def _encoder_decoder(bpe, decoder: str):
    """A tiny ``EncoderDecoderModel`` with a BERT encoder and a BERT or GPT-2 decoder (bert2bert, bert2gpt2)."""
    from transformers import BertConfig, EncoderDecoderConfig, EncoderDecoderModel, GPT2Config

    torch.manual_seed(0)
    enc = BertConfig(vocab_size=len(bpe), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64)
    dec = (BertConfig(vocab_size=len(bpe), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=64, is_decoder=True, add_cross_attention=True)
           if decoder == "bert" else
           GPT2Config(vocab_size=len(bpe), n_embd=32, n_layer=1, n_head=2, n_positions=64, add_cross_attention=True))
    model = EncoderDecoderModel(config=EncoderDecoderConfig.from_encoder_decoder_configs(enc, dec)).eval()
    model.config.decoder_start_token_id, model.config.pad_token_id = bpe.bos_token_id, bpe.pad_token_id
    return model


@pytest.mark.parametrize("decoder", ["bert", "gpt2"])
def test_encoder_decoder_model_rows_without_source(bpe, decoder):
    """Rule 5 on an EncoderDecoderModel: with no source kept, the decoder gets cross-attention outputs of zero
    weighted values. Oracle: a copy whose cross-attention value projections are zero, run on the whole input.
    These rows (every greedy rationale starts with them) used to be refused."""
    model = _encoder_decoder(bpe, decoder)
    w = se.load_model(model, bpe)
    ex = w.encode("The quick brown fox jumps.", "The dog sat")
    s = ex.n_source
    keep = torch.ones(1, ex.length, dtype=torch.bool)
    keep[0, :s] = False
    with torch.no_grad():
        got = w.score(ex, keep)[0]
    zeroed = copy.deepcopy(model)
    for name, mod in zeroed.named_modules():
        if name.endswith("crossattention.self.value"):
            mod.weight.data.zero_()
            mod.bias.data.zero_()
        if name.endswith("crossattention.c_attn"):  # GPT-2's cross-attention values: its c_attn (Conv1D, [D, 2D])
            mod.weight.data[:, 32:] = 0
            mod.bias.data[32:] = 0
    with torch.no_grad():
        logits = zeroed(input_ids=ex.input_ids[None, :s], decoder_input_ids=ex.input_ids[None, s:-1]).logits[0]
    expected = torch.log_softmax(logits, -1).gather(1, ex.target_ids.view(-1, 1)).squeeze(1)
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-4, atol=1e-5)
    assert se.explain_example(w, ex, "greedy").rationale is not None


def test_encoder_decoder_model_limits_come_from_its_sub_configs(bpe):
    """An EncoderDecoderModel's position limits live in its encoder/decoder configs: a too-long source is an
    InputError (truncate=True cuts it) rather than the module's size-mismatch RuntimeError."""
    from seqexplain.errors import InputError

    w = se.load_model(_encoder_decoder(bpe, "bert"), bpe)
    assert w.max_positions() == 64
    long = " ".join(["The quick brown fox jumps."] * 20)
    with pytest.raises(InputError, match="at most 64 positions"):
        w.encode(long, "The dog")
    ex = w.encode(long, "The dog", truncate=True)
    assert ex.n_source == 64 and any("truncated" in m for m in ex.warnings)


def test_fsmt_rows_without_source_zero_their_own_rows(bpe):
    """FSMT's attention runs time-major ([T, B, D]); rule 5's zeroing took dim 0 for the batch, which crashed, or,
    with as many rows as decoder tokens, silently zeroed decoder positions instead of rows. Oracles: the module as
    it is (rows keeping every source token) and a copy whose cross-attention values are zero (rows keeping none)."""
    from transformers import FSMTConfig, FSMTForConditionalGeneration

    torch.manual_seed(0)
    model = FSMTForConditionalGeneration(FSMTConfig(
        langs=["en", "de"], src_vocab_size=len(bpe), tgt_vocab_size=len(bpe), d_model=32, encoder_layers=1,
        decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
        max_position_embeddings=64, pad_token_id=bpe.pad_token_id, eos_token_id=bpe.eos_token_id,
        decoder_start_token_id=bpe.eos_token_id)).eval()
    w = se.load_model(model, bpe)
    ex = w.encode("The quick brown fox jumps.", "The dog sat")
    s, n_dec = ex.n_source, ex.n_targets
    keep = torch.ones(n_dec, ex.length, dtype=torch.bool)  # as many rows as decoder positions
    keep[::2, :s] = False
    with torch.no_grad():
        got = w.score(ex, keep)
    zeroed = copy.deepcopy(model)
    for name, mod in zeroed.named_modules():
        if name.endswith("encoder_attn.v_proj"):
            mod.weight.data.zero_()
            mod.bias.data.zero_()
    for b in range(n_dec):
        runner = zeroed if b % 2 == 0 else model
        with torch.no_grad():
            logits = runner(input_ids=ex.input_ids[None, :s], decoder_input_ids=ex.input_ids[None, s:-1]).logits[0]
        expected = torch.log_softmax(logits, -1).gather(1, ex.target_ids.view(-1, 1)).squeeze(1)
        np.testing.assert_allclose(got[b].numpy(), expected.numpy(), rtol=1e-4, atol=1e-5, err_msg=f"row {b}")
