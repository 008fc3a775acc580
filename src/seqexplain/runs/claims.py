"""What an output folder was made with, recorded so that a rerun with other settings or data is refused.

A recipe that resumes what it finds in its folder (a finished model is not retrained, a run's dumps are reused)
would otherwise explain the old models under the new settings' name. :func:`claim_folder` writes the settings that
define the folder's contents to a JSON file the first time and compares them on every later run;
:func:`data_fingerprint` is the sha256 of the items a recipe loaded (recorded under :data:`DATA_KEY`), so that a rerun
on another copy or version of the data is refused too, while the same data in another place is not;
:func:`weights_fingerprint` identifies a model a folder's contents were made from.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from seqexplain.atomic import atomic_write_text
from seqexplain.errors import InputError

DATA_KEY = "data_sha256"
"""The key a claim records :func:`data_fingerprint` under."""
LATE_KEY = "recorded_after_the_models"
"""The key listing the claim's keys that were first recorded on a rerun (see ``added_later``)."""


def data_fingerprint(items: Any) -> str:
    """sha256 (hex) of ``json.dumps(items)``: the JSON of what a recipe loaded (texts, tokens, labels), in the order
    given (lists and tuples alike). Where the data came from (the folder's path) is not part of it."""
    return hashlib.sha256(json.dumps(items).encode()).hexdigest()


def weights_fingerprint(module: Any) -> str:
    """sha256 (hex) of a torch module's state dict: for each entry in name order, its name, dtype, shape and raw
    bytes. Two modules share it exactly when they hold the same tensors bit for bit."""
    import torch

    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``d`` with nested mappings as dotted keys (``settings.batch_size``), for naming what changed."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def claim_folder(path: Path, wanted: dict[str, Any], what: str, *, of: str = "training",
                 may_grow: Sequence[str] = (), added_later: Sequence[str] = (DATA_KEY,),
                 unclaimed_contents: bool = False) -> list[str]:
    """Record ``wanted`` (JSON-able; values not JSON-native are written as strings) in ``path``, or, when ``path``
    holds other values, raise :class:`InputError` naming them: "``<folder>`` holds ``<what>`` of other ``<of>``
    (keys); use a new --out folder or delete it to start over". Top-level keys in ``may_grow`` may take a larger
    value than recorded (training continues), not a smaller one; the file then records the new value.

    Top-level keys in ``added_later`` (default: :data:`DATA_KEY`) were not recorded by earlier versions: a claim
    without one (a folder claimed before) is not refused but takes this run's value, and the key is listed under
    :data:`LATE_KEY`, so it is checked from then on. Its value for the folder's existing contents is unknown, so on
    that run and every later one the claim returns a warning naming it (also issued with :func:`warnings.warn`),
    for the recipe to store with its results. ``unclaimed_contents``: the folder holds what an earlier version made
    without any claim; when ``path`` is missing, every key of ``wanted`` is taken as added later. Returns the warnings
    (one line; empty for a folder claimed with every key)."""
    wanted = json.loads(json.dumps(wanted, default=str))
    saved: dict[str, Any] = {}
    if path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
    if saved:
        new_keys = {k for k in added_later if k in wanted and k not in saved}
    else:
        new_keys = set(wanted) if unclaimed_contents else set()
    late = sorted(set(saved.get(LATE_KEY, [])) | new_keys)
    if saved:
        grown = {k for k in may_grow if k in saved and k in wanted}
        skip = grown | {LATE_KEY} | (set(late) - set(saved))
        fs = _flat({k: v for k, v in saved.items() if k not in skip})
        fw = _flat({k: v for k, v in wanted.items() if k not in skip})
        changed = sorted(k for k in fs.keys() | fw.keys() if fs.get(k) != fw.get(k))
        changed += [f"{k} {saved[k]} > {wanted[k]}" for k in sorted(grown) if saved[k] > wanted[k]]
        if changed:
            named = [f"{k}: the data read now differ from those it was made from (another --data-root or version "
                     "of the data)" if k == DATA_KEY else k for k in changed]
            raise InputError(f"{path.parent} holds {what} of other {of} ({', '.join(named)}); use a new --out folder "
                             "or delete it to start over")
    record = {**wanted, LATE_KEY: late} if late else wanted
    if record != saved:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(record, indent=1))
    if not late:
        return []
    keys = ", ".join(late)
    note = (f"{path.parent} was claimed before {keys} {'was' if len(late) == 1 else 'were'} recorded, so whether its "
            f"{what} match this run's could not be checked (recorded now and checked on later runs; delete the folder "
            "to start over and be sure)")
    warnings.warn(note, UserWarning, stacklevel=2)
    return [note]


__all__ = ["DATA_KEY", "LATE_KEY", "claim_folder", "data_fingerprint", "weights_fingerprint"]
