"""Hugging Face token classifiers (``…ForTokenClassification``) explained as labellers: a target at every token of
the text. Oracles on the raw module, none through seqexplain's ``score``: captum on the raw forward (gradients),
the raw forward on the input with token ``j`` deleted and the original position ids (occlusion), the raw
``output_attentions`` (attention), plain loops (explain_many, rationale sufficiency)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import bpe_tokenizer, wordpiece_tokenizer
from test_cli import assert_user_error, invoke
from transformers import GPT2Config, GPT2ForTokenClassification

import seqexplain as se
from seqexplain.errors import InputError

LABELS = {0: "O", 1: "B-PER", 2: "I-PER"}
TEXT = "john smith sat on the mat"


@pytest.fixture(scope="module")
def tagger(bert_ner):
    return bert_ner


@pytest.fixture(scope="module")
def wrapped(tagger):
    return se.load_model(*tagger)


@pytest.fixture(scope="module")
def example(wrapped):
    return wrapped.encode(TEXT)


def _raw_logp(model, ids: list[int], positions: list[int]) -> torch.Tensor:
    """``log_softmax`` of the raw forward over ``ids`` at ``positions`` (position ids), ``[len(ids), C]``."""
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                    position_ids=torch.tensor([positions]))
    return torch.log_softmax(out.logits[0].double(), -1)


def test_targets_are_the_texts_tokens_with_the_models_labels(tagger, wrapped, example):
    model, tok = tagger
    ids = example.input_ids.tolist()
    specials = [j for j, seg in enumerate(example.segments) if seg == "special"]
    assert example.kind == "labeller" and wrapped.kind == "labeller" and wrapped.bidirectional
    assert specials == [0, len(ids) - 1] and example.target_positions == list(range(1, len(ids) - 1))
    want = _raw_logp(model, ids, list(range(len(ids)))).argmax(-1)[1:-1].tolist()
    assert example.target_ids.tolist() == want
    assert example.target_tokens == [LABELS[k] for k in want]
    assert bool(example.visibility.all())


def test_occlusion_equals_deleting_the_token(tagger, wrapped, example):
    """``a_ij = log p(y_i | x) − log p(y_i | x without j)`` read at token i, deleted tokens keeping their position
    ids; deleting target i's own token leaves it unchanged (it is read at that token)."""
    model, _ = tagger
    attr = se.explain_example(wrapped, example, "occlusion")
    ids = example.input_ids.tolist()
    n_l = len(ids)
    full = _raw_logp(model, ids, list(range(n_l)))
    for i, (p, y) in enumerate(zip(example.target_positions, example.target_ids.tolist(), strict=True)):
        for j in range(n_l):
            kept = [k for k in range(n_l) if k != j or k == p]
            logp = _raw_logp(model, [ids[k] for k in kept], kept)[kept.index(p), y]
            assert attr.scores[i, j] == pytest.approx(float(full[p, y] - logp), abs=2e-5), (i, j)
    assert not np.allclose(attr.scores, 0, atol=1e-3)


@pytest.mark.parametrize("objective", ["prob", "logit"])
def test_occlusion_explains_the_asked_objective(tagger, wrapped, example, objective):
    """``f`` = ``p(y_i)`` or the logit ``z_{y_i}`` at token i, deleting token j by hand as above."""
    model, _ = tagger
    attr = se.explain_example(wrapped, wrapped.with_objective(example, objective), "occlusion")
    ids = example.input_ids.tolist()
    n_l = len(ids)

    def f(kept: list[int], p: int, y: int) -> float:
        with torch.no_grad():
            z = model(input_ids=torch.tensor([[ids[k] for k in kept]]), position_ids=torch.tensor([kept]),
                      attention_mask=torch.ones(1, len(kept), dtype=torch.long)).logits[0, kept.index(p)].double()
        return float(torch.softmax(z, -1)[y] if objective == "prob" else z[y])

    for i, (p, y) in enumerate(zip(example.target_positions, example.target_ids.tolist(), strict=True)):
        full = f(list(range(n_l)), p, y)
        for j in range(n_l):
            want = full - f([k for k in range(n_l) if k != j or k == p], p, y)
            assert attr.scores[i, j] == pytest.approx(want, abs=1e-5 * max(1.0, abs(full))), (i, j)


