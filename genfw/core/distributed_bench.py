"""`genfw bench ddp`: what a second process costs or gains on the same global batch.

The benchmark launches one torchrun job with 2 processes (gloo on CPU; nccl when there are at
least two GPUs; one GPU alone gives a single-process smoke run). In that job the two set-ups take
turns step by step, so a slow spell of a shared machine hits both alike:
* "ddp": both ranks run the engine's step (``run_step`` with gradient averaging, then the buffer
  broadcast and the stop/save flag all-reduce the trainer does) on half of the global batch each;
* "solo": rank 0 alone runs the same step on the whole global batch, without collectives, while
  rank 1 waits at a barrier.
Reported: median step seconds and images/s of each, their ratio, the share of the ddp steps spent
inside collectives (this includes waiting for the slower rank) with its three parts, and the time of
one all-reduce of a gradient-sized buffer after a barrier (the pure transfer). Shares are ratios of
sums over the timed rounds, not medians of per-step ratios: medians do not add, sums do, so the
parts add up to the whole.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Iterator

import torch

SIZES = {True: {"image_size": 16, "global_batch": 8, "base": 8, "warmup": 2, "rounds": 6},
         False: {"image_size": 64, "global_batch": 32, "base": 32, "warmup": 3, "rounds": 20}}


def ddp_benchmark(machine: dict, quick: bool) -> Iterator[dict]:
    device_type = machine.get("device_type", "cpu")
    gpus = torch.cuda.device_count() if device_type == "cuda" else 0
    nproc = 1 if device_type == "cuda" and gpus < 2 else 2
    total_threads = max(1, int(machine.get("threads", 1)))
    # the same cores in both set-ups: each of the two processes gets half, the solo step all
    per_proc = max(1, total_threads // nproc)
    with tempfile.TemporaryDirectory(prefix="genfw-bench-ddp-") as tmp:
        result = os.path.join(tmp, "result.json")
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
               "-m", "genfw.core.distributed_bench", "--out", result, "--device", device_type,
               "--solo-threads", str(total_threads)] + (["--quick"] if quick else [])
        env = {**os.environ, "OMP_NUM_THREADS": str(per_proc)}
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
        if not os.path.isfile(result):
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise RuntimeError(f"torchrun exited {done.returncode}: {' | '.join(tail)}")
        with open(result) as fh:  # written atomically by rank 0 once every round was timed
            rec = json.load(fh)
        if done.returncode != 0:
            # seen rarely: rank 0 aborting in gloo's teardown ("terminate called without an active
            # exception") after the result was written; the measurement itself is complete
            rec["teardown"] = f"torchrun exited {done.returncode} after the result was written"
    yield rec


# --- the torchrun worker --------------------------------------------------------------------------
def _median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else 0.0


def _build(size: int, base: int, device: torch.device):
    from genfw.core.algorithm import Context
    from genfw.core.gan import GANAlgorithm, GANConfig
    from genfw.registry import get_registry

    reg = get_registry()
    nets = {"generator": {"type": "core.dcgan-generator", "latent_dim": 64, "base_channels": base,
                          "max_channels": base * 8},
            "discriminator": {"type": "core.dcgan-discriminator", "base_channels": base, "max_channels": base * 8}}
    algo = GANAlgorithm(GANConfig(**nets))
    algo.setup(Context(registry=reg, device=device, image_size=size, channels=3))
    return algo


class _Timed:
    """Wraps a collective and adds its wall time (synchronised on CUDA) to `self.seconds`."""

    def __init__(self, fn, device: torch.device) -> None:
        self.fn, self.device, self.seconds = fn, device, 0.0

    def __call__(self, *args, **kwargs):
        from genfw.core.bench import _sync

        _sync(self.device)
        t0 = time.perf_counter()
        out = self.fn(*args, **kwargs)
        _sync(self.device)
        self.seconds += time.perf_counter() - t0
        return out


def _worker(args) -> None:
    import torch.distributed as dist

    from genfw.core import distributed as ddp
    from genfw.core.bench import _sync
    from genfw.core.step import run_step

    info = ddp.init_distributed(args.device)
    device = torch.device("cuda", info.local_rank) if args.device == "cuda" else torch.device("cpu")
    p = SIZES[args.quick]
    size, gb = p["image_size"], p["global_batch"]
    world = info.world_size
    per_rank = gb // world
    torch.manual_seed(0)
    algo = _build(size, p["base"], device)
    solo = _build(size, p["base"], device) if info.is_main else None
    if solo is not None:  # both start from the same weights
        for name, net in algo.nets.items():
            solo.nets[name].load_state_dict(net.state_dict())
    if info.enabled:
        for net in algo.nets.values():
            ddp.broadcast_module(net)
    g = torch.Generator().manual_seed(1)
    full = torch.rand(gb, 3, size, size, generator=g).to(device)
    mine = {"image": full[info.rank * per_rank:(info.rank + 1) * per_rank]}
    threads = torch.get_num_threads()
    times = {"ddp": [], "solo": [], "grads": [], "buffers": [], "flags": [], "transfer": []}
    grad_numel = sum(p_.numel() for net in algo.nets.values() for p_ in net.parameters())
    probe = torch.zeros(grad_numel, device=device)
    for turn in range(p["warmup"] + p["rounds"]):
        keep = turn >= p["warmup"]
        if info.enabled:
            sync = _Timed(ddp.average_gradients, device)
            after = _Timed(ddp.after_step, device)
            flags = _Timed(ddp.max_over_ranks, device)
            dist.barrier()
            _sync(device)
            t0 = time.perf_counter()
            run_step(algo, mine, turn, grad_sync=sync)
            after(algo.nets.values())
            flags(0, 0)
            _sync(device)
            step_s = time.perf_counter() - t0
            dist.barrier()
            t1 = time.perf_counter()
            dist.all_reduce(probe)
            _sync(device)
            transfer = time.perf_counter() - t1
            if keep:
                times["ddp"].append(step_s)
                times["grads"].append(sync.seconds)
                times["buffers"].append(after.seconds)
                times["flags"].append(flags.seconds)
                times["transfer"].append(transfer)
            dist.barrier()
        if info.is_main:
            torch.set_num_threads(args.solo_threads)
            _sync(device)
            t0 = time.perf_counter()
            run_step(solo, {"image": full}, turn)
            _sync(device)
            if keep:
                times["solo"].append(time.perf_counter() - t0)
            torch.set_num_threads(threads)
        if info.enabled:
            dist.barrier()
    total = sum(times["ddp"]) or 1.0
    part = {k: sum(times[k]) / total for k in ("grads", "buffers", "flags")}
    shares = ddp.gather_to_main(sum(part.values()))
    if info.is_main:
        solo_s = _median(times["solo"])
        rec = {"name": f"ddp-{device.type}-{dist.get_backend() if info.enabled else 'none'}",
               "processes": world, "global_batch": gb, "per_process_batch": per_rank, "image_size": size,
               "model": f"core.gan dcgan base {p['base']}", "params": grad_numel, "rounds": p["rounds"],
               "threads_per_process": threads, "solo_threads": args.solo_threads,
               "solo_step_s": round(solo_s, 5), "solo_images_per_s": round(gb / solo_s, 2) if solo_s else 0.0}
        if info.enabled:
            ddp_s = _median(times["ddp"])
            rec.update({"ddp_step_s": round(ddp_s, 5), "ddp_images_per_s": round(gb / ddp_s, 2),
                        "speedup_ddp_over_solo": round(solo_s / ddp_s, 3),
                        "collective_share": round(shares[0], 4),
                        "collective_share_max_rank": round(max(shares), 4),
                        "grad_average_share": round(part["grads"], 4),
                        "buffer_broadcast_share": round(part["buffers"], 4),
                        "flag_share": round(part["flags"], 4),
                        "allreduce_grad_buffer_s": round(_median(times["transfer"]), 6),
                        "allreduce_share": round(_median(times["transfer"]) / ddp_s, 4)})
        else:
            rec["note"] = "one process (a single GPU): smoke run, no collectives measured"
        with open(args.out + ".tmp", "w") as fh:
            json.dump(rec, fh)
        os.replace(args.out + ".tmp", args.out)
    ddp.shutdown(info)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--solo-threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true")
    _worker(ap.parse_args(argv))


if __name__ == "__main__":
    main()
