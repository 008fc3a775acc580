"""Every core method against an independent oracle.

* gradient methods: captum's ``Saliency`` / ``InputXGradient`` / ``IntegratedGradients`` over the input
  embeddings, one target at a time, same baseline / steps / rule — equal to 1e-4 relative;
* occlusion: a brute-force loop of one ``score`` call per dropped position (and per replaced position);
* attention methods: a direct computation from ``output_attentions`` of the model run with eager attention.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import seqexplain as se
from seqexplain.models.hf_module import eager_attention

FIXTURES = ["gpt2", "llama", "bart", "bert"]
INPUTS = {
    "gpt2": ("The cat sat on the mat.", " The dog sat"),
    "llama": ("Paris is the capital of", " France and"),
    "bart": ("The quick brown fox jumps.", "The dog sat on"),
    "bert": ("The quick brown fox jumps over the lazy dog.", "positive"),
}


def _setup(request, name):
    model, tok = request.getfixturevalue(name)
    wrapped = se.load_model(model, tok)
    text, target = INPUTS[name]
    return wrapped, wrapped.encode(text, target)


def _assert_close(ours: np.ndarray, oracle: np.ndarray, visible: np.ndarray) -> None:
    ours, oracle = ours[visible], oracle[visible]
    scale = max(1e-12, float(np.abs(oracle).max()))
    np.testing.assert_allclose(ours, oracle, rtol=1e-4, atol=1e-4 * scale)


def _captum_rows(wrapped, ex, algo_cls, reduce, **attr_kwargs) -> np.ndarray:
    e = wrapped.embed(ex).detach()
    rows = []
    for i in range(ex.n_targets):
        def forward(x, i=i):
            return wrapped.score(ex, embeds=x)[:, i]

        a = algo_cls(forward).attribute(e, **attr_kwargs)
        rows.append(reduce(a[0]).detach().double().numpy())
    return np.stack(rows)


@pytest.mark.parametrize("name", FIXTURES)
def test_gradient_norm_equals_captum_saliency(request, name):
    from captum.attr import Saliency

    wrapped, ex = _setup(request, name)
    ours = se.explain_example(wrapped, ex, "gradient_norm").scores
    oracle = _captum_rows(wrapped, ex, Saliency, lambda a: a.norm(dim=-1), abs=False)
    _assert_close(ours, oracle, ex.visible().numpy())


@pytest.mark.parametrize("name", FIXTURES)
def test_grad_x_input_equals_captum(request, name):
    from captum.attr import InputXGradient

    wrapped, ex = _setup(request, name)
    ours = se.explain_example(wrapped, ex, "grad_x_input").scores
    oracle = _captum_rows(wrapped, ex, InputXGradient, lambda a: a.sum(-1))
    _assert_close(ours, oracle, ex.visible().numpy())


@pytest.mark.parametrize("name", FIXTURES)
@pytest.mark.parametrize("rule,steps", [("gausslegendre", 50), ("riemann_trapezoid", 20), ("riemann_left", 16)])
def test_integrated_gradients_equals_captum(request, name, rule, steps):
    from captum.attr import IntegratedGradients

    wrapped, ex = _setup(request, name)
    # a small budget forces several chunks, exercising the batching across steps × targets
    ours = se.explain_example(wrapped, ex, "integrated_gradients", steps=steps, rule=rule, token_budget=300).scores
    e = wrapped.embed(ex).detach()
    oracle = _captum_rows(wrapped, ex, IntegratedGradients, lambda a: a.sum(-1), baselines=torch.zeros_like(e),
                          n_steps=steps, method=rule)
    if rule == "riemann_trapezoid":
        # captum weights the trapezoid with 1/n (ends 1/2n), which sums to (n-1)/n; the trapezoid rule
        # seqexplain uses has 1/(n-1) (ends 1/2(n-1)), so the two differ by exactly n/(n-1).
        oracle = oracle * steps / (steps - 1)
    _assert_close(ours, oracle, ex.visible().numpy())


def test_integrated_gradients_token_baseline_equals_captum(request):
    from captum.attr import IntegratedGradients

    wrapped, ex = _setup(request, "gpt2")
    ours = se.explain_example(wrapped, ex, "integrated_gradients", steps=20, baseline="pad").scores
    pad = wrapped.tokenizer.pad_token_id
    base = wrapped.model.get_input_embeddings()(torch.full_like(ex.input_ids, pad)).unsqueeze(0).detach()
    oracle = _captum_rows(wrapped, ex, IntegratedGradients, lambda a: a.sum(-1), baselines=base, n_steps=20)
    _assert_close(ours, oracle, ex.visible().numpy())


def test_integrated_gradients_completeness(request):
    """Σ_j a_ij ≈ f_i(x) − f_i(baseline): the recorded convergence delta is small with 50 steps."""
    wrapped, ex = _setup(request, "gpt2")
    attr = se.explain_example(wrapped, ex, "integrated_gradients")
    assert np.abs(attr.meta["convergence_delta"]).max() < 1e-3


@pytest.mark.parametrize("name", FIXTURES)
@pytest.mark.parametrize("replace_with", [None, "unk"])
def test_occlusion_equals_brute_force(request, name, replace_with):
    wrapped, ex = _setup(request, name)
    ours = se.explain_example(wrapped, ex, "occlusion", replace_with=replace_with, token_budget=64).scores
    vis = ex.visible().numpy()
    oracle = np.full_like(ours, np.nan)
    with torch.no_grad():
        base = wrapped.score(ex)[0]
        unk = wrapped.tokenizer.unk_token_id
        for j in range(ex.length):
            if replace_with is None:
                keep = torch.ones(1, ex.length, dtype=torch.bool)
                keep[0, j] = False
                out = wrapped.score(ex, keep=keep)[0]
            else:
                ids = ex.input_ids.clone()
                ids[j] = unk
                out = wrapped.score(type(ex)(**{**ex.__dict__, "input_ids": ids}))[0]
            oracle[:, j] = (base - out).double().numpy()
    _assert_close(ours, oracle, vis)


def _direct_attention_rows(model, ex, kind, mode):
    """Attention rows computed straight from the model's ``output_attentions`` (eager), with numpy."""
    ids = ex.input_ids.unsqueeze(0)
    with torch.no_grad(), eager_attention(model):
        if kind == "seq2seq":
            s, n_t = ex.n_source, ex.n_targets
            out = model(input_ids=ids[:, :s], decoder_input_ids=ids[:, s : s + n_t], output_attentions=True)
            enc = [a[0].mean(0).double().numpy() for a in out.encoder_attentions]
            dec = [a[0].mean(0).double().numpy() for a in out.decoder_attentions]
            cross = [a[0].mean(0).double().numpy() for a in out.cross_attentions]
        else:
            out = model(input_ids=ids, output_attentions=True)
            layers = [a[0].mean(0).double().numpy() for a in out.attentions]

    def roll(mats):
        r = np.eye(mats[0].shape[0])
        for a in mats:
            r = (0.5 * a + 0.5 * np.eye(a.shape[0])) @ r
        return r

    rows = np.full((ex.n_targets, ex.length), np.nan)
    if kind == "seq2seq":
        src = {"last": cross[-1], "all": np.mean(cross, 0), "rollout": cross[-1] @ roll(enc)}[mode]
        dmat = {"last": dec[-1], "all": np.mean(dec, 0), "rollout": roll(dec)}[mode]
        for i in range(ex.n_targets):
            rows[i, :s] = src[i]
            rows[i, s : s + dmat.shape[1]] = dmat[i]
        return rows
    m = {"last": layers[-1], "all": np.mean(layers, 0), "rollout": roll(layers)}[mode]
    if kind == "classifier":
        rows[0] = m[0]
        return rows
    for i, p in enumerate(ex.target_positions):
        rows[i, : m.shape[1]] = m[p - 1]
    return rows


