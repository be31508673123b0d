"""Landmark encodings: 68 iBUG points (N x 68 x 2, (x, y) in [0, 1]) rendered as image channels.

The paper concatenates landmarks to G's and D's inputs without saying how they are encoded; two
choices are registered as kind `layer`: `foam.sketch` (anti-aliased polylines per facial part, the
face "sketch") and `foam.dots` (one Gaussian per point). Both are parameter-free and any size.
"""
from __future__ import annotations

import torch
from attrs import define, field, validators as v
from torch import nn

# (first, last, closed) of each facial part in the iBUG 68 layout
PARTS = (
    (0, 16, False),   # jaw
    (17, 21, False),  # right brow
    (22, 26, False),  # left brow
    (27, 30, False),  # nose bridge
    (31, 35, False),  # nostrils
    (36, 41, True),   # right eye
    (42, 47, True),   # left eye
    (48, 59, True),   # outer lip
    (60, 67, True),   # inner lip
)


def sketch_segments() -> torch.Tensor:
    """S x 2 index pairs of the polyline segments."""
    pairs = []
    for a, b, closed in PARTS:
        pairs += [(i, i + 1) for i in range(a, b)]
        if closed:
            pairs.append((b, a))
    return torch.tensor(pairs, dtype=torch.long)


def _pixel_grid(size: int, like: torch.Tensor) -> torch.Tensor:
    # pixel centres in [0, 1] units, (x, y) as the landmarks
    c = (torch.arange(size, device=like.device, dtype=like.dtype) + 0.5) / size
    yy, xx = torch.meshgrid(c, c, indexing="ij")
    return torch.stack([xx, yy], -1).reshape(1, 1, size * size, 2)


def _check(landmarks: torch.Tensor) -> torch.Tensor:
    if landmarks.ndim != 3 or tuple(landmarks.shape[1:]) != (68, 2):
        raise ValueError(f"landmarks must be N x 68 x 2, got {tuple(landmarks.shape)}")
    return landmarks.float()


def render_sketch(landmarks: torch.Tensor, size: int, width: float = 0.75) -> torch.Tensor:
    """N x 1 x size x size in [0, 1]: 1 on the polylines, falling linearly to 0 at `width` pixels."""
    lm = _check(landmarks)
    seg = sketch_segments().to(lm.device)
    p = _pixel_grid(size, lm)                                   # 1 x 1 x P x 2
    d = None
    # segments in chunks bound the N x S x P temporaries at large sizes (1024 px: 1M pixels)
    chunk = max(1, (1 << 22) // (size * size))
    for k in range(0, len(seg), chunk):
        s = seg[k:k + chunk]
        a, b = lm[:, s[:, 0]][:, :, None], lm[:, s[:, 1]][:, :, None]   # N x S x 1 x 2
        ab = b - a
        t = (((p - a) * ab).sum(-1) / (ab * ab).sum(-1).clamp_min(1e-12)).clamp(0, 1)  # N x S x P
        dk = (p - (a + t[..., None] * ab)).norm(dim=-1).amin(1)
        d = dk if d is None else torch.minimum(d, dk)
    out = (1 - d * size / max(width, 1e-6)).clamp(0, 1)        # distance in pixels
    return out.reshape(-1, 1, size, size)


def render_dots(landmarks: torch.Tensor, size: int, sigma: float = 1.0) -> torch.Tensor:
    """N x 1 x size x size in [0, 1]: the max over points of a Gaussian of `sigma` pixels."""
    lm = _check(landmarks)
    p = _pixel_grid(size, lm)[:, 0]                             # 1 x P x 2
    out = None
    chunk = max(1, (1 << 22) // (size * size))
    for k in range(0, 68, chunk):
        d2 = ((p[:, None] - lm[:, k:k + chunk, None]) ** 2).sum(-1) * size * size  # N x K x P, pixels^2
        ok = torch.exp(-d2 / (2 * sigma * sigma)).amax(1)
        out = ok if out is None else torch.maximum(out, ok)
    return out.reshape(-1, 1, size, size)


@define(kw_only=True)
class SketchConfig:
    width: float = field(default=0.75, validator=v.gt(0.0))      # half line width in pixels of the target size
    relative: bool = False    # True: width is scaled by size / 64 so the sketch thickens with resolution


@define(kw_only=True)
class DotsConfig:
    sigma: float = field(default=1.0, validator=v.gt(0.0))       # Gaussian sigma in pixels of the target size
    relative: bool = False    # True: sigma is scaled by size / 64


class LandmarkSketch(nn.Module):
    """Polylines through the 68 points per facial part (jaw, brows, nose, closed eyes and lips)."""

    roles = ("landmark-renderer",)
    out_channels = 1

    def __init__(self, cfg: SketchConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or SketchConfig()

    def forward(self, landmarks: torch.Tensor, size: int) -> torch.Tensor:
        w = self.cfg.width * (size / 64 if self.cfg.relative else 1.0)
        return render_sketch(landmarks, int(size), max(w, 0.5))


class LandmarkDots(nn.Module):
    """One Gaussian dot per landmark."""

    roles = ("landmark-renderer",)
    out_channels = 1

    def __init__(self, cfg: DotsConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or DotsConfig()

    def forward(self, landmarks: torch.Tensor, size: int) -> torch.Tensor:
        s = self.cfg.sigma * (size / 64 if self.cfg.relative else 1.0)
        return render_dots(landmarks, int(size), max(s, 0.3))


def landmarks_example(module: nn.Module) -> dict:
    g = torch.Generator().manual_seed(0)
    return {"landmarks": 0.2 + 0.6 * torch.rand(2, 68, 2, generator=g), "size": 16}
