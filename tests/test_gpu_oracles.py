"""Every registered method on CUDA equals the same method on the CPU (float32, 1e-4 relative).

The CPU results are the reference: ``tests/test_methods_oracle.py`` checks them against captum, brute-force loops
and direct attention computations, so agreement here carries those oracles over to the GPU. Models are the tiny
GPT-2, Llama, BERT, BART, T5 and BERT token-classifier fixtures of ``conftest.py`` and the two native adapters of
``test_native_adapters.py`` (an attention-pooling LSTM classifier and a BiLSTM token labeller, float64); each test
moves a *copy* to the device (the fixtures are shared) and explains through ``seqexplain.explain``.

Marked ``gpu``; skipped where ``torch.cuda.is_available()`` is false, so ``make test`` passes on a CPU-only
machine. Run them with ``pytest -m gpu tests/test_gpu_oracles.py`` (``benchmarks/gpu_check.sh`` does).
``SEQEXPLAIN_TEST_DEVICE=cpu`` runs the same comparisons CPU against CPU, to check the tests themselves on a
machine without a GPU.
"""

from __future__ import annotations

import copy
import os

import numpy as np
import pytest
import torch
from test_native_adapters import clf, tagger, vocab  # noqa: F401  (module fixtures, used by name)

import seqexplain as se

DEVICE = os.environ.get("SEQEXPLAIN_TEST_DEVICE", "cuda")

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(DEVICE.startswith("cuda") and not torch.cuda.is_available(), reason="CUDA is not available"),
]

FIXTURES = ["gpt2", "llama", "bert", "bart", "t5", "bert_ner", "clf", "tagger"]
INPUTS = {
    "gpt2": ("The cat sat on the mat.", " The dog sat"),
    "llama": ("The cat sat on the mat.", " The dog sat"),
    "bert": ("The quick brown fox jumps over the lazy dog.", "positive"),
    "bart": ("The quick brown fox jumps.", "The dog sat on"),
    "t5": ("The quick brown fox jumps.", "The dog sat on"),
    "bert_ner": ("john smith sat on the mat", None),
    "clf": ("the film was not good but very fun", "pos"),
    "tagger": ("the film was not good but very fun", None),
}
#: the native adapters (module fixtures of test_native_adapters.py, imported below)
NATIVE = {"clf", "tagger"}
#: methods an adapter refuses with UnsupportedError (no attention maps, or one pooling attention: no rollout)
UNSUPPORTED = {("clf", "attention_rollout"), ("tagger", "attention_last"), ("tagger", "attention_all"),
               ("tagger", "attention_rollout")}
#: every registered method, with options that keep the rationale searches small
METHODS: dict[str, dict] = {
    "gradient_norm": {},
    "grad_x_input": {},
    "integrated_gradients": {"steps": 16},
    "occlusion": {},
    "occlusion_unk": {"replace_with": "unk"},
    "attention_last": {},
    "attention_all": {},
    "attention_rollout": {},
    "greedy": {"max_size": 3},
    "exhaustive": {"max_size": 2},
    "baseline_rationale": {"max_size": 3},
}
RTOL = 1e-4


