"""Checkpoints of :func:`seqexplain.training.compatible.train_causal_lm`, and the export of its final model.

A checkpoint (every ``checkpoint_every`` steps and at the end) is ``<out_dir>/checkpoints/step-<n>/``:
``trainable.safetensors`` (every parameter that requires grad), ``optimizer.pt`` (``torch.save`` of the optimiser
state, read back with ``weights_only=True``), ``rng.safetensors`` (global and word-dropout generator states) and
``train_state.json`` (step, history, seconds, settings); ``<out_dir>/checkpoints/latest.json`` names the newest
complete one. Restoring all of it makes a resumed run continue exactly as the uninterrupted one; a checkpoint made
with other defining settings (:func:`defining_settings`) is refused.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from seqexplain.atomic import atomic_path, atomic_write_text
from seqexplain.errors import OTHER_FOLDER, InputError, ModelLoadError
from seqexplain.training.causal_lm_loss import model_device
from seqexplain.training.compatible_config import TrainConfig, TrainResult


def trainable_parameters(model: nn.Module) -> dict[str, Tensor]:
    """``{name: parameter}`` of every parameter of ``model`` that requires grad (what a checkpoint holds)."""
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def latest_checkpoint(root: Path) -> Path | None:
    """The checkpoint ``root/latest.json`` names, when it is complete (has ``train_state.json``); else None."""
    pointer = root / "latest.json"
    if not pointer.is_file():
        return None
    try:
        name = json.loads(pointer.read_text(encoding="utf-8"))["checkpoint"]
    except (ValueError, KeyError) as exc:
        raise ModelLoadError(f"{pointer} is corrupt ({exc}); delete it to start over") from exc
    path = root / name
    return path if (path / "train_state.json").is_file() else None


def clear_checkpoints(root: Path) -> None:
    """Delete ``root/latest.json`` and every ``root/step-<n>/`` folder (a run that starts over). Only a regular
    file and real folders are deleted; a link or other file in their place is an :class:`InputError`."""
    pointer = root / "latest.json"
    found = ([pointer] if pointer.exists() or pointer.is_symlink() else []) + sorted(root.glob("step-*"))
    odd = [p for p in found if p.is_symlink() or not (p.is_file() if p == pointer else p.is_dir())]
    if odd:
        raise InputError(f"{odd[0]} is not a regular {'file' if odd[0] == pointer else 'folder'}; a run that starts "
                         "over would delete it: move it away or use another output folder")
    for p in found:
        if p == pointer:
            p.unlink()
        else:
            shutil.rmtree(p)


def save_checkpoint(root: Path, model: nn.Module, optimizer: torch.optim.Optimizer, generator: torch.Generator,
                    step: int, result: TrainResult, config: TrainConfig, keep: int = 1,
                    seconds: float = 0.0) -> Path:
    """Write a complete checkpoint for ``step`` under ``root`` and point ``latest.json`` at it."""
    ckpt = root / f"step-{step}"
    if ckpt.exists():
        shutil.rmtree(ckpt)
    ckpt.mkdir(parents=True)
    tensors = {n: p.detach().cpu().contiguous() for n, p in trainable_parameters(model).items()}
    with atomic_path(ckpt / "trainable.safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={"step": str(step)})
    with atomic_path(ckpt / "optimizer.pt") as tmp:
        torch.save(optimizer.state_dict(), tmp)
    with atomic_path(ckpt / "rng.safetensors") as tmp:
        save_file({"torch": torch.get_rng_state(), "word_dropout": generator.get_state()}, str(tmp))
    state = {"step": step, "history": result.history, "seconds": seconds, "config": config.to_dict()}
    atomic_write_text(ckpt / "train_state.json", json.dumps(state, indent=2))
    atomic_write_text(root / "latest.json", json.dumps({"checkpoint": ckpt.name, "step": step}))
    olds = sorted((p for p in root.glob("step-*") if p.is_dir() and p != ckpt),
                  key=lambda p: int(p.name.split("-")[1]) if p.name.split("-")[1].isdigit() else -1)
    for old in olds[: max(0, len(olds) - (keep - 1))]:
        shutil.rmtree(old, ignore_errors=True)
    return ckpt


_NOT_DEFINING = ("log_every", "eval_every", "eval_batch_size", "checkpoint_every", "keep_checkpoints")
#: settings added later, with the value a checkpoint written before them was trained with
_BEFORE_ADDED = {"lr_zero_at_last_step": True}


def defining_settings(config: TrainConfig) -> dict[str, Any]:
    """The settings a checkpoint must share with a run that resumes it (everything but logging, evaluation and
    checkpointing)."""
    return {k: v for k, v in json.loads(json.dumps(config.to_dict())).items() if k not in _NOT_DEFINING}


def check_resumable(ckpt: Path, config: TrainConfig) -> None:
    """Raise :class:`ModelLoadError` when the checkpoint was made with other defining settings than ``config``
    (resuming it would silently mix two runs: another schedule, batch size or word dropout)."""
    state = json.loads((ckpt / "train_state.json").read_text(encoding="utf-8"))
    saved = {k: v for k, v in {**_BEFORE_ADDED, **state.get("config", {})}.items() if k not in _NOT_DEFINING}
    wanted = defining_settings(config)
    changed = sorted(k for k in set(saved) | set(wanted) if saved.get(k) != wanted.get(k))
    if changed:
        detail = ", ".join(f"{k}: {saved.get(k)!r} → {wanted.get(k)!r}" for k in changed)
        raise ModelLoadError(f"the checkpoint in {ckpt.parent} was trained with other settings ({detail}); "
                             f"{OTHER_FOLDER}")


def load_checkpoint(ckpt: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                    generator: torch.Generator) -> dict[str, Any]:
    """Restore what :func:`save_checkpoint` wrote; return the train state (step, history, seconds)."""
    params = trainable_parameters(model)
    saved = load_file(str(ckpt / "trainable.safetensors"))
    if set(saved) != set(params):
        raise ModelLoadError(f"checkpoint {ckpt} holds other trainable parameters than the model "
                             f"({len(saved)} vs {len(params)}); {OTHER_FOLDER}")
    with torch.no_grad():
        for name, p in params.items():
            if saved[name].shape != p.shape:
                raise ModelLoadError(f"checkpoint {ckpt}: {name} has shape {tuple(saved[name].shape)}, the model "
                                     f"{tuple(p.shape)}; {OTHER_FOLDER}")
            p.copy_(saved[name].to(p.device))
    optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", weights_only=True, map_location=model_device(model)))
    rng = load_file(str(ckpt / "rng.safetensors"))
    torch.set_rng_state(rng["torch"])
    generator.set_state(rng["word_dropout"])
    return json.loads((ckpt / "train_state.json").read_text(encoding="utf-8"))


def export_model(model: nn.Module, directory: Path) -> Path:
    """Save the trained model with ``save_pretrained`` (safetensors; a LoRA model saves its adapters)."""
    save = getattr(model, "save_pretrained", None)
    if save is None:
        raise InputError(f"{type(model).__name__} has no save_pretrained; save it yourself")
    save(str(directory))
    return directory
