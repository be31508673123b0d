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


@define(kw_only=True)
class ImageFolderConfig(CommonConfig):
    max_bad_fraction: float = field(default=0.1, validator=[v.ge(0.0), v.le(1.0)])  # unreadable files allowed


class ImageFolder(FileDataset):
    """Every image under `root` (recursive; png, jpg, bmp, webp, tif, gif, ppm); grey / RGBA converted."""

    def __init__(self, cfg: ImageFolderConfig) -> None:
        super().__init__(cfg)
        root = check_root(cfg.root, "image-folder")
        files = [root] if root.is_file() else find_images(root)
        if not files:
            raise GenfwError(f"image-folder: no images under {root} (looked for {', '.join(IMAGE_SUFFIXES)})")
        self.files = apply_limit(verify_files(files, cfg.max_bad_fraction, "image-folder"), cfg.limit)

    def raw(self, index: int) -> dict:
        return {"image": read_image(self.files[index], self.channels)}


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
        if cfg.attribute_file:
            ap = Path(cfg.attribute_file).expanduser()
            ap = ap if ap.is_absolute() else root / ap
            if not ap.is_file():
                raise GenfwError(f"celeba-hq: attribute file not found: {ap}")
            names, rows = read_attribute_table(ap)
            idx = select_attributes(names, list(cfg.attributes), str(ap)) if cfg.attributes else list(range(len(names)))
            self.attribute_names = tuple(names[i] for i in idx)
            keyed = [(p, rows.get(p.name, rows.get(p.stem))) for p in files]
            missing = [p for p, r in keyed if r is None]
            if len(missing) == len(files):
                raise GenfwError(f"celeba-hq: no image under {root} is listed in {ap}")
            if missing:
                warnings.warn(f"celeba-hq: {len(missing)} image(s) have no attribute row and are skipped, "
                              f"e.g. {missing[0]}", stacklevel=2)
            files = [p for p, r in keyed if r is not None]
            table = {p: torch.tensor([rows.get(p.name, rows.get(p.stem))[i] for i in idx]) for p in files}
            self._attr = table
        elif cfg.attributes:
            raise GenfwError("celeba-hq: data.attributes needs data.attribute_file")
        self.files = apply_limit(verify_files(files, cfg.max_bad_fraction, "celeba-hq"), cfg.limit)

    def raw(self, index: int) -> dict:
        p = self.files[index]
        item = {"image": read_image(p, self.channels)}
        if self._attr is not None:
            item["attributes"] = self._attr[p]
        return item
