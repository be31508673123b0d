"""Inpainting metrics, `genfw inpaint` at any image size, and `genfw eval --metrics inpaint`."""
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from genfw import Context, GenfwError
from genfw.cli.inpaint_cmd import attention_overlay, inpaint_image
from genfw.core.inpaint_metrics import InpaintScores, format_table, per_image, ssim
from genfw.registry import get_registry


def test_l1_l2_psnr_by_hand():
    target = torch.zeros(1, 1, 4, 4)
    out = target.clone()
    out[..., 0, :2] = 0.5  # two pixels off by 0.5 out of 16
    s = per_image(out, target)
    assert s["l1"].item() == pytest.approx(100 * 1.0 / 16)
    assert s["l2"].item() == pytest.approx(100 * 0.5 / 16)
    assert s["psnr"].item() == pytest.approx(10 * np.log10(16 / 0.5), rel=1e-5)


def test_ssim_matches_scikit_image():
    metrics = pytest.importorskip("skimage.metrics")
    g = torch.Generator().manual_seed(0)
    a = torch.rand(2, 3, 24, 20, generator=g)
    b = (a + 0.1 * torch.randn(a.shape, generator=g)).clamp(0, 1)
    ours = ssim(a, b)
    for i in range(2):
        ref = metrics.structural_similarity(a[i].permute(1, 2, 0).numpy().astype(np.float64),
                                            b[i].permute(1, 2, 0).numpy().astype(np.float64), channel_axis=2,
                                            gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                            data_range=1.0)
        assert ours[i].item() == pytest.approx(ref, abs=1e-5)
    assert ssim(a, a).sub(1).abs().max() < 1e-6


def test_scores_binned_by_hole_ratio():
    scores = InpaintScores()
    img = torch.zeros(3, 1, 10, 10)
    masks = torch.zeros(3, 1, 10, 10)
    masks[0, :, :2] = 1   # 20 %: bin 20-30
    masks[1, :, :5] = 1   # 50 %: bin 50-60
    masks[2, :, :1] = 1   # 10 %: bin 10-20
    scores.update(img, img, masks)
    summary = scores.summary()
    counts = {k: v["count"] for k, v in summary["bins"].items()}
    assert counts == {"10-20%": 1, "20-30%": 1, "30-40%": 0, "40-50%": 0, "50-60%": 1}
    table = format_table(summary)
    assert "SSIM" in table and "50-60%" in table


def _tiny_algo(size=32):
    reg = get_registry()
    algo = reg.build({"type": "csa.algorithm", "rough": {"type": "csa.rough", "base_channels": 4, "max_channels": 8},
                      "refine": {"type": "csa.refine", "base_channels": 4, "max_channels": 8, "csa_level": 2,
                                 "consistency_channels": 0},
                      "patch_discriminator": {"type": "csa.patch-discriminator", "base_channels": 4},
                      "use_feature_discriminator": False, "lambda_consistency": 0.0}, kind="algorithm")
    algo.setup(Context(registry=reg, image_size=size, has_mask=True))
    return algo


@pytest.mark.parametrize("shape", [(45, 70), (20, 24)])
def test_inpaint_any_size_keeps_known_pixels(shape):
    algo = _tiny_algo()
    h, w = shape
    image = torch.rand(3, h, w)
    mask = torch.zeros(1, 1, h, w)
    mask[..., h // 3: 2 * h // 3, w // 4: w // 2] = 1
    result, att = inpaint_image(algo, image, mask, attention_at=(w // 3, h // 2))
    assert result.shape == image.shape
    known = mask[0].expand_as(image) < 0.5
    assert torch.equal(result[known], image[known])
    assert not torch.equal(result[~known], image[~known])
    assert att.shape == (h, w) and att.max() > 0
    assert attention_overlay(result, att, (w // 3, h // 2)).shape == (3, h, w)
    with pytest.raises(GenfwError, match="outside"):
        inpaint_image(algo, image, mask, attention_at=(w + 5, 0))


@pytest.mark.slow
def test_cli_train_inpaint_eval(tmp_path):
    from PIL import Image

    from genfw.cli import cli

    runner = CliRunner()
    run = tmp_path / "run"
    res = runner.invoke(cli, ["run", "--plugin", "csa", "--out", str(run), "--steps", "2", "--no-progress",
                              "--set", "data.image_size=32", "--set", "algorithm.refine.csa_level=2",
                              "--set", "train.batch_size=2", "--set", "train.checkpoint_every=2"])
    assert res.exit_code == 0, res.output
    img = (np.random.default_rng(0).random((40, 50, 3)) * 255).astype(np.uint8)
    Image.fromarray(img).save(tmp_path / "img.png")
    mask = np.zeros((40, 50), np.uint8)
    mask[10:20, 15:30] = 255  # 7.5 %: inverted it is 92.5 % hole
    Image.fromarray(mask).save(tmp_path / "mask.png")
    out = tmp_path / "out.png"
    res = runner.invoke(cli, ["inpaint", str(run), str(tmp_path / "img.png"), str(tmp_path / "mask.png"),
                              "-o", str(out), "--attention", "20,15"])
    assert res.exit_code == 0, res.output
    result = np.asarray(Image.open(out))
    keep = mask == 0
    assert (result[keep] == img[keep]).all()
    assert (tmp_path / "out-attention.png").is_file()
    Image.fromarray(255 - mask).save(tmp_path / "inverted.png")
    res = runner.invoke(cli, ["inpaint", str(run), str(tmp_path / "img.png"), str(tmp_path / "inverted.png"),
                              "-o", str(out)])
    assert res.exit_code == 2 and "invert" in res.output
    Image.fromarray(mask[:30]).save(tmp_path / "small.png")
    res = runner.invoke(cli, ["inpaint", str(run), str(tmp_path / "img.png"), str(tmp_path / "small.png"),
                              "-o", str(out)])
    assert res.exit_code == 2 and "must match" in res.output
    res = runner.invoke(cli, ["eval", str(run), "--metrics", "inpaint", "-n", "10", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)["inpaint"]
    assert data["overall"]["count"] == 10 and sum(b["count"] for b in data["bins"].values()) == 10
