"""A small MLP generator and a pixel-norm layer: enough to show every registration path."""
import torch
from attrs import define, field, validators as v
from torch import nn


@define(kw_only=True)
class MLPGeneratorConfig:
    latent_dim: int = field(default=64, validator=v.ge(1))    # z size
    hidden: int = field(default=256, validator=v.ge(1))       # hidden width
    image_size: int = field(default=32, validator=v.ge(4))    # output side
    channels: int = field(default=3, validator=v.in_((1, 3)))  # output channels


class MLPGenerator(nn.Module):
    """z -> image in [0, 1] through two hidden layers."""

    output_range = "unit"  # declared so genfw checks the slot it is put in (ends in a sigmoid)

    def __init__(self, cfg: MLPGeneratorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.latent_dim = cfg.latent_dim
        out = cfg.channels * cfg.image_size ** 2
        self.net = nn.Sequential(nn.Linear(cfg.latent_dim, cfg.hidden), nn.LeakyReLU(0.2),
                                 nn.Linear(cfg.hidden, cfg.hidden), nn.LeakyReLU(0.2),
                                 nn.Linear(cfg.hidden, out), nn.Sigmoid())

    def forward(self, z: torch.Tensor, from_prior: bool = True, **_: object) -> torch.Tensor:
        s = self.cfg.image_size
        return self.net(z).view(z.shape[0], self.cfg.channels, s, s)


@define(kw_only=True)
class PixelNormConfig:
    eps: float = field(default=1e-8, validator=v.gt(0))  # added under the square root


class PixelNorm(nn.Module):
    """Normalise each feature vector to unit RMS across channels (no parameters)."""

    def __init__(self, cfg: PixelNormConfig) -> None:
        super().__init__()
        self.eps = cfg.eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + self.eps)
