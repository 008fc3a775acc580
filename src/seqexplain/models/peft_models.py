"""Models fine-tuned with PEFT (LoRA, IA³, …): a ``PeftModel`` in memory, or a saved adapter folder.

An adapter that is *injected* into the base model's layers (LoRA, DoRA, IA³, LoHa, LoKr, …) changes the layers
themselves: the transformers model under the ``PeftModel`` (``get_base_model()``) runs the fine-tuned network, with
the usual calling convention (``inputs_embeds``, ``attention_mask``, ``output_attentions``), so seqexplain wraps
that model and every method explains the fine-tuned network, with its active adapter(s) as PEFT runs them
(``modules_to_save`` copies included). The module is used as it is, not merged: the user's ``PeftModel`` keeps its
adapters.

A *prompt-learning* adapter (prompt tuning, prefix tuning, P-tuning) instead adds virtual tokens in
``PeftModel.forward``, which the base model never sees: wrapping the base model would explain another network, so
it is refused with :class:`~seqexplain.errors.UnsupportedError` (merge nothing, no warning: no result at all).

A saved adapter folder (``adapter_config.json`` and the adapter weights, no ``config.json``) is loaded on its base
model, read from the local folder its ``base_model_name_or_path`` names (as given, or relative to the adapter
folder); nothing is fetched from a hub. Its tokenizer is the adapter folder's when it has tokenizer files (a
fine-tune that added tokens), else the base model's.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from seqexplain.errors import ModelLoadError, UnsupportedError

ADAPTER_CONFIG = "adapter_config.json"


def is_adapter_folder(path: Path) -> bool:
    """A folder that holds a PEFT adapter and no model of its own."""
    return path.is_dir() and (path / ADAPTER_CONFIG).is_file() and not (path / "config.json").is_file()


def _is_peft(module: torch.nn.Module) -> bool:
    return type(module).__module__.split(".")[0] == "peft"


def unwrap_peft(module: torch.nn.Module) -> torch.nn.Module:
    """The transformers model a ``PeftModel`` (or a PEFT tuner such as ``LoraModel``) runs, its adapters injected;
    any other module unchanged. Prompt-learning adapters are refused (module docstring)."""
    if not _is_peft(module):
        return module
    config = getattr(module, "active_peft_config", None)
    if config is not None and getattr(config, "is_prompt_learning", False):
        kind = getattr(config, "peft_type", None)
        raise UnsupportedError(
            f"{type(module).__name__} carries a prompt-learning adapter ({getattr(kind, 'value', kind)}): its virtual "
            "tokens are added outside the base model, so seqexplain cannot explain it; explain a model fine-tuned "
            "with an injected adapter (LoRA, IA3, ...) or the base model alone")
    if hasattr(module, "get_base_model"):
        return module.get_base_model()  # type: ignore[no-any-return]
    inner = getattr(module, "model", None)
    if isinstance(inner, torch.nn.Module):
        return inner
    raise UnsupportedError(f"{type(module).__name__} is a PEFT module seqexplain does not know how to run; pass the "
                           "PeftModel returned by get_peft_model or PeftModel.from_pretrained")


#: PEFT task types and the kind of model they fine-tune
TASK_KINDS = {"CAUSAL_LM": "causal", "SEQ_2_SEQ_LM": "seq2seq", "SEQ_CLS": "classifier", "TOKEN_CLS": "labeller"}
ADAPTER_WEIGHTS = "adapter_model.safetensors"


def _adapter_config(path: Path) -> dict[str, Any]:
    try:
        config = json.loads((path / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"cannot read {path / ADAPTER_CONFIG}: {exc}") from exc
    if not isinstance(config, dict):
        raise ModelLoadError(f"{path / ADAPTER_CONFIG} is not a JSON object; it is not a PEFT adapter config")
    return config


def adapter_kind(path: Path) -> Any:
    """The kind of model the adapter's ``task_type`` fine-tunes (None: not stated; the base model's kind then)."""
    task = _adapter_config(path).get("task_type")
    if task is None or task in TASK_KINDS:
        return TASK_KINDS.get(task) if task else None
    raise UnsupportedError(f"the adapter in {path} fine-tunes a {task} model; seqexplain explains causal LMs "
                           "(CAUSAL_LM), encoder-decoders (SEQ_2_SEQ_LM), sequence classifiers (SEQ_CLS) and token "
                           "classifiers (TOKEN_CLS)")


def uncovered(model: torch.nn.Module, missing: list[str]) -> list[str]:
    """The weights in ``missing`` (absent from the base model's files) that no module the adapter saved whole
    (``modules_to_save``) replaces."""

    def saved(key: str) -> bool:
        parts = key.split(".")[:-1]
        for i in range(len(parts), 0, -1):
            try:
                module = model.get_submodule(".".join(parts[:i]))
            except AttributeError:
                continue
            if type(module).__name__ == "ModulesToSaveWrapper":
                return True
        return False

    return [k for k in missing if not saved(k)]


def base_folder(path: Path) -> Path:
    """The local folder of the base model an adapter folder names (module docstring)."""
    config = _adapter_config(path)
    name = config.get("base_model_name_or_path")
    if not isinstance(name, str) or not name.strip():
        raise ModelLoadError(f"{path / ADAPTER_CONFIG} names no base model (base_model_name_or_path); set it to the "
                             "folder of the model the adapter was trained on")
    for candidate in (Path(name).expanduser(), path / name):
        if (candidate / "config.json").is_file():
            return candidate
    raise ModelLoadError(
        f"{path} holds a PEFT adapter for the base model {name!r}, which is not a local model folder (nothing is "
        f"downloaded); save the base model into a folder and set base_model_name_or_path in {ADAPTER_CONFIG} to it, "
        "or load the PeftModel in Python and pass it to load_model")


def apply_adapter(base: torch.nn.Module, path: Path) -> torch.nn.Module:
    """``base`` with the adapter saved in ``path`` applied (a ``PeftModel``, in eval mode). The weights are read
    only from ``adapter_model.safetensors`` (a pickled ``adapter_model.bin`` is refused), and every one of them must
    find its module in ``base``: an adapter trained on another base would otherwise be applied in part."""
    try:
        from peft import PeftModel
        from peft.utils import get_peft_model_state_dict
    except ImportError as exc:
        raise ModelLoadError(f"{path} holds a PEFT adapter; install peft to load it (pip install peft, or "
                             "seqexplain[train])") from exc
    if not (path / ADAPTER_WEIGHTS).is_file():
        pickled = (path / "adapter_model.bin").is_file()
        raise ModelLoadError(f"{path} has no {ADAPTER_WEIGHTS}" + (
            " but a pickled adapter_model.bin, which seqexplain does not load (a pickle can run code); save the "
            "adapter again with safe_serialization=True" if pickled else "; copy the adapter's weights there"))
    try:
        with warnings.catch_warnings():  # peft asks transformers a deprecated question (not the user's concern)
            warnings.filterwarnings("ignore", category=FutureWarning, message=".*gradient_checkpointing.*")
            model = PeftModel.from_pretrained(base, str(path), is_trainable=False).eval()
    except KeyError as exc:
        raise ModelLoadError(f"{path / ADAPTER_CONFIG} lacks the key {exc}; it is not a complete PEFT adapter "
                             "config") from exc
    except Exception as exc:  # corrupt weights, weights of another shape (another base model), ...
        text = " ".join(str(exc).split()) or type(exc).__name__
        raise ModelLoadError(f"cannot apply the PEFT adapter in {path} to its base model (was it trained on "
                             f"another one?): {text[:400]}") from exc
    from safetensors import safe_open

    with safe_open(str(path / ADAPTER_WEIGHTS), framework="pt") as saved:
        names = set(saved.keys())
    unused = sorted(names - set(get_peft_model_state_dict(model)))
    if unused:
        raise ModelLoadError(
            f"{len(unused)} weight(s) of the PEFT adapter in {path} match no module of its base model "
            f"({', '.join(unused[:3])}{', ...' if len(unused) > 3 else ''}): it was trained on another base model; "
            "set base_model_name_or_path to that one")
    return model


def load_adapter_folder(path: Path, tokenizer: Any, kind: Any, allow_new_head: bool, tokenizer_files: frozenset[str],
                        load_base: Callable[[Path, Any, Any], tuple[torch.nn.Module, Any, Any, list[str]]]
                        ) -> tuple[torch.nn.Module, Any, Any, list[str]]:
    """A PEFT adapter folder on its local base model: ``(module, tokenizer, kind, weights initialised at
    random)``. The kind is the adapter's task type when it names one; ``load_base(folder, tokenizer, kind)`` loads
    the base (allowing missing weights); weights the base lacks must come with the adapter (a head in
    ``modules_to_save``) unless ``allow_new_head``."""
    base = base_folder(path)
    found = kind or adapter_kind(path)
    tokenizer = tokenizer if tokenizer is not None else adapter_tokenizer(path, tokenizer_files)
    model, tokenizer, found, missing = load_base(base, tokenizer, found)
    model = unwrap_peft(apply_adapter(model, path))
    missing = uncovered(model, missing)
    if missing and not allow_new_head:
        raise ModelLoadError(
            f"the adapter in {path} on its base model {base} leaves {len(missing)} weight(s) of a {found} model "
            f"without values ({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}): neither has them, so "
            "they would be initialised at random and explained; pass allow_new_head=True (CLI --allow-new-head) to "
            "explain an untrained head on purpose")
    return model, tokenizer, found, missing


def adapter_tokenizer(path: Path, tokenizer_files: frozenset[str]) -> Any:
    """The adapter folder's own tokenizer, or None when it has no tokenizer files."""
    names = {p.name for p in path.iterdir()}
    if not names & tokenizer_files:
        return None
    import transformers

    try:
        return transformers.AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except Exception as exc:
        raise ModelLoadError(f"the tokenizer files in {path} cannot be read: {exc}") from exc
