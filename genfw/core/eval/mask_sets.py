"""Named, fixed evaluation mask sets: the same holes for every run, user and machine.

A generated set is a pure function of (name, size, index): mask i of ``thick`` at 256 px is drawn
from its own PCG64 stream seeded with SeedSequence(sha256("genfw-maskset/thick/256")[:8] words, i),
so the first N masks never depend on N, on batch sizes or on the order they are asked for.
A set is identified by a content hash (see `content_sha256`): sha256 over, per mask in index order,
its height and width (uint32 little-endian) and its bits (``np.packbits`` of the row-major
boolean hole map). The hash is what goes into a score's provenance next to the set's name; a folder
of released masks (e.g. NVIDIA's irregular test set) gets the same treatment through `FolderMaskSet`.

Sets (pixel parameters are LaMa's 256 px configs, scaled by size / 256 at other sizes):
- ``thin``, ``medium``, ``thick``: LaMa's evaluation sets (random_{thin,medium,thick}_256.yaml):
  one generator per mask, picked with the configs' normalised probabilities (irregular strokes
  1, boxes 0.3 for medium / thick); masks covering more than 50 % are redrawn (max_tamper_area).
- ``irregular``: free-form strokes hitting CSA's table-2 hole-ratio bins 10-20 ... 40-50 %
  (mask i in bin i mod 4), the PConv-style protocol CSA follows.
- ``pconv``: the same strokes over PConv's six bins 0-10 ... 50-60 %.
- ``center``: the centred square of half the side (CSA table 1, FOAM's centre masks).
- ``rect``: FOAM's random rectangles covering 5-25 % of the image.
"""
from __future__ import annotations

import abc
import hashlib
import json
from pathlib import Path
from typing import Callable, Iterable, Sequence

import attrs
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from genfw.core.errors import GenfwError
from genfw.core.eval.mask_drawing import MAX_TAMPER_AREA, binned_strokes, center_square, foam_rect, lama_mask

METADATA_FILE = "maskset.json"
LAMA_BINS = tuple((i / 10, (i + 1) / 10) for i in range(5))          # 0-10 % ... 40-50 %
CSA_BINS = ((0.1, 0.2), (0.2, 0.3), (0.3, 0.4), (0.4, 0.5))           # CSA table 2
PCONV_BINS = tuple((i / 10, (i + 1) / 10) for i in range(6))         # 0-10 % ... 50-60 %


# --- the content hash ---------------------------------------------------------------------------
def mask_bytes(mask: np.ndarray) -> bytes:
    """The hashed form of one H x W mask: uint32 LE height, width, then packed row-major bits."""
    m = np.asarray(mask) > 0.5
    h, w = m.shape
    return np.array([h, w], dtype="<u4").tobytes() + np.packbits(m.reshape(-1)).tobytes()


def content_sha256(masks: Iterable[np.ndarray]) -> str:
    h = hashlib.sha256()
    for m in masks:
        h.update(mask_bytes(m))
    return h.hexdigest()


def bin_of(ratio: float, bins: Sequence[tuple[float, float]]) -> int:
    """Index of the [lo, hi) bin holding `ratio` (last bin closed on the right); -1 outside all."""
    for i, (lo, hi) in enumerate(bins):
        if lo <= ratio < hi or (i == len(bins) - 1 and ratio == hi):
            return i
    return -1


def bin_label(lo: float, hi: float) -> str:
    return f"{round(lo * 100)}-{round(hi * 100)}%"


# --- sets ---------------------------------------------------------------------------------------
@attrs.frozen
class SetSpec:
    name: str
    help: str
    bins: tuple[tuple[float, float], ...]
    draw: Callable[[np.random.Generator, int, int], np.ndarray]  # (rng, size, index) -> H x W bool


def _binned(bins):
    return lambda rng, size, i: binned_strokes(rng, size, *bins[i % len(bins)])


