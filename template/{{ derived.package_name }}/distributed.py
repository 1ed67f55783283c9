"""Data parallelism from the outside: the model knows nothing about processes (torchtitan style).

Under torchrun every process gets RANK, WORLD_SIZE and LOCAL_RANK in its environment; without torchrun
those are absent and everything here degrades to a single process with no process group, so the same
training code runs in both cases. Each process holds a full copy of the model, reads its own shard of
the data, and DistributedDataParallel averages gradients across processes during backward (Li et al.,
2020, "PyTorch Distributed").
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP


@dataclass
class Dist:
    rank: int  # global index of this process, 0..world_size-1
    local_rank: int  # index on this machine (selects the GPU)
    world_size: int
    device: torch.device

    @property
    def is_master(self) -> bool:
        """Rank 0 alone logs, writes files and saves checkpoints."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def pick_device(name: str = "auto") -> str:
    """'auto' -> cuda, else mps, else cpu; an explicit device that is missing is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was requested but torch sees no CUDA GPU")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("--device mps was requested but this machine has no MPS backend")
    if name not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unknown device '{name}' (expected auto, cpu, cuda or mps)")
    return name


def setup(device: str = "auto") -> Dist:
    """Join the process group when launched by torchrun; otherwise a world of one."""
    kind = pick_device(device)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if world_size == 1:
        return Dist(0, 0, 1, torch.device(kind))
    if kind == "mps":
        raise ValueError("multi-process training needs CUDA (nccl) or CPU (gloo), not MPS")
    if kind == "cuda":
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
        dist.init_process_group(backend="nccl", device_id=dev)
    else:
        dev = torch.device("cpu")
        dist.init_process_group(backend="gloo")
    return Dist(rank, local_rank, world_size, dev)


def wrap(model: nn.Module, d: Dist) -> nn.Module:
    """DDP around the model when there is more than one process; the model itself is unchanged."""
    if not d.enabled:
        return model
    if d.device.type == "cuda":
        return DDP(model, device_ids=[d.local_rank])
    return DDP(model)


def no_sync(model: nn.Module, sync: bool):
    """During gradient accumulation only the last micro-batch needs the all-reduce; skip it on the others."""
    if isinstance(model, DDP) and not sync:
        return model.no_sync()
    return contextlib.nullcontext()


def all_reduce_mean(x: torch.Tensor, d: Dist) -> torch.Tensor:
    """Average a tensor over processes (in place); a no-op for a single process."""
    if d.enabled:
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
        x /= d.world_size
    return x


def all_reduce_max(x: torch.Tensor, d: Dist) -> torch.Tensor:
    if d.enabled:
        dist.all_reduce(x, op=dist.ReduceOp.MAX)
    return x


def barrier(d: Dist) -> None:
    if d.enabled:
        dist.barrier()


def cleanup(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()
