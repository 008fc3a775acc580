"""Shared-prefix evaluation of sparse causal-LM rows: the plan by hand, the states against plain forwards."""

from __future__ import annotations

import itertools
import random

import pytest
import torch

import seqexplain as se
from seqexplain.methods.rationale import exhaustive, greedy
from seqexplain.models import prefix_cache
from seqexplain.models.prefix_cache import plan_sharing, shared_prefix_states


def _row(*positions: int) -> tuple[tuple[int, int], ...]:
    return tuple((p, 100 + p) for p in positions)


def test_plan_by_hand():
    rows = [_row(0, 1, 5), _row(0, 1, 2, 5), _row(0, 3, 5), _row(4, 5), _row(2, 5), _row(2, 6)]
    plan = plan_sharing(rows)
    # sorted: (0,1,2,5) (0,1,5) (0,3,5) (2,5) (2,6) (4,5); neighbour LCPs: 2, 1, 0, 1, 0
    assert plan.share == [2, 2, 1, 0, 1, 1]
    # leading tuples (0,1), (0,), (2,): (0,) is served by (0,1); maximal prefixes are (0,1) and (2,)
    assert plan.prefixes == [_row(0, 1), _row(2)]
    assert plan.row_prefix == [0, 0, 0, -1, 1, 1]
    rest = [len(r) - s for r, s in zip(rows, plan.share, strict=True)]
    assert sorted(b for bucket in plan.buckets for b in bucket) == list(range(6))
    for bucket in plan.buckets:  # a bucket holds rows down to BUCKET_SLACK of its longest suffix
        assert all(rest[b] >= prefix_cache.BUCKET_SLACK * rest[bucket[0]] for b in bucket)
    assert plan.cost == 2 * 2 + sum(len(bk) * rest[bk[0]] for bk in plan.buckets)


def test_plan_keeps_one_token_per_row_and_nothing_shared_without_common_starts():
    plan = plan_sharing([_row(1, 2), _row(1, 2), _row(3)])
    assert plan.share == [1, 1, 0]  # identical rows still run their last token
    assert plan_sharing([_row(1, 5), _row(2, 5), _row(3, 5)]).prefixes == []


def _greedy_like_rows(length: int, rng: random.Random) -> list[list[int]]:
    """Candidate rows ``s ∪ {j}`` of two targets, exhaustive-like rows and occlusion-like rows."""
    rows = []
    for p in (length - 1, length - 5):
        s = sorted(rng.sample(range(p - 1), 4)) + [p - 1]
        rows += [sorted([*s, j]) for j in range(p) if j not in s]
    rows += [[*c, length - 1] for c in itertools.combinations(range(6), 2)]
    rows += [[q for q in range(length) if not a <= q < a + 3] for a in range(0, length - 3, 4)]
    return rows


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_shared_states_equal_plain_forwards(request, name, monkeypatch):
    from transformers.utils import generic

    model, _ = request.getfixturevalue(name)
    warned: list[str] = []
    monkeypatch.setattr(generic.logger, "warning_once", lambda msg, *a, **k: warned.append(str(msg)))
    rng = random.Random(0)
    length = 24
    ids = torch.randint(5, model.config.vocab_size, (length,), generator=torch.Generator().manual_seed(1))
    rows = _greedy_like_rows(length, rng)
    width = max(len(r) for r in rows)
    input_ids = torch.zeros(len(rows), width, dtype=torch.long)
    pos = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for b, r in enumerate(rows):
        input_ids[b, : len(r)], pos[b, : len(r)], mask[b, : len(r)] = ids[r], torch.tensor(r), 1
    # read the last token, the first token and a middle one of every row (inside and outside the prefix)
    n = mask.sum(1)
    read = torch.stack([n - 1, torch.zeros_like(n), n // 2], 1)
    with torch.no_grad():
        shared = shared_prefix_states(model.base_model, input_ids, mask, pos, read)
        assert shared is not None
        assert not [w for w in warned if "deprecated" in w], warned  # caches passed and read by their current name
        for b, r in enumerate(rows):
            plain = model.base_model(input_ids=ids[r][None], position_ids=torch.tensor([r])).last_hidden_state[0]
            torch.testing.assert_close(shared[b], plain[read[b]], rtol=1e-4, atol=1e-5)


def test_no_sharing_when_it_would_not_save(gpt2):
    model, _ = gpt2
    ids = torch.arange(10, 16).view(3, 2)
    pos = torch.tensor([[0, 5], [1, 5], [2, 5]])
    out = shared_prefix_states(model.base_model, ids, torch.ones_like(ids), pos, torch.ones(3, 1, dtype=torch.long))
    assert out is None


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_greedy_and_exhaustive_use_shared_prefixes_and_match_plain_rows(request, name, monkeypatch,
                                                                        prefix_sharing_calls):
    """The same rationales with the shared-prefix path on (it is taken) and off."""
    wrapped = se.load_model(*request.getfixturevalue(name))
    ex = wrapped.encode("one two three four five six seven eight nine ten eleven", " twelve thirteen")
    g_on, e_on = greedy(wrapped, ex, max_size=6), exhaustive(wrapped, ex, max_size=3)
    assert any(prefix_sharing_calls)
    monkeypatch.setattr(prefix_cache, "MIN_SAVING", -1.0)  # never worth it: every row runs on its own
    g_off, e_off = greedy(wrapped, ex, max_size=6), exhaustive(wrapped, ex, max_size=3)
    assert g_on.rationales == g_off.rationales and e_on.rationales == e_off.rationales
    for a, b in zip(g_on.rationale_log, g_off.rationale_log, strict=True):
        assert [s["target_prob"] for s in a] == pytest.approx([s["target_prob"] for s in b], rel=1e-4, abs=1e-6)
