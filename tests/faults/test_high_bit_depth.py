"""16-bit and float images are scaled into [0, 1], not clipped at 255 (CLI reader and datasets)."""
import numpy as np
import pytest
import torch
from PIL import Image

from genfw.core.images import read_image
from genfw.core.masks import load_mask


def test_16bit_png_is_scaled(tmp_path):
    a = np.array([[0, 30000], [65535, 255]], np.uint16)
    Image.fromarray(a).save(tmp_path / "g16.png")
    with Image.open(tmp_path / "g16.png") as im:
        assert im.mode.startswith("I;16")  # really a 16-bit file
    t = read_image(tmp_path / "g16.png", channels=1)
    want = torch.tensor([[0, 30000 / 65535], [1.0, 255 / 65535]])
    assert torch.allclose(t[0], want, atol=1e-6)  # 30000 -> 0.458, not 255 -> 1.0
    rgb = read_image(tmp_path / "g16.png", channels=3)
    assert rgb.shape == (3, 2, 2) and torch.equal(rgb[0], rgb[2])


def test_float_tiff_is_taken_as_unit_intensity(tmp_path):
    f = np.array([[0.0, 0.25], [0.5, 1.0]], np.float32)
    Image.fromarray(f).save(tmp_path / "f.tiff")
    t = read_image(tmp_path / "f.tiff", channels=1)
    assert torch.allclose(t[0], torch.from_numpy(f))  # not black


def test_8bit_unchanged(tmp_path):
    a = np.arange(48, dtype=np.uint8).reshape(4, 4, 3) * 5
    Image.fromarray(a).save(tmp_path / "c.png")
    t = read_image(tmp_path / "c.png")
    assert torch.equal((t * 255).round().to(torch.uint8).permute(1, 2, 0), torch.from_numpy(a))


def test_image_folder_dataset_reads_16bit(tmp_path):
    from genfw.core.data.files import ImageFolder, ImageFolderConfig

    for i in range(2):
        Image.fromarray(np.full((8, 8), 30000, np.uint16)).save(tmp_path / f"{i}.png")
    ds = ImageFolder(ImageFolderConfig(root=str(tmp_path), image_size=8, channels=1, flip=False))
    x = ds[0]["image"]
    assert x.shape[-2:] == (8, 8)
    v = 30000 / 65535  # 0.458; clipping would give 1.0 (or 1.0 in a [-1, 1] mapping)
    assert torch.allclose(x, torch.full_like(x, v), atol=1e-4) or torch.allclose(x, torch.full_like(x, 2 * v - 1),
                                                                                  atol=1e-4)


def test_mask_polarity_can_be_stated(tmp_path):
    m = np.zeros((8, 8), np.uint8)
    m[:6] = 255  # 75 % white
    Image.fromarray(m).save(tmp_path / "m.png")
    assert load_mask(tmp_path / "m.png", (8, 8), "white-hole").mean() == 0.75
    black = load_mask(tmp_path / "m.png", (8, 8), "black-hole")
    assert black.mean() == 0.25 and black[0, 0, 7, 0] == 1  # black rows are now the hole
    m[:4] = 0  # 25 % white: fine without saying anything
    Image.fromarray(m).save(tmp_path / "m.png")
    assert load_mask(tmp_path / "m.png", (8, 8)).mean() == 0.25
