"""Edge cases of the registered methods' options, each against an independent oracle (a brute-force loop or a
hand-computed case): found by an audit of the methods for silent wrong results."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import NoAttentionLM

import seqexplain as se
from seqexplain.methods.registry import get_method

PROMPT, TARGET = "The cat sat on the mat.", " The dog"


def _objective(model, ex, target: int, kept: list[int]) -> float:
    """The brute-force objective of ``target`` with only ``kept`` visible (one forward of its own)."""
    keep = torch.zeros(1, ex.length, dtype=torch.bool)
    keep[0, kept] = True
    with torch.no_grad():
        return float(model.score(ex, keep=keep)[0, target])


def test_greedy_never_prefers_a_nan_candidate(no_attention_lm):
    # The model's logits are NaN in every row that drops position 1: in the second step only the candidate 1 has a
    # number. A NaN objective must never beat a number (it ranks last, as in seqexplain.ranking); greedy took the
    # first candidate, position 0, because no value compares greater than NaN.
    model = no_attention_lm(nan_when_dropped=True)
    ex = model.encode(PROMPT, TARGET)
    start = model.start_positions(ex, 0)
    cands = [j for j in range(ex.length) if ex.visible()[0, j] and j not in start]
    values = {j: _objective(model, ex, 0, sorted([*start, j])) for j in cands}
    finite = {j: v for j, v in values.items() if not np.isnan(v)}
    assert finite and len(finite) < len(values)  # the case holds: some candidates are NaN, some are not
    expected = max(finite, key=lambda j: (finite[j], -j))
    attr = se.explain_example(model, ex, "greedy", max_size=len(start) + 1)
    assert attr.rationale.positions[0] == [*start, expected]


@pytest.mark.parametrize("method", ["greedy", "baseline_rationale"])
def test_rationale_stopped_by_max_size_says_bound_hit(gpt2, method):
    # The tiny random GPT-2 predicts none of these targets even from its whole context (checked by hand below), so
    # a search capped at max_size=2 stops at the cap: that is a bound hit (Rationale.bound_hit: "the search stopped at
    # a bound before it could decide"), and the warning must name the bound. Without the cap, the whole context was
    # tried: not reached, no bound hit.
    model = se.load_model(*gpt2)
    ex = model.encode(PROMPT, TARGET)
    with torch.no_grad():
        full = model.predictions(ex)[0][0]
    assert all(int(full[i]) != int(ex.target_ids[i]) for i in range(ex.n_targets))
    capped = se.explain_example(model, ex, method, max_size=2)
    assert all(len(p) == 2 for p in capped.rationale.positions)
    assert capped.rationale.reached == [False] * ex.n_targets
    assert capped.rationale.bound_hit == [True] * ex.n_targets
    assert all("max_size=2" in w for w in capped.warnings)
    whole = se.explain_example(model, ex, method)
    assert whole.rationale.bound_hit == [False] * ex.n_targets
    assert not any("max_size" in w for w in whole.warnings)


def test_exhaustive_with_the_whole_context_insufficient_is_no_bound_hit(gpt2):
    # Every target sees at most 5 positions, within max_size=6, so exhaustive search tries every subset, the whole
    # context included; the random model predicts none of the targets even from all of it (checked by hand). No
    # bound stopped the search, and a larger max_size would find nothing: bound_hit must stay False and the warning
    # must say that no subset suffices, not that a bound was hit.
    model = se.load_model(*gpt2)
    ex = model.encode("The cat", TARGET)
    assert int(ex.visible().sum(1).max()) <= 6
    with torch.no_grad():
        full = model.predictions(ex)[0][0]
    assert all(int(full[i]) != int(ex.target_ids[i]) for i in range(ex.n_targets))
    attr = se.explain_example(model, ex, "exhaustive", max_size=6)
    assert attr.rationale.positions == [[]] * ex.n_targets
    assert attr.rationale.reached == [False] * ex.n_targets
    assert attr.rationale.bound_hit == [False] * ex.n_targets
    assert len(attr.warnings) == ex.n_targets
    assert all("not even the whole context" in w and "bound" not in w for w in attr.warnings)


def _captum_deltas(model, ex, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """captum's completeness error of IG from the zero baseline per target, and ``f(x) − f(0)`` per target."""
    from captum.attr import IntegratedGradients

    e = model.embed(ex).detach()
    deltas, gaps = [], []
    for i in range(ex.n_targets):
        def forward(x, i=i):
            return model.score(ex, embeds=x)[:, i]

        _, d = IntegratedGradients(forward).attribute(e, n_steps=steps, return_convergence_delta=True)
        deltas.append(float(d[0]))
        with torch.no_grad():
            gaps.append(float(forward(e)[0] - forward(torch.zeros_like(e))[0]))
    return np.array(deltas), np.array(gaps)


