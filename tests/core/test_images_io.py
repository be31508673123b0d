"""Full-resolution image plumbing: banded compositing and conversion equal the direct way."""
import numpy as np
import torch
from PIL import Image

from genfw.core import images
from genfw.core.images import paste_holes, read_image, read_mask_planes, resize, to_pil


def test_paste_holes_equals_resize_and_select():
    torch.manual_seed(0)
    for c, h, w, s in [(3, 150, 73, 32), (1, 20, 30, 32), (3, 5, 200, 8), (3, 64, 64, 64), (3, 70, 9, 1)]:
        img = torch.rand(c, h, w)
        hole = (torch.rand(1, h, w) > 0.5).float()
        small = torch.rand(c, s, s) * 1.2 - 0.1  # the model may overshoot [0, 1]
        direct = torch.where(hole > 0.5, resize(small, (h, w), mode="bicubic").clamp(0, 1), img)
        got = paste_holes(img, hole, small)
        assert torch.allclose(got, direct, atol=1e-6)
        assert torch.equal(got[(hole == 0).expand_as(img)], img[(hole == 0).expand_as(img)])  # known: bit for bit


def test_to_pil_banded_matches_direct_rounding(monkeypatch):
    monkeypatch.setattr(images, "BAND_ROWS", 7)
    x = torch.rand(3, 50, 21) * 1.2 - 0.1
    direct = (x.clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    assert np.array_equal(np.asarray(to_pil(x)), direct)
    assert np.asarray(to_pil(x[:1])).shape == (50, 21)


def test_grey_mask_stored_as_rgb_reads_as_one_plane(tmp_path):
    a = np.zeros((6, 6, 3), np.uint8)
    a[2:4, 2:4] = 255
    Image.fromarray(a).save(tmp_path / "m.png")
    with Image.open(tmp_path / "m.png") as im:
        planes = read_mask_planes(im)
    assert planes.shape == (1, 6, 6) and planes.sum() == 4
    a[0, 0] = (255, 0, 0)  # real colour stays three planes so the mask check can refuse it
    Image.fromarray(a).save(tmp_path / "c.png")
    with Image.open(tmp_path / "c.png") as im:
        assert read_mask_planes(im).shape == (3, 6, 6)


def test_read_image_planes_match_pil(tmp_path):
    a = (np.arange(5 * 7 * 3) % 256).astype(np.uint8).reshape(5, 7, 3)
    Image.fromarray(a).save(tmp_path / "a.png")
    t = read_image(tmp_path / "a.png")
    assert torch.equal(t, torch.from_numpy(a.astype(np.float32) / 255).permute(2, 0, 1))
    g = read_image(tmp_path / "a.png", channels=1)
    want = np.asarray(Image.fromarray(a).convert("L")).astype(np.float32) / 255
    assert torch.equal(g[0], torch.from_numpy(want))
