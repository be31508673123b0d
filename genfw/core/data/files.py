"""Datasets backed by image files: `image-folder` and `celeba-hq` (plus the shared file checks)."""
from __future__ import annotations

import warnings
from pathlib import Path

from attrs import define, field, validators as v
from PIL import Image

from genfw.core.data.base import CommonConfig, FileDataset, apply_limit, positive, select_attributes
from genfw.core.errors import GenfwError
from genfw.core.images import IMAGE_SUFFIXES, read_image


def find_images(root: Path) -> list[Path]:
    """Every image file under root, recursively, in a stable (sorted) order."""
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def check_root(root: str, what: str) -> Path:
    p = Path(root).expanduser()
    if not root:
        raise GenfwError(f"{what}: data.root is empty; set it to your image folder (e.g. --data ~/images)")
    if not p.exists():
        raise GenfwError(f"{what}: data folder not found: {p}")
    return p


def verify_files(paths: list[Path], max_bad_fraction: float, what: str) -> list[Path]:
    """Drop files PIL cannot parse (header + structure check, no full decode); one warning lists them.

    More than `max_bad_fraction` bad is an error: that is a wrong folder or a broken copy, not noise.
    """
    good, bad = [], []
    for p in paths:
        try:
            with Image.open(p) as im:
                im.verify()
            good.append(p)
        except Exception:  # noqa: BLE001 - PIL raises many types for broken files
            bad.append(p)
    if paths and len(bad) / len(paths) > max_bad_fraction:
        raise GenfwError(
            f"{what}: {len(bad)} of {len(paths)} image files are unreadable (more than "
            f"max_bad_fraction={max_bad_fraction}), e.g. {bad[0]}"
        )
    if bad:
        shown = ", ".join(str(b) for b in bad[:20]) + (f" and {len(bad) - 20} more" if len(bad) > 20 else "")
        warnings.warn(f"{what}: skipping {len(bad)} unreadable image file(s): {shown}", stacklevel=3)
    return good


class Skipped:
    """Items dropped while matching images with their label files: one warning for all of them that
    counts each reason and names the first few files."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.reasons: list[tuple[str, list[str]]] = []

    def add(self, reason: str, names) -> None:
        names = sorted(str(n) for n in names)
        if names:
            self.reasons.append((reason, names))

    def warn(self) -> None:
        if not self.reasons:
            return
        parts = []
        for reason, names in self.reasons:
            shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            parts.append(f"{len(names)} {reason} ({shown})")
        warnings.warn(f"{self.what}: skipped " + "; ".join(parts), stacklevel=3)


def read_point_table(path: Path, npoints: int) -> dict[str, "np.ndarray"]:
    """`name x0 y0 ... x{n-1} y{n-1}` rows (pixels); count / header lines are skipped."""
    import numpy as np

    out = {}
    for ln in (ln.split() for ln in path.read_text().splitlines() if ln.strip()):
        if len(ln) != 2 * npoints + 1:
            continue  # the count line and the header line of CelebA's files
        try:
            out[ln[0]] = np.asarray([float(x) for x in ln[1:]], dtype=np.float32).reshape(npoints, 2)
        except ValueError:
            continue
    if not out:
        raise GenfwError(f"{path}: no rows with {npoints} x/y points")
    return out


def row_for(table: dict, path: Path, root: Path):
    """A label row keyed by the file's path under root, its name, or its stem."""
    try:
        rel = str(path.relative_to(root))
    except ValueError:
        rel = path.name
    for key in (rel, path.name, path.stem):
        if key in table:
            return table[key]
    return None


class Landmarks68:
    """Optional 68-point landmark rows for file datasets (`landmarks68 = "file.txt"`, relative to root)."""

    def __init__(self, option: str, root: Path, what: str) -> None:
        lp = Path(option).expanduser()
        lp = lp if lp.is_absolute() else root / lp
        if not lp.is_file():
            raise GenfwError(f"{what}: 68-point landmark file not found: {lp}")
        self.path, self.root = lp, root
        self.table = read_point_table(lp, 68)

    def filter(self, files: list[Path], skipped: Skipped) -> list[Path]:
        keep = [p for p in files if row_for(self.table, p, self.root) is not None]
        skipped.add(f"image(s) without a row in {self.path.name}", [p.name for p in files if p not in set(keep)])
        return keep

    def item(self, path: Path, width: int, height: int):
        import torch

        from genfw.core.data.base import pixels_to_fraction

        return torch.from_numpy(pixels_to_fraction(row_for(self.table, path, self.root), width, height))


@define(kw_only=True)
class ImageFolderConfig(CommonConfig):
    max_bad_fraction: float = field(default=0.1, validator=[v.ge(0.0), v.le(1.0)])  # unreadable files allowed
    landmarks68: str = ""   # optional `name x0 y0 ... x67 y67` file (pixels), relative to root


