"""Audit of ``seqexplain.analysis`` (event types, clustering, low-loss paths, training-dynamics dumps and their
baselines): each test failed on the code before its fix (a silent wrong result or a traceback instead of a one-line
``seqexplain.errors`` error); the oracles are hand-computed cases, numpy, scikit-learn and autograd."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seqexplain.analysis.event_types import event_vector
from seqexplain.attribution import Attribution
from seqexplain.errors import InputError

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


def test_model_objective_without_documents_is_an_input_error() -> None:
    from seqexplain.analysis.low_loss_paths import ModelObjective
    from seqexplain.models.attention_rnn import AttentionRNN, AttentionRNNConfig

    model = AttentionRNN(AttentionRNNConfig(input_dim=4, hidden=[3], decoder="avg"))
    with pytest.raises(InputError, match="document"):  # the loss divided by len(docs) = 0
        ModelObjective(model, [])


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


def test_logistic_scores_refuse_ids_outside_the_vocabulary() -> None:
    from seqexplain.analysis.snell_baselines import logistic_scores

    weights = np.arange(4.0).reshape(4, 1)  # V = 4, binary
    np.testing.assert_allclose(logistic_scores(weights, [([1, 3], 1), ([2], 0)])[0], [1.0, 3.0])  # hand
    # numpy indexing: id -1 silently read the weight of id 3; id 4 raised an IndexError
    for bad in (-1, 4):
        with pytest.raises(InputError, match=f"token id {bad}"):
            logistic_scores(weights, [([1, bad], 1)])


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


def test_a_chosen_k_with_fewer_clusters_than_k_is_said_and_saved() -> None:
    from seqexplain.analysis.clustering import cluster_explanations

    x = np.repeat(np.array([[0.0, 0], [10, 0], [0, 10]]), 4, axis=0)  # 3 distinct vectors, 4 copies each
    # KMeans(4) can only find 3 clusters: the result said k = 4, its silhouette was that of 3 clusters, and only a
    # size of 0 among the cluster sizes (and scikit-learn's ConvergenceWarning, not saved) told
    with pytest.warns(RuntimeWarning, match="k = 4 .* 3 distinct clusters"):
        res = cluster_explanations(x, [4])
    assert res.summary()["clusters_found"] == 3 and res.summary()["cluster_sizes"] == [4, 4, 4, 0]
    fine = cluster_explanations(x, [2, 3])
    assert fine.summary()["clusters_found"] == fine.k == 3
