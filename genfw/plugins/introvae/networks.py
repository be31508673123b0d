"""IntroVAE encoder (inference model) and decoder (generator) with the paper's residual blocks.

Both scale with resolution: ``image_size = 4 * 2 ** len(channels)``. ``image_size`` and
``in_channels`` may be 0, meaning "take it from the data": the algorithm fills them in, and a
standalone build falls back to the channel list (or 64 px) and 3 channels.
"""
from __future__ import annotations

import math

import torch
from attrs import define, field, validators as v
from torch import nn

from genfw import ChunkedBatchNorm2d, ConfigError, SmallMapConv2d

DEFAULT_SIZE = 64


def paper_channels(image_size: int) -> list[int]:
    """The paper's channel lists (128: 64..512,512; 256: 32..512,512; 1024: 16..512x3) as one rule."""
    levels = _levels(image_size)
    c0 = max(16, 8192 // image_size)
    return [min(512, c0 * 2 ** i) for i in range(levels)]


def _levels(image_size: int) -> int:
    k = math.log2(image_size / 4) if image_size >= 8 else -1
    if k < 1 or k != int(k):
        raise ConfigError(f"IntroVAE image_size must be 4 * 2^k with k >= 1 (8, 16, 32, ...), got {image_size}")
    return int(k)


def resolve_shape(image_size: int, channels: list[int], in_channels: int) -> tuple[int, list[int], int]:
    """Fill the 'from data' zeros and check that size and channel list agree."""
    channels = [int(c) for c in channels]
    if any(c <= 0 for c in channels):
        raise ConfigError(f"IntroVAE channels must be positive, got {channels}")
    if image_size == 0:
        image_size = 4 * 2 ** len(channels) if channels else DEFAULT_SIZE
    levels = _levels(image_size)
    if not channels:
        channels = paper_channels(image_size)
    elif len(channels) != levels:
        raise ConfigError(
            f"IntroVAE channels {channels} give {4 * 2 ** len(channels)} px images but image_size is "
            f"{image_size}; use {levels} channel entries (image_size = 4 * 2^len(channels)) or channels = []"
        )
    in_channels = in_channels or 3
    if in_channels not in (1, 3):
        raise ConfigError(f"IntroVAE in_channels must be 1 or 3, got {in_channels}")
    return image_size, channels, in_channels




@define(kw_only=True)
class NetConfig:
    """Shared by encoder and decoder so a matching pair is one copy-paste."""

    image_size: int = field(default=0, validator=v.ge(0))   # 0: from the data (or the channel list)
    channels: list[int] = field(factory=list)                      # per resolution level; []: paper rule
    in_channels: int = field(default=0, validator=v.ge(0))  # image channels, 1 or 3; 0: from the data
    z_dim: int = field(default=512, validator=v.gt(0))           # latent dimension


class ResBlock(nn.Module):
    """h = lrelu(bn1(conv3(x))); y = lrelu(bn2(conv3(h) + skip(x))); skip = 1x1 conv if in != out."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        # 4x4 / 8x8 maps run as one matrix product on CPU (see SmallMapConv2d); same weights
        self.conv1 = SmallMapConv2d(cin, cout, 3, padding=1, bias=False)
        self.bn1 = ChunkedBatchNorm2d(cout)
        self.conv2 = SmallMapConv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = ChunkedBatchNorm2d(cout)
        self.skip = nn.Conv2d(cin, cout, 1, bias=False) if cin != cout else nn.Identity()
        self.act = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.bn1(self.conv1(x)))
        h = self.conv2(h)
        return self.act(self.bn2(h + self.skip(x)))


class Encoder(nn.Module):
    """Image in [0, 1] -> (mu, logvar), each N x z_dim."""

    batch_chunks_exact = True  # every op is per-sample except batch norm (ChunkedBatchNorm2d)

    def __init__(self, cfg: NetConfig | None = None) -> None:
        super().__init__()
        cfg = cfg or NetConfig()
        self.image_size, ch, self.in_channels = resolve_shape(cfg.image_size, cfg.channels, cfg.in_channels)
        self.channels = ch
        self.z_dim = cfg.z_dim
        layers: list[nn.Module] = [
            nn.Conv2d(self.in_channels, ch[0], 5, padding=2, bias=False),
            ChunkedBatchNorm2d(ch[0]),
            nn.LeakyReLU(0.2, inplace=True),
            nn.AvgPool2d(2),
        ]
        prev = ch[0]
        for c in ch[1:]:
            layers += [ResBlock(prev, c), nn.AvgPool2d(2)]
            prev = c
        layers.append(ResBlock(prev, prev))
        self.body = nn.Sequential(*layers)
        self.fc = nn.Linear(prev * 4 * 4, 2 * cfg.z_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x).flatten(1)
        mu, logvar = self.fc(h).chunk(2, dim=1)
        return mu, logvar


class Decoder(nn.Module):
    """Latent N x z_dim -> image N x C x H x W (no output activation: data in [0, 1])."""

    roles = ("latent-generator",)
    batch_chunks_exact = True  # every op is per-sample except batch norm (ChunkedBatchNorm2d)
    output_range = "unbounded"  # no output activation: learns the range of the slot it trains in

    def __init__(self, cfg: NetConfig | None = None) -> None:
        super().__init__()
        cfg = cfg or NetConfig()
        self.image_size, ch, self.in_channels = resolve_shape(cfg.image_size, cfg.channels, cfg.in_channels)
        self.channels = ch
        self.latent_dim = cfg.z_dim
        self.fc = nn.Sequential(nn.Linear(cfg.z_dim, ch[-1] * 4 * 4), nn.ReLU(True))
        layers: list[nn.Module] = []
        prev = ch[-1]
        for c in reversed(ch):  # the first step (4 -> 8 px) keeps the last width, as in the reference
            layers += [ResBlock(prev, c), nn.Upsample(scale_factor=2, mode="nearest")]
            prev = c
        layers += [ResBlock(prev, prev), nn.Conv2d(prev, self.in_channels, 5, padding=2)]
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, from_prior: bool = True, **kwargs) -> torch.Tensor:
        h = self.fc(z).view(z.shape[0], -1, 4, 4)
        return self.body(h)


def encoder_example(module: Encoder) -> tuple[torch.Tensor]:
    return (torch.rand(2, module.in_channels, module.image_size, module.image_size),)


def decoder_example(module: Decoder) -> tuple[torch.Tensor]:
    return (torch.randn(2, module.latent_dim),)