class ImageFolder(FileDataset):
    """Every image under `root` (recursive; png, jpg, bmp, webp, tif, gif, ppm); grey / RGBA converted."""

    def __init__(self, cfg: ImageFolderConfig) -> None:
        super().__init__(cfg)
        root = check_root(cfg.root, "image-folder")
        files = [root] if root.is_file() else find_images(root)
        if not files:
            raise GenfwError(f"image-folder: no images under {root} (looked for {', '.join(IMAGE_SUFFIXES)})")
        self._lm68 = None
        if cfg.landmarks68:
            self._lm68 = Landmarks68(cfg.landmarks68, root if root.is_dir() else root.parent, "image-folder")
            skipped = Skipped("image-folder")
            files = self._lm68.filter(files, skipped)
            skipped.warn()
            if not files:
                raise GenfwError(f"image-folder: no image under {root} has a row in {self._lm68.path}")
            self.has_landmarks = True
        self.files = apply_limit(verify_files(files, cfg.max_bad_fraction, "image-folder"), cfg.limit)

    def raw(self, index: int) -> dict:
        img = read_image(self.files[index], self.channels)
        item = {"image": img}
        if self._lm68 is not None:
            item["landmarks"] = self._lm68.item(self.files[index], img.shape[-1], img.shape[-2])
        return item


def read_attribute_table(path: Path) -> tuple[list[str], dict[str, list[float]]]:
    """CelebA-style attribute file: a count line, a names line, then `file v1 v2 ...` with -1/1 (or 0/1)."""
    lines = [ln.split() for ln in path.read_text().splitlines() if ln.strip()]
    if len(lines) < 2:
        raise GenfwError(f"{path}: attribute file is empty")
    start = 1 if len(lines[0]) == 1 and lines[0][0].isdigit() else 0
    names = lines[start]
    rows: dict[str, list[float]] = {}
    for ln in lines[start + 1:]:
        if len(ln) != len(names) + 1:
            raise GenfwError(f"{path}: line for {ln[0]!r} has {len(ln) - 1} values, expected {len(names)}")
        try:
            rows[ln[0]] = [1.0 if float(x) > 0 else 0.0 for x in ln[1:]]
        except ValueError:
            raise GenfwError(f"{path}: non-numeric attribute value in the line for {ln[0]!r}") from None
    return names, rows


@define(kw_only=True)
class CelebAHQConfig(CommonConfig):
    image_size: int = field(default=256, validator=positive)
    attribute_file: str = ""        # e.g. CelebAMask-HQ-attribute-anno.txt; relative paths are under root
    attributes: list[str] = field(factory=list)  # names to keep, in order; empty = all in the file
    landmarks68: str = ""           # optional `name x0 y0 ... x67 y67` file (pixels), relative to root
    max_bad_fraction: float = field(default=0.1, validator=[v.ge(0.0), v.le(1.0)])


class CelebAHQ(FileDataset):
    """A folder of CelebA-HQ images, with attributes from an optional CelebA-format file (by file name)."""

    def __init__(self, cfg: CelebAHQConfig) -> None:
        super().__init__(cfg)
        import torch

        root = check_root(cfg.root, "celeba-hq")
        files = find_images(root)
        if not files:
            raise GenfwError(f"celeba-hq: no images under {root}")
        self._attr = None
        skipped = Skipped("celeba-hq")
        if cfg.attribute_file:
            ap = Path(cfg.attribute_file).expanduser()
            ap = ap if ap.is_absolute() else root / ap
            if not ap.is_file():
                raise GenfwError(f"celeba-hq: attribute file not found: {ap}")
            names, rows = read_attribute_table(ap)
            idx = select_attributes(names, list(cfg.attributes), str(ap)) if cfg.attributes else list(range(len(names)))
            self.attribute_names = tuple(names[i] for i in idx)
            keyed = [(p, row_for(rows, p, root)) for p in files]
            if all(r is None for _, r in keyed):
                raise GenfwError(f"celeba-hq: no image under {root} is listed in {ap}")
            skipped.add(f"image(s) without a row in {ap.name}", [p.name for p, r in keyed if r is None])
            listed = {k for k in rows}
            found = {p.name for p in files} | {p.stem for p in files} | {str(p.relative_to(root)) for p in files}
            skipped.add(f"row(s) of {ap.name} whose image is missing", listed - found)
            files = [p for p, r in keyed if r is not None]
            self._attr = {p: torch.tensor([r[i] for i in idx]) for p, r in keyed if r is not None}
        elif cfg.attributes:
            raise GenfwError("celeba-hq: data.attributes needs data.attribute_file")
        self._lm68 = None
        if cfg.landmarks68:
            self._lm68 = Landmarks68(cfg.landmarks68, root, "celeba-hq")
            files = self._lm68.filter(files, skipped)
            self.has_landmarks = True
        skipped.warn()
        if not files:
            raise GenfwError(f"celeba-hq: no image under {root} has all its labels")
        self.files = apply_limit(verify_files(files, cfg.max_bad_fraction, "celeba-hq"), cfg.limit)

    def raw(self, index: int) -> dict:
        p = self.files[index]
        img = read_image(p, self.channels)
        item = {"image": img}
        if self._attr is not None:
            item["attributes"] = self._attr[p]
        if self._lm68 is not None:
            item["landmarks"] = self._lm68.item(p, img.shape[-1], img.shape[-2])
        return item
