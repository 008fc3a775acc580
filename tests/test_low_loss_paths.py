"""Low-loss paths on a problem with a known barrier (a ring valley), the dual ascent against its closed-form
solution, and the model glue (flat weights, bad weight pairs)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from seqexplain.analysis.low_loss_paths import (
    ModelObjective,
    ValleyConfig,
    barrier,
    bezier_curve,
    check_same_architecture,
    dual_ascent_direction,
    flat_weights,
    load_flat,
    load_weight_pair,
    straight_line,
    valley_track,
)
from seqexplain.errors import InputError
from seqexplain.models.attention_rnn import AttentionRNN, AttentionRNNConfig
from seqexplain.models.attention_rnn_adapter import VectorDocument

CENTRE = torch.tensor([0.0, -0.2], dtype=torch.double)
R2 = 1.04  # the ring through (±1, 0) around CENTRE


class Ring:
    """``L(w) = (‖w − c‖² − R²)²``: zero on a ring through w₁ = (−1, 0) and w₂ = (1, 0); the straight line between
    them crosses the inside, where L(0, 0) = (0.04 − 1.04)² = 1 (the known barrier)."""

    def __init__(self) -> None:
        self.evals = 0

    def loss(self, w: torch.Tensor) -> float:
        self.evals += 1
        return float((((w - CENTRE) ** 2).sum() - R2) ** 2)

    def grad(self, w: torch.Tensor) -> torch.Tensor:
        return 4 * (((w - CENTRE) ** 2).sum() - R2) * (w - CENTRE)


W1 = torch.tensor([-1.0, 0.0], dtype=torch.double)
W2 = torch.tensor([1.0, 0.0], dtype=torch.double)


def test_straight_line_shows_the_barrier_and_ends_exactly_at_w2():
    path = straight_line(Ring(), W1, W2, n=11)
    assert path.t[-1] == 1.0 and torch.equal(path.points[-1], W2) and torch.equal(path.points[0], W1)
    assert abs(path.losses[5] - 1.0) < 1e-12 and abs(barrier(path.losses) - 1.0) < 1e-12
    with pytest.raises(InputError, match="differ in shape"):
        straight_line(Ring(), W1, torch.zeros(3, dtype=torch.double))


def test_valley_tracking_stays_below_the_bound_and_ends_at_w2():
    cfg = ValleyConfig(eps=0.01, step=0.05, stop_distance=1e-3, constraint_eps=0.05, constraint_dist=0.1,
                       inner_steps=25, max_outer=8, max_steps=400)
    path = valley_track(Ring(), W1, W2, cfg)
    assert path.reached and torch.equal(path.points[-1], W2) and path.kinds[-1] == "end"
    assert path.bound == pytest.approx(0.01)
    for loss, kind in zip(path.losses, path.kinds, strict=True):
        assert loss <= path.bound or kind == "fallback"
    assert path.fallbacks == path.kinds.count("fallback")
    assert barrier(path.losses) <= 0.01 + 1e-12  # versus 1.0 on the straight line
    assert "descent" in path.kinds and path.t[0] == 0.0 and path.t[-1] == 1.0
    assert max(float(p[1]) for p in path.points) > 0.5  # it went round the ring, not through it


def test_fallback_is_counted_when_no_step_stays_below_the_bound():
    class Wall(Ring):  # every point but w1 and w2 is far above the bound
        def loss(self, w: torch.Tensor) -> float:
            return 0.0 if torch.equal(w, W1) or torch.equal(w, W2) else 10.0

        def grad(self, w: torch.Tensor) -> torch.Tensor:
            return torch.tensor([0.0, 1.0], dtype=torch.double)

    cfg = ValleyConfig(eps=0.01, step=0.5, inner_steps=20, max_outer=3, max_steps=5, min_alpha=1e-3)
    path = valley_track(Wall(), W1, W2, cfg)
    assert path.fallbacks == 5 and path.kinds.count("fallback") == 5 and not path.reached
    assert torch.equal(path.points[-1], W2) and path.kinds[-1] == "jump"


def test_dual_ascent_matches_the_closed_form():
    rng = np.random.default_rng(0)
    cfg = ValleyConfig(inner_steps=100, max_outer=20, inner_lr=0.03)
    for _ in range(3):
        g = torch.tensor(rng.normal(size=6))
        r = torch.tensor(rng.normal(size=6))
        r = r - 1.5 * (r @ g) / (g @ g) * g if float(r @ g) < 0 else r  # make the target direction ascend
        c = 0.3 * float(g.norm())
        d, info = dual_ascent_direction(g, r, c, cfg)
        gh, rh = g / g.norm(), r / r.norm()
        u = rh - (rh @ gh) * gh
        u = u / u.norm()
        kappa = c / float(g.norm())
        best = -kappa * float(rh @ gh) + math.sqrt(1 - kappa**2) * float(rh @ u)
        assert float(g @ d) <= -c + 1e-3 * float(g.norm())
        assert info["cos"] == pytest.approx(best, abs=2e-3)
        assert abs(float(d.norm()) - 1) < 1e-9


def test_bezier_curve_finds_a_lower_path_than_the_line():
    path, ctrl = bezier_curve(Ring(), W1, W2, steps=400, lr=0.02, n=21)
    assert torch.equal(path.points[0], W1) and torch.equal(path.points[-1], W2) and path.t[-1] == 1.0
    assert barrier(path.losses) < 0.2 < barrier(straight_line(Ring(), W1, W2, 21).losses)
    mid = 0.25 * W1 + 0.5 * ctrl + 0.25 * W2
    assert torch.allclose(path.points[10], mid)


def test_model_flat_weights_and_objective():
    cfg = AttentionRNNConfig(input_dim=4, hidden=[5, 3], decoder="avg")
    torch.manual_seed(0)
    a, b = AttentionRNN(cfg).double(), AttentionRNN(cfg).double()
    a.norms[0].running_mean.fill_(0.3)
    w = flat_weights(a)
    load_flat(b, w)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    rng = np.random.default_rng(1)
    docs = [VectorDocument(["w"] * 3, torch.tensor(rng.normal(size=(3, 4))), None, i % 2) for i in range(6)]
    obj = ModelObjective(b, docs, batch_size=4)
    g = obj.grad(w)
    # the gradient against finite differences along a random direction (BatchNorm statistics have none)
    v = torch.tensor(rng.normal(size=w.numel()))
    n_stats = sum(t.numel() for k, t in a.state_dict().items() if "running" in k)
    assert n_stats and float(g.abs().sum()) > 0
    h = 1e-6
    stats_mask = torch.cat([torch.full((t.numel(),), "running" in k) for k, t in a.state_dict().items()
                            if t.is_floating_point()])
    assert float(g[stats_mask].abs().sum()) == 0.0
    v[stats_mask] = 0
    fd = (obj.loss(w + h * v) - obj.loss(w - h * v)) / (2 * h)
    assert float(g @ v) == pytest.approx(fd, rel=1e-5, abs=1e-8)
    with pytest.raises(InputError, match="different architectures"):
        check_same_architecture(a, AttentionRNN(AttentionRNNConfig(input_dim=4, hidden=[6, 3])))
    with pytest.raises(InputError, match="flat weight vector"):
        load_flat(b, w[:-1])


def test_weight_files_of_different_architectures(tmp_path):
    from seqexplain.models.attention_rnn import save_attention_rnn

    a = AttentionRNN(AttentionRNNConfig(input_dim=4, hidden=[5, 3]))
    b = AttentionRNN(AttentionRNNConfig(input_dim=4, hidden=[6, 3]))
    save_attention_rnn(a, tmp_path / "a.safetensors")
    save_attention_rnn(b, tmp_path / "b.safetensors")
    save_attention_rnn(AttentionRNN(a.config), tmp_path / "c.safetensors")
    with pytest.raises(InputError, match="differ in hidden"):
        load_weight_pair(tmp_path / "a.safetensors", tmp_path / "b.safetensors")
    m1, m2 = load_weight_pair(tmp_path / "a.safetensors", tmp_path / "c.safetensors")
    assert flat_weights(m1).shape == flat_weights(m2).shape


def test_nan_losses_are_never_below_the_bound_and_make_the_barrier_nan():
    # oracle: numpy's max propagates NaN; Python's max([0.1, nan, 0.2]) is 0.2, which made the barrier 0.0
    assert math.isnan(barrier([0.1, float("nan"), 0.2])) and math.isnan(barrier([float("nan"), 1.0, 0.5]))
    assert barrier([0.1, 1.0, 0.2]) == pytest.approx(float(np.max([0.1, 1.0, 0.2]) - 0.2))

    class Diverged(Ring):  # every point but w1 and w2 has a NaN loss (e.g. the model's output overflowed)
        def loss(self, w: torch.Tensor) -> float:
            return 0.0 if torch.equal(w, W1) or torch.equal(w, W2) else float("nan")

        def grad(self, w: torch.Tensor) -> torch.Tensor:
            return torch.tensor([0.0, 1.0], dtype=torch.double)

    cfg = ValleyConfig(eps=0.01, step=0.5, inner_steps=20, max_outer=3, max_steps=5, min_alpha=1e-3)
    path = valley_track(Diverged(), W1, W2, cfg)
    assert path.fallbacks == 5 and "descent" not in path.kinds  # NaN points were accepted as descents below the bound
    assert math.isnan(path.summary()["barrier"]) and math.isnan(path.summary()["max_loss"])
