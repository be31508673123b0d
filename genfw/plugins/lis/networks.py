"""The reference G / D / R of the LIS paper (DCGAN-like, WN layers + TPReLU), any size base * 2^L."""
from __future__ import annotations

import torch
from attrs import define, field, validators as v
from torch import nn

from genfw import ConfigError
from genfw.plugins.lis.layers import TPReLU, WNConv2d, WNConvTranspose2d, WNLinear


def levels_for(image_size: int, base_size: int = 0) -> tuple[int, int]:
    """(number of stride-2 levels L, base resolution) with image_size = base * 2^L.

    Auto (base_size 0): halve while even and the result stays >= 4, so 80 -> 5x5 with 4 levels
    (the paper), 160 -> 5x5 with 5 levels (its 160 px variant), 64 -> 4x4.
    """
    if base_size:
        ratio, rem = divmod(image_size, base_size)
        if rem or ratio < 2 or ratio & (ratio - 1):
            raise ConfigError(f"image_size {image_size} must be base_size {base_size} times a power of 2 (>= 2)")
        return ratio.bit_length() - 1, base_size
    s, n = image_size, 0
    while s % 2 == 0 and s // 2 >= 4:
        s //= 2
        n += 1
    if n == 0:
        raise ConfigError(f"image_size {image_size} cannot be halved; use a size like 5 * 2^k (10, 20, 40, 80)")
    return n, s


class RefGenerator(nn.Module):
    """WN-Linear(d -> C0*b*b) + TPReLU; [WN-ConvT(4, 2, 1) + TPReLU] * (L-1); affine WN-ConvT; Sigmoid."""

    roles = ("latent-generator",)
    output_range = "unit"

    def __init__(self, image_size: int = 80, latent_dim: int = 256, width: int = 64, channels: int = 3,
                 base_size: int = 0) -> None:
        super().__init__()
        levels, base = levels_for(image_size, base_size)
        widths = [width * 2 ** (levels - 1 - i) for i in range(levels)]  # 512, 256, 128, 64 at 80 px
        self.latent_dim, self.base, self.c0 = latent_dim, base, widths[0]
        self.image_size = image_size
        self.fc = WNLinear(latent_dim, widths[0] * base * base)
        self.fc_act = TPReLU(widths[0])
        layers: list[nn.Module] = []
        for cin, cout in zip(widths[:-1], widths[1:]):
            layers += [WNConvTranspose2d(cin, cout, 4, 2, 1), TPReLU(cout)]
        layers += [WNConvTranspose2d(widths[-1], channels, 4, 2, 1, gain=True, bias=True), nn.Sigmoid()]
        self.convs = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, from_prior: bool = True, **kw) -> torch.Tensor:
        x = self.fc(z).view(z.shape[0], self.c0, self.base, self.base)
        return self.convs(self.fc_act(x))


def _down(channels: int, width: int, levels: int, dropout: float) -> tuple[nn.Sequential, int]:
    layers: list[nn.Module] = []
    cin = channels
    for i in range(levels):
        cout = width * 2 ** i
        layers.append(WNConv2d(cin, cout, 4, 2, 1))
        if dropout > 0 and i >= 1:  # the reference drops whole feature maps from the 2nd level on
            layers.append(nn.Dropout2d(dropout))
        layers.append(TPReLU(cout))
        cin = cout
    return nn.Sequential(*layers), cin


class RefDiscriminator(nn.Module):
    """[WN-Conv(4, 2, 1) + TPReLU] * L; affine WN-Conv(base x base -> 1); Sigmoid. Returns N probabilities."""

    output = "probabilities"
    conditioning = frozenset()

    def __init__(self, image_size: int = 80, width: int = 64, channels: int = 3, base_size: int = 0,
                 dropout: float = 0.0) -> None:
        super().__init__()
        levels, base = levels_for(image_size, base_size)
        self.image_size = image_size
        self.features, c = _down(channels, width, levels, 0.0)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = WNConv2d(c, 1, base, 1, 0, gain=True, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.head(self.drop(self.features(x)))).flatten(1).squeeze(1)


