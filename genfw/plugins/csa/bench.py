"""`genfw bench csa.layer`: the CSA layer's forward + backward against the per-position baseline.

512 channels at 32x32 (the paper's CSA level at 256 px), a 16x16 hole (25 %) per sample, shifted
per sample so the batch really has different masks. The baseline is benchmarks/csa_baseline.py
(the paper's Algorithm 1, one position at a time, plain autograd); it lives outside the package, so
an installed genfw without the source tree reports the fast layer alone.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from genfw.core.bench import measure
from genfw.plugins.csa.layer import coherent_attention


def _baseline():
    path = Path(__file__).resolve().parents[3] / "benchmarks" / "csa_baseline.py"
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location("genfw_csa_baseline", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.csa_loop


def bench_inputs(batch: int, channels: int = 512, size: int = 32, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, channels, size, size, generator=g).relu_()  # post-ReLU features
    mask = torch.zeros(batch, 1, size, size)
    side = size // 2
    for i in range(batch):
        top, left = size // 4 + (i % 3) - 1, size // 4 + (i // 3 % 3) - 1
        mask[i, :, top:top + side, left:left + side] = 1
    return x, mask


def _fwd_bwd(fn, x, mask, grad):
    def run():
        xx = x.detach().requires_grad_()
        out = fn(xx, mask)
        out.backward(grad)
        return out.detach(), xx.grad
    return run


def csa_layer_benchmark(machine: dict, quick: bool):
    baseline = _baseline()
    for batch in (1, 8):
        x, mask = bench_inputs(batch)
        grad = torch.randn_like(x)
        fast = _fwd_bwd(coherent_attention, x, mask, grad)
        t_fast = measure(fast, warmup=1, iters=3 if quick else 10)
        # the search's batched matmul: holes x positions x channels, 2 FLOPs per MAC
        holes = int(mask.flatten(1).sum(1).max())
        search_gflop = 2 * batch * holes * x.shape[-1] * x.shape[-2] * x.shape[1] / 1e9
        rec = {"batch": batch, "channels": x.shape[1], "size": x.shape[-1], "holes_per_sample": holes,
               "fast_ms": round(t_fast * 1e3, 3),
               "search_share_of_matmul_peak": round(search_gflop / t_fast / machine["matmul_gflops"], 4)
               if machine.get("matmul_gflops") else None}
        if baseline is not None:
            t_base = measure(_fwd_bwd(baseline, x, mask, grad), warmup=0 if quick else 1, iters=1 if quick else 3)
            out_f, g_f = fast()
            out_b, g_b = _fwd_bwd(baseline, x, mask, grad)()
            rec.update({"baseline_ms": round(t_base * 1e3, 3), "speedup": round(t_base / t_fast, 2),
                        "max_abs_diff_out": float((out_f - out_b).abs().max()),
                        "max_abs_diff_grad": float((g_f - g_b).abs().max())})
        else:
            rec["baseline"] = "benchmarks/csa_baseline.py not found (installed without the source tree)"
        yield rec
