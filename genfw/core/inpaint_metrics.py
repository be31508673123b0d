"""Inpainting metrics (CSA paper tables 1-2): L1 %, L2 %, PSNR, SSIM, overall and per hole-ratio bin.

Images are N x C x H x W in [0, 1]. L1 and L2 are the mean absolute / squared error over the whole
image in percent (the known region is pasted back, so it contributes zero, as in the paper's
tables); PSNR is 10 log10(1 / MSE) per image; SSIM is Wang et al.'s with an 11x11 Gaussian window
(sigma 1.5), K1 = 0.01, K2 = 0.03, data range 1, averaged over valid window positions and
channels (scikit-image's `gaussian_weights=True, use_sample_covariance=False` convention).
"""
from __future__ import annotations

import math
from typing import Iterable

import torch
import torch.nn.functional as F
from attrs import define, field

BINS = ((0.1, 0.2), (0.2, 0.3), (0.3, 0.4), (0.4, 0.5), (0.5, 0.6))
METRICS = ("l1", "l2", "psnr", "ssim")
_MAX_PSNR = 100.0  # identical images: a finite cap so averages stay finite


def _gaussian(size: int, sigma: float, dtype, device) -> torch.Tensor:
    x = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-x * x / (2 * sigma * sigma))
    return g / g.sum()


def ssim_maps(a: torch.Tensor, b: torch.Tensor, window: int = 11, sigma: float = 1.5,
              k1: float = 0.01, k2: float = 0.03) -> tuple[torch.Tensor, torch.Tensor]:
    """(luminance, contrast-structure) maps at valid window positions, images in [0, 1], in float64."""
    a, b = a.double(), b.double()
    c = a.shape[1]
    win = min(window, a.shape[-2], a.shape[-1])
    win -= 1 - win % 2  # odd
    g = _gaussian(win, sigma, a.dtype, a.device)
    kx = g.view(1, 1, 1, -1).repeat(c, 1, 1, 1)
    ky = g.view(1, 1, -1, 1).repeat(c, 1, 1, 1)

    def blur(x):  # separable Gaussian, valid positions only
        return F.conv2d(F.conv2d(x, kx, groups=c), ky, groups=c)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a ** 2
    var_b = blur(b * b) - mu_b ** 2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = k1 ** 2, k2 ** 2
    lum = (2 * mu_a * mu_b + c1) / (mu_a ** 2 + mu_b ** 2 + c1)
    cs = (2 * cov + c2) / (var_a + var_b + c2)
    return lum, cs


def ssim(a: torch.Tensor, b: torch.Tensor, window: int = 11, sigma: float = 1.5,
         k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """Per-image SSIM (length N) of images in [0, 1]."""
    lum, cs = ssim_maps(a, b, window, sigma, k1, k2)
    return (lum * cs).flatten(1).mean(1).float()


def per_image(output: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """{"l1", "l2" (percent), "psnr" (dB), "ssim"}: one value per image."""
    diff = (output.double() - target.double()).flatten(1)
    mse = (diff ** 2).mean(1)
    psnr = torch.where(mse > 0, 10 * torch.log10(1 / mse.clamp_min(1e-30)), torch.full_like(mse, _MAX_PSNR))
    return {"l1": (diff.abs().mean(1) * 100).float(), "l2": (mse * 100).float(),
            "psnr": psnr.clamp(max=_MAX_PSNR).float(), "ssim": ssim(output, target)}


def bin_label(lo: float, hi: float) -> str:
    return f"{round(lo * 100)}-{round(hi * 100)}%"


class InpaintScores:
    """Accumulates per-image scores with their hole ratios; `summary()` gives overall and per bin."""

    def __init__(self, bins: Iterable[tuple[float, float]] = BINS) -> None:
        self.bins = tuple(bins)
        self.values: dict[str, list[float]] = {m: [] for m in METRICS}
        self.ratios: list[float] = []

    def update(self, output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> None:
        scores = per_image(output, target)
        for m in METRICS:
            self.values[m].extend(scores[m].tolist())
        self.ratios.extend(mask.float().flatten(1).mean(1).tolist())

    def _mean(self, keep: list[bool]) -> dict[str, float]:
        n = sum(keep)
        out: dict[str, float] = {"count": n}
        for m in METRICS:
            vals = [v for v, k in zip(self.values[m], keep) if k]
            out[m] = sum(vals) / n if n else math.nan
        return out

    def summary(self) -> dict:
        overall = self._mean([True] * len(self.ratios))
        bins = {}
        for i, (lo, hi) in enumerate(self.bins):
            last = i == len(self.bins) - 1
            keep = [lo <= r < hi or (last and r == hi) for r in self.ratios]
            bins[bin_label(lo, hi)] = self._mean(keep)
        return {"overall": overall, "bins": bins}


def format_table(summary: dict) -> str:
    """Rows = metrics, columns = hole-ratio bins then overall (the layout of the paper's table 2)."""
    cols = [(k, v) for k, v in summary["bins"].items()] + [("overall", summary["overall"])]
    head = f"{'metric':<8}" + "".join(f"{k:>10}" for k, _ in cols)
    lines = [head, "-" * len(head)]
    fmt = {"l1": "{:.2f}%", "l2": "{:.2f}%", "psnr": "{:.2f}", "ssim": "{:.3f}"}
    for m in METRICS:
        cells = ["-" if not v["count"] else fmt[m].format(v[m]) for _, v in cols]
        lines.append(f"{m.upper():<8}" + "".join(f"{c:>10}" for c in cells))
    lines.append(f"{'images':<8}" + "".join(f"{v['count']:>10}" for _, v in cols))
    return "\n".join(lines)


@define(kw_only=True)
class InpaintMetricConfig:
    bins: list = field(factory=lambda: [list(b) for b in BINS])  # hole-ratio bins [lo, hi)


def _build_scores(cfg: InpaintMetricConfig) -> InpaintScores:
    return InpaintScores(tuple(tuple(b) for b in cfg.bins))


def register(registry) -> None:
    registry.register("metric", "inpaint", _build_scores, config=InpaintMetricConfig,
                      help="L1 %, L2 %, PSNR, SSIM overall and per hole-ratio bin (CSA table 2)")
