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

Also here: the data stream every world size shares (``GlobalOrder``: a resume on another number of
processes continues from one integer), the collectives the trainer needs to decide together
(``max_over_ranks``, ``from_main``, ``gather_to_main`` for the per-rank checkpoint state), and
``SyncBatchNorm``, which runs on gloo as well as nccl, and ``attempt_store``: a key space of its
own for each start of an elastic job on torchrun's shared store. Only torch.distributed: torchrun
(or anything that sets its environment variables) starts the processes.
"""
from __future__ import annotations

import os
import time
import uuid
from datetime import timedelta
from typing import Any, Iterable, Iterator

import attrs
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from genfw.core.errors import GenfwError


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
        store = _attempt_store_of_agent(rank, world)
        if store is None:
            dist.init_process_group(backend=backend, rank=rank, world_size=world)
        else:
            dist.init_process_group(backend=backend, store=store, rank=rank, world_size=world)
        here = True
    return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local,
                    initialized_here=here)


# --- a fresh key space for every (re)start under torchrun's shared store ----------------------------
HANDSHAKE = "genfw/pg"


def _attempt_store_of_agent(rank: int, world: int) -> dist.Store | None:
    """The store this process group should use when torchrun shares its agent's store, else None.

    By default (torch >= 2.4) torchrun's agent starts ONE TCPStore at the first rendezvous and hands
    the same MASTER_ADDR:MASTER_PORT to the workers of every later round, which connect without a
    per-attempt prefix. After an elastic restart the store still holds the killed attempt's process
    group keys (gloo's peer addresses, nccl's unique id) under the very names the new attempt uses:
    a restarted rank that reads a peer's key before the new peer has overwritten it connects to a
    dead process ("Gloo connectFullMesh failed ... Connection refused"). So genfw gives each attempt
    its own key space, named by a token every rank provably agrees on (``attempt_store``).
    ``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1`` makes torchrun build a fresh store each round instead;
    the variable ``TORCHELASTIC_USE_AGENT_STORE`` then is False and nothing is needed here.
    """
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    addr, port = os.environ.get("MASTER_ADDR"), os.environ.get("MASTER_PORT")
    if not addr or not port:
        return None
    timeout = dist.constants.default_pg_timeout
    agent = dist.TCPStore(addr, int(port), world_size=world, is_master=False, timeout=timeout)
    return attempt_store(agent, rank, world, timeout)


def attempt_store(store: dist.Store, rank: int, world: int,
                  timeout: timedelta = dist.constants.default_pg_timeout) -> dist.PrefixStore:
    """`store` seen through a prefix that is new for this start of the job and equal on all ranks.

    No environment variable names the attempt consistently on every node (TORCHELASTIC_RESTART_COUNT
    counts only the restarts a node's own agent decided; a node restarted because another failed
    or joined keeps its count), and every key the previous attempt wrote may still be in the store,
    so a value read there cannot tell whether the new rank 0 or a dead one wrote it. Only a key
    whose NAME contains something this process just invented is unambiguous. Hence a handshake:
    rank 0 draws a random token; every other rank publishes a fresh random nonce at
    ``hello/<rank>`` and waits for ``welcome/<nonce>``, which only the current rank 0 can write
    (no one else has seen the nonce), then confirms at ``joined/<token>/<rank>``. Rank 0 answers
    whatever nonce it finds at ``hello/<rank>`` (a stale one is answered too, harmlessly: its
    owner is dead) until every rank's confirmation under its own token is there. The handshake
    assumes only what torchrun guarantees: the previous attempt's workers are stopped before the
    round that starts the new ones completes.
    """
    deadline = time.monotonic() + timeout.total_seconds()
    if rank != 0:
        nonce = uuid.uuid4().hex
        store.set(f"{HANDSHAKE}/hello/{rank}", nonce)
        token = store.get(f"{HANDSHAKE}/welcome/{nonce}").decode()  # blocks up to the store's timeout
        store.delete_key(f"{HANDSHAKE}/welcome/{nonce}")
        store.set(f"{HANDSHAKE}/joined/{token}/{rank}", "1")
        return dist.PrefixStore(f"genfw/attempt/{token}", store)
    token = uuid.uuid4().hex
    answered: dict[int, str] = {}
    pending = set(range(1, world))
    while pending:
        moved = False
        for r in sorted(pending):
            hello = f"{HANDSHAKE}/hello/{r}"
            if store.check([hello]):
                nonce = store.get(hello).decode()
                if answered.get(r) != nonce:
                    if r in answered:  # rank r wrote only once: the nonce answered before was a dead one's
                        store.delete_key(f"{HANDSHAKE}/welcome/{answered[r]}")
                    store.set(f"{HANDSHAKE}/welcome/{nonce}", token)
                    answered[r], moved = nonce, True
            joined = f"{HANDSHAKE}/joined/{token}/{r}"
            if store.check([joined]):
                store.delete_key(joined)
                pending.discard(r)
                moved = True
        if pending and not moved:
            if time.monotonic() > deadline:
                raise RuntimeError(f"ranks {sorted(pending)} did not join the process group within "
                                   f"{timeout} (genfw's handshake on torchrun's store)")
            time.sleep(0.005)
    return dist.PrefixStore(f"genfw/attempt/{token}", store)


def shutdown(info: DistInfo) -> None:
    if info.initialized_here and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_module(module: nn.Module, src: int = 0, buffers_only: bool = False) -> None:
    """Make every rank's copy equal to rank `src`'s."""
    tensors = list(module.buffers()) if buffers_only else [*module.parameters(), *module.buffers()]
    broadcast_tensors(tensors, src)


def broadcast_tensors(tensors: Iterable[torch.Tensor], src: int = 0) -> None:
    """Rank `src`'s values into `tensors` on every rank, one flat broadcast per dtype and device:
    a network has dozens of small buffers, and per-tensor collectives cost a round trip each."""
    groups: dict[tuple, list[torch.Tensor]] = {}
    for t in tensors:
        groups.setdefault((t.dtype, t.device), []).append(t)
    with torch.no_grad():
        for group in groups.values():
            flat = torch.cat([t.detach().reshape(-1) for t in group])
            dist.broadcast(flat, src)
            offset = 0
            for t in group:
                n = t.numel()
                t.data.copy_(flat[offset:offset + n].view_as(t))
                offset += n


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


# --- the data order across ranks --------------------------------------------------------------------
class GlobalOrder:
    """One endless stream of per-epoch permutations, shared by every world size.

    Stream position p is item ``perm_e[p % n]`` of epoch ``e = p // n``, where ``perm_e`` depends on
    (seed, e) alone. A step of W ranks with B items each consumes the W*B consecutive positions
    starting at g; rank r takes g + r, g + r + W, ... (every W-th, like DistributedSampler). So the
    only data state is g, one integer for all ranks: a run resumed on another world size (or batch
    size) carries on from g and within an epoch no item is seen twice or skipped.
    """

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world: int = 1) -> None:
        if n <= 0:
            raise GenfwError("the dataset is empty")
        self.n, self.batch_size, self.seed, self.rank, self.world = n, batch_size, seed, rank, world
        self._cache: dict[int, list[int]] = {}

    @property
    def span(self) -> int:
        """Stream positions one step consumes (all ranks together)."""
        return self.batch_size * self.world

    def epoch(self, e: int) -> list[int]:
        if e not in self._cache:
            g = torch.Generator().manual_seed((self.seed * 1_000_003 + e) % 2**63)
            if len(self._cache) >= 2:  # a batch spans at most two epochs
                self._cache.pop(min(self._cache))
            self._cache[e] = torch.randperm(self.n, generator=g).tolist()
        return self._cache[e]

    def item(self, pos: int) -> tuple[int, int]:
        """(dataset index, epoch) at stream position `pos`."""
        e, i = divmod(pos, self.n)
        return self.epoch(e)[i], e

    def batch_at(self, start: int) -> list[tuple[int, int]]:
        """This rank's (index, epoch) pairs of the step that begins at stream position `start`."""
        return [self.item(start + self.rank + self.world * j) for j in range(self.batch_size)]


