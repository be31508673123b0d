"""`introvae.train-step` benchmark: one full IntroVAE step (2 phases, 5 encoder passes).

Per (size, batch): every (precision, layout) variant, a control copy of the fp32 contiguous step
and the conv probes of each precision and layout take turns step by step. Rows: images/s, the
step's FLOPs (torch.utils.flop_counter), the fraction of the probe of the same precision and
layout, speed against fp32 contiguous (median and range of per-round ratios), and the control
row (the noise floor). Then L_AE after a short run in fp32 vs bf16, and where the fastest
variant's step spends its time (profiler shares). Quick mode: one smoke step per variant.
"""
from __future__ import annotations

import copy
import itertools
import math
import os
import statistics
from typing import Any, Iterator

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from genfw import Context
from genfw.core.bench import (bf16_supported, probe_name, probe_works, ratio_stats, rotation, slow_variants,
                              take_turns)
from genfw.core.step import run_step
from genfw.plugins.introvae.presets import CH_128, CH_256


def _build(registry, device: torch.device, size: int, channels: list[int], in_ch: int, z: int, beta: float,
           margin: float):
    net = {"channels": channels, "z_dim": z}
    algo = registry.build({"type": "introvae.algorithm",
                           "encoder": {"type": "introvae.encoder", **net},
                           "decoder": {"type": "introvae.decoder", **net},
                           "loss": {"type": "introvae.loss", "margin": margin, "beta": beta, "ae_scale": 1.0}},
                          kind="algorithm")
    algo.setup(Context(registry=registry, device=device, image_size=size, channels=in_ch))
    return algo


def _images(size: int, n: int, channels: int, device: torch.device, seed: int = 0) -> torch.Tensor:
    """Real faces (lfw-subset) resized, so losses behave as in training; no download needed."""
    from skimage.data import lfw_subset

    g = torch.Generator().manual_seed(seed)
    faces = torch.tensor(lfw_subset()[:100], dtype=torch.float32)[:, None]  # the 100 faces
    idx = torch.randint(0, faces.shape[0], (n,), generator=g)
    x = torch.nn.functional.interpolate(faces[idx], size=size, mode="bilinear", align_corners=False)
    return x.clamp(0, 1).expand(-1, channels, -1, -1).contiguous().to(device)


