"""Image files <-> tensors in [0, 1], and sample grids."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from genfw.core.errors import GenfwError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm")


def read_image(path: str | Path, channels: int = 3) -> torch.Tensor:
    """C x H x W float in [0, 1]; grey, palette and RGBA are converted. GenfwError if unreadable."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise GenfwError(f"image not found: {p}")
    try:
        with Image.open(p) as im:
            im = im.convert("L" if channels == 1 else "RGB")
            arr = np.asarray(im, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise GenfwError(f"cannot read image {p}: {exc}") from None
    t = torch.from_numpy(arr.copy())
    return t.unsqueeze(0) if t.ndim == 2 else t.permute(2, 0, 1)


def resize(img: torch.Tensor, size: int | tuple[int, int], mode: str = "area") -> torch.Tensor:
    """Resize C x H x W or N x C x H x W; 'area' when shrinking keeps detail without aliasing."""
    hw = (size, size) if isinstance(size, int) else tuple(size)
    x = img.unsqueeze(0) if img.ndim == 3 else img
    if tuple(x.shape[-2:]) == hw:
        return img
    shrinking = x.shape[-2] >= hw[0] and x.shape[-1] >= hw[1]
    if mode == "area" and not shrinking:
        mode = "bicubic"
    kw = {"align_corners": False} if mode in ("bilinear", "bicubic") else {}
    y = F.interpolate(x, size=hw, mode=mode, **kw).clamp(0, 1)
    return y[0] if img.ndim == 3 else y


def center_crop(img: torch.Tensor) -> torch.Tensor:
    """Largest centred square of C x H x W."""
    h, w = img.shape[-2:]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return img[..., top:top + s, left:left + s]


def load_image(path: str | Path, size: int | None = None, channels: int = 3) -> torch.Tensor:
    """1 x C x size x size in [0, 1]: read, centre-crop to square, resize."""
    img = read_image(path, channels)
    if size is not None:
        img = resize(center_crop(img), size)
    return img.unsqueeze(0)


def to_pil(img: torch.Tensor) -> Image.Image:
    x = img.detach().float().cpu().clamp(0, 1)
    if x.ndim == 4:
        x = x[0]
    arr = (x.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    return Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr)


def make_grid(images: torch.Tensor, nrow: int = 8, pad: int = 2) -> torch.Tensor:
    """N x C x H x W -> C x H' x W' with white padding."""
    x = images.detach().float().cpu().clamp(0, 1)
    n, c, h, w = x.shape
    nrow = max(1, min(nrow, n))
    rows = (n + nrow - 1) // nrow
    grid = torch.ones(c, rows * (h + pad) + pad, nrow * (w + pad) + pad)
    for i in range(n):
        r, k = divmod(i, nrow)
        grid[:, pad + r * (h + pad):pad + r * (h + pad) + h, pad + k * (w + pad):pad + k * (w + pad) + w] = x[i]
    return grid


def save_image(img: torch.Tensor, path: str | Path) -> Path:
    """Write atomically (temp file + rename) so a crash never leaves half a PNG."""
    p = Path(path).expanduser()
    if p.parent and not p.parent.exists():
        p.parent.mkdir(parents=True, exist_ok=True)
    suffix = p.suffix.lower() or ".png"
    fd, tmp = tempfile.mkstemp(dir=p.parent, suffix=suffix)
    os.close(fd)
    try:
        to_pil(img).save(tmp)
        os.replace(tmp, p)
    except (OSError, ValueError) as exc:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise GenfwError(f"cannot write image {p}: {exc}") from None
    return p


def save_grid(images: torch.Tensor, path: str | Path, nrow: int = 8) -> Path:
    return save_image(make_grid(images, nrow=nrow), path)
