"""Audit of the training loops against independent references: best-checkpoint choice with ties and NaN validation
losses, refused edge configurations (a clear InputError, never a silent no-op or a traceback), loss formulas and
learning-rate schedules computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from seqexplain.errors import InputError
from seqexplain.models.attention_rnn import AttentionRNNConfig
from seqexplain.models.attention_rnn_adapter import VectorDocument
from seqexplain.training import attention_rnn as ar

D = 3


def _docs(n: int, seed: int) -> list[VectorDocument]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        k = int(rng.integers(2, 5))
        x = torch.tensor(rng.normal(size=(k, D)), dtype=torch.float32)
        out.append(VectorDocument([f"w{j}" for j in range(k)], x, None, int(float(x[:, 0].sum()) > 0)))
    return out


CFG = AttentionRNNConfig(input_dim=D, hidden=[4], decoder="avg", n_event_types=0, dropout=0.0)


def test_nan_validation_loss_never_blocks_a_later_finite_best(tmp_path, monkeypatch):
    """A NaN validation loss at epoch 1 must not stay the best: every later finite loss is compared with NaN and
    ``finite < nan`` is False, so the best checkpoint was frozen at the diverged epoch."""
    real = ar.evaluate
    calls = {"n": 0}

    def first_nan(model, docs, batch_size=256):
        calls["n"] += 1
        got = real(model, docs, batch_size)
        return {**got, "loss": float("nan")} if calls["n"] == 1 else got

    monkeypatch.setattr(ar, "evaluate", first_nan)
    state = ar.train(CFG, _docs(12, 0), _docs(6, 1), tmp_path, ar.TrainConfig(epochs=3, batch_size=4, lr=0.05),
                     tensorboard=False)
    finite = [h for h in state["history"] if math.isfinite(h["val_loss"])]
    assert len(finite) == 2
    assert state["best"] == min(finite, key=lambda h: h["val_loss"])


def test_best_epoch_rule():
    """Reference rule: the lowest finite loss wins, the earlier epoch on a tie, a NaN only while nothing else is."""
    nan = float("nan")
    assert ar.improves(1.0, None) and ar.improves(nan, None)
    assert ar.improves(1.0, nan) and not ar.improves(nan, 1.0) and not ar.improves(nan, nan)
    assert not ar.improves(1.0, 1.0) and ar.improves(0.5, 1.0) and not ar.improves(2.0, 1.0)


@pytest.mark.parametrize("bad", [{"batch_size": 0}, {"batch_size": -2}, {"epochs": 0}, {"epochs": -1}, {"lr": 0.0},
                                 {"lr": -0.1}, {"clip_value": 0.0}, {"optimizer": "sgd"}])
def test_attention_rnn_refuses_edge_configs(bad):
    """batch_size 0 used to train silently on ONE batch of every document per epoch (the chunk never reached 0),
    epochs 0 / lr 0 were silent no-ops that still wrote a 'trained' state."""
    with pytest.raises(InputError):
        ar.TrainConfig(**bad)  # type: ignore[arg-type]


def test_attention_rnn_batch_larger_than_data_is_one_batch(tmp_path):
    """Documented: the last partial batch is kept, so a batch larger than the data set is one batch per epoch."""
    docs = _docs(5, 3)
    assert [len(b) for b in ar.batches(docs, 8, torch.Generator().manual_seed(0))] == [5]
    seen = [d for b in ar.batches(docs, 2, torch.Generator().manual_seed(1)) for d in b]
    assert sorted(id(d) for d in seen) == sorted(id(d) for d in docs)  # every example once per epoch


# ------------------------------------------------------------------------------------------- recurrent LM (lm.py)
def _rnn_lm(seed: int = 0):
    from seqexplain.models.rnn import RNNLanguageModel, RNNLMConfig

    torch.manual_seed(seed)
    return RNNLanguageModel(RNNLMConfig(vocab_size=7, cell="lstm", embedding_size=4, hidden_size=5, num_layers=1,
                                        init_scale=0.4))


def test_lm_step_is_sgd_on_the_time_summed_batch_mean_loss():
    """One segment = one update: ``p − lr · clip(∇ Σ_t mean_b CE)``, the TF tutorial's scale (hand loop, torch's
    clip_grad_norm_)."""
    from seqexplain.training.lm import TrainConfig, train_lm

    ids = torch.tensor([1, 2, 3, 4, 5, 6, 0, 1, 2, 3, 4, 5])  # batch 2 → [2, 6]: one segment of 5 steps
    model, ref = _rnn_lm(), _rnn_lm()
    ref.train()
    x = ids.view(2, 6)
    logits = ref(input_ids=x[:, :5], state=ref.initial_state(2, torch.device("cpu"))).logits
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 7), x[:, 1:].reshape(-1), reduction="sum") / 2
    loss.backward()
    torch.nn.utils.clip_grad_norm_(list(ref.parameters()), 0.05)
    with torch.no_grad():
        expected = [p - 0.7 * p.grad for p in ref.parameters()]
    hist = train_lm(model, ids, None, TrainConfig(batch_size=2, num_steps=5, epochs=1, lr=0.7, max_grad_norm=0.05),
                    progress=False).history
    for p, e in zip(model.parameters(), expected, strict=True):
        torch.testing.assert_close(p.detach(), e, rtol=1e-5, atol=1e-6)
    assert hist[0]["train_ppl"] == pytest.approx(math.exp(loss.item() / 5), rel=1e-5)


@pytest.mark.parametrize("bad", [{"epochs": 0}, {"num_steps": 0}, {"batch_size": 0}, {"lr": 0.0},
                                 {"lr_decay": 0.0}, {"max_grad_norm": -1.0}, {"max_epoch": -1},
                                 {"eval_batch_size": 0}, {"max_tokens_per_epoch": 0}])
def test_lm_refuses_edge_configs(bad):
    """num_steps 0 was a bare ValueError from range(); epochs 0 and lr 0 silent no-ops; max_tokens_per_epoch 0
    silently trained on one token per row."""
    from seqexplain.training.lm import TrainConfig

    with pytest.raises(InputError):
        TrainConfig(**bad)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ causal-LM data and word dropout
def test_step_batches_visit_every_row_once_per_epoch_dropping_the_short_tail():
    from seqexplain.training.causal_lm_data import StepBatches

    batches = StepBatches(11, 3, seed=4)
    assert batches.per_epoch == 3
    for epoch in range(3):
        rows = torch.cat([batches(epoch * 3 + i) for i in range(3)]).tolist()
        assert len(rows) == len(set(rows)) == 9 and set(rows) <= set(range(11))
    one = StepBatches(1, 1, seed=0)  # one example: every step is that example
    assert [one(s).tolist() for s in range(3)] == [[0], [0], [0]]


@pytest.mark.parametrize("bad", [0, -2])
def test_step_batches_refuse_a_batch_size_below_one(bad):
    """batch_size 0 was a ZeroDivisionError traceback; a negative one gave empty batches silently."""
    from seqexplain.training.causal_lm_data import StepBatches

    with pytest.raises(InputError):
        StepBatches(5, bad, seed=0)


def test_uniform_length_count_is_uniform_per_row_of_a_padded_batch():
    """Rows of different lengths in one batch: each row's kept count is uniform on 0..its own length, padding is never
    kept (chi-square, seeded)."""
    from scipy import stats

    from seqexplain.training.word_dropout import uniform_length_keep

    valid = torch.zeros(2, 6, dtype=torch.bool)
    valid[0, :2] = True
    valid[1, :] = True
    keep = uniform_length_keep(valid.repeat(15000, 1), torch.Generator().manual_seed(7)).view(15000, 2, 6)
    assert not keep[:, 0, 2:].any()
    for row, n in ((0, 2), (1, 6)):
        counts = torch.bincount(keep[:, row].sum(1), minlength=n + 1)
        assert counts.numel() == n + 1
        assert stats.chisquare(counts.double().numpy()).pvalue > 0.001


# --------------------------------------------------------------------------------- translation batches and loss
def _pairs():
    from seqexplain.training.translation_batches import EncodedPair

    rng = np.random.default_rng(0)
    return [EncodedPair([int(t) for t in rng.integers(4, 12, size=int(rng.integers(1, 6)))] + [2],
                        [int(t) for t in rng.integers(4, 12, size=int(rng.integers(1, 6)))]) for _ in range(23)]


def test_translation_batches_hold_every_pair_once_within_the_token_budget():
    from seqexplain.training.translation_batches import make_batches

    pairs = _pairs()
    for budget in (1, 20, 40, 10_000):
        batches = make_batches(pairs, budget, seed=3)
        flat = sorted(i for b in batches for i in b)
        assert flat == list(range(len(pairs)))
        for b in batches:  # padded source + decoder tokens; a single over-long pair goes alone
            padded = len(b) * (max(len(pairs[i].src) for i in b) + max(len(pairs[i].tgt) + 1 for i in b))
            assert padded <= budget or len(b) == 1


def test_translation_loss_is_the_token_mean_smoothed_ce_of_each_pair_alone():
    """Reference: each pair run alone (no padding), ``(1 − ε)·nll + ε·mean_v(−log p_v)`` per target token, averaged
    over all target tokens of the batch."""
    from seqexplain.models.seq2seq import Seq2SeqTransformer
    from seqexplain.models.seq2seq_config import Seq2SeqConfig
    from seqexplain.training.translation_batches import collate
    from seqexplain.training.translation_eval import batch_loss

    torch.manual_seed(0)
    model = Seq2SeqTransformer(Seq2SeqConfig(vocab_size=12, d_model=8, n_heads=2, ffn_dim=16, encoder_layers=1,
                                             decoder_layers=1, max_position_embeddings=16, dropout=0.0)).eval()
    ids = {"pad": 0, "bos": 1, "eos": 2, "unk": 3}
    pairs, idx, eps = _pairs(), [0, 3, 5, 8], 0.1
    b = collate(pairs, idx, ids)
    with torch.no_grad():
        loss, n = batch_loss(model, b, b["src_valid"], b["tgt_valid"], eps)
        per_token = []
        for i in idx:
            one = collate(pairs, [i], ids)
            logp = torch.log_softmax(model(input_ids=one["input_ids"], decoder_input_ids=one["decoder_input_ids"])
                                     .logits[0].double(), -1)
            for t, y in enumerate(one["labels"][0].tolist()):
                per_token.append((1 - eps) * -logp[t, y] - eps * logp[t].mean())
    assert n == len(per_token) == sum(len(pairs[i].tgt) + 1 for i in idx)
    assert float(loss) == pytest.approx(float(sum(per_token) / n), rel=1e-5)


@pytest.mark.parametrize("bad", [{"lr": 0.0}, {"label_smoothing": 1.0}, {"label_smoothing": -0.1},
                                 {"max_grad_norm": 0.0}, {"warmup_steps": -1}, {"max_len": 0},
                                 {"max_minutes": -1.0}, {"dropout": 1.0}])
def test_translation_config_refuses_edge_values(bad):
    """lr 0 trained nothing for every epoch; label smoothing 1 removes the labels from the loss; a negative warm-up
    made the first steps' rate negative; max_len 0 left out every pair only after the tokenizer was trained."""
    from seqexplain.training.translation import TranslationTrainConfig

    with pytest.raises(InputError):
        TranslationTrainConfig(**bad)  # type: ignore[arg-type]


