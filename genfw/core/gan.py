"""A plain GAN algorithm (`core.gan`, D phase then G phase) and small DCGAN-style networks.

They let the engine run without any paper plugin, and give plugins a base to extend: override
``build_generator`` / ``build_discriminator`` / ``d_loss`` / ``g_loss`` / ``prepare`` as needed.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from attrs import define, field, validators as v
from torch import nn

from genfw.core.algorithm import Algorithm, Context, Phase
from genfw.core.errors import ConfigError
from genfw.core.nn import to_signed, to_unit


def _size_ok(inst, attribute, value):
    k = math.log2(value / 4) if value >= 4 else -1
    if k < 0 or k != int(k):
        raise ValueError(f"{attribute.name} must be 4 * 2^k (4, 8, 16, ...), got {value}")



def _widths(image_size: int, base: int, max_channels: int) -> list[tuple[int, int]]:
    """(resolution, channels) from 4x4 up to image_size; width halves as resolution doubles."""
    out, r = [], 4
    while r <= image_size:
        out.append((r, min(max_channels, base * image_size // r)))
        r *= 2
    return out


# --- networks ------------------------------------------------------------------------------------
@define(kw_only=True)
class DCGANGeneratorConfig:
    image_size: int = field(default=64, validator=_size_ok)
    channels: int = field(default=3, validator=v.gt(0))
    latent_dim: int = field(default=128, validator=v.gt(0))
    base_channels: int = field(default=64, validator=v.gt(0))   # width at full resolution
    max_channels: int = field(default=512, validator=v.gt(0))


class DCGANGenerator(nn.Module):
    """z -> image in [-1, 1]: linear to 4x4, (ConvT 4x4 s2 + BN + ReLU) per doubling, conv3x3 + tanh."""

    def __init__(self, cfg: DCGANGeneratorConfig | None = None) -> None:
        super().__init__()
        cfg = cfg or DCGANGeneratorConfig()
        self.latent_dim = cfg.latent_dim
        widths = _widths(cfg.image_size, cfg.base_channels, cfg.max_channels)
        c0 = widths[0][1]
        self.c0 = c0
        self.project = nn.Linear(cfg.latent_dim, c0 * 16, bias=False)
        self.norm0 = nn.BatchNorm2d(c0)
        blocks = []
        for (_, cin), (_, cout) in zip(widths, widths[1:]):
            blocks += [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True)]
        self.blocks = nn.Sequential(*blocks)
        self.to_image = nn.Conv2d(widths[-1][1], cfg.channels, 3, 1, 1)

    def forward(self, z: torch.Tensor, from_prior: bool = True, **kwargs: Any) -> torch.Tensor:
        h = self.project(z).view(z.shape[0], self.c0, 4, 4)
        h = torch.relu(self.norm0(h))
        return torch.tanh(self.to_image(self.blocks(h)))


@define(kw_only=True)
class DCGANDiscriminatorConfig:
    image_size: int = field(default=64, validator=_size_ok)
    channels: int = field(default=3, validator=v.gt(0))
    base_channels: int = field(default=64, validator=v.gt(0))
    max_channels: int = field(default=512, validator=v.gt(0))


class DCGANDiscriminator(nn.Module):
    """Image in [-1, 1] -> one logit per image: (conv 4x4 s2 [+ BN] + LReLU 0.2) to 4x4, conv 4x4."""

    def __init__(self, cfg: DCGANDiscriminatorConfig | None = None) -> None:
        super().__init__()
        cfg = cfg or DCGANDiscriminatorConfig()
        self.image_size = cfg.image_size
        widths = _widths(cfg.image_size, cfg.base_channels, cfg.max_channels)[::-1]
        self.from_image = nn.Conv2d(cfg.channels, widths[0][1], 3, 1, 1)
        layers: list[nn.Module] = [nn.LeakyReLU(0.2, True)]
        for i, ((_, cin), (_, cout)) in enumerate(zip(widths, widths[1:])):
            layers.append(nn.Conv2d(cin, cout, 4, 2, 1, bias=i == 0))
            if i > 0:  # no norm right after the input layer, as in DCGAN
                layers.append(nn.BatchNorm2d(cout))
            layers.append(nn.LeakyReLU(0.2, True))
        self.body = nn.Sequential(*layers)
        self.head = nn.Conv2d(widths[-1][1], 1, 4, 1, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(self.from_image(x))).flatten(1)


# --- algorithm -----------------------------------------------------------------------------------
OPTIMIZERS = ("adam", "rmsprop")


@define(kw_only=True)
class GANConfig:
    generator: dict = field(factory=lambda: {"type": "core.dcgan-generator"})
    discriminator: dict = field(factory=lambda: {"type": "core.dcgan-discriminator"})
    loss: dict = field(factory=lambda: {"type": "core.bce"})
    optimizer: str = field(default="adam", validator=v.in_(OPTIMIZERS))
    lr_g: float = field(default=2e-4, validator=v.gt(0))
    lr_d: float = field(default=2e-4, validator=v.gt(0))
    betas: list[float] = field(factory=lambda: [0.5, 0.999])   # adam
    rms_alpha: float = field(default=0.99, validator=v.gt(0))  # rmsprop smoothing
    eps: float = field(default=1e-8, validator=v.gt(0))
    lr_schedule: dict = field(factory=dict)  # scheduler spec applied to both optimizers ({} = constant)
    latent: str = field(default="normal", validator=v.in_(("normal", "uniform")))
    image_range: str = field(default="signed", validator=v.in_(("signed", "unit")))  # G output / D input


class GANAlgorithm(Algorithm):
    """Non-conditional GAN: fake = G(z) once per step; phase D on (real, fake.detach()), then G."""

    def __init__(self, cfg: GANConfig | None = None) -> None:
        super().__init__(cfg or GANConfig())
        self.loss_fn: Any = None

    # building; subclasses override the pieces they change
    def network_defaults(self, ctx: Context) -> dict:
        """The data's shape, offered to the networks under the names networks use for it; keys the
        user wrote in a network's table win (nested specs keep only written keys)."""
        c = ctx.channels
        return {"image_size": ctx.image_size, "channels": c, "in_channels": c, "out_channels": c}

    def build_generator(self, ctx: Context) -> nn.Module:
        return ctx.registry.build(self.cfg.generator, kind="generator", defaults=self.network_defaults(ctx),
                                  path="algorithm.generator")

    def build_discriminator(self, ctx: Context) -> nn.Module:
        return ctx.registry.build(self.cfg.discriminator, kind="discriminator",
                                  defaults=self.network_defaults(ctx), path="algorithm.discriminator")

    def build_networks(self, ctx: Context) -> dict[str, nn.Module]:
        self.loss_fn = ctx.registry.build(self.cfg.loss, kind="loss", path="algorithm.loss")
        g = self.build_generator(ctx)
        self.check_output_range(g)
        return {"G": g, "D": self.build_discriminator(ctx)}

    def check_output_range(self, g: nn.Module) -> None:
        """A generator that declares `output_range` ("signed" = [-1, 1], "unit" = [0, 1]) must match
        `image_range`: a mismatch trains against data it can never produce (grey samples)."""
        declared = getattr(g, "output_range", None)
        if declared is not None and declared != self.cfg.image_range:
            raise ConfigError(
                f"algorithm.generator ({type(g).__name__}) outputs the {declared!r} range but "
                f"algorithm.image_range is {self.cfg.image_range!r}; set algorithm.image_range = \"{declared}\" "
                "or change the generator's output range")

    def make_optimizer(self, params, lr: float) -> torch.optim.Optimizer:
        c = self.cfg
        if c.optimizer == "rmsprop":
            return torch.optim.RMSprop(params, lr=lr, alpha=c.rms_alpha, eps=c.eps)
        return torch.optim.Adam(params, lr=lr, betas=tuple(c.betas), eps=c.eps)

    def build_optimizers(self, nets):
        return {"G": self.make_optimizer(nets["G"].parameters(), self.cfg.lr_g),
                "D": self.make_optimizer(nets["D"].parameters(), self.cfg.lr_d)}

    def build_schedulers(self, optimizers):
        if not self.cfg.lr_schedule:
            return {}
        make = self.ctx.registry.build(self.cfg.lr_schedule, kind="scheduler", path="algorithm.lr_schedule")
        return {name: make(opt) for name, opt in optimizers.items()}

    # the data / image range
    @property
    def device(self) -> torch.device:
        return self.ctx.device if self.ctx is not None else torch.device("cpu")

    def to_model_range(self, images: torch.Tensor) -> torch.Tensor:
        return to_signed(images) if self.cfg.image_range == "signed" else images

    def to_unit_range(self, images: torch.Tensor) -> torch.Tensor:
        x = to_unit(images) if self.cfg.image_range == "signed" else images
        return x.clamp(0, 1)

    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        dim = int(self.nets["G"].latent_dim)
        if self.cfg.latent == "uniform":
            z = torch.rand(n, dim, generator=generator) * 2 - 1
        else:
            z = torch.randn(n, dim, generator=generator)
        return z.to(self.device)

    # one step
    def prepare(self, batch: dict, step: int) -> dict:
        real = self.to_model_range(batch["image"])
        z = self.sample_latent(real.shape[0])
        fake = self.nets["G"](z, from_prior=True)
        return {"batch": batch, "real": real, "z": z, "fake": fake}

    def d_loss(self, state: dict) -> dict:
        d = self.nets["D"]
        real_s, fake_s = d(state["real"]), d(state["fake"].detach())
        return {"loss": self.loss_fn.d(real_s, fake_s), "real_score": real_s.mean(), "fake_score": fake_s.mean()}

    def g_loss(self, state: dict) -> dict:
        d = self.nets["D"]
        fake_s = d(state["fake"])
        real_s = d(state["real"]).detach() if getattr(self.loss_fn, "relativistic", False) else None
        return {"loss": self.loss_fn.g(fake_s, real_s)}

    def phases(self, step: int) -> list[Phase]:
        return [Phase("D", ("D",), self.d_loss), Phase("G", ("G",), self.g_loss)]

    # capabilities
    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, **options: Any) -> torch.Tensor:
        z = self.sample_latent(n, generator)
        return self.to_unit_range(self.nets["G"](z, from_prior=True, **options).float())

    def visualize(self, batch: dict, n: int) -> dict[str, torch.Tensor]:
        return {"samples": self.sample(n)}


def _gen_example(module: nn.Module):
    return (torch.randn(2, module.latent_dim),)


def _disc_example(module: nn.Module):
    return (torch.rand(2, module.from_image.in_channels, module.image_size, module.image_size) * 2 - 1,)


def register(registry) -> None:
    registry.register("generator", "dcgan-generator", DCGANGenerator, config=DCGANGeneratorConfig,
                      example=_gen_example,
                      tiny={"image_size": 8, "latent_dim": 8, "base_channels": 4, "max_channels": 8})
    registry.register("discriminator", "dcgan-discriminator", DCGANDiscriminator,
                      config=DCGANDiscriminatorConfig, example=_disc_example,
                      tiny={"image_size": 8, "base_channels": 4, "max_channels": 8})
    registry.register("algorithm", "gan", GANAlgorithm, config=GANConfig,
                      tiny={"generator": {"type": "core.dcgan-generator", "latent_dim": 8, "base_channels": 4,
                                          "max_channels": 8},
                            "discriminator": {"type": "core.dcgan-discriminator", "base_channels": 4,
                                              "max_channels": 8}})
