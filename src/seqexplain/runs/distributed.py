"""Scale-out of a run over processes, GPUs and nodes with ``torch.distributed``.

Under ``torchrun`` (or ``accelerate launch``, or any launcher that sets ``WORLD_SIZE`` / ``RANK`` /
``MASTER_ADDR`` / ``MASTER_PORT``) with ``WORLD_SIZE > 1``, :func:`context` initialises the default process group
(``nccl`` when the run's device is CUDA — each rank then uses ``cuda:<LOCAL_RANK>`` — else ``gloo``).

Assignment: rank ``r`` of ``W`` owns the shards ``s`` with ``s mod W = r`` (round-robin, so ranks get neighbouring,
similar-length parts of the corpus). Shards are fixed by example index, not by rank, so a rerun with another
world size (or one process) finds the finished shards and redoes only the others. Every rank checks that all ranks
have the same config hash (``all_gather``) before anything is written; a mismatch is an
:class:`~seqexplain.errors.InputError` on every rank.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

from seqexplain.errors import InputError


@dataclass
class Context:
    """This process's place in the run: ``rank`` of ``world`` (``0`` of ``1`` without a launcher)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    initialised: bool = False  # the process group was started here (and is destroyed by close)

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def owns(self, shard: int) -> bool:
        return shard % self.world == self.rank

    def gather(self, value: Any) -> list[Any]:
        """``value`` of every rank, in rank order (``[value]`` in one process)."""
        if not self.distributed:
            return [value]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, value)
        return out

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()

    def agree(self, error: str | None) -> None:
        """Every rank raises :class:`InputError` with the first rank's error when any rank has one."""
        for rank, message in enumerate(self.gather(error)):
            if message is not None:
                raise InputError(message if rank == self.rank or not self.distributed else f"rank {rank}: {message}")

    def check_same_config(self, config_hash: str) -> None:
        """:class:`InputError` on every rank when the ranks' config hashes differ."""
        hashes = self.gather(config_hash)
        for rank, h in enumerate(hashes):
            if h != hashes[0]:
                raise InputError(f"rank {rank} was started with another configuration (hash {h[:12]}) than rank 0 "
                                 f"({hashes[0][:12]}); start every rank with the same config file")

    def device(self, device: str | None) -> str | None:
        """The device of this rank: ``cuda`` becomes ``cuda:<LOCAL_RANK>`` in a distributed run."""
        if self.distributed and device == "cuda":
            return f"cuda:{self.local_rank}"
        return device

    def close(self) -> None:
        if self.initialised:
            import torch.distributed as dist

            dist.destroy_process_group()
            self.initialised = False


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise InputError(f"the environment variable {name}={raw!r} is not a number; launch with torchrun") from None


def context(device: str | None = None, timeout_s: float = 1800.0) -> Context:
    """The process's :class:`Context` from the launcher's environment, initialising the process group when
    ``WORLD_SIZE > 1`` (and it is not initialised already)."""
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local = _env_int("LOCAL_RANK", rank)
    if world <= 1:
        return Context()
    if not 0 <= rank < world:
        raise InputError(f"RANK={rank} is outside 0..{world - 1} (WORLD_SIZE={world})")
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return Context(dist.get_rank(), dist.get_world_size(), local, False)
    cuda = device is not None and device.startswith("cuda")
    if cuda:
        torch.cuda.set_device(local)
    dist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(seconds=timeout_s))
    return Context(rank, world, local, True)


__all__ = ["Context", "context"]
