"""The second family sweep: the methods ``test_hf_family_sweep.py`` does not cover, on the same tiny random models
(``family_models.py``), each against an oracle written here on the raw Hugging Face module.

- **attention_last / attention_all / attention_rollout** (docs/methods.md, "Attention"): the raw model run with
  ``output_attentions=True`` under eager attention; ``Ā_l`` = layer ``l``'s map averaged over heads. Rows: causal LM
  ``p_i − 1`` (the position predicting target ``i``), classifier the head's position (first token; last token for
  decoder-style heads and XLNet), encoder-decoder the last layer's cross-attention row of decoder position ``i``
  over the source followed by its decoder self-attention row. Rollout (Abnar & Zuidema): ``R = Â_N ⋯ Â_1`` with
  ``Â_l`` = ``Ā_l + I`` normalised to rows summing to one; encoder-decoder source part ``C_N[i] · R_enc``. A model
  that returns no attention weights, or weights over a local window instead of positions, must be refused with a
  seqexplain error saying what to use.
- **integrated_gradients** (8 Gauss-Legendre steps, zero baseline) against captum's ``IntegratedGradients`` on the
  raw forward whose embedding layer's output is swapped for captum's inputs by a forward hook (the trick
  ``test_hf_family_sweep.py`` uses for ``gradient_norm``); **grad_x_input** ``Σ_d e_jd ∂f_i/∂e_jd`` by autograd.
- **greedy** rationale (Vafa et al. 2021; methods/rationale.py): ``s ← s_0``; while ``argmax p(· | x_s) ≠ y_i``:
  add the visible position whose addition gives the highest ``log p(y_i | x_s)``, ties to the lowest position.
  ``s_0``: causal LM ``{p_i − 1}``; encoder-decoder ``{decoder position i}``; classifier the special tokens (else
  the head's position). ``x_s`` deletes the other tokens as the family's entry says (``Family.deletes``, see
  ``test_hf_family_sweep.py``); an encoder-decoder row without source zeroes the cross-attention outputs (rule 5).
  **exhaustive** (``max_size=4``, a short input): the first sufficient ``s_0 ∪ c`` by size, ``c`` in
  ``itertools.combinations`` order; ``[]`` when none is. IG's ``explain_many`` equals one ``explain`` per item.
"""

from __future__ import annotations

import contextlib
import inspect

import numpy as np
import pytest
import torch
from family_models import FAMILIES
from test_hf_family_sweep import ITEMS, _family, _ids, _params

import seqexplain as se
from seqexplain.errors import SeqExplainError

MODES = {"attention_last": "last", "attention_all": "all", "attention_rollout": "rollout"}
_LAST_TOKEN_HEADS = ("gpt2", "llama", "mistral", "xlnet", "bart")


def _no_cache(model) -> dict:
    return {"use_cache": False} if "use_cache" in inspect.signature(model.forward).parameters else {}


@contextlib.contextmanager
def _eager(model):  # transformers returns attention weights with eager attention only
    prev = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        yield
    finally:
        model.set_attn_implementation(prev)


def _head_position(model, n: int) -> int:  # the position a classifier's head reads (docs/methods.md)
    return n - 1 if model.config.model_type in _LAST_TOKEN_HEADS else 0


# ------------------------------------------------------------------------------------------ attention oracle
def _rollout(maps: list[torch.Tensor]) -> torch.Tensor:
    out = torch.eye(maps[0].shape[-1], dtype=torch.float64)
    for a in maps:
        a = a + torch.eye(a.shape[-1], dtype=torch.float64)
        out = (a / a.sum(-1, keepdim=True)) @ out
    return out


def _heads(layers) -> list[torch.Tensor] | None:
    if not layers or any(a is None for a in layers):
        return None
    return [a[0].double().mean(0) for a in layers]


