"""Checks by behaviour that a module is of the kind its adapter explains, run once when a Hugging Face adapter is
made (a forward or two of a few token ids, no gradients, eval mode), and the :class:`UnsupportedError` for one that
is not: a masked LM, token classifier, question-answering or multiple-choice head, or a bare encoder forced to
``kind="causal"`` / ``"classifier"`` / ``"seq2seq"`` would otherwise be explained as something it is not (or fail
with a traceback from inside ``transformers``).

- causal (:func:`check_causal`): not an encoder-decoder by its config (T5's forward fails without decoder inputs,
  so no probe would tell), the output has ``.logits`` of shape ``[1, L, V]``, ``V`` not below the config's
  ``vocab_size`` (a causal token classifier gives ``[1, L, C]``), and the logits at positions ``0 … L−2`` do not
  change when the token at ``L−1`` changes (a model that reads in both directions fails);
- classifier (:func:`check_classifier`): ``.logits`` of shape ``[1, C]``;
- seq2seq (:func:`check_encoder_decoder`): ``config.is_encoder_decoder`` or a forward that names
  ``decoder_input_ids`` (no forward).

Both forward checks first run ``[1, L]`` token ids; when that forward fails with an ordinary exception, a
``[1, 1, L]`` forward that succeeds marks a multiple-choice head; otherwise a module whose class ``transformers`` maps
to an unexplained head (a question-answering model with three labels fails its own forward) is refused by its class,
and any other module skips the check (some models need particular ids; the explanation's own forwards still run
them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from seqexplain.errors import UnsupportedError
from seqexplain.models.hf_module import accepts_exact, probe_ids, unsupported_head
from seqexplain.models.module_state import eval_mode

Run = Callable[[dict[str, torch.Tensor]], Any]
"""Runs the module on keyword inputs (the adapter's masks and cache settings applied) and returns its output."""

SUPPORTED = ("seqexplain explains causal LMs, encoder-decoders, sequence classifiers and token classifiers; load the "
             "model with such a head (AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoModelForSequenceClassification, "
             "AutoModelForTokenClassification)")
ORDINARY = (TypeError, ValueError, RuntimeError, AttributeError, IndexError, KeyError, NotImplementedError)


def refuse(name: str, what: str) -> UnsupportedError:
    """The one-line error for a module ``name`` that ``what`` (what it was found to be)."""
    return UnsupportedError(f"{name} {what}; {SUPPORTED}")


class ForwardFailed(Exception):
    """The probe forward failed with an ordinary exception: the check cannot tell (its message is the reason)."""


def _output(run: Run, ids: list[int], device: torch.device, name: str) -> Any:
    """The output of the module on ``ids`` as a batch of one; :class:`ForwardFailed` when that forward fails and a
    ``[1, 1, L]`` one does too (the check cannot tell), :class:`UnsupportedError` when only ``[batch, choices,
    length]`` inputs run (a multiple-choice head)."""
    x = torch.tensor([ids], device=device)
    try:
        return run({"input_ids": x, "attention_mask": torch.ones_like(x)})
    except ORDINARY as exc:
        first = exc
    try:
        run({"input_ids": x.unsqueeze(0), "attention_mask": torch.ones_like(x).unsqueeze(0)})
    except ORDINARY:
        reason = (str(first).strip().splitlines() or [""])[0][:160]
        raise ForwardFailed(f"{type(first).__name__}: {reason}") from first
    raise refuse(name, "takes [batch, choices, length] inputs (a multiple-choice head), not one token sequence")


def _logits(out: Any, name: str) -> torch.Tensor:
    """``out.logits``, or :class:`UnsupportedError` naming what the output holds instead (question answering:
    start and end logits; a bare encoder: hidden states)."""
    logits = getattr(out, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    keys = list(out.keys()) if hasattr(out, "keys") else [type(out).__name__]
    what = ("gives start and end logits (a question-answering head)" if "start_logits" in keys
            else "gives hidden states (a bare encoder without a head)" if "last_hidden_state" in keys
            else "gives no logits")
    raise refuse(name, f"{what}, not .logits ({', '.join(map(str, keys))})")


def _with_last_changed(run: Run, ids: list[int], other: int, device: torch.device, name: str) -> torch.Tensor | None:
    """The logits of ``ids`` with the last token replaced by ``other`` (None: the forward failed on them)."""
    changed = torch.tensor([[*ids[:-1], other]], device=device)
    try:
        return _logits(run({"input_ids": changed, "attention_mask": torch.ones_like(changed)}), name)
    except ORDINARY:
        return None


@torch.no_grad()
def check_causal(model: torch.nn.Module, run: Run, ids: list[int], other: int, device: torch.device,
                 name: str) -> None:
    """:class:`UnsupportedError` unless ``run`` gives ``.logits`` ``[1, L, V]`` (``V`` ≥ the config's ``vocab_size``)
    on ``ids`` whose first ``L − 1`` rows stay the same (to ``1e-4`` of their largest magnitude) when the last token
    becomes ``other``."""
    with eval_mode(model):
        a = _logits(_output(run, ids, device, name), name)
        if a.dim() != 3 or tuple(a.shape[:2]) != (1, len(ids)):
            raise refuse(name, f"gives logits of shape {list(a.shape)} for {len(ids)} tokens, not [batch, length, "
                         "vocabulary]: it is not a causal LM")
        vocab = getattr(getattr(model, "config", None), "vocab_size", None)
        if isinstance(vocab, int) and not isinstance(vocab, bool) and a.shape[-1] < vocab:
            raise refuse(name, f"gives {a.shape[-1]} scores per token, fewer than its {vocab}-token vocabulary (a "
                         "token classifier), so it is not a causal LM")
        b = _with_last_changed(run, ids, other, device, name)
        if b is None:
            return
    early_a, early_b = a[0, :-1].float(), b[0, :-1].float()
    if not (bool(torch.isfinite(early_a).all()) and bool(torch.isfinite(early_b).all())):
        return  # logits that are not numbers tell nothing; the explanation flags them
    tol = 1e-4 * float(early_a.abs().max())
    if not torch.allclose(early_a, early_b, rtol=1e-4, atol=tol):
        raise refuse(name, "reads in both directions (its logits at a position change when a later token changes: "
                     "a masked LM, token classifier, encoder or encoder-decoder), so it is not a causal LM")


@torch.no_grad()
def check_classifier(model: torch.nn.Module, run: Run, ids: list[int], device: torch.device, name: str) -> None:
    """:class:`UnsupportedError` unless ``run`` gives ``.logits`` ``[1, C]`` on ``ids`` (a token classifier gives
    ``[1, L, C]``)."""
    with eval_mode(model):
        logits = _logits(_output(run, ids, device, name), name)
    if logits.dim() == 3 and tuple(logits.shape[:2]) == (1, len(ids)):
        raise refuse(name, f"gives scores per token ({list(logits.shape)}: a token classifier or language model), "
                     "not one label score vector per sequence")
    if logits.dim() != 2 or logits.shape[0] != 1:
        raise refuse(name, f"gives logits of shape {list(logits.shape)}, not [batch, labels]: it is not a sequence "
                     "classifier")


@torch.no_grad()
def check_labeller(model: torch.nn.Module, run: Run, ids: list[int], other: int, n_labels: int, device: torch.device,
                   name: str) -> bool:
    """:class:`UnsupportedError` unless ``run`` gives ``.logits`` ``[1, L, n_labels]`` on ``ids`` (a label score
    vector per token). Returns whether the first token's scores change when the last token becomes ``other`` (a
    bidirectional encoder; False: a left-to-right token classifier, GPT-2's or Llama's)."""
    with eval_mode(model):
        a = _logits(_output(run, ids, device, name), name)
        if a.dim() != 3 or tuple(a.shape[:2]) != (1, len(ids)):
            raise refuse(name, f"gives logits of shape {list(a.shape)} for {len(ids)} tokens, not [batch, length, "
                         "labels]: it is not a token classifier")
        if n_labels and a.shape[-1] != n_labels:
            raise refuse(name, f"gives {a.shape[-1]} scores per token but its config names {n_labels} labels: it is "
                         "not a token classifier (a language model?)")
        b = _with_last_changed(run, ids, other, device, name)
        if b is None:
            return True  # cannot tell: every position counts as visible (a left-to-right model then scores 0 there)
    first_a, first_b = a[0, 0].float(), b[0, 0].float()
    tol = 1e-5 * max(float(first_a.abs().max()), 1e-30)
    return not torch.allclose(first_a, first_b, rtol=1e-5, atol=tol)


def check_encoder_decoder(model: torch.nn.Module, name: str) -> None:
    """:class:`UnsupportedError` unless the module is an encoder-decoder: ``config.is_encoder_decoder``, or a
    forward that names ``decoder_input_ids`` (seqexplain's own translation models)."""
    if getattr(getattr(model, "config", None), "is_encoder_decoder", False) is True:
        return
    if accepts_exact(model.forward, "decoder_input_ids"):
        return
    raise refuse(name, "is not an encoder-decoder (its config has no is_encoder_decoder and its forward takes no "
                 "decoder_input_ids)")


def check_kind(adapter: Any) -> None:
    """The check of ``adapter.kind`` (``"causal"``, ``"classifier"``, ``"labeller"``, ``"seq2seq"``) on
    ``adapter.model`` (for a labeller it also sets ``adapter.bidirectional``), run
    through the adapter's ``drop_missing_masks`` with ``use_cache=False`` where the forward names it, on token ids
    that avoid the special ones (an encoder-decoder classifier's input ends with its ``</s>``)."""
    model = adapter.model
    cls = type(model).__name__
    name = cls if adapter.model_id == cls else f"{adapter.model_id} ({cls})"
    if adapter.kind == "seq2seq":
        check_encoder_decoder(model, name)
        return
    no_cache = {"use_cache": False} if accepts_exact(model.forward, "use_cache") else {}

    def run(kwargs: dict[str, torch.Tensor]) -> Any:
        return model(**adapter.drop_missing_masks({**kwargs, **no_cache}))

    specials = {adapter.special_id(n) for n in ("pad_token_id", "eos_token_id", "bos_token_id")}
    ids = probe_ids(adapter.vocab_size(), specials, 5)
    if len(ids) < 5:
        return
    try:
        if adapter.kind == "causal":
            if getattr(getattr(model, "config", None), "is_encoder_decoder", False) is True:
                raise refuse(name, "is an encoder-decoder (its config says is_encoder_decoder), not a causal LM; load "
                             "it with kind='seq2seq'")
            check_causal(model, run, ids[:4], ids[4], adapter.device, name)
        elif adapter.kind == "labeller":
            adapter.bidirectional = check_labeller(model, run, ids[:4], ids[4], len(adapter.label_names()),
                                                   adapter.device, name)
        elif adapter.kind == "classifier":
            eos = adapter.special_id("eos_token_id")
            encoder_decoder = getattr(getattr(model, "config", None), "is_encoder_decoder", False) is True
            check_classifier(model, run, ids[:4] + ([eos] if encoder_decoder and eos is not None else []),
                             adapter.device, name)
    except ForwardFailed as failed:
        what = unsupported_head(cls)
        if what is not None:  # its class says what it is, and its forward does not run as the kind's: refuse
            msg = f"is {what} (by its class), and its forward fails on one token sequence ({failed})"
            raise refuse(name, msg) from failed
        # otherwise the check is skipped: some models need particular ids, and the explanation's forwards run them
