"""Schedules (kind `scheduler`).

Two shapes, both built with ``registry.build(spec, kind="scheduler")``:

* LR schedules (`core.constant`, `core.linear-decay`, `core.step`, `core.cosine`) build a *factory*
  ``make(optimizer) -> torch.optim.lr_scheduler.LambdaLR``. The engine steps it once per training
  step, so every length is counted in steps. The multiplier is a small callable object whose
  ``__dict__`` is plain numbers, so LambdaLR's state_dict is JSON-able (checkpoints never pickle).
* `core.fade-in` builds a ``FadeIn`` progress schedule (progressive growing): from the number of
  images seen it gives the growth stage and the blend alpha. It has state_dict/load_state_dict and
  ``step()`` (advances by ``images_per_step``), so an algorithm may keep it in ``self.schedulers``
  and have it checkpointed and stepped by the engine like an LR scheduler.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import attrs
import torch
from attrs import define, field, validators as v




# --- LR multipliers (callable objects: their __dict__ is what LambdaLR checkpoints) -------------
class ConstantLR:
    def __call__(self, step: int) -> float:
        return 1.0


class LinearDecay:
    """1 for `constant_steps`, then linearly to `final` over `decay_steps` (CSA reference: 20 + 100 epochs)."""

    def __init__(self, constant_steps: int, decay_steps: int, final: float = 0.0) -> None:
        self.constant_steps, self.decay_steps, self.final = constant_steps, decay_steps, final

    def __call__(self, step: int) -> float:
        if step < self.constant_steps:
            return 1.0
        t = min(1.0, (step - self.constant_steps) / max(1, self.decay_steps))
        return 1.0 + (self.final - 1.0) * t


class StepDecay:
    """Multiply by `gamma` every `every` steps."""

    def __init__(self, every: int, gamma: float) -> None:
        self.every, self.gamma = every, gamma

    def __call__(self, step: int) -> float:
        return self.gamma ** (step // self.every)


class CosineDecay:
    """Linear warm-up over `warmup_steps`, then half a cosine from 1 to `final` at `total_steps`."""

    def __init__(self, total_steps: int, warmup_steps: int = 0, final: float = 0.0) -> None:
        self.total_steps, self.warmup_steps, self.final = total_steps, warmup_steps, final

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        span = max(1, self.total_steps - self.warmup_steps)
        t = min(1.0, (step - self.warmup_steps) / span)
        return self.final + (1.0 - self.final) * 0.5 * (1.0 + math.cos(math.pi * t))


def lambda_factory(multiplier: Callable[[int], float]) -> Callable[[torch.optim.Optimizer], Any]:
    def make(optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
        # one multiplier object per optimizer: LambdaLR restores state into it
        return torch.optim.lr_scheduler.LambdaLR(optimizer, type(multiplier)(**vars(multiplier)))
    return make


@define(kw_only=True)
class ConstantConfig:
    pass


@define(kw_only=True)
class LinearDecayConfig:
    constant_steps: int = field(default=0, validator=v.ge(0))   # steps at the initial LR
    decay_steps: int = field(default=1000, validator=v.gt(0))       # then linearly to final * LR
    final: float = field(default=0.0, validator=v.ge(0))


@define(kw_only=True)
class StepConfig:
    every: int = field(default=1000, validator=v.gt(0))
    gamma: float = field(default=0.1, validator=v.gt(0))


@define(kw_only=True)
class CosineConfig:
    total_steps: int = field(default=1000, validator=v.gt(0))
    warmup_steps: int = field(default=0, validator=v.ge(0))
    final: float = field(default=0.0, validator=v.ge(0))


# --- progressive-growing fade-in -----------------------------------------------------------------
@define(kw_only=True)
class FadeInConfig:
    first_images: int = field(default=600_000, validator=v.gt(0))   # stage 0 (4x4): stabilise only
    grow_images: int = field(default=300_000, validator=v.gt(0))    # per later stage: alpha 0 -> 1
    stabilise_images: int = field(default=430_000, validator=v.ge(0))  # then alpha = 1
    num_stages: int = field(default=1, validator=v.gt(0))           # stages in all (1 = 4x4 only)
    images_per_step: int = field(default=0, validator=v.ge(0))  # what step() adds (0: set later)


@attrs.define(frozen=True)
class Progress:
    stage: int        # 0 = 4x4, r = 4 * 2^r
    alpha: float      # blend of the newest level (1 when stabilising)
    growing: bool     # in the growing part of the stage
    done: bool        # past the last stage's end (training continues at the final level)


def fade_in_at(images: int, first_images: int, grow_images: int, stabilise_images: int,
               num_stages: int) -> Progress:
    """Stage and alpha after `images` images: stage 0 lasts first_images at alpha 1; each later
    stage grows (alpha rises linearly with images seen) then stabilises (alpha 1)."""
    if images < first_images or num_stages == 1:
        return Progress(0, 1.0, False, num_stages == 1 and images >= first_images)
    rest = images - first_images
    per = grow_images + stabilise_images
    stage = 1 + rest // per
    if stage >= num_stages:
        return Progress(num_stages - 1, 1.0, False, True)
    within = rest - (stage - 1) * per
    if within < grow_images:
        return Progress(int(stage), within / grow_images, True, False)
    return Progress(int(stage), 1.0, False, False)


class FadeIn:
    """Stateful fade-in driven by images seen; checkpointed through state_dict."""

    def __init__(self, cfg: FadeInConfig | None = None) -> None:
        self.cfg = cfg or FadeInConfig()
        self.images = 0
        self.images_per_step = self.cfg.images_per_step

    def progress(self) -> Progress:
        c = self.cfg
        return fade_in_at(self.images, c.first_images, c.grow_images, c.stabilise_images, c.num_stages)

    @property
    def alpha(self) -> float:
        return self.progress().alpha

    @property
    def stage(self) -> int:
        return self.progress().stage

    def advance(self, images: int) -> Progress:
        self.images += int(images)
        return self.progress()

    def step(self, images: int | None = None) -> None:
        self.advance(self.images_per_step if images is None else images)

    def state_dict(self) -> dict:
        return {"images": self.images, "images_per_step": self.images_per_step}

    def load_state_dict(self, state: dict) -> None:
        self.images = int(state["images"])
        self.images_per_step = int(state.get("images_per_step", self.images_per_step))


def register(registry) -> None:
    registry.register("scheduler", "constant", lambda cfg: lambda_factory(ConstantLR()), config=ConstantConfig,
                      help="constant LR (factory: optimizer -> LambdaLR)")
    registry.register("scheduler", "linear-decay",
                      lambda cfg: lambda_factory(LinearDecay(cfg.constant_steps, cfg.decay_steps, cfg.final)),
                      config=LinearDecayConfig, help="LR constant for N steps, then linear decay")
    registry.register("scheduler", "step", lambda cfg: lambda_factory(StepDecay(cfg.every, cfg.gamma)),
                      config=StepConfig, help="LR times gamma every N steps")
    registry.register("scheduler", "cosine",
                      lambda cfg: lambda_factory(CosineDecay(cfg.total_steps, cfg.warmup_steps, cfg.final)),
                      config=CosineConfig, help="LR warm-up then cosine decay")
    registry.register("scheduler", "fade-in", FadeIn, config=FadeInConfig,
                      help="progressive-growing stage and fade-in alpha from images seen")
