"""Distributed data parallel (PyTorch DDP) context for ``torchrun``.

Every ``ivif train ...`` command runs unchanged on one process or many: under torchrun
(``WORLD_SIZE`` > 1) the training loop asks :meth:`DistContext.from_env` for the process group
(gloo on CPU, nccl on GPU), wraps the model in DDP (gradients averaged by DDP), shards each
global batch across ranks (see ``ShardedBatches`` in training/fusion.py) and only rank 0 logs,
shows progress and writes checkpoints.

    torchrun --standalone --nproc_per_node=2 -m ivif_fusion.cli train fusion --config ...
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


@dataclass
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    device: str
    backend: str

    @classmethod
    def from_env(cls) -> "DistContext":
        """Join the process group described by torchrun's environment variables."""
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local = int(os.environ.get("LOCAL_RANK", "0"))
        use_cuda = torch.cuda.is_available() and os.environ.get("IVIF_DDP_CPU", "0") != "1"
        backend = "nccl" if use_cuda else "gloo"
        device = f"cuda:{local}" if use_cuda else "cpu"
        if use_cuda:
            torch.cuda.set_device(local)
        if not dist.is_initialized():
            dist.init_process_group(backend=backend, rank=rank, world_size=world)
        return cls(rank, world, local, device, backend)

    def wrap(self, model: torch.nn.Module) -> DistributedDataParallel:
        ids = [self.local_rank] if self.device.startswith("cuda") else None
        return DistributedDataParallel(model, device_ids=ids)

    def barrier(self) -> None:
        dist.barrier()

    def close(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()