SETS: dict[str, SetSpec] = {s.name: s for s in (
    SetSpec("thin", "LaMa thin strokes (random_thin_256)", LAMA_BINS,
            lambda rng, size, i: lama_mask("thin")(rng, size)),
    SetSpec("medium", "LaMa medium strokes + boxes (random_medium_256)", LAMA_BINS,
            lambda rng, size, i: lama_mask("medium")(rng, size)),
    SetSpec("thick", "LaMa thick strokes + boxes (random_thick_256)", LAMA_BINS,
            lambda rng, size, i: lama_mask("thick")(rng, size)),
    SetSpec("irregular", "free-form strokes in CSA table 2's bins 10-20 ... 40-50 % (mask i in bin i mod 4)",
            CSA_BINS, _binned(CSA_BINS)),
    SetSpec("pconv", "free-form strokes in PConv's bins 0-10 ... 50-60 % (mask i in bin i mod 6)",
            PCONV_BINS, _binned(((0.01, 0.1),) + PCONV_BINS[1:])),
    SetSpec("center", "centred square of half the side (CSA table 1, FOAM centre masks)", ((0.2, 0.3),),
            lambda rng, size, i: center_square(rng, size)),
    SetSpec("rect", "FOAM random rectangles, 5-25 % of the image", ((0.05, 0.15), (0.15, 0.25)),
            lambda rng, size, i: foam_rect(rng, size)),
)}


class MaskSet(abc.ABC):
    """Masks 0..count-1 of a set at one size, as N x 1 x S x S float tensors (1 = hole)."""

    source = "generated"

    def __init__(self, name: str, size: int, count: int, bins: Sequence[tuple[float, float]]) -> None:
        self.name, self.size, self.count = name, int(size), int(count)
        self.bins = tuple((float(a), float(b)) for a, b in bins)
        self._sha: str | None = None

    @abc.abstractmethod
    def mask(self, index: int) -> np.ndarray:
        """Mask `index` as an S x S float array (1 = hole)."""

    def masks(self, start: int, stop: int) -> torch.Tensor:
        arr = np.stack([self.mask(i) for i in range(start, stop)]).astype(np.float32)
        return torch.from_numpy(arr).unsqueeze(1)

    def sha256(self) -> str:
        if self._sha is None:
            self._sha = content_sha256(self.mask(i) for i in range(self.count))
        return self._sha

    def ratios(self) -> list[float]:
        return [float(self.mask(i).mean()) for i in range(self.count)]

    def provenance(self) -> dict:
        return {"name": self.name, "size": self.size, "count": self.count, "sha256": self.sha256(),
                "source": self.source, "bins": [bin_label(*b) for b in self.bins]}


class GeneratedMaskSet(MaskSet):
    def __init__(self, name: str, size: int, count: int) -> None:
        spec = get_spec(name)
        if size < 8:
            raise GenfwError(f"mask set size must be at least 8 px, got {size}")
        super().__init__(name, size, count, spec.bins)
        self.spec = spec
        digest = hashlib.sha256(f"genfw-maskset/{name}/{size}".encode()).digest()
        self._key = [int.from_bytes(digest[k:k + 4], "little") for k in range(0, 16, 4)]
        self._cache: dict[int, np.ndarray] = {}

    def mask(self, index: int) -> np.ndarray:
        if index not in self._cache:
            rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(self._key + [int(index)])))
            self._cache[index] = np.ascontiguousarray(self.spec.draw(rng, self.size, int(index)), dtype=bool)
            if len(self._cache) > 4096:  # evaluation walks forward; keep memory bounded
                self._cache.pop(next(iter(self._cache)))
        return self._cache[index]


