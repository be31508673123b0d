"""FOAM networks exactly as Appendix A.3 (tables 3-6): the progressive U-shaped generator with ToRGB /
ToFilter heads per level, and the growable discriminator with D_cls and D_attr heads on 4x4 features.

Levels: level l (1-based) works at s = 4 * 2^(l-1) pixels; `image_size` is the top level. Widths
are the tables' per resolution: `base_channels` is the width at the top level (32 at 1024 px) and
doubles per level down, capped at `max_channels` (512): w(s). The 1x1 input conv of level s gives
w(2s), the width the level's first conv takes in the full network (at the top: base / 2, table 3's
16). Every conv is Conv + InstanceNorm + LeakyReLU(0.2) except the conv producing the latent (no
IN) and the last convs of the heads (neither).

Generator branch at level r (tables 3-4), encoder from s_r down to 8:
  1x1 in -> [3x3 conv w(2s) -> w(s), 3x3 conv w(s) -> w(s)] (skip source) -> avg-pool, per level;
  latent: 3x3, 4x4 valid conv to latent x 1 x 1, attribute concat, 4x4 transposed conv, 3x3;
  decoder from 8 up to s_r: up-sample, a 3x3 conv where the width changes, skip, two 3x3 convs.
Skips are copy-and-concatenate (`skip = "concat"`, the unconditional model) or, for the
conditional model (`skip = "residual"`), the encoder features pass a residual block of two 3x3
convs and are added; that model's encoder levels also add the first conv's output to the second's.
"""
from __future__ import annotations

import math

import torch
from attrs import define, field, validators as v
from torch import nn

from genfw import ConfigError
from genfw.core.roles import Slot
from genfw.plugins.foam.filters import down, foam_read, foam_transform, foam_write, up


def _size_ok(instance, attribute, value):
    if value < 4 or 2 ** int(round(math.log2(value))) != value:
        raise ValueError(f"{attribute.name} must be a power of two >= 4, got {value}")


def num_levels(image_size: int) -> int:
    return int(round(math.log2(image_size))) - 1


def widths(image_size: int, base: int, cap: int) -> list[int]:
    """w(s) per level 1..L (index 0 = 4x4): base at the top level, doubled per level down, capped."""
    n = num_levels(image_size)
    return [min(base * 2 ** (n - 1 - i), cap) for i in range(n)]


