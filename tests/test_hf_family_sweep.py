"""Every model family transformers ships that seqexplain claims to explain, swept on tiny random models
(``family_models.py``): occlusion, gradient norm and ``explain_many`` against oracles written here on the raw module.

Oracles (docs/methods.md, models/keep.py):

- **occlusion** ``a_ij = f_i(all) − f_i(all but j)``, ``f_i = log p(target_i)``. "All but j" deletes token ``j``, as
  the family's entry says (``Family.deletes``): the kept tokens run packed with their ORIGINAL position ids (plus the
  model's own first position id, ``padding_idx + 1`` for the RoBERTa family and MPNet) when the forward takes
  ``position_ids``; a causal model without them (Bloom, MPT) keeps its tokens in place with ``j`` masked (the
  documented promise); a recurrent or state-space stack (Mamba, Jamba) runs without ``j`` (an RNN's deletion); an
  encoder-decoder masks ``j`` in place on either side (its stacks count positions by index), with
  ``use_cache=False`` (FSMT's decoder is causal only then). A target is read at the last kept position before it.
- **the rule itself**: when the model cannot keep the original positions that way (it ignores the position ids it
  is given, counts positions over the attention mask as Bloom's and Falcon's ALiBi do, or is a classifier packed
  without position ids or with a relative attention by index), the result must carry a visible warning about
  positions.
- **gradient_norm** ``‖∂f_i/∂e_j‖₂`` with ``e = E(x)`` the output of the input-embedding layer(s) on the model's
  own token-id forward (a forward hook swaps each output for a leaf), so any scale a stack applies after it
  (Marian, Pegasus, M2M100, Gemma, CTRL) is part of ``f``.
- **explain_many** of three items equals one ``explain`` per item.
- A family that cannot be explained declares what it refuses (``Family.refuses``): the call must raise a seqexplain
  error whose message says what to use instead.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from conftest import bpe_tokenizer, wordpiece_tokenizer
from family_models import FAMILIES, SkipFamily

import seqexplain as se
from seqexplain.errors import SeqExplainError

ITEMS = {"causal": [("The cat sat on the mat.", " The dog"), ("Paris is the capital of", " France and"),
                    ("When Mary and John went to the store, John", " gave a")],
         "seq2seq": [("The cat sat on the mat.", "The dog sat"), ("Paris is the capital.", "Berlin is"),
                     ("The quick brown fox jumps over the lazy dog.", "The cat")],
         "classifier": [("the cat sat on the mat", 1), ("paris is the capital of france", 0),
                        ("the quick brown fox jumps over the lazy dog", 1)]}
_TOKENIZERS: dict[str, object] = {}
_MODELS: dict[str, tuple[torch.nn.Module, object]] = {}


def _family(name: str) -> tuple[torch.nn.Module, object]:
    if name not in _MODELS:
        fam = FAMILIES[name]
        if fam.tokenizer not in _TOKENIZERS:
            _TOKENIZERS[fam.tokenizer] = {"bpe": bpe_tokenizer, "bpe_eos": bpe_eos_tokenizer,
                                          "wordpiece": wordpiece_tokenizer}[fam.tokenizer]()
        tok = _TOKENIZERS[fam.tokenizer]
        try:
            _MODELS[name] = (FAMILIES[name].build(tok), tok)
        except SkipFamily as exc:
            pytest.skip(str(exc))
    return _MODELS[name]


def bpe_eos_tokenizer():
    """``conftest.bpe_tokenizer`` that wraps each input in ``<s> … </s>`` (BART's classifier reads its </s>)."""
    from tokenizers import processors

    tok = bpe_tokenizer()
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", tok.bos_token_id), ("</s>", tok.eos_token_id)])
    return tok


def _params():
    return [pytest.param(n, marks=[pytest.mark.slow] if f.slow else [], id=n) for n, f in FAMILIES.items()]


def _takes_positions(model) -> bool:
    return "position_ids" in inspect.signature(model.forward).parameters


def _first_position(name: str, model) -> int:
    """The position id the model gives its first token (read off its embeddings module): RoBERTa-style stacks
    start after their padding index (MPNet's is 1 whatever the pad id)."""
    if name in ("roberta", "xlm_roberta", "camembert", "longformer", "mpnet"):
        return model.base_model.embeddings.padding_idx + 1
    return 0


def _ids(tok, text: str, special: bool) -> list[int]:
    return tok(text, add_special_tokens=special)["input_ids"]


def _logp(logits: torch.Tensor, target: int) -> float:
    return float(torch.log_softmax(logits.double(), -1)[target])


# ------------------------------------------------------------------------------------------ occlusion oracles
@torch.no_grad()
def _causal_f(model, ids: list[int], p: int, target: int, drop: int | None, how: str) -> float:
    """``log p(target)`` predicted for position ``p`` from ``ids[:p]`` with ``drop`` deleted: ``how`` = "ids"
    (packed, original position ids), "inplace" (masked where it stands) or "closed" (packed, renumbered)."""
    kept = [k for k in range(p) if k != drop] or [p - 1]  # nothing kept: only the predicting token (rule 4)
    if drop is None or how == "inplace":
        x = torch.tensor([ids[:p]])
        mask = torch.ones_like(x)
        mask[0, [k for k in range(p) if k not in kept]] = 0
        return _logp(model(input_ids=x, attention_mask=mask).logits[0, kept[-1]], target)
    x = torch.tensor([[ids[k] for k in kept]])
    kwargs = {"position_ids": torch.tensor([kept])} if how == "ids" else {}
    return _logp(model(input_ids=x, attention_mask=torch.ones_like(x), **kwargs).logits[0, -1], target)


def _causal_occlusion(model, tok, text: str, target: str, how: str) -> np.ndarray:
    prompt, tgt = _ids(tok, text, True), _ids(tok, target, False)
    ids, n = prompt + tgt, len(prompt) + len(tgt)
    out = np.full((len(tgt), n), np.nan)
    for i, t in enumerate(tgt):
        p = len(prompt) + i
        full = _causal_f(model, ids, p, t, None, how)
        for j in range(p):
            out[i, j] = full - _causal_f(model, ids, p, t, j, how)
    return out


@torch.no_grad()
def _seq2seq_occlusion(model, tok, text: str, target: str) -> np.ndarray:
    src, tgt = _ids(tok, text, True), _ids(tok, target, False)
    start = model.config.decoder_start_token_id
    s, m = len(src), len(tgt)
    x, d = torch.tensor([src]), torch.tensor([[start] + tgt[:-1]])

    def f(src_mask: torch.Tensor, dec_mask: torch.Tensor) -> np.ndarray:
        logits = model(input_ids=x, attention_mask=src_mask[None], decoder_input_ids=d,
                       decoder_attention_mask=dec_mask[None], use_cache=False).logits[0]
        out = []
        for i, t in enumerate(tgt):
            read = next((k for k in range(i, -1, -1) if dec_mask[k]), i)
            if not dec_mask[read]:  # nothing kept on the decoder side: read i with i visible (rule 4)
                vis = dec_mask.clone()
                vis[i] = 1
                row = model(input_ids=x, attention_mask=src_mask[None], decoder_input_ids=d,
                            decoder_attention_mask=vis[None], use_cache=False).logits[0, i]
            else:
                row = logits[read]
            out.append(_logp(row, t))
        return np.array(out)

    ones_s, ones_d = torch.ones(s, dtype=torch.long), torch.ones(m, dtype=torch.long)
    full = f(ones_s, ones_d)
    out = np.full((m, s + 1 + m), np.nan)
    for j in range(s):
        mask = ones_s.clone()
        mask[j] = 0
        out[:, j] = full - f(mask, ones_d)
    for k in range(m):
        mask = ones_d.clone()
        mask[k] = 0
        diff = full - f(ones_s, mask)
        out[k:, s + k] = diff[k:]
    return out


@torch.no_grad()
def _classifier_occlusion(name: str, model, tok, text: str, label: int) -> np.ndarray:
    ids = _ids(tok, text, True)
    first = _first_position(name, model)
    positions = _takes_positions(model)

    def f(kept: list[int]) -> float:
        x = torch.tensor([[ids[k] for k in kept]])
        kwargs = {"position_ids": torch.tensor([kept]) + first} if positions else {}
        return _logp(model(input_ids=x, attention_mask=torch.ones_like(x), **kwargs).logits[0], label)

    full = _logp(model(input_ids=torch.tensor([ids])).logits[0], label)
    return np.array([[full - f([k for k in range(len(ids)) if k != j]) for j in range(len(ids))]])


def _occlusion_oracle(name: str, model, tok, text: str, target) -> np.ndarray:
    kind = FAMILIES[name].kind
    if kind == "causal":
        return _causal_occlusion(model, tok, text, target, FAMILIES[name].deletes)
    if kind == "seq2seq":
        return _seq2seq_occlusion(model, tok, text, target)
    return _classifier_occlusion(name, model, tok, text, target)


# ------------------------------------------------------------------------------------------ gradient oracle
def _embedding_leaves(modules: list[torch.nn.Module]):
    """Forward hooks that replace each call's output of the (unique) ``modules`` with a leaf requiring grad, in
    call order; returns the list the leaves go to and the hook handles."""
    leaves: list[torch.Tensor] = []

    def hook(_m, _args, out):
        leaf = out.detach().clone().requires_grad_(True)
        leaves.append(leaf)
        return leaf.clone()  # CTRL scales its embeddings in place

    unique = list({id(m): m for m in modules}.values())
    return leaves, [m.register_forward_hook(hook) for m in unique]


def _gradient_oracle(name: str, model, tok, text: str, target) -> np.ndarray:
    kind = FAMILIES[name].kind
    for p in model.parameters():
        p.requires_grad_(False)
    if kind == "seq2seq":
        src, tgt = _ids(tok, text, True), _ids(tok, target, False)
        layers = [getattr(stack, "embed_tokens", None) or stack.get_input_embeddings()
                  for stack in (model.get_encoder(), model.get_decoder())]
        leaves, handles = _embedding_leaves(layers)
        try:
            logits = model(input_ids=torch.tensor([src]), use_cache=False,
                           decoder_input_ids=torch.tensor([[model.config.decoder_start_token_id] + tgt[:-1]])).logits[0]
        finally:
            for h in handles:
                h.remove()
        e = leaves  # the encoder's call first, the decoder's last (LED embeds its window padding in between)
        n_src = len(src)
        reads, targets, n = list(range(len(tgt))), tgt, len(src) + 1 + len(tgt)
        visible = [len(src) + 1 + i for i in range(len(tgt))]
    else:
        if kind == "causal":
            prompt, tgt = _ids(tok, text, True), _ids(tok, target, False)
            ids, reads, targets = prompt + tgt, [len(prompt) + i - 1 for i in range(len(tgt))], tgt
            visible = [r + 1 for r in reads]
        else:
            ids = _ids(tok, text, True)
            reads, targets, visible = [None], [target], [len(ids)]
        leaves, handles = _embedding_leaves([model.get_input_embeddings()])
        no_cache = {"use_cache": False} if "use_cache" in inspect.signature(model.forward).parameters else {}
        try:  # without a cache: RWKV updates its state in place with one, which autograd cannot go back through
            logits = model(input_ids=torch.tensor([ids]), **no_cache).logits[0]
        finally:
            for h in handles:
                h.remove()
        e, n, n_src = leaves, len(ids), None
    out = np.full((len(targets), n), np.nan)
    for i, (r, t) in enumerate(zip(reads, targets, strict=True)):
        row = logits if r is None else logits[r]
        grads = torch.autograd.grad(torch.log_softmax(row, -1)[t], e, retain_graph=True)
        grads = [gr if gr.shape[0] == 1 else gr.transpose(0, 1) for gr in grads]  # XLNet embeds time-major [L, 1]
        g = torch.cat([grads[0][:, :n_src], grads[-1]] if len(grads) > 1 else grads, dim=1)[0]
        out[i, : visible[i]] = g.norm(dim=-1)[: visible[i]].double().numpy()
    return out


# ------------------------------------------------------------------------------------------ the tests
def _explain(w, text, target, method, **options):
    return se.explain(w, text, target, method, **options)


def _position_warning(attr) -> bool:
    return any("position" in w for w in attr.warnings)


def _refused(name: str, w, text, target, method: str) -> bool:
    """For a family declared to refuse ``method``: check that it raises a seqexplain error naming what to use
    (True); else False."""
    if method not in FAMILIES[name].refuses:
        return False
    with pytest.raises(SeqExplainError, match="use ") as info:
        _explain(w, text, target, method)
    assert "Traceback" not in str(info.value)
    return True


def _against_oracle(name: str, method: str, oracle) -> tuple[se.Attribution, np.ndarray] | None:
    """``method``'s attribution of the family's first item and ``oracle(name, model, tok, text, target)``; None
    when the family refuses the method (checked by :func:`_refused`)."""
    model, tok = _family(name)
    w = se.load_model(model, tok)
    text, target = ITEMS[FAMILIES[name].kind][0]
    if _refused(name, w, text, target, method):
        return None
    return _explain(w, text, target, method), oracle(name, model, tok, text, target)


@torch.no_grad()
def _positions_ignored(model) -> bool:
    """Whether gapped position ids give what contiguous ones give (the model ignores the ids it is given)."""
    x = torch.tensor([[5, 6, 7, 8]])
    a = model(input_ids=x, attention_mask=torch.ones_like(x), position_ids=torch.tensor([[2, 3, 4, 5]])).logits
    b = model(input_ids=x, attention_mask=torch.ones_like(x), position_ids=torch.tensor([[2, 3, 7, 9]])).logits
    return bool(torch.allclose(a, b, atol=1e-6))


@torch.no_grad()
def _seq2seq_renumbers(model, tok, text: str, target: str) -> bool:
    """Whether masking a source token in place gives what deleting it and closing the gap gives (the encoder
    counts positions over its attention mask)."""
    src, tgt = _ids(tok, text, True), _ids(tok, target, False)
    d = torch.tensor([[model.config.decoder_start_token_id] + tgt[:-1]])
    x = torch.tensor([src])
    mask = torch.ones_like(x)
    mask[0, 2] = 0
    inplace = model(input_ids=x, attention_mask=mask, decoder_input_ids=d, use_cache=False).logits
    closed = model(input_ids=x[:, [k for k in range(len(src)) if k != 2]], decoder_input_ids=d, use_cache=False).logits
    return bool(torch.allclose(inplace, closed, atol=1e-6))


@pytest.mark.parametrize("name", _params())
def test_lost_original_positions_are_warned_about(name):
    """Rule 1 (kept tokens keep their original position ids) cannot be kept by a model that ignores the position
    ids it is given, nor by one without them that counts positions over the attention mask (masking ``j`` in place
    then equals deleting it and closing the gap): the result must say so."""
    model, tok = _family(name)
    fam = FAMILIES[name]
    text, target = ITEMS[fam.kind][0]
    if "occlusion" in fam.refuses:
        pytest.skip(f"{name} refuses occlusion")
    if fam.deletes == "closed":  # no positions to keep: an RNN's dropped token leaves its input
        lost = False
    elif fam.kind == "seq2seq":
        lost = _seq2seq_renumbers(model, tok, text, target)
    elif getattr(model.config, "relative_attention", False):  # DeBERTa: relative positions from the index
        lost = True
    elif _takes_positions(model):
        lost = _positions_ignored(model)
    elif fam.kind == "classifier":  # packed without position ids (XLNet, Funnel): renumbered
        lost = True
    else:
        inplace = _causal_occlusion(model, tok, text, target, "inplace")
        closed = _causal_occlusion(model, tok, text, target, "closed")
        lost = bool(np.allclose(inplace, closed, atol=1e-6, equal_nan=True))
    wrapped = se.load_model(model, tok)
    attr = _explain(wrapped, text, target, "occlusion")
    assert _position_warning(attr) == lost, (name, lost, attr.warnings)
    if lost:  # a method that drops no token is not told about it: its result is what the full input gives
        for method, options in (("gradient_norm", {}), ("occlusion", {"replace_with": "unk"})):
            attr = _explain(wrapped, text, target, method, **options)
            assert not _position_warning(attr), (name, method, attr.warnings)


@pytest.mark.parametrize("method", ["occlusion", "gradient_norm"])
@pytest.mark.parametrize("name", _params())
def test_method_equals_its_oracle(name, method):
    """Occlusion against deleting the token by hand (atol 2e-5: differences of log-probabilities), gradient norm
    against autograd through the embedding layer's output (atol 1e-6)."""
    oracle, atol = {"occlusion": (_occlusion_oracle, 2e-5), "gradient_norm": (_gradient_oracle, 1e-6)}[method]
    got = _against_oracle(name, method, oracle)
    if got is None:
        return
    attr, expected = got
    assert attr.scores.shape == expected.shape
    np.testing.assert_array_equal(np.isnan(attr.scores), np.isnan(expected))
    np.testing.assert_allclose(attr.scores, expected, rtol=1e-4, atol=atol, err_msg=name)


@pytest.mark.parametrize("method", ["occlusion", "gradient_norm"])
@pytest.mark.parametrize("name", _params())
def test_explain_many_equals_explain(name, method):
    model, tok = _family(name)
    if method in FAMILIES[name].refuses:
        pytest.skip(f"{name} refuses {method} (checked in the oracle tests)")
    w = se.load_model(model, tok)
    items = ITEMS[FAMILIES[name].kind]
    alone = [_explain(w, text, target, method) for text, target in items]
    many = list(se.explain_many(w, items, method, progress=False))
    for a, b in zip(alone, many, strict=True):
        np.testing.assert_array_equal(np.isnan(a.scores), np.isnan(b.scores))
        scale = max(np.nanmax(np.abs(a.scores)), np.max(np.abs(a.target_logprobs)))  # scores are differences of f
        np.testing.assert_allclose(b.scores, a.scores, rtol=1e-5, atol=1e-5 * scale, err_msg=name)


def test_classifier_that_reads_eos_refuses_input_without_it():
    """BART's classifier finds its </s> in the input ids: a tokenizer that adds none is an InputError saying what
    to do, not transformers' ValueError from inside the forward."""
    model, _ = _family("bart_classifier")
    with pytest.raises(se.errors.InputError, match="use the tokenizer the model was trained with"):
        se.explain(se.load_model(model, bpe_tokenizer()), "the cat sat", 1, "occlusion")


def test_classifier_without_eos_exits_2_on_the_command_line(tmp_path, runner):
    """The same mistake through the CLI: a saved BART classifier whose tokenizer adds no </s>."""
    from seqexplain.cli import app

    model, _ = _family("bart_classifier")
    model.save_pretrained(tmp_path)
    bpe_tokenizer().save_pretrained(tmp_path)
    result = runner.invoke(app, ["explain", "-m", str(tmp_path), "-t", "the cat sat", "--target", "1",
                                 "--method", "occlusion"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "use the tokenizer the model was trained with" in result.stderr
