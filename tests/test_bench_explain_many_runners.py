"""The runners of benchmarks/bench_explain_many.py on a tiny BERT classifier: the direct-torch loop (the packed path's
ceiling) computes what explain_many computes, the float64 reference leaves the timed model alone, and repeated
timing alternates the runners' order."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import seqexplain as se


@pytest.fixture()
def runners(benchmark_module):
    return benchmark_module("_explain_many_runners")


TEXTS = ["the cat sat on the mat", "a dog", "paris is the capital of france", "the cat", "a dog sat on a cat",
         "berlin", "the mat sat on the cat and the dog"]


@pytest.mark.parametrize("method", ["gradient_norm", "grad_x_input"])
@pytest.mark.parametrize("targets", ["gold", "predicted"])
def test_direct_torch_runner_computes_what_explain_many_computes(runners, bert, method, targets):
    model, tok = bert
    w = se.load_model(model, tok)
    items = [(t, None if targets == "predicted" else k % 3) for k, t in enumerate(TEXTS)]
    many = runners.many_runner(w, method, {}, pack=4)(items)
    direct = runners.torch_packed_runner(model, tok, method, pack=4, pack_tokens=20, device="cpu")(items)
    assert all(p.requires_grad for p in model.parameters())  # frozen only while it runs
    for attr, scores in zip(many, direct, strict=True):
        assert scores.shape == attr.scores.shape
        np.testing.assert_allclose(scores, attr.scores, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="gradient_norm and grad_x_input"):
        runners.torch_packed_runner(model, tok, "occlusion", 4, 20, "cpu")


def test_float64_reference_copies_the_model(runners, bert):
    model, tok = bert
    w64 = runners.float64_model(model, tok)
    assert next(model.parameters()).dtype == torch.float32 and next(w64.model.parameters()).dtype == torch.float64
    one = se.explain(se.load_model(model, tok), TEXTS[0], 2, "gradient_norm")
    exact = se.explain(w64, TEXTS[0], 2, "gradient_norm")
    np.testing.assert_allclose(one.scores, exact.scores, rtol=1e-4)


def test_repeated_timing_alternates_the_order(runners):
    calls: list[str] = []

    def runner(name: str):
        return lambda items: calls.append(name) or [name] * len(items)

    total, per_repeat = runners.repeated({"a": runner("a"), "b": runner("b")}, [("x", 0)], [[("x", 0)]], 3)
    assert calls == ["a", "b", "b", "a", "a", "b"] and len(per_repeat) == 3
    assert list(total) == ["a", "b"] and total["a"][2] == ["a"]


def test_probe_groups_of_equal_length_and_workers(benchmark_module):
    """The gap probe's alternatives to explain_many's packs: groups of one length within the token limit, and worker
    threads that cover every sentence once and give the thread count back."""
    probe = benchmark_module("probe_explain_many_gap")
    lengths = [5, 3, 5, 3, 3, 7, 5, 5]
    groups = probe.equal_length_groups(lengths, 10)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    assert all(len({lengths[i] for i in g}) == 1 and (len(g) == 1 or sum(lengths[i] for i in g) <= 10)
               for g in groups)
    assert [[lengths[i] for i in g] for g in groups] == [[3, 3, 3], [5, 5], [5, 5], [7]]
    seen: list[tuple[str, int | None]] = []
    threads = torch.get_num_threads()
    probe.in_workers(seen.extend, 3)([(t, None) for t in TEXTS])
    assert sorted(seen) == sorted((t, None) for t in TEXTS) and torch.get_num_threads() == threads


class _Cycle:
    def __init__(self) -> None:
        self.me = self


@pytest.mark.parametrize("collect", [True, False])
def test_timed_collects_first_and_logs_full_collections_inside(runners, collect):
    """Garbage left by earlier runners is collected before the clock starts (or, with ``collect=False``, still
    there), and a full collection inside the timed call is logged under the runner's name, none outside."""
    import gc
    import weakref

    enabled = gc.isenabled()
    gc.disable()  # no automatic collection may decide the outcome
    try:
        ref = weakref.ref(_Cycle())  # unreachable, but alive until a collection breaks its cycle
        seen: list[bool] = []

        def fn(items):
            seen.append(ref() is None)
            gc.collect()
            return items

        log = runners.FullCollections()
        wall, cpu, out = runners.timed(fn, [("x", 0)], collect, "many", log)
        gc.collect()  # outside any timed call: not logged
    finally:
        if enabled:
            gc.enable()
    assert seen == [collect] and out == [("x", 0)] and wall >= 0 and cpu >= 0
    assert list(log.seconds) == ["many"] and len(log.seconds["many"]) == 1 and log not in gc.callbacks
