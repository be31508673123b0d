"""`genfw bench lis.generator-overhead`: what K = 3 LIS modules add to a generator forward."""
from __future__ import annotations

import statistics
import time
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F

from genfw.core.bench import ratio_stats, rotation
from genfw.core.nn import drain_aux_losses
from genfw.plugins.lis.module import LISGenerator, LISStack
from genfw.plugins.lis.networks import RefGenerator


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(fns: dict[str, Callable[[], Any]], device: torch.device, warmup: int,
                iters: int) -> dict[str, float]:
    """Median seconds per call, the candidates alternating each round so drift hits all alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    _sync(device)
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(iters):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - t0)
    out = {k: statistics.median(v) for k, v in times.items()}
    if len(fns) == 2:  # median of per-round ratios: the pair shares each round's machine load
        a, b = list(times.values())
        out["paired_ratio"] = statistics.median(y / x for x, y in zip(a, b))
    return out


def _naive_stack(stack: LISStack, z: torch.Tensor) -> torch.Tensor:
    """The paper's formula taken literally: y = x W^T divided by W's row norms, TPReLU as written."""
    for blk in stack.blocks:
        a, b = blk.act.weight.clamp(0, 1), blk.act.threshold
        h = F.linear(z, blk.fc1.weight) / torch.sqrt(blk.fc1.weight.pow(2).sum(1) + 1e-6)
        h = F.prelu(h - b, a) + b
        z = z + F.linear(h, blk.fc2.weight) / torch.sqrt(blk.fc2.weight.pow(2).sum(1) + 1e-6)
    return z


def generator_overhead(machine: dict, quick: bool = False) -> Iterator[dict]:
    """Reference 80 px generator, batch 32: forward with K = 3 LIS modules vs without (K = 0)."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    size, batch, d, k = 80, 32, 256, 3
    torch.manual_seed(0)
    base = RefGenerator(size, d, 64, 3).to(device)
    lis = LISGenerator(base, LISStack(d, k)).to(device)
    k0 = LISGenerator(base, LISStack(d, 0)).to(device)
    z = torch.randn(batch, d, device=device)
    warmup, iters = (3, 20) if device.type != "cuda" else (10, 50)

    for mode in ("eval", "train"):
        for m in (base, lis, k0):
            m.train(mode == "train")
        if mode == "eval":
            ctx: Callable[[], Any] = torch.no_grad
            fns = {"k0": lambda: k0(z), "k3": lambda: lis(z)}
        else:
            ctx = torch.enable_grad
            # training forward+backward with all K modules forced, so both sides do fixed work
            # (the similarity loss is drained as the engine would, so pending graphs never pile up)
            def k3_step():
                out = lis(z, lis_steps=k).mean()
                for _, aux in drain_aux_losses(lis):
                    out = out + aux
                out.backward()

            fns = {"k0": lambda: k0(z).mean().backward(), "k3": k3_step}
        if quick:  # a smoke run: both variants and the naive stack run and agree; no times
            with ctx():
                for fn in fns.values():
                    fn()
            with torch.no_grad():
                stack = lis.lis.eval()
                agree = float((stack(z) - _naive_stack(stack, z)).abs().max())
            if mode == "train":
                for m in (lis, k0):
                    m.zero_grad(set_to_none=True)
            yield {"name": "lis.generator-overhead", "mode": mode, "smoke": True, "stack_vs_naive_max_abs_diff": agree}
            continue
        with ctx():
            res = rotation(fns, warmup, iters, control="k0", device=device)
        t = {k: statistics.median(v) for k, v in res["times"].items()}
        extra = ratio_stats(res["times"]["k3"], res["times"]["k0"])
        if mode == "train":
            for m in (lis, k0):
                m.zero_grad(set_to_none=True)
        with torch.no_grad():
            stack = lis.lis.eval()
            s = interleaved({"stack": lambda: stack(z), "naive": lambda: _naive_stack(stack, z)}, device,
                            warmup, iters * 4)
        row = {
            "name": "lis.generator-overhead", "mode": f"{mode} ({'forward' if mode == 'eval' else 'forward+backward'})",
            "device": str(device), "image_size": size, "batch": batch, "latent_dim": d, "k": k,
            "k0_ms": round(t["k0"] * 1e3, 3), "k3_ms": round(t["k3"] * 1e3, 3),
            # per-round ratios k3 / k0 as % extra: median and range; the control row is k0 against a
            # copy of itself in the same rotation, the noise floor of that percentage
            "extra_pct": round((extra["median"] - 1) * 100, 2),
            "extra_pct_range": [round((extra["min"] - 1) * 100, 2), round((extra["max"] - 1) * 100, 2)],
            "control_pct": round((res["control"]["median"] - 1) * 100, 2),
            "control_pct_range": [round((res["control"]["min"] - 1) * 100, 2), round((res["control"]["max"] - 1) * 100, 2)],
            "target_pct": 2.0,
            "extra_pct_of_medians": round((t["k3"] / t["k0"] - 1) * 100, 2),
            "stack_ms": round(s["stack"] * 1e3, 4), "naive_stack_ms": round(s["naive"] * 1e3, 4),
            "stack_vs_naive": round(s["naive"] / s["stack"], 2),
            "stack_share_pct": round(s["stack"] / t["k0"] * 100, 3),  # the stack's own forward vs G's
        }
        lis_flops = k * 2 * 2 * batch * d * d
        row["lis_flops_M"] = round(lis_flops / 1e6, 2)
        if machine.get("matmul_gflops"):
            row["lis_matmul_bound_ms"] = round(lis_flops / (machine["matmul_gflops"] * 1e9) * 1e3, 4)
        yield row


def register(registry) -> None:
    registry.benchmark("generator-overhead", generator_overhead)
