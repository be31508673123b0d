"""What every genfw dataset shares: common config, crop / resize / flip with landmarks, determinism.

Items are dicts {"image": C x H x W float32 [0, 1], optional "landmarks": 68 x 2 float32 in [0, 1]
(x, y, iBUG order), optional "attributes": A float32 0/1}. Landmark coordinates are fractions of the
image's width and height with pixel centres at (i + 0.5) / size, so a horizontal flip is exactly
x -> 1 - x (plus the iBUG left/right permutation).

Flip augmentation is a pure function of (seed, index, epoch), so a resumed run sees the same flips.
The epoch comes from `set_epoch(epoch)` (like a DistributedSampler) or, robust with DataLoader
workers, from the index itself: `ds[(index, epoch)]`.
"""
from __future__ import annotations

import abc
import hashlib
import warnings

import numpy as np
import torch
from attrs import define, field, validators as v
from torch.utils.data import Dataset

from genfw.core.errors import GenfwError
from genfw.core.images import resize
from genfw.core.synthetic_faces import FLIP_68

CROPS = ("center", "none")
FLIP_5 = (1, 0, 2, 4, 3)  # CelebA's five points: eyes, nose, mouth corners


def positive(inst, attribute, value):
    if value <= 0:
        raise ValueError(f"{attribute.name} must be > 0, got {value}")


@define(kw_only=True)
class CommonConfig:
    """Options every dataset has (subclasses add their own)."""

    root: str = ""                                              # folder or file the data lives in
    image_size: int = field(default=64, validator=positive)     # output side in pixels (square)
    channels: int = field(default=3, validator=v.in_((1, 3)))   # 1 = grey, 3 = RGB
    flip: bool = False                                          # random horizontal flips (per seed, index, epoch)
    crop: str = field(default="center", validator=v.in_(CROPS))  # center: largest centred square; none: squash
    limit: int = field(default=0, validator=v.ge(0))            # use only the first N items (0 = all)
    seed: int = 0                                               # drives flips and procedural content


def mix(*values: int) -> int:
    """A stable 64-bit hash of ints (Python's hash() is salted for str and not meant for this)."""
    h = hashlib.blake2b(digest_size=8)
    for x in values:
        h.update(int(x).to_bytes(16, "little", signed=True))
    return int.from_bytes(h.digest(), "little")


def flip_landmarks(lm: torch.Tensor) -> torch.Tensor:
    """Mirror K x 2 landmarks (x -> 1 - x) and swap left/right indices (68-point iBUG or 5-point)."""
    perm = FLIP_68 if lm.shape[0] == 68 else FLIP_5 if lm.shape[0] == 5 else None
    if perm is None:
        raise ValueError(f"no flip permutation for {lm.shape[0]} landmarks")
    out = lm[list(perm)].clone()
    out[:, 0] = 1.0 - out[:, 0]
    return out


def crop_landmarks(lm: torch.Tensor, hw: tuple[int, int], box: tuple[int, int, int, int]) -> torch.Tensor:
    """Landmarks (fractions of an h x w image) -> fractions of the crop box (top, left, ch, cw)."""
    h, w = hw
    top, left, ch, cw = box
    out = lm.clone()
    out[:, 0] = (lm[:, 0] * w - left) / cw
    out[:, 1] = (lm[:, 1] * h - top) / ch
    return out


def pixels_to_fraction(xy: np.ndarray, w: int, h: int) -> np.ndarray:
    """Pixel-index coordinates (as in CelebA's files) -> fractions with pixel centres at (i + 0.5)."""
    out = np.asarray(xy, dtype=np.float32).copy()
    out[..., 0] = (out[..., 0] + 0.5) / w
    out[..., 1] = (out[..., 1] + 0.5) / h
    return out