@pytest.fixture(scope="module")
def device():
    """The device under test, float32 matmuls kept at full precision (no TF32) while the module runs."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    yield torch.device(DEVICE)
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _wrapped_pair(request, name, device):
    if name in NATIVE:  # an adapter object: a copy of it whose network lives on the device
        cpu = request.getfixturevalue(name)
        dev = copy.deepcopy(cpu)
        dev.model.to(device)
        return cpu, dev
    model, tok = request.getfixturevalue(name)
    cpu = se.load_model(model, tok)
    dev = se.load_model(copy.deepcopy(model).to(device), tok)
    return cpu, dev


def _assert_same(dev: np.ndarray, ref: np.ndarray, what: str, floor: float = 0.0) -> None:
    """Equal NaN cells, and values within ``RTOL`` of the largest reference value (or of ``floor``, if larger)."""
    dev, ref = np.asarray(dev, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    assert dev.shape == ref.shape, what
    np.testing.assert_array_equal(np.isnan(dev), np.isnan(ref), err_msg=f"{what}: NaN cells differ")
    cells = ~np.isnan(ref)
    scale = max(1e-12, floor, float(np.abs(ref[cells]).max()) if cells.any() else 1.0)
    np.testing.assert_allclose(dev[cells], ref[cells], rtol=RTOL, atol=RTOL * scale, err_msg=what)


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("name", FIXTURES)
def test_method_on_device_equals_cpu(request, device, name, method):
    cpu, dev = _wrapped_pair(request, name, device)
    text, target = INPUTS[name]
    options = METHODS[method]
    registered = method.removesuffix("_unk")
    if (name, method) in UNSUPPORTED:
        with pytest.raises(se.errors.UnsupportedError):
            se.explain(dev, text, target=target, method=registered, **options)
        return
    ref = se.explain(cpu, text, target=target, method=registered, **options)
    got = se.explain(dev, text, target=target, method=registered, **options)
    assert got.tokens == ref.tokens and got.target_tokens == ref.target_tokens
    logp = np.asarray(ref.target_logprobs, dtype=np.float64)
    _assert_same(np.asarray(got.target_logprobs), logp, f"{name} {method} log p")
    assert (got.rationale is None) == (ref.rationale is None), f"{name} {method}: rationale part on one side only"
    if ref.rationale is not None:
        assert got.rationale.bound_hit == ref.rationale.bound_hit, f"{name} {method} bounds"
        if got.rationale.positions != ref.rationale.positions:
            _assert_tie(got, ref, f"{name} {method}")
            return
    # occlusion scores are differences f(x) - f(x without j) of values of size |f|: float32 rounding of f
    # bounds their agreement, so their tolerance is relative to max(|scores|, |f|)
    floor = float(np.abs(logp).max()) if method.startswith("occlusion") else 0.0
    _assert_same(got.scores, ref.scores, f"{name} {method} scores", floor)


def _assert_tie(got, ref, what: str) -> None:
    """Rationales that differ must come from ties: every step's target probability agrees, and so does whether
    the target was reached (the order scores then differ by construction and are not compared)."""
    assert got.rationale.reached == ref.rationale.reached, f"{what} reached"
    assert len(got.rationale.log) == len(ref.rationale.log), what
    for i, (g, r) in enumerate(zip(got.rationale.log, ref.rationale.log, strict=True)):
        assert [s.get("reached") for s in g] == [s.get("reached") for s in r], f"{what} target {i} reached"
        gp = [s["target_prob"] for s in g if "target_prob" in s]
        rp = [s["target_prob"] for s in r if "target_prob" in s]
        assert len(gp) == len(rp), f"{what} target {i} steps"
        np.testing.assert_allclose(gp, rp, rtol=RTOL, atol=RTOL * max([1e-12, *map(abs, rp)]),
                                   err_msg=f"{what} target {i}: rationales differ beyond a tie")


@pytest.mark.parametrize("method", ["gradient_norm", "grad_x_input", "integrated_gradients", "occlusion"])
@pytest.mark.parametrize("name", FIXTURES)
def test_explain_many_on_device_equals_cpu(request, device, name, method):
    """The packed path (several examples in one forward) on the device against single CPU explanations."""
    cpu, dev = _wrapped_pair(request, name, device)
    text, target = INPUTS[name]
    items = [(text, target), (text + " " + text, target), (text.split(" ", 1)[1], target)]
    options = {"steps": 16} if method == "integrated_gradients" else {}
    got = list(se.explain_many(dev, items, method, pack=3, progress=False, **options))
    for k, (t, y) in enumerate(items):
        ref = se.explain(cpu, t, target=y, method=method, **options)
        floor = float(np.abs(ref.target_logprobs).max()) if method == "occlusion" else 0.0
        _assert_same(got[k].scores, ref.scores, f"{name} {method} item {k}", floor)


def test_gpu_marker_selects_this_module(request):
    """A cheap check that the run really used the device (and that the marker is registered)."""
    assert request.node.get_closest_marker("gpu") is not None
    if DEVICE.startswith("cuda"):
        assert torch.cuda.is_available()
        x = torch.ones(4, device=DEVICE)
        assert float((x * 2).sum().cpu()) == 8.0
