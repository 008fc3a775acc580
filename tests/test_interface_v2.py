"""Interface v2: what is explained (objectives, against captum on the raw model and brute-force loops), batches of
examples (explain_many equals one-at-a-time calls), precomputed input vectors, named groups, and their bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients, Saliency
from typer.testing import CliRunner

import seqexplain as se
from seqexplain.errors import InputError


def _raw_causal_objective(model, ex, objective: str, foil_ids=None):
    """f(e)[i] computed on the raw Hugging Face forward (not the adapter's score)."""
    pos = torch.tensor(ex.target_positions)

    def f(e: torch.Tensor) -> torch.Tensor:
        z = model(inputs_embeds=e, attention_mask=torch.ones(e.shape[:2], dtype=torch.long)).logits[:, pos - 1]
        tgt = ex.target_ids.view(1, -1, 1).expand(e.shape[0], -1, 1)
        if objective == "logit":
            return z.gather(2, tgt).squeeze(-1)
        logp = torch.log_softmax(z, -1)
        out = logp.gather(2, tgt).squeeze(-1)
        if objective == "prob":
            return out.exp()
        if objective == "contrast":
            return out - logp.gather(2, foil_ids.view(1, -1, 1).expand(e.shape[0], -1, 1)).squeeze(-1)
        return out

    return f


@pytest.mark.parametrize("objective", ["prob", "logit", "contrast"])
def test_gradient_objectives_equal_captum_on_raw_forward(gpt2, objective):
    model, tok = gpt2
    w = se.load_model(model, tok)
    foil = " dog" if objective == "contrast" else None
    attr = se.explain(w, "The cat sat on the", " mat", "gradient_norm", objective=objective, foil=foil)
    ex = w.with_objective(w.encode("The cat sat on the", " mat"), objective, foil)
    f = _raw_causal_objective(model, ex, objective, ex.foil_ids)
    e = model.get_input_embeddings()(ex.input_ids[None]).detach()
    for i in range(ex.n_targets):
        g = Saliency(lambda x, i=i: f(x)[:, i]).attribute(e, abs=False)[0].norm(dim=-1)
        vis = ex.visible()[i].numpy()
        np.testing.assert_allclose(attr.scores[i, vis], g.numpy()[vis], rtol=1e-4, atol=1e-7)
    if objective == "contrast":
        assert attr.foil_tokens == ex.foil_tokens and attr.objective == "contrast"


def test_integrated_gradients_logit_equals_captum(gpt2):
    model, tok = gpt2
    w = se.load_model(model, tok)
    attr = se.explain(w, "The quick brown fox", " jumps", "integrated_gradients", objective="logit", steps=16)
    ex = w.with_objective(w.encode("The quick brown fox", " jumps"), "logit")
    f = _raw_causal_objective(model, ex, "logit")
    e = model.get_input_embeddings()(ex.input_ids[None]).detach()
    for i in range(ex.n_targets):
        ig = IntegratedGradients(lambda x, i=i: f(x)[:, i])
        ref = ig.attribute(e, baselines=torch.zeros_like(e), n_steps=16, method="gausslegendre")[0].sum(-1)
        vis = ex.visible()[i].numpy()
        np.testing.assert_allclose(attr.scores[i, vis], ref.detach().numpy()[vis], rtol=1e-4, atol=1e-6)


def test_occlusion_contrast_equals_brute_force(bert):
    model, tok = bert
    w = se.load_model(model, tok)
    attr = se.explain(w, "the cat sat on the mat", "positive", "occlusion", objective="contrast", foil="negative")

    def contrast(pos: list[int]) -> float:
        p = torch.tensor(pos)
        with torch.no_grad():
            z = model(input_ids=attr_ids[p][None], position_ids=p[None],
                      attention_mask=torch.ones(1, len(pos), dtype=torch.long)).logits[0]
        logp = torch.log_softmax(z, -1)
        return float(logp[2] - logp[0])

    attr_ids = w.encode("the cat sat on the mat", "positive").input_ids
    n = len(attr_ids)
    full = contrast(list(range(n)))
    expected = [full - contrast([k for k in range(n) if k != j]) for j in range(n)]
    np.testing.assert_allclose(attr.scores[0], expected, rtol=1e-4, atol=1e-5)


def test_bad_objectives_and_foils(gpt2, bert):
    w = se.load_model(*gpt2)
    with pytest.raises(InputError, match="tokenizes to no tokens"):
        se.explain(w, "The cat sat", " on", "gradient_norm", objective="contrast", foil="")
    with pytest.raises(InputError, match="one foil token per target"):
        se.explain(w, "The cat sat", " on", "gradient_norm", objective="contrast", foil=" on the mat today")
    with pytest.raises(InputError, match="needs a foil"):
        se.explain(w, "The cat sat", " on", "gradient_norm", objective="contrast")
    with pytest.raises(InputError, match="unknown objective"):
        se.explain(w, "The cat sat", " on", "gradient_norm", objective="odds")
    with pytest.raises(InputError, match="unknown label"):
        se.explain(se.load_model(*bert), "a cat", "positive", "occlusion", objective="contrast", foil="maybe")
    # a foil equal to its target explains a function that is 0 for every input (all scores 0, silently)
    with pytest.raises(InputError, match="the foil is the target itself"):
        se.explain(w, "The cat sat", " on", "gradient_norm", objective="contrast", foil=" on")
    with pytest.raises(InputError, match="the foil is the target itself"):
        se.explain(se.load_model(*bert), "a cat", 1, "occlusion", objective="contrast", foil=1)
    ex = w.encode("The cat sat", " on the")
    foil = w.tokenizer.convert_tokens_to_string([*w.tokenizer.tokenize(" at")[:2], ex.target_tokens[-1]])
    same = int(ex.target_ids[-1])
    attr = se.explain(w, "The cat sat", " on the", "occlusion", objective="contrast", foil=foil)
    assert [int(i) for i in w.foil_ids(ex, foil)[0]][-1] == same
    assert any(f"target {ex.n_targets - 1}" in m and "contrast is 0" in m for m in attr.warnings), attr.warnings
    last = attr.scores[-1]
    assert np.all(last[~np.isnan(last)] == 0.0)


@pytest.mark.parametrize("name,method,options", [
    ("gpt2", "gradient_norm", {}), ("gpt2", "integrated_gradients", {"steps": 8}), ("gpt2", "occlusion", {}),
    ("bert", "grad_x_input", {}), ("bert", "integrated_gradients", {"steps": 8}), ("bert", "occlusion", {}),
    ("gpt2_classifier", "gradient_norm", {}), ("gpt2_classifier", "occlusion", {}),
    ("bart", "gradient_norm", {}), ("bart", "occlusion", {}), ("t5", "integrated_gradients", {"steps": 4}),
    ("gpt2", "attention_last", {}), ("gpt2", "greedy", {"max_size": 3}),
])
def test_explain_many_equals_one_at_a_time(request, name, method, options):
    model, tok = request.getfixturevalue(name)
    w = se.load_model(model, tok)
    if w.kind == "classifier":
        items = [("the cat sat on the mat", 1), ("a dog", 0), ("paris is the capital of france and berlin", 2 % 2)]
    else:
        items = [("The cat sat on the", " mat"), ("Paris is", " the capital of"), ("A", " dog sat")]
    if "token_budget" in se.get_method(method).defaults():
        options = {**options, "token_budget": 64}  # small: packs are cut into several forwards
    many = list(se.explain_many(w, items, method, progress=False, **options))
    assert len(many) == len(items)
    for (text, target), got in zip(items, many, strict=True):
        one = se.explain(w, text, target, method, **options)
        assert got.tokens == one.tokens and got.target_tokens == one.target_tokens
        np.testing.assert_allclose(got.scores, one.scores, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", ["gradient_norm", "integrated_gradients", "occlusion", "greedy"])
def test_explain_many_items_carry_their_own_objective_and_foil(gpt2, method):
    """Mapping items with an objective (and a foil for the contrast), several objectives in one pack: each result
    equals one explain call with the same objective and foil."""
    w = se.load_model(*gpt2)
    items = []
    for (text, target), objective in zip([("The cat sat on the", " mat"), ("Paris is", " the capital"), ("A", " dog"),
                                          ("The dog", " sat on")], ["contrast", "logit", "contrast", "prob"],
                                         strict=True):
        item = {"text": text, "target": target, "objective": objective}
        if objective == "contrast":  # one foil id per target token
            item["foil"] = [(i + 7) % 50 for i in w.encode(text, target).target_ids.tolist()]
        items.append(item)
    many = list(se.explain_many(w, items, method, progress=False))
    for item, got in zip(items, many, strict=True):
        one = se.explain(w, item["text"], item["target"], method, objective=item["objective"], foil=item.get("foil"))
        assert got.objective == one.objective == item["objective"] and got.foil_tokens == one.foil_tokens
        np.testing.assert_allclose(got.scores, one.scores, rtol=1e-5, atol=1e-6)


def _count_forwards(model, monkeypatch) -> list[int]:
    """Batch sizes of the model's forwards from now on."""
    calls: list[int] = []
    original = model.forward

    def spy(*args, **kwargs):
        x = kwargs.get("input_ids", kwargs.get("inputs_embeds"))
        calls.append(int(x.shape[0]))
        return original(*args, **kwargs)

    monkeypatch.setattr(model, "forward", spy)
    return calls


def test_explain_many_packs_examples_into_shared_forwards(bert, monkeypatch):
    model, tok = bert
    w = se.load_model(model, tok)
    calls = _count_forwards(model, monkeypatch)
    items = [(f"the cat number {i} sat", 1) for i in range(10)]
    list(se.explain_many(w, items, "gradient_norm", progress=False))
    assert max(calls) == 10  # the ten examples share one forward


@pytest.mark.parametrize("name", ["bert", "gpt2_classifier"])
def test_explain_many_predicts_labels_in_shared_forwards(request, name, monkeypatch):
    """Items without a target are explained for the model's own label, found for the whole pack in shared forwards
    (not one forward each), and equal to one explain call per item."""
    model, tok = request.getfixturevalue(name)
    w = se.load_model(model, tok)
    texts = ["the cat sat on the mat", "a dog", "paris is the capital of france", "the cat", "a dog sat on a cat",
             "berlin", "the mat sat on the cat and the dog", "a cat and a dog"]
    ones = [se.explain(w, t, method="gradient_norm") for t in texts]
    many = list(se.explain_many(w, texts, "gradient_norm", progress=False))
    assert [m.target_tokens for m in many] == [o.target_tokens for o in ones]
    for m, o in zip(many, ones, strict=True):
        np.testing.assert_allclose(m.scores, o.scores, rtol=1e-5, atol=1e-6)
    calls = _count_forwards(model, monkeypatch)
    examples = w.encode_many([(t, None) for t in texts])
    assert calls == [len(texts)]  # one forward for all the labels
    assert [ex.target_tokens for ex in examples] == [o.target_tokens for o in ones]


def test_near_tied_predictions_are_recomputed_alone(bert, monkeypatch):
    """With a head that gives every label the same logit, batch rounding could pick any label: each such input is
    predicted again alone, as one explain call would (label 0 for an exact tie)."""
    import copy

    model = copy.deepcopy(bert[0])
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.zero_()
    w = se.load_model(model, bert[1])
    texts = ["the cat sat", "a dog", "paris is the capital"]
    calls = _count_forwards(model, monkeypatch)
    examples = w.encode_many([(t, None) for t in texts])
    assert [ex.target_tokens for ex in examples] == [["negative"]] * 3
    assert calls == [3, 1, 1, 1]  # the shared forward, then each tie alone


@pytest.mark.parametrize("autocast,expected", [(None, [3]), ("bf16", [3, 1, 1, 1])])
def test_tie_margin_is_wider_under_autocast(bert, monkeypatch, autocast, expected):
    """Logits 1e-3 apart: decided in float32, too close for bf16's 8 mantissa bits (predicted again alone)."""
    import copy

    model = copy.deepcopy(bert[0])
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([0.0, 1e-3, 0.0]))
    w = se.load_model(model, bert[1], autocast=autocast)
    calls = _count_forwards(model, monkeypatch)
    examples = w.encode_many([(t, None) for t in ["the cat sat", "a dog", "paris is the capital"]])
    assert [ex.target_tokens for ex in examples] == [["neutral"]] * 3 and calls == expected


@pytest.mark.parametrize("name", ["gpt2", "bert"])
def test_examples_with_different_extra_inputs_share_a_call(request, name):
    """One example carries token type ids and the other does not: each gets the logits it gets alone (a shared
    forward used to take the first example's names: a KeyError, or the second's token types silently dropped)."""
    w = se.load_model(*request.getfixturevalue(name))
    texts = ("The cat sat on the", "A dog ran") if name == "gpt2" else ("a fine film", "dull")
    plain = w.encode(texts[0], " mat") if name == "gpt2" else w.encode(texts[0])
    other = w.encode(texts[1], " far") if name == "gpt2" else w.encode(texts[1])
    typed = other.replace(extra={"token_type_ids": torch.ones(other.length, dtype=torch.long)})
    plain = plain.replace(extra={})
    for first, second in ((plain, typed), (typed, plain)):
        keeps = [torch.ones(2, e.length, dtype=torch.bool) for e in (first, second)]
        for k in keeps:
            k[1, 0] = False
        together = w.logits_parts([se.models.Part(first, keeps[0]), se.models.Part(second, keeps[1])])
        for e, k, z in zip((first, second), keeps, together, strict=True):
            torch.testing.assert_close(z, w.logits(e, k), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(w.logits(typed), w.logits(typed.replace(extra={})))  # the token types matter


def test_explain_many_shows_row_progress_inside_a_pack(bert, capsys):
    """Besides the item bar (moved once a pack is done), a row bar moves while a pack is computed, and it is closed
    when the pack ends (the progress context does not leak into the caller between yields)."""
    from seqexplain.progress import _BAR

    w = se.load_model(*bert)
    items = [(f"the cat number {i} sat", 1) for i in range(5)]
    it = se.explain_many(w, items, "occlusion", pack=2)
    next(it)
    assert _BAR.get() is None  # suspended between yields: no bar left open for the caller's own work
    rest = list(it)
    err = capsys.readouterr().err
    assert len(rest) == 4 and "occlusion: pack of 2" in err and "row" in err and "explain_many occlusion" in err


def test_explain_many_yields_unbatched_methods_item_by_item(gpt2):
    """A method without a batched form (greedy) gains nothing from a pack: each item's result is yielded before the
    next item is read, so a long corpus streams (and a consumer that stores results loses nothing finished)."""
    w = se.load_model(*gpt2)
    read: list[int] = []

    def items():
        for i, (text, target) in enumerate([("The cat sat on the", " mat"), ("Paris is", " the"), ("A", " dog")]):
            read.append(i)
            yield text, target

    it = se.explain_many(w, items(), "greedy", progress=False, max_size=3)
    first = next(it)
    assert read == [0] and first.rationale is not None
    assert len(list(it)) == 2 and read == [0, 1, 2]


def test_explain_many_bad_items(gpt2):
    w = se.load_model(*gpt2)
    with pytest.raises(InputError, match="items of one kind"):
        list(se.explain_many(w, ["The cat", ("The dog", " sat")], "gradient_norm", progress=False))
    with pytest.raises(InputError, match="not int"):
        list(se.explain_many(w, [3], "gradient_norm", progress=False))


def test_precomputed_vectors_of_the_wrong_width_are_an_error(bert):
    model, tok = bert
    w = se.load_model(model, tok)
    ex = w.encode("the cat sat on the mat", 2)
    bad = ex.replace(input_ids=None, input_vectors=torch.zeros(ex.length, 7))
    with pytest.raises(InputError, match="width 32"):
        se.explain_example(w, bad, "gradient_norm")


def test_groups_are_checked_and_carried(gpt2):
    from seqexplain.explain import encode_item

    w = se.load_model(*gpt2)
    ex = encode_item(w, "The cat sat on the", " mat", groups={"spans": [[0, 1], [2]]})
    assert ex.groups["spans"] == [[0, 1], [2]]
    with pytest.raises(InputError, match="overlap at position 1"):
        encode_item(w, "The cat sat on the", " mat", groups={"spans": [[0, 1], [1, 2]]})
    with pytest.raises(InputError, match="outside the input"):
        encode_item(w, "The cat sat on the", " mat", groups={"spans": [[0, 99]]})
    with pytest.raises(InputError, match="empty"):
        encode_item(w, "The cat sat on the", " mat", groups={"spans": [[]]})
    # numpy integers are positions too (they were refused as "outside the input")
    assert encode_item(w, "The cat sat on the", " mat", groups={"s": [[np.int64(0)], [np.int32(2)]]}
                       ).groups["s"] == [[0], [2]]
    attr = se.explain(w, "The cat sat on the", " mat", "gradient_norm", groups={"spans": [[0, 1], [2]]})
    summed = attr.aggregate("sum", by="spans")
    assert summed.scores[0, 0] == pytest.approx(attr.scores[0, 0] + attr.scores[0, 1])
    with pytest.raises(InputError, match="outside the input"):
        se.explain(w, "The cat sat on the", " mat", "gradient_norm", groups={"spans": [[0, 99]]})


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_request_without_cuda(gpt2, tmp_path):
    with pytest.raises(InputError, match="CUDA is not available"):
        se.load_model(gpt2[0], gpt2[1], device="cuda")
    from seqexplain.cli import app

    out = CliRunner().invoke(app, ["explain", "--text", "x", "--model", str(tmp_path), "--device", "cuda"])
    assert out.exit_code == 2 and "CUDA is not available" in out.output and "Traceback" not in out.output


@pytest.mark.parametrize("device", ["meta", "mps", "xpu"])
def test_devices_other_than_cpu_and_cuda_are_refused(gpt2, gpt2_dir, device):
    """meta passed the check and failed inside the first forward (meta tensors hold no values), mps and xpu with a
    traceback or an AssertionError."""
    with pytest.raises(InputError, match=f"runs on cpu and cuda .*not on {device}"):
        se.load_model(gpt2[0], gpt2[1], device=device)
    from seqexplain.cli import app

    out = CliRunner().invoke(app, ["explain", "--text", "x", "--model", str(gpt2_dir), "--device", device])
    assert out.exit_code == 2 and "runs on cpu and cuda" in out.output and "Traceback" not in out.output


def test_the_default_token_budget_is_recorded(gpt2):
    attr = se.explain(se.load_model(*gpt2), "The cat sat on the", " mat", "occlusion")
    assert attr.options["token_budget"] is None and attr.meta["token_budget_used"] == 4096  # a CPU model


@pytest.mark.parametrize("name", ["gpt2", "bert", "bart"])
@pytest.mark.parametrize("method", ["attention_last", "gradient_norm", "occlusion"])
def test_float64_vectors_explain_what_float32_vectors_do(request, name, method):
    """Vectors from numpy (float64) are cast to the weights' dtype: the attention methods' own forward missed the
    cast and raised torch's "mixed dtype" error."""
    w = se.load_model(*request.getfixturevalue(name))
    text, target = {"gpt2": ("The cat sat on the", " mat"), "bert": ("a fine film", 2),
                    "bart": ("The cat sat.", "Le chat")}[name]
    ex = w.encode(text, target)
    vectors = w.embed(ex)[0].detach()
    as32 = se.explain_example(w, ex.replace(input_ids=None, input_vectors=vectors), method)
    as64 = se.explain_example(w, ex.replace(input_ids=None, input_vectors=vectors.double()), method)
    np.testing.assert_allclose(as64.scores, as32.scores, rtol=1e-6, atol=1e-7)
