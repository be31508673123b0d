"""A tiny plugin for the engine tests: a deterministic toy dataset, a mask, a NaN-producing GAN."""
from __future__ import annotations

import time

import torch
from attrs import define, field

from genfw import hookimpl
from genfw.core.gan import GANAlgorithm, GANConfig

__version__ = "0.0.1"


@define(kw_only=True)
class ToyDataConfig:
    size: int = field(default=8)
    channels: int = field(default=1)
    count: int = field(default=24)
    seed: int = field(default=0)
    delay: float = field(default=0.0)  # seconds per item: lets a test kill a run mid-way
    path: str = ""                     # when set it must exist (missing-path error test)


class ToyData(torch.utils.data.Dataset):
    """Blobs whose brightness depends on the index: learnable, deterministic."""

    def __init__(self, cfg: ToyDataConfig) -> None:
        from genfw import GenfwError

        if cfg.path and not __import__("os").path.exists(cfg.path):
            raise GenfwError(f"dataset path not found: {cfg.path}")
        self.cfg = cfg
        g = torch.Generator().manual_seed(cfg.seed)
        self.images = torch.rand(cfg.count, cfg.channels, cfg.size, cfg.size, generator=g)
        self.image_size, self.channels = cfg.size, cfg.channels
        self.attribute_names = ["bright"]
        self.num_attributes = 1
        self.has_landmarks = False

    def __len__(self) -> int:
        return self.cfg.count

    def __getitem__(self, i: int) -> dict:
        if self.cfg.delay:
            time.sleep(self.cfg.delay)
        img = self.images[i]
        if torch.rand(()) < 0.5:  # augmentation through the global RNG: resume must restore it
            img = img.flip(-1)
        return {"image": img, "attributes": (img.mean() > 0.5).float().view(1), "index": i}


@define(kw_only=True)
class ToyMaskConfig:
    pass


class ToyMask:
    def __init__(self, cfg=None) -> None:
        pass

    def __call__(self, n, h, w, generator=None):
        m = torch.zeros(n, 1, h, w)
        off = torch.randint(0, h // 2, (n,), generator=generator)
        for i, o in enumerate(off.tolist()):
            m[i, :, o:o + h // 2, o:o + w // 2] = 1
        return m


@define(kw_only=True)
class NaNGANConfig(GANConfig):
    nan_at: int = field(default=3)


class NaNGAN(GANAlgorithm):
    """A GAN whose G loss turns NaN at step `nan_at` (failure-path tests)."""

    def phases(self, step):
        phases = super().phases(step)
        if step >= self.cfg.nan_at:
            g = phases[1]
            phases[1] = type(g)(g.name, g.updates, lambda s: {"loss": g.loss(s)["loss"] * float("nan")})
        return phases


class MaskGAN(GANAlgorithm):
    """Records the masks it saw (mask plumbing test)."""

    def prepare(self, batch, step):
        self.seen_mask = batch.get("mask")
        return super().prepare(batch, step)


def bench_trivial(machine, quick):
    yield {"name": "trivial", "value": 1.0, "ratio": 1.0 / max(machine.get("matmul_gflops", 1.0), 1e-9)}


@hookimpl
def register_components(registry):
    registry.register("dataset", "toy", ToyData, config=ToyDataConfig)
    registry.register("mask", "toy-mask", ToyMask, config=ToyMaskConfig)
    registry.register("algorithm", "nan-gan", NaNGAN, config=NaNGANConfig)
    registry.register("algorithm", "mask-gan", MaskGAN, config=GANConfig)
    registry.benchmark("trivial", bench_trivial)


TINY_NETS = {
    "generator": {"type": "core.dcgan-generator", "latent_dim": 8, "base_channels": 4, "max_channels": 8},
    "discriminator": {"type": "core.dcgan-discriminator", "base_channels": 4, "max_channels": 8},
}


def tiny_run(out: str, steps: int = 6, algorithm: str = "core.gan", **train) -> dict:
    """A raw run mapping for the toy data and the tiny DCGAN."""
    return {
        "seed": 3, "device": "cpu", "out": out,
        "algorithm": {"type": algorithm, **TINY_NETS},
        "data": {"type": "enginetest.toy"},
        "train": {"steps": steps, "batch_size": 4, "log_every": 1, "sample_every": 0,
                  "checkpoint_every": 2, "keep_last": 2, **train},
    }


def registry():
    """core's engine areas (losses, schedulers, gan) + this module, without loading entry points:
    the engine tests must not depend on other plugins (or other core areas) importing cleanly."""
    from genfw.core import gan, losses, schedulers
    from genfw.registry import Registrar, Registry

    reg = Registry()
    core = Registrar(reg, "core")
    for area in (losses, schedulers, gan):
        area.register(core)
    register_components(Registrar(reg, "enginetest"))
    return reg
