"""Dumped quantities of the Snell et al. pipeline: Δ against finite differences of the raw module (sign asserted),
oriented β, β^px against a hand-computed case and autograd, the logistic-regression C choice against a brute-force
loop, the Parquet round trip and the refusals (another data set, another vocabulary)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seqexplain.analysis.snell_baselines import (
    BagOfEmbeddings,
    fit_logistic,
    logistic_scores,
    px_scores,
    train_bag_of_embeddings,
)
from seqexplain.analysis.training_dynamics import (
    classifier_quantities,
    make_dump,
    orient,
    read_dump,
    read_dumps,
    write_dump,
)
from seqexplain.errors import DataError, InputError
from seqexplain.models.snell_classifier import SnellClassifier, SnellClassifierConfig

V = 9
EXAMPLES = [([2, 3, 4, 1], 1), ([2, 5, 6, 7, 1], 0), ([2, 8, 1], 1)]


def make(n_classes: int = 2, uniform: bool = False) -> SnellClassifier:
    torch.manual_seed(7)
    return SnellClassifier(SnellClassifierConfig(V, n_classes, 4, 3, 3, uniform)).double()


def loss_at(net: SnellClassifier, ids: list[int], label: int, scale: torch.Tensor) -> float:
    """Cross-entropy of the raw module with token t's embedding multiplied by ``scale[t]``."""
    with torch.no_grad():
        z, _ = net.forward_embeds(net.embedding(torch.tensor([ids])) * scale.view(1, -1, 1))
    return float(torch.nn.functional.cross_entropy(z, torch.tensor([label])))


@pytest.mark.parametrize("n_classes", [2, 3])
def test_delta_is_minus_dloss_dmultiplier(n_classes):
    net = make(n_classes)
    examples = [(ids, y % n_classes) for ids, y in EXAMPLES]
    got = classifier_quantities(net, examples, batch_size=2)
    orig = classifier_quantities(net, examples, batch_size=2, sign="original")
    eps = 1e-6
    for (ids, y), q, o in zip(examples, got, orig, strict=True):
        n = len(ids)
        fd = []
        for t in range(n):
            up, down = torch.ones(n, dtype=torch.float64), torch.ones(n, dtype=torch.float64)
            up[t] += eps
            down[t] -= eps
            fd.append(-(loss_at(net, ids, y, up) - loss_at(net, ids, y, down)) / (2 * eps))
        np.testing.assert_allclose(q.delta, fd, rtol=1e-4, atol=1e-6)  # positive = lowers the loss
        np.testing.assert_allclose(o.delta, -np.asarray(fd), rtol=1e-4, atol=1e-6)


def test_delta_sign_on_a_supporting_token():
    # hand-built uniform model where β_t = embedding's first coordinate (LSTM input passes through the cell):
    # a token with a large positive first coordinate pushes s up, supporting label 1 and opposing label 0
    net = make(uniform=True)
    with torch.no_grad():
        net.embedding.weight.zero_()
        net.embedding.weight[3, 0] = 3.0
    (pos,) = classifier_quantities(net, [([2, 3, 1], 1)])
    (neg,) = classifier_quantities(net, [([2, 3, 1], 0)])
    s_grad_sign = np.sign(_ds_dm(net, [2, 3, 1])[1])
    assert s_grad_sign != 0
    assert np.sign(pos.delta[1]) == s_grad_sign and np.sign(neg.delta[1]) == -s_grad_sign


def _ds_dm(net: SnellClassifier, ids: list[int]) -> np.ndarray:
    m = torch.ones(len(ids), dtype=torch.float64, requires_grad=True)
    s = net.parts(net.embedding(torch.tensor([ids])) * m.view(1, -1, 1)).s[0, 0]
    (g,) = torch.autograd.grad(s, m)
    return g.numpy()


def test_beta_oriented_to_gold_label():
    beta = np.array([[1.0], [-2.0]])
    assert orient(beta, 1, True).tolist() == [1.0, -2.0] and orient(beta, 0, True).tolist() == [-1.0, 2.0]
    multi = np.array([[3.0, 1.0, 2.0]])  # β[y] − mean of the others
    assert orient(multi, 0, False).tolist() == [1.5] and orient(multi, 1, False).tolist() == [-1.5]
    # two classes as logits [0, s]: the multi-class rule equals the binary one
    s = np.array([[0.0, 0.7], [0.0, -0.2]])
    np.testing.assert_allclose(orient(s, 1, False), orient(s[:, 1:], 1, True))


def test_dumped_beta_and_alpha_are_the_models():
    net = make()
    q = classifier_quantities(net, EXAMPLES)
    for (ids, y), got in zip(EXAMPLES, q, strict=True):
        with torch.no_grad():
            p = net.parts(net.embedding(torch.tensor([ids])))
        np.testing.assert_allclose(got.alpha, p.alpha[0].numpy(), atol=1e-6)
        np.testing.assert_allclose(got.beta, p.beta[0, :, 0].numpy() * (2 * y - 1), atol=1e-6)