class GenfwDataset(Dataset, abc.ABC):
    """Base class: subclasses implement `__len__` and `raw(index)`; this adds crop, resize and flip."""

    attribute_names: tuple[str, ...] = ()
    has_landmarks: bool = False

    def __init__(self, cfg: CommonConfig) -> None:
        self.image_size = cfg.image_size
        self.channels = cfg.channels
        self.flip = cfg.flip
        self.crop = cfg.crop
        self.limit = cfg.limit
        self.seed = cfg.seed
        self.epoch = 0
        self._bad_at_runtime: set[str] = set()

    @property
    def num_attributes(self) -> int:
        return len(self.attribute_names)

    def set_epoch(self, epoch: int) -> None:
        """Called by the trainer before each pass; flips depend on it."""
        self.epoch = int(epoch)

    def flipped(self, index: int, epoch: int | None = None) -> bool:
        e = self.epoch if epoch is None else int(epoch)
        return self.flip and mix(self.seed, index, e, 0x5EED) & 1 == 1

    @abc.abstractmethod
    def raw(self, index: int) -> dict:
        """{"image": C x h x w in [0, 1] at any size, optional "landmarks" / "landmarks5" (fractions),
        optional "attributes"}; raise GenfwError when the item cannot be read."""

    def describe(self, index: int) -> str:
        return f"item {index}"

    def _fallback_raw(self, index: int) -> dict:
        """Never crash mid-run: a file that broke after the construction check is replaced by the next
        readable one (deterministically), with one warning per file."""
        n = len(self)
        for k in range(n):
            j = (index + k) % n
            try:
                return self.raw(j)
            except GenfwError as exc:
                name = self.describe(j)
                if name not in self._bad_at_runtime:
                    self._bad_at_runtime.add(name)
                    warnings.warn(f"skipping unreadable {name} ({exc}); using the next item", stacklevel=2)
        raise GenfwError("no readable item left in the dataset")

    def __getitem__(self, index: int | tuple[int, int]) -> dict:
        """`ds[i]` uses the epoch set by `set_epoch`; `ds[(i, epoch)]` names it explicitly, which also
        works inside DataLoader worker processes (they never see a later `set_epoch`)."""
        epoch = None
        if isinstance(index, tuple):
            index, epoch = index
        index = int(index)
        if index < 0 or index >= len(self):
            raise IndexError(index)
        item = dict(self._fallback_raw(index))  # raw() may hand out a cached dict
        img = item["image"]
        if img.shape[0] != self.channels:
            img = img.mean(0, keepdim=True) if self.channels == 1 else img.expand(3, -1, -1)
        h, w = img.shape[-2:]
        lm_keys = [k for k in ("landmarks", "landmarks5") if k in item]
        if self.crop == "center" and h != w:
            s = min(h, w)
            top, left = (h - s) // 2, (w - s) // 2
            img = img[:, top:top + s, left:left + s]
            for k in lm_keys:
                item[k] = crop_landmarks(item[k], (h, w), (top, left, s, s))
        img = resize(img.float(), self.image_size).contiguous()
        if self.flipped(index, epoch):
            img = img.flip(-1)
            for k in lm_keys:
                item[k] = flip_landmarks(item[k])
        out = {"image": img}
        for k in lm_keys:  # points pushed out by the crop stay on the border rather than leave [0, 1]
            out[k] = item[k].clamp(0.0, 1.0).float()
        if "attributes" in item:
            out["attributes"] = item["attributes"].float()
        return out


def apply_limit(items: list, limit: int) -> list:
    return items[:limit] if limit else items


def select_attributes(available: list[str], wanted: list[str], source: str) -> list[int]:
    """Indices of `wanted` names in `available`; unknown names -> GenfwError with suggestions."""
    from genfw.core.errors import suggest

    idx = []
    for name in wanted:
        if name not in available:
            raise GenfwError(
                f"unknown attribute {name!r} in {source}{suggest(name, available)}; "
                f"available: {', '.join(available)}"
            )
        idx.append(available.index(name))
    return idx


class FileDataset(GenfwDataset):
    """A dataset over a list of image files (`self.files`), set by the subclass's constructor."""

    files: list

    def __len__(self) -> int:
        return len(self.files)

    def describe(self, index: int) -> str:
        return str(self.files[index])