def test_causal_lm_loss_and_perplexity_exclude_padding():
    """Per-token mean over the predicted, non-padding tokens of right-padded rows = each row run alone (hand loop)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from seqexplain.training.causal_lm_data import TokenData
    from seqexplain.training.causal_lm_loss import evaluate_lm, lm_logits, lm_loss

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=11, n_positions=16, n_embd=8, n_layer=1, n_head=2)).eval()
    rows = [[1, 4, 5, 6, 2], [1, 7, 2], [1, 3]]
    data = TokenData.from_lists(rows, pad_token_id=0)
    nll, count = 0.0, 0
    with torch.no_grad():
        for r in rows:
            logp = torch.log_softmax(model(input_ids=torch.tensor([r])).logits[0].double(), -1)
            nll -= sum(float(logp[t, r[t + 1]]) for t in range(len(r) - 1))
            count += len(r) - 1
        got = lm_loss(lm_logits(model, data.input_ids, data.valid), data.input_ids, data.valid)
    assert float(got) == pytest.approx(nll / count, rel=1e-5)
    ev = evaluate_lm(model, data, batch_size=2)
    assert ev["tokens"] == count and ev["ppl"] == pytest.approx(math.exp(nll / count), rel=1e-5)


def test_losses_over_no_tokens_are_nan_not_a_perfect_zero():
    """With nothing to score (every validation pair too long, rows of one token), the loss was 0.0 and the
    perplexity 1.0, a perfect score; it is NaN."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from seqexplain.models.seq2seq import Seq2SeqTransformer
    from seqexplain.models.seq2seq_config import Seq2SeqConfig
    from seqexplain.training.causal_lm_data import TokenData
    from seqexplain.training.causal_lm_loss import evaluate_lm
    from seqexplain.training.translation_eval import evaluate_loss

    torch.manual_seed(0)
    s2s = Seq2SeqTransformer(Seq2SeqConfig(vocab_size=12, d_model=8, n_heads=2, ffn_dim=16, encoder_layers=1,
                                           decoder_layers=1, max_position_embeddings=16))
    assert math.isnan(evaluate_loss(s2s, [], {"pad": 0, "bos": 1, "eos": 2, "unk": 3}))
    lm = GPT2LMHeadModel(GPT2Config(vocab_size=11, n_positions=16, n_embd=8, n_layer=1, n_head=2))
    ev = evaluate_lm(lm, TokenData.from_lists([[4], [5]]))
    assert ev["tokens"] == 0 and math.isnan(ev["loss"]) and math.isnan(ev["ppl"])


