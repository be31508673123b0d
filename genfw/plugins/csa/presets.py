"""Run presets: the paper's and the reference code's settings at 256 px, and a CPU default at 64 px.

The paper gives no iteration count; `paper-256` trains for 1M single-image steps. The reference
trains 20 epochs at a constant LR then 100 epochs of linear decay, at batch 1 on CelebA's 162,770
training images: that is what `ref-256` encodes (steps and lr_decay_start = 20 / 120).
"""
from __future__ import annotations

from typing import Any

CELEBA_TRAIN = 162_770
_MASKS = {
    "": {"type": "core.center", "fraction": 0.5},  # the paper's 128 x 128 centre hole at 256 px
    "-irregular": {"type": "core.irregular", "ratio": [0.1, 0.5], "bins": 4},  # table 2's four bins
}


def _run(*, size: int, data: dict, mask: dict, batch: int, steps: int, algorithm: dict,
         sample_every: int, checkpoint_every: int, log_every: int) -> dict[str, Any]:
    return {
        "seed": 0,
        "algorithm": {"type": "csa.algorithm", **algorithm},
        "data": {**data, "image_size": size},
        "mask": dict(mask),
        "train": {"steps": steps, "batch_size": batch, "log_every": log_every, "sample_every": sample_every,
                  "checkpoint_every": checkpoint_every},
    }


def _paper_like(*, lambdas: tuple[float, float, float], steps: int, decay_start: float, mask: dict) -> dict:
    rec, cons, adv = lambdas
    algorithm = {
        "rough": {"type": "csa.rough"},
        "refine": {"type": "csa.refine", "csa_level": 3, "consistency_channels": 512},
        "lambda_rec": rec, "lambda_consistency": cons, "lambda_adv": adv,
        "use_feature_discriminator": True, "lr": 2e-4, "beta1": 0.5, "lr_decay_start": decay_start,
    }
    return _run(size=256, data={"type": "core.celeba", "flip": True}, mask=mask, batch=1, steps=steps,
                algorithm=algorithm, sample_every=5000, checkpoint_every=20000, log_every=100)


def _default(mask: dict) -> dict:
    # Small widths, CSA at 8x8 (1/8 of 64 px, as 32x32 is of 256 px). No VGG-16 weights ship offline, so
    # the consistency loss and the feature discriminator are off here (logged at setup), rather than
    # silently training against a random VGG.
    algorithm = {
        "rough": {"type": "csa.rough", "base_channels": 16, "max_channels": 128},
        "refine": {"type": "csa.refine", "base_channels": 16, "max_channels": 128, "csa_level": 3,
                   "consistency_channels": 0},
        "patch_discriminator": {"type": "csa.patch-discriminator", "base_channels": 32},
        "lambda_rec": 1.0, "lambda_consistency": 0.0, "lambda_adv": 0.002,
        "use_feature_discriminator": False, "lr": 2e-4, "beta1": 0.5,
    }
    return _run(size=64, data={"type": "core.photo-crops", "flip": True}, mask=mask, batch=8, steps=600,
                algorithm=algorithm, sample_every=200, checkpoint_every=300, log_every=20)


def presets() -> dict[str, tuple[dict, str]]:
    out: dict[str, tuple[dict, str]] = {}
    for suffix, mask in _MASKS.items():
        kind = "irregular masks in 4 hole-ratio bins" if suffix else "128x128 centre hole"
        out[f"paper-256{suffix}"] = (
            _paper_like(lambdas=(1.0, 0.01, 0.002), steps=1_000_000, decay_start=1.0, mask=mask),
            f"paper: CelebA 256 px, {kind}, lambdas 1 / 0.01 / 0.002, Adam 2e-4 (0.5), batch 1, flips")
        out[f"ref-256{suffix}"] = (
            _paper_like(lambdas=(100.0, 1.0, 0.2), steps=120 * CELEBA_TRAIN, decay_start=20 / 120, mask=mask),
            f"reference code: CelebA 256 px, {kind}, lambdas 100 / 1 / 0.2, 20 epochs constant LR "
            "then 100 of linear decay")
    out["default"] = (_default({"type": "core.center", "fraction": 0.5}),
                      "CPU: photo-crops 64 px, centre hole, small widths, CSA at 8x8, no VGG terms")
    out["default-irregular"] = (_default({"type": "core.irregular", "ratio": [0.1, 0.5]}),
                                "CPU: photo-crops 64 px, irregular holes 10-50 %, small widths, no VGG terms")
    return out
