"""Explicit adapters for mechanical mismatches between roles, and the identity attention layer.

A mix that would otherwise be refused at build (a tanh generator where [0, 1] images are expected,
a logit discriminator under a loss on probabilities) can be made to fit by saying so in config:
``{type = "core.range", to = "unit", generator = {...}}`` or ``{type = "core.probabilities",
discriminator = {...}}``. Nothing is converted silently: the wrapper is visible in the saved config.
"""
from __future__ import annotations

from typing import Any

import torch
from attrs import define, field, validators as v
from torch import nn

from genfw.core.errors import ConfigError
from genfw.core.roles import Slot, trait

# Data-shape hints an algorithm hands to "its generator/discriminator"; a wrapper forwards them to
# the component it wraps (whose own written keys win). 0 = not given.
PASS_THROUGH = ("image_size", "channels", "in_channels", "out_channels")


def _given(cfg) -> dict:
    return {k: getattr(cfg, k) for k in PASS_THROUGH
            if isinstance(getattr(cfg, k, None), int) and getattr(cfg, k)}


def _registry():
    from genfw.registry import get_registry

    return get_registry()


class LatentTransformed(nn.Module):
    """A latent generator with a latent transform in front of its prior noise.

    What any latent-generator slot builds for ``latent_transform = {...}``: the transform acts only
    on ``from_prior=True`` calls (encoder latents pass straight through), and its auxiliary loss
    (e.g. LIS similarity) reaches whichever phase updates this network. Traits pass through.
    """

    roles = ("latent-generator",)

    def __init__(self, generator: nn.Module, transform: nn.Module) -> None:
        super().__init__()
        self.generator = generator
        self.transform = transform
        self.latent_dim = int(generator.latent_dim)
        for name in ("output_range", "image_size", "channels"):
            if hasattr(generator, name):
                setattr(self, name, getattr(generator, name))

    def forward(self, z: torch.Tensor, from_prior: bool = True, **kw: Any) -> Any:
        if from_prior:
            z = self.transform(z)
        return self.generator(z, from_prior=from_prior, **kw)


@define(kw_only=True)
class RangeConfig:
    generator: dict = field(factory=lambda: {"type": "core.dcgan-generator"})  # any latent generator
    to: str = field(default="unit", validator=v.in_(("unit", "signed")))       # the range the slot needs
    image_size: int = field(default=0, validator=v.ge(0))
    channels: Any = 0
    in_channels: int = field(default=0, validator=v.ge(0))
    out_channels: int = field(default=0, validator=v.ge(0))


class RangeAdapter(nn.Module):
    """A latent generator whose output is mapped affinely from its declared range to `to`."""

    roles = ("latent-generator",)

    def __init__(self, generator: nn.Module, to: str) -> None:
        super().__init__()
        have = trait(generator, "output_range")
        if have not in ("unit", "signed"):
            raise ConfigError("core.range: the wrapped generator does not declare output_range "
                              "('signed' or 'unit'); set it as an attribute of the module")
        self.generator, self.frm, self.output_range = generator, have, to
        self.latent_dim = int(generator.latent_dim)
        for name in ("image_size", "channels"):
            if hasattr(generator, name):
                setattr(self, name, getattr(generator, name))

    def forward(self, z: torch.Tensor, from_prior: bool = True, **kw: Any) -> torch.Tensor:
        x = self.generator(z, from_prior=from_prior, **kw)
        if self.frm == self.output_range:
            return x
        return (x + 1) / 2 if self.output_range == "unit" else x * 2 - 1


def build_range(cfg: RangeConfig) -> RangeAdapter:
    from genfw.core.roles import build_slot

    given = _given(cfg)
    gen = build_slot(_registry(), cfg.generator, role="latent-generator", path="core.range.generator", hints=given)
    return RangeAdapter(gen, cfg.to)


@define(kw_only=True)
class ProbabilitiesConfig:
    discriminator: dict = field(factory=lambda: {"type": "core.dcgan-discriminator"})  # logits
    image_size: int = field(default=0, validator=v.ge(0))
    channels: int = field(default=0, validator=v.ge(0))
    in_channels: int = field(default=0, validator=v.ge(0))
    out_channels: int = field(default=0, validator=v.ge(0))