@pytest.mark.parametrize("method", ["gradient_norm", "grad_x_input", "integrated_gradients"])
def test_gradient_methods_equal_captum_on_the_raw_forward(tagger, wrapped, example, method):
    from captum.attr import InputXGradient, IntegratedGradients, Saliency

    model, _ = tagger
    attr = se.explain_example(wrapped, example, method, **({"steps": 16, "baseline": "zero"}
                                                           if method == "integrated_gradients" else {}))
    emb = model.get_input_embeddings()(example.input_ids.view(1, -1)).detach()
    for i, (p, y) in enumerate(zip(example.target_positions, example.target_ids.tolist(), strict=True)):
        def f(e: torch.Tensor, p: int = p) -> torch.Tensor:
            mask = torch.ones(e.shape[:2], dtype=torch.long)
            return torch.log_softmax(model(inputs_embeds=e, attention_mask=mask).logits[:, p], -1)

        if method == "gradient_norm":
            want = Saliency(f).attribute(emb, target=y, abs=False).norm(dim=-1)[0]
        elif method == "grad_x_input":
            want = InputXGradient(f).attribute(emb, target=y).sum(-1)[0]
        else:
            want = IntegratedGradients(f).attribute(emb, baselines=torch.zeros_like(emb), target=y, n_steps=16,
                                                    method="gausslegendre").sum(-1)[0]
        np.testing.assert_allclose(attr.scores[i], want.detach().double().numpy(), rtol=1e-4,
                                   atol=1e-5 * float(want.abs().max()))


def test_contrast_with_a_foil_label_per_token(tagger, wrapped, example):
    model, _ = tagger
    foil = ["B-PER" if t != "B-PER" else "O" for t in example.target_tokens]
    attr = se.explain(wrapped, TEXT, None, "occlusion", objective="contrast", foil=foil)
    ids = example.input_ids.tolist()
    n_l = len(ids)
    full = _raw_logp(model, ids, list(range(n_l)))
    i, p, j = 0, example.target_positions[0], 3
    y, f = example.target_ids[0].item(), {v: k for k, v in LABELS.items()}[foil[0]]
    kept = [k for k in range(n_l) if k != j]
    part = _raw_logp(model, [ids[k] for k in kept], kept)[kept.index(p)]
    assert attr.scores[i, j] == pytest.approx(float((full[p, y] - full[p, f]) - (part[y] - part[f])), abs=2e-5)
    with pytest.raises(InputError, match="the foil gives 2 label"):
        se.explain(wrapped, TEXT, None, "occlusion", objective="contrast", foil="O O")


def test_attention_rows_are_the_targets_own(tagger, wrapped, example):
    model, _ = tagger
    attr = se.explain_example(wrapped, example, "attention_last")
    with torch.no_grad():
        out = model(input_ids=example.input_ids.view(1, -1), output_attentions=True)
    last = out.attentions[-1][0].mean(0).double().numpy()  # [L, L], heads averaged
    np.testing.assert_allclose(attr.scores, last[example.target_positions], rtol=1e-5, atol=1e-7)


def test_greedy_rationale_is_sufficient_by_the_raw_forward(tagger, wrapped, example):
    """Each rationale (starting with the special tokens and the target's token) makes the raw model predict the
    target's label at its token."""
    model, _ = tagger
    attr = se.explain_example(wrapped, example, "greedy")
    ids = example.input_ids.tolist()
    for i, (p, y) in enumerate(zip(example.target_positions, example.target_ids.tolist(), strict=True)):
        kept = sorted(attr.rationale.positions[i])
        assert {0, len(ids) - 1, p} <= set(kept)
        assert attr.rationale.reached[i]
        assert int(_raw_logp(model, [ids[k] for k in kept], kept)[kept.index(p)].argmax()) == y


def test_given_labels_explain_many_and_one_at_a_time(wrapped):
    items = [(TEXT, None), ("the cat", "O B-PER"), ("mary sat", [1, 2])]
    many = list(se.explain_many(wrapped, items, "grad_x_input", progress=False))
    for (text, target), m in zip(items, many, strict=True):
        one = se.explain(wrapped, text, target, "grad_x_input")
        np.testing.assert_allclose(m.scores, one.scores, rtol=1e-5, atol=1e-7)
    assert many[1].target_tokens == ["O", "B-PER"] and many[2].target_tokens == ["B-PER", "I-PER"]
    with pytest.raises(InputError, match="gives 1 label.*has 2 token"):
        se.explain(wrapped, "the cat", "O", "occlusion")


