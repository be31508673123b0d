"""Run presets: the paper's and the reference scripts' settings, and a CPU default on lfw-subset.

The published margins were tuned with the reference code's L_AE (no 1/2 factor), so every
published preset uses ae_scale = 1.0; the loss component's own default stays the paper's 0.5.
The paper gives no iteration counts; `steps` below follow its training times (table 1) loosely.
"""
from __future__ import annotations

from typing import Any

# Channel lists of the sheet (image_size = 4 * 2^len(channels)).
CH_1024 = [16, 32, 64, 128, 256, 512, 512, 512]
CH_256 = [32, 64, 128, 256, 512, 512]
CH_128 = [64, 128, 256, 512, 512]


def _run(*, size: int, channels: list[int], z: int, m: float, alpha_e: float, alpha_g: float, beta: float,
         batch: int, data: str, steps: int, ae_scale: float = 1.0, warmup: int = 0, warmup_beta: float = 0.0,
         data_channels: int = 3, sample_every: int = 1000, checkpoint_every: int = 5000,
         log_every: int = 50, precision: str = "fp32") -> dict[str, Any]:
    net = {"channels": list(channels), "z_dim": z}
    return {
        "seed": 0,
        "algorithm": {
            "type": "introvae.algorithm",
            "encoder": {"type": "introvae.encoder", **net},
            "decoder": {"type": "introvae.decoder", **net},
            "loss": {"type": "introvae.loss", "margin": m, "alpha_e": alpha_e, "alpha_g": alpha_g,
                     "beta": beta, "ae_scale": ae_scale, "hinge": "batch"},
            "lr": 2e-4, "adam_beta1": 0.9, "adam_beta2": 0.999,
            "vae_warmup_steps": warmup, "vae_warmup_beta": warmup_beta,
        },
        "data": {"type": data, "image_size": size, "channels": data_channels},
        "train": {"steps": steps, "batch_size": batch, "log_every": log_every, "sample_every": sample_every,
                  "checkpoint_every": checkpoint_every, "precision": precision},
    }


# CelebA-HQ has 30,000 images: 4 warm-up epochs at batch 12 are 10,000 steps.
_REF_1024_WARMUP = 4 * 30000 // 12

PRESETS: dict[str, tuple[dict, str]] = {
    "paper-1024": (_run(size=1024, channels=CH_1024, z=512, m=90.0, alpha_e=0.25, alpha_g=0.25, beta=0.0025,
                        batch=8, data="core.celeba-hq", steps=500_000),
                   "paper, CelebA-HQ 1024 px: z 512, m 90, alpha 0.25, beta 0.0025, batch 8"),
    "paper-128": (_run(size=128, channels=CH_128, z=512, m=120.0, alpha_e=0.25, alpha_g=0.25, beta=0.05,
                       batch=64, data="core.celeba", steps=100_000),
                  "paper, CelebA 128 px: z 512, m 120, alpha 0.25, beta 0.05, batch 64"),
    "paper-128b": (_run(size=128, channels=CH_128, z=256, m=110.0, alpha_e=0.25, alpha_g=0.25, beta=0.5,
                        batch=64, data="core.celeba", steps=100_000),
                   "paper, CelebA 128 px, second setting: z 256, m 110, alpha 0.25, beta 0.5, batch 64"),
    "ref-256": (_run(size=256, channels=CH_256, z=512, m=120.0, alpha_e=0.25, alpha_g=0.5, beta=0.05,
                     batch=16, data="core.celeba-hq", steps=200_000),
                "reference run_256.sh, CelebA-HQ 256 px: m 120, alpha_E 0.25 / alpha_G 0.5, beta 0.05, batch 16"),
    "ref-1024": (_run(size=1024, channels=CH_1024, z=512, m=500.0, alpha_e=0.5, alpha_g=0.5, beta=0.01,
                      batch=12, data="core.celeba-hq", steps=500_000, warmup=_REF_1024_WARMUP, warmup_beta=1.0),
                 "reference run_1024.sh, CelebA-HQ 1024 px: m 500, alpha 0.5 / 0.5, beta 0.01, batch 12, "
                 "4 VAE warm-up epochs"),
    # CPU default: 32 px grey LFW faces (shipped with scikit-image). A plain VAE with the same beta
    # reaches KL ~15 here; m = 30 keeps KL(real) clearly below the margin (docs/plugins/introvae.md).
    "default": (_run(size=32, channels=[16, 32, 64], z=64, m=30.0, alpha_e=0.25, alpha_g=0.25, beta=2.0,
                     ae_scale=1.0, batch=32, data="core.lfw-subset", data_channels=1, steps=1000,
                     sample_every=250, checkpoint_every=500, log_every=20),
                "CPU demo: lfw-subset 32 px grey, z 64, m 30, beta 2, 1000 steps (a few minutes on 2 cores)"),
}
