"""`foam.filter`: FOAM's read/write filters as a drop-in feature attention layer (kind `layer`).

In FOAM the read filter decides which known context enters the coarse branch and the write filter
decides, per hole pixel, how much of the fine branch's output replaces the coarse one's (eq. 5-6).
On one feature map the two branches are the features themselves (fine) and their `scale`-times
coarser summary (coarse), so the block is

    F_read, F_write = ToFilter_r(x), ToFilter_w(x)                       (table 5 heads, in [0, 1])
    coarse = up( pool((1 - F_read) (1 - M) x) / pool((1 - F_read) (1 - M)) )   read: weighted known context
    out    = (1 - M) x + M (F_write x + (1 - F_write) coarse)                   write: holes only

so known positions pass unchanged and each hole feature is a learned per-pixel mix of its own
(fine, high-frequency) value and the read-weighted coarse context. A coarse cell without known
context falls back to the plain mean of its features. Context keys: `alpha` applies eq. 7-8's
transform to both filters (F' = 0 at alpha 0, F at 0.5, 1 at 1); other keys are ignored.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from attrs import define, field, validators as v
from torch import nn

from genfw.plugins.foam.filters import foam_transform
from genfw.plugins.foam.networks import to_filter


@define(kw_only=True)
class FilterConfig:
    channels: int = field(default=64, validator=v.gt(0))   # feature width (the parent passes it)
    scale: int = field(default=2, validator=v.ge(2))       # coarse branch: this many times coarser


class FOAMFilter(nn.Module):
    """FOAM read/write filter block on features: ``(features, mask, **context) -> features``."""

    roles = ("feature-attention",)

    def __init__(self, cfg: FilterConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or FilterConfig()
        self.read = to_filter(cfg.channels)
        self.write = to_filter(cfg.channels)

    def coarse(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        k = self.cfg.scale
        num = F.avg_pool2d(x * weight, k, ceil_mode=True)
        den = F.avg_pool2d(weight, k, ceil_mode=True)
        plain = F.avg_pool2d(x, k, ceil_mode=True)
        pooled = torch.where(den > 1e-6, num / den.clamp_min(1e-6), plain)
        return F.interpolate(pooled, size=x.shape[-2:], mode="nearest")

    def forward(self, x: torch.Tensor, mask: torch.Tensor, return_attention: bool = False, **context):
        if mask.shape[0] != x.shape[0] or mask.shape[-2:] != x.shape[-2:]:
            raise ValueError(f"foam.filter: mask {tuple(mask.shape)} must be N x 1 x H x W of features {tuple(x.shape)}")
        if x.shape[1] != self.cfg.channels:
            raise ValueError(f"foam.filter was built for {self.cfg.channels} channels, got {x.shape[1]}")
        m = mask.to(x.dtype)
        f_read, f_write = self.read(x), self.write(x)
        alpha = context.get("alpha")
        if alpha is not None:
            f_read, f_write = foam_transform(f_read, float(alpha)), foam_transform(f_write, float(alpha))
        coarse = self.coarse(x, (1 - f_read) * (1 - m))
        out = (1 - m) * x + m * (f_write * x + (1 - f_write) * coarse)
        if return_attention:
            return out, torch.cat([f_read, f_write], 1)
        return out


def filter_example(module: FOAMFilter):
    g = torch.Generator().manual_seed(0)
    c = module.cfg.channels
    x = torch.rand(2, c, 6, 6, generator=g, requires_grad=True)
    mask = torch.zeros(2, 1, 6, 6)
    mask[0, :, 1:4, 2:5] = 1
    mask[1, :, 3:6, 0:2] = 1
    return (x, mask)
