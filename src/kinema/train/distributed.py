"""Run the same training code alone or under `torchrun --nproc_per_node=N`.

torchrun announces itself through its own environment variables (WORLD_SIZE,
RANK, LOCAL_RANK, MASTER_ADDR/PORT); reading them is the accepted way to detect
it. On CPU the backend is gloo. Only rank 0 writes files and shows progress.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(timeout_minutes: float = 240.0) -> DistInfo:
    """Join the process group when launched by torchrun; a no-op otherwise.

    The timeout is long because rank 0 alone renders data and caches latents
    while the other ranks wait at a barrier. Each process gets an equal share
    of the CPU cores so N processes do not oversubscribe them.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group("gloo", timeout=timedelta(minutes=timeout_minutes))
    info = DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // info.world_size))
    return info


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def broadcast_values(info: DistInfo, *values: float) -> tuple[float, ...]:
    """Rank 0's numbers (time used, stop/save decisions) for every rank, so all ranks act in step."""
    if not info.enabled:
        return tuple(float(v) for v in values)
    t = torch.tensor([float(v) for v in values], dtype=torch.float64)
    dist.broadcast(t, src=0)
    return tuple(t.tolist())


def wrap_model(model: torch.nn.Module, info: DistInfo) -> torch.nn.Module:
    """DDP wrapper when distributed (gradients averaged across ranks), else the model itself.

    find_unused_parameters: the DiT keeps zero-initialised frame/camera
    conditioning branches that text-only training never touches.
    """
    if not info.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, find_unused_parameters=True)


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
