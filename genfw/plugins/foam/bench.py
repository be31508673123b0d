"""`genfw bench foam`: single-pass completion with the paper's networks (tables 3-5).

At 256, 512 and 1024 px the generator is the paper preset's for that size (the 1024 px network
without its top levels), conditioned on a landmark map, with a centred hole of half the side (the
paper's timing: a 512 x 512 hole in a 1024 px image). Once grown, inference is the final stage
alone (alpha = 1), which is what is timed: fp32 and bf16 take turns call by call, and each is
stated as a fraction of the machine's 3x3-conv probe in the same dtype. bf16 is what `genfw
complete --precision bf16` runs: the network cast once (weights in bf16, channels_last) under
autocast, not fp32 weights re-cast on every call. Peak memory of one pass is measured in a fresh
process per mode (resident set sampled during the pass on CPU, the allocator's peak on CUDA), for
fp32, bf16 cast once and, for contrast, bf16 autocast over fp32 weights. FLOPs are counted on the
meta device (torch's formulas), so counting costs nothing. The paper reports 0.54 s per 1024 px
image on a Titan Xp; that number is quoted beside ours, not compared (other hardware).
"""
from __future__ import annotations

import copy
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time

import torch

from genfw.core.bench import (bf16_supported, count_flops, probe_name, probe_works, rotation, slow_variants,
                              take_turns)
from genfw.core.precision import Policy, cast_networks
from genfw.plugins.foam.networks import FOAMGenerator, GeneratorConfig

PAPER_SECONDS_1024 = 0.54   # Titan Xp, 1024 x 1024 with a 512 x 512 hole (paper, section 4)
SIZES = (256, 512, 1024)    # the full run's sizes


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
    sizes = (16, 32) if quick else SIZES
    timed = list(dtypes)
    if not quick:
        for (dtype, _), why in slow_variants(device, [(d, True) for d in dtypes]).items():
            yield {"dtype": dtype, "skipped": why}  # peak memory is still measured below
            timed.remove(dtype)
    for size in sizes:
        cfg = paper_generator(size, base_at_1024=1, cap=16) if quick else paper_generator(size)
        G = FOAMGenerator(cfg).to(device).eval().to(memory_format=torch.channels_last)
        obs, mask, lmap = _inputs(size, device)
        gflop = gflop_per_pass(cfg)

        nets = {"fp32": G}
        if "bf16" in dtypes:  # cast once, as inference does
            nets["bf16"] = copy.deepcopy(G)
            cast_networks([nets["bf16"]], Policy("bf16", True, "benchmark"))

        def run(dtype: str):
            net = nets[dtype]

            def work():
                with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == "bf16"):
                    return net(obs, mask, lmap, stage=net.levels, alpha=1.0)["output"]
            return work

        if quick:  # a smoke run: one pass each, no ratios (they would be noise)
            times = take_turns({d: run(d) for d in dtypes}, warmup=0, rounds=1, device=device)
            for dtype in dtypes:
                yield {"size": size, "dtype": dtype, "widths": G.widths, "smoke": True,
                       "output_finite": bool(torch.isfinite(run(dtype)()).all()), "seconds": round(times[dtype][0], 4)}
            del G, nets
            continue
        # the probes of each precision (channels_last, like the network) take turns with the passes,
        # so "of_conv_probe" compares the same moments; fp32 has a control copy (the noise floor)
        probes = probe_works(device, cases=[(d, True) for d in timed], matmul=False)
        rot = rotation({d: run(d) for d in timed}, warmup=1, rounds=3, probes=probes, control="fp32", device=device)
        for dtype in timed:
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
        del G, nets
        modes = ["fp32"] + (["bf16", "bf16-autocast"] if "bf16" in dtypes else [])
        yield {"size": size, "peak_memory_mb": {m: peak_memory(m, size, device) for m in modes}}


MODES = ("fp32", "bf16", "bf16-autocast")


def peak_memory(mode: str, size: int, device: torch.device) -> float:
    """Peak memory (MB) of one completion pass in a fresh process: weights and activations."""
    cmd = [sys.executable, "-m", "genfw.plugins.foam.bench", mode, str(size), str(device)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True, env={**os.environ})
    return json.loads(done.stdout.strip().splitlines()[-1])["peak_mb"]


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _measure(mode: str, size: int, device: torch.device) -> dict:
    if mode == "bf16":  # built in bf16 directly, like weights loaded into a cast model: no fp32 copy
        torch.set_default_dtype(torch.bfloat16)
    G = FOAMGenerator(paper_generator(size)).to(device).eval().to(memory_format=torch.channels_last)
    torch.set_default_dtype(torch.float32)
    obs, mask, lmap = _inputs(size, device)
    if mode == "bf16":
        cast_networks([G], Policy("bf16", True, "benchmark"))
    peak, done = [_rss_mb()], threading.Event()

    def sample():  # torch ops release the GIL, so this thread sees the pass's resident set
        while not done.is_set():
            peak.append(_rss_mb())
            time.sleep(0.002)

    watcher = threading.Thread(target=sample, daemon=True)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    else:
        watcher.start()
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=mode != "fp32"):
        G(obs, mask, lmap, stage=G.levels, alpha=1.0)
    done.set()
    if device.type == "cuda":
        return {"peak_mb": round(torch.cuda.max_memory_allocated(device) / 2**20, 1)}
    watcher.join()
    return {"peak_mb": round(max(max(peak), _rss_mb()), 1),
            "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def _main(argv: list[str]) -> int:
    usage = f"usage: python -m genfw.plugins.foam.bench {{{','.join(MODES)}}} SIZE [DEVICE]"
    if len(argv) not in (2, 3) or argv[0] not in MODES or not argv[1].isdigit() or int(argv[1]) < 4 \
            or int(argv[1]) & (int(argv[1]) - 1):
        print(f"error: {usage} (SIZE a power of two >= 4)", file=sys.stderr)
        return 2
    try:
        dev = torch.device(argv[2] if len(argv) > 2 else "cpu")
    except RuntimeError:
        print(f"error: unknown device {argv[2]!r}; {usage}", file=sys.stderr)
        return 2
    print(json.dumps(_measure(argv[0], int(argv[1]), dev)))
    return 0


if __name__ == "__main__":  # one measurement, what peak_memory runs in a fresh process
    raise SystemExit(_main(sys.argv[1:]))