def test_translation_schedules_against_transformers_and_the_formula():
    """linear: transformers' linear schedule after the warm-up ((step + 1) / W during it, where transformers has
    step / W); inverse_sqrt: sqrt(W / (step + 1)) after it, fairseq's lr·sqrt(W)/sqrt(updates)."""
    from oracles import transformers_rates

    from seqexplain.training.translation import TranslationTrainConfig, _lr_factor

    total, warm = 20, 5
    hf = transformers_rates("linear", warm, total)
    lin = TranslationTrainConfig(warmup_steps=warm)
    got = [_lr_factor(lin, s, total) for s in range(total)]
    assert got[warm:] == pytest.approx(hf[warm:], rel=1e-12)
    assert got[:warm] == pytest.approx([(s + 1) / warm for s in range(warm)])
    inv = TranslationTrainConfig(warmup_steps=warm, schedule="inverse_sqrt")
    assert [_lr_factor(inv, s, total) for s in range(warm, total)] == pytest.approx(
        [math.sqrt(warm) / math.sqrt(s + 1) for s in range(warm, total)])


def test_attention_rnn_same_seed_same_weights_other_seed_other_weights(tmp_path):
    from seqexplain.models.attention_rnn import load_attention_rnn

    tr, va = _docs(10, 5), _docs(4, 6)

    def run(seed: int, name: str) -> list[torch.Tensor]:
        cfg = AttentionRNNConfig(input_dim=D, hidden=[4], decoder="avg", n_event_types=0, dropout=0.3)
        ar.train(cfg, tr, va, tmp_path / name, ar.TrainConfig(epochs=2, batch_size=3, lr=0.05, seed=seed),
                 tensorboard=False)
        return list(load_attention_rnn(tmp_path / name / "last.safetensors").state_dict().values())

    a, b, c = run(1, "a"), run(1, "b"), run(2, "c")
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(a, c, strict=True))


@pytest.mark.parametrize("bad", [{"max_train_examples": -5}, {"max_train_examples": 0}, {"valid_bleu_examples": -1},
                                 {"test_bleu_examples": -3}])
def test_translation_example_counts_are_not_negative_slices(bad):
    """A negative count was a Python slice from the end: max_train_examples=-5 trained on all but the last 5 pairs,
    test_bleu_examples=-3 scored BLEU on all but the last 3 sentences, silently."""
    from seqexplain.training.translation import TranslationTrainConfig

    with pytest.raises(InputError):
        TranslationTrainConfig(**bad)  # type: ignore[arg-type]


def test_parallel_corpus_subset_refuses_a_negative_count():
    from seqexplain.data.multi30k import ParallelCorpus

    corpus = ParallelCorpus(["a", "b", "c"], ["x", "y", "z"], "de", "en", "train")
    assert len(corpus.subset(2)) == 2 and len(corpus.subset(None)) == 3 and len(corpus.subset(0)) == 0
    with pytest.raises(InputError):
        corpus.subset(-1)
