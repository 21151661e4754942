"""Data-parallel training under ``torchrun``: who am I, which device, and the few collectives we use.

``torchrun --nproc-per-node K -m studio train ...`` sets RANK, WORLD_SIZE, LOCAL_RANK and the
rendezvous variables; ``Context.from_env`` reads them. With WORLD_SIZE unset or 1 everything here is
a no-op, so the same loop runs alone or as one of K processes. Backend: NCCL on CUDA, gloo on CPU.
Only rank 0 writes files (``is_main``).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Context:
    """This process's place in a (possibly single-process) training job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> Context:
        world = int(os.environ.get("WORLD_SIZE", "1") or 1)
        if world <= 1:
            return cls()
        return cls(
            rank=int(os.environ.get("RANK", "0")),
            world_size=world,
            local_rank=int(os.environ.get("LOCAL_RANK", os.environ.get("RANK", "0"))),
        )

    def device(self, requested: str) -> torch.device:
        """The device this rank trains on: ``cuda`` becomes ``cuda:LOCAL_RANK`` when distributed."""
        dev = torch.device(requested)
        if dev.type == "cuda":
            if not torch.cuda.is_available():
                raise ValueError("--device cuda: no CUDA device is available here (use --device cpu)")
            if dev.index is None:  # an index always: torch.cuda.set_device refuses a bare "cuda" (torch 2.11)
                index = self.local_rank % torch.cuda.device_count() if self.distributed else torch.cuda.current_device()
                dev = torch.device("cuda", index)
            torch.cuda.set_device(dev)
        return dev

    def start(self, device: torch.device) -> None:
        """Join the process group (once); NCCL for CUDA, gloo otherwise."""
        if not self.distributed or dist.is_initialized():
            return
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=self.rank, world_size=self.world_size)
        log.info("rank %d of %d joined (%s)", self.rank, self.world_size, backend)

    def stop(self) -> None:
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()

    def all_sum(self, values: torch.Tensor) -> torch.Tensor:
        """Element-wise sum over ranks (in place; returns it). A no-op alone."""
        if self.distributed:
            dist.all_reduce(values, op=dist.ReduceOp.SUM)
        return values

    def all_gather(self, values: torch.Tensor) -> torch.Tensor:
        """[world_size, *values.shape]: every rank's ``values`` (rank order)."""
        if not self.distributed:
            return values.unsqueeze(0)
        out = [torch.empty_like(values) for _ in range(self.world_size)]
        dist.all_gather(out, values)
        return torch.stack(out)

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()
