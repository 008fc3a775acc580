"""The model interface (contract 1) against direct Hugging Face forwards."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import seqexplain as se
from seqexplain.models.hf_module import detect_kind, eager_attention
from seqexplain.models.keep import reading_positions


@pytest.mark.parametrize("name,kind", [("gpt2", "causal"), ("llama", "causal"), ("bart", "seq2seq"),
                                       ("t5", "seq2seq"), ("bert", "classifier"), ("gpt2_classifier", "classifier")])
def test_kind_detection(request, name, kind):
    model, tok = request.getfixturevalue(name)
    assert detect_kind(model) == kind
    assert se.load_model(model, tok).kind == kind


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_causal_score_equals_direct_forward(request, name):
    model, tok = request.getfixturevalue(name)
    w = se.load_model(model, tok)
    ex = w.encode("The cat sat on the mat.", " The dog")
    with torch.no_grad():
        logp = torch.log_softmax(model(ex.input_ids[None]).logits[0], -1)
        direct = [logp[p - 1, t].item() for p, t in zip(ex.target_positions, ex.target_ids.tolist(), strict=True)]
        np.testing.assert_allclose(w.score(ex)[0].numpy(), direct, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(w.score(ex, embeds=w.embed(ex))[0].numpy(), direct, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_causal_keep_mask_is_attention_mask_with_original_positions(request, name):
    """Dropping j = attention_mask 0 at j, position ids unchanged, read at the last kept position."""
    model, tok = request.getfixturevalue(name)
    w = se.load_model(model, tok)
    ex = w.encode("The cat sat on the mat.", " The dog")
    keep = torch.ones(1, ex.length, dtype=torch.bool)
    drop = [1, 3, ex.target_positions[1] - 1]  # includes the reading position of target 1
    keep[0, drop] = False
    with torch.no_grad():
        out = model(input_ids=ex.input_ids[None], attention_mask=keep.long(),
                    position_ids=torch.arange(ex.length)[None]).logits[0]
        logp = torch.log_softmax(out, -1)
        expected = []
        for p, t in zip(ex.target_positions, ex.target_ids.tolist(), strict=True):
            r = max(k for k in range(p) if keep[0, k])
            expected.append(logp[r, t].item())
        np.testing.assert_allclose(w.score(ex, keep=keep)[0].numpy(), expected, rtol=1e-5, atol=1e-6)


def test_reading_positions():
    keep = torch.tensor([[1, 1, 0, 1, 0, 0], [0, 0, 0, 1, 1, 1]], dtype=torch.bool)
    r = reading_positions(keep, torch.tensor([3, 5, 6]), floor=0)
    assert r.tolist() == [[1, 3, 3], [2, 4, 5]]  # row 1 target at 3: nothing kept before -> p-1


@pytest.mark.parametrize("name", ["bart", "t5"])
def test_seq2seq_score_and_masks_equal_direct_forward(request, name):
    model, tok = request.getfixturevalue(name)
    w = se.load_model(model, tok)
    ex = w.encode("The quick brown fox jumps.", "The dog sat")
    s, n_t = ex.n_source, ex.n_targets
    ids = ex.input_ids[None]
    keep = torch.ones(1, ex.length, dtype=torch.bool)
    keep[0, [1, s + 2]] = False  # a source token and a decoder token
    with torch.no_grad():
        for k in (torch.ones_like(keep), keep):
            out = model(input_ids=ids[:, :s], attention_mask=k[:, :s].long(), decoder_input_ids=ids[:, s : s + n_t],
                        decoder_attention_mask=k[:, s : s + n_t].long()).logits[0]
            logp = torch.log_softmax(out, -1)
            expected = []
            for i, t in enumerate(ex.target_ids.tolist()):
                r = max(d for d in range(i + 1) if k[0, s + d]) if k[0, s : s + i + 1].any() else i
                expected.append(logp[r, t].item())
            np.testing.assert_allclose(w.score(ex, keep=k)[0].numpy(), expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(w.score(ex, embeds=w.embed(ex)).numpy(), w.score(ex).numpy(), rtol=1e-5,
                                   atol=1e-6)


def test_classifier_score(request):
    model, tok = request.getfixturevalue("bert")
    w = se.load_model(model, tok)
    ex = w.encode("The quick brown fox.", "neutral")
    assert ex.target_ids.tolist() == [1] and ex.target_tokens == ["neutral"]
    with torch.no_grad():
        enc = tok("The quick brown fox.", return_tensors="pt")
        direct = torch.log_softmax(model(**enc).logits[0], -1)[1].item()
        assert w.score(ex)[0, 0].item() == pytest.approx(direct, rel=1e-5)
        assert w.score(ex, embeds=w.embed(ex))[0, 0].item() == pytest.approx(direct, rel=1e-5)
    assert w.encode("The quick brown fox.", 2).target_tokens == ["positive"]
    predicted = w.encode("The quick brown fox.")
    assert predicted.target_ids.item() == int(model(**enc).logits[0].argmax())


def test_predicted_target_equals_hf_generate(request):
    model, tok = request.getfixturevalue("gpt2")
    w = se.load_model(model, tok)
    ex = w.encode("The cat sat on", max_new_tokens=5)
    prompt = tok("The cat sat on", return_tensors="pt")
    gen = model.generate(**prompt, max_new_tokens=5, do_sample=False, pad_token_id=tok.pad_token_id,
                         eos_token_id=None)
    expected = gen[0, prompt["input_ids"].shape[1] :].tolist()
    assert ex.target_ids.tolist() == expected[: ex.n_targets]
    assert ex.n_targets >= 1


def test_seq2seq_predicted_target(request):
    model, tok = request.getfixturevalue("bart")
    w = se.load_model(model, tok)
    ex = w.encode("The quick brown fox.", max_new_tokens=4)
    assert 1 <= ex.n_targets <= 4
    assert ex.tokens[ex.n_source] == tok.convert_ids_to_tokens(model.config.decoder_start_token_id)


def test_visibility_and_nan(request):
    model, tok = request.getfixturevalue("bart")
    w = se.load_model(model, tok)
    attr = se.explain(w, "The quick brown fox.", "The dog", method="occlusion")
    assert "nonfinite_cells" not in attr.meta
    n_s = attr.target_positions[0] - 1
    for i, p in enumerate(attr.target_positions):
        assert np.isfinite(attr.scores[i, :n_s]).all()
        assert np.isnan(attr.scores[i, p:]).all()


def test_eager_switch_restored_after_exception(request):
    model, tok = request.getfixturevalue("gpt2")
    assert model.config._attn_implementation == "sdpa"
    with pytest.raises(RuntimeError), eager_attention(model):
        assert model.config._attn_implementation == "eager"
        raise RuntimeError("boom")
    assert model.config._attn_implementation == "sdpa"


def test_attention_call_restores_model_on_exception(request, monkeypatch):
    model, tok = request.getfixturevalue("gpt2")
    w = se.load_model(model, tok)
    model.train()
    original = model.forward

    def failing(*args, **kwargs):
        assert model.config._attn_implementation == "eager" and not model.training
        raise RuntimeError("forward failed")

    monkeypatch.setattr(model, "forward", failing)
    ex = w.encode("The cat sat", " on")
    with pytest.raises(RuntimeError, match="forward failed"):
        se.explain_example(w, ex, "attention_last")
    monkeypatch.setattr(model, "forward", original)
    assert model.config._attn_implementation == "sdpa"
    assert model.training
    model.eval()


def test_gradient_methods_restore_requires_grad_on_exception(request, monkeypatch):
    from seqexplain.models.module_state import frozen_parameters

    model, tok = request.getfixturevalue("gpt2")
    flags = [p.requires_grad for p in model.parameters()]
    with pytest.raises(RuntimeError), frozen_parameters(model):
        assert not any(p.requires_grad for p in model.parameters())
        raise RuntimeError("boom")
    assert [p.requires_grad for p in model.parameters()] == flags
    w = se.load_model(model, tok)
    se.explain(w, "The cat sat", " on", method="integrated_gradients", steps=4)
    assert [p.requires_grad for p in model.parameters()] == flags


def test_eval_mode_restores_each_module_and_skips_models_already_in_eval(monkeypatch):
    from seqexplain.models.module_state import eval_mode

    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.5))
    model.train()
    with pytest.raises(RuntimeError), eval_mode(model):
        assert not any(m.training for m in model.modules())
        raise RuntimeError("boom")
    assert all(m.training for m in model.modules())

    model.eval()
    calls = []
    monkeypatch.setattr(torch.nn.Module, "train", lambda self, mode=True: calls.append(mode) or self)
    with eval_mode(model):
        assert not any(m.training for m in model.modules())
    assert calls == []  # nothing to switch: no walk over the modules
    model[1].training = True  # one module in training mode is enough to switch
    with eval_mode(model):
        assert calls == [False]
    monkeypatch.undo()
    with eval_mode(model):  # and the mixed state comes back as it was
        assert not any(m.training for m in model.modules())
    assert [m.training for m in model.modules()] == [False, False, True]
