"""MS-SSIM and the sample-diversity score (IntroVAE table 2's metric)."""
import json

import pytest
import torch
from click.testing import CliRunner

from genfw.core.inpaint_metrics import ssim
from genfw.core.msssim import diversity, ms_ssim, num_scales


def _const(v, n=1, size=64):
    return torch.full((n, 1, size, size), v)


# 64 px holds 3 scales (64, 32, 16 >= 11): weights 0.0448, 0.2856, 0.3001 renormalised
W3 = 0.3001 / (0.0448 + 0.2856 + 0.3001)


def _lum(p, q):
    return (2 * p * q + 1e-4) / (p * p + q * q + 1e-4)  # c1 = 0.01^2


def test_constant_images_reduce_to_the_luminance_term():
    # var = cov = 0 so cs = 1 at every scale and pooling keeps constants: only the coarsest
    # scale's luminance term remains, raised to that scale's weight
    assert ms_ssim(_const(0.2), _const(0.6)).item() == pytest.approx(_lum(0.2, 0.6) ** W3, rel=1e-6)


def test_identical_is_one_and_noise_lowers_it():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 128, 128, generator=g)
    assert torch.allclose(ms_ssim(x, x), torch.ones(3))
    small = (x + 0.05 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    large = (x + 0.3 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    a, b = ms_ssim(x, small), ms_ssim(x, large)
    assert (a < 1).all() and (b < a).all()
    assert torch.allclose(ms_ssim(small, x), a)  # symmetric


def test_one_scale_is_ssim_and_scale_count_rule():
    g = torch.Generator().manual_seed(1)
    a = torch.rand(2, 3, 40, 40, generator=g)
    b = (a + 0.2 * torch.randn(a.shape, generator=g)).clamp(0, 1)
    assert (ssim(a, b) > 0).all()
    assert torch.allclose(ms_ssim(a, b, scales=1), ssim(a, b), atol=1e-6)
    assert [num_scales(s) for s in (8, 16, 32, 128, 256, 1024)] == [1, 1, 2, 4, 5, 5]


def test_diversity_pairs_distinct_images():
    two = torch.cat([_const(0.2), _const(0.6)])  # every pair is (0.2, 0.6) or (0.6, 0.2)
    expected = _lum(0.2, 0.6) ** W3
    assert diversity(two, pairs=50, generator=torch.Generator().manual_seed(0)) == pytest.approx(expected, rel=1e-5)
    same = _const(0.5, n=5)
    assert diversity(same, pairs=20) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        diversity(_const(0.5, n=1))


def test_eval_msssim_on_a_tiny_run(tmp_path):
    from genfw.cli import cli
    from genfw.core.config import build_run_config
    from genfw.core.trainer import train
    from genfw.registry import get_registry

    reg = get_registry()
    raw = tmp_path / "gan.toml"
    raw.write_text('[algorithm]\ntype = "core.gan"\n[algorithm.generator]\ntype = "core.dcgan-generator"\n'
                   'base_channels = 8\nlatent_dim = 16\n[algorithm.discriminator]\ntype = "core.dcgan-discriminator"\n'
                   'base_channels = 8\n[data]\ntype = "core.lfw-subset"\nimage_size = 16\nchannels = 1\n')
    cfg, resolved = build_run_config(reg, None, None, str(raw), [
        "train.steps=2", "train.batch_size=4", "train.sample_every=0", "train.checkpoint_every=2",
        "device=cpu", f"out={tmp_path / 'run'}"])
    train(cfg, resolved, reg, progress=False)
    res = CliRunner().invoke(cli, ["eval", str(tmp_path / "run"), "--metrics", "msssim", "-n", "8", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output[res.output.index("{"):])["msssim"]
    assert 0 < out["samples"] <= 1 and 0 < out["real"] <= 1 and out["images"] == 8 and out["scales"] == 1
