"""Native model folders: save → load gives identical logits, and a corrupt or mismatched folder is a
:class:`~seqexplain.errors.ModelLoadError` (or another ``seqexplain.errors`` error) from the loader itself, not a
raw safetensors / torch / JSON error, nor a model that loads and crashes later. Each test failed before its fix."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import seqexplain as se
from seqexplain.errors import ModelLoadError
from seqexplain.models.rnn import RNNLanguageModel, RNNLMConfig, Vocab, load_rnn_lm
from seqexplain.models.transformer import TransformerLM, TransformerLMConfig, load_transformer_lm

torch.set_num_threads(1)
WORDS = ["a", "b", "c", "d", "e"]


def _edit_config(folder: Path, **changes: object) -> None:
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(changes)
    (folder / "config.json").write_text(json.dumps(cfg))


def _corruptions(folder: Path, save, field: str, other: int) -> list[tuple[str, Path]]:  # type: ignore[no-untyped-def]
    """Copies of a saved folder, each broken one way (``field`` of another type, or set to ``other``: weights of
    other shapes)."""
    out = []
    for name in ("garbage", "truncated", "list", "badtype", "shape"):
        d = folder.parent / f"{folder.name}-{name}"
        save(d)
        weights = d / "model.safetensors"
        if name == "garbage":
            weights.write_bytes(b"not a safetensors file" * 4)
        elif name == "truncated":
            weights.write_bytes(weights.read_bytes()[:-40])
        elif name == "list":
            (d / "config.json").write_text("[1, 2]")
        elif name == "badtype":
            _edit_config(d, **{field: "many"})
        else:
            _edit_config(d, **{field: other})
        out.append((name, d))
    return out


def test_rnn_lm_round_trip_and_corrupt_folders(tmp_path: Path) -> None:
    vocab = Vocab.build(WORDS)
    torch.manual_seed(0)
    model = RNNLanguageModel(RNNLMConfig(vocab_size=len(vocab), embedding_size=4, hidden_size=5)).eval()
    model.save(tmp_path / "rnn", vocab)
    back, vocab_back = load_rnn_lm(tmp_path / "rnn")
    ids = torch.tensor([[1, 2, 3, 4]])
    assert torch.equal(back(input_ids=ids).logits, model(input_ids=ids).logits) and len(vocab_back) == len(vocab)
    for name, d in _corruptions(tmp_path / "rnn", lambda d: model.save(d, vocab), "hidden_size", 6):
        with pytest.raises(ModelLoadError) as info:
            load_rnn_lm(d)
        assert "\n" not in str(info.value), name  # one line, as the CLI prints it
        if name != "list":  # load_model reads model_type from the config first
            with pytest.raises(ModelLoadError):
                se.load_model(str(d))
    # a vocabulary of another size than the model's table: ids beyond it crashed the first explanation
    model.save(tmp_path / "bigvocab", vocab)
    Vocab.build([*WORDS, "f", "g", "h"]).save(tmp_path / "bigvocab" / "vocab.json")
    with pytest.raises(ModelLoadError, match="words"):
        load_rnn_lm(tmp_path / "bigvocab")


def test_transformer_lm_round_trip_and_corrupt_folders(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = TransformerLM(TransformerLMConfig(vocab_size=10, d_model=8, n_layers=1, n_heads=2, ffn_dim=8,
                                              max_position_embeddings=16)).eval()
    model.save(tmp_path / "tf")
    ids = torch.tensor([[1, 2, 3, 4]])
    assert torch.equal(load_transformer_lm(tmp_path / "tf")(input_ids=ids).logits, model(input_ids=ids).logits)
    for _, d in _corruptions(tmp_path / "tf", model.save, "d_model", 12):
        with pytest.raises(ModelLoadError) as info:
            load_transformer_lm(d)
        assert "\n" not in str(info.value)


def test_snell_classifier_round_trip_and_corrupt_folders(tmp_path: Path) -> None:
    from seqexplain.models.snell_classifier import SnellClassifier, SnellClassifierConfig
    from seqexplain.models.snell_saving import load_snell, save_snell_classifier

    vocab = Vocab.build(WORDS)
    torch.manual_seed(0)
    model = SnellClassifier(SnellClassifierConfig(vocab_size=len(vocab), emb_dim=4, hidden=4, attn_dim=4)).eval()
    save_snell_classifier(model, vocab, tmp_path / "s", ["neg", "pos"])
    back = load_snell(tmp_path / "s")
    ex = back.encode("a b c", "pos")
    assert torch.equal(back.logits(ex)[0, 0], model(ex.input_ids.unsqueeze(0))[0][0])
    for _, d in _corruptions(tmp_path / "s", lambda d: save_snell_classifier(model, vocab, d), "hidden", 6):
        with pytest.raises(ModelLoadError):
            load_snell(d)
    save_snell_classifier(model, vocab, tmp_path / "nolabels")
    _edit_config(tmp_path / "nolabels", labels=["only one"])
    with pytest.raises(ModelLoadError, match="labels"):
        load_snell(tmp_path / "nolabels")
    # a vocabulary of another size than the model's table: ids beyond it crashed the first explanation
    save_snell_classifier(model, vocab, tmp_path / "bigvocab")
    Vocab.build([*WORDS, "f", "g", "h"]).save(tmp_path / "bigvocab" / "vocab.json")
    with pytest.raises(ModelLoadError, match="words"):
        load_snell(tmp_path / "bigvocab")


def test_attention_rnn_file_with_a_config_of_wrong_types(tmp_path: Path) -> None:
    """A weight file whose stored config holds settings of wrong types or values is a ModelLoadError; a list of
    sizes given as a string or a class count of null escaped as a raw TypeError."""
    from safetensors.torch import load_file, save_file

    from seqexplain.errors import InputError
    from seqexplain.models.attention_rnn import AttentionRNN, AttentionRNNConfig, load_attention_rnn, save_attention_rnn

    torch.manual_seed(0)
    net = AttentionRNN(AttentionRNNConfig(input_dim=4, hidden=[5, 3])).eval()
    save_attention_rnn(net, tmp_path / "w.safetensors")
    x = torch.randn(1, 3, 4)
    assert torch.equal(load_attention_rnn(tmp_path / "w.safetensors")(x)[0], net(x)[0])
    state = load_file(str(tmp_path / "w.safetensors"))
    for k, cfg in enumerate([{"input_dim": 4, "hidden": "ab"}, {"input_dim": "4", "hidden": [5, 3]},
                             {"input_dim": 4, "hidden": [5, 3], "n_classes": None},
                             {"input_dim": 4, "hidden": [5, 3], "decoder": "other"}]):
        save_file(state, str(tmp_path / f"{k}.safetensors"), metadata={"config": json.dumps(cfg)})
        with pytest.raises(ModelLoadError):
            load_attention_rnn(tmp_path / f"{k}.safetensors")
    with pytest.raises(InputError, match="numerics"):  # a bad override stays the caller's input error
        load_attention_rnn(tmp_path / "w.safetensors", numerics="other")


def test_seq2seq_folder_with_a_config_of_wrong_types(tmp_path: Path) -> None:
    """A config.json that is not an object, or whose sizes have wrong types, is a ModelLoadError from
    load_seq2seq; they escaped as AttributeError / TypeError."""
    from seqexplain.models.seq2seq import Seq2SeqTransformer, load_seq2seq
    from seqexplain.models.seq2seq_config import Seq2SeqConfig

    torch.manual_seed(0)
    model = Seq2SeqTransformer(Seq2SeqConfig(vocab_size=20, d_model=8, n_heads=2, ffn_dim=8, encoder_layers=1,
                                             decoder_layers=1, max_position_embeddings=16)).eval()
    model.save(tmp_path / "s2s")
    ids = torch.tensor([[3, 4, 5]])
    back = load_seq2seq(tmp_path / "s2s")
    assert torch.equal(back(input_ids=ids, decoder_input_ids=ids).logits,
                       model(input_ids=ids, decoder_input_ids=ids).logits)
    for _, d in _corruptions(tmp_path / "s2s", model.save, "ffn_dim", 16):
        with pytest.raises(ModelLoadError):
            load_seq2seq(d)
    model.save(tmp_path / "float")
    _edit_config(tmp_path / "float", d_model=8.0)
    with pytest.raises(ModelLoadError):
        load_seq2seq(tmp_path / "float")


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_every_native_loader_keeps_the_saved_dtype(tmp_path: Path, dtype: torch.dtype) -> None:
    """save → load gives identical logits for float64 and bfloat16 models too: the loaders built a float32 module
    and copied the weights into it, so a float64 model came back rounded to float32 (other logits) and a bfloat16
    one as float32."""
    from seqexplain.models.attention_rnn import AttentionRNN, AttentionRNNConfig, load_attention_rnn, save_attention_rnn
    from seqexplain.models.seq2seq import Seq2SeqTransformer, load_seq2seq
    from seqexplain.models.seq2seq_config import Seq2SeqConfig
    from seqexplain.models.snell_classifier import SnellClassifier, SnellClassifierConfig
    from seqexplain.models.snell_saving import load_snell, save_snell_classifier

    vocab = Vocab.build(WORDS)
    ids = torch.tensor([[1, 2, 3, 4]])
    torch.manual_seed(0)
    rnn = RNNLanguageModel(RNNLMConfig(vocab_size=len(vocab), embedding_size=4, hidden_size=5)).to(dtype).eval()
    rnn.save(tmp_path / "rnn", vocab)
    tf = TransformerLM(TransformerLMConfig(vocab_size=10, d_model=8, n_layers=1, n_heads=2, ffn_dim=8,
                                           max_position_embeddings=16)).to(dtype).eval()
    tf.save(tmp_path / "tf")
    s2s = Seq2SeqTransformer(Seq2SeqConfig(vocab_size=20, d_model=8, n_heads=2, ffn_dim=8, encoder_layers=1,
                                           decoder_layers=1, max_position_embeddings=16)).to(dtype).eval()
    s2s.save(tmp_path / "s2s")
    snell = SnellClassifier(SnellClassifierConfig(vocab_size=len(vocab), emb_dim=4, hidden=4, attn_dim=4)).to(dtype)
    save_snell_classifier(snell.eval(), vocab, tmp_path / "snell")
    arnn = AttentionRNN(AttentionRNNConfig(input_dim=4, hidden=[5, 3])).to(dtype).eval()
    save_attention_rnn(arnn, tmp_path / "arnn.safetensors")
    x = torch.randn(1, 3, 4, dtype=dtype)
    pairs = [
        (rnn(input_ids=ids).logits, load_rnn_lm(tmp_path / "rnn")[0](input_ids=ids).logits),
        (tf(input_ids=ids).logits, load_transformer_lm(tmp_path / "tf")(input_ids=ids).logits),
        (s2s(input_ids=ids, decoder_input_ids=ids).logits,
         load_seq2seq(tmp_path / "s2s")(input_ids=ids, decoder_input_ids=ids).logits),
        (snell(ids)[0], load_snell(tmp_path / "snell").model(ids)[0]),
        (arnn(x)[0], load_attention_rnn(tmp_path / "arnn.safetensors")(x)[0]),
    ]
    for saved, loaded in pairs:
        assert loaded.dtype == dtype and torch.equal(loaded, saved)


def test_map_location_moves_the_loaded_model(tmp_path: Path) -> None:
    """``map_location`` puts the model on that device: the loaders read the tensors onto it but copied them into the
    module's CPU parameters, so ``map_location="cuda"`` returned a CPU model. (The "meta" device stands in for an
    accelerator on a machine without one: the module must end up there.)"""
    RNNLanguageModel(RNNLMConfig(vocab_size=5, embedding_size=4, hidden_size=5)).save(tmp_path / "rnn")
    TransformerLM(TransformerLMConfig(vocab_size=10, d_model=8, n_layers=1, n_heads=2, ffn_dim=8,
                                      max_position_embeddings=16)).save(tmp_path / "tf")
    rnn, _ = load_rnn_lm(tmp_path / "rnn", map_location="meta")
    tf = load_transformer_lm(tmp_path / "tf", map_location="meta")
    for model in (rnn, tf):
        assert {p.device.type for p in model.parameters()} == {"meta"}


def test_snell_translator_folder_with_a_larger_tokenizer(tmp_path: Path) -> None:
    """A translator folder whose tokenizer has more tokens than the model's table (or such a tokenizer given) is
    refused at load; it loaded, and the first source with a token beyond the table crashed with IndexError."""
    from seqexplain.data.tokenizers import save_tokenizer, train_bpe_tokenizer
    from seqexplain.errors import InputError
    from seqexplain.models.snell_saving import load_snell, save_snell_translator
    from seqexplain.models.snell_translation import SnellTranslator, SnellTranslatorConfig

    lines = ["ein mann faehrt rad", "a man rides a bike", "zwei hunde", "two dogs"] * 3
    tok = train_bpe_tokenizer(lines, vocab_size=60, min_frequency=1)
    big = train_bpe_tokenizer(lines + ["qqq xyz vvv www jjj kkk lll mmm nnn ooo ppp"] * 3, vocab_size=120,
                              min_frequency=1)
    assert len(big) > len(tok)
    torch.manual_seed(0)
    net = SnellTranslator(SnellTranslatorConfig(len(tok), 6, 4, 1, 0.0, False, tok.pad_token_id, tok.bos_token_id,
                                                tok.eos_token_id)).eval()
    save_snell_translator(net, tok, tmp_path / "t")
    back = load_snell(tmp_path / "t")
    ex = back.encode("ein mann", "a man")
    ids = ex.input_ids.unsqueeze(0)
    s = ex.n_source
    assert torch.equal(back.logits(ex)[0], net(input_ids=ids[:, :s], decoder_input_ids=ids[:, s:-1]).logits[0])
    with pytest.raises(InputError, match="embedding table"):
        load_snell(tmp_path / "t", tokenizer=big)
    save_tokenizer(big, tmp_path / "t")
    with pytest.raises(ModelLoadError, match="embedding table"):
        load_snell(tmp_path / "t")


def test_load_model_applies_dtype_to_native_folders(tmp_path: Path) -> None:
    """``load_model(folder, dtype=...)`` gives a module of that dtype for every seqexplain folder; the RNN LM,
    transformer LM and seq2seq folders ignored it (the Snell and soft-attention folders honoured it)."""
    from seqexplain.data.tokenizers import train_bpe_tokenizer
    from seqexplain.models.seq2seq import Seq2SeqTransformer
    from seqexplain.models.seq2seq_config import Seq2SeqConfig

    vocab = Vocab.build(WORDS)
    RNNLanguageModel(RNNLMConfig(vocab_size=len(vocab), embedding_size=4, hidden_size=5)).save(tmp_path / "rnn", vocab)
    tok = train_bpe_tokenizer(["ein mann", "a man"] * 3, vocab_size=40, min_frequency=1)
    s2s = Seq2SeqTransformer(Seq2SeqConfig(vocab_size=len(tok), d_model=8, n_heads=2, ffn_dim=8, encoder_layers=1,
                                           decoder_layers=1, max_position_embeddings=16))
    s2s.save(tmp_path / "s2s")
    tok.save_pretrained(str(tmp_path / "s2s"))
    for name in ("rnn", "s2s"):
        ad = se.load_model(str(tmp_path / name), dtype=torch.float64)
        assert {p.dtype for p in ad.model.parameters()} == {torch.float64}, name


def test_load_model_refuses_a_larger_tokenizer_for_native_modules(tmp_path: Path) -> None:
    """A seqexplain module wrapped with a tokenizer that has more tokens than its embedding table (another
    model's) is an InputError at load_model; it was accepted and the first text with a word beyond the table crashed
    with IndexError."""
    from seqexplain.errors import InputError
    from seqexplain.models.rnn import WordTokenizer

    small, big = Vocab.build(WORDS[:2]), Vocab.build(WORDS)
    rnn = RNNLanguageModel(RNNLMConfig(vocab_size=len(small), embedding_size=4, hidden_size=5))
    tf = TransformerLM(TransformerLMConfig(vocab_size=len(small), d_model=8, n_layers=1, n_heads=2, ffn_dim=8,
                                           max_position_embeddings=16))
    for model in (rnn, tf):
        with pytest.raises(InputError, match="embedding table"):
            se.load_model(model, WordTokenizer(big))
        ad = se.load_model(model, WordTokenizer(small))
        assert np.isfinite(se.explain(ad, "a b", " a", method="occlusion").scores[0, 1])
    tf.save(tmp_path / "tf")
    with pytest.raises(InputError, match="embedding table"):
        se.load_model(str(tmp_path / "tf"), tokenizer=WordTokenizer(big))


def test_cli_exits_2_on_a_corrupt_native_folder(tmp_path: Path) -> None:
    """The CLI turns the loaders' ModelLoadError into exit code 2 with a one-line message, no traceback."""
    from typer.testing import CliRunner

    from seqexplain.cli import app

    vocab = Vocab.build(WORDS)
    RNNLanguageModel(RNNLMConfig(vocab_size=len(vocab), embedding_size=4, hidden_size=5)).save(tmp_path / "rnn", vocab)
    Vocab.build([*WORDS, "f", "g"]).save(tmp_path / "rnn" / "vocab.json")
    result = CliRunner().invoke(app, ["explain", "--model", str(tmp_path / "rnn"), "--text", "a b", "--target", " c",
                                      "--method", "occlusion"])
    assert result.exit_code == 2 and "words but the model" in result.output and "Traceback" not in result.output


def test_a_native_folder_refuses_a_forced_other_kind_and_opens_with_its_tokenizer(tmp_path: Path) -> None:
    """kind= / --kind was ignored for RNN-LM, transformer-LM and seq2seq folders (an RNN LM "explained" as seq2seq
    ran as a causal LM, silently); a transformer LM saved with its tokenizer.json could not be opened without
    tokenizer=, which the CLI has no way to give. Oracle: the module's own logits."""
    from seqexplain.data.tokenizers import save_tokenizer, train_bpe_tokenizer
    from seqexplain.errors import InputError

    vocab = Vocab.build(["the", "cat", "sat", "on", "the", "mat"])
    torch.manual_seed(0)
    RNNLanguageModel(RNNLMConfig(vocab_size=len(vocab), embedding_size=8, hidden_size=12)).save(tmp_path / "rnn",
                                                                                                vocab=vocab)
    for kind in ("seq2seq", "classifier"):
        with pytest.raises(InputError, match=f"holds a causal model .*not a {kind}"):
            se.load_model(tmp_path / "rnn", kind=kind)
    assert se.load_model(tmp_path / "rnn", kind="causal").kind == "causal"
    tok = train_bpe_tokenizer(["the cat sat on the mat", "a dog runs"] * 3, vocab_size=60, min_frequency=1)
    model = TransformerLM(TransformerLMConfig(vocab_size=len(tok), d_model=8, n_layers=1, n_heads=2, ffn_dim=8,
                                              max_position_embeddings=16)).eval()
    model.save(tmp_path / "tf")
    with pytest.raises(ModelLoadError, match="save its tokenizer into the folder"):
        se.load_model(tmp_path / "tf")
    save_tokenizer(tok, tmp_path / "tf")
    wrapped = se.load_model(tmp_path / "tf")
    attr = se.explain(wrapped, "the cat sat", " on", "occlusion")
    prompt, target = tok("the cat sat").input_ids, tok(" on", add_special_tokens=False).input_ids
    assert attr.target_tokens == tok.convert_ids_to_tokens(target)
    assert tok.convert_ids_to_tokens(prompt[-1:]) == ["</s>"]  # the translation tokenizer's template appends it
    prompt = prompt[:-1]  # a continuation follows the prompt's last word, not </s>, and the result says so
    assert any("puts </s> after a text" in w for w in attr.warnings), attr.warnings
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=torch.tensor([prompt])).logits[0, -1], -1)[target[0]]
    assert attr.target_logprobs[0] == pytest.approx(float(logp), abs=1e-5)