def test_px_scores_hand_case_and_autograd():
    boe = BagOfEmbeddings(4, 2, emb_dim=2).double()
    with torch.no_grad():
        boe.embedding.weight.copy_(torch.tensor([[0.0, 0], [1, 0], [0, 1], [2, 2]]))
        boe.linear.weight.copy_(torch.tensor([[1.0, -1.0]]))
        boe.linear.bias.fill_(0.5)
    (pos,), (neg,) = px_scores(boe, [([1, 2, 3], 1)]), px_scores(boe, [([1, 2, 3], 0)])
    assert pos.tolist() == [1.0, -1.0, 0.0] and neg.tolist() == [-1.0, 1.0, 0.0]
    # β^px_t = n · ∂z/∂m_t (the token's share of the logit)
    ids = torch.tensor([[1, 2, 3]])
    m = torch.ones(3, dtype=torch.float64, requires_grad=True)
    z = boe.forward_embeds(boe.embedding(ids) * m.view(1, -1, 1), torch.tensor([3]))[0, 1]
    (g,) = torch.autograd.grad(z, m)
    np.testing.assert_allclose(3 * g.numpy(), pos, atol=1e-12)


def test_bag_of_embeddings_keeps_best_validation_epoch():
    rng = np.random.default_rng(0)
    train = [([int(t) for t in rng.integers(0, 6, 4)], 0) for _ in range(20)]
    train = [(ids, int(3 in ids)) for ids, _ in train]
    model, info = train_bag_of_embeddings(train, train[:8], 6, 2, emb_dim=3, epochs=3, seed=0)
    assert 0 <= info["best_epoch"] <= 3
    ids = torch.tensor([e[0] for e in train[:8]])
    with torch.no_grad():
        z = model(ids, torch.full((8,), 4))
        loss = torch.nn.functional.cross_entropy(z, torch.tensor([e[1] for e in train[:8]]))
    assert abs(float(loss) - info["val_loss"]) < 1e-5


def test_logistic_c_is_best_on_validation():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(1)
    data = [([int(t) for t in rng.integers(0, 8, 5)], 0) for _ in range(60)]
    data = [(ids, int(ids.count(2) + ids.count(3) > ids.count(4) + ids.count(5))) for ids, _ in data]
    train, val = data[:40], data[40:]
    grid = (0.01, 0.1, 1.0, 10.0)
    weights, info = fit_logistic(train, val, 8, c_grid=grid)
    x = np.zeros((len(data), 8))
    for r, (ids, _) in enumerate(data):
        for i in ids:
            x[r, i] += 1
    y = np.array([e[1] for e in data])
    accs = [float((LogisticRegression(C=c, max_iter=2000).fit(x[:40], y[:40]).predict(x[40:]) == y[40:]).mean())
            for c in grid]
    assert info["C"] == grid[int(np.argmax(accs))] and info["val_accuracy"] == max(accs)
    (scores,) = logistic_scores(weights, [([2, 4], 0)])
    assert scores.tolist() == pytest.approx([-weights[2, 0], -weights[4, 0]])


def test_dump_round_trip_and_refusals(tmp_path):
    net = make()
    d = make_dump(net, EXAMPLES, run="normal_A", step=3, split="val", dataset="toy", vocab_hash="v1")
    back = read_dump(write_dump(d, tmp_path))
    assert (back.run, back.step, back.labels, back.predicted) == ("normal_A", 3, d.labels, d.predicted)
    for a, b in zip(d.alpha + d.beta + d.delta, back.alpha + back.beta + back.delta, strict=True):
        assert np.array_equal(a, b)
    assert read_dumps(tmp_path, "val")[0].fingerprint == d.fingerprint
    other = tmp_path / "other"
    write_dump(d, other)
    write_dump(make_dump(net, EXAMPLES[:2], run="normal_B", step=3, split="val", dataset="toy", vocab_hash="v1"), other)
    with pytest.raises(DataError, match="is from another data set"):
        read_dumps(other, "val")
    vocab_dir = tmp_path / "vocab"
    write_dump(d, vocab_dir)
    write_dump(make_dump(net, EXAMPLES, run="normal_B", step=3, split="val", dataset="toy", vocab_hash="v2"), vocab_dir)
    with pytest.raises(InputError, match="different vocabularies"):
        read_dumps(vocab_dir, "val")
    with pytest.raises(DataError, match="no dumps of split 'train'"):
        read_dumps(tmp_path, "train")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x__val__step0000001.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match="is not a snell2021 dump"):
        read_dumps(tmp_path / "junk", "val")
