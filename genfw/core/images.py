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


DEFAULT_MAX_PIXELS = 2**28  # 268 Mpx (16384 x 16384): far above any photo, below a decompression bomb
MAX_PIXELS_ENV = "GENFW_MAX_IMAGE_PIXELS"
FLOAT_TOLERANCE = 1e-3  # float images may overshoot [0, 1] by rounding; more than this is not [0, 1] data


def max_image_pixels() -> int:
    """The pixel limit for any image genfw opens: $GENFW_MAX_IMAGE_PIXELS or 2**28."""
    raw = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_PIXELS
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if limit <= 0:
        raise GenfwError(f"{MAX_PIXELS_ENV}={raw!r} is not a positive integer (pixels, e.g. {DEFAULT_MAX_PIXELS})")
    return limit


def open_image(p: Path, what: str = "image") -> Image.Image:
    """PIL image (lazy: header only) with the pixel limit checked before any pixel is decoded."""
    limit = max_image_pixels()
    old = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # PIL's own bomb check would raise first, without saying how to lift it
    try:
        im = Image.open(p)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise GenfwError(f"cannot read {what} {p}: {exc}") from None
    finally:
        Image.MAX_IMAGE_PIXELS = old
    w, h = im.size
    if w * h > limit:
        im.close()
        raise GenfwError(f"{what} {p} is {w}x{h} = {w * h / 1e6:.0f} Mpx, over the limit of {limit / 1e6:.0f} Mpx; "
                         f"if the file is trusted, raise it with {MAX_PIXELS_ENV}={w * h}")
    return im


def image_to_unit(im: Image.Image, channels: int, name: str = "image") -> np.ndarray:
    """H x W x C float32 in [0, 1] from any PIL mode. 8-bit modes go through PIL's conversion;
    16-bit integer images are divided by 65535 and float images taken as [0, 1] intensities, so
    high bit depths are scaled, never clipped at 255."""
    mode = im.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        arr = np.asarray(im)
        if mode == "F":
            arr = arr.astype(np.float32, copy=False)
            if not np.isfinite(arr).all():
                raise GenfwError(f"{name} is a float image with NaN or Inf pixels")
            lo, hi = float(arr.min()), float(arr.max())
            if lo < -FLOAT_TOLERANCE or hi > 1 + FLOAT_TOLERANCE:
                raise GenfwError(f"{name} is a float image with values in [{lo:.4g}, {hi:.4g}]; genfw reads float "
                                 "images as [0, 1] intensities: rescale it or save it as 8/16-bit")
            arr = np.clip(arr, 0.0, 1.0)
        else:
            lo, hi = int(arr.min()), int(arr.max())
            if lo < 0 or hi > 65535:
                raise GenfwError(f"{name} is a 32-bit integer image with values in [{lo}, {hi}]; genfw reads "
                                 "8/16-bit integer or [0, 1] float images")
            arr = arr.astype(np.float32) / 65535.0
        arr = arr[..., None]
        return np.repeat(arr, channels, axis=2) if channels == 3 else arr
    out = np.asarray(im.convert("L" if channels == 1 else "RGB"))
    out = out[..., None] if out.ndim == 2 else out
    unit = out.astype(np.float32)
    unit /= 255.0
    return unit


def _unit_tensor(im: Image.Image, channels: int, name: str) -> torch.Tensor:
    """C x H x W float32 in [0, 1], converted one channel at a time from 8-bit files: the decoded
    bytes and the float result are all that is ever held (a 10000 x 10000 RGB photo: 0.3 + 1.2 GB)."""
    if im.mode.startswith("I;16") or im.mode in ("I", "F"):
        return torch.from_numpy(image_to_unit(im, channels, name)).permute(2, 0, 1)
    want = "L" if channels == 1 else "RGB"
    arr = np.array(im if im.mode == want else im.convert(want))  # no extra copy when already `want`
    im.close()  # the decoded pixels now live in `arr` only
    return _planes_to_unit(arr)


def _planes_to_unit(arr: np.ndarray) -> torch.Tensor:
    """H x W (x C) uint8 -> C x H x W float32 / 255, one plane at a time (no full-size temporaries)."""
    arr = arr[..., None] if arr.ndim == 2 else arr
    out = torch.empty(arr.shape[2], arr.shape[0], arr.shape[1])
    for c in range(arr.shape[2]):
        out[c].copy_(torch.from_numpy(np.ascontiguousarray(arr[..., c])))
    return out.div_(255.0)


