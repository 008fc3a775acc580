"""Training data of causal language models: right-padded token sequences and the step-indexed batch order.

:class:`TokenData` holds ``input_ids[N, L]`` and ``valid[N, L]``. :class:`StepBatches` maps a training step to row
indices as a function of ``(seed, step)`` only: epoch ``e`` visits the rows in ``randperm(N)`` seeded with
``seed + e``; step ``s`` takes batch ``s mod (N // batch_size)`` of epoch ``s // (N // batch_size)`` (the last
partial batch is skipped), so a resumed run sees the same batches as an uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from seqexplain.errors import InputError


@dataclass
class TokenData:
    """Right-padded sequences: ``input_ids[N, L]`` and ``valid[N, L]`` (True on real tokens)."""

    input_ids: Tensor
    valid: Tensor

    def __post_init__(self) -> None:
        if self.input_ids.dim() != 2 or self.input_ids.shape != self.valid.shape:
            raise InputError(f"input_ids {tuple(self.input_ids.shape)} and valid {tuple(self.valid.shape)} must be "
                             "the same [N, L] shape")
        self.valid = self.valid.to(torch.bool)

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    @classmethod
    def from_tensor(cls, ids: Tensor) -> TokenData:
        """Equal-length sequences ``[N, L]`` (no padding)."""
        return cls(ids.long(), torch.ones_like(ids, dtype=torch.bool))

    @classmethod
    def from_lists(cls, rows: list[list[int]], pad_token_id: int = 0) -> TokenData:
        """Variable-length sequences, right-padded with ``pad_token_id``."""
        if not rows or any(len(r) == 0 for r in rows):
            raise InputError("give at least one non-empty sequence")
        n_l = max(len(r) for r in rows)
        ids = torch.full((len(rows), n_l), pad_token_id, dtype=torch.long)
        valid = torch.zeros(len(rows), n_l, dtype=torch.bool)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
            valid[i, : len(r)] = True
        return cls(ids, valid)


class StepBatches:
    """Step -> row indices, a function of (seed, step) only (module docstring)."""

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        if n < batch_size:
            raise InputError(f"{n} training sequences are fewer than batch_size {batch_size}")
        self.n, self.bs, self.seed = n, batch_size, seed
        self.per_epoch = n // batch_size
        self._epoch, self._perm = -1, torch.empty(0, dtype=torch.long)

    def __call__(self, step: int) -> Tensor:
        epoch, i = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            self._perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + epoch))
            self._epoch = epoch
        return self._perm[i * self.bs : (i + 1) * self.bs]
