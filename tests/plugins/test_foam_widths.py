"""FOAM networks whose widths change at every level, 4x4 included, run at every stage (the paper's
tables keep 512 from 4 to 64 px, which hides a width mismatch at the 4x4 level)."""
import torch

from genfw.plugins.foam.networks import (DiscriminatorConfig, FOAMDiscriminator, FOAMGenerator, GeneratorConfig,
                                         widths)


def test_widths_halving_from_the_4x4_level_run_at_every_stage():
    size, base, cap = 32, 4, 512
    assert len(set(widths(size, base, cap))) == len(widths(size, base, cap))  # a new width at each level
    g = FOAMGenerator(GeneratorConfig(image_size=size, base_channels=base, max_channels=cap, latent_channels=8))
    d = FOAMDiscriminator(DiscriminatorConfig(image_size=size, base_channels=base, max_channels=cap))
    lm_ch = g.cfg.landmark_channels
    for stage in range(1, g.levels + 1):
        s = 4 * 2 ** (stage - 1)
        x, m = torch.rand(2, 3, s, s) * 2 - 1, torch.zeros(2, 1, s, s)
        m[:, :, s // 4: s // 2] = 1
        lm = torch.rand(2, lm_ch, s, s) if lm_ch else None
        out = g(x, m, lm, stage=stage, alpha=1.0)["output"]
        assert out.shape == (2, 3, s, s)
        score = d(out, lm, stage=stage)["cls"]
        assert score.shape == (2,) and torch.isfinite(score).all()
