"""Audit of the native adapters against brute force on the raw modules: attention views, precomputed vectors and
module state (train mode, requires_grad) around every call. Each test failed before its fix (see git log)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import seqexplain as se
from seqexplain.models.rnn import Vocab
from seqexplain.models.soft_attention_lstm import (
    NormalisingWordTokenizer,
    SoftAttentionBiLSTM,
    SoftAttentionLSTMAdapter,
    WordCharEmbedding,
    char_table,
)

torch.set_num_threads(1)
WORDS = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "log"]


@pytest.fixture(scope="module")
def vocab() -> Vocab:
    return Vocab.build(WORDS)


def _soft_lstm(vocab: Vocab) -> SoftAttentionLSTMAdapter:
    torch.manual_seed(0)
    table, index = char_table(vocab, 8)
    emb = WordCharEmbedding(len(vocab), 4, table, len(index), 3, 3)
    net = SoftAttentionBiLSTM(emb, hidden=4, word_hidden=4, dropout=0.5,
                              head={"evidence_size": 4, "final_hidden": 4, "dropout": 0.5}).double()
    return SoftAttentionLSTMAdapter(net, NormalisingWordTokenizer(vocab))


def test_pooling_attention_of_a_model_in_train_mode_is_the_eval_mode_alpha(vocab):
    """A pooling classifier with dropout left in train mode (e.g. right after training): attention methods read
    the eval-mode ``α`` of the raw module (not a dropout sample) and the module comes back in train mode."""
    ad = _soft_lstm(vocab)
    net = ad.model
    ex = ad.encode("the cat sat on a mat", 1)
    with torch.no_grad():
        net.eval()
        alpha = net(ex.input_ids.unsqueeze(0))[1][0].numpy()
    net.train()
    for _ in range(3):
        got = se.explain_example(ad, ex, "attention_last").scores[0]
        np.testing.assert_allclose(got, alpha, rtol=1e-12, atol=1e-12)
    assert net.training and all(m.training for m in net.modules())


@pytest.fixture(scope="module")
def bpe():
    from seqexplain.data.tokenizers import train_bpe_tokenizer

    return train_bpe_tokenizer(["ein mann faehrt rad", "a man rides a bike", "zwei hunde", "two dogs"] * 3,
                               vocab_size=60, min_frequency=1)


def _snell_translator(tok):
    from seqexplain.models.snell_translation import SnellTranslationAdapter, SnellTranslator, SnellTranslatorConfig

    torch.manual_seed(3)
    cfg = SnellTranslatorConfig(len(tok), 6, 4, 2, 0.0, False, tok.pad_token_id, tok.bos_token_id, tok.eos_token_id)
    return SnellTranslationAdapter(SnellTranslator(cfg).double().eval(), tok, "snell")


def test_snell_translator_attention_over_precomputed_vectors_equals_ids(bpe):
    """Precomputed vectors give every method what the token ids give (docs/methods.md), the attention methods of
    the Hugging Face adapters included; the Snell translator's attention view refused them with an InputError."""
    ad = _snell_translator(bpe)
    ex = ad.encode("ein mann faehrt", "a man")
    vex = ex.replace(input_ids=None, input_vectors=ad.embed(ex)[0].detach())
    s, m = ex.n_source, ex.n_targets
    ids = ex.input_ids.unsqueeze(0)
    with torch.no_grad():
        alpha = ad.model(input_ids=ids[:, :s], decoder_input_ids=ids[:, s : s + m],
                         output_attentions=True).cross_attentions[0][0, 0].numpy()
    for e in (ex, vex):
        got = se.explain_example(ad, e, "attention_last").scores
        np.testing.assert_allclose(got[:, :s], alpha, rtol=1e-12, atol=1e-12)
        dec = np.where(ex.visible()[:, s : s + m].numpy(), 0.0, np.nan)  # the decoder reads tokens, no attention
        np.testing.assert_array_equal(got[:, s : s + m], dec)


def test_attention_of_bfloat16_native_classifiers_is_the_module_alpha(vocab):
    """Attention views hand methods float64 maps (as the Hugging Face adapters' ``head_mean``); the pooling and
    attention-RNN adapters handed over the module's dtype, and a bfloat16 module crashed the attention methods
    (numpy has no bfloat16)."""
    from seqexplain.models.attention_rnn import AttentionRNN, AttentionRNNConfig
    from seqexplain.models.attention_rnn_adapter import AttentionRNNAdapter, VectorDocument

    pool = _soft_lstm(vocab)
    pool.model.to(torch.bfloat16).eval()
    ex = pool.encode("the cat sat on a mat", 1)
    with torch.no_grad():
        alpha = pool.model(ex.input_ids.unsqueeze(0))[1][0].double().numpy()
    np.testing.assert_array_equal(se.explain_example(pool, ex, "attention_last").scores[0], alpha)

    torch.manual_seed(0)
    cfg = AttentionRNNConfig(input_dim=4, hidden=[5, 3], decoder="hier", n_event_types=2)
    rnn = AttentionRNNAdapter(AttentionRNN(cfg).to(torch.bfloat16).eval(), ["a", "b"], ["x", "y"])
    doc = VectorDocument(["w1", "w2", "w3", "w4"], torch.randn(4, 4), [0, 1, 1, 0])
    ex = rnn.encode(doc, 1)
    with torch.no_grad():
        alpha = rnn.model(ex.input_vectors.unsqueeze(0), None, torch.tensor([[0, 1, 1, 0]]))[1]["alpha"]
    np.testing.assert_array_equal(se.explain_example(rnn, ex, "attention_all").scores[0], alpha[0].double().numpy())


