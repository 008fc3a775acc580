"""The token budget (docs/methods.md, "Memory: the token budget"), measured with spies on the model's forwards.

The claim: methods that batch perturbations or integration steps put at most ``token_budget`` tokens (rows ×
sequence length) in one forward pass, at least one row, never a fixed number of rows; the default budget (4,096)
runs a 4,000-token input one row at a time. The gradient methods also batch their backward over targets; there a
chunk counts every (target, row) pair (``methods/gradient.py``). Every transformer run of a Hugging Face causal LM
goes through its ``base_model`` (plain runs, ``model(...)``, and the prefix/suffix runs of the key/value cache used
by occlusion), so a forward pre-hook on ``base_model`` sees all of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

import seqexplain as se
from seqexplain.methods import gradient as gradient_module


@dataclass
class Forward:
    rows: int
    tokens_per_row: int  # tokens this pass runs per row (a key/value cache adds `past` tokens it does not rerun)
    past: int

    @property
    def tokens(self) -> int:
        return self.rows * self.tokens_per_row


@dataclass
class Backward:
    targets: int
    rows: int
    length: int

    @property
    def tokens(self) -> int:
        return self.targets * self.rows * self.length


@pytest.fixture
def forwards():
    """``record(model)`` starts recording every forward of ``model.base_model`` into the returned list."""
    handles = []

    def record(model: torch.nn.Module) -> list[Forward]:
        seen: list[Forward] = []

        def hook(module, args, kwargs):
            x = kwargs.get("input_ids", args[0] if args else None)
            if x is None:
                x = kwargs["inputs_embeds"]
            cache = kwargs.get("cache", kwargs.get("past_key_values"))
            past = int(cache.get_seq_length()) if cache is not None else 0
            seen.append(Forward(rows=int(x.shape[0]), tokens_per_row=int(x.shape[1]), past=past))

        handles.append(model.base_model.register_forward_pre_hook(hook, with_kwargs=True))
        return seen

    yield record
    for h in handles:
        h.remove()


@pytest.fixture
def backwards(monkeypatch):
    """Every batched gradient call of the gradient methods: targets × rows × sequence length."""
    seen: list[Backward] = []
    original = gradient_module.parts_gradients

    def spy(model, items, targets):
        rows = sum(int(points.shape[0]) for _, points in items)
        length = max(int(points.shape[1]) for _, points in items)
        seen.append(Backward(targets=len(targets), rows=rows, length=length))
        return original(model, items, targets)

    monkeypatch.setattr(gradient_module, "parts_gradients", spy)
    return seen


def _within(count: int, row_tokens: int, budget: int) -> bool:
    """At most ``budget`` tokens, or a single row (a row longer than the budget still runs, alone)."""
    return count <= budget or count == row_tokens


@pytest.fixture(scope="module")
def long_gpt2(bpe):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=len(bpe), n_positions=4096,
                                       bos_token_id=bpe.bos_token_id, eos_token_id=bpe.eos_token_id,
                                       pad_token_id=bpe.pad_token_id)).eval()
    return se.load_model(model, bpe)


CASES = [("gradient_norm", {}), ("grad_x_input", {}), ("integrated_gradients", {"steps": 8}), ("occlusion", {})]


@pytest.mark.parametrize("method,opts", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("rows_per_budget", [6.5, 0.5])
def test_every_forward_holds_at_most_token_budget_tokens(long_gpt2, forwards, backwards, method, opts,
                                                         rows_per_budget):
    """A 400-token prompt with a budget of 6.5 rows (batches of several rows) and of half a row (one row each)."""
    ex = long_gpt2.encode(" ".join(["the cat sat on the mat"] * 40), " the dog")
    n_l = ex.length
    assert n_l > 400 and ex.n_targets == 3
    budget = int(rows_per_budget * n_l)
    seen = forwards(long_gpt2.model)
    attr = se.explain_example(long_gpt2, ex, method, token_budget=budget, **opts)
    assert np.isfinite(attr.scores[:, : ex.n_source]).all()

    assert seen, "the spy saw no forward"
    for f in seen:
        assert f.rows >= 1 and f.tokens_per_row >= 1
        assert f.tokens_per_row <= n_l
        assert _within(f.tokens, f.tokens_per_row, budget), f"{f} holds {f.tokens} tokens > budget {budget}"
    max_rows = max(f.rows for f in seen)
    if method in ("gradient_norm", "grad_x_input") or rows_per_budget < 1:
        assert max_rows == 1  # gradient_norm / grad_x_input: one input row, the targets share the backward
    elif method == "occlusion":  # the budget is filled with perturbed rows, not one at a time
        assert max_rows == int(rows_per_budget)
    else:  # integrated gradients: 6 (target, row) pairs = 3 targets × 2 path points, so 2 rows per forward
        assert max_rows == 2

    if method == "occlusion":
        assert not backwards
        # one perturbed row per context position, plus the unperturbed forward; batched, so fewer forwards
        assert len(seen) >= (n_l / max(1, budget // n_l)) / 2
        return
    assert backwards
    for b in backwards:
        assert b.length == n_l and b.rows >= 1 and b.targets >= 1
        assert _within(b.tokens, n_l, budget), f"{b} holds {b.tokens} (target, row) tokens > budget {budget}"
    assert sum(b.targets * b.rows for b in backwards) == ex.n_targets * opts.get("steps", 1)
    if rows_per_budget > 1:  # several (target, row) pairs share a backward, up to the budget
        pairs = ex.n_targets if method != "integrated_gradients" else int(rows_per_budget)
        assert max(b.tokens for b in backwards) == pairs * n_l


def test_rows_follow_the_budget_not_a_fixed_number(long_gpt2, forwards):
    ex = long_gpt2.encode(" ".join(["the cat sat on the mat"] * 40), " the dog")
    rows = {}
    for k in (2, 3, 7):
        seen = forwards(long_gpt2.model)
        se.explain_example(long_gpt2, ex, "occlusion", token_budget=k * ex.length)
        rows[k] = max(f.rows for f in seen)
    assert rows == {2: 2, 3: 3, 7: 7}


def test_occlusion_prices_its_rows_as_the_adapter_does(long_gpt2, forwards):
    """A causal row that drops one position costs L − 1 tokens (the adapter's row_cost; the key/value cache runs
    less): a budget of exactly k × (L − 1) holds k perturbed rows, not k − 1 as at L tokens a row."""
    ex = long_gpt2.encode(" ".join(["the cat sat on the mat"] * 40), " the dog")
    assert long_gpt2.row_cost(ex, ex.n_targets - 1, ex.length - 1) == ex.length - 1
    rows = {}
    for k in (2, 3, 7):
        seen = forwards(long_gpt2.model)
        se.explain_example(long_gpt2, ex, "occlusion", token_budget=k * (ex.length - 1))
        rows[k] = max(f.rows for f in seen)
    assert rows == {2: 2, 3: 3, 7: 7}


def test_a_4000_token_input_runs_one_row_at_a_time_under_the_default_budget(long_gpt2, forwards, backwards):
    ex = long_gpt2.encode(" ".join(["the cat sat on the mat"] * 400), " the dog", truncate=True)
    assert 3900 < ex.length <= 4096
    seen = forwards(long_gpt2.model)
    for method, opts in [("gradient_norm", {}), ("integrated_gradients", {"steps": 4})]:
        attr = se.explain_example(long_gpt2, ex, method, **opts)  # default token_budget = 4,096
        assert np.isfinite(attr.scores[:, : ex.n_source]).all()
    assert seen and all(f.rows == 1 and f.tokens_per_row > 3900 for f in seen)
    # every (target, path point) pair is a backward of its own: 3 targets for gradient_norm, 3 × 4 for IG
    assert [(b.targets, b.rows) for b in backwards] == [(1, 1)] * (3 + 12)
