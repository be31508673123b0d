"""`introvae.train-step` benchmark: one full IntroVAE step (2 phases, 5 encoder passes).

Reports images/s per (size, batch, precision, channels_last), the step's FLOPs counted with
torch.utils.flop_counter, the fraction of the machine's measured conv fwd+bwd throughput, the
bf16/fp32 speed ratio, and L_AE after a short training run in fp32 vs bf16.
"""
from __future__ import annotations

import copy
import itertools
import statistics
from typing import Any, Iterator

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from genfw import Context
from genfw.core.bench import bf16_supported, take_turns
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


def throughput(registry, device: torch.device, machine: dict, quick: bool) -> Iterator[dict[str, Any]]:
    # quick: a 32 px smoke run of the same code path (the numbers mean little)
    cases = [(32, 4, [16, 32, 64])] if quick else [(128, 4, CH_128), (256, 2, CH_256)]
    precisions = ["fp32", "bf16"] if bf16_supported(device) else ["fp32"]
    steps, warmup = (2, 1) if quick else ((20, 3) if device.type == "cuda" else (8, 2))
    conv = float(machine.get("conv_gflops") or 0.0)
    for size, batch_size, channels in cases:
        for channels_last in (False, True):
            runs, flops = {}, {}
            for precision in precisions:
                torch.manual_seed(0)
                algo = _build(registry, device, size, channels, 3, 512, beta=0.05, margin=120.0)
                x = _to_memory_format(algo, _images(size, batch_size, 3, device), channels_last)
                flops[precision] = step_flops(algo, {"image": x}, precision)
                runs[precision] = (lambda a=algo, b={"image": x}, p=precision, n=itertools.count():
                                   run_step(a, b, next(n), precision=p))
            times = take_turns(runs, warmup, steps, device)
            for precision in precisions:
                sec = statistics.median(times[precision])
                gflops = flops[precision] / sec / 1e9
                row = {"bench": "introvae.train-step", "image_size": size, "batch": batch_size,
                       "precision": precision, "channels_last": channels_last, "steps": steps,
                       "step_s": round(sec, 4), "best_step_s": round(min(times[precision]), 4),
                       "images_per_s": round(batch_size / sec, 3),
                       "step_gflop": round(flops[precision] / 1e9, 3), "achieved_gflops": round(gflops, 2),
                       "fraction_of_conv": round(gflops / conv, 3) if conv else None}
                if precision != "fp32":
                    # side by side: the median over step pairs of fp32 time / bf16 time, and the
                    # ratio of each precision's fastest step (the least disturbed measurement)
                    pairs = [a / b for a, b in zip(times["fp32"], times[precision])]
                    row["bf16_over_fp32_speed"] = round(statistics.median(pairs), 3)
                    row["bf16_over_fp32_best"] = round(min(times["fp32"]) / min(times[precision]), 3)
                yield row


def loss_agreement(registry, device: torch.device, quick: bool) -> Iterator[dict[str, Any]]:
    """L_AE after N steps of the same run in fp32 and bf16 (same seed, same batches)."""
    if not bf16_supported(device):
        return
    steps = 20 if quick else 100
    size, batch_size, channels = 32, 16, [32, 64, 128]
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


def conv_layers(registry, device: torch.device, quick: bool) -> Iterator[dict[str, Any]]:
    """Forward + backward of each of the nets' convolutions alone, fp32 vs bf16 (channels_last),
    the two precisions taking turns; each layer's fastest round counts. Their summed ratio is what
    bf16 can give the step's convolutions on this hardware: the ceiling for the whole step's ratio."""
    if not bf16_supported(device):
        return
    cases = [(32, 4, [16, 32, 64])] if quick else [(128, 4, CH_128), (256, 2, CH_256)]
    rounds = 2 if quick else 5
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
        yield {"bench": "introvae.conv-layers", "image_size": size, "batch": batch_size, "layers": len(ratios),
               "conv_fp32_s": round(total["fp32"], 4), "conv_bf16_s": round(total["bf16"], 4),
               "bf16_over_fp32": round(total["fp32"] / total["bf16"], 3),
               "layer_ratio_min": round(min(ratios), 3), "layer_ratio_max": round(max(ratios), 3)}


def conv_layers_benchmark(machine: dict, quick: bool = False) -> Iterator[dict[str, Any]]:
    """bf16 vs fp32 speed of the IntroVAE nets' convolutions alone: the ceiling of the step's ratio."""
    from genfw import get_registry

    yield from conv_layers(get_registry(), torch.device(machine.get("device_type") or "cpu"), quick)
