"""CSA's two discriminators: a 70x70 PatchGAN on pixels and a patch discriminator on VGG-16 pool3.

Both take images in [-1, 1] and return a patch map of raw scores (RaLSGAN is applied outside).
"""
from __future__ import annotations

import torch
from attrs import define, field, validators as v
from torch import nn

from genfw.core.errors import GenfwError


@define(kw_only=True)
class PatchConfig:
    channels: int = field(default=3, validator=v.ge(1))
    base_channels: int = field(default=64, validator=v.ge(1))
    strided: int = field(default=3, validator=v.ge(1))  # 3 strided convs + 2 stride-1: 70x70 receptive field


class PatchDiscriminator(nn.Module):
    """pix2pix PatchGAN: 4x4 convs, InstanceNorm, LeakyReLU 0.2, one score per 70x70 patch."""

    output = "logits"
    conditioning = frozenset()
    min_image_size = 32  # three stride-2 convs, then InstanceNorm needs > 1 pixel

    def __init__(self, cfg: PatchConfig) -> None:
        super().__init__()
        ch = cfg.base_channels
        layers: list[nn.Module] = [nn.Conv2d(cfg.channels, ch, 4, 2, 1), nn.LeakyReLU(0.2)]
        for i in range(1, cfg.strided + 1):
            nxt = cfg.base_channels * min(2 ** i, 8)
            stride = 2 if i < cfg.strided else 1
            layers += [nn.Conv2d(ch, nxt, 4, stride, 1), nn.InstanceNorm2d(nxt), nn.LeakyReLU(0.2)]
            ch = nxt
        layers.append(nn.Conv2d(ch, 1, 4, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@define(kw_only=True)
class FeatureConfig:
    widths: list[int] = field(factory=lambda: [512, 512, 512], validator=v.min_len(1))  # after pool3's 256
    weights: str = "vgg16-imagenet"     # named asset resolved by genfw.core.weights
    allow_random_weights: bool = False  # smoke tests only: random VGG instead of failing when missing


def _vgg(layers: tuple[str, ...], weights: str, allow_random: bool) -> nn.Module:
    try:
        from genfw.core.vgg import VGG16Features
    except ModuleNotFoundError as exc:
        if exc.name != "genfw.core.vgg":
            raise
        raise GenfwError("this genfw build has no VGG-16 feature extractor (genfw.core.vgg)") from None
    net = VGG16Features(layers=layers, weights=weights, allow_random=allow_random)
    if not getattr(net, "pretrained", True):
        # opted-in random VGG (smoke tests): a fixed seed, so a rebuilt or resumed model sees the
        # same frozen features it was trained against (the VGG is not in any checkpoint)
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for m in net.modules():
                if isinstance(m, nn.Conv2d):
                    fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
                    m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2 / fan_in) ** 0.5)
                    m.bias.zero_()
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def vgg_output(out, layer: str) -> torch.Tensor:
    """The named layer of a VGG16Features result (a mapping; a single tensor is taken as is)."""
    return out[layer] if isinstance(out, dict) else out


class _Frozen:
    """Holds a module outside the parent's parameters/state_dict (it is neither trained nor saved)."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module


class FeatureDiscriminator(nn.Module):
    """Frozen VGG-16 up to pool3 (256 ch, 1/8 size), then 4x4/2 convs 256 -> 512 -> 512 -> 512.

    The VGG is kept out of this module's parameters so the engine never toggles, trains or
    checkpoints it; gradient still flows through it to the image being judged.
    """

    output = "logits"
    conditioning = frozenset()
    min_image_size = 64  # VGG pool3 (1/8) then three 4x4 stride-2 convs

    def __init__(self, cfg: FeatureConfig) -> None:
        super().__init__()
        self._vgg = _Frozen(_vgg(("pool3",), cfg.weights, cfg.allow_random_weights))
        layers: list[nn.Module] = []
        ch = 256
        for i, width in enumerate(cfg.widths):
            layers.append(nn.Conv2d(ch, width, 4, 2, 1))
            if i + 1 < len(cfg.widths):
                if i > 0:
                    layers.append(nn.InstanceNorm2d(width))
                layers.append(nn.LeakyReLU(0.2))
            ch = width
        self.head = nn.Sequential(*layers)

    def _apply(self, fn, *args, **kwargs):
        self._vgg.module._apply(fn, *args, **kwargs)  # follow .to(device) / .double()
        return super()._apply(fn, *args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = vgg_output(self._vgg.module((x + 1) / 2), "pool3")
        return self.head(feats)


def patch_example(module: PatchDiscriminator):
    return (torch.rand(2, module.net[0].in_channels, 32, 32) * 2 - 1,)


def feature_example(module: FeatureDiscriminator):
    return (torch.rand(2, 3, 64, 64) * 2 - 1,)