def read_mask_planes(im: Image.Image) -> torch.Tensor:
    """C x H x W float in [0, 1] of a mask file: one plane when the file is grey (even if stored as
    RGB: the planes are compared in 8 bits first), three when it really has colour, so the mask
    checks see the colour and a large grey mask costs one float plane, not three."""
    if im.mode in ("1", "L", "P") and not (im.mode == "P" and im.palette and im.palette.mode != "L"):
        if im.mode == "P":
            arr = np.array(im.convert("RGB"))
            if not (np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2])):
                return _planes_to_unit(arr)
            return _planes_to_unit(arr[..., 0])
        return _planes_to_unit(np.array(im.convert("L")))
    if im.mode.startswith("I;16") or im.mode in ("I", "F"):
        return torch.from_numpy(image_to_unit(im, 1, "mask")).permute(2, 0, 1)
    arr = np.array(im if im.mode == "RGB" else im.convert("RGB"))
    if np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2]):
        return _planes_to_unit(arr[..., 0])
    return _planes_to_unit(arr)


def read_image(path: str | Path, channels: int = 3) -> torch.Tensor:
    """C x H x W float in [0, 1]; grey, palette, RGBA, 16-bit and float files are converted (high bit
    depths scaled, not clipped). GenfwError if unreadable or over the pixel limit."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise GenfwError(f"image not found: {p}")
    im = open_image(p)
    try:
        with im:
            return _unit_tensor(im, channels, name=f"image {p}")
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise GenfwError(f"cannot read image {p}: {exc}") from None


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


BAND_ROWS = 64  # rows per band when full-resolution images are converted or composited


def to_pil(img: torch.Tensor) -> Image.Image:
    """[0, 1] C x H x W (or 1 x C x H x W) -> 8-bit PIL image, converted band by band so a
    full-resolution image needs no float temporaries of its own size."""
    x = img.detach()
    if x.ndim == 4:
        x = x[0]
    c, h, w = x.shape
    arr = np.empty((h, w, c), np.uint8)
    for y0 in range(0, h, BAND_ROWS):
        band = x[:, y0:y0 + BAND_ROWS].float().cpu().clamp(0, 1).mul_(255).add_(0.5)
        arr[y0:y0 + BAND_ROWS] = band.to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(arr[..., 0] if c == 1 else arr)


def _cubic_taps(n_in: int, n_out: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(index, weight), each n_out x 4: torch's bicubic resampling (align_corners=False) along one
    axis, read off F.interpolate applied to the unit vectors, so it matches F.interpolate exactly."""
    basis = torch.eye(n_in).view(n_in, 1, n_in, 1)
    rows = F.interpolate(basis, size=(n_out, 1), mode="bicubic", align_corners=False).view(n_in, n_out).t()
    k = min(4, n_in)
    _, idx = rows.abs().topk(k, dim=1)
    return idx, rows.gather(1, idx)


def paste_holes(image: torch.Tensor, hole: torch.Tensor, small: torch.Tensor) -> torch.Tensor:
    """`image` (C x H x W) with its hole pixels (hole: 1 x H x W, > 0.5) replaced by `small`
    (C x h x w, the model's completion at its working size) resized bicubically to H x W.

    Same result as resizing `small` to H x W and selecting, but done in bands of rows: the
    memory beyond the input and the output is a few bands, whatever the image size (the naive
    way holds three more full-size float images)."""
    c, h, w = image.shape
    small = small.detach().float().cpu()
    across = F.interpolate(small.unsqueeze(0), size=(small.shape[-2], w), mode="bicubic",
                           align_corners=False)[0]  # C x h_small x W: the x pass, once
    idx, wts = _cubic_taps(small.shape[-2], h)
    out = torch.empty_like(image)
    for y0 in range(0, h, BAND_ROWS):
        y1 = min(h, y0 + BAND_ROWS)
        rows = across[:, idx[y0:y1]]  # C x band x 4 x W
        comp = (rows * wts[y0:y1, :, None]).sum(2).clamp_(0, 1)
        out[:, y0:y1] = torch.where(hole[:, y0:y1] > 0.5, comp.to(image.dtype), image[:, y0:y1])
    return out


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
    from genfw.core.atomic import file_mode

    p = Path(path).expanduser()
    try:
        if p.parent and not p.parent.exists():
            p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=p.parent, suffix=p.suffix.lower() or ".png")
    except OSError as exc:
        raise GenfwError(f"cannot write image {p}: {exc.strerror or exc}: {exc.filename}") from None
    os.fchmod(fd, file_mode())  # mkstemp creates 0600 whatever the umask says
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