def test_seq2seq_greedy_generate_restores_every_module_mode(bpe):
    """A model trained with part of it frozen in eval mode (here the encoder) comes back from greedy decoding with
    each module's own mode; ``self.train(was_training)`` had switched the frozen encoder to train mode (its
    dropout then active in the training steps that followed)."""
    from seqexplain.models.seq2seq import Seq2SeqTransformer
    from seqexplain.models.seq2seq_config import Seq2SeqConfig

    torch.manual_seed(0)
    cfg = Seq2SeqConfig(vocab_size=len(bpe), d_model=8, n_heads=2, ffn_dim=8, encoder_layers=1, decoder_layers=1,
                        max_position_embeddings=32, dropout=0.1, pad_token_id=bpe.pad_token_id,
                        bos_token_id=bpe.bos_token_id, eos_token_id=bpe.eos_token_id,
                        decoder_start_token_id=bpe.bos_token_id)
    model = Seq2SeqTransformer(cfg).train()
    model.encoder.eval()
    before = {name: m.training for name, m in model.named_modules()}
    model.greedy_generate([bpe("ein mann")["input_ids"]], max_new_tokens=3)
    assert {name: m.training for name, m in model.named_modules()} == before


def test_snell_beam_search_of_a_model_in_train_mode_is_deterministic(bpe):
    """Beam search decodes without dropout whatever the model's mode (as greedy_generate and the adapters do) and
    leaves the mode as it was; it ran in the caller's mode, so a model in train mode translated with dropout."""
    from seqexplain.models.snell_translation import SnellTranslator, SnellTranslatorConfig

    torch.manual_seed(0)
    cfg = SnellTranslatorConfig(len(bpe), 6, 4, 2, 0.5, False, bpe.pad_token_id, bpe.bos_token_id,
                                bpe.eos_token_id)
    net = SnellTranslator(cfg).double().eval()
    src = bpe("ein mann faehrt rad")["input_ids"]
    want = net.beam_search_ended(src, beam=3, max_len=8)
    net.train()
    for _ in range(5):
        assert net.beam_search_ended(src, beam=3, max_len=8) == want
    assert all(m.training for m in net.modules())


def test_word_adapters_refuse_a_tokenizer_larger_than_the_embedding_table(vocab):
    """A word tokenizer with more tokens than the model's embedding table (another model's vocabulary) is an
    InputError when the adapter is built; it was accepted and the first explanation of a text with a word beyond
    the table crashed with IndexError inside the module."""
    from seqexplain.errors import InputError
    from seqexplain.models.native_heads import AttentionPoolingLSTM, PoolingClassifierAdapter
    from seqexplain.models.native_tagger import BiLSTMTagger, TokenLabellerAdapter
    from seqexplain.models.rnn import WordTokenizer

    small = Vocab.build(WORDS[:3])
    builds = [lambda tok: PoolingClassifierAdapter(AttentionPoolingLSTM(len(small), 2, 4, 4, 4), tok, ["n", "p"]),
              lambda tok: TokenLabellerAdapter(BiLSTMTagger(len(small), 2, 4, 4), tok, ["o", "x"]),
              lambda tok: SoftAttentionLSTMAdapter(SoftAttentionBiLSTM(WordCharEmbedding(len(small), 4), 4, 4),
                                                   tok)]
    for build in builds:
        with pytest.raises(InputError, match="embedding table"):
            build(NormalisingWordTokenizer(vocab))
        ad = build(WordTokenizer(small, add_bos=False))
        assert np.isfinite(se.explain(ad, "the cat", ad.label_names()[0] if ad.kind == "classifier" else None,
                                      method="occlusion").scores).any()


@pytest.mark.parametrize("method", ["gradient_norm", "integrated_gradients", "occlusion", "greedy",
                                    "attention_last"])
def test_mode_and_requires_grad_restored_when_a_call_raises(vocab, method):
    """A native model in train mode with one frozen parameter: a method whose forward fails half-way leaves every
    module's mode and every parameter's requires_grad as they were (checked, correct before this audit)."""
    ad = _soft_lstm(vocab)
    net = ad.model.train()
    net.head.eval()  # a mixed state
    net.embedding.words.weight.requires_grad_(False)
    modes = {n: m.training for n, m in net.named_modules()}
    grads = {n: p.requires_grad for n, p in net.named_parameters()}
    ex = ad.encode("the cat sat on a mat", 1)
    calls = []

    def fail_later(*_):  # the first forward (the probe of the keep-mask or the full input) passes
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("boom")

    handle = net.lstm.register_forward_hook(fail_later)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            se.explain_example(ad, ex, method)
    finally:
        handle.remove()
    assert {n: m.training for n, m in net.named_modules()} == modes
    assert {n: p.requires_grad for n, p in net.named_parameters()} == grads


