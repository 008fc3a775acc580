"""Word scores of a sentence from each source Bujel et al. (2021) compare, on one trained soft-attention model.

Every source gives, per sentence, one score per word (sub-token scores reduced to words through the tokenizer's
offsets: :func:`~seqexplain.metrics.token_labelling.word_scores`, max by default):

* ``soft_attention``: the head's unnormalised ``a_i`` as computed inside the forward;
* ``model_attention``: the encoder's own attention at a layer and head — the attention each token *receives*,
  averaged over the query rows (every real position; a single unpadded sentence has no padding);
  :func:`attention_received` gives all layers and heads at once;
* ``lime``: LIME (the ``lime`` package's :class:`lime.lime_base.LimeBase`) on ``p(positive)``, with perturbations
  that delete words through the model's keep-masks (special tokens always kept), sampled as
  ``LimeTextExplainer`` does (the number of deleted words uniform in ``1..W−1``, cosine distance × 100, kernel
  width 25), ``samples`` perturbations per sentence;
* any registered seqexplain method (``gradient_norm``, ``grad_x_input``, ``integrated_gradients``, ``occlusion``,
  ``greedy``…) explaining the positive label, through :func:`seqexplain.explain_many`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from seqexplain.data.token_labels import LabelledSentence
from seqexplain.explain import explain_many
from seqexplain.metrics.token_labelling import word_scores
from seqexplain.models.example import Example
from seqexplain.models.module_state import eval_mode
from seqexplain.runs.warning_log import tally_warnings
from seqexplain.training.soft_attention_batches import word_spans_of


def _words(example: Example, sent: LabelledSentence, token_scores: np.ndarray, reduce: str) -> np.ndarray:
    return word_scores(token_scores, example.offsets, example.text, word_spans_of(sent.words), reduce)


def encode_all(adapter: Any, sents: Sequence[LabelledSentence], positive: int = 1) -> list[Example]:
    return [adapter.encode(s.text, target=positive) for s in sents]


def soft_attention_scores(adapter: Any, examples: Sequence[Example], sents: Sequence[LabelledSentence],
                          reduce: str = "max") -> list[np.ndarray]:
    return [_words(ex, s, adapter.token_scores(ex), reduce) for ex, s in zip(examples, sents, strict=True)]


def attention_received(adapter: Any, example: Example) -> np.ndarray:
    """``[layers, heads, L]``: attention each position receives, averaged over the query rows."""
    out = adapter.forward_example(example, output_attentions=True)
    maps = torch.stack([a[0] for a in out.attentions])  # [layers, heads, L(query), L(key)]
    return maps.mean(2).float().cpu().numpy()


def model_attention_scores(adapter: Any, examples: Sequence[Example], sents: Sequence[LabelledSentence],
                           reduce: str = "max") -> np.ndarray:
    """``[layers, heads]`` object array: per layer and head, the word scores of every sentence."""
    per = [attention_received(adapter, ex) for ex in examples]
    n_l, n_h = per[0].shape[:2]
    out = np.empty((n_l, n_h), dtype=object)
    for layer in range(n_l):
        for head in range(n_h):
            out[layer, head] = [_words(ex, s, p[layer, head], reduce)
                                for ex, s, p in zip(examples, sents, per, strict=True)]
    return out


def lime_scores(adapter: Any, examples: Sequence[Example], sents: Sequence[LabelledSentence], samples: int = 300,
                seed: int = 0, batch_rows: int = 256) -> list[np.ndarray]:
    """LIME weights per word (the features are the words; module docstring); a one-word sentence gets the change
    of ``p(positive)`` when its word is deleted."""
    from lime.lime_base import LimeBase
    from sklearn.metrics import pairwise_distances

    def kernel(d: np.ndarray) -> np.ndarray:
        return np.sqrt(np.exp(-(d**2) / 25.0**2))

    rng = np.random.RandomState(seed)
    out = []
    for ex, sent in zip(examples, sents, strict=True):
        owner = word_scores_owner(ex, sent)
        n_w = len(sent.words)
        data = np.ones((samples, n_w), dtype=int)
        if n_w > 1:
            for row in range(1, samples):
                k = rng.randint(1, n_w)
                data[row, rng.choice(n_w, k, replace=False)] = 0
        keep = torch.ones(samples, ex.length, dtype=torch.bool)
        for j, w in enumerate(owner):
            if w is not None:
                keep[:, j] = torch.from_numpy(data[:, w].astype(bool))
        probs = _probabilities(adapter, ex.replace(objective="prob"), keep, batch_rows)
        if n_w == 1:
            full = float(probs[0])
            specials_only = torch.tensor([[w is None for w in owner]])
            dropped = float(_probabilities(adapter, ex.replace(objective="prob"), specials_only, 1)[0])
            weights = np.array([full - dropped])
        else:
            labels = np.stack([1 - probs, probs], 1)
            dist = pairwise_distances(data, data[:1], metric="cosine").ravel() * 100
            explainer = LimeBase(kernel, random_state=rng)
            _, exp, _, _ = explainer.explain_instance_with_data(data, labels, dist, 1, n_w, feature_selection="none")
            weights = np.zeros(n_w)
            for feature, weight in exp:
                weights[int(feature)] = weight
        out.append(weights)
    return out


def word_scores_owner(example: Example, sent: LabelledSentence) -> list[int | None]:
    """The word index of every position of ``example`` (None for special tokens)."""
    from seqexplain.data.tokenizers import word_index_of_tokens

    return word_index_of_tokens(list(example.offsets), example.text, word_spans_of(sent.words))


def _probabilities(adapter: Any, example: Example, keep: torch.Tensor, batch_rows: int) -> np.ndarray:
    vals = []
    with torch.no_grad(), eval_mode(adapter.model):
        for i in range(0, keep.shape[0], batch_rows):
            vals.append(adapter.score(example, keep=keep[i : i + batch_rows])[:, 0].float().cpu())
    return torch.cat(vals).numpy()


def method_scores(adapter: Any, examples: Sequence[Example], sents: Sequence[LabelledSentence], method: str,
                  reduce: str = "max", **options: Any) -> tuple[list[np.ndarray], list[str]]:
    """Word scores of a registered method explaining each example's target, and the results' distinct warnings
    with the number of sentences that had each (``"<method>: <n> of <N> sentences: …"``; warnings that differ only
    in their figures, such as each sentence's integrated-gradients completeness gap, count as one:
    :func:`~seqexplain.runs.warning_log.tally_warnings`; truncation warnings left out)."""
    items = [{"text": ex.text, "target": int(ex.target_ids[0])} for ex in examples]
    out, per_sentence = [], []
    for attr, ex, sent in zip(explain_many(adapter, items, method, progress=False, **options), examples, sents,
                              strict=True):
        out.append(_words(ex, sent, np.asarray(attr.scores[0], dtype=float), reduce))
        per_sentence.append([w.removeprefix(f"{method}: ") for w in attr.warnings if not w.startswith("truncated")])
    tally = tally_warnings(per_sentence)
    return out, sorted(f"{method}: {n} of {len(examples)} sentences: {w}" for w, n in tally.items())
