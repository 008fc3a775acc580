"""An optimizer's state in safetensors + JSON (never pickle): tensors to ``optimizer.safetensors`` keyed
``"<param id>.<name>"``, the parameter groups and the non-tensor per-parameter values (step counts) to
``optimizer.json``. Loading rebuilds the ``state_dict`` that ``torch.optim.Optimizer.load_state_dict`` takes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from seqexplain.atomic import atomic_path, atomic_write_text


def save_optimizer_state(opt: torch.optim.Optimizer, directory: Path) -> None:
    """Write ``opt``'s state to ``directory/optimizer.safetensors`` and ``directory/optimizer.json`` (atomically)."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, float]] = {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"{pid}.{k}"] = v.detach().contiguous().cpu()
            else:
                scalars.setdefault(str(pid), {})[k] = float(v)
    with atomic_path(directory / "optimizer.safetensors") as tmp:
        save_file(tensors, str(tmp))
    atomic_write_text(directory / "optimizer.json", json.dumps({"param_groups": sd["param_groups"],
                                                                "scalars": scalars}))


def load_optimizer_state(opt: torch.optim.Optimizer, directory: Path) -> None:
    """Restore what :func:`save_optimizer_state` wrote into ``opt``."""
    meta = json.loads((directory / "optimizer.json").read_text(encoding="utf-8"))
    tensors = load_file(str(directory / "optimizer.safetensors"))
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    for pid, sc in meta.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(sc)
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