@torch.no_grad()
def _attention_oracle(name: str, model, tok, text: str, target) -> dict[str, np.ndarray | None] | None:
    """Scores per attention method (None: that method must be refused); None: every one must be refused."""
    kind = FAMILIES[name].kind
    with _eager(model):
        if kind == "seq2seq":
            src, tgt = _ids(tok, text, True), _ids(tok, target, False)
            s, m = len(src), len(tgt)
            out = model(input_ids=torch.tensor([src]), use_cache=False, output_attentions=True,
                        decoder_input_ids=torch.tensor([[model.config.decoder_start_token_id] + tgt[:-1]]))
            enc, dec, cross = (_heads(getattr(out, k, None)) for k in ("encoder_attentions", "decoder_attentions",
                                                                       "cross_attentions"))
            if enc is None or dec is None or cross is None or any(a.shape != (m, s) for a in cross):
                return None
            square = all(a.shape == (s, s) for a in enc)
            parts = {"last": (cross[-1], dec[-1]), "all": (torch.stack(cross).mean(0), torch.stack(dec).mean(0)),
                     "rollout": (cross[-1] @ _rollout(enc), _rollout(dec)) if square else None}
            result: dict[str, np.ndarray | None] = {}
            for method, mode in MODES.items():
                if parts[mode] is None:
                    result[method] = None
                    continue
                scores = np.full((m, s + 1 + m), np.nan)
                scores[:, :s], scores[:, s : s + m] = parts[mode][0].numpy(), parts[mode][1].numpy()
                scores[np.triu_indices(m, 1, m + 1)[0], s + np.triu_indices(m, 1, m + 1)[1]] = np.nan  # unseen
                result[method] = scores
            return result
        if kind == "causal":
            prompt, tgt = _ids(tok, text, True), _ids(tok, target, False)
            ids, rows = prompt + tgt, [len(prompt) + i - 1 for i in range(len(tgt))]
        else:
            ids = _ids(tok, text, True)
            rows = [_head_position(model, len(ids))]
        out = model(input_ids=torch.tensor([ids]), output_attentions=True, **_no_cache(model))
        maps = _heads(getattr(out, "attentions", None))
        n = len(ids)
        if maps is None or any(a.shape != (n, n) for a in maps):
            return None
        mats = {"last": maps[-1], "all": torch.stack(maps).mean(0), "rollout": _rollout(maps)}
        unseen = np.arange(n)[None, :] > np.array(rows)[:, None] if kind == "causal" else np.zeros((1, n), bool)
        return {method: np.where(unseen, np.nan, mats[mode][rows].numpy()) for method, mode in MODES.items()}


@pytest.mark.parametrize("name", _params())
def test_attention_methods_equal_raw_attention_maps(name):
    model, tok = _family(name)
    w = se.load_model(model, tok)
    text, target = ITEMS[FAMILIES[name].kind][0]
    expected = _attention_oracle(name, model, tok, text, target)
    for method in MODES:
        if expected is None or expected[method] is None:
            with pytest.raises(SeqExplainError, match="use ") as info:
                se.explain(w, text, target, method)
            assert "Traceback" not in str(info.value)
            continue
        attr = se.explain(w, text, target, method)
        np.testing.assert_array_equal(np.isnan(attr.scores), np.isnan(expected[method]), err_msg=method)
        np.testing.assert_allclose(attr.scores, expected[method], rtol=1e-4, atol=1e-6, err_msg=f"{name} {method}")