@pytest.mark.parametrize("name", FIXTURES)
@pytest.mark.parametrize("mode", ["last", "all", "rollout"])
def test_attention_methods_equal_direct_computation(request, name, mode):
    wrapped, ex = _setup(request, name)
    ours = se.explain_example(wrapped, ex, f"attention_{mode}").scores
    oracle = _direct_attention_rows(wrapped.model, ex, ex.kind, mode)
    _assert_close(ours, oracle, ex.visible().numpy())


def test_decoder_style_classifier_reads_last_token(request):
    model, tok = request.getfixturevalue("gpt2_classifier")
    wrapped = se.load_model(model, tok)
    assert wrapped.head_position == "last"
    ex = wrapped.encode("The cat sat on the mat.")
    ours = se.explain_example(wrapped, ex, "attention_last").scores[0]
    with torch.no_grad(), eager_attention(model):
        att = model(input_ids=ex.input_ids[None], output_attentions=True).attentions[-1][0].mean(0)
    np.testing.assert_allclose(ours, att[-1].double().numpy(), rtol=1e-5, atol=1e-7)


def test_all_methods_registered():
    names = {m.name for m in se.available_methods()}
    assert {"attention_last", "attention_all", "attention_rollout", "gradient_norm", "grad_x_input",
            "integrated_gradients", "occlusion"} <= names


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_occlusion_with_shared_prefix_cache_equals_brute_force(request, name, prefix_sharing_calls):
    """Chunks of consecutive dropped positions share a kept prefix, run once with a key/value cache."""
    model, tok = request.getfixturevalue(name)
    wrapped = se.load_model(model, tok)
    ex = wrapped.encode("The cat sat on the mat. " * 4, " The dog sat")
    ours = se.explain_example(wrapped, ex, "occlusion", token_budget=8 * ex.length).scores
    calls = prefix_sharing_calls
    assert sum(calls) >= 3
    with torch.no_grad():
        base = wrapped.score(ex)[0]
        oracle = np.full_like(ours, np.nan)
        for j in range(ex.length):
            keep = torch.ones(1, ex.length, dtype=torch.bool)
            keep[0, j] = False
            oracle[:, j] = (base - wrapped.score(ex, keep=keep)[0]).double().numpy()
    _assert_close(ours, oracle, ex.visible().numpy())


