"""The evaluation suite's metrics against hand-computed examples, scipy / scikit-learn, and a bag-of-words
classifier whose true attributions are its weights."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import wordpiece_tokenizer
from scipy.stats import kendalltau, spearmanr
from sklearn.metrics import average_precision_score, f1_score, precision_score, recall_score

from seqexplain import load_model
from seqexplain.errors import InputError
from seqexplain.metrics import (
    FERRET_THRESHOLDS,
    agreement_matrix,
    attribution_agreement,
    faithfulness,
    iou_f1,
    kendall_tau,
    plausibility,
    random_baseline,
    spearman,
    threshold_rationale,
    token_prf_corpus,
    top_k_overlap,
    top_k_rationale,
)


def logsig(x: float) -> float:
    return -math.log1p(math.exp(-x))


def sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


# ------------------------------------------------------------------------------------------- the BoW classifier
class BagOfWords(torch.nn.Module):
    """``S = Σ_j m_j w(x_j)`` (sum over the attended tokens of a per-token weight), logits ``[−S/2, S/2]``: so
    ``log p(label 1) = log σ(S)`` and the true attribution of position ``j`` to label 1 is ``w(x_j)``."""

    seqexplain_kind = "classifier"
    num_labels = 2

    def __init__(self, weights: torch.Tensor) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(int(weights.shape[0]), 1)
        with torch.no_grad():
            self.emb.weight.copy_(weights.view(-1, 1))

    def get_input_embeddings(self) -> torch.nn.Embedding:
        return self.emb

    def forward(self, input_ids=None, inputs_embeds=None, attention_mask=None, **kw):
        x = self.emb(input_ids) if inputs_embeds is None else inputs_embeds
        m = torch.ones(x.shape[:2], dtype=x.dtype) if attention_mask is None else attention_mask.to(x.dtype)
        s = (x[..., 0] * m).sum(1)
        return SimpleNamespace(logits=torch.stack([-s / 2, s / 2], dim=-1))


@pytest.fixture(scope="module")
def tok():
    return wordpiece_tokenizer()


def bow(tok, by_token: dict[str, float]):
    """A wrapped :class:`BagOfWords`: weight ``by_token[t]`` for token ``t``, 0 for every other token."""
    w = torch.zeros(len(tok))
    for t, v in by_token.items():
        w[tok.convert_tokens_to_ids(t)] = v
    return load_model(BagOfWords(w), tok)


CAT = {"the": -0.5, "cat": 2.0, "sat": -1.0, "on": 0.5, "mat": 1.0, "[MASK]": 0.25}


@pytest.fixture(scope="module")
def cat_model(tok):
    model = bow(tok, CAT)
    ex = model.encode("the cat sat on the mat", target=1)
    assert ex.tokens == ["[CLS]", "the", "cat", "sat", "on", "the", "mat", "[SEP]"]
    weights = np.array([[CAT.get(t, 0.0) for t in ex.tokens]])  # [0, −.5, 2, −1, .5, −.5, 1, 0]
    return model, ex, weights


# ------------------------------------------------------------------------------------------- faithfulness
def test_bow_drop_and_replace_hand_computed(cat_model):
    model, ex, w = cat_model
    # S = 0 − .5 + 2 − 1 + .5 − .5 + 1 + 0 = 1.5; L = 8, every position visible to the label.
    # 10 %: n = ceil(.8) = 1 -> top {cat(2)};  50 %: n = 4 -> cat 2, mat 1, on .5, then of the zeros the lowest
    # position [CLS](0) -> top {0, 2, 4, 6}, Σ w = 3.5; the rest {1, 3, 5, 7} has Σ w = −2.
    drop = faithfulness(model, ex, w, bins=[10, 50])
    assert drop.full_logprob[0] == pytest.approx(logsig(1.5), abs=1e-6)
    # drop: comprehensiveness S − Σ top = −.5 and −2; sufficiency keeps the top: S' = 2 and 3.5
    assert drop.comprehensiveness[0] == pytest.approx([logsig(1.5) - logsig(-0.5), logsig(1.5) - logsig(-2.0)],
                                                      abs=1e-6)
    assert drop.sufficiency[0] == pytest.approx([logsig(1.5) - logsig(2.0), logsig(1.5) - logsig(3.5)], abs=1e-6)
    assert drop.aopc_comprehensiveness[0] == pytest.approx(np.mean(drop.comprehensiveness[0]))
    # replace by [MASK] (w = .25): each removed weight becomes .25.
    # comp 10 %: 1.5 − 2 + .25 = −.25;  comp 50 %: 1.5 − 3.5 + 4·.25 = −1
    # suff 10 %: 7 removed, Σ w = −.5 -> 1.5 + .5 + 7·.25 = 3.75;  suff 50 %: 1.5 + 2 + 4·.25 = 4.5
    rep = faithfulness(model, ex, w, bins=[10, 50], removal="replace", replace_with="mask")
    assert rep.comprehensiveness[0] == pytest.approx([logsig(1.5) - logsig(-0.25), logsig(1.5) - logsig(-1.0)],
                                                     abs=1e-6)
    assert rep.sufficiency[0] == pytest.approx([logsig(1.5) - logsig(3.75), logsig(1.5) - logsig(4.5)], abs=1e-6)
    assert rep.removal == "replace"
    # [PAD] has weight 0, so for this sum model replacing by it equals dropping
    pad = faithfulness(model, ex, w, bins=[10, 50], removal="replace", replace_with="pad")
    assert pad.comprehensiveness == pytest.approx(drop.comprehensiveness, abs=1e-6)
    assert pad.sufficiency == pytest.approx(drop.sufficiency, abs=1e-6)
    same = faithfulness(model, ex, w, bins=[10, 50], removal="replace", replace_with=model.tokenizer.mask_token_id)
    assert same.comprehensiveness == pytest.approx(rep.comprehensiveness)


def test_ferret_variant_hand_computed(cat_model):
    model, ex, w = cat_model
    res = faithfulness(model, ex, w, variant="ferret")
    assert res.bins == list(FERRET_THRESHOLDS) and res.quantity == "prob"
    # candidates: positions 1..6 (not [CLS]/[SEP]), |C| = 6, n_t = floor(t/100 · 6):
    # 10 %: 0 -> skip; 20 %: 1 -> {cat}; 30 %: 1 -> same -> skip; 40 %: 2 -> {cat, mat}; 50 %: 3 -> {cat, mat, on};
    # 60 %: 3 -> skip; 70 %..100 %: 4..6 first ones add only scores < 0 -> the same set -> skip.
    nan = float("nan")
    p = sig(1.5)
    # comprehensiveness: S − 2 = −.5, S − 3 = −1.5, S − 3.5 = −2
    comp = [nan, p - sig(-0.5), nan, p - sig(-1.5), p - sig(-2.0), nan, nan, nan, nan, nan]
    # sufficiency removes C \ R (specials stay): Σ w over it = −.5, −1.5, −2 -> S' = 2, 3, 3.5
    suff = [nan, p - sig(2.0), nan, p - sig(3.0), p - sig(3.5), nan, nan, nan, nan, nan]
    np.testing.assert_allclose(res.comprehensiveness[0], comp, atol=1e-6)
    np.testing.assert_allclose(res.sufficiency[0], suff, atol=1e-6)
    assert res.aopc_comprehensiveness[0] == pytest.approx(np.mean([comp[1], comp[3], comp[4]]), abs=1e-6)
    assert res.aopc_sufficiency[0] == pytest.approx(np.mean([suff[1], suff[3], suff[4]]), abs=1e-6)
    # no positive score: every threshold is skipped and AOPC is 0 (ferret's convention)
    none = faithfulness(model, ex, -np.abs(w) - 1, variant="ferret")
    assert np.isnan(none.comprehensiveness).all() and none.aopc_comprehensiveness[0] == 0.0


def test_true_weights_rank_best_on_a_bag_of_words(tok):
    rng = np.random.default_rng(3)
    text = "paris is the capital of france and berlin is the capital of germany"
    vocab = sorted(set(text.split()))
    model = bow(tok, {t: float(v) for t, v in zip(vocab, rng.normal(size=len(vocab)), strict=True)})
    ex = model.encode(text, target=1)
    w = model.embed(ex)[0, :, 0].detach().double().numpy()[None, :]  # the true attribution to label 1
    bins = [10.0, 20.0, 50.0]
    true = faithfulness(model, ex, w, bins=bins)
    reverse = faithfulness(model, ex, -w, bins=bins)
    base = random_baseline(model, ex, bins=bins, seed=0, repeats=8)
    # removing the n_k largest weights lowers S (hence log σ(S)) most among all n_k-subsets, at every bin
    for run in [reverse, *base.runs]:
        assert (true.comprehensiveness >= run.comprehensiveness - 1e-9).all()
        assert (true.sufficiency <= run.sufficiency + 1e-9).all()
    assert true.aopc_comprehensiveness[0] > base.aopc_comprehensiveness[0]
    assert true.aopc_sufficiency[0] < base.aopc_sufficiency[0]


def test_random_baseline_is_seeded_and_defined(cat_model):
    model, ex, _ = cat_model
    a = random_baseline(model, ex, bins=[10, 50], seed=7, repeats=3)
    b = random_baseline(model, ex, bins=[10, 50], seed=7, repeats=3)
    c = random_baseline(model, ex, bins=[10, 50], seed=8, repeats=3)
    np.testing.assert_array_equal(a.comprehensiveness, b.comprehensiveness)
    np.testing.assert_array_equal(a.aopc_sufficiency, b.aopc_sufficiency)
    assert not np.array_equal([r.comprehensiveness for r in a.runs], [r.comprehensiveness for r in c.runs])
    # run r ranks by 1 + a permutation drawn from default_rng(seed), in order r, then target
    rng = np.random.default_rng(7)
    orders = [np.stack([1.0 + rng.permutation(ex.length)]) for _ in range(3)]
    by_hand = [faithfulness(model, ex, s, bins=[10, 50]) for s in orders]
    np.testing.assert_allclose(a.comprehensiveness, np.mean([r.comprehensiveness for r in by_hand], axis=0))
    np.testing.assert_allclose(a.aopc_sufficiency, np.mean([r.aopc_sufficiency for r in by_hand], axis=0))
    np.testing.assert_allclose(a.aopc_comprehensiveness,
                               np.mean([r.aopc_comprehensiveness for r in by_hand], axis=0))
    np.testing.assert_allclose(a.sufficiency, np.mean([r.sufficiency for r in by_hand], axis=0))
    with pytest.raises(InputError):
        random_baseline(model, ex, repeats=0)
    for seed in (-1, 1.5, "0", True):  # numpy's ValueError / TypeError before
        with pytest.raises(InputError, match="seed must be a non-negative integer"):
            random_baseline(model, ex, seed=seed)
    # a numpy integer (e.g. from a config array) is a count like any other; it was refused as "not a number"
    np.testing.assert_array_equal(random_baseline(model, ex, bins=[10, 50], seed=7, repeats=np.int64(3)).sufficiency,
                                  a.sufficiency)


@torch.no_grad()
def test_replace_on_a_language_model_matches_direct_embeds(gpt2):
    model = load_model(*gpt2)
    ex = model.encode("The cat sat", " on the")
    scores = np.random.default_rng(0).normal(size=(ex.n_targets, ex.length))
    res = faithfulness(model, ex, scores, bins=[50.0], removal="replace", replace_with="unk")
    base, unk = model.embed(ex)[0], model.embed(ex.replace(input_ids=torch.full_like(ex.input_ids, 3)))[0]
    assert model.tokenizer.unk_token_id == 3
    full = model.score(ex)[0].double().numpy()
    for i in range(ex.n_targets):
        vis = ex.visible_positions(i)
        n = math.ceil(0.5 * len(vis))
        top = sorted(vis, key=lambda j, i=i: (-scores[i, j], j))[:n]
        rest = [j for j in vis if j not in top]
        for removed, table in ((top, res.comprehensiveness), (rest, res.sufficiency)):
            e = base.clone()
            e[removed] = unk[removed]
            assert table[i, 0] == pytest.approx(full[i] - model.score(ex, embeds=e[None])[0, i].item(), abs=1e-5)
    rb = random_baseline(model, ex, bins=[50.0], seed=1, repeats=2, removal="replace", replace_with="unk")
    assert rb.comprehensiveness.shape == (ex.n_targets, 1)


def test_faithfulness_options_raise_input_errors(cat_model):
    model, ex, w = cat_model
    for kwargs in ({"variant": "x"}, {"removal": "x"}, {"removal": "replace", "replace_with": -1},
                   {"removal": "replace", "replace_with": "bos"}, {"bins": [0]}, {"token_budget": 0}):
        with pytest.raises(InputError):
            faithfulness(model, ex, w, **kwargs)


def test_faithfulness_warns_about_nan_scores_at_visible_positions(cat_model):
    model, ex, w = cat_model
    holes = w.copy()
    holes[0, 2] = np.nan  # "cat" is visible to the label but unscored: ranked last, removed as least important
    with pytest.warns(RuntimeWarning, match="NaN at 1 position"):
        res = faithfulness(model, ex, holes, bins=[10])
    # 10 % of 8 = 1 position: the best scored one, mat (1.0), not cat
    assert res.comprehensiveness[0, 0] == pytest.approx(logsig(1.5) - logsig(0.5), abs=1e-6)


# ------------------------------------------------------------------------------------------- plausibility
def test_discretisation_hand_computed():
    s = [0.1, 0.9, np.nan, 0.4, 0.4, -0.2]
    assert top_k_rationale(s, 2) == [1, 3]  # 0.9, then the tie 0.4/0.4 to the lower position
    assert top_k_rationale(s, gold=[0, 4, 5]) == [1, 3, 4]  # k = |gold| = 3
    assert top_k_rationale(s, 10) == [0, 1, 3, 4, 5]  # NaN (not visible) is never selected
    assert threshold_rationale(s, 0.4) == [1, 3, 4]
    assert threshold_rationale(s, 0.0) == [0, 1, 3, 4]
    with pytest.raises(InputError):
        top_k_rationale(s)
    with pytest.raises(InputError):
        top_k_rationale(s, -1)


def test_token_prf_corpus_hand_computed_and_sklearn():
    pred, gold = [[1, 2], [0, 3, 4], []], [[2, 3], [0, 3], [1]]
    # micro: TP = 1 + 2 + 0 = 3, |R| = 5, |G| = 5 -> P = R = F1 = 3/5
    micro = token_prf_corpus(pred, gold)
    assert (micro.precision, micro.recall, micro.f1) == pytest.approx((0.6, 0.6, 0.6))
    # macro: P = (1/2 + 2/3 + 0)/3, R = (1/2 + 1 + 0)/3, F1 = (1/2 + 0.8 + 0)/3
    macro = token_prf_corpus(pred, gold, average="macro")
    assert macro.precision == pytest.approx((0.5 + 2 / 3) / 3)
    assert macro.recall == pytest.approx(1.5 / 3)
    assert macro.f1 == pytest.approx(1.3 / 3)
    # micro = scikit-learn on the concatenated indicator vectors (5 positions per instance)
    y = np.concatenate([np.isin(np.arange(5), g) for g in gold]).astype(int)
    p = np.concatenate([np.isin(np.arange(5), r) for r in pred]).astype(int)
    assert micro.precision == pytest.approx(precision_score(y, p))
    assert micro.recall == pytest.approx(recall_score(y, p))
    assert micro.f1 == pytest.approx(f1_score(y, p))
    with pytest.raises(InputError):
        token_prf_corpus(pred, gold, average="weighted")


def test_iou_f1_macro_hand_computed():
    pred = [[(0, 4), (6, 8)], [(0, 2)], []]
    gold = [[(1, 4), (7, 10)], [(0, 4), (5, 6)], [(3, 5)]]
    # TP per instance: 1 (IOU 3/4; the other 1/4), 1 (IOU 1/2), 0
    # macro P over instances with predictions: (1/2 + 1/1)/2 = 3/4; macro R: (1/2 + 1/2 + 0)/3 = 1/3
    macro = iou_f1(pred, gold, average="macro")
    assert macro.precision == pytest.approx(0.75)
    assert macro.recall == pytest.approx(1 / 3)
    assert macro.f1 == pytest.approx(2 * 0.75 * (1 / 3) / (0.75 + 1 / 3))
    micro = iou_f1(pred, gold)  # 2 TP / 3 predicted, 2 / 5 gold
    assert (micro.precision, micro.recall) == pytest.approx((2 / 3, 2 / 5))
    with pytest.raises(InputError):
        iou_f1(pred, gold, average="weighted")


def test_plausibility_convenience_hand_computed():
    scores = np.array([0.9, 0.8, 0.1, 0.7, np.nan, 0.2])
    gold = np.array([1, 1, 0, 0, 0, 1], dtype=bool)
    got = plausibility(scores, gold)
    # k = |gold| = 3 -> {0, 1, 3}; TP {0, 1}: P = R = 2/3
    assert got.rationale == [0, 1, 3]
    assert (got.token.precision, got.token.recall) == pytest.approx((2 / 3, 2 / 3))
    # spans: predicted (0,2), (3,4); gold (0,2), (5,6): (0,2) matches -> P = 1/2, R = 1/2
    assert (got.iou.precision, got.iou.recall) == pytest.approx((0.5, 0.5))
    # ranking 0.9 g, 0.8 g, 0.7, 0.2 g, 0.1 -> AP = 1·1/3 + 1·1/3 + 3/4·1/3
    assert got.auprc == pytest.approx((1 + 1 + 0.75) / 3)
    vis = ~np.isnan(scores)
    assert got.auprc == pytest.approx(average_precision_score(gold[vis], scores[vis]))
    thr = plausibility(scores, gold, threshold=0.75)
    assert thr.rationale == [0, 1] and thr.token.precision == 1.0 and thr.iou.f1 == pytest.approx(2 / 3)
    with pytest.raises(InputError):
        plausibility(scores, gold[:3])
    with pytest.raises(InputError):
        plausibility(scores, gold, k=2, threshold=0.5)


# ------------------------------------------------------------------------------------------- agreement
def test_rank_correlations_hand_computed_and_scipy():
    a, b = [1.0, 2.0, 3.0, 4.0, np.nan], [1.0, 3.0, 2.0, 4.0, 5.0]
    # 6 pairs over the 4 common positions, one discordant (positions 1, 2): τ = (5 − 1)/6
    assert kendall_tau(a, b) == pytest.approx(2 / 3)
    # rank differences 0, 1, 1, 0: ρ = 1 − 6·2 / (4·(16 − 1)) = 0.8
    assert spearman(a, b) == pytest.approx(0.8)
    rng = np.random.default_rng(0)
    for trial in range(10):
        x = np.round(rng.normal(size=9), 0 if trial % 2 else 2)
        y = np.round(rng.normal(size=9), 1)
        assert spearman(x, y) == pytest.approx(spearmanr(x, y).statistic)
        assert kendall_tau(x, y) == pytest.approx(kendalltau(x, y).statistic)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))


def test_top_k_overlap_hand_computed():
    a = [0.9, 0.1, 0.8, 0.3, np.nan]
    b = [0.9, 0.8, 0.1, 0.3, 5.0]
    assert top_k_overlap(a, b, 2) == pytest.approx(0.5)  # {0, 2} vs {0, 1}
    assert top_k_overlap(a, b, 3) == pytest.approx(2 / 3)  # {0, 2, 3} vs {0, 1, 3}
    assert top_k_overlap(a, b, 9) == 1.0  # k capped at the 4 common positions
    with pytest.raises(InputError):
        top_k_overlap(a, b, 0)


def test_agreement_matrix_hand_computed():
    nan = np.nan
    grad = np.array([[1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, nan]])
    occ = np.array([[1.0, 3.0, 2.0, 4.0], [1.0, 2.0, 3.0, nan]])
    att = np.array([[4.0, 3.0, 2.0, 1.0], [5.0, 5.0, 5.0, nan]])
    m = agreement_matrix({"grad": grad, "occ": occ, "att": att})
    # target 0: grad/occ 2/3, grad/att −1, occ/att −2/3; target 1 (3 visible): grad/occ −1, att constant -> NaN
    expected = np.array([[1.0, (2 / 3 - 1) / 2, -1.0],
                         [(2 / 3 - 1) / 2, 1.0, -2 / 3],
                         [-1.0, -2 / 3, 1.0]])
    np.testing.assert_allclose(m, expected)
    top = agreement_matrix({"grad": grad, "occ": occ}, metric="top_k_overlap", k=2)
    # target 0: {2, 3} vs {1, 3} -> 1/2; target 1: {0, 1} vs {1, 2} -> 1/2
    np.testing.assert_allclose(top, [[1.0, 0.5], [0.5, 1.0]])
    # k = 3: target 0 {1, 2, 3} in both; target 1 has 3 visible positions, all in both
    top3 = agreement_matrix({"grad": grad, "occ": occ}, metric="top_k_overlap", k=3)
    np.testing.assert_allclose(top3, [[1.0, 1.0], [1.0, 1.0]])
    # top_k (percent), 50 %: target 0 ceil(2) = 2 -> 1/2; target 1 ceil(1.5) = 2 -> {0, 1} vs {1, 2} -> 1/2
    pct = agreement_matrix({"grad": grad, "occ": occ}, metric="top_k", k_percent=50)
    np.testing.assert_allclose(pct, [[1.0, 0.5], [0.5, 1.0]])
    sp = agreement_matrix({"grad": grad[0], "occ": occ[0]}, metric="spearman")
    assert sp[0, 1] == pytest.approx(0.8)
    with pytest.raises(InputError):
        agreement_matrix({"grad": grad, "occ": occ[:, :3]})
    with pytest.raises(InputError):
        agreement_matrix({"grad": grad}, metric="pearson")
    with pytest.raises(InputError):
        agreement_matrix({})


def test_agreement_of_attributions_on_the_bow(cat_model):
    from seqexplain import explain

    model, ex, w = cat_model
    a = explain(model, "the cat sat on the mat", 1, method="occlusion")
    b = explain(model, "the cat sat on the mat", 1, method="grad_x_input")
    m = agreement_matrix({"occlusion": a, "grad_x_input": b, "true": w}, metric="spearman")
    assert m[0, 1] == pytest.approx(spearmanr(a.scores[0], b.scores[0]).statistic)
    gold = np.isin(np.arange(ex.length), [2, 6])
    assert plausibility(a, gold) == plausibility(a.scores[0], gold)
    with pytest.raises(InputError):
        plausibility(a, gold, target=1)
    _, mean = attribution_agreement(a, b, metric="top_k_overlap", k=2)
    assert mean == pytest.approx(top_k_overlap(a.scores[0], b.scores[0], 2))
