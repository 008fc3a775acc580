"""A decoder-style classifier head reads the last token that is not the config's pad id when it gets ``input_ids``,
and the last position when it gets ``inputs_embeds`` (the gradient methods' path). An input ending with the pad id
(pad = eos, the text or the tokenizer ending with it) was explained as a different function by the gradient
methods than by the model and by occlusion, silently. Oracles: the raw module's own log p on the full ids, and
autograd through its embedding layer's output on the ids path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import GPT2Config, GPT2ForSequenceClassification, PretrainedConfig
from transformers.modeling_outputs import SequenceClassifierOutput

import seqexplain as se
from seqexplain.errors import InputError


def _gpt2(bpe, pad_id: int) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=len(bpe), n_positions=64, num_labels=2,
                     pad_token_id=pad_id)
    return GPT2ForSequenceClassification(cfg).eval()


def _oracle(model, ids: list[int], label: int) -> tuple[float, np.ndarray]:
    """log p(label) of the raw module on ``ids`` and its gradient norm per position, autograd through the output of
    its embedding layer on the ids path (the head finds its token through the ids)."""
    outs = []
    handle = model.get_input_embeddings().register_forward_hook(lambda _m, _a, out: outs.append(out) or out)
    try:
        logp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0], -1)[label]
    finally:
        handle.remove()
    (grad,) = torch.autograd.grad(logp, outs[0])
    return float(logp.detach()), grad[0].norm(dim=-1).numpy()


@pytest.mark.parametrize("pad", ["pad", "eos"])
@pytest.mark.parametrize("method", ["gradient_norm", "occlusion"])
def test_trailing_pad_tokens_are_left_out_with_a_warning(bpe, pad, method):
    pad_id = bpe.pad_token_id if pad == "pad" else bpe.eos_token_id
    model = _gpt2(bpe, pad_id)
    text = "The cat sat " + bpe.convert_ids_to_tokens(pad_id) * 2
    ids = bpe(text)["input_ids"]
    assert ids[-2:] == [pad_id, pad_id]
    w = se.load_model(model, bpe)
    se.explain(w, "The cat sat", 0, method)  # a clean input first: the outcome must not depend on the order
    attr = se.explain(w, text, 0, method)
    logp, norms = _oracle(model, ids, 0)
    assert attr.target_logprobs[0] == pytest.approx(logp, abs=1e-5)
    assert attr.scores.shape[1] == len(ids) - 2
    assert any("ends with 2 pad token" in m and "left out" in m for m in attr.warnings), attr.warnings
    assert np.allclose(norms[-2:], 0.0)  # the raw module's output does not depend on them
    if method == "gradient_norm":
        np.testing.assert_allclose(attr.scores[0], norms[:-2], rtol=1e-4, atol=1e-6)
    many = list(se.explain_many(w, [("The cat sat", 0), (text, 0)], method, progress=False))[1]
    np.testing.assert_allclose(many.scores, attr.scores, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("n", [1, 3])
def test_an_input_of_pad_tokens_only_is_read_at_its_first_token(bpe, n):
    """The head reads position 0 of a row of pad ids: one token is explained as it is (it was refused), more keep
    their first token, with the warning."""
    model = _gpt2(bpe, bpe.eos_token_id)
    w = se.load_model(model, bpe)
    ids = bpe(bpe.eos_token * n)["input_ids"]
    assert ids == [bpe.eos_token_id] * n
    attr = se.explain(w, bpe.eos_token * n, 0, "gradient_norm")
    logp, norms = _oracle(model, ids, 0)
    assert attr.target_logprobs[0] == pytest.approx(logp, abs=1e-5) and attr.scores.shape[1] == 1
    np.testing.assert_allclose(attr.scores[0], norms[:1], rtol=1e-4, atol=1e-6)
    assert any(f"ends with {n - 1} pad token(s)" in m for m in attr.warnings) == (n > 1), attr.warnings


class _Bidirectional(torch.nn.Module):
    """A decoder-style ``score`` head over a stack that reads in both directions (every position gets the mean of
    all): its trailing pad tokens change the token it reads."""

    def __init__(self, vocab: int, pad_id: int) -> None:
        super().__init__()
        self.config = PretrainedConfig(pad_token_id=pad_id, num_labels=2, vocab_size=vocab)
        torch.manual_seed(0)
        self.emb, self.score = torch.nn.Embedding(vocab, 8), torch.nn.Linear(8, 2)

    def get_input_embeddings(self) -> torch.nn.Module:
        return self.emb

    def forward(self, input_ids=None, inputs_embeds=None, attention_mask=None, position_ids=None):
        h = self.emb(input_ids) if inputs_embeds is None else inputs_embeds
        mask = torch.ones(h.shape[:2]) if attention_mask is None else attention_mask.float()
        h = h + (h * mask[..., None]).sum(1, keepdim=True) / mask.sum(1)[:, None, None]
        logits = self.score(h)
        last = torch.full((h.shape[0],), h.shape[1] - 1)
        if input_ids is not None:
            last = (torch.arange(h.shape[1]) * (input_ids != self.config.pad_token_id)).argmax(-1)
        return SequenceClassifierOutput(logits=logits[torch.arange(h.shape[0]), last])


def test_trailing_pads_that_change_the_output_are_refused(bpe):
    w = se.load_model(_Bidirectional(len(bpe), bpe.eos_token_id), bpe, kind="classifier")
    assert w.head_position == "last"
    se.explain(w, "The cat sat", 0, "gradient_norm")  # no pad token: explained
    with pytest.raises(InputError, match="still change its output"):
        se.explain(w, "The cat sat" + bpe.eos_token, 0, "gradient_norm")


def test_the_pad_check_runs_its_two_forwards_once_per_model(bpe):
    """The check is of the model (its later tokens cannot reach earlier ones), not of the input: a corpus of inputs
    ending with eos pays its two forwards once."""
    model = _gpt2(bpe, bpe.eos_token_id)
    w = se.load_model(model, bpe)
    w.encode("a clean one", 0)  # the adapter's own probes (position ids) run here
    calls = []
    handle = model.register_forward_hook(lambda *_: calls.append(1))
    try:
        for text in ("The cat sat", "a dog ran", "The mat"):
            w.encode(text + bpe.eos_token, 0)
            calls.append("|")
    finally:
        handle.remove()
    assert calls == [1, 1, "|", "|", "|"]
