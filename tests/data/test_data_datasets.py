import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from genfw import GenfwError
from genfw.core.data import (CelebA, CelebAConfig, CelebAHQ, CelebAHQConfig, ImageFolder, ImageFolderConfig,
                             LFWSubset, LFWSubsetConfig, PhotoCrops, PhotoCropsConfig)


def _img(path, size=(12, 10), mode="RGB", value=128):
    path.parent.mkdir(parents=True, exist_ok=True)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    arr = np.full((size[1], size[0], channels), value, np.uint8).squeeze()
    Image.fromarray(arr, mode=mode).save(path)
    return path


def test_image_folder_recursive_conversion_and_one_warning(tmp_path):
    _img(tmp_path / "a.png")
    _img(tmp_path / "sub" / "b.jpg", mode="RGB")
    _img(tmp_path / "sub" / "deep" / "c.png", mode="L", value=255)
    _img(tmp_path / "d.png", mode="RGBA")
    for name in ("e.png", "f.bmp", "g.png", "h.png", "i.png", "j.png"):
        _img(tmp_path / name)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    (tmp_path / "notes.txt").write_text("ignored")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = ImageFolder(ImageFolderConfig(root=str(tmp_path), image_size=8))
    msgs = [str(w.message) for w in caught]
    assert len(msgs) == 1 and "broken.png" in msgs[0]
    assert len(ds) == 10
    for i in range(len(ds)):
        x = ds[i]["image"]
        assert x.shape == (3, 8, 8) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    grey = [ds[i]["image"] for i in range(len(ds)) if "c.png" in str(ds.files[i])][0]
    assert torch.allclose(grey, torch.ones_like(grey))
    with pytest.warns(UserWarning, match="broken.png"):
        assert len(ImageFolder(ImageFolderConfig(root=str(tmp_path), image_size=8, limit=3))) == 3
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert batch["image"].shape == (4, 3, 8, 8)


def test_image_folder_errors(tmp_path):
    with pytest.raises(GenfwError, match="not found"):
        ImageFolder(ImageFolderConfig(root=str(tmp_path / "nope")))
    _img(tmp_path / "ok.png")
    (tmp_path / "bad1.png").write_bytes(b"junk")
    with pytest.raises(GenfwError, match="1 of 2 image files are unreadable"):
        ImageFolder(ImageFolderConfig(root=str(tmp_path)))
    with pytest.warns(UserWarning, match="bad1.png"):
        assert len(ImageFolder(ImageFolderConfig(root=str(tmp_path), max_bad_fraction=0.5))) == 1


def test_file_broken_after_construction_does_not_crash(tmp_path):
    for n in ("a.png", "b.png"):
        _img(tmp_path / n, value=10 if n == "a.png" else 200)
    ds = ImageFolder(ImageFolderConfig(root=str(tmp_path), image_size=4))
    (tmp_path / "a.png").write_bytes(b"gone")
    with pytest.warns(UserWarning, match="a.png"):
        x = ds[0]["image"]
    assert torch.allclose(x, torch.full_like(x, 200 / 255))


