"""Where the shared data sets live.

The data root is, in order of preference:

1. the environment variable ``SEQEXPLAIN_DATA`` when it is set;
2. ``../shared/data`` relative to the current working directory, when that folder exists;
3. ``shared/data`` beside the repository that holds this package (``<repo>/../shared/data``), when it exists;
4. otherwise ``../shared/data`` relative to the working directory (which then does not exist, and
   :func:`require_data` says so).
"""

from __future__ import annotations

import os
from pathlib import Path

from seqexplain.errors import DataError

__all__ = ["ENV_VAR", "data_root", "require_data"]

ENV_VAR = "SEQEXPLAIN_DATA"


def data_root() -> Path:
    """Return the data root (see the module docstring for the order in which candidates are tried)."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    cwd_default = Path.cwd().parent / "shared" / "data"
    if cwd_default.is_dir():
        return cwd_default
    # <repo>/src/seqexplain/data/paths.py -> parents[3] is the repository root.
    repo_sibling = Path(__file__).resolve().parents[3].parent / "shared" / "data"
    if repo_sibling.is_dir():
        return repo_sibling
    return cwd_default


def require_data(folder: str, root: Path | str | None = None) -> Path:
    """Return ``<root>/<folder>``; raise :class:`DataError` naming the folder when it does not exist.

    ``root`` defaults to :func:`data_root`.
    """
    base = Path(root) if root is not None else data_root()
    path = base / folder
    if not path.is_dir():
        raise DataError(
            f"data folder '{folder}' not found under {base}; put the data set there or set {ENV_VAR} "
            f"to the folder that contains '{folder}/'"
        )
    return path
