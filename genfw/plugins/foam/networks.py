"""FOAM networks (sheet, Appendix A.3): a progressive U-shaped generator with ToRGB / ToFilter heads per
level, and a growable discriminator with classification and attribute heads on 4x4 features.

Levels: level l (1-based) works at 4 * 2^(l-1) pixels; `image_size` is the top level. Widths follow
table 3: `base_channels` at the top level, doubled per level down, capped at `max_channels`.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from attrs import define, field, validators as v
from torch import nn

from genfw.plugins.foam.filters import down, down_mask, foam_read, foam_transform, foam_write, up


def _size_ok(instance, attribute, value):
    if value < 4 or 2 ** int(round(math.log2(value))) != value:
        raise ValueError(f"{attribute.name} must be a power of two >= 4, got {value}")


def num_levels(image_size: int) -> int:
    return int(round(math.log2(image_size))) - 1


def widths(image_size: int, base: int, cap: int) -> list[int]:
    """Channel width per level 1..L (index 0 = 4x4)."""
    n = num_levels(image_size)
    return [min(base * 2 ** (n - 1 - i), cap) for i in range(n)]


def conv(cin: int, cout: int, k: int = 3, norm: bool = True, act: bool = True) -> nn.Sequential:
    """Conv + InstanceNorm + LeakyReLU(0.2), the sheet's default block."""
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, padding=k // 2)]
    if norm:
        layers.append(nn.InstanceNorm2d(cout, affine=True))
    if act:
        layers.append(nn.LeakyReLU(0.2))
    return nn.Sequential(*layers)


