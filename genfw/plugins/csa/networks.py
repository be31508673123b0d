"""CSA's two generators: the rough U-Net and the refinement network with the CSA layer; mask down-sampling.

Both take and return images in [-1, 1]; the algorithm converts from the batch's [0, 1].
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from attrs import define, field, validators as v
from torch import nn

from genfw.core.roles import Slot, build_slot, sub_path
from genfw.plugins.csa.layer import SIMILARITIES


def _levels(image_size: int, depth: int, reserve: int) -> int:
    """`depth` or, when 0, as many halvings as leave 2**reserve pixels."""
    if depth:
        return depth
    return max(1, int(math.log2(image_size)) - reserve)


def downsample_mask(mask: torch.Tensor, times: int, threshold: float = 5 / 16) -> torch.Tensor:
    """Hole mask at 1/2**times resolution: `times` 4x4/stride-2 averaging convs, then > threshold.

    The reference code uses three such convs (256 px -> 32x32) and 5/16; other CSA levels use as
    many convs as halvings. Zero padding counts the border as known, as the reference does.
    """
    m = mask.float()
    kernel = torch.full((1, 1, 4, 4), 1 / 16, dtype=m.dtype, device=m.device)
    for _ in range(times):
        m = F.conv2d(m, kernel, stride=2, padding=1)
    return (m > threshold).to(mask.dtype)


# --- rough network: pix2pix U-Net --------------------------------------------------------------
@define(kw_only=True)
class RoughConfig:
    image_size: int = field(default=256, validator=v.ge(8))
    channels: int = field(default=3, validator=v.ge(1))        # image channels in and out
    base_channels: int = field(default=64, validator=v.ge(1))  # after the first 4x4 conv
    max_channels: int = field(default=512, validator=v.ge(1))
    depth: int = field(default=0, validator=v.ge(0))           # down-samplings; 0: down to 1x1 (8 at 256 px)
    mask_channel: bool = False                                 # also feed the hole mask (the reference does not)


class _UNetLevel(nn.Module):
    """One pix2pix skip block: down(x) -> inner -> up, concatenated with x."""

    def __init__(self, outer: int, inner: int, sub: nn.Module | None, in_ch: int | None = None,
                 out_ch: int | None = None) -> None:
        super().__init__()
        outermost, innermost = in_ch is not None, sub is None
        self.outermost = outermost
        down = [nn.Conv2d(in_ch if outermost else outer, inner, 4, 2, 1)]
        if not outermost:
            down = [nn.LeakyReLU(0.2)] + down
        if not (outermost or innermost):
            down.append(nn.InstanceNorm2d(inner))
        up_in = inner if innermost else inner * 2
        up = [nn.ReLU(), nn.ConvTranspose2d(up_in, out_ch if outermost else outer, 4, 2, 1)]
        up.append(nn.Tanh() if outermost else nn.InstanceNorm2d(outer))
        self.down = nn.Sequential(*down)
        self.sub = sub if sub is not None else nn.Identity()
        self.up = nn.Sequential(*up)

    def forward(self, x):
        y = self.up(self.sub(self.down(x)))
        return y if self.outermost else torch.cat([x, y], 1)


class RoughNet(nn.Module):
    """pix2pix U-Net (4x4 convs, skip concatenation, InstanceNorm, Tanh) predicting I_p."""

    def __init__(self, cfg: RoughConfig) -> None:
        super().__init__()
        depth = _levels(cfg.image_size, cfg.depth, 0)
        if 2 ** depth > cfg.image_size:
            raise ValueError(f"rough depth {depth} halves {cfg.image_size} px below 1 pixel; lower its depth "
                             "or use a larger data.image_size")
        width = [min(cfg.base_channels * 2 ** i, cfg.max_channels) for i in range(depth)]
        block = None
        for i in range(depth - 1, 0, -1):
            block = _UNetLevel(width[i - 1], width[i], block)
        in_ch = cfg.channels + (1 if cfg.mask_channel else 0)
        self.net = _UNetLevel(cfg.channels, width[0], block, in_ch=in_ch, out_ch=cfg.channels)
        self.mask_channel = cfg.mask_channel
        self.depth = depth
        self.channels = cfg.channels

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.mask_channel:
            if mask is None:
                raise ValueError("this rough network was built with mask_channel=true: pass the mask")
            x = torch.cat([x, mask.to(x.dtype)], 1)
        return self.net(x)


# --- refinement network with the CSA layer ------------------------------------------------------
@define(kw_only=True)
class RefineConfig:
    image_size: int = field(default=256, validator=v.ge(8))
    channels: int = field(default=3, validator=v.ge(1))        # image channels; the input has 2x
    base_channels: int = field(default=64, validator=v.ge(1))  # full-resolution stem width
    max_channels: int = field(default=512, validator=v.ge(1))
    depth: int = field(default=0, validator=v.ge(0))           # encoder halvings; 0: down to 4x4
    csa_level: int = field(default=3, validator=v.ge(1))       # halvings before the CSA layer (3: 32x32 at 256 px)
    similarity: str = field(default="cosine", validator=v.in_(SIMILARITIES))  # csa.layer's, when it is the attention
    # the feature attention layer at csa_level: any feature-attention component (csa.layer, foam.filter,
    # core.identity-attention, ...); it gets the level's width as a `channels` hint
    attention: dict = field(factory=lambda: {"type": "csa.layer"})
    mask_threshold: float = field(default=5 / 16, validator=[v.gt(0.0), v.lt(1.0)])
    consistency_channels: int = field(default=512, validator=v.ge(0))  # VGG relu4_3 width; 0: no projection


def _norm_act(ch: int, act: nn.Module) -> list[nn.Module]:
    return [nn.InstanceNorm2d(ch), act]


class RefineNet(nn.Module):
    """Encoder (3x3 conv widening, 4x4 dilated stride-2 conv), CSA at `csa_level`, mirrored decoder.

    The CSA layer sits in the `attention` slot: any feature attention layer
    ``layer(features, mask, **context) -> features`` fits (the hole mask is given at its level).

    ``forward(x, mask, return_features=True)`` also returns the CSA output and the decoder feature
    mirroring it (both projected to `consistency_channels` by a shared 1x1 conv when widths differ),
    plus the mask at that level, for the consistency loss.
    """

    roles = ("refinement-generator",)
    slots = (Slot("attention", "feature-attention", "layer(features, mask) at csa_level (default csa.layer)"),)

    def __init__(self, cfg: RefineConfig) -> None:
        super().__init__()
        depth = _levels(cfg.image_size, cfg.depth, 2)
        if 2 ** depth > cfg.image_size:
            raise ValueError(f"refine depth {depth} halves {cfg.image_size} px below 1 pixel; lower its depth "
                             "or use a larger data.image_size")
        if not 1 <= cfg.csa_level < depth:
            # the level is counted from the top, so a smaller image has fewer levels to put CSA at
            # the slot that builds this names it (algorithm.refine ...); say what fits this size
            raise ValueError(f"csa_level must be in 1..{depth - 1} for {cfg.image_size} px images (refine depth "
                             f"{depth}), got {cfg.csa_level}; set csa_level = {depth - 1} or use a larger "
                             "data.image_size")
        self.depth, self.csa_level, self.threshold = depth, cfg.csa_level, cfg.mask_threshold
        width = [min(cfg.base_channels * 2 ** i, cfg.max_channels) for i in range(depth + 1)]
        self.stem = nn.Conv2d(2 * cfg.channels, width[0], 3, 1, 1)
        self.down = nn.ModuleList()
        for i in range(1, depth + 1):
            self.down.append(nn.Sequential(
                nn.Conv2d(width[i - 1], width[i], 3, 1, 1), *_norm_act(width[i], nn.LeakyReLU(0.2)),
                nn.Conv2d(width[i], width[i], 4, 2, padding=3, dilation=2),
                *_norm_act(width[i], nn.LeakyReLU(0.2)),
            ))
        from genfw.registry import get_registry

        self.csa = build_slot(get_registry(), cfg.attention, role="feature-attention", path=sub_path("attention", "csa.refine"),
                              hints={"channels": width[cfg.csa_level], "similarity": cfg.similarity})
        # up[i] goes from level i+1 to level i; the deepest has no skip to concatenate
        self.up = nn.ModuleList()
        for i in range(depth):
            cin = width[i + 1] * (1 if i + 1 == depth else 2)
            self.up.append(nn.Sequential(
                nn.ConvTranspose2d(cin, width[i + 1], 4, 2, 1), *_norm_act(width[i + 1], nn.ReLU()),
                nn.Conv2d(width[i + 1], width[i], 3, 1, 1), *_norm_act(width[i], nn.ReLU()),
            ))
        self.head = nn.Conv2d(2 * width[0], cfg.channels, 3, 1, 1)  # no Tanh, like the reference
        csa_width = width[cfg.csa_level]
        proj = cfg.consistency_channels and cfg.consistency_channels != csa_width
        self.project = nn.Conv2d(csa_width, cfg.consistency_channels, 1) if proj else nn.Identity()
        self.consistency_width = cfg.consistency_channels or csa_width

    def forward(self, x: torch.Tensor, mask: torch.Tensor, return_features: bool = False,
                return_attention: bool = False):
        skips = [self.stem(x)]
        feat_mask = downsample_mask(mask, self.csa_level, self.threshold)
        attention = None
        h = skips[0]
        for i, block in enumerate(self.down, start=1):
            h = block(h)
            if i == self.csa_level:
                if return_attention:
                    h, attention = self.csa(h, feat_mask, return_attention=True)
                else:
                    h = self.csa(h, feat_mask)
                csa_out = h
            skips.append(h)
        mirror = None
        for i in range(self.depth - 1, -1, -1):
            inp = h if i + 1 == self.depth else torch.cat([h, skips[i + 1]], 1)
            h = self.up[i](inp)
            if i == self.csa_level:
                mirror = h
        out = self.head(torch.cat([h, skips[0]], 1))
        if not (return_features or return_attention):
            return out
        extras = {"csa": self.project(csa_out), "mirror": self.project(mirror), "mask": feat_mask}
        if attention is not None:
            extras["attention"] = attention
        return out, extras


def rough_example(module: RoughNet):
    size = 2 ** module.depth
    x = torch.rand(2, module.channels, size, size) * 2 - 1
    mask = torch.zeros(2, 1, size, size)
    mask[:, :, size // 4:3 * size // 4, size // 4:3 * size // 4] = 1
    return (x, mask)


def refine_example(module: RefineNet):
    size = 2 ** (module.depth + 2)
    x = torch.rand(2, module.stem.in_channels, size, size) * 2 - 1
    mask = torch.zeros(2, 1, size, size)
    mask[0, :, size // 4:3 * size // 4, size // 4:3 * size // 4] = 1
    mask[1, :, : size // 2, : size // 2] = 1
    return (x, mask)
