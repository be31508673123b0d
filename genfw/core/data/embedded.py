"""Datasets that need no download: `lfw-subset`, `photo-crops`, `synthetic-faces`."""
from __future__ import annotations

import functools

import numpy as np
import torch
from attrs import define, field, validators as v

from genfw.core.data.base import CommonConfig, GenfwDataset, positive
from genfw.core.errors import GenfwError, suggest
from genfw.core.synthetic_faces import ATTRIBUTES, render_face


# --- lfw-subset ---------------------------------------------------------------------------------
@define(kw_only=True)
class LFWSubsetConfig(CommonConfig):
    image_size: int = field(default=32, validator=positive)


@functools.lru_cache(maxsize=1)
def _lfw_faces() -> torch.Tensor:
    from skimage.data import lfw_subset

    # scikit-image ships 100 faces followed by 100 non-face crops; only the faces are wanted
    arr = np.asarray(lfw_subset()[:100], dtype=np.float32)
    return torch.from_numpy(arr).unsqueeze(1).clamp(0, 1)


class LFWSubset(GenfwDataset):
    """scikit-image's 100 real LFW faces (25 x 25 grey), resized; grey replicated for 3 channels."""

    def __init__(self, cfg: LFWSubsetConfig) -> None:
        super().__init__(cfg)
        self.faces = _lfw_faces()
        if cfg.limit:
            self.faces = self.faces[:cfg.limit]

    def __len__(self) -> int:
        return len(self.faces)

    def raw(self, index: int) -> dict:
        return {"image": self.faces[index]}


# --- photo-crops --------------------------------------------------------------------------------
# scikit-image's bundled natural photos (files in the wheel; no pooch download needed).
SKIMAGE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "moon",
                  "hubble_deep_field", "immunohistochemistry", "retina", "grass", "gravel", "brick", "clock")
SKLEARN_PHOTOS = ("china", "flower")


@functools.lru_cache(maxsize=None)
def load_photo(name: str) -> torch.Tensor:
    """3 x H x W float in [0, 1]."""
    if name in SKLEARN_PHOTOS:
        from sklearn.datasets import load_sample_image

        arr = load_sample_image(f"{name}.jpg")
    else:
        import skimage.data

        arr = getattr(skimage.data, name)()
    arr = np.asarray(arr)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    t = torch.from_numpy(arr[..., :3].astype(np.float32) / 255.0)
    return t.permute(2, 0, 1).contiguous()


def available_photos() -> list[str]:
    names = list(SKIMAGE_PHOTOS)
    try:
        import sklearn.datasets  # noqa: F401 - optional; its two photos are a bonus
        names += list(SKLEARN_PHOTOS)
    except ImportError:
        pass
    return names


def _scale_range(inst, attribute, value):
    if len(value) != 2 or not (0 < value[0] <= value[1] <= 1):
        raise ValueError(f"scale must be [low, high] with 0 < low <= high <= 1, got {value}")


@define(kw_only=True)
class PhotoCropsConfig(CommonConfig):
    length: int = field(default=1000, validator=positive)      # virtual dataset size
    scale: list[float] = field(factory=lambda: [0.2, 1.0], validator=_scale_range)  # crop side / short side
    photos: list[str] = field(factory=list)                    # photo names; empty = all bundled photos


class PhotoCrops(GenfwDataset):
    """Square crops of bundled photos; photo, size and position are a function of (seed, index)."""

    def __init__(self, cfg: PhotoCropsConfig) -> None:
        super().__init__(cfg)
        avail = available_photos()
        for name in cfg.photos:
            if name not in avail:
                raise GenfwError(f"photo-crops: unknown photo {name!r}{suggest(name, avail)}; available: {', '.join(avail)}")
        self.photos = list(cfg.photos) or avail
        self.scale = (float(cfg.scale[0]), float(cfg.scale[1]))
        self.length = cfg.limit and min(cfg.limit, cfg.length) or cfg.length

    def __len__(self) -> int:
        return self.length

    def raw(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, index])
        photo = load_photo(self.photos[int(rng.integers(len(self.photos)))])
        h, w = photo.shape[-2:]
        side = max(1, int(round(rng.uniform(*self.scale) * min(h, w))))
        top = int(rng.integers(0, h - side + 1))
        left = int(rng.integers(0, w - side + 1))
        return {"image": photo[:, top:top + side, left:left + side]}


# --- synthetic-faces ----------------------------------------------------------------------------
@define(kw_only=True)
class SyntheticFacesConfig(CommonConfig):
    length: int = field(default=1000, validator=positive)      # virtual dataset size
    attributes: list[str] = field(factory=lambda: list(ATTRIBUTES),
                                  validator=v.deep_iterable(v.in_(ATTRIBUTES)))  # labels to return
    cache: bool = True                                         # keep rendered faces in memory


class SyntheticFaces(GenfwDataset):
    """Procedural faces with exact 68-point landmarks and attribute labels, deterministic per (seed, index)."""

    has_landmarks = True

    def __init__(self, cfg: SyntheticFacesConfig) -> None:
        super().__init__(cfg)
        self.attribute_names = tuple(cfg.attributes)
        self._idx = [ATTRIBUTES.index(a) for a in cfg.attributes]
        self.length = cfg.limit and min(cfg.limit, cfg.length) or cfg.length
        self._cache: dict[int, dict] | None = {} if cfg.cache else None

    def __len__(self) -> int:
        return self.length

    def raw(self, index: int) -> dict:
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        # rendered at the output size, so no resampling blurs the landmark geometry
        img, lm, attrs = render_face(self.image_size, np.random.default_rng([self.seed, index, 0xFACE]))
        item = {"image": torch.from_numpy(img).permute(2, 0, 1).contiguous(),
                "landmarks": torch.from_numpy(lm)}
        if self._idx:
            item["attributes"] = torch.from_numpy(attrs[self._idx])
        if self._cache is not None:
            self._cache[index] = item
        return item
