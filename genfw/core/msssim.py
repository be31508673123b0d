"""MS-SSIM (Wang, Simoncelli & Bovik 2003) and the sample-diversity score built on it.

Diversity as in IntroVAE's table 2 (after PGGAN / AC-GAN): the mean MS-SSIM between random pairs of
distinct images of one set; lower means more diverse. Real data gives the reference value.

Scales: the standard five weights (0.0448, 0.2856, 0.3001, 0.2363, 0.1333) with 2x average-pool
between scales. Reference implementations refuse images under ~161 px; here the number of scales
is cut to those whose side still holds the 11-pixel window (128 px: 4 scales, 32 px: 2) and the
used weights are renormalised to sum to 1, so small images get a documented, comparable value.
Negative contrast-structure means are clamped at 0 before the weighted product.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from genfw.core.inpaint_metrics import ssim_maps

WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def num_scales(size: int, window: int = 11) -> int:
    """Scales whose side is still >= the window (at least 1, at most 5)."""
    if size < window:
        return 1
    return max(1, min(len(WEIGHTS), int(math.floor(math.log2(size / window))) + 1))


def ms_ssim(a: torch.Tensor, b: torch.Tensor, window: int = 11, scales: int = 0) -> torch.Tensor:
    """Per-image MS-SSIM (length N) of N x C x H x W images in [0, 1]."""
    m = scales or num_scales(min(a.shape[-2:]), window)
    w = torch.tensor(WEIGHTS[:m], dtype=torch.float64, device=a.device)
    w = w / w.sum()
    a, b = a.double(), b.double()
    terms = []
    for j in range(m):
        lum, cs = ssim_maps(a, b, window)
        if j == m - 1:
            terms.append((lum * cs).flatten(1).mean(1))
        else:
            terms.append(cs.flatten(1).mean(1))
            a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
    vals = torch.stack(terms, dim=1).clamp_min(0)  # N x m
    return torch.prod(vals ** w, dim=1).float()


def diversity(images: torch.Tensor, pairs: int = 1000, generator: torch.Generator | None = None,
              batch_size: int = 64) -> float:
    """Mean MS-SSIM over `pairs` random pairs of distinct images (lower = more diverse)."""
    n = images.shape[0]
    if n < 2:
        raise ValueError("diversity needs at least two images")
    i = torch.randint(0, n, (pairs,), generator=generator)
    j = (i + torch.randint(1, n, (pairs,), generator=generator)) % n  # never the same image
    total = 0.0
    for s in range(0, pairs, batch_size):
        total += float(ms_ssim(images[i[s:s + batch_size]], images[j[s:s + batch_size]]).sum())
    return total / pairs