class Probabilities(nn.Module):
    """sigmoid(D(image, ...)): a logit discriminator for losses that take probabilities."""

    roles = ("image-discriminator",)
    output = "probabilities"

    def __init__(self, discriminator: nn.Module) -> None:
        super().__init__()
        self.discriminator = discriminator
        self.conditioning = trait(discriminator, "conditioning") or frozenset()

    def forward(self, image: torch.Tensor, **conditioning: Any) -> torch.Tensor:
        return torch.sigmoid(self.discriminator(image, **conditioning))


def build_probabilities(cfg: ProbabilitiesConfig) -> Probabilities:
    from genfw.core.roles import build_slot

    d = build_slot(_registry(), cfg.discriminator, role="image-discriminator",
                   path="core.probabilities.discriminator", hints=_given(cfg), need={"output": "logits"})
    return Probabilities(d)


@define(kw_only=True)
class IdentityConfig:
    channels: int = field(default=0, validator=v.ge(0))  # accepted for the feature-width hint; unused


class IdentityAttention(nn.Module):
    """Feature attention that returns its input: the "no attention layer" control of an ablation."""

    roles = ("feature-attention",)

    def __init__(self, cfg: IdentityConfig | None = None) -> None:
        super().__init__()

    def forward(self, features: torch.Tensor, mask: torch.Tensor, return_attention: bool = False, **context: Any):
        return (features, None) if return_attention else features


def _range_example(m):
    return (torch.randn(2, m.latent_dim),)


def _probabilities_example(m):
    size = max(8, int(getattr(type(m.discriminator), "min_image_size", 0) or 0))
    return (torch.rand(2, 3, size, size) * 2 - 1,)


def _attention_example(m):
    mask = torch.zeros(2, 1, 4, 4)
    mask[:, :, 1:3, 1:3] = 1
    return (torch.randn(2, 3, 4, 4, requires_grad=True), mask)


def register(registry) -> None:
    registry.register("generator", "range", build_range, config=RangeConfig, roles=("latent-generator",),
                      help="adapter: a latent generator's output mapped to [0, 1] (to=unit) or [-1, 1]",
                      example=_range_example,
                      tiny={"generator": {"type": "core.dcgan-generator", "image_size": 8, "latent_dim": 8,
                                          "base_channels": 4, "max_channels": 8}},
                      slots=(Slot("generator", "latent-generator", "the wrapped generator (declares its range)",
                                  need={"output_range": ("signed", "unit")}),))
    registry.register("discriminator", "probabilities", build_probabilities, config=ProbabilitiesConfig,
                      roles=("image-discriminator",), traits={"output": "probabilities"},
                      help="adapter: sigmoid on a logit discriminator (for BCE on probabilities)",
                      example=_probabilities_example,
                      tiny={"discriminator": {"type": "core.dcgan-discriminator", "image_size": 8,
                                              "base_channels": 4, "max_channels": 8}},
                      slots=(Slot("discriminator", "image-discriminator", "the wrapped logit discriminator",
                                  need={"output": "logits"}),))
    registry.register("layer", "identity-attention", IdentityAttention, config=IdentityConfig,
                      help="feature attention that changes nothing (ablation control)", example=_attention_example)


# --- iterative latent transforms at sampling time --------------------------------------------------
def latent_transforms(*modules: nn.Module) -> list[nn.Module]:
    """Latent transforms with steps (e.g. LIS stacks) anywhere inside `modules`."""
    return [m for net in modules for m in net.modules()
            if isinstance(getattr(m, "num_steps", None), int) and hasattr(m, "steps_override")]


class transform_steps:
    """Run every iterative latent transform inside `modules` for exactly `k` steps (sampling)."""

    def __init__(self, modules, k: int | str) -> None:
        self.found = latent_transforms(*modules)
        self.k = k

    def __enter__(self):
        self.saved = [(m, m.steps_override) for m in self.found]
        for m in self.found:
            m.steps_override = self.k
        return self.found

    def __exit__(self, *exc):
        for m, old in self.saved:
            m.steps_override = old
        return False