@pytest.mark.parametrize("steps", [1, 50])
def test_integrated_gradients_warns_when_completeness_fails(gpt2, steps):
    # IG's attributions should add up to f(x) − f(baseline) (Sundararajan et al. 2017 check that they do within 5 %);
    # with one step they miss it by up to 150 % on this model, a silent wrong result without a warning. The targets
    # warned about are those whose captum convergence delta exceeds max(5 % of |f(x) − f(b)|, 1e-4).
    model = se.load_model(*gpt2)
    ex = model.encode(PROMPT, TARGET)
    deltas, gaps = _captum_deltas(model, ex, steps)
    expected = [i for i in range(ex.n_targets) if abs(deltas[i]) > max(0.05 * abs(gaps[i]), 1e-4)]
    assert bool(expected) == (steps == 1)
    attr = se.explain_example(model, ex, "integrated_gradients", steps=steps)
    np.testing.assert_allclose(attr.meta["convergence_delta"], deltas, rtol=1e-3, atol=1e-6)
    warned = [w for w in attr.warnings if "completeness" in w]
    assert len(warned) == (1 if expected else 0)
    if expected:
        assert all(f"target {i} " in warned[0] for i in expected), warned
        assert not any(f"target {i} " in warned[0] for i in set(range(ex.n_targets)) - set(expected)), warned
        assert "steps" in warned[0]


def test_baseline_rationale_keeps_the_warnings_of_its_order(gpt2):
    model = se.load_model(*gpt2)
    ex = model.encode(PROMPT, TARGET)
    attr = se.explain_example(model, ex, "baseline_rationale", order_by="integrated_gradients",
                              order_options={"steps": 1}, max_size=2)
    assert any("integrated_gradients" in w and "completeness" in w for w in attr.warnings), attr.warnings


@pytest.mark.parametrize("method", [m.name for m in se.available_methods()])
def test_docstring_lists_every_option_as_validated(method):
    # Project standard: a method's docstring lists its options with their types and ranges. Checked against the
    # option specs that validate calls (read from the signature and the registry's ranges), so the two cannot drift.
    spec = get_method(method)
    doc = " ".join((spec.fn.__doc__ or "").split())
    assert doc, f"{method} has no docstring"
    options = spec.options()
    if not options:
        assert "No options." in doc, f"{method}'s docstring does not say it takes no options"
    for name, opt in options.items():
        assert f"``{name}``: {opt.describe()}" in doc, f"{method}'s docstring lacks ``{name}``: {opt.describe()}"


@pytest.mark.parametrize(("method", "option", "advice"), [("occlusion", "replace_with", "replace_with=None"),
                                                          ("integrated_gradients", "baseline", "baseline='zero'")])
def test_token_replacement_of_precomputed_vectors_says_what_works(bert, method, option, advice):
    # Precomputed vectors have no token to replace them with. The error said "use a zero baseline / replacement",
    # but occlusion has no zero replacement (replace_with='zero' is refused as 'not a single token'): the message
    # must name the option value that works for the method at hand, and that value must work.
    model = se.load_model(*bert)
    ex = model.encode("a fine film", 2)
    vectors = ex.replace(input_ids=None, input_vectors=model.embed(ex)[0].detach())
    with pytest.raises(se.errors.InputError) as info:
        se.explain_example(model, vectors, method, **{option: "unk"})
    assert advice in str(info.value)
    key, value = advice.split("=")
    fixed = se.explain_example(model, vectors, method, **{key: None if value == "None" else value.strip("'")})
    assert np.isfinite(fixed.scores[0][np.isfinite(fixed.scores[0])]).all()


def test_gauss_legendre_steps_stay_where_its_nodes_can_be_computed(gpt2):
    # Gauss-Legendre nodes come from an eigenproblem of size steps² (numpy's leggauss, as captum): steps=100000,
    # inside the documented range, asked numpy for 74.5 GiB (a raw MemoryError; on a larger machine, hours).
    # Above 1000 steps the rule is refused with a seqexplain error naming what works; Riemann rules keep the range.
    model = se.load_model(*gpt2)
    with pytest.raises(se.errors.InputError, match="riemann"):
        se.explain(model, "The cat", " sat", "integrated_gradients", steps=100_000)
    spec = get_method("integrated_gradients")
    spec.check_options({"steps": 1000})
    spec.check_options({"steps": 100_000, "rule": "riemann_middle"})