class ResBlock(nn.Module):
    """Two stride-1 3x3 convs with an identity shortcut (the conditional model's skips)."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv(ch, ch), conv(ch, ch, act=False))
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.body(x))


class EncoderLevel(nn.Module):
    """Two 3x3 convs then 2x average down-sampling; residual adds a 1x1 projection of the input."""

    def __init__(self, cin: int, cout: int, residual: bool) -> None:
        super().__init__()
        self.body = nn.Sequential(conv(cin, cin), conv(cin, cout))
        self.skip = nn.Conv2d(cin, cout, 1) if residual else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(x)
        if self.skip is not None:
            h = h + self.skip(x)
        return F.avg_pool2d(h, 2)


class DecoderLevel(nn.Module):
    """Up-sample, join the mirrored encoder features, two 3x3 convs.

    concat: copy-and-concatenate (unconditional model). residual: the skip passes a residual block
    and is added after a 1x1 match of the up-sampled path (the conditional model)."""

    def __init__(self, cin: int, cskip: int, cout: int, skip_mode: str, upsample: bool) -> None:
        super().__init__()
        self.upsample, self.mode = upsample, skip_mode
        if skip_mode == "concat":
            self.body = nn.Sequential(conv(cin + cskip, cout), conv(cout, cout))
        else:
            self.res = ResBlock(cskip)
            self.match = nn.Conv2d(cin, cskip, 1)
            self.body = nn.Sequential(conv(cskip, cout), conv(cout, cout))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        if self.upsample:
            x = up(x)
        if self.mode == "concat":
            return self.body(torch.cat([x, skip], 1))
        return self.body(self.match(x) + self.res(skip))


def head(ch: int, out: int) -> nn.Sequential:
    """ToRGB / ToFilter: 3x3, 3x3, 1x1 -> out."""
    return nn.Sequential(conv(ch, ch), conv(ch, ch), nn.Conv2d(ch, out, 1))


@define(kw_only=True)
class GeneratorConfig:
    image_size: int = field(default=1024, validator=_size_ok)     # top level's size
    image_channels: int = field(default=3, validator=v.gt(0))
    landmark_channels: int = field(default=1, validator=v.ge(0))  # 0: no landmark input
    num_attributes: int = field(default=0, validator=v.ge(0))     # concatenated to the latent
    base_channels: int = field(default=16, validator=v.gt(0))     # width at the top level (table 3: 16)
    max_channels: int = field(default=512, validator=v.gt(0))
    latent_channels: int = field(default=512, validator=v.gt(0))
    skip: str = field(default="concat", validator=v.in_(("concat", "residual")))   # residual: conditional model


class FOAMGenerator(nn.Module):
    """G(I_obs, M, L, A) at any stage; while growing it runs the fixed r-1 branch and blends by FOAM.

    Images are in the signed range [-1, 1], so (1 - M) * I_obs is the grey-filled observation."""

    roles = ("masked-generator",)
    requires = ("landmarks", "stage")  # landmark channels and the growth stage

    def __init__(self, cfg: GeneratorConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or GeneratorConfig()
        self.levels = num_levels(cfg.image_size)
        w = widths(cfg.image_size, cfg.base_channels, cfg.max_channels)
        self.widths = w
        cin = cfg.image_channels + 1 + cfg.landmark_channels
        residual = cfg.skip == "residual"
        self.from_input = nn.ModuleList([conv(cin, c, 1) for c in w])
        # encoder[i] takes level i+1 (index i) down to index i-1; index 0 has none
        self.encoder = nn.ModuleList([nn.Identity()] + [EncoderLevel(w[i], w[i - 1], residual)
                                                        for i in range(1, self.levels)])
        self.latent_in = conv(w[0], w[0])
        self.to_latent = nn.Sequential(nn.Conv2d(w[0], cfg.latent_channels, 4), nn.LeakyReLU(0.2))  # no IN
        self.from_latent = nn.Sequential(
            nn.ConvTranspose2d(cfg.latent_channels + cfg.num_attributes, w[0], 4),
            nn.InstanceNorm2d(w[0], affine=True), nn.LeakyReLU(0.2), conv(w[0], w[0]))
        self.decoder = nn.ModuleList([DecoderLevel(w[0], w[0], w[0], cfg.skip, upsample=False)]
                                     + [DecoderLevel(w[i - 1], w[i], w[i], cfg.skip, upsample=True)
                                        for i in range(1, self.levels)])
        self.to_rgb = nn.ModuleList([head(c, cfg.image_channels) for c in w])
        # read filters are predicted from the r-1 branch's last features (index i serves growth into i+1)
        self.to_filter_read = nn.ModuleList([head(c, 1) for c in w[:-1]])
        self.to_filter_write = nn.ModuleList([head(c, 1) for c in w])

    # --- one branch ------------------------------------------------------------------------------
    def branch(self, x: torch.Tensor, attributes: torch.Tensor | None, level: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Input channels at level `level` (1-based) -> (image, last decoder features)."""
        i = level - 1
        if x.shape[-1] != 4 * 2 ** i:
            raise ValueError(f"level {level} works at {4 * 2 ** i} px, got input of {x.shape[-1]} px")
        h = self.from_input[i](x)
        skips = []
        for j in range(i, 0, -1):
            skips.append(h)
            h = self.encoder[j](h)
        skips.append(h)
        z = self.to_latent(self.latent_in(h))
        if self.cfg.num_attributes:
            if attributes is None:
                raise ValueError("this generator is conditioned on attributes; pass `attributes`")
            z = torch.cat([z, attributes.to(z.dtype).reshape(len(z), -1, 1, 1)], 1)
        h = self.from_latent(z)
        for j in range(0, i + 1):
            h = self.decoder[j](h, skips.pop())
        return self.to_rgb[i](h), h

    def _inputs(self, observed, mask, lmap):
        parts = [(1 - mask) * observed, mask]
        if self.cfg.landmark_channels:
            if lmap is None:
                raise ValueError("this generator takes landmark channels; pass `landmarks`")
            parts.append(lmap.to(observed.dtype))
        return torch.cat(parts, 1)

    def _fixed_branch(self, x, attributes, level):
        # the r-1 branch's weights are fixed while growing: run it on detached parameters so only the
        # high branch and the ToFilter heads learn, while gradients still flow through it to F_read
        params = {k: p.detach() for k, p in self.named_parameters()}
        return torch.func.functional_call(self, params, (x, None),
                                          {"attributes": attributes, "level": level, "_branch": True})

    def forward(self, observed: torch.Tensor, mask: torch.Tensor, landmarks: torch.Tensor | None = None,
                attributes: torch.Tensor | None = None, stage: int = 0, alpha: float = 1.0,
                level: int = 0, _branch: bool = False) -> dict | tuple:
        """observed: N x C x S x S in [-1, 1] with S the stage's size; mask N x 1 x S x S (1 = hole);
        landmarks: the landmark channels at S. Returns {"output", "high", "low", "filter_read",
        "filter_write"} (filters raw, in [0, 1]; the transformed ones in "*_t")."""
        if _branch:
            return self.branch(observed, attributes, level)
        r = stage or self.levels
        if not 1 <= r <= self.levels:
            raise ValueError(f"stage must be in 1..{self.levels}, got {stage}")
        if r == 1 or alpha >= 1.0:
            img, _ = self.branch(self._inputs(observed, mask, landmarks), attributes, r)
            return {"output": img, "high": img}
        raw = self.filters(observed, mask, landmarks, attributes, r)
        read_t = foam_transform(raw["read"], alpha)
        high_obs, low_obs = foam_read(observed, mask, read_t)
        low_mask = down_mask(mask)
        low_lm = None if landmarks is None else down(landmarks)
        low, _ = self._fixed_branch(self._inputs(low_obs, low_mask, low_lm), attributes, r - 1)
        high, feat = self.branch(self._inputs(high_obs, mask, landmarks), attributes, r)
        write = torch.sigmoid(self.to_filter_write[r - 1](feat))
        write_t = foam_transform(write, alpha)
        out = foam_write(high, low, mask, write_t, alpha)
        return {"output": out, "high": high, "low": low, "filter_read": raw["read"], "filter_write": write,
                "filter_read_t": read_t, "filter_write_t": write_t}

    def filters(self, observed, mask, landmarks, attributes, level: int) -> dict:
        """F_read for growing into `level` (eq. 4): ToFilter on the fixed r-1 branch's features of the
        pooled full observation, up-sampled to the level's size."""
        low_lm = None if landmarks is None else down(landmarks)
        x_low = self._inputs(down(observed), down_mask(mask), low_lm)
        _, feat = self._fixed_branch(x_low, attributes, level - 1)
        return {"read": up(torch.sigmoid(self.to_filter_read[level - 2](feat)))}

    def write_filter(self, observed, mask, landmarks, attributes, level: int) -> torch.Tensor:
        """F_write of `level` as the high branch would predict it from the full observation."""
        _, feat = self.branch(self._inputs(observed, mask, landmarks), attributes, level)
        return torch.sigmoid(self.to_filter_write[level - 1](feat))


