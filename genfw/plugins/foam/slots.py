"""FOAM's slots: attention layers at named generator levels and the discriminator slot.

Feature attention layer convention (kind `layer`): ``layer(features N x C x H x W, mask N x 1 x H x W
at feature resolution, 1 = hole) -> N x C x H x W``; `channels` is passed as a build default.

Discriminator slot (`algorithm.discriminator`) with `discriminator_conditioning`:
  "full": D(image, landmarks, stage=, alpha=, low_landmarks=) -> {"cls", "attr"?} (foam.discriminator)
  "none": D(image) -> logits of any shape, judged at the run's image size (the stage's images are
          up-sampled to it); no landmarks, no stage / alpha, no attribute head.
The checks here are the single place where a wrong mix becomes a one-line ConfigError.
"""
from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F
from torch import nn

from genfw import ConfigError, get_registry

FULL_CONDITIONING = ("landmarks", "stage", "alpha")
CONDITIONINGS = ("full", "none")


def build_attention_layer(spec, channels: int, path: str) -> nn.Module:
    registry = get_registry()
    if isinstance(spec, str):
        spec = {"type": spec}
    if not isinstance(spec, dict) or "type" not in spec:
        raise ConfigError(f"{path}: expected a table with a 'type' key naming a layer, got {spec!r}")
    try:
        registry.get(str(spec["type"]), "layer")
    except Exception as exc:  # noqa: BLE001 - unknown name: the registry's message has the suggestions
        raise ConfigError(f"{path}: {exc}") from None
    layer = registry.build(spec, kind="layer", defaults={"channels": channels}, path=path)
    params = _forward_params(layer)
    if params is not None and len([p for p in params.values() if p.default is inspect.Parameter.empty
                                   and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]) > 2:
        raise ConfigError(f"{path}: {spec['type']} is not a feature attention layer "
                          "(layer(features, mask) -> features); use e.g. csa.layer or foam.filter")
    return layer


def call_attention_layer(layer: nn.Module, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    out = layer(features, mask)
    if isinstance(out, tuple):
        out = out[0]
    if out.shape != features.shape:
        raise ConfigError(f"attention layer {type(layer).__name__} returned {tuple(out.shape)} for features "
                          f"{tuple(features.shape)}; a feature attention layer keeps the shape")
    return out.to(features.dtype)


def _forward_params(module: nn.Module) -> dict[str, inspect.Parameter] | None:
    try:
        return dict(inspect.signature(module.forward).parameters)
    except (TypeError, ValueError):
        return None


def discriminator_takes(module: nn.Module) -> set[str]:
    """Which of FOAM's D conditionings the module's forward accepts (all of them with **kwargs)."""
    params = _forward_params(module)
    if params is None or any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return set(FULL_CONDITIONING)
    return {k for k in FULL_CONDITIONING if k in params}


def check_discriminator(module: nn.Module, name: str, conditioning: str, path: str) -> None:
    if conditioning == "full":
        missing = [k for k in FULL_CONDITIONING if k not in discriminator_takes(module)]
        if missing:
            raise ConfigError(
                f"{path}: {name} takes no {'/'.join(missing)} conditioning that foam.algorithm passes to its "
                f"discriminator; set algorithm.discriminator_conditioning = \"none\" to judge images alone "
                f"(up-sampled to the run's size, no attribute loss) or use foam.discriminator")


def call_discriminator(module: nn.Module, conditioning: str, image: torch.Tensor, lmap, low_lmap,
                       stage: int, alpha: float, image_size: int) -> dict:
    if conditioning == "full":
        params = _forward_params(module)
        extra = {} if low_lmap is None or (params is not None and "low_landmarks" not in params and not any(
            p.kind == p.VAR_KEYWORD for p in params.values())) else {"low_landmarks": low_lmap}
        out = module(image, lmap, stage=stage, alpha=alpha, **extra)
    else:
        if image.shape[-1] != image_size:
            image = F.interpolate(image, size=(image_size, image_size), mode="bilinear", align_corners=False)
        out = module(image)
    if isinstance(out, dict):
        return out
    return {"cls": out}