def _greedy(logp, candidates: list[int], start: list[int], label: int) -> list[int]:  # type: ignore[no-untyped-def]
    """Vafa et al.'s greedy loop, written out: add the candidate with the highest log p(label) (ties to the lowest
    position) until the label is the argmax or nothing is left."""
    s = list(start)
    while int(logp(s).argmax()) != label and len(s) < len(candidates):
        best = max((j for j in candidates if j not in s), key=lambda j: (float(logp(sorted([*s, j]))[label]), -j))
        s.append(best)
    return s


def test_snell_classifier_rationale_starts_with_its_special_tokens(vocab):
    """A classifier's rationale starts from its special tokens (docs/methods.md; the Hugging Face classifiers'
    [CLS] and [SEP]); the pooling adapters started from position 0 only, so the Snell classifier's <eos> had to be
    searched for and counted as a rationale member."""
    from seqexplain.models.snell_classifier import (
        BosEosTokenizer,
        SnellClassifier,
        SnellClassifierAdapter,
        SnellClassifierConfig,
    )

    torch.manual_seed(4)
    net = SnellClassifier(SnellClassifierConfig(vocab_size=len(vocab), emb_dim=6, hidden=6, attn_dim=6)).double()
    ad = SnellClassifierAdapter(net.eval(), BosEosTokenizer(vocab), ["neg", "pos"])
    text = "the cat sat on a mat and dog"
    ids = torch.tensor(BosEosTokenizer(vocab).encode_words(text.split()))
    n = len(ids)
    assert ad.start_positions(ad.encode(text, 0), 0) == [0, n - 1]

    def logp(s: list[int]) -> torch.Tensor:
        with torch.no_grad():
            return torch.log_softmax(net(ids[sorted(s)].unsqueeze(0))[0][0], -1)

    for label in (0, 1):
        got = se.explain(ad, text, label, method="greedy").rationale.positions[0]
        assert got == _greedy(logp, list(range(n)), [0, n - 1], label)


def test_snell_translator_gradients_equal_autograd_on_the_raw_module(bpe):
    """grad_x_input of every target equals autograd of log p(y_i) on the raw module over its source and decoder
    input embeddings; positions a target cannot see are NaN (checked, correct before this audit)."""
    ad = _snell_translator(bpe)
    net = ad.model
    ex = ad.encode("ein mann faehrt", "a man rides")
    s, m = ex.n_source, ex.n_targets
    x = net.embed_tokens.weight.detach()[ex.input_ids].clone().requires_grad_(True)
    logp = torch.log_softmax(net(inputs_embeds=x[:s].unsqueeze(0),
                                 decoder_inputs_embeds=x[s : s + m].unsqueeze(0)).logits[0], -1)
    got = se.explain_example(ad, ex, "grad_x_input").scores
    for i in range(m):
        (g,) = torch.autograd.grad(logp[i, ex.target_ids[i]], x, retain_graph=True)
        want = (g * x).sum(-1).detach().numpy()
        vis = ex.visible()[i].numpy()
        np.testing.assert_allclose(got[i][vis], want[vis], rtol=1e-7, atol=1e-9)
        assert np.isnan(got[i][~vis]).all()


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_rnn_lm_keep_rows_and_greedy_equal_deleting_words(vocab, cell):
    """Random keep-rows of every target (nothing kept before ``p_i``: only ``p_i − 1`` kept) equal the raw RNN run on
    the kept words alone, and greedy rationales equal the paper's loop over hand-deleted inputs (checked, correct
    before this audit)."""
    import random

    from seqexplain.models.rnn import RNNLanguageModel, RNNLMConfig, WordTokenizer

    torch.manual_seed(1)
    net = RNNLanguageModel(RNNLMConfig(vocab_size=len(vocab), cell=cell, embedding_size=5, hidden_size=6,
                                       num_layers=2, init_scale=0.5)).double().eval()
    ad = se.load_model(net, WordTokenizer(vocab))
    ex = ad.encode("the cat sat on", " a mat and")
    ids = ex.input_ids

    def logp(kept: list[int]) -> torch.Tensor:
        with torch.no_grad():
            return torch.log_softmax(net(input_ids=ids[sorted(kept)].unsqueeze(0)).logits[0, -1], -1)

    rng = random.Random(0)
    keep = torch.tensor([[rng.random() < 0.5 for _ in range(ex.length)] for _ in range(12)])
    with torch.no_grad():
        got = torch.log_softmax(ad.logits(ex, keep), -1)
    for r in range(keep.shape[0]):
        for i, p in enumerate(ex.target_positions):
            kept = [j for j in range(p) if keep[r, j]] or [p - 1]
            torch.testing.assert_close(got[r, i], logp(kept), rtol=1e-12, atol=1e-12)
    greedy = se.explain_example(ad, ex, "greedy").rationale.positions
    for i, p in enumerate(ex.target_positions):
        assert greedy[i] == _greedy(logp, list(range(p)), [p - 1], int(ex.target_ids[i]))
