"""Distributed data parallel: the process group of a torchrun job, this rank's place and device,
and the collectives the loop needs (sums, gathers, an agreement that a loss is finite).

Without torchrun everything here is the single-process identity: rank 0 of 1, no collectives.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class DistInfo:
    """This process's place in a torchrun job (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def dist_info() -> DistInfo:
    """Rank and world size of an initialised torch.distributed group (see :func:`process_group`)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size())
    return DistInfo()


def pick_device(dist: DistInfo) -> torch.device:
    """This rank's GPU (ranks share GPUs round-robin), or the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", dist.rank % torch.cuda.device_count())
    return torch.device("cpu")


@contextmanager
def process_group(world_size: int, local_rank: int) -> Iterator[DistInfo]:
    """Join the torchrun job for the duration of the block (NCCL on GPUs, gloo on CPUs).

    Args:
        world_size: torchrun's ``WORLD_SIZE`` (1: not distributed, nothing is initialised).
        local_rank: torchrun's ``LOCAL_RANK``: the GPU this process drives.
    """
    import torch.distributed as tdist

    owned = world_size > 1 and not tdist.is_initialized()
    if owned:
        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank)
            tdist.init_process_group("nccl")
        else:
            tdist.init_process_group("gloo")
    try:
        yield dist_info()
    finally:
        if owned and tdist.is_initialized():
            tdist.destroy_process_group()


def all_reduce(values: list[float], dist: DistInfo) -> list[float]:
    """Element-wise sums over all ranks."""
    if not dist.distributed:
        return values
    import torch.distributed as tdist

    tensor = torch.tensor(values, dtype=torch.float64)
    tdist.all_reduce(tensor)
    return tensor.tolist()


def all_finite(loss: torch.Tensor, dist: DistInfo) -> bool:
    """Whether the loss is finite on every rank."""
    finite = torch.isfinite(loss.detach()).float()
    if dist.distributed:  # every rank must take the same branch or DDP deadlocks
        import torch.distributed as tdist

        tdist.all_reduce(finite, op=tdist.ReduceOp.MIN)
    return bool(finite.item() > 0)


def gather(parts: list, dist: DistInfo, outputs: int) -> tuple[np.ndarray, ...]:
    """(index, probs, targets) of the validation batches of every rank, concatenated."""
    index = torch.cat([p[0] for p in parts]) if parts else torch.empty(0, dtype=torch.long)
    probs = torch.cat([p[1] for p in parts]) if parts else torch.empty(0, outputs)
    targets = torch.cat([p[2] for p in parts]) if parts else torch.empty(0, dtype=torch.long)
    if dist.distributed:
        import torch.distributed as tdist

        gathered: list = [None] * dist.world
        tdist.all_gather_object(gathered, (index, probs, targets))
        index = torch.cat([g[0] for g in gathered])
        probs = torch.cat([g[1] for g in gathered])
        targets = torch.cat([g[2] for g in gathered])
    return index.numpy(), probs.numpy(), targets.numpy()
