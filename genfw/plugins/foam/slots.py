"""FOAM's slots: attention layers at named generator levels and the discriminator slot.

Feature attention layer role (genfw.core.roles.FeatureAttention): ``layer(features N x C x H x W,
mask N x 1 x H x W at feature resolution, 1 = hole) -> N x C x H x W``; `channels` is passed as a
build default (the level's width).

Discriminator slot (`algorithm.discriminator`) with `discriminator_conditioning`:
  "full": D(image, landmarks, stage=, alpha=, low_landmarks=) -> {"cls", "attr"?} or scores; D must
          declare conditioning {stage, alpha, landmarks} (foam.discriminator does)
  "none": D(image) -> logits of any shape, judged at the run's image size (the stage's images are
          up-sampled to it); no landmarks, no stage / alpha, no attribute head (no attribute loss).
A wrong mix is one ConfigError line from genfw.core.roles.build_slot, naming the slot.
"""
from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F
from torch import nn

from genfw import ConfigError

FULL_CONDITIONING = frozenset({"landmarks", "stage", "alpha"})
CONDITIONINGS = ("full", "none")
NONE_FIX = ('set algorithm.discriminator_conditioning = "none" to judge images alone (up-sampled to the run\'s '
            'size, no landmarks, no attribute loss), or use foam.discriminator')


def build_attention_layer(spec, channels: int, key: str) -> nn.Module:
    from genfw.core.roles import build_slot, sub_path
    from genfw.registry import get_registry

    return build_slot(get_registry(), spec, role="feature-attention", path=sub_path(f"attention.{key}", "foam.generator"),
                      hints={"channels": channels})


def call_attention_layer(layer: nn.Module, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    out = layer(features, mask)
    if isinstance(out, tuple):
        out = out[0]
    if out.shape != features.shape:
        raise ConfigError(f"attention layer {type(layer).__name__} returned {tuple(out.shape)} for features "
                          f"{tuple(features.shape)}; a feature attention layer keeps the shape")
    return out.to(features.dtype)


def _accepts(module: nn.Module, name: str) -> bool:
    try:
        params = inspect.signature(module.forward).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind == p.VAR_KEYWORD for p in params.values())


def call_discriminator(module: nn.Module, conditioning: str, image: torch.Tensor, lmap, low_lmap,
                       stage: int, alpha: float, image_size: int) -> dict:
    if conditioning == "full":
        extra = {"low_landmarks": low_lmap} if low_lmap is not None and _accepts(module, "low_landmarks") else {}
        out = module(image, landmarks=lmap, stage=stage, alpha=alpha, **extra)
    else:
        if image.shape[-1] != image_size:
            image = F.interpolate(image, size=(image_size, image_size), mode="bilinear", align_corners=False)
        out = module(image)
    if isinstance(out, dict):
        return out
    return {"cls": out}
