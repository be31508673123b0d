"""Evaluation as papers report it: fixed named mask sets, LPIPS, FID on completions, results folders
and the paper-table presets (see docs/metrics.md). Registers metric `core.lpips` and mask
`core.maskset` (random draws from a named evaluation set, e.g. to train on LaMa's thick masks)."""
from __future__ import annotations

from attrs import define, field, validators as v


@define(kw_only=True)
class LPIPSConfig:
    vgg: str = ""      # VGG-16 file (asset vgg16-imagenet); "" = asset resolution
    heads: str = ""    # LPIPS v0.1 heads (asset lpips-vgg)


def _lpips(cfg: LPIPSConfig):
    from genfw.core.eval.lpips import LPIPS

    return LPIPS(vgg_path=cfg.vgg, heads_path=cfg.heads)


def _set_name(inst, attribute, value):
    from genfw.core.eval.mask_sets import get_spec

    get_spec(value)


@define(kw_only=True)
class MaskSetConfig:
    name: str = field(default="irregular", validator=_set_name)   # thin | medium | thick | irregular | ...
    pool: int = field(default=1_000_000, validator=v.gt(0))       # draw among masks 0..pool-1 of the set


class MaskSetMasks:
    """Random members of a named evaluation set (mask generator contract: gen(n, h, w, generator)).
    Sets are square; for h != w the set's max(h, w) mask is resized (nearest) to h x w."""

    def __init__(self, cfg: MaskSetConfig) -> None:
        self.name, self.pool = cfg.name, cfg.pool
        self._sets: dict = {}

    def __call__(self, n: int, h: int, w: int, generator=None):
        import torch

        from genfw.core.eval.mask_sets import GeneratedMaskSet

        side = max(h, w)
        s = self._sets.setdefault(side, GeneratedMaskSet(self.name, side, self.pool))
        idx = torch.randint(0, self.pool, (n,), generator=generator)
        m = torch.stack([torch.from_numpy(s.mask(int(i)).astype("float32")) for i in idx]).unsqueeze(1)
        if (h, w) != (side, side):  # sets are square: a non-square image gets the set mask squeezed
            m = torch.nn.functional.interpolate(m, size=(h, w), mode="nearest")
        return m


def register(registry) -> None:
    registry.register("metric", "lpips", _lpips, config=LPIPSConfig,
                      help="LPIPS v0.1, VGG-16 with the standard linear heads (assets vgg16-imagenet, lpips-vgg)")
    registry.register("mask", "maskset", MaskSetMasks, config=MaskSetConfig,
                      help="random members of a named evaluation mask set (thin, medium, thick, irregular, ...)")
