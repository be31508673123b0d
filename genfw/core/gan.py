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
from genfw.core.nn import to_signed, to_unit
from genfw.core.roles import Slot, build_slot, probe_discriminator, probe_latent_generator


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

    roles = ("latent-generator",)
    output_range = "signed"

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

    output = "logits"
    conditioning = frozenset()

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


@define(kw_only=True)
class DCGANEncoderConfig:
    image_size: int = field(default=64, validator=_size_ok)
    in_channels: int = field(default=3, validator=v.gt(0))
    z_dim: int = field(default=128, validator=v.gt(0))
    base_channels: int = field(default=64, validator=v.gt(0))
    max_channels: int = field(default=512, validator=v.gt(0))


class DCGANEncoder(nn.Module):
    """Image in [0, 1] -> (mu, logvar): the DCGAN discriminator's conv body, a linear head of 2 z_dim.

    A plain encoder to pair with any latent generator under a VAE-style algorithm (e.g. the
    introspective loss of `introvae.algorithm` with the DCGAN generator as decoder)."""

    def __init__(self, cfg: DCGANEncoderConfig | None = None) -> None:
        super().__init__()
        cfg = cfg or DCGANEncoderConfig()
        self.image_size, self.in_channels, self.z_dim = cfg.image_size, cfg.in_channels, cfg.z_dim
        widths = _widths(cfg.image_size, cfg.base_channels, cfg.max_channels)[::-1]
        layers: list[nn.Module] = [nn.Conv2d(cfg.in_channels, widths[0][1], 3, 1, 1), nn.LeakyReLU(0.2, True)]
        for i, ((_, cin), (_, cout)) in enumerate(zip(widths, widths[1:])):
            layers += [nn.Conv2d(cin, cout, 4, 2, 1, bias=i == 0)]
            if i > 0:
                layers.append(nn.BatchNorm2d(cout))
            layers.append(nn.LeakyReLU(0.2, True))
        self.body = nn.Sequential(*layers)
        self.fc = nn.Linear(widths[-1][1] * 16, 2 * cfg.z_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.fc(self.body(x).flatten(1)).chunk(2, dim=1)
        return mu, logvar


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

    slots = (Slot("generator", "latent-generator", "G(z) -> images in image_range; may take latent_transform"),
             Slot("discriminator", "image-discriminator", "D(image) -> scores the loss expects; no conditioning"),
             Slot("loss", "gan-loss", "adversarial loss on D's scores"))

    def __init__(self, cfg: GANConfig | None = None) -> None:
        super().__init__(cfg or GANConfig())
        self.loss_fn: Any = None

    # building; subclasses override the pieces they change
    def network_defaults(self, ctx: Context) -> dict:
        """The data's shape, offered to the networks under the names networks use for it; keys the
        user wrote in a network's table win (nested specs keep only written keys)."""
        c = ctx.channels
        return {"image_size": ctx.image_size, "channels": c, "in_channels": c, "out_channels": c}

    def slot_spec(self, ctx: Context, key: str) -> dict:
        """The config table of slot `key` as it will be built (subclasses fill data-decided fields)."""
        return getattr(self.cfg, key)

    def build_generator(self, ctx: Context) -> nn.Module:
        return build_slot(ctx.registry, self.slot_spec(ctx, "generator"), role="latent-generator",
                          path="algorithm.generator", hints=self.network_defaults(ctx),
                          need={"output_range": self.cfg.image_range},
                          fix={"output_range": "set algorithm.image_range to the generator's range, or wrap "
                                               'it: {type = "core.range", to = "%s", generator = {...}}'
                                               % self.cfg.image_range},
                          probe=probe_latent_generator(ctx.channels, ctx.image_size))

    def build_discriminator(self, ctx: Context) -> nn.Module:
        expects = getattr(self.loss_fn, "expects", None)
        return build_slot(ctx.registry, self.slot_spec(ctx, "discriminator"), role="image-discriminator",
                          path="algorithm.discriminator", hints=self.network_defaults(ctx),
                          need={"output": expects},
                          fix={"output": ("the loss takes logits: use core.bce with from_probabilities = true, "
                                          "or a discriminator that outputs logits")
                               if expects == "logits" else
                               ('set algorithm.loss.from_probabilities = false, or wrap D: '
                                '{type = "core.probabilities", discriminator = {...}}')},
                          probe=probe_discriminator(ctx.channels, ctx.image_size))

    def build_networks(self, ctx: Context) -> dict[str, nn.Module]:
        self.loss_fn = build_slot(ctx.registry, self.cfg.loss, role="gan-loss", path="algorithm.loss")
        return {"G": self.build_generator(ctx), "D": self.build_discriminator(ctx)}

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
    registry.register("encoder", "dcgan-encoder", DCGANEncoder, config=DCGANEncoderConfig,
                      help="DCGAN-style conv encoder: image in [0, 1] -> (mu, logvar)",
                      example=lambda m: (torch.rand(2, m.in_channels, m.image_size, m.image_size),),
                      tiny={"image_size": 8, "z_dim": 8, "base_channels": 4, "max_channels": 8})
    registry.register("algorithm", "gan", GANAlgorithm, config=GANConfig,
                      tiny={"generator": {"type": "core.dcgan-generator", "latent_dim": 8, "base_channels": 4,
                                          "max_channels": 8},
                            "discriminator": {"type": "core.dcgan-discriminator", "base_channels": 4,
                                              "max_channels": 8}})
