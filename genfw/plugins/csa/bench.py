"""`genfw bench csa.layer`: the CSA layer against a reference-style baseline, side by side.

512 channels at 32x32 (the paper's CSA level at 256 px), a 16x16 hole (25 %) per sample, shifted
per sample so the batch really has different masks; batch 1 and 8; forward alone, then forward +
backward. The baseline is `csa_reference_style` in benchmarks/csa_baseline.py: the public
reference's computation done its way (search as a convolution with the known patches as filters,
then the raster recurrence and the attention-matrix recombination), with plain autograd for the
backward. genfw's layer, the baseline, a control copy of genfw's layer and the fp32 matmul probe
take turns call by call; rows report medians and ranges of the per-round ratios. The baseline
lives outside the package, so an installed genfw without the source tree reports genfw alone.
Quick mode checks only that both give the same outputs and gradients on a small case.
"""
from __future__ import annotations

import importlib.util
import statistics
from pathlib import Path

import torch

from genfw.core.bench import probe_works, ratio_stats, rotation
from genfw.plugins.csa import recurrence
from genfw.plugins.csa.layer import coherent_attention


def _baseline():
    path = Path(__file__).resolve().parents[3] / "benchmarks" / "csa_baseline.py"
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location("genfw_csa_baseline", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.csa_reference_style


def bench_inputs(batch: int, channels: int = 512, size: int = 32, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, channels, size, size, generator=g).relu_()  # post-ReLU features
    mask = torch.zeros(batch, 1, size, size)
    side = size // 2
    for i in range(batch):
        top, left = size // 4 + (i % 3) - 1, size // 4 + (i // 3 % 3) - 1
        mask[i, :, top:top + side, left:left + side] = 1
    return x, mask


def _forward(fn, x, mask):
    def run():
        with torch.no_grad():
            return fn(x, mask)
    return run


def _fwd_bwd(fn, x, mask, grad):
    def run():
        xx = x.detach().requires_grad_()
        out = fn(xx, mask)
        out.backward(grad)
        return out.detach(), xx.grad
    return run


def _agreement(baseline, x, mask) -> dict:
    grad = torch.randn_like(x)
    out_f, g_f = _fwd_bwd(coherent_attention, x, mask, grad)()
    out_b, g_b = _fwd_bwd(baseline, x, mask, grad)()
    return {"max_abs_diff_out": float((out_f - out_b).abs().max()),
            "max_abs_diff_grad": float((g_f - g_b).abs().max())}


def csa_layer_benchmark(machine: dict, quick: bool):
    baseline = _baseline()
    kernel = recurrence.kernel() is not None
    if quick:
        x, mask = bench_inputs(2, channels=32, size=12)
        row = {"bench": "csa.layer", "smoke": True, "c_kernel": kernel}
        if baseline is not None:
            row.update(_agreement(baseline, x, mask))
        else:
            _fwd_bwd(coherent_attention, x, mask, torch.randn_like(x))()
        yield row
        return
    probes = probe_works("cpu", precisions=(), layouts=())  # the fp32 matmul probe: the search is a matmul
    for batch in (1, 8):
        x, mask = bench_inputs(batch)
        holes = int(mask.flatten(1).sum(1).max())
        known = x.shape[-1] * x.shape[-2] - holes
        search_flops = 2 * batch * holes * known * x.shape[1]
        rounds = 20 if batch == 1 else 6  # a batch-1 round is ~0.1 s: more rounds, a steadier median
        for mode in ("forward", "forward+backward"):
            grad = torch.randn_like(x)
            make = _forward if mode == "forward" else (lambda fn, x, m: _fwd_bwd(fn, x, m, grad))
            works = {"genfw": make(coherent_attention, x, mask)}
            if baseline is not None:
                works["reference-style"] = make(baseline, x, mask)
            recurrence.search_counts.clear()
            res = rotation(works, warmup=1, rounds=rounds, probes=probes, control="genfw")
            t = res["times"]
            row = {"bench": "csa.layer", "mode": mode, "batch": batch, "channels": x.shape[1], "size": x.shape[-1],
                   "holes_per_sample": holes, "threads": torch.get_num_threads(), "c_kernel": kernel,
                   "rounds": rounds, "genfw_ms": round(statistics.median(t["genfw"]) * 1e3, 3),
                   "control_genfw_vs_genfw": res["control"],
                   # which search genfw's calls ran (per sample), and the probe that chose it
                   "search_ran": dict(recurrence.search_counts),
                   "bf16_product_probe": round(recurrence.product_speedup(), 2)}
            if baseline is not None:
                row["reference_style_ms"] = round(statistics.median(t["reference-style"]) * 1e3, 3)
                row["speedup"] = ratio_stats(t["reference-style"], t["genfw"])
            if mode == "forward":
                matmul = res["probe_gflops"]["matmul:fp32"]
                # the search alone at the matmul probe's speed, as a share of the whole layer's time
                row["search_share_at_probe_speed"] = round(search_flops / (matmul * 1e9) / statistics.median(t["genfw"]), 3)
                row["matmul_probe_gflops"] = matmul
            yield row
    if baseline is not None:
        yield {"bench": "csa.layer", "check": "outputs", **_agreement(baseline, *bench_inputs(2))}
