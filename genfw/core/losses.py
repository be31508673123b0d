"""Common GAN losses (kind `loss`): BCE / non-saturating, hinge, LSGAN, RaLSGAN.

Each loss object has ``d(real, fake)`` (discriminator loss) and ``g(fake, real=None)``
(generator loss) taking raw discriminator outputs (logits / scores, any shape, batch first).
Relativistic losses need the real scores in ``g`` too.
"""
from __future__ import annotations

import abc

import torch
import torch.nn.functional as F
from attrs import define, field


class GANLoss(torch.nn.Module, abc.ABC):
    """Interface: `d` is the discriminator's loss, `g` the generator's, on raw D outputs."""

    relativistic = False
    expects = "logits"  # what D must output for this loss (genfw.core.roles): raw scores

    @abc.abstractmethod
    def d(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """Discriminator loss."""

    @abc.abstractmethod
    def g(self, fake: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
        """Generator loss (relativistic losses need `real`)."""


class BCELoss(GANLoss):
    """Standard GAN on logits; non-saturating generator loss -log D(G(z))."""

    def __init__(self, cfg=None, from_probabilities: bool = False) -> None:
        super().__init__()
        self.from_probabilities = cfg.from_probabilities if cfg is not None else from_probabilities
        self.expects = "probabilities" if self.from_probabilities else "logits"

    def _bce(self, x: torch.Tensor, target: float) -> torch.Tensor:
        t = torch.full_like(x, target)
        if self.from_probabilities:  # networks that end in a sigmoid (LIS reference D)
            # CUDA autocast refuses BCE on probabilities; in fp32 it is safe with the clamp
            with torch.autocast(device_type=x.device.type, enabled=False):
                return F.binary_cross_entropy(x.float().clamp(1e-7, 1 - 1e-7), t.float())
        return F.binary_cross_entropy_with_logits(x, t)

    def d(self, real, fake):
        return self._bce(real, 1.0) + self._bce(fake, 0.0)

    def g(self, fake, real=None):
        return self._bce(fake, 1.0)


class HingeLoss(GANLoss):
    """Hinge: D: E[relu(1 - D(x))] + E[relu(1 + D(G(z)))]; G: -E[D(G(z))]."""

    def __init__(self, cfg=None) -> None:
        super().__init__()

    def d(self, real, fake):
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()

    def g(self, fake, real=None):
        return -fake.mean()


class LSGANLoss(GANLoss):
    """Least squares: D: E[(D(x)-1)^2] + E[D(G(z))^2]; G: E[(D(G(z))-1)^2] (each halved)."""

    def __init__(self, cfg=None) -> None:
        super().__init__()

    def d(self, real, fake):
        return 0.5 * ((real - 1) ** 2).mean() + 0.5 * (fake ** 2).mean()

    def g(self, fake, real=None):
        return 0.5 * ((fake - 1) ** 2).mean()


class RaLSGANLoss(GANLoss):
    """Relativistic average LSGAN (used by CSA).

    D: E_r[(D(x) - E_f D(y) - 1)^2] + E_f[(D(y) - E_r D(x) + 1)^2]
    G: E_r[(D(x) - E_f D(y) + 1)^2] + E_f[(D(y) - E_r D(x) - 1)^2]
    """

    relativistic = True

    def __init__(self, cfg=None) -> None:
        super().__init__()

    def d(self, real, fake):
        return ((real - fake.mean() - 1) ** 2).mean() + ((fake - real.mean() + 1) ** 2).mean()

    def g(self, fake, real=None):
        if real is None:
            raise ValueError("RaLSGAN's generator loss needs the real scores: g(fake, real)")
        return ((real - fake.mean() + 1) ** 2).mean() + ((fake - real.mean() - 1) ** 2).mean()


@define(kw_only=True)
class BCEConfig:
    from_probabilities: bool = field(default=False)  # D ends in a sigmoid (else logits)


@define(kw_only=True)
class NoConfig:
    pass


def register(registry) -> None:
    registry.register("loss", "bce", BCELoss, config=BCEConfig)
    registry.register("loss", "hinge", HingeLoss, config=NoConfig)
    registry.register("loss", "lsgan", LSGANLoss, config=NoConfig)
    registry.register("loss", "ralsgan", RaLSGANLoss, config=NoConfig)