# ------------------------------------------------------------------------------------------ gradient oracles
class _Embeds:
    """The raw forward as a function of the embedding layers' outputs: ``slots`` (one ``[1, L, D]`` tensor per
    embedding call that is an input: the only call, or an encoder-decoder's first and last) are captured on the
    model's own token-id forward; :meth:`logprobs` reruns it with the slots swapped for a batch of tensors and
    returns ``[B, T]`` target log-probabilities."""

    def __init__(self, name: str, model, tok, text: str, target) -> None:
        self.model, self.kind = model, FAMILIES[name].kind
        if self.kind == "seq2seq":
            src, tgt = _ids(tok, text, True), _ids(tok, target, False)
            self.inputs = {"input_ids": torch.tensor([src]), "use_cache": False, "decoder_input_ids": torch.tensor(
                [[model.config.decoder_start_token_id] + tgt[:-1]])}
            self.modules = [getattr(stack, "embed_tokens", None) or stack.get_input_embeddings()
                            for stack in (model.get_encoder(), model.get_decoder())]
            self.reads, self.targets, self.n_src = list(range(len(tgt))), tgt, len(src)
            self.n = len(src) + 1 + len(tgt)
            self.visible = [len(src) + 1 + i for i in range(len(tgt))]
        else:
            self.modules, self.n_src = [model.get_input_embeddings()], None
            if self.kind == "causal":
                prompt, tgt = _ids(tok, text, True), _ids(tok, target, False)
                ids, self.reads, self.targets = prompt + tgt, [len(prompt) + i - 1 for i in range(len(tgt))], tgt
                self.visible = [r + 1 for r in self.reads]
            else:
                ids = _ids(tok, text, True)
                self.reads, self.targets, self.visible = [None], [target], [len(ids)]
            self.inputs, self.n = {"input_ids": torch.tensor([ids]), **_no_cache(model)}, len(ids)
        for p in model.parameters():
            p.requires_grad_(False)
        calls: list[torch.Tensor] = []
        with torch.no_grad():
            self._run(lambda k, out: calls.append(out.detach().clone()) or None, 1)
        self.time_major = calls[0].shape[0] != 1  # XLNet embeds [L, B, D]
        self.call_of_slot = [0] if self.kind != "seq2seq" else [0, len(calls) - 1]
        self.slots = [self._batch_first(calls[c]) for c in self.call_of_slot]

    def _batch_first(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(0, 1) if self.time_major else x

    def _run(self, on_call, batch: int) -> torch.Tensor:
        count = [0]

        def hook(_m, _args, out):
            k, count[0] = count[0], count[0] + 1
            return on_call(k, out)

        handles = [m.register_forward_hook(hook) for m in {id(m): m for m in self.modules}.values()]
        try:
            inputs = {k: v.expand(batch, -1) if torch.is_tensor(v) else v for k, v in self.inputs.items()}
            return self.model(**inputs).logits
        finally:
            for h in handles:
                h.remove()

    def logprobs(self, *embeds: torch.Tensor) -> torch.Tensor:
        def swap(k, out):
            if k in self.call_of_slot:
                return self._batch_first(embeds[self.call_of_slot.index(k)]) * 1.0  # CTRL scales it in place
            return None

        logits = self._run(swap, embeds[0].shape[0])
        rows = [logits if r is None else logits[:, r] for r in self.reads]
        return torch.stack([torch.log_softmax(row, -1)[:, t] for row, t in zip(rows, self.targets, strict=True)], 1)

    def to_scores(self, per_slot: list[list[torch.Tensor]]) -> np.ndarray:
        """``per_slot[i][slot]``: ``[1, L, D]`` per-dimension scores of target ``i`` → summed ``[T, n]`` with NaN
        where target ``i`` cannot see."""
        out = np.full((len(self.targets), self.n), np.nan)
        for i, slots in enumerate(per_slot):
            parts = [slots[0][:, : self.n_src], slots[-1]] if len(slots) > 1 else slots
            row = torch.cat(parts, 1)[0].sum(-1).detach().double().numpy()
            out[i, : self.visible[i]] = row[: self.visible[i]]
        return out


def _grad_x_input_oracle(f: _Embeds) -> np.ndarray:
    e = [s.clone().requires_grad_(True) for s in f.slots]
    lp = f.logprobs(*e)[0]
    return f.to_scores([[x * g for x, g in zip(e, torch.autograd.grad(lp[i], e, retain_graph=True), strict=True)]
                        for i in range(len(f.targets))])


def _integrated_gradients_oracle(f: _Embeds, steps: int) -> np.ndarray:
    from captum.attr import IntegratedGradients

    per_target = []
    for i in range(len(f.targets)):
        ig = IntegratedGradients(lambda *e, i=i: f.logprobs(*e)[:, i])
        attr = ig.attribute(tuple(f.slots), baselines=tuple(torch.zeros_like(s) for s in f.slots), n_steps=steps,
                            method="gausslegendre")
        per_target.append(list(attr))
    return f.to_scores(per_target)


@pytest.mark.parametrize("method", ["grad_x_input", "integrated_gradients"])
@pytest.mark.parametrize("name", _params())
def test_gradient_methods_equal_autograd_and_captum(name, method):
    model, tok = _family(name)
    w = se.load_model(model, tok)
    text, target = ITEMS[FAMILIES[name].kind][0]
    options = {"steps": 8, "baseline": "zero"} if method == "integrated_gradients" else {}
    if "gradient_norm" in FAMILIES[name].refuses:
        with pytest.raises(SeqExplainError, match="use "):
            se.explain(w, text, target, method, **options)
        return
    attr = se.explain(w, text, target, method, **options)
    f = _Embeds(name, model, tok, text, target)
    expected = _grad_x_input_oracle(f) if method == "grad_x_input" else _integrated_gradients_oracle(f, 8)
    np.testing.assert_array_equal(np.isnan(attr.scores), np.isnan(expected))
    scale = np.nanmax(np.abs(expected))
    np.testing.assert_allclose(attr.scores, expected, rtol=1e-3, atol=max(1e-4 * scale, 1e-6),
                               err_msg=f"{name} {method}")


@pytest.mark.parametrize("name", _params())
def test_integrated_gradients_many_equals_one_by_one(name):
    """IG's batched path (several examples padded into shared forwards) gives each example's own result."""
    model, tok = _family(name)
    if "gradient_norm" in FAMILIES[name].refuses:
        pytest.skip(f"{name} refuses gradient methods (checked above)")
    w = se.load_model(model, tok)
    items = ITEMS[FAMILIES[name].kind]
    alone = [se.explain(w, text, target, "integrated_gradients", steps=8) for text, target in items]
    many = list(se.explain_many(w, items, "integrated_gradients", progress=False, steps=8))
    for a, b in zip(alone, many, strict=True):
        np.testing.assert_array_equal(np.isnan(a.scores), np.isnan(b.scores))
        scale = np.nanmax(np.abs(a.scores))
        np.testing.assert_allclose(b.scores, a.scores, rtol=1e-4, atol=max(1e-4 * scale, 1e-6), err_msg=name)
