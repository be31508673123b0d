"""CelebA (aligned): img_align_celeba/ + list_attr / list_landmarks_align / list_eval_partition files.

Landmarks: CelebA ships 5 points (eyes, nose, mouth corners), not the 68-point iBUG set of the batch
contract. So `has_landmarks` (and the `landmarks` key) is true only when a 68-point file is given
(`landmarks68`, e.g. produced once with `genfw landmarks`); otherwise the 5 CelebA points are exposed,
as given, under the separate key `landmarks5` (5 x 2, fractions, flipped with the images).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from attrs import define, field, validators as v

from genfw.core.data.base import (CommonConfig, FileDataset, apply_limit, pixels_to_fraction, positive,
                                  select_attributes)
from genfw.core.data.files import Skipped, check_root, read_attribute_table, read_point_table, verify_files
from genfw.core.errors import GenfwError
from genfw.core.images import read_image

SPLITS = {"train": 0, "val": 1, "test": 2}


@define(kw_only=True)
class CelebAConfig(CommonConfig):
    image_size: int = field(default=64, validator=positive)
    split: str = field(default="train", validator=v.in_(("train", "val", "test", "all")))
    attributes: list[str] = field(factory=list)   # attribute names to keep, in order; empty = all 40
    landmarks68: str = ""    # optional `file x0 y0 ... x67 y67` (aligned-image pixels); relative to root
    landmarks5: bool = True  # expose CelebA's own 5 points as `landmarks5` when no 68-point file is given
    verify: bool = True      # check every file's header at construction (a minute on all 202,599 files)
    max_bad_fraction: float = field(default=0.1, validator=[v.ge(0.0), v.le(1.0)])


class CelebA(FileDataset):
    """Aligned CelebA with a train / val / test split and attribute selection by name."""

    def __init__(self, cfg: CelebAConfig) -> None:
        super().__init__(cfg)
        root = check_root(cfg.root, "celeba")
        img_dir = root / "img_align_celeba"
        if not img_dir.is_dir():
            raise GenfwError(f"celeba: {img_dir} not found; data.root must hold img_align_celeba/ and the list_*.txt files")
        names = sorted(p.name for p in img_dir.iterdir() if p.is_file())
        on_disk = set(names)
        skipped = Skipped("celeba")
        if cfg.split != "all":
            part = root / "list_eval_partition.txt"
            if not part.is_file():
                raise GenfwError(f"celeba: {part} not found (needed for split={cfg.split!r}; or use split='all')")
            wanted = SPLITS[cfg.split]
            keep = {ln.split()[0] for ln in part.read_text().splitlines()
                    if len(ln.split()) == 2 and ln.split()[1] == str(wanted)}
            skipped.add(f"file(s) listed for split {cfg.split!r} in {part.name} but missing from {img_dir.name}/",
                        keep - on_disk)
            names = [n for n in names if n in keep]
        attr_file = root / "list_attr_celeba.txt"
        self._attr: dict[str, torch.Tensor] | None = None
        if attr_file.is_file():
            all_names, rows = read_attribute_table(attr_file)
            idx = select_attributes(all_names, list(cfg.attributes), str(attr_file)) if cfg.attributes \
                else list(range(len(all_names)))
            self.attribute_names = tuple(all_names[i] for i in idx)
            skipped.add(f"image(s) without a row in {attr_file.name}", [n for n in names if n not in rows])
            names = [n for n in names if n in rows]
            self._attr = {n: torch.tensor([rows[n][i] for i in idx]) for n in names}
        elif cfg.attributes:
            raise GenfwError(f"celeba: {attr_file} not found but data.attributes asks for {cfg.attributes}")
        self._lm68: dict[str, np.ndarray] | None = None
        self._lm5: dict[str, np.ndarray] | None = None
        lm_file = None
        if cfg.landmarks68:
            lp = Path(cfg.landmarks68).expanduser()
            lp = lp if lp.is_absolute() else root / lp
            if not lp.is_file():
                raise GenfwError(f"celeba: 68-point landmark file not found: {lp}")
            self._lm68 = read_point_table(lp, 68)
            lm_file, table = lp, self._lm68
            self.has_landmarks = True
        elif cfg.landmarks5 and (root / "list_landmarks_align_celeba.txt").is_file():
            lm_file = root / "list_landmarks_align_celeba.txt"
            self._lm5 = table = read_point_table(lm_file, 5)
        if lm_file is not None:
            skipped.add(f"image(s) without a row in {lm_file.name}", [n for n in names if n not in table])
            names = [n for n in names if n in table]
        skipped.warn()
        if not names:
            raise GenfwError(f"celeba: no images left in {img_dir} for split={cfg.split!r}")
        paths = [img_dir / n for n in names]
        if cfg.verify:
            paths = verify_files(paths, cfg.max_bad_fraction, "celeba")
        self.files = apply_limit(paths, cfg.limit)

    def raw(self, index: int) -> dict:
        p = self.files[index]
        img = read_image(p, self.channels)
        h, w = img.shape[-2:]
        item = {"image": img}
        if self._attr is not None:
            item["attributes"] = self._attr[p.name]
        if self._lm68 is not None:
            item["landmarks"] = torch.from_numpy(pixels_to_fraction(self._lm68[p.name], w, h))
        elif self._lm5 is not None:
            item["landmarks5"] = torch.from_numpy(pixels_to_fraction(self._lm5[p.name], w, h))
        return item