@pytest.mark.parametrize("options", [{"order_by": "magic"}, {"order_by": "greedy"},
                                     {"order_by": "integrated_gradients", "order_options": {"steps": 0}}])
def test_baseline_rationale_order_is_checked_before_any_model_work(gpt2, monkeypatch, options):
    # A bad order (unknown method, a rationale method, options the order method refuses) was found only inside the
    # method, after the input was encoded and the model's own continuation generated (explain_many: a whole pack).
    model = se.load_model(*gpt2)

    def no_encoding(*args, **kwargs):
        raise AssertionError("encoded before the options were checked")

    monkeypatch.setattr(model, "encode", no_encoding)
    monkeypatch.setattr(model, "encode_many", no_encoding)
    with pytest.raises(se.errors.SeqExplainError):
        se.explain(model, "The cat", None, "baseline_rationale", **options)
    with pytest.raises(se.errors.SeqExplainError):
        list(se.explain_many(model, ["The cat"], "baseline_rationale", progress=False, **options))


class _NaNPairsLM(NoAttentionLM):
    """:class:`NoAttentionLM` whose logits are NaN in every row that keeps exactly two positions: every candidate of
    a causal LM's first greedy step (the start position and one more)."""

    def forward(self, input_ids=None, inputs_embeds=None, attention_mask=None, position_ids=None):
        out = super().forward(input_ids, inputs_embeds, attention_mask, position_ids)
        if attention_mask is not None:
            pairs = (attention_mask.sum(1) == 2).view(-1, 1, 1)
            out.logits = torch.where(pairs, torch.full_like(out.logits, float("nan")), out.logits)
        return out


def test_greedy_warns_when_every_candidate_is_nan(bpe):
    model = se.load_model(_NaNPairsLM(len(bpe)), bpe)
    ex = model.encode(PROMPT, TARGET)
    start = model.start_positions(ex, 0)
    assert all(np.isnan(_objective(model, ex, 0, sorted([*start, j]))) for j in range(start[0]))  # the case holds
    attr = se.explain_example(model, ex, "greedy", max_size=2)
    assert attr.rationale.positions[0] == [*start, 0]  # the lowest position, and it is said to be arbitrary
    assert any("target 0" in w and "NaN" in w and "arbitrary" in w for w in attr.warnings), attr.warnings


def test_baseline_rationale_warns_about_nan_order_scores(no_attention_lm):
    # The LM is NaN wherever position 1 is dropped, so occlusion's score of position 1 is NaN for every target:
    # the order puts it last (seqexplain.ranking), which is no ranking by the method at all. explain warns about NaN
    # scores of occlusion itself; an order built from them said nothing.
    model = no_attention_lm(nan_when_dropped=True)
    ex = model.encode(PROMPT, TARGET)
    order = se.explain_example(model, ex, "occlusion")
    bad = int((ex.visible().numpy() & ~np.isfinite(order.scores)).sum())
    assert bad == ex.n_targets  # the case holds: position 1, once per target
    attr = se.explain_example(model, ex, "baseline_rationale", order_by="occlusion")
    assert any("occlusion" in w and f"{bad} " in w and "NaN" in w for w in attr.warnings), attr.warnings


def test_integrated_gradients_baseline_zero_as_a_number_is_said_to_be_a_token(gpt2):
    # captum's baselines=0 means zero inputs; here baseline=0 (also what the CLI's -o baseline=0 parses to) is token
    # id 0 placed everywhere, which is a valid but different baseline: the result must say which one it used.
    model = se.load_model(*gpt2)
    ex = model.encode(PROMPT, TARGET)
    as_id = se.explain_example(model, ex, "integrated_gradients", steps=8, baseline=0)
    as_token = se.explain_example(model, ex, "integrated_gradients", steps=8, baseline=gpt2[1].convert_ids_to_tokens(0))
    np.testing.assert_array_equal(as_id.scores, as_token.scores)  # token id 0, not zero embeddings
    assert any("token id 0" in w and "baseline='zero'" in w for w in as_id.warnings), as_id.warnings
    zero = se.explain_example(model, ex, "integrated_gradients", steps=8)
    assert not any("token id 0" in w for w in zero.warnings)