class FolderMaskSet(MaskSet):
    """A folder of mask images (white = hole, or black with invert), in sorted file order, resized
    with nearest to `size`, hashed as used and binned by hole ratio. Image i gets mask i mod count.
    One validating pass computes the hash and ratios; masks are then read back on demand (a released
    set of 12k masks would not fit in memory as arrays)."""

    source = "folder"

    def __init__(self, root: str | Path, size: int, bins: Sequence[tuple[float, float]] = PCONV_BINS,
                 invert: bool = False) -> None:
        from genfw.core.images import IMAGE_SUFFIXES

        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise GenfwError(f"mask set folder not found: {self.root}")
        files = sorted(p for p in self.root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise GenfwError(f"no mask images in {self.root} (looked for {', '.join(IMAGE_SUFFIXES)})")
        meta = read_metadata(self.root)
        name = meta.get("name", self.root.name) if meta else self.root.name
        if meta.get("bins_edges"):  # a set written by `genfw masks --set` keeps its own bins
            bins = [tuple(b) for b in meta["bins_edges"]]
        super().__init__(name, size, len(files), bins)
        self.files, self.invert, self.metadata = files, invert, meta
        self._cache: dict[int, np.ndarray] = {}
        digest = hashlib.sha256()
        self._ratios = []
        for i in range(self.count):
            arr = self._read(i)
            digest.update(mask_bytes(arr))
            self._ratios.append(float(arr.mean()))
        self._sha = digest.hexdigest()

    def _read(self, index: int) -> np.ndarray:
        from genfw.core.masks import read_mask

        p = self.files[index]
        m = read_mask(p)
        if self.invert:
            m = 1 - m
        if tuple(m.shape[-2:]) != (self.size, self.size):
            m = F.interpolate(m, size=(self.size, self.size), mode="nearest")
        arr = m[0, 0].numpy() > 0.5
        if arr.mean() > 0.9 or not arr.any():
            what = "almost all hole: inverted? (white = hole; pass invert for black = hole)" if arr.any() \
                else "empty (no hole)"
            raise GenfwError(f"mask {p} is {what}")
        return arr

    def mask(self, index: int) -> np.ndarray:
        i = index % self.count
        if i not in self._cache:
            if len(self._cache) > 1024:
                self._cache.pop(next(iter(self._cache)))
            self._cache[i] = self._read(i)
        return self._cache[i]

    def ratios(self) -> list[float]:
        return list(self._ratios)

    def provenance(self) -> dict:
        out = super().provenance()
        out["root"] = str(self.root)
        return out


def get_spec(name: str) -> SetSpec:
    from genfw.core.errors import suggest

    if name not in SETS:
        raise GenfwError(f"unknown mask set {name!r}{suggest(name, SETS)}; sets: {', '.join(SETS)} "
                         "(or a folder of mask images)")
    return SETS[name]


def open_set(name_or_dir: str, size: int, count: int, invert: bool = False) -> MaskSet:
    """A named generated set, or a folder of mask images (one written by `genfw masks --set`, or released)."""
    if name_or_dir not in SETS and Path(name_or_dir).expanduser().is_dir():
        return FolderMaskSet(name_or_dir, size, invert=invert)
    return GeneratedMaskSet(name_or_dir, size, count)  # an unknown name fails there, with suggestions


# --- files --------------------------------------------------------------------------------------
def read_metadata(root: Path) -> dict:
    p = Path(root) / METADATA_FILE
    if not p.is_file():
        return {}
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise GenfwError(f"cannot read {p}: {exc}") from None


def write_set(mask_set: MaskSet, out: str | Path, progress: bool = True) -> dict:
    """PNG files 00000.png ... (white = hole) plus maskset.json (name, size, count, sha256, bins,
    per-mask hole ratio and bin). Refuses a non-empty folder of another set."""
    from tqdm import tqdm

    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise GenfwError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        old = read_metadata(out)
        if not old:
            raise GenfwError(f"{out} is not empty and holds no {METADATA_FILE}; pick an empty folder")
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.png"):
        stale.unlink()
    width = max(5, len(str(mask_set.count - 1)))
    ratios, bins = [], []
    for i in tqdm(range(mask_set.count), desc=f"masks {mask_set.name}", disable=not progress, leave=False):
        m = mask_set.mask(i)
        Image.fromarray(m.astype(np.uint8) * 255, mode="L").save(out / f"{i:0{width}d}.png")
        ratios.append(round(float(m.mean()), 6))
        b = bin_of(float(m.mean()), mask_set.bins)
        bins.append(bin_label(*mask_set.bins[b]) if b >= 0 else "")
    from genfw import __version__

    meta = {**mask_set.provenance(), "genfw": __version__, "bins_edges": [list(b) for b in mask_set.bins],
            "hole_ratio": ratios, "bin": bins}
    (out / METADATA_FILE).write_text(json.dumps(meta, indent=1))
    return meta


def folder_provenance(root: str | Path) -> dict:
    """Name and sha256 of a folder written by `write_set` (for `core.folder` masks); {} otherwise."""
    meta = read_metadata(Path(root).expanduser())
    return {k: meta[k] for k in ("name", "size", "count", "sha256") if k in meta}


__all__ = ["SETS", "MaskSet", "GeneratedMaskSet", "FolderMaskSet", "open_set", "write_set", "content_sha256",
           "mask_bytes", "bin_of", "bin_label", "folder_provenance", "CSA_BINS", "LAMA_BINS", "PCONV_BINS",
           "MAX_TAMPER_AREA"]
