"""Training the Snell classifier: the checkpoint schedule, exact resumption, the batch order, word2vec
initialisation and the one-line errors."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from seqexplain.errors import InputError
from seqexplain.models.rnn import Vocab
from seqexplain.models.rnn.vocab import write_word2vec
from seqexplain.models.snell_classifier import BosEosTokenizer, SnellClassifierConfig
from seqexplain.training.snell import (
    SnellTrainConfig,
    batch_indices,
    checkpoint_path,
    checkpoint_schedule,
    load_checkpoint,
    train_snell_classifier,
)

WORDS = ["good", "great", "bad", "awful", "the", "movie", "plot"]


@pytest.fixture(scope="module")
def data() -> tuple[Vocab, list[tuple[list[int], int]]]:
    vocab = Vocab.build(WORDS)
    tok = BosEosTokenizer(vocab)
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(40):
        n = int(torch.randint(1, 5, (1,), generator=g))
        words = [WORDS[int(i)] for i in torch.randint(0, len(WORDS), (n,), generator=g)]
        out.append((tok.encode_words(words), int(sum(w in ("good", "great") for w in words) >
                                                  sum(w in ("bad", "awful") for w in words))))
    return vocab, out


def test_schedule_explicit_plus_every():
    assert checkpoint_schedule(10, [3, 7], 4) == [0, 3, 4, 7, 8, 10]
    assert checkpoint_schedule(5) == [0, 5]


def test_schedule_beyond_training_is_an_error():
    with pytest.raises(InputError, match=r"checkpoint steps \[12\] lie outside the training length 0..10"):
        checkpoint_schedule(10, [3, 12])


def test_batches_are_a_function_of_seed_and_step():
    a = [batch_indices(10, 3, seed=5, step=s).tolist() for s in range(6)]
    assert a == [batch_indices(10, 3, seed=5, step=s).tolist() for s in range(6)]
    assert sorted(sum(a[:3], [])) == sorted(set(sum(a[:3], [])))  # one epoch: no repeats
    assert a[0] != batch_indices(10, 3, seed=6, step=0).tolist()


def _cfg(**kw: object) -> SnellTrainConfig:
    return SnellTrainConfig(**{"steps": 12, "batch_size": 8, "lr": 0.01, "seed": 3, "checkpoint_steps": [4],
                               "checkpoint_every": 8, "tensorboard": False, **kw})  # type: ignore[arg-type]


def test_resume_is_exact(tmp_path, data):
    vocab, train = data
    mcfg = SnellClassifierConfig(len(vocab), 2, 5, 4, 3)
    straight = train_snell_classifier(mcfg, train, _cfg(), tmp_path / "a", vocab)
    train_snell_classifier(mcfg, train, _cfg(), tmp_path / "b", vocab, stop_at=8)  # interrupted after step 8
    assert not checkpoint_path(tmp_path / "b", 12).is_file()
    resumed = train_snell_classifier(mcfg, train, _cfg(), tmp_path / "b", vocab)
    for k, v in straight.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    for step in (0, 4, 8, 12):
        a, b = load_file(checkpoint_path(tmp_path / "a", step)), load_file(checkpoint_path(tmp_path / "b", step))
        assert all(torch.equal(a[k], b[k]) for k in a)
    # checkpoint N holds the weights after N updates: checkpoint 4 differs from 0 and from 8
    w = {s: load_checkpoint(tmp_path / "a", s).beta.weight for s in (0, 4, 8)}
    assert not torch.equal(w[0], w[4]) and not torch.equal(w[4], w[8])


def test_checkpoint_n_is_n_updates(tmp_path, data):
    vocab, train = data
    mcfg = SnellClassifierConfig(len(vocab), 2, 5, 4, 3)
    train_snell_classifier(mcfg, train, _cfg(steps=4, checkpoint_steps=[1], checkpoint_every=0), tmp_path, vocab)
    # oracle: a plain loop of one Adam update on the first batch from the same initial weights
    torch.manual_seed(3)
    from seqexplain.models.snell_classifier import SnellClassifier, pad_batch

    net = SnellClassifier(mcfg)
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    idx = batch_indices(len(train), 8, 3, 0)
    ids, lengths = pad_batch([train[i][0] for i in idx])
    loss = torch.nn.functional.cross_entropy(net(ids, lengths)[0], torch.tensor([train[i][1] for i in idx]))
    opt.zero_grad()
    loss.backward()
    opt.step()
    got = load_checkpoint(tmp_path, 1).state_dict()
    assert all(torch.allclose(v, got[k], atol=1e-7) for k, v in net.state_dict().items())


def test_other_settings_in_the_same_folder_refused(tmp_path, data):
    vocab, train = data
    mcfg = SnellClassifierConfig(len(vocab), 2, 5, 4, 3)
    train_snell_classifier(mcfg, train, _cfg(steps=2, checkpoint_steps=[], checkpoint_every=0), tmp_path, vocab)
    with pytest.raises(InputError, match="holds a run with other settings"):
        train_snell_classifier(mcfg, train, _cfg(steps=3, checkpoint_steps=[], checkpoint_every=0), tmp_path, vocab)


def test_word2vec_vectors_initialise_embeddings(tmp_path, data):
    vocab, train = data
    write_word2vec(tmp_path / "v.txt", ["good", "bad"], torch.tensor([[1.0, 2, 3, 4, 5], [-1.0, -2, -3, -4, -5]]))
    mcfg = SnellClassifierConfig(len(vocab), 2, 5, 4, 3)
    train_snell_classifier(mcfg, train, _cfg(steps=1, checkpoint_steps=[], checkpoint_every=0), tmp_path / "r",
                           vocab, vectors=tmp_path / "v.txt")
    w = load_checkpoint(tmp_path / "r", 0).embedding.weight
    assert w[vocab.stoi["good"]].tolist() == [1, 2, 3, 4, 5] and w[vocab.stoi["bad"]].tolist() == [-1, -2, -3, -4, -5]


def test_tensorboard_scalars_written(tmp_path, data):
    vocab, train = data
    mcfg = SnellClassifierConfig(len(vocab), 2, 5, 4, 3)
    train_snell_classifier(mcfg, train, _cfg(steps=10, checkpoint_steps=[], checkpoint_every=0, tensorboard=True),
                           tmp_path, vocab)
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
