"""Word-score sources of the bujel2021 experiment against oracles on the raw module: the encoder's received
attention (recomputed from ``output_attentions``), LIME (the same perturbations evaluated by deleting words from
the text and a weighted ridge fit by scikit-learn), and seqexplain methods reduced to words."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import Ridge
from sklearn.metrics import pairwise_distances

from seqexplain.data.token_labels import LabelledSentence
from seqexplain.experiments import bujel2021_scores as src
from seqexplain.models.soft_attention import SoftAttentionAdapter

torch.set_num_threads(1)
SENTS = [LabelledSentence(("Unbelievably", "bad", "acting", "."), ("O", "C", "O", "O"), "C"),
         LabelledSentence(("fine",), ("O",), "C")]


@pytest.fixture(scope="module")
def adapter(soft_attention) -> SoftAttentionAdapter:
    return soft_attention


def test_received_attention_matches_the_raw_maps(adapter: SoftAttentionAdapter) -> None:
    ex = adapter.encode(SENTS[0].text, target=1)
    got = src.attention_received(adapter, ex)
    enc = adapter.model.encoder
    enc.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            maps = enc(input_ids=ex.input_ids.unsqueeze(0), output_attentions=True).attentions
    finally:
        enc.set_attn_implementation("sdpa")
    want = np.stack([[m[0, h].numpy().mean(0) for h in range(m.shape[1])] for m in maps])
    assert got.shape == (2, 2, ex.length) and np.allclose(got, want, atol=1e-6)
    words = src.model_attention_scores(adapter, [ex], SENTS[:1])
    unbelievably = [j for j, o in enumerate(ex.offsets) if o is not None and o[1] <= len("Unbelievably")]
    assert len(unbelievably) > 1 and words[1, 0][0][0] == pytest.approx(want[1, 0, unbelievably].max())


def _prob(adapter: SoftAttentionAdapter, sent: LabelledSentence, kept_words: list[int]) -> float:
    """p(positive) by the raw module with every token of the other words deleted (the kept tokens keep their
    original position ids, as seqexplain's deletion does)."""
    enc = adapter.tokenizer(sent.text, return_offsets_mapping=True)
    spans, pos = [], 0
    for w in sent.words:
        spans.append((pos, pos + len(w)))
        pos += len(w) + 1
    keep = [j for j, (a, b) in enumerate(enc["offset_mapping"])
            if a == b or any(spans[i][0] <= a < spans[i][1] for i in kept_words)]
    ids = torch.tensor([[enc.input_ids[j] for j in keep]])
    with torch.no_grad():
        z = adapter.model(input_ids=ids, position_ids=torch.tensor([keep])).logits
    return float(torch.softmax(z, -1)[0, 1])


def test_lime_equals_a_weighted_ridge_on_deleted_words(adapter: SoftAttentionAdapter) -> None:
    examples = src.encode_all(adapter, SENTS)
    got = src.lime_scores(adapter, examples, SENTS, samples=30, seed=7)
    rng = np.random.RandomState(7)
    words = list(SENTS[0].words)
    data = np.ones((30, len(words)), dtype=int)
    for row in range(1, 30):
        data[row, rng.choice(len(words), rng.randint(1, len(words)), replace=False)] = 0
    probs = np.array([_prob(adapter, SENTS[0], [i for i, keep in enumerate(row) if keep]) for row in data])
    dist = pairwise_distances(data, data[:1], metric="cosine").ravel() * 100
    ridge = Ridge(alpha=1.0).fit(data, probs, sample_weight=np.sqrt(np.exp(-(dist**2) / 25.0**2)))
    assert np.allclose(got[0], ridge.coef_, atol=1e-5)
    assert got[1].tolist() == pytest.approx([_prob(adapter, SENTS[1], [0]) - _prob(adapter, SENTS[1], [])], abs=1e-5)


def test_method_scores_reduce_tokens_to_words(adapter: SoftAttentionAdapter) -> None:
    import seqexplain

    examples = src.encode_all(adapter, SENTS)
    for method in ("occlusion", "gradient_norm", "greedy"):
        words, _ = src.method_scores(adapter, examples, SENTS, method, reduce="max")
        attr = seqexplain.explain(adapter, SENTS[0].text, target=1, method=method)
        owner = src.word_scores_owner(examples[0], SENTS[0])
        want = [np.nanmax([attr.scores[0, j] for j, w in enumerate(owner) if w == i]) for i in range(4)]
        assert words[0] == pytest.approx(want, abs=1e-6) and len(words[1]) == 1


def test_method_scores_name_the_method_once_in_each_warning(adapter: SoftAttentionAdapter) -> None:
    """Integrated gradients' own warnings begin with its name; the run's notes printed it twice."""
    examples = src.encode_all(adapter, SENTS)
    _, warns = src.method_scores(adapter, examples, SENTS, "integrated_gradients", reduce="max", steps=1)
    assert warns and all(w.startswith("integrated_gradients: ") for w in warns), warns
    assert not any(w.startswith("integrated_gradients: integrated_gradients") for w in warns), warns
    # one line per kind of warning with its count, not one per sentence with its own δ (74 lines on bioscope)
    completeness = [w for w in warns if "completeness check fails" in w]
    assert len(completeness) == 1 and f" of {len(SENTS)} sentences: " in completeness[0], warns
