"""Processes under ``torchrun``: rank, world size, device and a barrier, set up and torn down in
one place (feature extraction uses it; fine-tuning will)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from helpers.device import resolve_device


@dataclass(frozen=True)
class Distributed:
    """This process's place in a run.

    Attributes
    ----------
    rank, world_size, local_rank : int
        ``0, 1, 0`` outside ``torchrun``.
    device : str
        ``cuda:<local_rank>`` on GPUs under torchrun, else the resolved device.
    barrier : callable or None
        Waits for every process (``None`` with one process).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"
    barrier: Callable[[], None] | None = None

    @property
    def is_main(self) -> bool:
        """The process that downloads, merges and reports."""
        return self.rank == 0


@contextlib.contextmanager
def distributed(device: str = "auto") -> Iterator[Distributed]:
    """Join the process group when started by ``torchrun`` (``WORLD_SIZE`` > 1): NCCL on
    GPUs, gloo on CPU; leave it when the block ends.

    Parameters
    ----------
    device : str
        ``auto``, ``cpu``, ``cuda``... as `helpers.resolve_device` takes it.

    Raises
    ------
    ValueError
        An unknown device, or CUDA asked for without a GPU (before joining any group).
    """
    device = resolve_device(device)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        yield Distributed(device=device)
        return
    import torch  # torch: only under torchrun
    import torch.distributed as dist  # torch: only under torchrun

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        device = f"cuda:{local_rank}"
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    try:
        yield Distributed(dist.get_rank(), world, local_rank, device, dist.barrier)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
