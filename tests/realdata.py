"""Tiny datasets in the real on-disk formats (CelebA, CelebA-HQ, a plain folder) and pretrained assets
as random weights in their real file formats, for tests of the real-data path.

Images are crops of scikit-image's bundled photos, saved as JPEG / PNG like the real sets.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair "
    "Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair Heavy_Makeup "
    "High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose "
    "Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat "
    "Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young").split()
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


def photo(i: int, w: int, h: int) -> Image.Image:
    import skimage.data

    arr = np.asarray(getattr(skimage.data, PHOTOS[i % len(PHOTOS)])())
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    arr = arr[..., :3]
    ph, pw = arr.shape[:2]
    # a different window per image, so the set is not one picture repeated
    s = int(min(ph, pw) * (0.6 + 0.1 * (i % 4)))
    top = (ph - s) * ((i * 37) % 11) // 10
    left = (pw - s) * ((i * 53) % 7) // 6
    crop = arr[top:top + s, left:left + s]
    return Image.fromarray(crop).resize((w, h), Image.BICUBIC)


def landmarks68(w: int, h: int, i: int = 0) -> np.ndarray:
    """A plausible 68-point face (pixels) from the synthetic-face geometry."""
    from genfw.core.synthetic_faces import render_face

    _, lm, _ = render_face(32, np.random.default_rng([i, 7]))
    return np.stack([lm[:, 0] * w - 0.5, lm[:, 1] * h - 0.5], 1)


def write_celeba(root: Path, n: int = 6, landmarks68_file: bool = False, size=(178, 218)) -> Path:
    """img_align_celeba/ + list_attr_celeba.txt + list_landmarks_align_celeba.txt + list_eval_partition.txt
    (+ a 68-point file), in CelebA's own formats; split: all but the last two are train."""
    w, h = size
    img = root / "img_align_celeba"
    img.mkdir(parents=True, exist_ok=True)
    names = [f"{i + 1:06d}.jpg" for i in range(n)]
    for i, name in enumerate(names):
        photo(i, w, h).save(img / name, quality=90)
    rng = np.random.default_rng(0)
    attr = [str(n), " ".join(CELEBA_ATTRIBUTES)]
    for name in names:
        attr.append(f"{name} " + " ".join(f"{v:2d}" for v in rng.choice([-1, 1], len(CELEBA_ATTRIBUTES))))
    (root / "list_attr_celeba.txt").write_text("\n".join(attr) + "\n")
    lm5 = [str(n), "lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y rightmouth_x rightmouth_y"]
    for name in names:
        lm5.append(f"{name} 69 111 108 111 88 134 72 152 105 152")
    (root / "list_landmarks_align_celeba.txt").write_text("\n".join(lm5) + "\n")
    part = [f"{name} {0 if i < n - 2 else (1 if i == n - 2 else 2)}" for i, name in enumerate(names)]
    (root / "list_eval_partition.txt").write_text("\n".join(part) + "\n")
    if landmarks68_file:
        write_landmarks68(root / "landmarks68.txt", names, w, h)
    return root


def write_landmarks68(path: Path, names, w: int, h: int) -> Path:
    rows = [f"{name} " + " ".join(f"{v:.1f}" for v in landmarks68(w, h, i).ravel()) for i, name in enumerate(names)]
    path.write_text("\n".join(rows) + "\n")
    return path


def write_celeba_hq(root: Path, n: int = 6, size: int = 128, landmarks: bool = True) -> Path:
    """CelebAMask-HQ layout: CelebA-HQ-img/0.jpg ... + CelebAMask-HQ-attribute-anno.txt (+ landmarks68.txt)."""
    img = root / "CelebA-HQ-img"
    img.mkdir(parents=True, exist_ok=True)
    names = [f"{i}.jpg" for i in range(n)]
    for i, name in enumerate(names):
        photo(i, size, size).save(img / name, quality=90)
    rng = np.random.default_rng(1)
    lines = [str(n), " ".join(CELEBA_ATTRIBUTES)]
    lines += [f"{name} " + " ".join(str(v) for v in rng.choice([-1, 1], len(CELEBA_ATTRIBUTES))) for name in names]
    (root / "CelebAMask-HQ-attribute-anno.txt").write_text("\n".join(lines) + "\n")
    if landmarks:
        write_landmarks68(root / "landmarks68.txt", names, size, size)
    return root


def write_folder(root: Path, n: int = 5, sizes=((96, 80), (64, 64), (120, 90))) -> Path:
    """A plain folder of photos of mixed sizes and formats."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        w, h = sizes[i % len(sizes)]
        photo(i, w, h).save(root / (f"photo{i}.png" if i % 2 else f"photo{i}.jpg"))
    return root


def write_vgg16_hub(torch_home: Path) -> Path:
    """torchvision's vgg16-397923af.pth (features.* of a random VGG-16) in the torch hub cache."""
    from genfw.core.weights import VGG16_CONV_INDICES, VGG16_CONV_SHAPES

    dest = torch_home / "hub" / "checkpoints" / "vgg16-397923af.pth"
    if dest.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    sd = {}
    for i, (o, c) in zip(VGG16_CONV_INDICES, VGG16_CONV_SHAPES):
        sd[f"features.{i}.weight"] = torch.randn(o, c, 3, 3, generator=g) * (2 / (9 * c)) ** 0.5
        sd[f"features.{i}.bias"] = torch.zeros(o)
    sd["classifier.0.weight"] = torch.zeros(4, 4)  # torchvision's file also holds the classifier
    torch.save(sd, dest)
    return dest


def random_inception_state_dict(seed: int = 0) -> dict:
    """torch-fidelity's FID Inception-v3 keys and shapes with He-scaled random convs (features stay O(1))."""
    import math
    from unittest import mock

    import torch_fidelity.feature_extractor_inceptionv3 as fe

    # the real module class, built without its weight download, only for its parameter layout
    with mock.patch.object(fe, "load_state_dict_from_url", lambda *a, **k: {}), \
            mock.patch.object(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd, *a, **k: None):
        module = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, t in module.state_dict().items():
        if k.endswith("conv.weight"):
            t = torch.randn(t.shape, generator=g) * math.sqrt(2.0 / t[0].numel())
        elif k.endswith("bn.bias"):
            t = torch.randn(t.shape, generator=g) * 0.1
        elif k == "fc.weight":
            t = torch.randn(t.shape, generator=g) * math.sqrt(1.0 / t.shape[1])
        sd[k] = t.clone()
    return sd