class Reverser(nn.Module):
    """Like D with half the filters, spatial dropout, and d linear outputs: image -> latent."""

    def __init__(self, image_size: int = 80, width: int = 32, channels: int = 3, latent_dim: int = 256,
                 base_size: int = 0, dropout: float = 0.1) -> None:
        super().__init__()
        levels, base = levels_for(image_size, base_size)
        self.latent_dim, self.image_size = latent_dim, image_size
        self.features, c = _down(channels, width, levels, dropout)
        self.head = WNConv2d(c, latent_dim, base, 1, 0, gain=True, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).flatten(1)


# --- registry configs -------------------------------------------------------------------------
def _size_ok(inst, attribute, value):
    if value and value < 8:
        raise ValueError(f"image_size must be 0 (from the data) or >= 8, got {value}")


# 0 in a config means "from the data" (the algorithm fills it); built alone: the paper's values
ALONE = {"image_size": 80, "channels": 3, "latent_dim": 256}


def _or(value: int, key: str) -> int:
    return value or ALONE[key]


@define(kw_only=True)
class GeneratorConfig:
    image_size: int = field(default=0, validator=_size_ok)   # 0: the data's (80 built alone)
    latent_dim: int = field(default=256, validator=v.gt(0))
    width: int = field(default=64, validator=v.gt(0))      # channels of the last hidden level (doubles per level down)
    channels: int = field(default=0, validator=v.in_((0, 1, 3)))  # image channels; 0: the data's (3 alone)
    base_size: int = field(default=0, validator=v.ge(0))   # 0: auto (5 for 80 px)


@define(kw_only=True)
class DiscriminatorConfig:
    image_size: int = field(default=0, validator=_size_ok)   # 0: the data's (80 built alone)
    width: int = field(default=64, validator=v.gt(0))      # channels of the first level
    channels: int = field(default=0, validator=v.in_((0, 1, 3)))  # image channels; 0: the data's (3 alone)
    base_size: int = field(default=0, validator=v.ge(0))
    dropout: float = field(default=0.0, validator=[v.ge(0.0), v.lt(1.0)])  # before the last layer (reference option)


@define(kw_only=True)
class ReverserConfig:
    image_size: int = field(default=0, validator=_size_ok)   # 0: the data's (80 built alone)
    width: int = field(default=32, validator=v.gt(0))      # half of D's
    channels: int = field(default=0, validator=v.in_((0, 1, 3)))  # image channels; 0: the data's (3 alone)
    latent_dim: int = field(default=0, validator=v.ge(0))  # 0: the generator's (256 built alone)
    base_size: int = field(default=0, validator=v.ge(0))
    dropout: float = field(default=0.1, validator=[v.ge(0.0), v.lt(1.0)])  # spatial dropout


def register(registry) -> None:
    registry.register(
        "generator", "dcgan-generator",
        lambda c: RefGenerator(_or(c.image_size, "image_size"), c.latent_dim, c.width,
                               _or(c.channels, "channels"), c.base_size),
        config=GeneratorConfig, help="LIS paper's WN/TPReLU generator (80 px, d = 256 by default)",
        roles=("latent-generator",), traits={"output_range": "unit"},
        example=lambda m: (torch.randn(2, m.latent_dim),),
        tiny={"image_size": 10, "width": 4, "latent_dim": 8})
    registry.register(
        "discriminator", "dcgan-discriminator",
        lambda c: RefDiscriminator(_or(c.image_size, "image_size"), c.width, _or(c.channels, "channels"),
                                   c.base_size, c.dropout),
        config=DiscriminatorConfig, help="LIS paper's WN/TPReLU discriminator (sigmoid output)",
        roles=("image-discriminator",), traits={"output": "probabilities", "conditioning": frozenset()},
        example=lambda m: (torch.rand(2, m.features[0].in_channels, m.image_size, m.image_size),),
        tiny={"image_size": 10, "width": 4})
    registry.register(
        "encoder", "reverser",
        lambda c: Reverser(_or(c.image_size, "image_size"), c.width, _or(c.channels, "channels"),
                           _or(c.latent_dim, "latent_dim"), c.base_size, c.dropout),
        config=ReverserConfig, help="LIS paper's reverser R: image -> latent (R-separate / R-iterative)",
        roles=("latent-regressor",),
        example=lambda m: (torch.rand(2, m.features[0].in_channels, m.image_size, m.image_size),),
        tiny={"image_size": 10, "width": 4, "latent_dim": 8})