def input_widths(image_size: int, base: int, cap: int) -> list[int]:
    """Width of each level's 1x1 input conv: w(2s), the input of the level's first conv in the full
    network; at the top level base / 2 (table 3: 16 at 1024 px, table 6 likewise)."""
    n = num_levels(image_size)
    return [max(1, min(base * 2 ** (n - 1 - i) // 2, cap)) for i in range(n)]


class Conv(nn.Module):
    """Conv + InstanceNorm(affine) + LeakyReLU(0.2), the tables' default block ("same" padding)."""

    def __init__(self, cin: int, cout: int, k: int = 3, norm: bool = True, act: bool = True,
                 padding: int | None = None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, padding=k // 2 if padding is None else padding)
        self.norm = nn.InstanceNorm2d(cout, affine=True) if norm else nn.Identity()
        self.act = nn.LeakyReLU(0.2) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class Down(nn.AvgPool2d):
    def __init__(self) -> None:
        super().__init__(2)


class Up(nn.Upsample):
    def __init__(self) -> None:
        super().__init__(scale_factor=2, mode="nearest")


class ConcatSkip(nn.Module):
    """Copy-and-concatenate (unconditional model): 2w channels."""

    def forward(self, x: torch.Tensor, enc: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, enc], 1)


class ResidualSkip(nn.Module):
    """The conditional model's skip: enc + conv(conv(enc)) (3x3, stride 1) added to the decoder path."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.body = nn.Sequential(Conv(ch, ch), Conv(ch, ch))

    def forward(self, x: torch.Tensor, enc: torch.Tensor) -> torch.Tensor:
        return x + enc + self.body(enc)


class EncoderLevel(nn.Module):
    """Two 3x3 convs (widening in the first); returns (skip features, pooled features)."""

    def __init__(self, cin: int, cout: int, residual: bool) -> None:
        super().__init__()
        self.conv1, self.conv2 = Conv(cin, cout), Conv(cout, cout)
        self.residual = residual
        self.down = Down()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.conv1(x)
        h = h + self.conv2(h) if self.residual else self.conv2(h)
        return h, self.down(h)


class DecoderLevel(nn.Module):
    """Up-sample, a 3x3 conv where the width changes, skip with the mirrored encoder level, two 3x3 convs."""

    def __init__(self, cin: int, cout: int, skip_mode: str) -> None:
        super().__init__()
        self.up = Up()
        self.pre = Conv(cin, cout) if cin != cout else None
        self.skip = ConcatSkip() if skip_mode == "concat" else ResidualSkip(cout)
        self.conv1 = Conv(2 * cout if skip_mode == "concat" else cout, cout)
        self.conv2 = Conv(cout, cout)

    def forward(self, x: torch.Tensor, enc: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        if self.pre is not None:
            x = self.pre(x)
        return self.conv2(self.conv1(self.skip(x, enc)))


class Latent(nn.Module):
    """Table 3 bottom: 3x3, 4x4 valid conv to latent x 1 x 1 (no IN), attribute concat, 4x4 transposed
    conv back to 4x4, 3x3."""

    def __init__(self, cin: int, ch: int, latent: int, num_attributes: int) -> None:
        super().__init__()
        # widens in the first conv like every level (cin = w(8), which the 8x8 level hands down;
        # equal to ch at the paper's widths, where 4 to 64 px are all 512)
        self.conv_in = Conv(cin, ch)
        self.to_latent = Conv(ch, latent, 4, norm=False, padding=0)
        self.from_latent = nn.Sequential(nn.ConvTranspose2d(latent + num_attributes, ch, 4),
                                         nn.InstanceNorm2d(ch, affine=True), nn.LeakyReLU(0.2))
        self.conv_out = Conv(ch, ch)
        self.num_attributes = num_attributes

    def forward(self, h: torch.Tensor, attributes: torch.Tensor | None) -> torch.Tensor:
        z = self.to_latent(self.conv_in(h))
        if self.num_attributes:
            if attributes is None:
                raise ValueError("this generator is conditioned on attributes; pass `attributes`")
            z = torch.cat([z, attributes.to(z.dtype).reshape(len(z), -1, 1, 1)], 1)
        return self.conv_out(self.from_latent(z))


def to_rgb(ch: int, out: int) -> nn.Sequential:
    """Table 5 left: 3x3 w, 3x3 w, 1x1 -> out (linear: images in [-1, 1] units)."""
    return nn.Sequential(Conv(ch, ch), Conv(ch, ch), nn.Conv2d(ch, out, 1))


def to_filter(ch: int) -> nn.Sequential:
    """Table 5 right: 3x3 2w, 3x3 2w, 1x1 -> 1, squashed to [0, 1]."""
    return nn.Sequential(Conv(ch, 2 * ch), Conv(2 * ch, 2 * ch), nn.Conv2d(2 * ch, 1, 1), nn.Sigmoid())


@define(kw_only=True)
class GeneratorConfig:
    image_size: int = field(default=1024, validator=_size_ok)     # top level's size
    image_channels: int = field(default=3, validator=v.gt(0))
    landmark_channels: int = field(default=1, validator=v.ge(0))  # 0: no landmark input
    num_attributes: int = field(default=0, validator=v.ge(0))     # concatenated to the latent
    base_channels: int = field(default=32, validator=v.gt(0))     # width at the top level (table 3: 32 at 1024 px)
    max_channels: int = field(default=512, validator=v.gt(0))
    latent_channels: int = field(default=512, validator=v.gt(0))
    skip: str = field(default="concat", validator=v.in_(("concat", "residual")))   # residual: conditional model
    # feature attention layers (kind `layer`) on the decoder features of named levels, keyed by the
    # level's resolution: {"32" = {type = "csa.layer"}}; each is built with channels = w(level).
    # A single table {type = ...} puts one layer at `attention_level` (0: 32 px, or the top if smaller)
    attention: dict = field(factory=dict)
    attention_level: int = field(default=0, validator=v.ge(0))


def _attention_key(key, image_size: int) -> int:
    try:
        size = int(key)
    except (TypeError, ValueError):
        size = -1
    if size < 4 or size > image_size or 2 ** int(round(math.log2(size))) != size:
        raise ConfigError(f"generator.attention: level {key!r} must be a feature resolution 4, 8, ..., {image_size} "
                          f'(the key names the level, e.g. attention = {{"8" = {{type = "csa.layer"}}}})')
    return size


class FOAMGenerator(nn.Module):
    """The FOAM completion network, a masked generator.

    Call: ``G(observed, mask, landmarks=None, attributes=None, stage=0, alpha=1.0)``
      observed   N x C x S x S in [-1, 1] at the stage's size S (0 is the grey hole fill; G zeroes
                 the hole itself, so a raw image works too)
      mask       N x 1 x S x S, 1 = hole (fractional values from average pooling are fine)
      landmarks  N x K x S x S landmark maps (K = landmark_channels), when conditioned on them
      attributes N x A in {0, 1}, when num_attributes > 0
      stage      1-based level (0: the top); alpha the growing weight (1: stabilised)
      low_mask / low_landmarks: what the fixed r-1 branch sees while growing (default: average
                 pooling of mask / landmarks, i.e. everything pooled from the top level)
    Returns {"output", "high"} and while growing also "low", the raw filters "filter_read",
    "filter_write" in [0, 1] and the transformed ones "filter_read_t", "filter_write_t".

    While growing into level r the r-1 branch runs on a snapshot of the weights taken when growing
    into r began (`freeze_previous`): truly fixed, while the shared levels keep training in the high
    branch. The snapshot is not in the state dict; the FOAM algorithm checkpoints it.

    Attention slots (`attention = {"32" = {type = "csa.layer"}}`): a feature attention layer runs on
    the decoder features of that level (after its two convs, before the next up-sampling or ToRGB),
    with the hole mask average-pooled to the level; in the fixed r-1 branch too.
    """

    roles = ("masked-generator",)
    slots = (Slot("attention", "feature-attention",
                  'per level: attention = {"32" = {type = ...}} on the decoder features (channels = the width)',
                  optional=True),)
    requires = ("landmarks", "stage")  # landmark channels and the growth stage
    conditioning = frozenset({"landmarks", "attributes", "stage", "alpha"})  # keyword inputs it takes
    output_range = "unbounded"   # linear ToRGB in [-1, 1] units

    def __init__(self, cfg: GeneratorConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or GeneratorConfig()
        self.levels = num_levels(cfg.image_size)
        w = widths(cfg.image_size, cfg.base_channels, cfg.max_channels)
        w_in = input_widths(cfg.image_size, cfg.base_channels, cfg.max_channels)
        self.widths = w
        cin = cfg.image_channels + 1 + cfg.landmark_channels
        residual = cfg.skip == "residual"
        self.from_input = nn.ModuleList([Conv(cin, c, 1) for c in w_in])
        # encoder[i] works at level index i (i >= 1); index 0 (4x4) is the latent block alone
        self.encoder = nn.ModuleList([nn.Identity()] + [EncoderLevel(w_in[i], w[i], residual)
                                                        for i in range(1, self.levels)])
        self.latent = Latent(w_in[0], w[0], cfg.latent_channels, cfg.num_attributes)
        self.decoder = nn.ModuleList([nn.Identity()] + [DecoderLevel(w[i - 1], w[i], cfg.skip)
                                                        for i in range(1, self.levels)])
        self.to_rgb = nn.ModuleList([to_rgb(c, cfg.image_channels) for c in w])
        # read filters come from the r-1 branch's last features (index i serves growth into i+1)
        self.to_filter_read = nn.ModuleList([to_filter(c) for c in w[:-1]])
        self.to_filter_write = nn.ModuleList([to_filter(c) for c in w])
        self.attention = nn.ModuleDict(self._build_attention(cfg, w))
        self._fixed: dict[str, torch.Tensor] | None = None
        self.fixed_level = 0

    @staticmethod
    def _build_attention(cfg: GeneratorConfig, w: list[int]) -> dict[str, nn.Module]:
        if not cfg.attention:
            return {}
        from genfw.plugins.foam.slots import build_attention_layer

        out = {}
        specs = cfg.attention
        if "type" in specs:
            specs = {str(cfg.attention_level or min(32, cfg.image_size)): specs}
        elif cfg.attention_level:
            raise ConfigError("generator.attention_level applies to a single attention table {type = ...}; "
                              "with per-level keys the keys name the levels")
        for key, spec in specs.items():
            size = _attention_key(key, cfg.image_size)
            out[str(size)] = build_attention_layer(spec, channels=w[num_levels(size) - 1], key=str(key))
        return out

    # --- one branch ------------------------------------------------------------------------------
    def _attend(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        layer = self.attention[str(h.shape[-1])]
        m = mask
        while m.shape[-1] > h.shape[-1]:
            m = down(m)
        from genfw.plugins.foam.slots import call_attention_layer

        return call_attention_layer(layer, h, m)

    def branch(self, x: torch.Tensor, attributes: torch.Tensor | None, level: int,
               mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Input channels at level `level` (1-based) -> (image, last decoder features). `mask` (the
        hole at the level's size) feeds the attention slots; it defaults to x's mask channel."""
        i = level - 1
        if x.shape[-1] != 4 * 2 ** i:
            raise ValueError(f"level {level} works at {4 * 2 ** i} px, got input of {x.shape[-1]} px")
        if mask is None:
            mask = x[:, self.cfg.image_channels:self.cfg.image_channels + 1]
        h = self.from_input[i](x)
        skips = []
        for j in range(i, 0, -1):
            skip, h = self.encoder[j](h)
            skips.append(skip)
        h = self.latent(h, attributes)
        if self.attention and "4" in self.attention:
            h = self._attend(h, mask)
        for j in range(1, i + 1):
            h = self.decoder[j](h, skips.pop())
            if self.attention and str(h.shape[-1]) in self.attention:
                h = self._attend(h, mask)
        return self.to_rgb[i](h), h

    def _inputs(self, observed, mask, lmap):
        parts = [(1 - mask) * observed, mask]
        if self.cfg.landmark_channels:
            if lmap is None:
                raise ValueError("this generator takes landmark channels; pass `landmarks`")
            parts.append(lmap.to(observed.dtype))
        return torch.cat(parts, 1)

    # --- the fixed previous stage ----------------------------------------------------------------
    def branch_parameters(self, level: int) -> dict[str, nn.Parameter]:
        """The parameters the branch at `level` runs on (no heads of other levels, no ToFilter)."""
        i = level - 1
        own = (f"from_input.{i}.", f"to_rgb.{i}.", "latent.", "attention.",
               *(f"encoder.{j}." for j in range(1, i + 1)), *(f"decoder.{j}." for j in range(1, i + 1)))
        return {k: p for k, p in self.named_parameters() if k.startswith(own)}

    def freeze_previous(self, level: int) -> None:
        """Snapshot the weights of the branch at `level` as the fixed G_{level} used while growing
        into level + 1 (the ToFilter heads stay trainable and are not part of it)."""
        self._fixed = {k: p.detach().clone() for k, p in self.branch_parameters(level).items()}
        self.fixed_level = int(level)

    def fixed_state(self) -> dict[str, torch.Tensor]:
        return dict(self._fixed or {})

    def load_fixed(self, level: int, tensors: dict[str, torch.Tensor]) -> None:
        names = self.branch_parameters(level)
        missing = sorted(set(names) - set(tensors))
        if missing:
            raise ValueError(f"fixed-weight snapshot lacks {missing[:3]}")
        self._fixed = {k: tensors[k].to(names[k].device, names[k].dtype).clone() for k in names}
        self.fixed_level = int(level)

    def _fixed_branch(self, x, attributes, level, mask, snapshot: bool = True):
        if self._fixed is not None and self.fixed_level == level:
            params = self._fixed
        elif snapshot:
            # the first growing call into level + 1 fixes G_level as it stands (see the class docstring)
            self.freeze_previous(level)
            params = self._fixed
        else:
            # a level grown earlier (filters shown afterwards): its snapshot is gone; the current
            # weights stand in, detached
            params = {k: p.detach() for k, p in self.branch_parameters(level).items()}
        # the branch touches only these parameters, so the rest of the module never enters
        return torch.func.functional_call(self, params, (x, None),
                                          {"attributes": attributes, "level": level, "_branch": True,
                                           "low_mask": mask})

    def forward(self, observed: torch.Tensor, mask: torch.Tensor, landmarks: torch.Tensor | None = None,
                attributes: torch.Tensor | None = None, stage: int = 0, alpha: float = 1.0,
                low_mask: torch.Tensor | None = None, low_landmarks: torch.Tensor | None = None,
                level: int = 0, _branch: bool = False) -> dict | tuple:
        # a network cast once to bf16 (inference) takes its inputs in its own dtype: fp32 masks and
        # maps would promote every product they enter to fp32, and the pass would hold both copies
        wdtype = next(self.parameters()).dtype
        if observed.dtype != wdtype:
            observed, mask, landmarks, attributes, low_mask, low_landmarks = (
                t.to(wdtype) if isinstance(t, torch.Tensor) and t.is_floating_point() else t
                for t in (observed, mask, landmarks, attributes, low_mask, low_landmarks))
        if _branch:
            return self.branch(observed, attributes, level, low_mask)
        r = stage or self.levels
        if not 1 <= r <= self.levels:
            raise ValueError(f"stage must be in 1..{self.levels}, got {stage}")
        if r == 1 or alpha >= 1.0:
            img, _ = self.branch(self._inputs(observed, mask, landmarks), attributes, r, mask)
            return {"output": img, "high": img}
        low_m = down(mask) if low_mask is None else low_mask
        low_lm = (None if landmarks is None else down(landmarks)) if low_landmarks is None else low_landmarks
        raw_read = self.read_filter(observed, mask, landmarks, attributes, r, low_m, low_lm)
        read_t = foam_transform(raw_read, alpha)
        high_obs, low_obs = foam_read(observed, mask, read_t)
        low, _ = self._fixed_branch(self._inputs(low_obs, low_m, low_lm), attributes, r - 1, low_m)
        high, feat = self.branch(self._inputs(high_obs, mask, landmarks), attributes, r, mask)
        write = self.to_filter_write[r - 1](feat)
        write_t = foam_transform(write, alpha)
        out = foam_write(high, low, mask, write_t, alpha)
        return {"output": out, "high": high, "low": low, "filter_read": raw_read, "filter_write": write,
                "filter_read_t": read_t, "filter_write_t": write_t}

    def read_filter(self, observed, mask, landmarks, attributes, level: int, low_mask=None,
                    low_landmarks=None, snapshot: bool = True) -> torch.Tensor:
        """F_read for growing into `level` (eq. 4): ToFilter on the fixed r-1 branch's features of the
        pooled observation X_G^{r-1}, up-sampled to the level's size. snapshot=False never takes a
        new snapshot (inspection of levels grown earlier)."""
        low_m = down(mask) if low_mask is None else low_mask
        low_lm = (None if landmarks is None else down(landmarks)) if low_landmarks is None else low_landmarks
        _, feat = self._fixed_branch(self._inputs(down(observed), low_m, low_lm), attributes, level - 1, low_m,
                                     snapshot)
        return up(self.to_filter_read[level - 2](feat))

    def write_filter(self, observed, mask, landmarks, attributes, level: int) -> torch.Tensor:
        """F_write of `level` as the high branch would predict it from the full observation."""
        _, feat = self.branch(self._inputs(observed, mask, landmarks), attributes, level, mask)
        return self.to_filter_write[level - 1](feat)


@define(kw_only=True)
class DiscriminatorConfig:
    image_size: int = field(default=1024, validator=_size_ok)
    image_channels: int = field(default=3, validator=v.gt(0))
    landmark_channels: int = field(default=1, validator=v.ge(0))
    num_attributes: int = field(default=0, validator=v.ge(0))     # D_attr outputs; 0: no attribute head
    base_channels: int = field(default=32, validator=v.gt(0))     # table 6: 32 after the top level (16 in)
    max_channels: int = field(default=512, validator=v.gt(0))


class DLevel(nn.Module):
    """Table 6 level: 3x3 conv keeping the width, 3x3 conv widening, down-sample."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1, self.conv2, self.down = Conv(cin, cin), Conv(cin, cout), Down()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(self.conv2(self.conv1(x)))


class FOAMDiscriminator(nn.Module):
    """Feature network F (table 6: 1x1 in, per level two 3x3 convs + down-sample) on (I, L); D_cls and
    D_attr (3x3, 4x4 valid) on the 4x4 features. While growing, the new top level fades in as in
    progressive GANs: alpha * F_r(x) + (1 - alpha) * fromInput_{r-1}(down(x)).

    Call: ``D(image, landmarks=None, stage=0, alpha=1.0, low_landmarks=None)`` with image N x C x S x S
    in [-1, 1] -> {"cls": N logits, "attr": N x A logits (when num_attributes > 0)}."""

    output = "logits"  # {"cls": logits, "attr": logits}
    conditioning = frozenset({"landmarks", "stage", "alpha"})
    requires = ("landmarks", "stage")  # landmark channels and the growth stage

    def __init__(self, cfg: DiscriminatorConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or DiscriminatorConfig()
        self.levels = num_levels(cfg.image_size)
        w = widths(cfg.image_size, cfg.base_channels, cfg.max_channels)
        w_in = input_widths(cfg.image_size, cfg.base_channels, cfg.max_channels)
        cin = cfg.image_channels + cfg.landmark_channels
        self.from_input = nn.ModuleList([Conv(cin, c, 1) for c in w_in])
        self.blocks = nn.ModuleList([nn.Identity()] + [DLevel(w_in[i], w[i]) for i in range(1, self.levels)])
        # the 4x4 features arrive with width w_in[0] (= w[0] at the paper's widths)
        self.cls = nn.Sequential(Conv(w_in[0], w[0]), nn.Conv2d(w[0], 1, 4))
        self.attr = nn.Sequential(Conv(w_in[0], w[0]), nn.Conv2d(w[0], cfg.num_attributes, 4)) \
            if cfg.num_attributes else None

    def _input(self, image, landmarks):
        if not self.cfg.landmark_channels:
            return image
        if landmarks is None:
            raise ValueError("this discriminator takes landmark channels; pass `landmarks`")
        return torch.cat([image, landmarks.to(image.dtype)], 1)

    def forward(self, image: torch.Tensor, landmarks: torch.Tensor | None = None, stage: int = 0,
                alpha: float = 1.0, low_landmarks: torch.Tensor | None = None) -> dict:
        r = stage or self.levels
        if image.shape[-1] != 4 * 2 ** (r - 1):
            raise ValueError(f"stage {r} works at {4 * 2 ** (r - 1)} px, got {image.shape[-1]} px")
        x = self._input(image, landmarks)
        h = self.from_input[r - 1](x)
        if r > 1:
            h = self.blocks[r - 1](h)
            if alpha < 1.0:
                low_lm = low_landmarks if low_landmarks is not None else (
                    None if landmarks is None else down(landmarks))
                h = alpha * h + (1 - alpha) * self.from_input[r - 2](self._input(down(image), low_lm))
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
