"""The trainer draws mask k of a run from (seed, k): batch-1 training cycles through every hole-ratio
bin, and the masks of a run do not depend on how it is batched."""
from __future__ import annotations

import torch

import engine_toy
from genfw.core.trainer import Trainer


def _registry():
    from genfw.core import masks
    from genfw.registry import Registrar

    reg = engine_toy.registry()
    masks.register(Registrar(reg, "core"))
    return reg


def _masks_seen(tmp_path, batch_size: int, steps: int) -> torch.Tensor:
    from genfw.core.config import resolve_run

    reg = _registry()
    raw = engine_toy.tiny_run(str(tmp_path / f"run-{batch_size}"), steps=steps, algorithm="enginetest.mask-gan",
                              batch_size=batch_size, checkpoint_every=0)
    raw["mask"] = {"type": "core.irregular", "ratio": [0.1, 0.5], "bins": 4}
    cfg, resolved = resolve_run(raw, reg)
    seen = []
    cls = reg.get("enginetest.mask-gan", kind="algorithm").factory
    orig = cls.prepare

    def prepare(self, batch, step):
        seen.append(batch["mask"].clone())
        return orig(self, batch, step)

    cls.prepare = prepare
    try:
        Trainer(cfg, resolved, reg, progress=False).run()
    finally:
        cls.prepare = orig
    return torch.cat(seen)


def test_batch_one_training_sees_every_bin_and_batching_does_not_change_masks(tmp_path):
    from genfw.core.masks import bin_index, hole_ratio, ratio_bins

    ones = _masks_seen(tmp_path, batch_size=1, steps=8)
    fours = _masks_seen(tmp_path, batch_size=4, steps=2)
    edges = ratio_bins(0.1, 0.5, 4)
    assert [bin_index(float(r), edges) for r in hole_ratio(ones)] == [0, 1, 2, 3, 0, 1, 2, 3]
    assert torch.equal(ones, fours)
