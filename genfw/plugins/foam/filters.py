"""FOAM read/write filtering (sheet eq. 5-8): the per-pixel replacement of the uniform fade-in."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def foam_coefficients(alpha: float) -> tuple[float, float]:
    """(beta, gamma) of eq. 8: F' = 0 at alpha 0, F' = F at alpha 0.5, F' = 1 at alpha 1."""
    a = float(alpha)
    if not 0.0 <= a <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if a <= 0.5:
        return 2.0 * a, 0.0
    return 2.0 - 2.0 * a, 2.0 * a - 1.0


def foam_transform(filt: torch.Tensor, alpha: float) -> torch.Tensor:
    """Eq. 7: F' = beta * F + gamma (F in [0, 1] stays in [0, 1])."""
    beta, gamma = foam_coefficients(alpha)
    return beta * filt + gamma


def down(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, 2)


def up(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="nearest")


def down_mask(mask: torch.Tensor) -> torch.Tensor:
    # a coarse pixel is a hole if any of its fine pixels is: the low branch never sees hole content
    return F.max_pool2d(mask, 2)


def foam_read(observed: torch.Tensor, mask: torch.Tensor, read_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 5. observed: I_obs at level r (signed range, so 0 is the grey hole fill), mask 1 = hole,
    read_t: the transformed F'_read at level r. Returns (high-branch image, low-branch image at r-1)."""
    context = (1 - mask) * observed
    return read_t * context, down((1 - read_t) * context)


def foam_write(high: torch.Tensor, low: torch.Tensor, mask: torch.Tensor, write_t: torch.Tensor,
               alpha: float) -> torch.Tensor:
    """Eq. 6. high: I_r; low: I_{r-1} at level r-1 (up-sampled here); only the hole follows F'_write,
    the context uses the plain fade-in."""
    low_up = up(low)
    context = alpha * high + (1 - alpha) * low_up
    hole = write_t * high + (1 - write_t) * low_up
    return context * (1 - mask) + hole * mask


def mean_frequency(f: torch.Tensor) -> float:
    """Power-weighted mean spatial frequency of maps N x 1 x H x W, in cycles per image side.

    Each map's mean is removed (a constant filter has no frequency content and scores 0), the
    power spectrum |FFT2|^2 weights the radial frequency sqrt(kx^2 + ky^2) (kx, ky in cycles per
    image), and maps are averaged weighted by their power. Independent of the map's resolution,
    so levels can be compared: a filter tracing fine detail scores higher than a smooth blob."""
    x = f.detach().double()
    x = x - x.mean(dim=(-2, -1), keepdim=True)
    power = torch.fft.fft2(x).abs().pow(2)
    h, w = x.shape[-2:]
    ky = torch.fft.fftfreq(h, dtype=torch.float64) * h
    kx = torch.fft.fftfreq(w, dtype=torch.float64) * w
    radius = (ky[:, None] ** 2 + kx[None, :] ** 2).sqrt()
    total = float(power.sum())
    if total <= 1e-20:
        return 0.0
    return float((power * radius).sum()) / total