@pytest.mark.parametrize("method", ["gradient_norm", "grad_x_input", "integrated_gradients", "occlusion",
                                    "attention_last"])
def test_target_logprobs_equal_a_fresh_score(request, method):
    """Methods that compute log p(target | all) hand it back instead of explain() running another forward."""
    wrapped, ex = _setup(request, "gpt2")
    attr = se.explain_example(wrapped, ex, method, **({"steps": 8} if method == "integrated_gradients" else {}))
    with torch.no_grad():
        np.testing.assert_allclose(attr.target_logprobs, wrapped.score(ex)[0].double().numpy(), rtol=1e-5, atol=1e-6)


class _UnbatchableIdentity(torch.autograd.Function):
    """``y = x`` whose backward reads a value (``.item()``), which has no batching rule: a stand-in for any
    operation whose backward cannot run under ``is_grads_batched``."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        assert float(g.abs().sum().item()) >= 0.0
        return g


@pytest.mark.parametrize("method", ["gradient_norm", "integrated_gradients"])
def test_gradients_when_the_backward_cannot_be_batched(gpt2, method, monkeypatch):
    """The batched backward fails part-way on such a model; the methods must still give captum's values (one
    backward per target), not a 'backward through the graph a second time' error."""
    from captum.attr import IntegratedGradients, Saliency

    module, tok = gpt2
    module = copy.deepcopy(module)
    module.transformer.h[0].register_forward_pre_hook(
        lambda _, args: (_UnbatchableIdentity.apply(args[0]), *args[1:]))
    wrapped = se.load_model(module, tok)
    ex = wrapped.encode(*INPUTS["gpt2"])
    assert ex.n_targets > 1  # several targets: the batched backward is tried first
    if method == "gradient_norm":
        ours = se.explain_example(wrapped, ex, method).scores
        oracle = _captum_rows(wrapped, ex, Saliency, lambda a: a.norm(dim=-1), abs=False)
    else:
        ours = se.explain_example(wrapped, ex, method, steps=8, rule="riemann_middle").scores
        oracle = _captum_rows(wrapped, ex, IntegratedGradients, lambda a: a.sum(-1), n_steps=8,
                              method="riemann_middle", baselines=0.0)
    _assert_close(ours, oracle, ex.visible().numpy())
    # the module is remembered: a second call loops per target from the start, with the same values
    batched: list[int] = []
    real = torch.autograd.grad
    monkeypatch.setattr(torch.autograd, "grad", lambda *a, **k: batched.append(bool(k.get("is_grads_batched")))
                        or real(*a, **k))
    options = {} if method == "gradient_norm" else {"steps": 8, "rule": "riemann_middle"}
    again = se.explain_example(wrapped, ex, method, **options).scores
    assert batched and not any(batched)
    np.testing.assert_array_equal(again, ours)