class DataOrder(GlobalOrder):
    """A run that starts at stream position 0: batch k begins at k * span."""

    def batch_with_epochs(self, k: int) -> list[tuple[int, int]]:
        return self.batch_at(k * self.span)

    def batch(self, k: int) -> list[int]:
        return [i for i, _ in self.batch_with_epochs(k)]

    def epoch_of(self, k: int) -> int:
        return (k * self.span) // self.n


class StreamSampler:
    """DataLoader batch sampler: this rank's batches from stream position `start` on, one per step."""

    def __init__(self, order: GlobalOrder, start: int, with_epoch: bool = False) -> None:
        self.order, self.start, self.with_epoch = order, int(start), with_epoch

    def __iter__(self) -> Iterator[list]:
        g = self.start
        while True:
            pairs = self.order.batch_at(g)
            yield pairs if self.with_epoch else [i for i, _ in pairs]
            g += self.order.span


# --- agreeing on state --------------------------------------------------------------------------------
def from_main(value: Any) -> Any:
    """Rank 0's `value` on every rank (e.g. which checkpoint to resume: all ranks must load the same)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_to_main(value: Any) -> list | None:
    """Every rank's `value`, in rank order, on rank 0 (None elsewhere). Over the wire only: what
    rank 0 then writes is JSON and safetensors."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [value]
    out = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(value, out, dst=0)
    return out