def _to_memory_format(algo, x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for net in algo.nets.values():
        net.to(memory_format=fmt)
    return x.contiguous(memory_format=fmt)


def step_flops(algo, batch: dict, precision: str = "fp32") -> int:
    """FLOPs of one full training step (forward and backward of both phases)."""
    with FlopCounterMode(display=False) as counter:
        run_step(algo, batch, step=10**9, precision=precision)
    return int(counter.get_total_flops())


def _variants(device: torch.device) -> list[tuple[str, bool]]:
    precisions = ["fp32", "bf16"] if bf16_supported(device) else ["fp32"]
    return [(p, cl) for cl in (False, True) for p in precisions]


def _name(precision: str, channels_last: bool) -> str:
    return f"{precision}:{'channels_last' if channels_last else 'contiguous'}"


def throughput(registry, device: torch.device, machine: dict, quick: bool) -> Iterator[dict[str, Any]]:
    """Every (precision, layout) variant's step, a control copy of the fp32 one and the conv
    probes of each precision and layout, all taking turns; quick: one 32 px step of each variant."""
    variants = _variants(device)
    if quick:
        for precision, cl in variants:
            torch.manual_seed(0)
            algo = _build(registry, device, 32, [16, 32, 64], 3, 64, beta=0.05, margin=120.0)
            x = _to_memory_format(algo, _images(32, 4, 3, device), cl)
            logs = run_step(algo, {"image": x}, 0, precision=precision)
            yield {"bench": "introvae.train-step", "smoke": True, "precision": precision, "channels_last": cl,
                   "losses_finite": all(math.isfinite(v) for v in logs.values())}
        return
    cases = [(128, 4, CH_128), (256, 2, CH_256)]
    steps, warmup = (20, 3) if device.type == "cuda" else (8, 2)
    slow = slow_variants(device, variants)
    for (precision, cl), why in slow.items():
        yield {"bench": "introvae.train-step", "precision": precision, "channels_last": cl, "skipped": why}
    variants = [v for v in variants if v not in slow]
    probes = probe_works(device, cases=variants, matmul=False)
    for size, batch_size, channels in cases:
        runs, flops = {}, {}
        for precision, cl in variants:
            torch.manual_seed(0)
            algo = _build(registry, device, size, channels, 3, 512, beta=0.05, margin=120.0)
            x = _to_memory_format(algo, _images(size, batch_size, 3, device), cl)
            name = _name(precision, cl)
            flops[name] = step_flops(algo, {"image": x}, precision)
            runs[name] = (lambda a=algo, b={"image": x}, p=precision, n=itertools.count():
                          run_step(a, b, next(n), precision=p))
        base = _name("fp32", False)
        res = rotation(runs, warmup, steps, probes=probes, control=base, device=device)
        times = res["times"]
        yield {"bench": "introvae.train-step", "image_size": size, "batch": batch_size, "steps": steps,
               "control": f"{base} vs itself", "ratio": res["control"], "probe_gflops": res["probe_gflops"]}
        for precision, cl in variants:
            name = _name(precision, cl)
            sec = statistics.median(times[name])
            gflops = flops[name] / sec / 1e9
            probe = res["probe_gflops"].get(probe_name(precision, cl))
            row = {"bench": "introvae.train-step", "image_size": size, "batch": batch_size,
                   "precision": precision, "channels_last": cl, "steps": steps,
                   "step_s": round(sec, 4), "step_s_range": [round(min(times[name]), 4), round(max(times[name]), 4)],
                   "images_per_s": round(batch_size / sec, 3), "step_gflop": round(flops[name] / 1e9, 3),
                   "achieved_gflops": round(gflops, 2),
                   # against the probe of the same precision and layout, measured in the same rotation
                   "fraction_of_probe": round(gflops / probe, 3) if probe else None}
            if name != base:
                row["speed_vs_fp32_contiguous"] = ratio_stats(times[base], times[name])
            yield row


def step_breakdown(registry, device: torch.device, precision: str, channels_last: bool, size: int = 128,
                   batch_size: int = 4, channels=CH_128) -> dict[str, Any]:
    """Where one training step's time goes (torch profiler, self CPU time by op family)."""
    torch.manual_seed(0)
    algo = _build(registry, device, size, channels, 3, 512, beta=0.05, margin=120.0)
    x = _to_memory_format(algo, _images(size, batch_size, 3, device), channels_last)
    for i in range(2):
        run_step(algo, {"image": x}, i, precision=precision)
    # kineto otherwise logs "gpuGetDeviceCount failed" on machines without a GPU (read at its start)
    os.environ.setdefault("KINETO_LOG_LEVEL", "5")
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        run_step(algo, {"image": x}, 2, precision=precision)
    families = {"convolution": ("conv", "mkldnn_convolution"), "batch_norm": ("batch_norm",),
                "casts and copies": ("copy_", "_to_copy", "to", "clone", "contiguous"),
                "optimizer": ("adam", "_foreach"), "matmul (fc, small-map convs)": ("addmm", "mm", "linear")}
    total, shares = 0.0, {k: 0.0 for k in families}
    for ev in prof.key_averages():
        t = ev.self_cpu_time_total
        total += t
        name = ev.key.lower()
        for fam, keys in families.items():
            if any(k in name for k in keys):
                shares[fam] += t
                break
    named = sum(shares.values())
    out = {k: round(v / total, 3) for k, v in shares.items()} if total else {}
    out["other elementwise and reductions"] = round((total - named) / total, 3) if total else None
    return {"bench": "introvae.step-breakdown", "image_size": size, "batch": batch_size, "precision": precision,
            "channels_last": channels_last, "self_cpu_share": out}


def loss_agreement(registry, device: torch.device, quick: bool) -> Iterator[dict[str, Any]]:
    """L_AE after N steps of the same run in fp32 and bf16 (same seed, same batches)."""
    if not bf16_supported(device):
        return
    if not quick:
        why = slow_variants(device, [("bf16", False)]).get(("bf16", False))
        if why:
            yield {"bench": "introvae.l_ae-fp32-vs-bf16", "skipped": why}
            return
    # quick: a smoke-sized run (it checks the comparison runs, not the 10 % tolerance's margin)
    steps, size, batch_size, channels = (10, 32, 4, [8, 16, 32]) if quick else (100, 32, 16, [32, 64, 128])
    result = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        algo = _build(registry, device, size, channels, 1, 64, beta=2.0, margin=30.0)
        data = _images(size, steps * batch_size, 1, device, seed=1)
        tail = []
        for i in range(steps):
            logs = run_step(algo, {"image": data[i * batch_size:(i + 1) * batch_size]}, i, precision=precision)
            tail.append(logs["E/l_ae"])
        result[precision] = sum(tail[-5:]) / len(tail[-5:])  # mean of the last 5 steps: less batch noise
    yield {"bench": "introvae.l_ae-fp32-vs-bf16", "steps": steps, "image_size": size, "batch": batch_size,
           "l_ae_fp32": round(result["fp32"], 3), "l_ae_bf16": round(result["bf16"], 3),
           "relative_difference": round(abs(result["bf16"] - result["fp32"]) / result["fp32"], 4)}


def train_step_benchmark(machine: dict, quick: bool = False) -> Iterator[dict[str, Any]]:
    """IntroVAE training-step throughput (128/256 px, fp32/bf16, channels_last) and bf16 loss agreement."""
    from genfw import get_registry

    registry = get_registry()
    device = torch.device(machine.get("device_type") or "cpu")
    yield from throughput(registry, device, machine, quick)
    yield from loss_agreement(registry, device, quick)
    if not quick and device.type == "cpu":
        variants = _variants(device)
        slow = slow_variants(device, variants)
        # the fastest candidate: bf16 channels_last where bf16 runs at speed, else fp32 channels_last
        for precision, cl in [v for v in variants if v not in slow][-1:]:
            yield step_breakdown(registry, device, precision, cl)


def _conv_inputs(algo, size: int, batch_size: int, device: torch.device) -> list[tuple[nn.Conv2d, tuple]]:
    """Every Conv2d of encoder and decoder with the input shape it sees in training."""
    seen: list[tuple[nn.Conv2d, tuple]] = []
    hooks = [m.register_forward_hook(lambda mod, args, out: seen.append((mod, tuple(args[0].shape))))
             for net in algo.nets.values() for m in net.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            algo.encoder(_images(size, batch_size, 3, device))
            algo.decoder(torch.randn(batch_size, algo.latent_dim, device=device), from_prior=True)
    finally:
        for h in hooks:
            h.remove()
    return seen


def conv_layers(registry, device: torch.device, quick: bool, cases=None, rounds: int | None = None,
                skip_slow: bool = True) -> Iterator[dict[str, Any]]:
    """Forward + backward of each of the nets' convolutions alone, fp32 vs bf16 (channels_last),
    the two precisions taking turns; each layer's fastest round counts. Their summed ratio is what
    bf16 can give the step's convolutions on this hardware: the ceiling for the whole step's ratio."""
    if not bf16_supported(device):
        return
    if not quick and skip_slow:
        why = slow_variants(device, [("bf16", True)]).get(("bf16", True))
        if why:
            yield {"bench": "introvae.conv-layers", "skipped": why}
            return
    cases = cases or ([(32, 4, [16, 32, 64])] if quick else [(128, 4, CH_128), (256, 2, CH_256)])
    rounds = rounds or (2 if quick else 5)
    fmt = torch.channels_last
    for size, batch_size, channels in cases:
        torch.manual_seed(0)
        algo = _build(registry, device, size, channels, 3, 512, beta=0.05, margin=120.0)
        total = {"fp32": 0.0, "bf16": 0.0}
        ratios = []
        for conv, shape in _conv_inputs(algo, size, batch_size, device):
            runs = {}
            for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
                layer = copy.deepcopy(conv).to(dtype=dtype, memory_format=fmt)
                x = torch.randn(shape, device=device, dtype=dtype).contiguous(memory_format=fmt).requires_grad_(True)
                runs[precision] = lambda layer=layer, x=x: layer(x).sum().backward()
            best = {precision: min(t) for precision, t in take_turns(runs, 1, rounds, device).items()}
            for precision in total:
                total[precision] += best[precision]
            ratios.append(best["fp32"] / best["bf16"])
        if quick:  # a smoke run: every conv ran in both precisions; its few calls time nothing
            yield {"bench": "introvae.conv-layers", "smoke": True, "image_size": size, "layers": len(ratios)}
            continue
        yield {"bench": "introvae.conv-layers", "image_size": size, "batch": batch_size, "layers": len(ratios),
               "conv_fp32_s": round(total["fp32"], 4), "conv_bf16_s": round(total["bf16"], 4),
               "bf16_over_fp32": round(total["fp32"] / total["bf16"], 3),
               "layer_ratio_min": round(min(ratios), 3), "layer_ratio_max": round(max(ratios), 3)}


def conv_layers_benchmark(machine: dict, quick: bool = False) -> Iterator[dict[str, Any]]:
    """bf16 vs fp32 speed of the IntroVAE nets' convolutions alone: the ceiling of the step's ratio."""
    from genfw import get_registry

    yield from conv_layers(get_registry(), torch.device(machine.get("device_type") or "cpu"), quick)
