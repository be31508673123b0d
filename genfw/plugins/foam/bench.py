"""`genfw bench foam`: single-pass completion with the paper's networks (tables 3-5).

At 256, 512 and 1024 px the generator is the paper preset's for that size (the 1024 px network
without its top levels), conditioned on a landmark map, with a centred hole of half the side (the
paper's timing: a 512 x 512 hole in a 1024 px image). Once grown, inference is the final stage
alone (alpha = 1), which is what is timed: fp32 and bf16 autocast take turns call by call, and each
is stated as a fraction of the machine's 3x3-conv probe in the same dtype. FLOPs are counted on the
meta device (torch's formulas), so counting costs nothing. The paper reports 0.54 s per 1024 px
image on a Titan Xp; that number is quoted beside ours, not compared (other hardware).
"""
from __future__ import annotations

import statistics

import torch

from genfw.core.bench import bf16_supported, count_flops, probe_name, probe_works, rotation, take_turns
from genfw.plugins.foam.networks import FOAMGenerator, GeneratorConfig

PAPER_SECONDS_1024 = 0.54   # Titan Xp, 1024 x 1024 with a 512 x 512 hole (paper, section 4)


def paper_generator(size: int, base_at_1024: int = 32, cap: int = 512) -> GeneratorConfig:
    return GeneratorConfig(image_size=size, base_channels=max(1, base_at_1024 * 1024 // size), max_channels=cap,
                           latent_channels=cap, landmark_channels=1)


def _inputs(size: int, device, batch: int = 1):
    g = torch.Generator().manual_seed(0)
    obs = torch.rand(batch, 3, size, size, generator=g) * 2 - 1
    mask = torch.zeros(batch, 1, size, size)
    mask[..., size // 4: 3 * size // 4, size // 4: 3 * size // 4] = 1
    lmap = (torch.rand(batch, 1, size, size, generator=g) > 0.95).float()
    fmt = torch.channels_last
    return [t.to(device).contiguous(memory_format=fmt) for t in (obs, mask, lmap)]


def gflop_per_pass(cfg: GeneratorConfig) -> float:
    with torch.device("meta"):
        G = FOAMGenerator(cfg)
        obs, mask, lmap = (torch.empty(1, c, cfg.image_size, cfg.image_size) for c in (3, 1, 1))
    with torch.no_grad():
        return count_flops(lambda: G(obs, mask, lmap, stage=G.levels, alpha=1.0)) / 1e9


def completion_benchmark(machine: dict, quick: bool):
    device = torch.device("cuda" if machine.get("device_type") == "cuda" else "cpu")
    dtypes = ["fp32"] + (["bf16"] if bf16_supported(device) else [])
    sizes = (16, 32) if quick else (256, 512, 1024)
    for size in sizes:
        cfg = paper_generator(size, base_at_1024=1, cap=16) if quick else paper_generator(size)
        G = FOAMGenerator(cfg).to(device).eval().to(memory_format=torch.channels_last)
        obs, mask, lmap = _inputs(size, device)
        gflop = gflop_per_pass(cfg)

        def run(dtype: str):
            def work():
                with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == "bf16"):
                    return G(obs, mask, lmap, stage=G.levels, alpha=1.0)["output"]
            return work

        if quick:  # a smoke run: one pass each, no ratios (they would be noise)
            times = take_turns({d: run(d) for d in dtypes}, warmup=0, rounds=1, device=device)
            for dtype in dtypes:
                yield {"size": size, "dtype": dtype, "widths": G.widths, "smoke": True,
                       "output_finite": bool(torch.isfinite(run(dtype)()).all()), "seconds": round(times[dtype][0], 4)}
            del G
            continue
        # the probes of each precision (channels_last, like the network) take turns with the passes,
        # so "of_conv_probe" compares the same moments; fp32 has a control copy (the noise floor)
        probes = probe_works(device, cases=[(d, True) for d in dtypes], matmul=False)
        rot = rotation({d: run(d) for d in dtypes}, warmup=1, rounds=3, probes=probes, control="fp32", device=device)
        for dtype in dtypes:
            sec = statistics.median(rot["times"][dtype])
            ceiling = rot["probe_gflops"].get(probe_name(dtype, True))
            rec = {"size": size, "dtype": dtype, "widths": G.widths, "hole": "centre, half the side",
                   "gflop": round(gflop, 2), "seconds": round(sec, 4), "gflops": round(gflop / sec, 2),
                   "probe_gflops": ceiling, "of_conv_probe": round(gflop / sec / ceiling, 3) if ceiling else None}
            if dtype == "fp32":
                rec["control"] = rot["control"]
            if size == 1024:
                rec["paper_seconds_titan_xp"] = PAPER_SECONDS_1024
            yield rec
        del G