def test_labels_given_per_word_put_the_targets_at_each_words_first_token(tagger, wrapped):
    """'johnsmithson' is three WordPiece tokens: four labels for four words explain the four words' first tokens
    (as token-classification training labels them), equal to the raw forward read there; the foil follows them."""
    model, tok = tagger
    text = "johnsmithson sat on mat"
    ex = wrapped.encode(text, "B-PER O O O")
    assert wrapped.encode(text).n_targets == 6
    assert ex.tokens[1:4] == ["johns", "##mith", "##son"] and ex.target_positions == [1, 4, 5, 6]
    assert ex.target_tokens == ["B-PER", "O", "O", "O"]
    attr = se.explain_example(wrapped, ex, "occlusion")
    ids = ex.input_ids.tolist()
    full = _raw_logp(model, ids, list(range(len(ids))))
    np.testing.assert_allclose(attr.target_logprobs, [float(full[p, y]) for p, y in
                                                      zip([1, 4, 5, 6], [1, 0, 0, 0], strict=True)], atol=1e-5)
    contrast = se.explain(wrapped, text, "B-PER O O O", "grad_x_input", objective="contrast", foil="O B-PER B-PER O")
    assert contrast.foil_tokens == ["O", "B-PER", "B-PER", "O"]
    with pytest.raises(InputError, match="gives 5 label\\(s\\) but the text has 6 token\\(s\\) in 4 word\\(s\\)"):
        wrapped.encode(text, "O O O O O")


def test_predicted_labels_of_many_texts_share_a_forward(tagger, wrapped):
    """``encode_many`` without targets predicts every text's labels in one padded forward (it ran one per text),
    each equal to a forward of that text alone."""
    model, _ = tagger
    texts = ["john smith sat", "the cat sat on the mat", "mary", "a dog ran to the park"]
    wrapped.encode("warm up", "O O")  # the adapter's one-off position-id probe runs on its first input
    calls = []
    handle = model.register_forward_hook(lambda *_: calls.append(1))
    try:
        many = wrapped.encode_many([(t, None) for t in texts])
    finally:
        handle.remove()
    assert len(calls) == 1
    for text, ex in zip(texts, many, strict=True):
        ids = ex.input_ids.tolist()
        want = _raw_logp(model, ids, list(range(len(ids)))).argmax(-1)[ex.target_positions].tolist()
        assert ex.target_ids.tolist() == want == wrapped.encode(text).target_ids.tolist()


def test_a_left_to_right_token_classifier_sees_only_up_to_its_token():
    """GPT-2's token classifier: targets see the positions up to their own (found by the kind check), so the
    later cells are not scored, and the earlier ones equal deleting the token."""
    tok = bpe_tokenizer()
    torch.manual_seed(0)
    model = GPT2ForTokenClassification(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=len(tok),
                                                  n_positions=64, num_labels=3, pad_token_id=tok.pad_token_id)).eval()
    wrapped = se.load_model(model, tok)
    assert wrapped.kind == "labeller" and not wrapped.bidirectional
    ex = wrapped.encode("The cat sat on")
    attr = se.explain_example(wrapped, ex, "occlusion")
    ids = ex.input_ids.tolist()
    full = _raw_logp(model, ids, list(range(len(ids))))
    for i, (p, y) in enumerate(zip(ex.target_positions, ex.target_ids.tolist(), strict=True)):
        assert np.isnan(attr.scores[i, p + 1:]).all()
        for j in range(p):
            kept = [k for k in range(len(ids)) if k != j]
            logp = _raw_logp(model, [ids[k] for k in kept], kept)[kept.index(p), y]
            assert attr.scores[i, j] == pytest.approx(float(full[p, y] - logp), abs=2e-5)


@pytest.mark.parametrize("method", ["greedy", "exhaustive", "baseline_rationale"])
def test_a_left_to_right_labellers_rationales_hold_only_what_it_sees(method):
    """GPT-2's token classifier with a tokenizer that appends [SEP]: the trailing special token is after every
    target, so no rationale may hold it (the start set once did)."""
    tok = wordpiece_tokenizer()
    torch.manual_seed(0)
    model = GPT2ForTokenClassification(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=len(tok),
                                                  n_positions=64, num_labels=3)).eval()
    wrapped = se.load_model(model, tok)
    attr = se.explain(wrapped, "john smith sat", None, method, **({"max_size": 3} if method == "exhaustive" else {}))
    last = len(attr.tokens) - 1
    assert attr.segments[last] == "special" and not wrapped.bidirectional
    for i, p in enumerate(attr.target_positions):
        assert all(j <= p for j in attr.rationale.positions[i]), (i, attr.rationale.positions[i])
        assert 0 in attr.rationale.positions[i] and p in attr.rationale.positions[i]


