"""Controllability on the embedded synthetic faces, whose attributes and landmarks are exact.

A tiny FOAM (4 -> 32 px) is trained for 200 steps on synthetic faces, half the batches with the
centre hole (half the side: eyes, nose, mouth missing), half with random rectangles. Faces are
translated by up to +-4 px (image and landmarks together), otherwise the data's alignment alone
would fix where features go and landmarks would carry nothing. Then, on 30 unseen faces:
- attribute edit: the same observation and landmarks, one attribute flipped 0 -> 1; the change of
  the completion in the hole is compared (cosine) with the change the renderer makes to that face
  when only the attribute flips (same identity, same pose);
- landmark transfer: the face's landmarks moved 3 px down; the completion in the hole should move
  toward the face moved 3 px down (hole L1 to that image drops relative to the own-landmark
  completion).
The numbers are printed (run with -s) and quoted in docs/plugins/foam.md."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from genfw import Context
from genfw.core.step import run_step
from genfw.core.synthetic_faces import render_face
from genfw.registry import get_registry

SIZE, STEPS, BATCH, TRAIN_FACES, SHIFT = 32, 200, 16, 128, 3
TEST_SEEDS = range(10_000, 10_030)


def face(seed: int, **attrs):
    img, lm, vec = render_face(SIZE, np.random.default_rng([seed, 7]), attrs or None)
    return torch.from_numpy(img).permute(2, 0, 1), torch.from_numpy(lm), torch.from_numpy(vec[:2])  # Smiling, Male


def centre_mask(n: int = 1) -> torch.Tensor:
    m = torch.zeros(n, 1, SIZE, SIZE)
    q = SIZE // 4
    m[..., q:3 * q, q:3 * q] = 1
    return m


def translate(img: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """Content moved by (dx, dy) pixels, edges replicated."""
    p = 4
    padded = F.pad(img[None], (p, p, p, p), mode="replicate")[0]
    return padded[:, p - dy:p - dy + SIZE, p - dx:p - dx + SIZE]


def train_tiny_foam():
    registry = get_registry()
    torch.manual_seed(0)
    faces = [face(i) for i in range(TRAIN_FACES)]
    X, L, A = (torch.stack([f[k] for f in faces]) for k in range(3))
    algo = registry.build({
        "type": "foam.algorithm",
        "generator": {"type": "foam.generator", "base_channels": 8, "max_channels": 32, "latent_channels": 64},
        "discriminator": {"type": "foam.discriminator", "base_channels": 8, "max_channels": 32},
        "use_feature_loss": False, "lr": 1e-3, "first_images": 160, "grow_images": [160],
        "stabilise_images": 160, "pool_size": 16}, kind="algorithm")
    algo.setup(Context(registry=registry, image_size=SIZE, channels=3, num_attributes=2,
                       attribute_names=["Smiling", "Male"], has_landmarks=True, has_mask=True))
    rect = registry.build({"type": "core.random-rect"})
    g = torch.Generator().manual_seed(0)
    for step in range(STEPS):
        idx = torch.randint(TRAIN_FACES, (BATCH,), generator=g)
        img, lm = X[idx].clone(), L[idx].clone()
        shift = torch.randint(-4, 5, (BATCH, 2), generator=g)
        for i, (dx, dy) in enumerate(shift.tolist()):
            img[i] = translate(img[i], dx, dy)
            lm[i, :, 0] += dx / SIZE
            lm[i, :, 1] += dy / SIZE
        mask = centre_mask(BATCH)
        mask[: BATCH // 2] = rect(BATCH // 2, SIZE, SIZE, generator=g)
        run_step(algo, {"image": img, "landmarks": lm.clamp(0, 1), "attributes": A[idx], "mask": mask}, step)
    assert algo.progress().stage == 4
    return algo


def complete(algo, img, lm, attrs):
    return algo.inpaint(img[None], centre_mask(), lm[None], attrs[None])["output"][0]


def attribute_effect(algo, index: int, name: str) -> list[float]:
    hole = centre_mask()[0].bool().expand(3, -1, -1)
    out = []
    for seed in TEST_SEEDS:
        off, lm, attrs = face(seed, **{name: 0.0})
        on, _, _ = face(seed, **{name: 1.0})
        a0, a1 = attrs.clone(), attrs.clone()
        a0[index], a1[index] = 0.0, 1.0
        change = (complete(algo, off, lm, a1) - complete(algo, off, lm, a0))[hole]
        out.append(float(F.cosine_similarity(change, (on - off)[hole], dim=0)))
    return out


def landmark_transfer(algo) -> tuple[list[float], list[float]]:
    hole = centre_mask()[0].bool().expand(3, -1, -1)
    own, moved = [], []
    for seed in TEST_SEEDS:
        img, lm, attrs = face(seed)
        target = translate(img, 0, SHIFT)
        lm_moved = lm.clone()
        lm_moved[:, 1] += SHIFT / SIZE
        own.append(float((complete(algo, img, lm, attrs) - target)[hole].abs().mean()))
        moved.append(float((complete(algo, img, lm_moved, attrs) - target)[hole].abs().mean()))
    return own, moved


@pytest.mark.slow
def test_attribute_edits_and_landmark_transfer_control_the_completion():
    algo = train_tiny_foam()
    male = attribute_effect(algo, 1, "Male")
    smiling = attribute_effect(algo, 0, "Smiling")
    own, moved = landmark_transfer(algo)
    gain = np.array(own) - np.array(moved)
    print(f"\nMale 0->1: cosine with the true change {np.mean(male):.3f} (positive for {np.mean(np.array(male) > 0):.0%})")
    print(f"Smiling 0->1: cosine {np.mean(smiling):.3f} (positive for {np.mean(np.array(smiling) > 0):.0%})")
    print(f"landmarks {SHIFT} px down: hole L1 to the moved face {np.mean(own):.4f} (own landmarks) -> "
          f"{np.mean(moved):.4f} (moved landmarks), closer for {np.mean(gain > 0):.0%}")
    # Male: brows, lips and hair change with it, and landmarks do not show them: the completion must
    # follow the attribute, in the direction the renderer changes the face
    assert np.mean(male) > 0.2 and np.mean(np.array(male) > 0) > 0.8
    # moved landmarks pull the completion toward the moved face
    assert gain.mean() > 0 and np.mean(gain > 0) > 0.6
