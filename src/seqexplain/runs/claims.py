"""What an output folder was made with, recorded so that a rerun with other settings is refused.

A recipe that resumes what it finds in its folder (a finished model is not retrained, a run's dumps are reused)
would otherwise explain the old models under the new settings' name. :func:`claim_folder` writes the settings that
define the folder's contents to a JSON file the first time and compares them on every later run.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from seqexplain.atomic import atomic_write_text
from seqexplain.errors import InputError


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
                 may_grow: Sequence[str] = ()) -> None:
    """Record ``wanted`` (JSON-able; values not JSON-native are written as strings) in ``path``, or, when ``path``
    holds other values, raise :class:`InputError` naming them: "``<folder>`` holds ``<what>`` of other ``<of>``
    (keys); use a new --out folder or delete it to start over". Top-level keys in ``may_grow`` may take a larger
    value than recorded (training continues), not a smaller one; the file then records the new value."""
    wanted = json.loads(json.dumps(wanted, default=str))
    if path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        grown = {k for k in may_grow if k in saved and k in wanted}
        fs, fw = _flat({k: v for k, v in saved.items() if k not in grown}),\
            _flat({k: v for k, v in wanted.items() if k not in grown})
        changed = sorted(k for k in fs.keys() | fw.keys() if fs.get(k) != fw.get(k))
        changed += [f"{k} {saved[k]} > {wanted[k]}" for k in sorted(grown) if saved[k] > wanted[k]]
        if changed:
            raise InputError(f"{path.parent} holds {what} of other {of} ({', '.join(changed)}); use a new --out "
                             "folder or delete it to start over")
        if saved == wanted:
            return
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(wanted, indent=1))


__all__ = ["claim_folder"]
