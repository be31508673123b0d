"""Run presets: the paper's CelebA-HQ settings at 1024 / 512 (attributes) / 256 / 128 px, and a CPU default.

Stage lengths are the paper's, in images: 600k at 4x4, then per level 300k growing (150k for 512 and
1024 px) and 430k stabilising. Batch size is not given in the paper; 8 is used. Widths keep tables
3-6's channels per resolution (32 at 1024 px, doubling per level down, capped at 512), so a 512 px
model is the 1024 px network without its top level.
"""
from __future__ import annotations

from typing import Any

FIRST, GROW, GROW_LARGE, STABILISE = 600_000, 300_000, 150_000, 430_000


def _grow(size: int) -> list[int]:
    levels = size.bit_length() - 2
    return [GROW_LARGE if 4 * 2 ** (lvl - 1) >= 512 else GROW for lvl in range(2, levels + 1)]


def _total_images(size: int, first: int, grow: list[int], stabilise: int) -> int:
    return first + sum(grow) + stabilise * len(grow)


def _paper(size: int, attributes: list[str], batch: int = 8) -> dict[str, Any]:
    base = 32 * 1024 // size
    grow = _grow(size)
    conditional = bool(attributes)
    data: dict[str, Any] = {"type": "core.celeba-hq", "image_size": size, "flip": True}
    if attributes:
        data.update({"attribute_file": "CelebAMask-HQ-attribute-anno.txt", "attributes": list(attributes)})
    algorithm = {
        "type": "foam.algorithm",
        "generator": {"type": "foam.generator", "base_channels": base, "max_channels": 512,
                      "latent_channels": 512, "skip": "residual" if conditional else "concat"},
        "discriminator": {"type": "foam.discriminator", "base_channels": base, "max_channels": 512},
        "landmarks": {"type": "foam.sketch", "width": 0.75, "relative": True},
        "use_landmarks": True, "use_attributes": conditional,
        "lambda_adv": 1.0, "lambda_attr": 2.0, "lambda_rec": 500.0, "lambda_feat": 8.0, "lambda_bdy": 5000.0,
        "kappa": 0.7, "use_feature_loss": True, "lr": 1e-4,
        "first_images": FIRST, "grow_images": grow, "stabilise_images": STABILISE,
        "pool_size": 50, "pool_fraction": 0.5,
    }
    steps = _total_images(size, FIRST, grow, STABILISE) // batch
    return {"seed": 0, "algorithm": algorithm, "data": data,
            "mask": {"type": "core.random-rect", "area": [0.05, 0.25]},
            "train": {"steps": steps, "batch_size": batch, "log_every": 100, "sample_every": 5000,
                      "checkpoint_every": 20000}}


def default() -> dict[str, Any]:
    # CPU: synthetic faces with exact landmarks, grown 4 -> 32 px with short stages; no VGG weights
    # ship offline, so the feature loss is off (logged at setup)
    first, grow, stabilise, batch = 2000, [2000], 2000, 8
    algorithm = {
        "type": "foam.algorithm",
        "generator": {"type": "foam.generator", "base_channels": 8, "max_channels": 32, "latent_channels": 64},
        "discriminator": {"type": "foam.discriminator", "base_channels": 8, "max_channels": 32},
        "landmarks": {"type": "foam.sketch"},
        "use_landmarks": True, "use_attributes": True, "use_feature_loss": False, "lr": 1e-3,
        "first_images": first, "grow_images": grow, "stabilise_images": stabilise, "pool_size": 32,
    }
    steps = (first + 3 * (grow[0] + stabilise)) // batch
    return {"seed": 0, "algorithm": algorithm,
            "data": {"type": "core.synthetic-faces", "image_size": 32, "length": 512},
            "mask": {"type": "core.random-rect", "area": [0.05, 0.25]},
            "train": {"steps": steps, "batch_size": batch, "log_every": 20, "sample_every": 200,
                      "checkpoint_every": 300}}


PRESETS: dict[str, tuple[dict, str]] = {
    "paper-1024": (_paper(1024, []), "paper: CelebA-HQ 1024 px, random rectangles, landmarks, 600k/300k(150k)/430k"),
    "paper-512-attributes": (_paper(512, ["Male", "Smiling"]),
                             "paper: CelebA-HQ 512 px conditioned on Male, Smiling (residual skips)"),
    "paper-256": (_paper(256, []), "paper: CelebA-HQ 256 px, random rectangles, landmarks"),
    "paper-128": (_paper(128, []), "paper: CelebA-HQ 128 px, random rectangles, landmarks"),
    "default": (default(), "CPU: synthetic faces grown 4 -> 32 px, random rectangles, no VGG feature loss"),
}
