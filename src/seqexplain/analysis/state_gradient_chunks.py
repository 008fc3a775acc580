"""State-gradient chunks (:class:`GradientChunk`, what :mod:`seqexplain.analysis.state_gradients` yields) and their
raw storage.

**Raw storage** (optional, :class:`GradientStoreWriter` / :class:`GradientStoreReader`): chunks of positions in
compressed ``.npz`` files plus a JSON manifest. Chosen over zarr because it needs no extra dependency, loads without
pickle (``allow_pickle=False``), streams chunk by chunk and compresses the zero padding of undefined delays.
"""

from __future__ import annotations

import json
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from seqexplain.atomic import atomic_path, atomic_write_text
from seqexplain.errors import DataError, InputError


@dataclass
class GradientChunk:
    """State gradients of ``N`` positions.

    ``grads[N, D+1, H, E]``: ``G_d(t)`` (zeros where undefined); ``valid[N, D+1]``: ``d`` within the segment;
    ``source_positions[N, D+1]``: index of the input token ``t-d`` in the analysed token stream (-1 where undefined);
    ``positions[N]``: index of ``t``.
    """

    grads: Tensor
    valid: Tensor
    source_positions: Tensor
    positions: Tensor


class GradientStoreWriter:
    """Write gradient chunks to ``<directory>/chunk_NNNNN.npz`` (compressed) + ``manifest.json``.

    Positions are buffered and flushed every ``chunk_positions`` positions; ``dtype`` ``float16`` halves the size.
    Each file and the manifest are written atomically; the manifest is rewritten after every chunk. With float16,
    nonzero values below its smallest subnormal (6e-8) are stored as 0 and finite values above 65504 as ±inf:
    :meth:`close` warns with their numbers, which the manifest keeps (``float16_lost``).
    """

    def __init__(self, directory: Path | str, chunk_positions: int = 256, dtype: str = "float32") -> None:
        if dtype not in ("float32", "float16"):
            raise InputError(f"dtype must be float32 or float16, got {dtype!r}")
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.chunk_positions = chunk_positions
        self.dtype = dtype
        self._buf: list[GradientChunk] = []
        self._buffered = 0
        self.files: list[str] = []
        self.positions = 0
        self.lost = {"to_zero": 0, "to_inf": 0, "values": 0}

    def write(self, chunk: GradientChunk) -> None:
        self._buf.append(chunk)
        self._buffered += int(chunk.grads.shape[0])
        if self._buffered >= self.chunk_positions:
            self._flush()

    def _flush(self) -> None:
        if not self._buf:
            return
        grads = torch.cat([c.grads for c in self._buf]).cpu().numpy()
        with np.errstate(over="ignore"):  # counted below, and reported by close()
            stored = grads.astype(self.dtype)
        if self.dtype == "float16":
            self.lost["to_zero"] += int(((grads != 0) & (stored == 0)).sum())
            self.lost["to_inf"] += int((np.isfinite(grads) & ~np.isfinite(stored)).sum())
            self.lost["values"] += int(grads.size)
        arrays = {
            "grads": stored,
            "valid": torch.cat([c.valid for c in self._buf]).cpu().numpy(),
            "source_positions": torch.cat([c.source_positions for c in self._buf]).cpu().numpy(),
            "positions": torch.cat([c.positions for c in self._buf]).cpu().numpy(),
        }
        name = f"chunk_{len(self.files):05d}.npz"
        with atomic_path(self.dir / name) as tmp, tmp.open("wb") as fh:
            np.savez_compressed(fh, **arrays)
        self.files.append(name)
        self.positions += self._buffered
        self._buf, self._buffered = [], 0
        manifest = {"format": "seqexplain-state-gradients-npz", "version": 1, "dtype": self.dtype,
                    "positions": self.positions, "files": self.files}
        if self.dtype == "float16":
            manifest["float16_lost"] = dict(self.lost)
        atomic_write_text(self.dir / "manifest.json", json.dumps(manifest, indent=2))

    def close(self) -> None:
        """Flush what is buffered; warn if float16 could not hold some values (class docstring)."""
        self._flush()
        n, zero, inf = self.lost["values"], self.lost["to_zero"], self.lost["to_inf"]
        if zero or inf:
            warnings.warn(f"the float16 gradient store {self.dir} holds {zero} of {n} values as 0 (nonzero, below "
                          f"6e-8) and {inf} of {n} as infinite (above 65504); use dtype='float32' to keep them",
                          RuntimeWarning, stacklevel=2)


class GradientStoreReader:
    """Stream the chunks written by :class:`GradientStoreWriter` back as :class:`GradientChunk` (float32).

    A manifest or chunk file that is missing or unreadable is a :class:`DataError` naming it."""

    def __init__(self, directory: Path | str) -> None:
        self.dir = Path(directory)
        manifest = self.dir / "manifest.json"
        if not manifest.is_file():
            raise DataError(f"{self.dir} is not a gradient store (no manifest.json)")
        try:
            self.manifest = json.loads(manifest.read_text(encoding="utf-8"))
            self._files = [str(f) for f in self.manifest["files"]]
            self._positions = int(self.manifest["positions"])
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{manifest} is not a gradient-store manifest ({type(exc).__name__}: {exc}); write the "
                            "store again") from exc

    @property
    def positions(self) -> int:
        return self._positions

    def __iter__(self) -> Iterator[GradientChunk]:
        for name in self._files:
            path = self.dir / name
            try:
                with np.load(path, allow_pickle=False) as z:
                    chunk = GradientChunk(
                        grads=torch.from_numpy(z["grads"].astype(np.float32)),
                        valid=torch.from_numpy(z["valid"]),
                        source_positions=torch.from_numpy(z["source_positions"]),
                        positions=torch.from_numpy(z["positions"]),
                    )
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
                raise DataError(f"gradient-store chunk {path} is missing or unreadable ({exc}); write the store "
                                "again") from exc
            yield chunk
