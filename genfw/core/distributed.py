"""Data-parallel training across processes (torchrun), designed for multi-phase algorithms.

Stock DistributedDataParallel assumes one forward and one backward per iteration and hooks the
all-reduce into autograd. Our steps run several phases, run the same network several times per
step (IntroVAE's encoder runs five times), and back-propagate with ``inputs=`` so gradients land only
in the phase's networks. DDP's reducer would either wait for gradients that never come or reduce at
the wrong moment. Instead each network is synchronised explicitly: parameters and buffers are
broadcast from rank 0 when training starts, and after each phase's backward the engine averages the
gradients of exactly the networks that phase updates (``run_step(..., grad_sync=...)``), before the
optimizer steps. Buffers (BatchNorm statistics) are re-broadcast from rank 0 after every step, as
DDP does with ``broadcast_buffers``. Every rank then applies the same averaged update and the
replicas stay identical.
"""
from __future__ import annotations

import os
from typing import Iterable

import attrs
import torch
import torch.distributed as dist
from torch import nn


@attrs.define
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialized_here: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_distributed(device_type: str) -> DistInfo:
    """Join the process group that torchrun describes in the environment (no-op when single)."""
    world = env_world_size()
    if world <= 1:
        return DistInfo()
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    here = False
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
        here = True
    return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local,
                    initialized_here=here)


def shutdown(info: DistInfo) -> None:
    if info.initialized_here and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_module(module: nn.Module, src: int = 0, buffers_only: bool = False) -> None:
    """Make every rank's copy equal to rank `src`'s."""
    with torch.no_grad():
        tensors = list(module.buffers()) if buffers_only else [*module.parameters(), *module.buffers()]
        for t in tensors:
            dist.broadcast(t.data, src)


def average_gradients(params: Iterable[torch.nn.Parameter]) -> None:
    """All-reduce (mean) the gradients of `params` in one flat buffer.

    A parameter may have a gradient on one rank and none on another (a branch used only for some
    data); a first, tiny all-reduce of "has grad" flags makes every rank agree, so the collectives
    match and a parameter no rank touched keeps grad None (the optimizer then skips it, exactly as
    in a single process).
    """
    params = list(params)
    if not params:
        return
    world = dist.get_world_size()
    device = params[0].device
    has = torch.tensor([p.grad is not None for p in params], dtype=torch.int32, device=device)
    dist.all_reduce(has, op=dist.ReduceOp.MAX)
    active = [p for p, h in zip(params, has.tolist()) if h]
    if not active:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in active]
    flat = torch.cat([g.reshape(-1).float() for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= world
    offset = 0
    for p, g in zip(active, grads):
        n = g.numel()
        new = flat[offset:offset + n].view_as(g).to(g.dtype)
        if p.grad is None:
            p.grad = new.clone()
        else:
            p.grad.copy_(new)
        offset += n


def all_mean(value: float, device: torch.device) -> float:
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t.item()) / dist.get_world_size()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()
