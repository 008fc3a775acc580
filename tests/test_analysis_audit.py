"""Audit of ``seqexplain.analysis`` (state gradients, their statistics and stores, spectra): each test failed on
the code before its fix (a silent wrong result or a traceback instead of a one-line ``seqexplain.errors`` error);
the oracles are hand-computed cases, numpy, scikit-learn and autograd on the raw modules."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from seqexplain.errors import DataError, InputError

torch.set_num_threads(1)


def _stats_with_an_empty_class():
    from seqexplain.analysis.state_gradient_stats import StateGradientStats

    gen = torch.Generator().manual_seed(0)
    mean_grad = torch.randn(2, 3, 4, 3, generator=gen, dtype=torch.float64)
    count = torch.tensor([[5.0, 5, 5], [2, 0, 1]], dtype=torch.float64)
    mean_grad[1, 1] = 0.0  # what the accumulator holds for a class with no gradient at that delay
    return StateGradientStats(["all", "rare"], count, mean_grad, mean_grad.transpose(-1, -2) @ mean_grad)


def test_subspace_cosine_is_nan_where_a_class_has_no_gradient() -> None:
    from seqexplain.analysis.spectra import subspace_cosine

    stats = _stats_with_an_empty_class()
    u = torch.tensor([1.0, 2.0, -1.0], dtype=torch.float64)
    got = subspace_cosine(stats, u, 2)
    # oracle: numpy's SVD, ||V_kᵀ u|| / ||u||, where the class has gradients
    for c, d in ((0, 0), (0, 2), (1, 0), (1, 2)):
        vh = np.linalg.svd(stats.mean_grad[c, d].numpy())[2]
        assert float(got[c, d]) == pytest.approx(np.linalg.norm(vh[:2] @ u.numpy()) / np.linalg.norm(u.numpy()))
    # no gradient: the SVD of a zero matrix has arbitrary singular vectors, which gave a cosine (0.91)
    assert np.isnan(float(got[1, 1]))


def test_direction_of_the_wrong_width_is_an_input_error() -> None:
    from seqexplain.analysis.spectra import relative_memory, subspace_cosine

    stats = _stats_with_an_empty_class()  # E = 3
    with pytest.raises(InputError, match="direction"):  # was a torch RuntimeError from the matrix product
        relative_memory(stats, torch.ones(4))
    with pytest.raises(InputError, match="direction"):
        subspace_cosine(stats, torch.ones(2), 1)


def _tiny_gpt2(n_positions: int = 16):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=2, n_embd=8, n_head=2, vocab_size=50, n_positions=n_positions,
                                  bos_token_id=0, eos_token_id=0)
    return transformers.GPT2LMHeadModel(cfg).eval()


def test_transformer_state_gradients_refuse_bad_arguments_in_one_line() -> None:
    from seqexplain.analysis.state_gradients import iter_transformer_state_gradients

    model = _tiny_gpt2()
    ids = torch.randint(0, 50, (23,), generator=torch.Generator().manual_seed(3))
    # each was a traceback: IndexError of the hidden-states tuple, range()'s ValueError, and the position
    # embedding's IndexError for segments longer than the model's context
    for kw, match in ((dict(layer=3), "layer 3"), (dict(layer=-4), "layer -4"),
                      (dict(positions_per_pass=0), "positions_per_pass"),
                      (dict(segment_length=17), "segment_length 17")):
        with pytest.raises(InputError, match=match):
            next(iter(iter_transformer_state_gradients(model, ids, **{"segment_length": 10, **kw})))
    assert next(iter(iter_transformer_state_gradients(model, ids, layer=-3, segment_length=16))).grads.shape[-1] == 8


def test_accumulator_keeps_float64_gradients_in_float64() -> None:
    from seqexplain.analysis.state_gradient_chunks import GradientChunk
    from seqexplain.analysis.state_gradient_stats import StateGradientAccumulator

    rng = np.random.default_rng(0)
    g = 1.0 + 1e-9 * rng.normal(size=(6, 2, 3, 2))  # differences float32 cannot hold (its epsilon is 1.2e-7)
    valid = np.ones((6, 2), dtype=bool)
    valid[0, 1] = False
    g[0, 1] = 0.0
    acc = StateGradientAccumulator(1, 3, 2)
    for rows in (slice(0, 4), slice(4, 6)):  # two chunks: the running-mean update across chunks
        acc.update(GradientChunk(torch.from_numpy(g[rows]), torch.from_numpy(valid[rows]),
                                 torch.zeros(g[rows].shape[:2], dtype=torch.long), torch.arange(6)[rows]))
    for d in range(2):  # oracle: numpy float64 means over the valid gradients
        sel = valid[:, d]
        np.testing.assert_allclose(acc.mean_grad[0, d].numpy(), g[sel, d].mean(0), rtol=1e-14)
        gram = np.einsum("nhe,nhf->nef", g[sel, d], g[sel, d]).mean(0)
        np.testing.assert_allclose(acc.mean_gram[0, d].numpy(), gram, rtol=1e-14)


def test_rnn_state_gradients_warn_about_the_tail_rows_cannot_hold() -> None:
    from seqexplain.analysis.state_gradients import iter_rnn_state_gradients
    from seqexplain.models.rnn import RNNLanguageModel, RNNLMConfig

    torch.manual_seed(0)
    model = RNNLanguageModel(RNNLMConfig(vocab_size=20, embedding_size=3, hidden_size=4, init_scale=0.5)).eval()
    ids = torch.randint(0, 20, (23,), generator=torch.Generator().manual_seed(1))
    # 23 tokens in 3 rows of 7: the last 2 were never analysed, and nothing said so
    with pytest.warns(RuntimeWarning, match="last 2 of 23 tokens"):
        chunks = list(iter_rnn_state_gradients(model, ids, max_delay=2, segment_length=5, batch_size=3))
    assert sorted(int(p) for c in chunks for p in c.positions) == list(range(21))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a stream rows divide, or a run stopped by max_positions, loses nothing
        list(iter_rnn_state_gradients(model, ids[:21], max_delay=2, segment_length=5, batch_size=3))
        list(iter_rnn_state_gradients(model, ids, max_delay=2, segment_length=5, batch_size=3, max_positions=9))


def test_a_non_finite_gradient_stays_in_its_own_classes() -> None:
    from seqexplain.analysis.state_gradient_chunks import GradientChunk
    from seqexplain.analysis.state_gradient_stats import StateGradientAccumulator

    rng = np.random.default_rng(0)
    g = rng.normal(size=(4, 1, 2, 2)).astype(np.float32)
    g[0, 0, 1, 1] = np.nan  # position 0 belongs to class "a" only
    mask = np.array([[True, False], [False, True], [True, True], [False, True]])
    acc = StateGradientAccumulator(0, 2, 2, ["a", "b"], mask)
    with pytest.warns(RuntimeWarning, match="1 of 4 .* non-finite"):
        acc.update(GradientChunk(torch.from_numpy(g), torch.ones(4, 1, dtype=torch.bool),
                                 torch.arange(4).view(4, 1), torch.arange(4)))
    assert bool(torch.isnan(acc.mean_grad[0, 0]).any()) and bool(torch.isnan(acc.mean_grad[1, 0]).any())
    # class "b" never saw position 0, yet 0 × NaN in the weighted sum made its mean NaN
    sel = mask[:, 1]
    np.testing.assert_allclose(acc.mean_grad[2, 0].numpy(), g[sel, 0].astype(np.float64).mean(0), rtol=1e-6)
    gram = np.einsum("nhe,nhf->nef", g[sel, 0], g[sel, 0]).mean(0)
    np.testing.assert_allclose(acc.mean_gram[2, 0].numpy(), gram, rtol=1e-6)


def _write_store(directory, dtype: str = "float32", values=(0.5, -1.0, 2.0, 0.25)):
    from seqexplain.analysis.state_gradient_chunks import GradientChunk, GradientStoreWriter

    writer = GradientStoreWriter(directory, chunk_positions=1, dtype=dtype)
    g = torch.tensor(values, dtype=torch.float32).view(1, 1, 2, 2)
    for i in range(2):
        writer.write(GradientChunk(g, torch.ones(1, 1, dtype=torch.bool), torch.tensor([[i]]), torch.tensor([i])))
    writer.close()
    return g


def test_a_damaged_gradient_store_is_a_data_error(tmp_path) -> None:
    from seqexplain.analysis.state_gradient_chunks import GradientStoreReader

    _write_store(tmp_path / "s")
    assert GradientStoreReader(tmp_path / "s").positions == 2
    (tmp_path / "s" / "chunk_00001.npz").unlink()  # was a FileNotFoundError traceback in the middle of the stream
    with pytest.raises(DataError, match="chunk_00001.npz"):
        list(GradientStoreReader(tmp_path / "s"))
    for text in ("{bad", "{}", "[]"):  # JSONDecodeError, KeyError, TypeError
        (tmp_path / "s" / "manifest.json").write_text(text)
        with pytest.raises(DataError, match="manifest"):
            list(GradientStoreReader(tmp_path / "s"))
    (tmp_path / "s" / "manifest.json").write_text(json.dumps({"files": ["chunk_00000.npz"], "positions": 1}))
    for damage in (b"", b"PK\x03\x04 not a zip"):  # EOFError, BadZipFile
        (tmp_path / "s" / "chunk_00000.npz").write_bytes(damage)
        with pytest.raises(DataError, match="chunk_00000.npz"):
            list(GradientStoreReader(tmp_path / "s"))


def test_damaged_state_gradient_statistics_are_a_data_error(tmp_path) -> None:
    from seqexplain.analysis.state_gradient_stats import StateGradientStats

    stats = _stats_with_an_empty_class()
    stats.save(tmp_path / "st")
    again = StateGradientStats.load(tmp_path / "st")
    assert again.class_names == ["all", "rare"] and torch.equal(again.mean_grad, stats.mean_grad)
    info = json.loads((tmp_path / "st" / "stats.json").read_text())
    # each was a traceback: JSONDecodeError, KeyError, and statistics whose classes do not match their names
    for text in ("{bad", "{}", json.dumps({**info, "class_names": ["all"]})):
        (tmp_path / "st" / "stats.json").write_text(text)
        with pytest.raises(DataError, match="stats.json"):
            StateGradientStats.load(tmp_path / "st")
    (tmp_path / "st" / "stats.json").write_text(json.dumps(info))
    (tmp_path / "st" / "stats.safetensors").write_bytes(b"xx")  # safetensors' SafetensorError
    with pytest.raises(DataError, match="stats.safetensors"):
        StateGradientStats.load(tmp_path / "st")


def test_float16_store_says_which_gradients_it_could_not_hold(tmp_path) -> None:
    from seqexplain.analysis.state_gradient_chunks import GradientStoreReader

    # 1e-9 is below float16's smallest subnormal (6e-8) and 1e5 above its largest value (65504): they came back as
    # 0 and inf with nothing said (numpy's cast warning covers the overflow only, and not in saved results)
    with pytest.warns(RuntimeWarning, match="2 of 8 .* 0 .*2 of 8 .* infinite"):
        g = _write_store(tmp_path / "s", "float16", values=(1e-9, 1e5, 1.0, 3e-5))
    reader = GradientStoreReader(tmp_path / "s")
    assert reader.manifest["float16_lost"] == {"to_zero": 2, "to_inf": 2, "values": 8}
    back = torch.cat([c.grads for c in reader])
    np.testing.assert_allclose(back[:, :, 1, :].numpy(), g.expand(2, 1, 2, 2)[:, :, 1, :].numpy(), rtol=1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # representable values: nothing to say
        _write_store(tmp_path / "ok", "float16")
    assert GradientStoreReader(tmp_path / "ok").manifest["float16_lost"] == {"to_zero": 0, "to_inf": 0, "values": 8}


def test_a_singular_embedding_covariance_is_said() -> None:
    from seqexplain.analysis.spectra import EmbeddingNormalizer

    # 3 rows span a plane of the 4-d space: the covariance has rank 2 and was regularised with nothing said, which
    # amplifies directions outside the plane by about 1e4 (the whitening's largest entry)
    x = torch.tensor([[0.0, 0, 0, 0], [1, 0, 0, 0], [0, 1, 0, 0]])
    with pytest.warns(RuntimeWarning, match="rank 2 of 4"):
        norm = EmbeddingNormalizer.fit(x)
    assert float(norm.whiten.abs().max()) > 1e3
    rank = int(np.linalg.matrix_rank(np.cov(x.numpy().T, bias=True)))  # oracle: numpy
    assert rank == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = torch.randn(50, 4, generator=torch.Generator().manual_seed(0))
        full = EmbeddingNormalizer.fit(y)
    np.testing.assert_allclose(full.cov.numpy(), np.cov(y.numpy().T, bias=True), rtol=1e-6)  # population covariance


def test_rnn_state_gradients_refuse_ids_outside_the_vocabulary() -> None:
    from seqexplain.analysis.state_gradients import iter_rnn_state_gradients
    from seqexplain.models.rnn import RNNLanguageModel, RNNLMConfig

    torch.manual_seed(0)
    model = RNNLanguageModel(RNNLMConfig(vocab_size=20, embedding_size=3, hidden_size=4, init_scale=0.5)).eval()
    ids = torch.arange(8)
    # the embedding matrix was indexed directly: id -1 silently read row 19, id 20 raised an IndexError
    for bad in (-1, 20):
        with pytest.raises(InputError, match=f"token id {bad}"):
            next(iter(iter_rnn_state_gradients(model, torch.cat([ids, torch.tensor([bad])]), batch_size=1)))


def test_spectrum_k_below_one_is_an_input_error() -> None:
    from seqexplain.analysis.spectra import rms_singular_values, singular_values, summarize

    stats = _stats_with_an_empty_class()
    # k = -1 sliced s[..., :-1]: every singular value but the smallest, silently; k = 0 an empty spectrum
    for k in (-1, 0):
        with pytest.raises(InputError, match="k must be"):
            singular_values(stats.mean_grad, k=k)
        with pytest.raises(InputError, match="k must be"):
            rms_singular_values(stats.mean_gram, k=k)
        with pytest.raises(InputError, match="k must be"):
            summarize(stats, k=k)
    assert singular_values(stats.mean_grad, k=2).shape[-1] == 2


def test_a_normaliser_of_another_width_is_an_input_error() -> None:
    from seqexplain.analysis.spectra import EmbeddingNormalizer, relative_memory, singular_values, summarize

    stats = _stats_with_an_empty_class()  # E = 3
    norm = EmbeddingNormalizer.fit(torch.randn(20, 5, generator=torch.Generator().manual_seed(0)))
    # each was torch's matrix-product RuntimeError
    with pytest.raises(InputError, match="width 5 .* width 3"):
        singular_values(stats.mean_grad, norm)
    with pytest.raises(InputError, match="width 5 .* width 3"):
        summarize(stats, norm, kind="rms")
    with pytest.raises(InputError, match="width 5 .* width 3"):
        relative_memory(stats, torch.ones(3), norm)