def max_over_ranks(*values: int) -> tuple[int, ...]:
    """Element-wise max of small ints over ranks: decisions every rank must take together (stop,
    and with which signal; save now)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tuple(int(v) for v in values)
    t = torch.tensor([int(v) for v in values], dtype=torch.int64, device=_collective_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return tuple(int(v) for v in t.tolist())


def mean_over_ranks(values: dict[str, float]) -> dict[str, float]:
    """Each named scalar averaged over ranks (every rank passes the same names: the logged losses)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return dict(values)
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=_collective_device())
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return dict(zip(keys, (t / dist.get_world_size()).tolist()))


def _collective_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def derived_seed(seed: int, rank: int, step: int) -> int:
    """The random streams of `rank` when they were not saved for this world size: a function of
    (seed, rank, step), so a resume on another world size is still deterministic."""
    return seed + 7919 * rank + 104729 * step


def after_step(nets: Iterable[nn.Module]) -> None:
    """Buffers (BatchNorm running statistics) from rank 0 after every step, as DDP's
    ``broadcast_buffers`` does."""
    broadcast_tensors([b for net in nets for b in net.buffers()])


# --- SyncBatchNorm ------------------------------------------------------------------------------------
class _SumOverRanks(torch.autograd.Function):
    """all_reduce(SUM) with its gradient: the gradient of a sum over ranks is the sum over ranks of
    the gradients (torch.distributed.nn.functional.all_reduce, which is deprecated, did the same)."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        out = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return _SumOverRanks.apply(grad)


def sum_over_ranks(tensor: torch.Tensor) -> torch.Tensor:
    return _SumOverRanks.apply(tensor)


class SyncBatchNorm(_BatchNorm):
    """BatchNorm whose training statistics are those of the global batch (all ranks).

    Two differentiable all-reduces per call: the per-channel sum and count give the global mean,
    then the sum of squared deviations from it gives the global (biased) variance, exactly what one
    process would compute over the concatenated batch. Their backward all-reduces the gradients of
    those statistics, so each rank's input gradient includes the other ranks' losses, as with
    torch's SyncBatchNorm under DDP. Written on torch.distributed's all_reduce (with its gradient) rather
    than torch's SyncBatchNorm because that one runs only on GPUs, and our tests and CPU users run
    gloo. Evaluation mode, and a single process, is plain BatchNorm.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2-D input (N x C x ...), got {input.dim()}-D")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(input)
        if not (self.training and dist.is_available() and dist.is_initialized()
                and dist.get_world_size() > 1):
            return super().forward(input)
        dims = [0, *range(2, input.dim())]
        shape = [1, -1] + [1] * (input.dim() - 2)
        x = input.float()
        count = x.new_tensor([x.numel() // x.shape[1]], dtype=torch.float64)
        # per-channel sums are tiny: float64 on the wire keeps counts and sums exact enough
        total = sum_over_ranks(torch.cat([x.sum(dims).double(), count]))
        n = total[-1]  # >= world size >= 2, so the unbiased variance below is defined
        mean = (total[:-1] / n).float()
        centred = x - mean.view(shape)
        var = (sum_over_ranks((centred * centred).sum(dims).double()) / n).float()
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                f = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                unbiased = var * (n / (n - 1)).float()
                self.running_mean.mul_(1 - f).add_(mean.to(self.running_mean.dtype), alpha=f)
                self.running_var.mul_(1 - f).add_(unbiased.to(self.running_var.dtype), alpha=f)
        return y.to(input.dtype)


def convert_sync_batchnorm(module: nn.Module) -> tuple[nn.Module, int]:
    """Every BatchNorm layer of `module` replaced by SyncBatchNorm sharing its parameters and
    buffers (optimizers built on the old layers keep working; state_dict keys are unchanged).
    Returns (module, number of layers converted)."""
    if isinstance(module, _BatchNorm) and not isinstance(module, (SyncBatchNorm, nn.SyncBatchNorm)):
        new = SyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                            module.track_running_stats)
        if module.affine:
            new.weight, new.bias = module.weight, module.bias
        if module.track_running_stats:
            new.running_mean, new.running_var = module.running_mean, module.running_var
            new.num_batches_tracked = module.num_batches_tracked
        new.train(module.training)
        return new, 1
    converted = 0
    for name, child in list(module.named_children()):
        new, k = convert_sync_batchnorm(child)
        if new is not child:
            setattr(module, name, new)
        converted += k
    return module, converted


# --- benchmark ------------------------------------------------------------------------------------------
def register(registry) -> None:
    from genfw.core import distributed_bench

    registry.benchmark("ddp", distributed_bench.ddp_benchmark,
                       help="1 vs 2 processes on the same global batch; share of step time in collectives")
