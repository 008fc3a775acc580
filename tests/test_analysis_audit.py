"""Audit of ``seqexplain.analysis``: each test failed on the code before its fix (a silent wrong result or a
traceback instead of a one-line ``seqexplain.errors`` error); the oracles are hand-computed cases, numpy and
scikit-learn, and autograd on the raw modules."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from seqexplain.analysis.event_types import event_vector
from seqexplain.attribution import Attribution
from seqexplain.errors import DataError, InputError

torch.set_num_threads(1)


def test_event_vector_refuses_a_grouping_that_disagrees_with_the_types() -> None:
    # two groups of type 2 ([0] and [2, 3]): the second overwrote the first (2.25 instead of 0.5 + 2.25 = 2.75)
    attr = Attribution(tokens=["a", "b", "c", "d"], scores=np.array([[0.5, -1.0, 2.0, 0.25]]),
                       target_tokens=["pos"], target_positions=[None], groups={"events": [[0], [1], [2, 3]]})
    with pytest.raises(InputError, match="type 2 .* 2 groups"):
        event_vector(attr, [2, 0, 2, 2], 3)
    # one group holding two types ([1, 2]: types 0 and 2) was credited to the first member's type only
    mixed = Attribution(tokens=["a", "b", "c", "d"], scores=np.array([[0.5, -1.0, 2.0, 0.25]]),
                        target_tokens=["pos"], target_positions=[None], groups={"events": [[0, 3], [1, 2]]})
    with pytest.raises(InputError, match="group .* types 0 and 2"):
        event_vector(mixed, [2, 0, 2, 2], 3)
    # a type outside 0..K-1: -1 was written into the last slot (<other>), 3 raised an IndexError
    good = Attribution(tokens=["a", "b"], scores=np.array([[0.5, -1.0]]), target_tokens=["pos"],
                       target_positions=[None], groups={"events": [[0], [1]]})
    for bad in ([-1, 0], [3, 0]):
        with pytest.raises(InputError, match="event type"):
            event_vector(good, bad, 3)
    np.testing.assert_allclose(event_vector(good, [2, 0], 3), [-1.0, 0.0, 0.5])  # hand-computed


def test_scores_are_not_oriented_to_a_label_the_scores_do_not_have() -> None:
    from seqexplain.analysis.training_dynamics import orient

    beta = np.array([[1.0], [-2.0]])
    np.testing.assert_allclose(orient(beta, 0, True), [-1.0, 2.0])  # hand: β · (2y − 1)
    three = np.array([[1.0, 2.0, 4.0]])
    np.testing.assert_allclose(orient(three, 2, False), [4.0 - 1.5])  # hand: β[y] − mean of the others
    # a binary label 2 multiplied the scores by 3, a label -1 read the last class: both silently
    for scores, label, binary in ((beta, 2, True), (beta, -1, True), (three, -1, False), (three, 3, False)):
        with pytest.raises(InputError, match="label"):
            orient(scores, label, binary)


def test_logistic_baseline_needs_every_class_in_training() -> None:
    from seqexplain.analysis.snell_baselines import fit_logistic

    rng = np.random.default_rng(0)
    # three classes, class 1 missing from training: scikit-learn fits 2 columns (classes 0 and 2), which were read
    # as a binary model (class 2 oriented with a factor 3) — a silent wrong β
    train = [([int(t) for t in rng.integers(0, 6, 4)], int(rng.choice([0, 2]))) for _ in range(30)]
    val = [([1, 2], 1), ([3, 4], 0)]
    with pytest.raises(InputError, match="class 1"):
        fit_logistic(train, val, 6, c_grid=(1.0,))
    with pytest.raises(InputError, match="class"):  # a single class was scikit-learn's ValueError
        fit_logistic([(ids, 0) for ids, _ in train], val, 6, c_grid=(1.0,))


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


def test_bezier_curve_with_fewer_than_two_points_is_an_input_error() -> None:
    from seqexplain.analysis.low_loss_paths import bezier_curve

    class Bowl:
        def loss(self, w: torch.Tensor) -> float:
            return float((w**2).sum())

        def grad(self, w: torch.Tensor) -> torch.Tensor:
            return 2 * w

    w1, w2 = torch.tensor([-1.0, 0.0]), torch.tensor([1.0, 0.0])
    with pytest.raises(InputError, match="at least 2 points"):  # n = 1 was a ZeroDivisionError
        bezier_curve(Bowl(), w1, w2, steps=1, n=1)
    path, ctrl = bezier_curve(Bowl(), w1, w2, steps=0, n=3)  # no training: θ is the midpoint
    torch.testing.assert_close(path.points[1], 0.25 * w1.double() + 0.5 * ctrl + 0.25 * w2.double())


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


def test_model_objective_without_documents_is_an_input_error() -> None:
    from seqexplain.analysis.low_loss_paths import ModelObjective
    from seqexplain.models.attention_rnn import AttentionRNN, AttentionRNNConfig

    model = AttentionRNN(AttentionRNNConfig(input_dim=4, hidden=[3], decoder="avg"))
    with pytest.raises(InputError, match="document"):  # the loss divided by len(docs) = 0
        ModelObjective(model, [])


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


def test_a_label_spelt_other_is_the_other_type_not_a_second_one() -> None:
    from seqexplain.analysis.event_types import OTHER, EventVocabulary

    labels = [["x", OTHER, OTHER, "y"], ["x", None]]
    vocab = EventVocabulary.fit(labels)
    # the mapping's own "<other>" (the most frequent label) became a type of that name besides the real <other>:
    # ["<other>", "x", "y", "<other>"], a duplicate name whose first column never received a token
    assert vocab.names == ["x", "y", OTHER]
    enc = vocab.encode(labels)
    assert enc.types == [[0, 2, 2, 1], [0, 2]] and enc.missing == 1 and enc.rare == 0
    assert EventVocabulary.fit(labels, max_types=1).names == ["x", OTHER]
    with pytest.raises(InputError, match="event set is empty"):
        EventVocabulary.fit([[OTHER, None]])


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


def test_classifier_quantities_refuse_an_empty_example() -> None:
    from seqexplain.analysis.training_dynamics import classifier_quantities
    from seqexplain.models.snell_classifier import SnellClassifier, SnellClassifierConfig

    torch.manual_seed(7)
    net = SnellClassifier(SnellClassifierConfig(9, 2, 4, 3, 3, False)).double()
    with pytest.raises(InputError, match="example 1 has no tokens"):  # was the LSTM's 'Cannot pack empty tensors'
        classifier_quantities(net, [([2, 3], 1), ([], 0)])


def test_translation_rows_refuse_an_empty_side() -> None:
    from seqexplain.analysis.translation_dynamics import translation_rows
    from seqexplain.models.snell_translation import SnellTranslator, SnellTranslatorConfig

    torch.manual_seed(0)
    net = SnellTranslator(SnellTranslatorConfig(20, 6, 4, 2, 0.0, False, 0, 1, 2)).double().eval()
    for pairs, side in (([([3, 4], [5]), ([], [3])], "source"), ([([3], [])], "target")):
        with pytest.raises(InputError, match=f"{side} side"):  # was the LSTM's 'Cannot pack empty tensors'
            translation_rows(net, pairs)


def test_dumps_of_opposite_delta_signs_are_not_compared(tmp_path) -> None:
    from seqexplain.analysis.training_dynamics import make_dump, read_dumps, write_dump
    from seqexplain.models.snell_classifier import SnellClassifier, SnellClassifierConfig

    torch.manual_seed(7)
    net = SnellClassifier(SnellClassifierConfig(9, 2, 4, 3, 3, False)).double()
    examples = [([2, 3, 4, 1], 1), ([2, 5, 6, 7, 1], 0)]
    a = make_dump(net, examples, run="normal_A", step=3, split="val", dataset="toy", vocab_hash="v")
    b = make_dump(net, examples, run="normal_B", step=3, split="val", dataset="toy", vocab_hash="v", sign="original")
    np.testing.assert_allclose(b.delta[0], -a.delta[0])  # the same model: Δ of opposite signs
    write_dump(a, tmp_path)
    write_dump(b, tmp_path)
    # read together, the tables compared one run's −∂L/∂m with the other's +∂L/∂m: agreement of flipped signs
    with pytest.raises(InputError, match="sign"):
        read_dumps(tmp_path, "val")


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


def test_ari_of_no_sequences_is_an_input_error() -> None:
    from seqexplain.analysis.clustering import ari

    with pytest.raises(InputError, match="no sequences"):  # scikit-learn's convention gave a perfect 1.0
        ari([], [])
    assert ari([0, 0, 1], [1, 1, 0]) == 1.0 and ari([0, 1], [0, 0]) == 0.0  # hand: same partition; one vs two


def test_baselines_refuse_empty_examples_instead_of_training_on_nan() -> None:
    from seqexplain.analysis.snell_baselines import train_bag_of_embeddings
    from seqexplain.analysis.translation_dynamics import train_word_translation

    good = [([1, 2], 0), ([3, 4], 1), ([2, 3], 1)]
    # an empty example's mean embedding is 0/0: its NaN loss made every weight NaN, no later validation loss was
    # below NaN, and the untrained initial model came back as the "best epoch 0" with nothing said
    with pytest.raises(InputError, match="training example 1 has no tokens"):
        train_bag_of_embeddings([good[0], ([], 1)], good, 6, 2, emb_dim=2, epochs=1)
    with pytest.raises(InputError, match="validation example 0 has no tokens"):
        train_bag_of_embeddings(good, [([], 0)], 6, 2, emb_dim=2, epochs=1)
    pairs = [([3, 4], [5, 6]), ([4], [6])]
    with pytest.raises(InputError, match="training pair 1 has an empty source"):
        train_word_translation([pairs[0], ([], [5])], pairs, 8, 0, emb_dim=2, epochs=1)
    with pytest.raises(InputError, match="validation pair 0 has an empty target"):
        train_word_translation(pairs, [([3], [])], 8, 0, emb_dim=2, epochs=1)


def test_standardise_leaves_a_column_constant_up_to_rounding_centred_only() -> None:
    from sklearn.preprocessing import StandardScaler

    from seqexplain.analysis.clustering import standardise

    rng = np.random.default_rng(0)
    x = np.stack([rng.normal(size=40), 1.0 + 1e-16 * rng.integers(-1, 2, size=40)], axis=1)
    # the second column is 1.0 up to rounding (e.g. one type's attention summing to 1 in every document); its
    # standard deviation of ~1e-16 blew the rounding noise up to unit variance, as large as a real event type's
    got = standardise(x)
    np.testing.assert_allclose(got, StandardScaler().fit_transform(x), atol=1e-12)  # oracle: scikit-learn
    assert np.abs(got[:, 1]).max() < 1e-12


def test_explanation_vectors_and_vector_clusters_refuse_mismatched_input() -> None:
    from seqexplain.analysis.event_types import VectorClusters
    from seqexplain.analysis.path_explanations import explanation_vectors
    from seqexplain.models.attention_rnn import AttentionRNN, AttentionRNNConfig
    from seqexplain.models.attention_rnn_adapter import AttentionRNNAdapter

    torch.manual_seed(0)
    net = AttentionRNN(AttentionRNNConfig(input_dim=4, hidden=[5], decoder="hier", n_event_types=3)).double().eval()
    adapter = AttentionRNNAdapter(net, ["n", "p"], ["a", "b", "c"])
    with pytest.raises(InputError, match="no documents"):  # was numpy's 'need at least one array to stack'
        explanation_vectors(adapter, [], "attention_last")
    rng = np.random.default_rng(0)
    with pytest.raises(InputError, match="width"):  # was numpy's concatenate ValueError
        VectorClusters(2).fit([rng.normal(size=(3, 4)), rng.normal(size=(3, 5))])


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


def test_logistic_scores_refuse_ids_outside_the_vocabulary() -> None:
    from seqexplain.analysis.snell_baselines import logistic_scores

    weights = np.arange(4.0).reshape(4, 1)  # V = 4, binary
    np.testing.assert_allclose(logistic_scores(weights, [([1, 3], 1), ([2], 0)])[0], [1.0, 3.0])  # hand
    # numpy indexing: id -1 silently read the weight of id 3; id 4 raised an IndexError
    for bad in (-1, 4):
        with pytest.raises(InputError, match=f"token id {bad}"):
            logistic_scores(weights, [([1, bad], 1)])


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


def test_cluster_plots_refuse_names_or_vectors_that_do_not_fit(tmp_path) -> None:
    from seqexplain.analysis.clustering import cluster_explanations, plot_cluster_violins, plot_embedding

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(size=(10, 3)), 5 + rng.normal(size=(10, 3))])
    res = cluster_explanations(x, [2])
    # two names for three event types: an IndexError; four: the panels silently labelled with the first three
    for names in (["a", "b"], ["a", "b", "c", "d"]):
        with pytest.raises(InputError, match="3 event types"):
            plot_cluster_violins(x, res, names, tmp_path / "v.png")
    with pytest.raises(InputError, match="20 sequences"):  # vectors of other sequences: numpy's boolean-index error
        plot_cluster_violins(x[:5], res, ["a", "b", "c"], tmp_path / "v.png")
    with pytest.raises(InputError, match="20 sequences"):  # matplotlib's size mismatch
        plot_embedding(x[:5], res, tmp_path / "e.png")
    assert plot_cluster_violins(x, res, ["a", "b", "c"], tmp_path / "v.png").read_bytes()[:4] == b"\x89PNG"