@define(kw_only=True)
class DiscriminatorConfig:
    image_size: int = field(default=1024, validator=_size_ok)
    image_channels: int = field(default=3, validator=v.gt(0))
    landmark_channels: int = field(default=1, validator=v.ge(0))
    num_attributes: int = field(default=0, validator=v.ge(0))     # D_attr outputs; 0: no attribute head
    base_channels: int = field(default=16, validator=v.gt(0))     # table 6: 16 at the top level
    max_channels: int = field(default=512, validator=v.gt(0))


class FOAMDiscriminator(nn.Module):
    """Feature network (1x1 in, per level two 3x3 convs + down-sample) on (I, L); D_cls and D_attr on
    the 4x4 features. While growing, the new top level fades in as in progressive GANs:
    alpha * F_r(x) + (1 - alpha) * fromInput_{r-1}(down(x))."""

    output = "logits"  # {"cls": logits, "attr": logits}
    conditioning = frozenset({"landmarks", "stage", "alpha"})
    requires = ("landmarks", "stage")  # landmark channels and the growth stage

    def __init__(self, cfg: DiscriminatorConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or DiscriminatorConfig()
        self.levels = num_levels(cfg.image_size)
        w = widths(cfg.image_size, cfg.base_channels, cfg.max_channels)
        cin = cfg.image_channels + cfg.landmark_channels
        self.from_input = nn.ModuleList([conv(cin, c, 1) for c in w])
        self.blocks = nn.ModuleList([nn.Identity()] + [EncoderLevel(w[i], w[i - 1], residual=False)
                                                       for i in range(1, self.levels)])
        self.cls = nn.Sequential(conv(w[0], w[0]), nn.Conv2d(w[0], 1, 4))
        self.attr = nn.Sequential(conv(w[0], w[0]), nn.Conv2d(w[0], cfg.num_attributes, 4)) \
            if cfg.num_attributes else None

    def forward(self, image: torch.Tensor, landmarks: torch.Tensor | None = None, stage: int = 0,
                alpha: float = 1.0) -> dict:
        """image N x C x S x S in [-1, 1] at the stage's size -> {"cls": N logits, "attr": N x A logits}."""
        r = stage or self.levels
        if image.shape[-1] != 4 * 2 ** (r - 1):
            raise ValueError(f"stage {r} works at {4 * 2 ** (r - 1)} px, got {image.shape[-1]} px")
        x = image
        if self.cfg.landmark_channels:
            if landmarks is None:
                raise ValueError("this discriminator takes landmark channels; pass `landmarks`")
            x = torch.cat([image, landmarks.to(image.dtype)], 1)
        h = self.from_input[r - 1](x)
        if r > 1:
            h = self.blocks[r - 1](h)
            if alpha < 1.0:
                h = alpha * h + (1 - alpha) * self.from_input[r - 2](down(x))
        for j in range(r - 2, 0, -1):
            h = self.blocks[j](h)
        out = {"cls": self.cls(h).flatten()}
        if self.attr is not None:
            out["attr"] = self.attr(h).flatten(1)
        return out


def generator_example(module: FOAMGenerator) -> dict:
    g = torch.Generator().manual_seed(0)
    c, s = module.cfg, module.cfg.image_size
    n = 2
    mask = torch.zeros(n, 1, s, s)
    mask[:, :, s // 4: s // 2, s // 4: 3 * s // 4] = 1
    return {"observed": torch.rand(n, c.image_channels, s, s, generator=g) * 2 - 1, "mask": mask,
            "landmarks": torch.rand(n, c.landmark_channels, s, s, generator=g) if c.landmark_channels else None,
            "attributes": (torch.rand(n, c.num_attributes, generator=g) > 0.5).float() if c.num_attributes else None,
            "stage": module.levels, "alpha": 0.7}


def discriminator_example(module: FOAMDiscriminator) -> dict:
    g = torch.Generator().manual_seed(0)
    c, s = module.cfg, module.cfg.image_size
    return {"image": torch.rand(2, c.image_channels, s, s, generator=g) * 2 - 1,
            "landmarks": torch.rand(2, c.landmark_channels, s, s, generator=g) if c.landmark_channels else None,
            "stage": module.levels, "alpha": 0.6}