def _celeba_tree(root, n=6, w=20, h=24):
    img_dir = root / "img_align_celeba"
    names = [f"{i:06d}.jpg" for i in range(1, n + 1)]
    for k, name in enumerate(names):
        _img(img_dir / name, size=(w, h), value=20 * k)
    attrs = ["5_o_Clock_Shadow", "Male", "Smiling"]
    lines = [str(n), " ".join(attrs)]
    for k, name in enumerate(names):
        lines.append(f"{name}  {' '.join(['1' if (k + j) % 2 else '-1' for j in range(3)])}")
    (root / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    lm = [str(n), "lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y rightmouth_x rightmouth_y"]
    for name in names:
        lm.append(f"{name} 6 9 13 9 9 13 7 17 12 17")
    (root / "list_landmarks_align_celeba.txt").write_text("\n".join(lm) + "\n")
    part = [f"{name} {0 if k < 4 else 1 if k == 4 else 2}" for k, name in enumerate(names)]
    (root / "list_eval_partition.txt").write_text("\n".join(part) + "\n")
    return names


def test_celeba_split_attributes_and_five_points(tmp_path):
    _celeba_tree(tmp_path)
    ds = CelebA(CelebAConfig(root=str(tmp_path), image_size=10, attributes=["Smiling", "Male"]))
    assert len(ds) == 4 and ds.attribute_names == ("Smiling", "Male") and ds.num_attributes == 2
    assert not ds.has_landmarks
    item = ds[1]  # k = 1: Male = (1+1)%2 -> -1 -> 0, Smiling = (1+2)%2 -> 1
    assert item["attributes"].tolist() == [1.0, 0.0]
    assert "landmarks" not in item
    # nose at pixel (9, 13) of a 20 x 24 image; centre crop drops 2 rows on top
    assert item["landmarks5"][2].tolist() == pytest.approx([9.5 / 20, (13.5 - 2) / 20])
    assert len(CelebA(CelebAConfig(root=str(tmp_path), split="test"))) == 1
    assert len(CelebA(CelebAConfig(root=str(tmp_path), split="all"))) == 6
    assert CelebA(CelebAConfig(root=str(tmp_path))).num_attributes == 3


def test_celeba_flip_swaps_eyes(tmp_path):
    _celeba_tree(tmp_path)
    ds = CelebA(CelebAConfig(root=str(tmp_path), image_size=10, flip=True))
    plain = CelebA(CelebAConfig(root=str(tmp_path), image_size=10))
    i = next(k for k in range(len(ds)) if ds.flipped(k))
    a, b = ds[i]["landmarks5"], plain[i]["landmarks5"]
    assert a[0, 0] == pytest.approx(1 - b[1, 0]) and a[0, 0] < a[1, 0]


def test_celeba_unknown_attribute_suggests(tmp_path):
    _celeba_tree(tmp_path)
    with pytest.raises(GenfwError, match="did you mean: Smiling"):
        CelebA(CelebAConfig(root=str(tmp_path), attributes=["Smilling"]))
    with pytest.raises(GenfwError, match="img_align_celeba"):
        CelebA(CelebAConfig(root=str(tmp_path / "img_align_celeba")))


def test_celeba_68_point_file(tmp_path):
    names = _celeba_tree(tmp_path)
    rows = [f"{n} " + " ".join(["10 12"] * 68) for n in names]
    (tmp_path / "lm68.txt").write_text("\n".join(rows) + "\n")
    ds = CelebA(CelebAConfig(root=str(tmp_path), image_size=10, landmarks68="lm68.txt"))
    item = ds[0]
    assert ds.has_landmarks and item["landmarks"].shape == (68, 2) and "landmarks5" not in item
    assert item["landmarks"][0].tolist() == pytest.approx([10.5 / 20, 10.5 / 20])


def test_celeba_hq_with_attribute_file(tmp_path):
    for k in range(3):
        _img(tmp_path / "imgs" / f"{k}.jpg", size=(16, 16))
    (tmp_path / "anno.txt").write_text("3\nMale Smiling\n0.jpg 1 -1\n1.jpg -1 1\n2.jpg 1 1\n")
    ds = CelebAHQ(CelebAHQConfig(root=str(tmp_path / "imgs"), attribute_file=str(tmp_path / "anno.txt"),
                                 attributes=["Smiling"], image_size=8))
    assert len(ds) == 3 and ds.attribute_names == ("Smiling",)
    assert [ds[i]["attributes"].item() for i in range(3)] == [0.0, 1.0, 1.0]
    assert len(CelebAHQ(CelebAHQConfig(root=str(tmp_path / "imgs")))) == 3


def test_lfw_subset_grey_replicated():
    ds = LFWSubset(LFWSubsetConfig())
    assert len(ds) == 100 and ds.image_size == 32
    x = ds[5]["image"]
    assert x.shape == (3, 32, 32) and torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])
    g = LFWSubset(LFWSubsetConfig(channels=1, image_size=16))[5]["image"]
    assert g.shape == (1, 16, 16) and g.std() > 0.05


def test_photo_crops_deterministic_per_seed_and_index():
    ds = PhotoCrops(PhotoCropsConfig(image_size=16, length=20, photos=["astronaut", "coffee"]))
    again = PhotoCrops(PhotoCropsConfig(image_size=16, length=20, photos=["astronaut", "coffee"]))
    other = PhotoCrops(PhotoCropsConfig(image_size=16, length=20, photos=["astronaut", "coffee"], seed=1))
    assert len(ds) == 20 and ds[3]["image"].shape == (3, 16, 16)
    assert torch.equal(ds[3]["image"], again[3]["image"])
    assert not torch.equal(ds[3]["image"], other[3]["image"])
    assert not torch.equal(ds[3]["image"], ds[4]["image"])
    with pytest.raises(GenfwError, match="did you mean: astronaut"):
        PhotoCrops(PhotoCropsConfig(photos=["astronot"]))


def test_registry_builds_every_embedded_dataset():
    from genfw.registry import loaded

    reg = loaded().registry
    assert {"core.image-folder", "core.celeba", "core.celeba-hq", "core.lfw-subset", "core.photo-crops",
            "core.synthetic-faces"} <= set(reg.names("dataset"))
    ds = reg.build({"type": "synthetic-faces", "length": 4}, kind="dataset", defaults={"image_size": 16})
    assert ds.image_size == 16 and len(ds) == 4 and ds[0]["landmarks"].shape == (68, 2)
