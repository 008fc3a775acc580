"""Models fine-tuned with PEFT: a LoRA ``PeftModel`` in memory and a saved adapter folder are explained as the
fine-tuned network they run. Oracle: the same adapter merged into a plain transformers model (``merge_and_unload``),
which seqexplain already explains like any model; the base model alone must give other scores (the adapter is on)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from write_checks import invoke

import seqexplain as se
from seqexplain.errors import ModelLoadError, UnsupportedError

peft = pytest.importorskip("peft")

TEXT, TARGET = "The cat sat on the", " mat"


def _lora(model, task, targets, **extra):
    torch.manual_seed(1)  # init_lora_weights=False: B is random too, so the adapter changes the outputs
    cfg = peft.LoraConfig(r=4, lora_alpha=8, target_modules=targets, init_lora_weights=False, task_type=task,
                          fan_in_fan_out=targets == ["c_attn", "c_fc"], **extra)  # GPT-2's Conv1D layers
    return peft.get_peft_model(copy.deepcopy(model), cfg).eval()


@pytest.fixture(scope="module", params=["CAUSAL_LM", None], ids=["PeftModelForCausalLM", "PeftModel"])
def lora_gpt2(gpt2, request):
    """Without a task type get_peft_model returns a plain PeftModel, whose class name says no kind."""
    model, tok = gpt2
    pm = _lora(model, request.param, ["c_attn", "c_fc"])
    return pm, copy.deepcopy(pm).merge_and_unload().eval(), tok


@pytest.mark.parametrize("method", ["gradient_norm", "grad_x_input", "integrated_gradients", "occlusion",
                                    "attention_last", "greedy"])
def test_a_lora_causal_lm_is_explained_as_its_merged_network(lora_gpt2, gpt2, method):
    pm, merged, tok = lora_gpt2
    got = se.explain(se.load_model(pm, tok), TEXT, TARGET, method)
    want = se.explain(se.load_model(merged, tok), TEXT, TARGET, method)
    base = se.explain(se.load_model(gpt2[0], tok), TEXT, TARGET, method)
    np.testing.assert_allclose(got.scores, want.scores, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got.target_logprobs, want.target_logprobs, rtol=1e-5, atol=1e-6)
    assert not np.allclose(got.target_logprobs, base.target_logprobs, atol=1e-3)  # the adapter is applied
    assert isinstance(pm, peft.PeftModel)  # the user's model is left as it was, adapters and all


@pytest.mark.parametrize("family, targets, task", [("bart", ["q_proj", "v_proj", "fc1"], "SEQ_2_SEQ_LM"),
                                                   ("llama", ["q_proj", "v_proj", "up_proj"], "CAUSAL_LM")])
def test_other_families_with_lora_are_explained_as_their_merged_network(request, family, targets, task):
    model, tok = request.getfixturevalue(family)
    pm = _lora(model, task, targets)
    merged = copy.deepcopy(pm).merge_and_unload().eval()
    text, target = ("The cat sat on the mat", " Le chat") if family == "bart" else (TEXT, TARGET)
    for method in ("grad_x_input", "occlusion"):
        got = se.explain(se.load_model(pm, tok), text, target, method)
        want = se.explain(se.load_model(merged, tok), text, target, method)
        np.testing.assert_allclose(got.scores, want.scores, rtol=1e-5, atol=1e-5)
        assert got.model_kind == want.model_kind


def test_explain_many_on_a_lora_model_equals_one_at_a_time(lora_gpt2):
    pm, _, tok = lora_gpt2
    wrapped = se.load_model(pm, tok)
    items = [("The cat sat on the", " mat"), ("A dog", " ran"), ("The cat", " sat on")]
    many = list(se.explain_many(wrapped, items, "grad_x_input", progress=False))
    for (text, target), m in zip(items, many, strict=True):
        np.testing.assert_allclose(m.scores, se.explain(wrapped, text, target, "grad_x_input").scores,
                                   rtol=1e-5, atol=1e-6)


def test_a_prompt_learning_adapter_is_refused(gpt2):
    model, tok = gpt2
    pt = peft.get_peft_model(copy.deepcopy(model), peft.PromptTuningConfig(task_type="CAUSAL_LM",
                                                                            num_virtual_tokens=3))
    with pytest.raises(UnsupportedError, match=r"prompt-learning adapter \(PROMPT_TUNING\).*virtual tokens"):
        se.load_model(pt, tok)


@pytest.fixture(scope="module")
def classifier_adapter(bert, tmp_path_factory):
    """A bare BERT saved as the base folder; a SEQ_CLS LoRA adapter whose classifier head is saved whole
    (``modules_to_save``) and trained (perturbed here), saved without the base and without a tokenizer."""
    from transformers import BertModel

    clf, tok = bert
    base_dir = tmp_path_factory.mktemp("bert-base")
    body = BertModel(clf.config)
    body.load_state_dict(clf.bert.state_dict())
    body.save_pretrained(base_dir)
    tok.save_pretrained(base_dir)
    pm = _lora(clf, "SEQ_CLS", ["query", "value"])
    with torch.no_grad():
        for p in pm.base_model.model.classifier.modules_to_save["default"].parameters():
            p.add_(torch.randn_like(p))
    adapter_dir = tmp_path_factory.mktemp("bert-lora")
    pm.save_pretrained(adapter_dir)
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = str(base_dir)
    (adapter_dir / "adapter_config.json").write_text(json.dumps(config))
    return pm, tok, base_dir, adapter_dir


def test_an_adapter_folder_loads_on_its_base_folder_with_the_saved_head(classifier_adapter):
    pm, tok, _, adapter_dir = classifier_adapter
    wrapped = se.load_model(adapter_dir)
    assert wrapped.kind == "classifier" and not wrapped.model_warnings
    for method in ("occlusion", "integrated_gradients"):
        got = se.explain(wrapped, "a fine film", "positive", method)
        want = se.explain(se.load_model(pm, tok), "a fine film", "positive", method)
        np.testing.assert_allclose(got.scores, want.scores, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got.target_logprobs, want.target_logprobs, rtol=1e-5, atol=1e-6)


def test_the_command_line_explains_an_adapter_folder(classifier_adapter, runner):
    *_, adapter_dir = classifier_adapter
    result = invoke(runner, "explain", "-m", adapter_dir, "-t", "a fine film", "--target", "positive",
                    "--method", "occlusion")
    assert result.exit_code == 0, result.output
    assert "positive" in result.stdout


def _adapter_copy(adapter_dir, tmp_path, **changes):
    out = tmp_path / "adapter"
    out.mkdir(parents=True)
    for f in adapter_dir.iterdir():
        (out / f.name).write_bytes(f.read_bytes())
    config = json.loads((out / "adapter_config.json").read_text())
    config.update(changes)
    (out / "adapter_config.json").write_text(json.dumps(config))
    return out


def test_adapter_folder_errors_say_what_to_do(classifier_adapter, tmp_path):
    *_, adapter_dir = classifier_adapter
    with pytest.raises(ModelLoadError, match="base model 'org/not-here', which is not a local model folder"):
        se.load_model(_adapter_copy(adapter_dir, tmp_path / "a", base_model_name_or_path="org/not-here"))
    with pytest.raises(UnsupportedError, match="fine-tunes a QUESTION_ANS model.*token classifiers \\(TOKEN_CLS\\)"):
        se.load_model(_adapter_copy(adapter_dir, tmp_path / "b", task_type="QUESTION_ANS"))
    no_type = _adapter_copy(adapter_dir, tmp_path / "d")
    config = json.loads((no_type / "adapter_config.json").read_text())
    del config["peft_type"]
    (no_type / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="lacks the key 'peft_type'; it is not a complete PEFT adapter config"):
        se.load_model(no_type)
    pickled = _adapter_copy(adapter_dir, tmp_path / "e")
    (pickled / "adapter_model.safetensors").rename(pickled / "adapter_model.bin")
    with pytest.raises(ModelLoadError, match="no adapter_model.safetensors but a pickled adapter_model.bin"):
        se.load_model(pickled)
    (pickled / "adapter_model.bin").unlink()
    with pytest.raises(ModelLoadError, match="no adapter_model.safetensors; copy the adapter's weights there"):
        se.load_model(pickled)
    with pytest.raises(ModelLoadError, match="names no base model"):
        se.load_model(_adapter_copy(adapter_dir, tmp_path / "c", base_model_name_or_path=None))


def test_a_head_neither_base_nor_adapter_holds_is_refused(classifier_adapter, tmp_path):
    """The base folder is a bare encoder; an adapter without a saved head would explain a random one."""
    _, _, base_dir, adapter_dir = classifier_adapter
    torch.manual_seed(0)
    from transformers import BertForSequenceClassification

    clf = BertForSequenceClassification.from_pretrained(base_dir, num_labels=3)
    pm = peft.get_peft_model(clf, peft.LoraConfig(r=2, target_modules=["query"], task_type=None))
    pm.save_pretrained(tmp_path / "no-head")
    config = json.loads((tmp_path / "no-head" / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = str(base_dir)
    (tmp_path / "no-head" / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match=r"weight\(s\) of a classifier model without values \(classifier"):
        se.load_model(tmp_path / "no-head", kind="classifier")
    wrapped = se.load_model(tmp_path / "no-head", kind="classifier", allow_new_head=True)
    assert "initialised at random" in wrapped.model_warnings[0]


def test_a_pipeline_and_a_compiled_module_are_explained_as_the_model_they_hold(lora_gpt2):
    """A transformers pipeline gives its model and tokenizer; torch.compile's wrapper its module (no compiling:
    the same parameters); they nest with PEFT."""
    from transformers import pipeline

    pm, merged, tok = lora_gpt2
    want = se.explain(se.load_model(merged, tok), TEXT, TARGET, "grad_x_input")
    for held, given in ((pipeline("text-generation", model=pm, tokenizer=tok), None), (torch.compile(pm), tok),
                        (pipeline("text-generation", model=torch.compile(pm), tokenizer=tok), None)):
        wrapped = se.load_model(held, given)
        assert wrapped.kind == "causal" and wrapped.tokenizer is tok
        got = se.explain(wrapped, TEXT, TARGET, "grad_x_input")
        np.testing.assert_allclose(got.scores, want.scores, rtol=1e-5, atol=1e-5)


def _gpt2(tok, n_layer: int, n_embd: int = 32):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(n_layer=n_layer, n_embd=n_embd, n_head=2, vocab_size=len(tok),
                                      n_positions=64)).eval()


@pytest.mark.parametrize("other, message", [
    (dict(n_layer=2), r"2 weight\(s\) of the PEFT adapter .* match no module of its base model \(base_model\.model"
                      r"\.transformer\.h\.1\.attn"),
    (dict(n_layer=1, n_embd=16), r"cannot apply the PEFT adapter .*another one\?\): Error\(s\) in loading "
                                 r"state_dict .*size mismatch"),
])
def test_an_adapter_trained_on_another_base_is_refused(gpt2, tmp_path, other, message):
    """A LoRA adapter of a 2-layer GPT-2 on a 1-layer base: PEFT applies layer 0's weights and drops layer 1's without a
    word; on a base of another width it fails with the size mismatch on its second line."""
    _, tok = gpt2
    base = _gpt2(tok, 1)
    base.save_pretrained(tmp_path / "base")
    tok.save_pretrained(tmp_path / "base")
    trained = peft.get_peft_model(_gpt2(tok, **other), peft.LoraConfig(r=2, target_modules=["c_attn"],
                                                                      fan_in_fan_out=True, task_type="CAUSAL_LM"))
    trained.save_pretrained(tmp_path / "adapter")
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = str(tmp_path / "base")
    (tmp_path / "adapter" / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match=message):
        se.load_model(tmp_path / "adapter")


def test_a_token_classifier_adapter_folder_loads_as_a_labeller(tmp_path):
    from conftest import wordpiece_tokenizer
    from transformers import BertConfig, BertForTokenClassification, BertModel

    tok = wordpiece_tokenizer()
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64, num_labels=3)
    tagger = BertForTokenClassification(cfg).eval()
    body = BertModel(cfg, add_pooling_layer=False)
    body.load_state_dict(tagger.bert.state_dict())
    body.save_pretrained(tmp_path / "base")
    tok.save_pretrained(tmp_path / "base")
    pm = _lora(tagger, "TOKEN_CLS", ["query", "value"])
    pm.save_pretrained(tmp_path / "adapter")
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = str(tmp_path / "base")
    (tmp_path / "adapter" / "adapter_config.json").write_text(json.dumps(config))
    wrapped = se.load_model(tmp_path / "adapter")
    assert wrapped.kind == "labeller" and not wrapped.model_warnings
    got = se.explain(wrapped, "john smith sat", None, "occlusion")
    want = se.explain(se.load_model(copy.deepcopy(pm).merge_and_unload().eval(), tok), "john smith sat", None,
                      "occlusion")
    assert got.target_tokens == want.target_tokens
    np.testing.assert_allclose(got.scores, want.scores, rtol=1e-5, atol=1e-6)
