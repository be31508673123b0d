"""Hole masks (1 = hole, 0 = known): generators registered as kind `mask`, plus validation helpers.

Every generator is a callable ``gen(n, h, w, generator=None) -> N x 1 x H x W float32 {0, 1}``.
The built-in ones are also *indexed*: ``gen(n, h, w, indices=[...], seed=S)`` makes mask i a pure
function of (S, indices[i]), and hole-ratio bins are assigned by the index, not by the position in
a call. ``draw(gen, n, h, w, seed=S, start=k)`` is what the trainer and `genfw eval` call: masks
k .. k+n-1 of the stream S, so they are the same whatever the batch size, and a resumed run draws
the same masks as an uninterrupted one. A third-party generator without `indices` gets one
torch.Generator per mask, seeded from (S, index).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from attrs import define, field, validators as v
from PIL import Image, ImageDraw, UnidentifiedImageError

from genfw.core.errors import GenfwError
from genfw.core.images import IMAGE_SUFFIXES, open_image, read_mask_planes

# Polarity thresholds. A user's mask for one image (`genfw inpaint` / `complete`) with more than
# half of it hole is far more often a white-is-known file (a typical inverted mask is 75 % "hole")
# than a real request, so it is refused unless --mask-polarity states which colour is the hole.
# Training mask sets (mask.type = folder) legitimately hold holes up to 50-60 %, so there only
# masks over 90 % hole are refused (mask.invert states the set's polarity).
PROBABLY_INVERTED = 0.5
MAX_HOLE_FRACTION = 0.9
POLARITIES = ("auto", "white-hole", "black-hole")  # auto: white = hole, refused above PROBABLY_INVERTED
# More than this share of mid-grey pixels means the file is a photo or soft matte, not a mask.
MAX_GREY_FRACTION = 0.05


# --- helpers used by the inpaint CLI, metrics and tests ---------------------------------------
def hole_ratio(mask: torch.Tensor) -> torch.Tensor | float:
    """Share of hole pixels: a length-N tensor for N x 1 x H x W, else one float."""
    m = mask.detach().float()
    if m.ndim == 4:
        return m.flatten(1).mean(1)
    return float(m.mean())


def ratio_bins(low: float, high: float, bins: int) -> list[tuple[float, float]]:
    """Equal-width hole-ratio bins over [low, high] (CSA reports 10-20 %, 20-30 %, ...)."""
    edges = np.linspace(low, high, bins + 1)
    return [(float(a), float(b)) for a, b in zip(edges[:-1], edges[1:])]


def bin_index(ratio: float, edges: list[tuple[float, float]]) -> int:
    """Index of the bin holding `ratio` (the last bin is closed on the right), -1 if outside."""
    for i, (a, b) in enumerate(edges):
        if a <= ratio < b or (i == len(edges) - 1 and ratio == b):
            return i
    return -1


def _as_4d(mask: torch.Tensor) -> torch.Tensor:
    m = mask.detach().float()
    while m.ndim < 4:
        m = m.unsqueeze(0)
    return m


def binarize(mask: torch.Tensor, threshold: float = 0.5, name: str = "mask") -> torch.Tensor:
    """N x 1 x H x W {0, 1}; GenfwError for colour files or soft, non-binary values."""
    m = _as_4d(mask)
    if m.shape[1] != 1:
        spread = (m.amax(1) - m.amin(1)).abs().max()
        if spread > 1 / 255 + 1e-6:
            raise GenfwError(f"{name} is a colour image, not a mask: use one channel, white (1) = hole")
        m = m[:, :1]
    if m.min() < 0 or m.max() > 1:
        raise GenfwError(f"{name} has values outside [0, 1] (min {float(m.min()):.3g}, max {float(m.max()):.3g})")
    grey = ((m > 0.1) & (m < 0.9)).float().mean()
    if grey > MAX_GREY_FRACTION:
        raise GenfwError(
            f"{name} is not a binary mask ({float(grey):.0%} of pixels are grey); "
            "save it as black (known) and white (hole) only"
        )
    return (m > threshold).float()


def validate_mask(mask: torch.Tensor, image_shape, name: str = "mask", polarity: str = "auto") -> torch.Tensor:
    """Check a user mask against an image; returns it binarised as N x 1 x H x W.

    `image_shape` is any shape ending in (H, W) (e.g. the image tensor's `.shape`). Raises a one-line
    GenfwError for a size mismatch, colour or soft values, an inverted-looking mask (more than 90 %
    hole) or a mask without any hole.
    """
    h, w = int(image_shape[-2]), int(image_shape[-1])
    m = binarize(mask, name=name)
    if tuple(m.shape[-2:]) != (h, w):
        raise GenfwError(f"{name} is {m.shape[-1]}x{m.shape[-2]} but the image is {w}x{h}; they must match")
    if polarity not in POLARITIES:
        raise GenfwError(f"mask polarity {polarity!r} is not one of {', '.join(POLARITIES)}")
    if polarity == "black-hole":
        m = 1.0 - m
    check_polarity(m, name, inverted="it is probably inverted (genfw masks use white = hole, black = known): "
                   "pass --mask-polarity black-hole if black marks the hole, or --mask-polarity white-hole "
                   "if the hole really is that large",
                   empty="(all black); white pixels mark the region to fill",
                   limit=PROBABLY_INVERTED if polarity == "auto" else None)
    return m


def check_polarity(m: torch.Tensor, name: str, inverted: str, empty: str,
                   limit: float | None = MAX_HOLE_FRACTION) -> None:
    """One-line errors for a mask with more than `limit` of it hole (likely inverted; None: the
    caller was told the polarity, so only an all-hole mask is refused) or no hole at all;
    `inverted` / `empty` say how to fix it where the mask came from."""
    ratio = float(m.mean())
    if limit is not None and ratio > limit:
        raise GenfwError(f"{name} is {ratio:.0%} hole (over {limit:.0%}): {inverted}")
    if ratio == 1:
        raise GenfwError(f"{name} is all hole: nothing is known to fill it from")
    if ratio == 0:
        raise GenfwError(f"{name} has no hole {empty}")


def read_mask(path: str | Path, name: str | None = None) -> torch.Tensor:
    """1 x 1 x H x W binarised mask from an image file (white = hole); polarity is not checked here."""
    p = Path(path).expanduser()
    label = name or str(p)
    if not p.is_file():
        raise GenfwError(f"mask not found: {p}")
    try:
        with open_image(p, "mask") as im:
            if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
                im = im.convert("RGBA")
                arr = np.asarray(im, dtype=np.float32)[..., :3] / 255.0
            else:
                return binarize(read_mask_planes(im).unsqueeze(0), name=label)  # one plane for grey files
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise GenfwError(f"cannot read mask {p}: {exc}") from None
    t = torch.from_numpy(arr.copy()).permute(2, 0, 1).unsqueeze(0)
    return binarize(t, name=label)


def load_mask(path: str | Path, image_shape, polarity: str = "auto") -> torch.Tensor:
    """Read and validate a mask file for an image of `image_shape` (what `genfw inpaint` uses)."""
    return validate_mask(read_mask(path), image_shape, name=f"mask {path}", polarity=polarity)


def _seed_from(generator: torch.Generator | None) -> int:
    return int(torch.randint(0, 2**62, (1,), generator=generator).item())


def mask_rng(seed: int, index: int) -> np.random.Generator:
    """The random stream of mask `index` of the mask stream `seed` (independent of any batching)."""
    return np.random.default_rng([int(seed) % 2**63, int(index) % 2**63, 0x4D41534B])


def _indices(n: int, indices, seed, generator) -> tuple[list[int], int]:
    """(indices, seed) of a call: given ones, or 0..n-1 of a stream whose seed comes from `generator`."""
    if indices is None:
        return list(range(n)), _seed_from(generator) if seed is None else int(seed)
    idx = [int(i) for i in indices]
    if len(idx) != n:
        raise ValueError(f"{len(idx)} indices for {n} masks")
    return idx, 0 if seed is None else int(seed)


def draw(gen, n: int, h: int, w: int, *, seed: int, start: int = 0) -> torch.Tensor:
    """Masks start .. start+n-1 of the stream `seed`: each depends on (seed, its index) only."""
    indices = range(start, start + n)
    if getattr(gen, "indexed", False):
        return gen(n, h, w, indices=indices, seed=seed)
    out = [gen(1, h, w, generator=torch.Generator().manual_seed(int(mask_rng(seed, i).integers(2**62))))
           for i in indices]
    return torch.cat(out) if out else torch.zeros(0, 1, h, w)


def _range2(name: str, lo: float, hi: float):
    def check(inst, attribute, value):
        if len(value) != 2 or not (lo <= value[0] <= value[1] <= hi):
            raise ValueError(f"{attribute.name} must be [low, high] with {lo} <= low <= high <= {hi}, got {value}")
    return check


# --- center -------------------------------------------------------------------------------------
@define(kw_only=True)
class CenterConfig:
    fraction: float = field(default=0.5, validator=[v.gt(0.0), v.le(1.0)])  # hole side / image side


class CenterMask:
    """A centred rectangle covering `fraction` of each side (a square on square images)."""

    indexed = True

    def __init__(self, cfg: CenterConfig) -> None:
        self.fraction = cfg.fraction

    def __call__(self, n: int, h: int, w: int, generator: torch.Generator | None = None, *,
                 indices=None, seed: int | None = None) -> torch.Tensor:
        mh, mw = max(1, round(h * self.fraction)), max(1, round(w * self.fraction))
        top, left = (h - mh) // 2, (w - mw) // 2
        m = torch.zeros(n, 1, h, w)
        m[:, :, top:top + mh, left:left + mw] = 1.0
        return m


# --- random-rect --------------------------------------------------------------------------------
@define(kw_only=True)
class RandomRectConfig:
    area: list[float] = field(factory=lambda: [0.05, 0.25], validator=_range2("area", 0.0, 1.0))
    aspect: list[float] = field(factory=lambda: [0.5, 2.0], validator=_range2("aspect", 0.01, 100.0))


class RandomRectMask:
    """One axis-aligned rectangle per image: area fraction uniform in `area`, aspect log-uniform."""

    indexed = True

    def __init__(self, cfg: RandomRectConfig) -> None:
        self.area = tuple(cfg.area)
        self.aspect = tuple(cfg.aspect)

    def __call__(self, n: int, h: int, w: int, generator: torch.Generator | None = None, *,
                 indices=None, seed: int | None = None) -> torch.Tensor:
        idx, seed = _indices(n, indices, seed, generator)
        m = torch.zeros(n, 1, h, w)
        for i, k in enumerate(idx):
            rng = mask_rng(seed, k)
            area = rng.uniform(*self.area)
            ar = math.exp(rng.uniform(math.log(self.aspect[0]), math.log(self.aspect[1])))  # width / height
            pos = rng.random(2)
            target = float(area) * h * w
            rh = min(h, max(1, round(math.sqrt(target / ar))))
            rw = min(w, max(1, round(target / rh)))
            if rw == w and rh < h:  # clipped in width: give the lost area back to the height
                rh = min(h, max(1, round(target / rw)))
            top = int(float(pos[0]) * (h - rh + 1))
            left = int(float(pos[1]) * (w - rw + 1))
            m[i, 0, top:top + rh, left:left + rw] = 1.0
        return m


# --- irregular ----------------------------------------------------------------------------------
@define(kw_only=True)
class IrregularConfig:
    ratio: list[float] = field(factory=lambda: [0.1, 0.5], validator=_range2("ratio", 0.0, 0.95))
    bins: int = field(default=0, validator=v.ge(0))  # >0: split `ratio` into bins, cycle through them
    width: list[float] = field(factory=lambda: [0.03, 0.1], validator=_range2("width", 0.0, 1.0))  # brush / side
    vertices: list[int] = field(factory=lambda: [4, 12], validator=_range2("vertices", 2, 100))  # per stroke


class IrregularMask:
    """Free-form brush strokes (random walks of thick line segments) until the hole ratio hits a target.

    Each mask draws a target ratio uniformly inside `ratio` (or, with `bins > 0`, inside bin
    ``index % bins`` for the mask of that index, so any run of consecutive indices, whatever the
    batch size, holds the bins in equal counts) and adds strokes until the target is reached; a
    stroke that overshoots the range is undone and retried thinner.
    """

    max_strokes = 400
    indexed = True

    def __init__(self, cfg: IrregularConfig) -> None:
        self.ratio = (float(cfg.ratio[0]), float(cfg.ratio[1]))
        self.width = tuple(cfg.width)
        self.vertices = (int(cfg.vertices[0]), int(cfg.vertices[1]))
        self.bin_edges = ratio_bins(*self.ratio, cfg.bins) if cfg.bins else [self.ratio]

    def __call__(self, n: int, h: int, w: int, generator: torch.Generator | None = None, *,
                 indices=None, seed: int | None = None) -> torch.Tensor:
        idx, seed = _indices(n, indices, seed, generator)
        out = torch.zeros(n, 1, h, w)
        for i, k in enumerate(idx):
            lo, hi = self.bin_edges[k % len(self.bin_edges)]
            out[i, 0] = torch.from_numpy(self._one(mask_rng(seed, k), h, w, lo, hi))
        return out

    def _one(self, rng: np.random.Generator, h: int, w: int, lo: float, hi: float) -> np.ndarray:
        # Pixel granularity: a ratio strictly inside (lo, hi) must be reachable on a tiny canvas.
        step = 1.0 / (h * w)
        target = rng.uniform(lo, hi)
        canvas = Image.new("L", (w, h), 0)
        ratio = 0.0
        side = min(h, w)
        for _ in range(self.max_strokes):
            if ratio >= target - step / 2:
                break
            scale = 1.0
            for _attempt in range(8):
                trial = canvas.copy()
                self._stroke(ImageDraw.Draw(trial), rng, h, w, side, scale)
                arr = np.asarray(trial, dtype=np.uint8)
                new_ratio = float((arr > 0).mean())
                if new_ratio < hi:  # strictly inside the bin: its measured ratio must bin where it was drawn
                    canvas, ratio = trial, new_ratio
                    break
                scale *= 0.5
            else:
                break  # every retry overshot: the remaining gap is below one thin stroke
        arr = (np.asarray(canvas, dtype=np.uint8) > 0)
        if arr.mean() < lo:  # a very thin range on a tiny canvas: top up pixel by pixel next to the hole
            arr = _grow_to(arr, lo, rng)
        return arr.astype(np.float32)

    def _stroke(self, draw: ImageDraw.ImageDraw, rng, h: int, w: int, side: int, scale: float) -> None:
        width = max(1, int(round(rng.uniform(*self.width) * side * scale)))
        nv = int(rng.integers(self.vertices[0], self.vertices[1] + 1))
        nv = max(2, int(round(nv * scale))) if scale < 1 else nv
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        angle = rng.uniform(0, 2 * math.pi)
        pts = [(x, y)]
        for _ in range(nv - 1):
            angle += rng.uniform(-math.pi / 3, math.pi / 3)  # smooth-ish turns look like a brush
            length = rng.uniform(0.05, 0.2) * side * max(scale, 0.25)
            x = float(np.clip(x + length * math.cos(angle), 0, w - 1))
            y = float(np.clip(y + length * math.sin(angle), 0, h - 1))
            pts.append((x, y))
        draw.line(pts, fill=255, width=width)
        r = width / 2
        for px, py in pts:  # round joints; a bare polyline leaves notches at sharp turns
            draw.ellipse((px - r, py - r, px + r, py + r), fill=255)


def _grow_to(arr: np.ndarray, target: float, rng: np.random.Generator) -> np.ndarray:
    """Add known pixels that touch the hole (or random ones when empty) until the ratio reaches target."""
    arr = arr.copy()
    need = int(math.ceil(target * arr.size)) - int(arr.sum())
    while need > 0:
        nb = np.zeros_like(arr)
        nb[1:] |= arr[:-1]; nb[:-1] |= arr[1:]; nb[:, 1:] |= arr[:, :-1]; nb[:, :-1] |= arr[:, 1:]  # noqa: E702
        cand = np.flatnonzero(nb & ~arr) if arr.any() else np.flatnonzero(~arr)
        if cand.size == 0:
            cand = np.flatnonzero(~arr)
        pick = rng.choice(cand, size=min(need, cand.size), replace=False)
        arr.flat[pick] = True
        need -= pick.size
    return arr


# --- folder -------------------------------------------------------------------------------------
@define(kw_only=True)
class FolderMaskConfig:
    root: str = ""                      # folder of mask images (recursive), white = hole
    invert: bool = False                # for sets stored black = hole (e.g. some irregular-mask sets)
    flip: bool = True                   # random horizontal / vertical flips for variety


class FolderMask:
    """User mask files, validated once at construction and drawn at random, resized with nearest."""

    def __init__(self, cfg: FolderMaskConfig) -> None:
        root = Path(cfg.root).expanduser()
        if not cfg.root or not root.is_dir():
            raise GenfwError(f"mask folder not found: {root if cfg.root else '(mask.root is empty)'}")
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise GenfwError(f"no mask images in {root} (looked for {', '.join(IMAGE_SUFFIXES)})")
        self.flip = cfg.flip
        from genfw.core.eval.mask_sets import folder_provenance

        self.provenance = folder_provenance(root)  # name / sha256 of a `genfw masks --set` folder, else {}
        self.masks: list[torch.Tensor] = []
        for p in files:
            m = read_mask(p)
            if cfg.invert:
                m = 1.0 - m
            check_polarity(m, f"mask {p}", inverted="it looks inverted (white = hole); set mask.invert = true "
                           "if your set stores black = hole", empty="(all known); remove it or check mask.invert")
            self.masks.append(m[0])

    def __len__(self) -> int:
        return len(self.masks)

    indexed = True

    def __call__(self, n: int, h: int, w: int, generator: torch.Generator | None = None, *,
                 indices=None, seed: int | None = None) -> torch.Tensor:
        idx, seed = _indices(n, indices, seed, generator)
        out = torch.empty(n, 1, h, w)
        for i, k in enumerate(idx):
            rng = mask_rng(seed, k)
            m = self.masks[int(rng.integers(len(self.masks)))].unsqueeze(0)
            m = F.interpolate(m, size=(h, w), mode="nearest")
            flip_x, flip_y = rng.integers(0, 2, 2)
            if self.flip and flip_x:
                m = m.flip(-1)
            if self.flip and flip_y:
                m = m.flip(-2)
            out[i] = m[0]
        return out


def register(registry) -> None:
    registry.register("mask", "center", CenterMask, config=CenterConfig,
                      help="centred square hole covering `fraction` of the side")
    registry.register("mask", "random-rect", RandomRectMask, config=RandomRectConfig,
                      help="one random rectangle, area fraction in `area` (FOAM: 5-25 %)")
    registry.register("mask", "irregular", IrregularMask, config=IrregularConfig,
                      help="free-form brush strokes hitting a hole-ratio range, optionally binned")
    registry.register("mask", "folder", FolderMask, config=FolderMaskConfig,
                      help="user mask images (white = hole), polarity validated")


__all__ = [
    "draw", "mask_rng", "hole_ratio", "ratio_bins", "bin_index", "binarize", "validate_mask", "read_mask", "load_mask",
    "CenterMask", "RandomRectMask", "IrregularMask", "FolderMask", "register",
]
