import numpy as np
import pytest
import torch
from PIL import Image

from genfw import GenfwError
from genfw.core.masks import (CenterConfig, CenterMask, FolderMask, FolderMaskConfig, IrregularConfig, IrregularMask,
                              RandomRectConfig, RandomRectMask, bin_index, hole_ratio, load_mask, ratio_bins,
                              validate_mask)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_center_mask_hand_computed():
    m = CenterMask(CenterConfig())(2, 8, 8)
    expected = torch.zeros(8, 8)
    expected[2:6, 2:6] = 1
    assert m.shape == (2, 1, 8, 8) and m.dtype == torch.float32
    assert torch.equal(m[0, 0], expected) and torch.equal(m[1, 0], expected)
    assert torch.allclose(hole_ratio(m), torch.tensor([0.25, 0.25]))


def test_random_rect_area_range_single_rectangle_and_determinism():
    g = RandomRectMask(RandomRectConfig())
    m = g(32, 64, 64, gen(1))
    r = hole_ratio(m)
    assert ((r > 0.05 - 0.01) & (r < 0.25 + 0.01)).all()
    for k in range(32):
        ys, xs = torch.nonzero(m[k, 0], as_tuple=True)
        box = (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)
        assert int(box) == int(m[k].sum())  # a filled axis-aligned rectangle
    assert torch.equal(m, g(32, 64, 64, gen(1)))
    assert not torch.equal(m, g(32, 64, 64, gen(2)))


@pytest.mark.parametrize("size", [8, 32, 96])
def test_irregular_hits_ratio_range(size):
    lo, hi = 0.2, 0.35
    m = IrregularMask(IrregularConfig(ratio=[lo, hi]))(12, size, size, gen(size))
    assert set(torch.unique(m).tolist()) <= {0.0, 1.0}
    tol = 1.0 / size ** 2  # one pixel
    r = hole_ratio(m)
    assert ((r >= lo - tol) & (r <= hi + tol)).all(), r


def test_irregular_bins_are_stratified_and_deterministic():
    cfg = IrregularConfig(ratio=[0.1, 0.5], bins=4)
    g = IrregularMask(cfg)
    m = g(8, 48, 48, gen(3))
    edges = ratio_bins(0.1, 0.5, 4)
    for i, r in enumerate(hole_ratio(m).tolist()):
        a, b = edges[i % 4]
        assert a - 1 / 48 ** 2 <= r <= b + 1 / 48 ** 2
    assert torch.equal(m, g(8, 48, 48, gen(3)))
    assert bin_index(0.25, edges) == 1 and bin_index(0.5, edges) == 3 and bin_index(0.05, edges) == -1


def _save(arr, path):
    Image.fromarray(arr).save(path)
    return path


def test_folder_masks_load_resize_and_polarity(tmp_path):
    a = np.zeros((16, 16), np.uint8)
    a[4:8, 4:12] = 255
    _save(a, tmp_path / "a.png")
    g = FolderMask(FolderMaskConfig(root=str(tmp_path), flip=False))
    m = g(3, 32, 32, gen())
    assert m.shape == (3, 1, 32, 32)
    assert torch.allclose(hole_ratio(m), torch.full((3,), 32 / 256))
    assert m[0, 0, 8:16, 8:24].min() == 1 and m[0, 0].sum() == 8 * 16  # nearest keeps edges hard


def test_folder_rejects_inverted_and_colour_masks(tmp_path):
    inv = np.full((16, 16), 255, np.uint8)
    inv[0:2, 0:2] = 0
    _save(inv, tmp_path / "inv.png")
    with pytest.raises(GenfwError, match="inverted"):
        FolderMask(FolderMaskConfig(root=str(tmp_path)))
    g = FolderMask(FolderMaskConfig(root=str(tmp_path), invert=True, flip=False))
    assert float(g(1, 16, 16)[0].mean()) == pytest.approx(4 / 256)

    col = tmp_path / "c"
    col.mkdir()
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 0] = 255
    _save(rgb, col / "red.png")
    with pytest.raises(GenfwError, match="colour"):
        FolderMask(FolderMaskConfig(root=str(col)))
    with pytest.raises(GenfwError, match="not found"):
        FolderMask(FolderMaskConfig(root=str(tmp_path / "missing")))


def test_validate_mask_errors_and_binarises(tmp_path):
    img = torch.rand(1, 3, 8, 8)
    m = torch.zeros(8, 8)
    m[:4] = 0.97
    out = validate_mask(m, img.shape)
    assert out.shape == (1, 1, 8, 8) and out.sum() == 32
    with pytest.raises(GenfwError, match="8x8 but the image is 16x8"):
        validate_mask(m, (1, 3, 8, 16))
    with pytest.raises(GenfwError, match="inverted"):
        validate_mask(torch.ones(8, 8), img.shape)
    with pytest.raises(GenfwError, match="no hole"):
        validate_mask(torch.zeros(8, 8), img.shape)
    with pytest.raises(GenfwError, match="not a binary"):
        validate_mask(torch.full((8, 8), 0.5), img.shape)
    a = np.zeros((8, 8), np.uint8)
    a[2:4] = 255
    p = _save(a, tmp_path / "m.png")
    assert load_mask(p, img.shape).sum() == 16
