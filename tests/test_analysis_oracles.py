"""Independent oracles for ``seqexplain.analysis`` contracts that the audit found correct: state gradients against
the Jacobian of the raw ``nn.LSTM`` / ``nn.GRU`` modules (not the package's reference loop) at segment boundaries,
delays beyond the segment and the stream, rows that do not divide the stream, float64; spectra against numpy;
straight lines against numpy interpolation; same seed → same output."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seqexplain.analysis.state_gradients import iter_rnn_state_gradients
from seqexplain.models.rnn import RNNLanguageModel, RNNLMConfig

torch.set_num_threads(1)


def _raw_states(model: RNNLanguageModel, xs: torch.Tensor, state0: list, layer: int, which: int) -> torch.Tensor:
    """``[L, H]`` state ``which`` of ``layer`` after each input row of ``xs``, by the raw ``nn.RNNBase`` modules one
    step at a time (their own forward, not :meth:`RNNLanguageModel.step`)."""
    st = [tuple(v.view(1, 1, -1) for v in lay) for lay in state0]
    outs = []
    for t in range(xs.shape[0]):
        inp, new = xs[t].view(1, 1, -1), []
        for li in range(layer + 1):
            if model.config.cell == "lstm":
                inp, hc = model.layers[li](inp, st[li])
                new.append(hc)
            else:
                inp, h = model.layers[li](inp, st[li][0])
                new.append((h,))
        st = new
        outs.append(st[layer][which].reshape(-1))
    return torch.stack(outs)


def _brute_force(model: RNNLanguageModel, ids: torch.Tensor, rows: int, seg: int, layer: int, which: int,
                 max_delay: int) -> dict[tuple[int, int], torch.Tensor]:
    """``{(t, t-d): ∂s_t/∂x_{t-d}}`` over the stream as rows × segments, the state carried as a constant."""
    emb = model.get_input_embeddings().weight.detach()
    n = len(ids) // rows
    out = {}
    for b in range(rows):
        st = [tuple(torch.zeros(model.config.hidden_size, dtype=emb.dtype) for _ in model.state_names)
              for _ in range(layer + 1)]
        for start in range(0, n, seg):
            xs = emb[ids[b * n + start : b * n + min(n, start + seg)]]
            jac = torch.autograd.functional.jacobian(lambda x, st=st: _raw_states(model, x, st, layer, which), xs)
            for t in range(xs.shape[0]):
                for d in range(min(t, max_delay) + 1):
                    out[(b * n + start + t, b * n + start + t - d)] = jac[t, :, t - d]
            with torch.no_grad():
                full = [_raw_states(model, xs, st, li, w) for li in range(layer + 1) for w in range(len(st[0]))]
                k = len(st[0])
                st = [tuple(full[li * k + w][-1] for w in range(k)) for li in range(layer + 1)]
    return out


@pytest.mark.parametrize("cell,layers,layer,state,n_ids,rows,seg,max_delay,dtype", [
    ("lstm", 2, 1, "cell", 23, 3, 5, 3, torch.float32),   # rows do not divide the stream (2 tokens left over)
    ("lstm", 2, 1, "hidden", 23, 3, 5, 8, torch.float32),  # delays beyond the segment
    ("lstm", 1, 0, "cell", 23, 3, 50, 100, torch.float32),  # one segment, delays beyond the stream
    ("gru", 2, 0, "hidden", 20, 4, 4, 2, torch.float64),
    ("rnn_relu", 2, 1, "hidden", 17, 2, 3, 0, torch.float32),
])
def test_rnn_state_gradients_against_the_raw_modules(cell: str, layers: int, layer: int, state: str, n_ids: int,
                                                     rows: int, seg: int, max_delay: int, dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    model = RNNLanguageModel(RNNLMConfig(vocab_size=20, cell=cell, embedding_size=3, hidden_size=4,  # type: ignore[arg-type]
                                         num_layers=layers, init_scale=0.6)).eval().to(dtype)
    ids = torch.randint(0, 20, (n_ids,), generator=torch.Generator().manual_seed(1))
    with pytest.warns(RuntimeWarning) if n_ids % rows else _no_warning():
        chunks = list(iter_rnn_state_gradients(model, ids, layer=layer, state=state, max_delay=max_delay,  # type: ignore[arg-type]
                                               segment_length=seg, batch_size=rows))
    ref = _brute_force(model, ids, rows, seg, layer, model.state_names.index(state), max_delay)
    got = {}
    for c in chunks:
        assert c.grads.dtype == dtype
        for i in range(c.positions.shape[0]):
            for d in range(max_delay + 1):
                if c.valid[i, d]:
                    got[(int(c.positions[i]), int(c.source_positions[i, d]))] = c.grads[i, d]
                else:  # undefined delays: zeros and source -1
                    assert float(c.grads[i, d].abs().sum()) == 0 and int(c.source_positions[i, d]) == -1
    assert set(got) == set(ref)
    tol = 1e-12 if dtype == torch.float64 else 1e-6
    for key, g in got.items():
        torch.testing.assert_close(g, ref[key], rtol=tol, atol=tol)


class _no_warning:
    def __enter__(self) -> None:
        import warnings

        self._cm = warnings.catch_warnings()
        self._cm.__enter__()
        warnings.simplefilter("error", RuntimeWarning)

    def __exit__(self, *exc: object) -> None:
        self._cm.__exit__(*exc)


def test_spectra_against_numpy() -> None:
    from seqexplain.analysis.spectra import EmbeddingNormalizer, relative_memory, rms_singular_values, summarize
    from seqexplain.analysis.state_gradient_stats import StateGradientStats

    gen = torch.Generator().manual_seed(3)
    g = torch.randn(2, 3, 5, 4, generator=gen, dtype=torch.float64)
    gram = g.transpose(-1, -2) @ g + 0.1 * torch.eye(4, dtype=torch.float64)
    stats = StateGradientStats(["all", "x"], torch.tensor([[4.0, 4, 4], [1, 0, 2]], dtype=torch.float64), g, gram)
    emb = torch.randn(40, 4, generator=gen, dtype=torch.float64) @ torch.randn(4, 4, generator=gen,
                                                                             dtype=torch.float64)
    w = torch.rand(40, generator=gen, dtype=torch.float64)
    norm = EmbeddingNormalizer.fit(emb, w)
    e, wn = emb.numpy(), (w / w.sum()).numpy()
    cov = ((e - wn @ e) * wn[:, None]).T @ (e - wn @ e)  # weighted population covariance
    np.testing.assert_allclose(norm.cov.numpy(), cov, rtol=1e-12)
    d = np.linalg.cholesky(cov)
    v = np.array([1.0, -2.0, 0.5, 3.0])
    u = np.linalg.solve(d, v)
    u /= np.linalg.norm(u)
    for use, m in (("gram", d.T @ gram.numpy() @ d), ("mean", (g.numpy() @ d).transpose(0, 1, 3, 2) @ (g.numpy() @ d))):
        want = np.einsum("e,cdef,f->cd", u, m, u) / (np.trace(m, axis1=-2, axis2=-1) / 4)
        np.testing.assert_allclose(relative_memory(stats, torch.tensor(v), norm, use=use).numpy(), want, rtol=1e-9)
    rms = np.sqrt(np.clip(np.linalg.eigvalsh(d.T @ gram.numpy() @ d), 0, None))[..., ::-1]
    np.testing.assert_allclose(rms_singular_values(gram, norm).numpy(), rms, rtol=1e-9)
    summ = summarize(stats, norm, k=2)
    sv = np.linalg.svd(g.numpy() @ d, compute_uv=False)
    np.testing.assert_allclose(summ.top[0].numpy(), sv[0, :, :2], rtol=1e-10)
    np.testing.assert_allclose(summ.total[1, 2].numpy(), sv[1, 2].sum(), rtol=1e-10)
    assert np.isnan(summ.total[1, 1].item()) and np.isnan(summ.top[1, 1]).all()  # the empty class and delay


def test_straight_line_is_numpy_interpolation_and_seeds_repeat() -> None:
    from seqexplain.analysis.clustering import cluster_explanations
    from seqexplain.analysis.low_loss_paths import bezier_curve, straight_line

    class Bowl:
        def loss(self, w: torch.Tensor) -> float:
            return float((w.double() ** 2).sum())

        def grad(self, w: torch.Tensor) -> torch.Tensor:
            return 2 * w.double()

    rng = np.random.default_rng(0)
    w1, w2 = torch.tensor(rng.normal(size=6)), torch.tensor(rng.normal(size=6))
    path = straight_line(Bowl(), w1, w2, n=5)
    for t, p in zip(path.t, path.points, strict=True):
        want = [np.interp(t, [0.0, 1.0], [a, b]) for a, b in zip(w1.numpy(), w2.numpy(), strict=True)]
        np.testing.assert_allclose(p.numpy(), want, rtol=1e-12, atol=1e-15)
    assert path.losses == [float((p**2).sum()) for p in path.points]
    a, b = bezier_curve(Bowl(), w1, w2, steps=20, seed=4)[1], bezier_curve(Bowl(), w1, w2, steps=20, seed=4)[1]
    assert torch.equal(a, b)
    x = rng.normal(size=(30, 3))
    c1, c2 = cluster_explanations(x, range(2, 5), seed=2), cluster_explanations(x, range(2, 5), seed=2)
    assert c1.silhouettes == c2.silhouettes and np.array_equal(c1.labels, c2.labels)


def test_transformer_state_gradients_beyond_the_segment_and_a_short_last_segment() -> None:
    transformers = pytest.importorskip("transformers")
    from seqexplain.analysis.state_gradients import iter_transformer_state_gradients

    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=2, n_embd=8, n_head=2, vocab_size=50, n_positions=16, bos_token_id=0,
                                  eos_token_id=0)
    model = transformers.GPT2LMHeadModel(cfg).eval().double()
    ids = torch.randint(0, 50, (23,), generator=torch.Generator().manual_seed(3))  # segments of 10, 10 and 3
    chunks = list(iter_transformer_state_gradients(model, ids, layer=2, max_delay=12, segment_length=10,
                                                   positions_per_pass=4))
    g, v = torch.cat([c.grads for c in chunks]), torch.cat([c.valid for c in chunks])
    src = torch.cat([c.source_positions for c in chunks])
    assert torch.cat([c.positions for c in chunks]).tolist() == list(range(23))
    for start in (0, 10, 20):
        x = model.get_input_embeddings()(ids[start : start + 10].unsqueeze(0)).detach()
        jac = torch.autograd.functional.jacobian(
            lambda xx: model(inputs_embeds=xx, output_hidden_states=True).hidden_states[2][0], x)  # [L, H, 1, L, E]
        for t in range(x.shape[1]):
            for d in range(13):
                if d <= t:
                    assert bool(v[start + t, d]) and int(src[start + t, d]) == start + t - d
                    torch.testing.assert_close(g[start + t, d], jac[t, :, 0, t - d], rtol=1e-10, atol=1e-12)
                else:
                    assert not bool(v[start + t, d]) and int(src[start + t, d]) == -1
                    assert float(g[start + t, d].abs().sum()) == 0.0