def test_the_command_line_explains_a_saved_token_classifier(tagger, tmp_path, runner):
    model, tok = tagger
    folder = tmp_path / "ner"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    out = tmp_path / "ner.json"
    ok = invoke(runner, "explain", "--model", folder, "--text", "john smith sat", "--method", "occlusion",
                "--target", "B-PER I-PER O", "--json", out)
    assert ok.exit_code == 0, ok.output
    saved = se.Attribution.load(out)
    assert saved.model_kind == "labeller" and saved.target_tokens == ["B-PER", "I-PER", "O"]
    assert_user_error(invoke(runner, "explain", "--model", folder, "--text", "john smith sat", "--method",
                             "occlusion", "--target", "B-PER"), "gives 1 label(s) but the text has 3 token(s)")


def test_a_corpus_run_explains_every_token_with_the_datas_labels(tagger, tmp_path):
    """``seqexplain run`` on a saved token classifier (``kind = "labeller"``) with one label per token in the data:
    every example's rows equal one ``explain`` call with the same labels."""
    import json

    import pyarrow.parquet as pq
    from run_helpers import run_cli

    model, tok = tagger
    model.save_pretrained(tmp_path / "ner")
    tok.save_pretrained(tmp_path / "ner")
    rows = [("john smith sat", ["B-PER", "I-PER", "O"]), ("mary ran", ["B-PER", "O"])]
    (tmp_path / "data.jsonl").write_text("".join(json.dumps({"text": t, "tags": g}) + "\n" for t, g in rows))
    (tmp_path / "run.toml").write_text(
        'seed = 0\n[data]\nformat = "jsonl"\npath = "data.jsonl"\ntarget_field = "tags"\n'
        '[model]\npath = "ner"\nkind = "labeller"\n[[methods]]\nname = "occlusion"\n[output]\ndir = "out"\n')
    code, out = run_cli(tmp_path / "run.toml")
    assert code == 0, out
    table = pq.read_table(tmp_path / "out" / "results.parquet").to_pylist()
    wrapped = se.load_model(*tagger)
    assert len(table) == len(rows)
    for record, (text, tags) in zip(table, rows, strict=True):
        want = se.explain(wrapped, text, tags, "occlusion")
        assert record["method"] == "occlusion" and record["text"] == text and record["target_tokens"] == tags
        assert record["target_positions"] == want.target_positions
        np.testing.assert_allclose(np.array(record["scores"], dtype=float), want.scores, rtol=1e-5, atol=1e-6)


def test_a_corpus_run_maps_each_tokens_label_through_data_labels(tagger, tmp_path):
    """``data.labels`` lists the data's label values in the model's label order; a labeller's target is a label per
    token, so each is mapped (the list as a whole was looked up and refused as "not one of data.labels")."""
    import json

    import pyarrow.parquet as pq
    from run_helpers import run_cli

    model, tok = tagger
    model.save_pretrained(tmp_path / "ner")
    tok.save_pretrained(tmp_path / "ner")
    names = se.load_model(*tagger).label_names()
    spelled = [f"tag{i}" for i in range(len(names))]  # the data's own spelling of each label
    rows = [("john smith sat", [1, 2, 0]), ("mary ran", [1, 0])]
    (tmp_path / "data.jsonl").write_text("".join(json.dumps({"text": t, "tags": [spelled[i] for i in g]}) + "\n"
                                                 for t, g in rows))
    (tmp_path / "run.toml").write_text(
        'seed = 0\n[data]\nformat = "jsonl"\npath = "data.jsonl"\ntarget_field = "tags"\n'
        f'labels = {json.dumps(spelled)}\n'
        '[model]\npath = "ner"\nkind = "labeller"\n[[methods]]\nname = "gradient_norm"\n[output]\ndir = "out"\n')
    code, out = run_cli(tmp_path / "run.toml")
    assert code == 0, out
    table = pq.read_table(tmp_path / "out" / "results.parquet").to_pylist()
    assert [r["target_tokens"] for r in table] == [[names[i] for i in g] for _, g in rows]


def test_a_folder_saved_as_another_kind_is_not_read_with_a_head_that_fits(bert, tmp_path, runner):
    """A sequence classifier's head [C, H] loads into a token classifier without a missing weight: forced to a
    labeller it would apply the sentence head to every token, with no warning. Refused, as other forced kinds."""
    model, tok = bert
    model.save_pretrained(tmp_path / "clf")
    tok.save_pretrained(tmp_path / "clf")
    with pytest.raises(InputError, match="holds a BertForSequenceClassification model \\(a classifier\\), whose "
                                         "weights load into a labeller model without a gap"):
        se.load_model(tmp_path / "clf", kind="labeller")
    assert_user_error(invoke(runner, "explain", "-m", tmp_path / "clf", "--kind", "labeller", "-t", "a fine film",
                             "--method", "occlusion"), "drop --kind")
    assert se.load_model(tmp_path / "clf").kind == "classifier"
