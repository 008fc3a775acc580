"""Tiny random Hugging Face models of many architectures, built from configs (no downloads): one or two layers,
width 32, the tokenizers of ``conftest.py``. :data:`FAMILIES` maps a family name to its kind, its tokenizer
("bpe" or "wordpiece") and a builder ``(tokenizer) -> model``; a builder raises ``SkipFamily`` with the reason when
this version of ``transformers`` cannot build the family."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch


class SkipFamily(Exception):
    """The family cannot be built with the installed ``transformers``."""


@dataclass(frozen=True)
class Family:
    kind: str  # causal, seq2seq, classifier
    tokenizer: str  # bpe, bpe_eos (adds <s> ... </s>), wordpiece
    build: Callable[[Any], torch.nn.Module]
    slow: bool = False
    #: how "delete token j" is built by hand for a causal model (docs/methods.md): "ids" (packed, original position
    #: ids), "inplace" (masked where it stands: no position ids), "closed" (packed, no positions: a recurrent stack)
    deletes: str = "ids"
    #: methods the library refuses for this family (with a seqexplain error saying what to use instead)
    refuses: tuple[str, ...] = ()


def _make(config_name: str, model_name: str, **config: Any) -> Callable[[Any], torch.nn.Module]:
    def build(tok: Any) -> torch.nn.Module:
        import transformers

        config_cls = getattr(transformers, config_name, None)
        model_cls = getattr(transformers, model_name, None)
        if config_cls is None or model_cls is None:
            raise SkipFamily(f"transformers {transformers.__version__} has no {config_name} / {model_name}")
        ids = {"pad_token_id": tok.pad_token_id, "eos_token_id": tok.sep_token_id if tok.eos_token_id is None
               else tok.eos_token_id, "bos_token_id": tok.cls_token_id if tok.bos_token_id is None
               else tok.bos_token_id}
        torch.manual_seed(0)
        model = model_cls(config_cls(vocab_size=len(tok), **ids, **config)).eval()
        with torch.no_grad():  # trained-size weights, so that every position, position id and scale matters
            for module in model.modules():
                if isinstance(module, torch.nn.Linear):
                    module.weight.normal_(0.0, module.in_features ** -0.5)
            model.get_input_embeddings().weight.normal_(0.0, 1.0)
        return model

    return build


_DEC = dict(num_hidden_layers=2, hidden_size=32, intermediate_size=64, num_attention_heads=4, num_key_value_heads=2,
            max_position_embeddings=64)
_S2S = dict(d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
            encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64)
_ENC = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            max_position_embeddings=64, num_labels=2)


def _seq2seq(config: str, model: str, **extra: Any) -> Callable[[Any], torch.nn.Module]:
    def build(tok: Any) -> torch.nn.Module:
        return _make(config, model, decoder_start_token_id=tok.eos_token_id, forced_bos_token_id=None,
                     **{**_S2S, **extra})(tok)

    return build


FAMILIES: dict[str, Family] = {
    # ------------------------------------------------------------------ causal language models
    "gpt2": Family("causal", "bpe", _make("GPT2Config", "GPT2LMHeadModel", n_layer=2, n_embd=32, n_head=2,
                                          n_positions=64)),
    "gpt_neo": Family("causal", "bpe", _make("GPTNeoConfig", "GPTNeoForCausalLM", num_layers=2, hidden_size=32,
                                             num_heads=2, max_position_embeddings=64, window_size=4,
                                             attention_types=[[["global", "local"], 1]])),
    "gpt_neox": Family("causal", "bpe", _make("GPTNeoXConfig", "GPTNeoXForCausalLM", num_hidden_layers=2,
                                              hidden_size=32, intermediate_size=64, num_attention_heads=2,
                                              max_position_embeddings=64)),
    "gptj": Family("causal", "bpe", _make("GPTJConfig", "GPTJForCausalLM", n_layer=2, n_embd=32, n_head=2,
                                          rotary_dim=8, n_positions=64)),
    "opt": Family("causal", "bpe", _make("OPTConfig", "OPTForCausalLM", num_hidden_layers=2, hidden_size=32,
                                         ffn_dim=64, num_attention_heads=2, word_embed_proj_dim=32,
                                         max_position_embeddings=64)),
    "bloom": Family("causal", "bpe", _make("BloomConfig", "BloomForCausalLM", n_layer=2, hidden_size=32, n_head=4),
                    deletes="inplace"),
    "llama": Family("causal", "bpe", _make("LlamaConfig", "LlamaForCausalLM", **_DEC)),
    "mistral": Family("causal", "bpe", _make("MistralConfig", "MistralForCausalLM", sliding_window=4, **_DEC)),
    "qwen2": Family("causal", "bpe", _make("Qwen2Config", "Qwen2ForCausalLM", **_DEC)),
    "phi": Family("causal", "bpe", _make("PhiConfig", "PhiForCausalLM", partial_rotary_factor=0.5, **_DEC)),
    "gemma": Family("causal", "bpe", _make("GemmaConfig", "GemmaForCausalLM", head_dim=8, **_DEC)),
    "falcon": Family("causal", "bpe", _make("FalconConfig", "FalconForCausalLM", num_hidden_layers=2, hidden_size=32,
                                            num_attention_heads=4, alibi=False, max_position_embeddings=64)),
    "falcon_alibi": Family("causal", "bpe", _make("FalconConfig", "FalconForCausalLM", num_hidden_layers=2,
                                                  hidden_size=32, num_attention_heads=4, alibi=True)),
    "codegen": Family("causal", "bpe", _make("CodeGenConfig", "CodeGenForCausalLM", n_layer=2, n_embd=32, n_head=2,
                                             rotary_dim=8, n_positions=64, n_ctx=64)),
    "mpt": Family("causal", "bpe", _make("MptConfig", "MptForCausalLM", n_layers=2, d_model=32, n_heads=4,
                                         max_seq_len=64), deletes="inplace"),
    "stablelm": Family("causal", "bpe", _make("StableLmConfig", "StableLmForCausalLM", **_DEC)),
    "gemma2": Family("causal", "bpe", _make("Gemma2Config", "Gemma2ForCausalLM", head_dim=8, sliding_window=4,
                                            final_logit_softcapping=5.0, **_DEC)),
    "qwen3": Family("causal", "bpe", _make("Qwen3Config", "Qwen3ForCausalLM", head_dim=8, **_DEC)),
    "olmo": Family("causal", "bpe", _make("OlmoConfig", "OlmoForCausalLM", **_DEC)),
    "phi3": Family("causal", "bpe", _make("Phi3Config", "Phi3ForCausalLM", **_DEC)),
    "gpt_bigcode": Family("causal", "bpe", _make("GPTBigCodeConfig", "GPTBigCodeForCausalLM", n_layer=2, n_embd=32,
                                                 n_head=2, n_positions=64)),
    "starcoder2": Family("causal", "bpe", _make("Starcoder2Config", "Starcoder2ForCausalLM", sliding_window=None,
                                                **_DEC)),
    "xglm": Family("causal", "bpe", _make("XGLMConfig", "XGLMForCausalLM", num_layers=2, d_model=32, ffn_dim=64,
                                          attention_heads=2, max_position_embeddings=64, scale_embedding=True)),
    "biogpt": Family("causal", "bpe", _make("BioGptConfig", "BioGptForCausalLM", **{
        k: v for k, v in _DEC.items() if k != "num_key_value_heads"})),
    "gemma3": Family("causal", "bpe", _make("Gemma3TextConfig", "Gemma3ForCausalLM", head_dim=8, sliding_window=4,
                                            sliding_window_pattern=2, **_DEC)),
    "cohere": Family("causal", "bpe", _make("CohereConfig", "CohereForCausalLM", logit_scale=0.5, **_DEC)),
    "granite": Family("causal", "bpe", _make("GraniteConfig", "GraniteForCausalLM", embedding_multiplier=2.0,
                                             logits_scaling=3.0, residual_multiplier=0.5, attention_multiplier=0.3,
                                             **_DEC)),
    "jamba": Family("causal", "bpe", _make("JambaConfig", "JambaForCausalLM", num_hidden_layers=2, hidden_size=32,
                                           intermediate_size=64, num_attention_heads=4, num_key_value_heads=2,
                                           attn_layer_period=2, attn_layer_offset=1, expert_layer_period=2,
                                           expert_layer_offset=1, num_experts=2, mamba_d_state=4, mamba_expand=2,
                                           mamba_dt_rank=4, use_mamba_kernels=False), deletes="closed"),
    "falcon_mamba": Family("causal", "bpe", _make("FalconMambaConfig", "FalconMambaForCausalLM", hidden_size=32,
                                                  num_hidden_layers=2, state_size=4), deletes="closed"),
    "mamba2": Family("causal", "bpe", _make("Mamba2Config", "Mamba2ForCausalLM", hidden_size=32, num_hidden_layers=2,
                                            state_size=4, num_heads=4, head_dim=16, n_groups=1, expand=2,
                                            chunk_size=8), deletes="closed"),
    "recurrent_gemma": Family("causal", "bpe", _make(
        "RecurrentGemmaConfig", "RecurrentGemmaForCausalLM", num_hidden_layers=2, hidden_size=32,
        intermediate_size=64, num_attention_heads=4, num_key_value_heads=2, lru_width=32, attention_window_size=4,
        block_types=["recurrent", "attention"], head_dim=8)),
    "falcon_h1": Family("causal", "bpe", _make(
        "FalconH1Config", "FalconH1ForCausalLM", num_hidden_layers=2, hidden_size=32, intermediate_size=64,
        num_attention_heads=4, num_key_value_heads=2, head_dim=8, mamba_d_state=4, mamba_n_heads=4,
        mamba_d_head=16, mamba_d_ssm=64, mamba_n_groups=1, mamba_chunk_size=8, max_position_embeddings=64,
        embedding_multiplier=2.0)),
    "mixtral": Family("causal", "bpe", _make("MixtralConfig", "MixtralForCausalLM", num_local_experts=2,
                                             num_experts_per_tok=1, **_DEC)),
    "olmo2": Family("causal", "bpe", _make("Olmo2Config", "Olmo2ForCausalLM", **_DEC)),
    "ctrl": Family("causal", "bpe", _make("CTRLConfig", "CTRLLMHeadModel", n_layer=2, n_embd=32, n_head=2, dff=64,
                                          n_positions=64)),
    "openai_gpt": Family("causal", "bpe", _make("OpenAIGPTConfig", "OpenAIGPTLMHeadModel", n_layer=2, n_embd=32,
                                                n_head=2, n_positions=64)),
    "bert_lm": Family("causal", "bpe", _make("BertConfig", "BertLMHeadModel", is_decoder=True, **{
        k: v for k, v in _ENC.items() if k != "num_labels"})),
    "rwkv": Family("causal", "bpe", _make("RwkvConfig", "RwkvForCausalLM", hidden_size=32, num_hidden_layers=2,
                                          attention_hidden_size=32, intermediate_size=64, context_length=64),
                   deletes="closed", refuses=("occlusion",)),
    "mamba": Family("causal", "bpe", _make("MambaConfig", "MambaForCausalLM", hidden_size=32, num_hidden_layers=2,
                                           state_size=4), deletes="closed"),
    # ------------------------------------------------------------------ encoder-decoders
    "bart": Family("seq2seq", "bpe", _seq2seq("BartConfig", "BartForConditionalGeneration")),
    "mbart": Family("seq2seq", "bpe", _seq2seq("MBartConfig", "MBartForConditionalGeneration")),
    "t5": Family("seq2seq", "bpe", lambda tok: _make(
        "T5Config", "T5ForConditionalGeneration", d_model=32, d_kv=16, d_ff=64, num_layers=1, num_decoder_layers=1,
        num_heads=2, decoder_start_token_id=tok.pad_token_id)(tok)),
    "marian": Family("seq2seq", "bpe", lambda tok: _make(
        "MarianConfig", "MarianMTModel", decoder_start_token_id=tok.pad_token_id, scale_embedding=True,
        **_S2S)(tok)),
    "pegasus": Family("seq2seq", "bpe", lambda tok: _make(
        "PegasusConfig", "PegasusForConditionalGeneration", decoder_start_token_id=tok.pad_token_id,
        scale_embedding=True, **_S2S)(tok)),
    "m2m_100": Family("seq2seq", "bpe", _seq2seq("M2M100Config", "M2M100ForConditionalGeneration",
                                                 scale_embedding=True)),
    "led": Family("seq2seq", "bpe", lambda tok: _make(
        "LEDConfig", "LEDForConditionalGeneration", d_model=32, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
        max_encoder_position_embeddings=64, max_decoder_position_embeddings=64, attention_window=4,
        decoder_start_token_id=tok.eos_token_id)(tok)),
    "mt5": Family("seq2seq", "bpe", lambda tok: _make(
        "MT5Config", "MT5ForConditionalGeneration", d_model=32, d_kv=16, d_ff=64, num_layers=1, num_decoder_layers=1,
        num_heads=2, decoder_start_token_id=tok.pad_token_id)(tok)),
    "umt5": Family("seq2seq", "bpe", lambda tok: _make(
        "UMT5Config", "UMT5ForConditionalGeneration", d_model=32, d_kv=16, d_ff=64, num_layers=1,
        num_decoder_layers=1, num_heads=2, decoder_start_token_id=tok.pad_token_id)(tok)),
    "longt5": Family("seq2seq", "bpe", lambda tok: _make(
        "LongT5Config", "LongT5ForConditionalGeneration", d_model=32, d_kv=16, d_ff=64, num_layers=1,
        num_decoder_layers=1, num_heads=2, local_radius=2, decoder_start_token_id=tok.pad_token_id)(tok)),
    "blenderbot_small": Family("seq2seq", "bpe", _seq2seq("BlenderbotSmallConfig",
                                                          "BlenderbotSmallForConditionalGeneration",
                                                          scale_embedding=True)),
    "blenderbot": Family("seq2seq", "bpe", _seq2seq("BlenderbotConfig", "BlenderbotForConditionalGeneration",
                                                    scale_embedding=True)),
    "plbart": Family("seq2seq", "bpe", _seq2seq("PLBartConfig", "PLBartForConditionalGeneration")),
    "fsmt": Family("seq2seq", "bpe", lambda tok: _make(
        "FSMTConfig", "FSMTForConditionalGeneration", langs=["en", "de"], src_vocab_size=len(tok),
        tgt_vocab_size=len(tok), decoder_start_token_id=tok.eos_token_id, **_S2S)(tok), refuses=("gradient_norm",)),
    "prophetnet": Family("seq2seq", "bpe", lambda tok: _make(
        "ProphetNetConfig", "ProphetNetForConditionalGeneration", hidden_size=32, encoder_ffn_dim=64,
        decoder_ffn_dim=64, num_encoder_layers=1, num_decoder_layers=1, num_encoder_attention_heads=2,
        num_decoder_attention_heads=2, max_position_embeddings=64, ngram=2,
        decoder_start_token_id=tok.eos_token_id)(tok), refuses=("occlusion", "gradient_norm")),
    "bigbird_pegasus": Family("seq2seq", "bpe", _seq2seq("BigBirdPegasusConfig",
                                                         "BigBirdPegasusForConditionalGeneration",
                                                         attention_type="original_full")),
    # ------------------------------------------------------------------ sequence classifiers
    "bert": Family("classifier", "wordpiece", _make("BertConfig", "BertForSequenceClassification", **_ENC)),
    "roberta": Family("classifier", "wordpiece", _make("RobertaConfig", "RobertaForSequenceClassification", **_ENC)),
    "xlm_roberta": Family("classifier", "wordpiece", _make("XLMRobertaConfig", "XLMRobertaForSequenceClassification",
                                                           **_ENC)),
    "distilbert": Family("classifier", "wordpiece", _make(
        "DistilBertConfig", "DistilBertForSequenceClassification", dim=32, n_layers=2, n_heads=2, hidden_dim=64,
        max_position_embeddings=64, num_labels=2)),
    "albert": Family("classifier", "wordpiece", _make("AlbertConfig", "AlbertForSequenceClassification",
                                                      embedding_size=16, **_ENC)),
    "electra": Family("classifier", "wordpiece", _make("ElectraConfig", "ElectraForSequenceClassification",
                                                       embedding_size=16, **_ENC)),
    "deberta_v2": Family("classifier", "wordpiece", _make("DebertaV2Config", "DebertaV2ForSequenceClassification",
                                                          **_ENC)),
    "deberta_v3_style": Family("classifier", "wordpiece", _make(
        "DebertaV2Config", "DebertaV2ForSequenceClassification", relative_attention=True,
        position_biased_input=False, position_buckets=8, max_relative_positions=-1, pos_att_type=["p2c", "c2p"],
        **_ENC)),
    "deberta": Family("classifier", "wordpiece", _make("DebertaConfig", "DebertaForSequenceClassification",
                                                       relative_attention=True, **_ENC)),
    "camembert": Family("classifier", "wordpiece", _make("CamembertConfig", "CamembertForSequenceClassification",
                                                         **_ENC)),
    "mpnet": Family("classifier", "wordpiece", _make("MPNetConfig", "MPNetForSequenceClassification", **_ENC)),
    "convbert": Family("classifier", "wordpiece", _make("ConvBertConfig", "ConvBertForSequenceClassification",
                                                        embedding_size=32, **_ENC)),
    "longformer": Family("classifier", "wordpiece", _make("LongformerConfig", "LongformerForSequenceClassification",
                                                          attention_window=4, **_ENC)),
    "xlnet": Family("classifier", "wordpiece", _make("XLNetConfig", "XLNetForSequenceClassification", d_model=32,
                                                     n_layer=2, n_head=2, d_inner=64, num_labels=2)),
    "funnel": Family("classifier", "wordpiece", _make("FunnelConfig", "FunnelForSequenceClassification",
                                                      block_sizes=[1, 1], d_model=32, n_head=2, d_head=16,
                                                      d_inner=64, num_labels=2)),
    "mistral_classifier": Family("classifier", "bpe", _make("MistralConfig", "MistralForSequenceClassification",
                                                            num_labels=2, **_DEC)),
    "modernbert": Family("classifier", "wordpiece", _make(
        "ModernBertConfig", "ModernBertForSequenceClassification", hidden_size=32, num_hidden_layers=2,
        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64, local_attention=4,
        global_attn_every_n_layers=2, num_labels=2)),
    "bigbird": Family("classifier", "wordpiece", _make("BigBirdConfig", "BigBirdForSequenceClassification",
                                                       attention_type="original_full", **_ENC)),
    "bart_classifier": Family("classifier", "bpe_eos", lambda tok: _make(
        "BartConfig", "BartForSequenceClassification", num_labels=2, id2label={0: "no", 1: "yes"}, **_S2S)(tok),
                              refuses=("occlusion", "gradient_norm")),
    "xlm": Family("classifier", "wordpiece", _make("XLMConfig", "XLMForSequenceClassification", emb_dim=32,
                                                   n_layers=2, n_heads=2, max_position_embeddings=64, num_labels=2)),
    "gpt2_classifier": Family("classifier", "bpe", _make("GPT2Config", "GPT2ForSequenceClassification", n_layer=2,
                                                         n_embd=32, n_head=2, n_positions=64, num_labels=2)),
    "llama_classifier": Family("classifier", "bpe", _make("LlamaConfig", "LlamaForSequenceClassification",
                                                          num_labels=2, **_DEC)),
}
