"""The training-algorithm interface: networks, optimizers and an ordered list of phases per step.

An algorithm never writes a training loop. The engine (genfw.core.engine) calls, per step:
``state = prepare(batch, step)``, then for each ``Phase`` of ``phases(step)``: toggles
requires_grad (only the phase's networks), zeroes their grads, ``out = phase.loss(state)``,
adds pending auxiliary losses of those networks (see genfw.core.nn.AuxLoss), back-propagates
``out["loss"]`` into the phase's networks only, clips, steps their optimizers; then
``end_step(state, step)`` for extra logs. Every entry of ``out`` is logged as ``<phase>/<key>``.
"""
from __future__ import annotations

import abc
from typing import Any, Callable, Mapping

import attrs
import torch
from torch import nn

from genfw.core.errors import GenfwError


class CapabilityError(GenfwError, NotImplementedError):
    """The algorithm does not offer this capability (e.g. sampling from an inpainting model)."""


@attrs.define
class Phase:
    """One update inside a step: which networks it trains and how their loss is computed."""

    name: str                                   # log prefix, e.g. "D", "G", "E"
    updates: tuple[str, ...]                    # keys of Algorithm.nets whose optimizers step
    loss: Callable[[dict], Mapping[str, Any]]   # state -> {"loss": total, other named terms...}


@attrs.define
class Context:
    """What an algorithm may know about the run when it builds its networks."""

    registry: Any                                     # genfw Registry, to build sub-components
    device: torch.device = attrs.field(factory=lambda: torch.device("cpu"))
    image_size: int = 64                              # training resolution (square)
    channels: int = 3                                 # image channels of the data
    num_attributes: int = 0                           # length of the batch's `attributes`
    attribute_names: list[str] = attrs.field(factory=list)
    has_landmarks: bool = False
    has_mask: bool = False                            # the run config has a [mask] table
    total_steps: int = 1000
    batch_size: int = 16
    allow_random_weights: bool = False                # explicit opt-in for pretrained assets (smoke tests)
    out_dir: str = ""


class Algorithm(abc.ABC):
    """Base class. Subclasses are registered as kind `algorithm` with an attrs config class."""

    def __init__(self, cfg: Any = None) -> None:
        self.cfg = cfg
        self.ctx: Context | None = None
        self.nets: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, Any] = {}

    # --- building (called once by the engine, in this order) ----------------------------------
    @abc.abstractmethod
    def build_networks(self, ctx: Context) -> dict[str, nn.Module]:
        """Trainable networks by name; they are checkpointed. Frozen helpers (VGG) go on ctx.device."""

    @abc.abstractmethod
    def build_optimizers(self, nets: Mapping[str, nn.Module]) -> dict[str, torch.optim.Optimizer]:
        """One optimizer per trainable network, keyed by the network's name."""

    def build_schedulers(self, optimizers: Mapping[str, torch.optim.Optimizer]) -> dict[str, Any]:
        """LR schedulers keyed like the optimizers; stepped once per step. Default: none."""
        return {}

    def setup(self, ctx: Context) -> None:
        """Build everything; the engine may wrap/move `nets` before optimizers are built."""
        self.ctx = ctx
        self.nets = dict(self.build_networks(ctx))
        for net in self.nets.values():
            net.to(ctx.device)
        self.optimizers = dict(self.build_optimizers(self.nets))
        self.schedulers = dict(self.build_schedulers(self.optimizers))

    # --- per step ------------------------------------------------------------------------------
    @abc.abstractmethod
    def phases(self, step: int) -> list[Phase]:
        """The ordered phases of this step (may depend on step, e.g. a warm-up)."""

    def prepare(self, batch: dict, step: int) -> dict:
        """Shared forward work of a step (runs with all networks requiring grad). Default: the batch."""
        return dict(batch)

    def end_step(self, state: dict, step: int) -> dict[str, float]:
        """Extra scalars to log after the phases (fade-in alpha, latent statistics, ...)."""
        return {}

    # --- state beyond networks/optimizers (history pools, growth stage, ...) ---------------------
    def extra_state(self) -> dict[str, Any]:
        """JSON-able algorithm state saved with every checkpoint."""
        return {}

    def extra_tensors(self) -> dict[str, torch.Tensor]:
        """Tensor algorithm state saved with every checkpoint (safetensors)."""
        return {}

    def load_extra(self, state: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> None:
        """Restore what extra_state / extra_tensors returned."""

    # --- optional capabilities used by the CLI (sample, reconstruct, interpolate, inpaint) --------
    def visualize(self, batch: dict, n: int) -> dict[str, torch.Tensor]:
        """Named image batches in [0, 1] written as sample grids during training."""
        try:
            return {"samples": self.sample(n)}
        except CapabilityError:
            return {}

    def sample(self, n: int, generator: torch.Generator | None = None, **options: Any) -> torch.Tensor:
        """n new images in [0, 1] (N x C x H x W)."""
        raise CapabilityError(f"{type(self).__name__} cannot sample")

    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        """Reconstructions of images in [0, 1]."""
        raise CapabilityError(f"{type(self).__name__} cannot reconstruct")

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Latent codes of images in [0, 1] (deterministic: the posterior mean)."""
        raise CapabilityError(f"{type(self).__name__} cannot encode")

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] from latent codes."""
        raise CapabilityError(f"{type(self).__name__} cannot decode")

    def inpaint(self, images: torch.Tensor, masks: torch.Tensor, **options: Any) -> dict[str, torch.Tensor]:
        """{"output": completed images in [0, 1], ...optional extras such as "attention"}."""
        raise CapabilityError(f"{type(self).__name__} cannot inpaint")

    def capabilities(self) -> set[str]:
        """Which optional capabilities this algorithm overrides."""
        names = ("sample", "reconstruct", "encode", "decode", "inpaint")
        return {n for n in names if getattr(type(self), n) is not getattr(Algorithm, n)}
