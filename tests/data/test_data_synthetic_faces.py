import numpy as np
import torch

from genfw.core.data import SyntheticFaces, SyntheticFacesConfig, flip_landmarks
from genfw.core.synthetic_faces import ATTRIBUTES, FLIP_68, canonical_landmarks, render_face


def test_flip_permutation_is_an_involution_over_68_points():
    assert sorted(FLIP_68) == list(range(68))
    assert all(FLIP_68[FLIP_68[i]] == i for i in range(68))
    assert FLIP_68[36] == 45 and FLIP_68[48] == 54 and FLIP_68[8] == 8 and FLIP_68[30] == 30 and FLIP_68[62] == 62


def test_canonical_geometry_follows_ibug_order_and_attributes():
    for seed in range(5):
        pts = canonical_landmarks(0.0, 0.0, 0.0, np.random.default_rng(seed))
        x = pts[:, 0]
        assert (np.diff(x[0:17]) > 0).all()                     # jaw runs image-left to image-right
        assert x[36] < x[39] < x[42] < x[45]                     # eye corners
        assert x[17] < x[21] < x[22] < x[26] and x[48] < x[51] < x[54]
        assert pts[8, 1] == pts[0:17, 1].max()                   # chin is lowest
        assert np.allclose(pts[62, :2], pts[66, :2])             # closed mouth: inner lips touch
        smile = canonical_landmarks(1.0, 0.0, 0.0, np.random.default_rng(seed))
        assert smile[48, 1] < smile[62, 1] and pts[48, 1] > pts[62, 1]  # corners up only when smiling
        male = canonical_landmarks(0.0, 1.0, 0.0, np.random.default_rng(seed))
        assert male[16, 0] - male[0, 0] > x[16] - x[0]           # wider jaw
        opened = canonical_landmarks(0.0, 0.0, 1.0, np.random.default_rng(seed))
        assert opened[66, 1] - opened[62, 1] > 0.05


def test_render_is_deterministic_and_drawn_from_landmarks():
    for seed in range(3):
        img, lm, attrs = render_face(192, np.random.default_rng(seed))
        img2, lm2, _ = render_face(192, np.random.default_rng(seed))
        assert np.array_equal(img, img2) and np.array_equal(lm, lm2)
        assert img.shape == (192, 192, 3) and 0 <= img.min() and img.max() <= 1
        assert attrs.shape == (len(ATTRIBUTES),)
        for s0 in (36, 42):  # the pupil sits at the eye polygon's centre: dark there
            cx, cy = lm[s0:s0 + 6].mean(0) * 192
            assert img[int(cy), int(cx)].max() < 0.3
        nose = (lm[30] * 192).astype(int)
        assert np.abs(img[nose[1], nose[0]] - img[2, 2]).sum() > 0.05  # face, not background


def test_dataset_flip_mirrors_image_and_landmarks():
    ds = SyntheticFaces(SyntheticFacesConfig(image_size=32, length=12, flip=True))
    plain = SyntheticFaces(SyntheticFacesConfig(image_size=32, length=12, flip=False))
    flipped = [i for i in range(12) if ds.flipped(i)]
    assert 0 < len(flipped) < 12
    i = flipped[0]
    a, b = ds[i], plain[i]
    assert torch.equal(a["image"], b["image"].flip(-1))
    assert torch.allclose(a["landmarks"], flip_landmarks(b["landmarks"]))
    assert a["landmarks"][36, 0] < a["landmarks"][45, 0]  # the permutation keeps iBUG left/right semantics
    assert torch.allclose(flip_landmarks(flip_landmarks(b["landmarks"])), b["landmarks"], atol=1e-6)
    before = [ds.flipped(k) for k in range(12)]
    ds.set_epoch(1)
    assert [ds.flipped(k) for k in range(12)] != before
    e1 = [ds[k]["image"] for k in range(12)]
    ds.set_epoch(0)
    assert [ds.flipped(k) for k in range(12)] == before
    assert all(torch.equal(ds[(k, 1)]["image"], e1[k]) for k in range(12))  # explicit epoch in the index


def test_dataset_contract_and_attribute_selection():
    ds = SyntheticFaces(SyntheticFacesConfig(image_size=24, length=5, attributes=["Male"], seed=3))
    item = ds[2]
    assert item["image"].shape == (3, 24, 24) and item["image"].dtype == torch.float32
    assert item["landmarks"].shape == (68, 2) and item["attributes"].shape == (1,)
    assert ds.has_landmarks and ds.num_attributes == 1 and ds.attribute_names == ("Male",)
    other = SyntheticFaces(SyntheticFacesConfig(image_size=24, length=5, attributes=["Male"], seed=4))
    assert not torch.equal(item["image"], other[2]["image"])
    grey = SyntheticFaces(SyntheticFacesConfig(image_size=24, length=5, channels=1, seed=3))
    assert grey[2]["image"].shape == (1, 24, 24)
