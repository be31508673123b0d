"""Datasets (kind `dataset`): image files, CelebA / CelebA-HQ, and embedded data that needs no download.

See docs/data.md for the batch contract, landmark coordinates and the flip / epoch determinism.
"""
from __future__ import annotations

from genfw.core.data.base import CommonConfig, GenfwDataset, flip_landmarks
from genfw.core.data.celeba import CelebA, CelebAConfig
from genfw.core.data.embedded import (LFWSubset, LFWSubsetConfig, PhotoCrops, PhotoCropsConfig, SyntheticFaces,
                                      SyntheticFacesConfig)
from genfw.core.data.files import CelebAHQ, CelebAHQConfig, ImageFolder, ImageFolderConfig

_DATASETS = (
    ("image-folder", ImageFolder, ImageFolderConfig, "every image under a folder (recursive)"),
    ("celeba", CelebA, CelebAConfig, "aligned CelebA with split, attributes by name, landmarks"),
    ("celeba-hq", CelebAHQ, CelebAHQConfig, "CelebA-HQ folder with an optional attribute file"),
    ("lfw-subset", LFWSubset, LFWSubsetConfig, "scikit-image's 100 real faces (no download)"),
    ("photo-crops", PhotoCrops, PhotoCropsConfig, "random crops of bundled photos (no download)"),
    ("synthetic-faces", SyntheticFaces, SyntheticFacesConfig,
     "procedural faces with exact 68-point landmarks and attributes (no download)"),
)


def register(registry) -> None:
    for name, cls, cfg, help_ in _DATASETS:
        registry.register("dataset", name, cls, config=cfg, help=help_)


__all__ = [
    "CommonConfig", "GenfwDataset", "flip_landmarks", "CelebA", "CelebAConfig", "CelebAHQ", "CelebAHQConfig",
    "ImageFolder", "ImageFolderConfig", "LFWSubset", "LFWSubsetConfig", "PhotoCrops", "PhotoCropsConfig",
    "SyntheticFaces", "SyntheticFacesConfig", "register",
]
