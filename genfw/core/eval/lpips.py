"""LPIPS (Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features"), VGG variant v0.1.

d(x, y) = sum_l mean_hw( w_l . (f_l(x) / |f_l(x)| - f_l(y) / |f_l(y)|)^2 ), with f_l the VGG-16
activations relu1_2, relu2_2, relu3_3, relu4_3, relu5_3, |.| the channel-wise L2 norm (+1e-10, as the
reference), and w_l >= 0 the learned linear heads (1x1 convs without bias). Lower = more similar.

Inputs are images in [0, 1]. The reference feeds [-1, 1] images through a ScalingLayer with
shift (-.030, -.088, -.188) and scale (.458, .448, .450): that is (2x - 1 - (2m - 1)) / 2s with
ImageNet's mean m and std s, i.e. exactly the ImageNet normalisation `VGG16Features` applies.

Weights: the trunk is the `vgg16-imagenet` asset (torchvision's file), the heads the `lpips-vgg`
asset (the lpips package's weights/v0.1/vgg.pth, picked up from an installed `lpips` package, a
cache import or an explicit path); nothing is downloaded at run time.
"""
from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from genfw.core.errors import GenfwError
from genfw.core.weights import LPIPS_VGG_CHANNELS

LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")
EPS = 1e-10


def unit_normalize(f: torch.Tensor) -> torch.Tensor:
    return f / (f.pow(2).sum(1, keepdim=True).sqrt() + EPS)


def distance_from_features(fa: list[torch.Tensor], fb: list[torch.Tensor], heads: list[torch.Tensor]) -> torch.Tensor:
    """Per-image LPIPS from per-layer features (N x C_l x H_l x W_l) and heads (1 x C_l x 1 x 1)."""
    total = None
    for a, b, w in zip(fa, fb, heads):
        d = (unit_normalize(a) - unit_normalize(b)).pow(2)
        term = (d * w.to(d.dtype).view(1, -1, 1, 1)).sum(1).mean((-2, -1))
        total = term if total is None else total + term
    return total


class LPIPS(nn.Module):
    """Frozen LPIPS-VGG; `forward(x, y)` -> length-N distances for N x C x H x W images in [0, 1]."""

    def __init__(self, vgg: str | Mapping[str, torch.Tensor] = "vgg16-imagenet",
                 heads: str | Mapping[str, torch.Tensor] = "lpips-vgg", vgg_path: str = "", heads_path: str = "") -> None:
        super().__init__()
        from genfw.core.vgg import VGG16Features
        from genfw.core import weights

        self.vgg = VGG16Features(LAYERS, weights=vgg, path=vgg_path)
        if isinstance(heads, Mapping):
            sd = dict(heads)
            weights._check_lpips_vgg(sd)
            self.heads_file, self.heads_sha256 = "", ""
        else:
            p = weights.resolve(str(heads), heads_path)
            sd = weights._checked(weights.get_asset(str(heads)), weights.read_tensor_file(p), p)
            self.heads_file, self.heads_sha256 = str(p), weights.sha256(p)
        for k, c in enumerate(LPIPS_VGG_CHANNELS):
            w = sd[f"lin{k}.model.1.weight"].float().reshape(c)
            if (w < 0).any():
                raise GenfwError(f"LPIPS head lin{k} has negative weights: not LPIPS v0.1 heads")
            self.register_buffer(f"w{k}", w.clone(), persistent=False)
        if isinstance(vgg, str):
            p = weights.resolve(vgg, vgg_path)
            self.vgg_file, self.vgg_sha256 = str(p), weights.sha256(p)
        else:
            self.vgg_file, self.vgg_sha256 = "", ""
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "LPIPS":
        return super().train(False)

    def heads(self) -> list[torch.Tensor]:
        return [getattr(self, f"w{k}") for k in range(len(LAYERS))]

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape != y.shape:
            raise GenfwError(f"LPIPS needs images of one shape, got {tuple(x.shape)} and {tuple(y.shape)}")
        fx, fy = self.vgg(x.float()), self.vgg(y.float())
        return distance_from_features([fx[n] for n in LAYERS], [fy[n] for n in LAYERS], self.heads())

    def provenance(self) -> dict:
        return {"network": "vgg16", "version": "0.1", "layers": list(LAYERS), "vgg_file": self.vgg_file,
                "vgg_sha256": self.vgg_sha256, "heads_file": self.heads_file, "heads_sha256": self.heads_sha256}
