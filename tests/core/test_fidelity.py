"""FID / KID / IS / PRC through the real torch-fidelity code, on random Inception weights written
in torch-fidelity's own .pth format (no network, no real weights needed)."""
import hashlib
import json
import math
from unittest import mock

import pytest
import torch

from genfw.core.errors import GenfwError, MissingWeightsError
from genfw.core.fidelity import FidelityConfig, FidelityMetric, format_table, to_uint8_rgb


def _random_inception_state_dict(seed: int = 0) -> dict:
    """FeatureExtractorInceptionV3's exact keys and shapes, with He-scaled random convs so features
    neither vanish nor explode through 20-odd layers (PyTorch's default init makes them ~1e-9)."""
    import torch_fidelity.feature_extractor_inceptionv3 as fe

    # build the real module class without its weight loading, only to read its parameter layout
    with mock.patch.object(fe, "load_state_dict_from_url", lambda *a, **k: {}), \
            mock.patch.object(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd, *a, **k: None):
        module = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    gen = torch.Generator().manual_seed(seed)
    sd = {}
    for k, t in module.state_dict().items():
        if k.endswith("conv.weight"):
            fan_in = t[0].numel()
            t = torch.randn(t.shape, generator=gen) * math.sqrt(2.0 / fan_in)
        elif k.endswith("bn.bias"):
            t = torch.randn(t.shape, generator=gen) * 0.1
        elif k == "fc.weight":
            t = torch.randn(t.shape, generator=gen) * math.sqrt(1.0 / t.shape[1])
        sd[k] = t.clone()
    return sd


@pytest.fixture(scope="module")
def inception_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "weights-inception-2015-12-05-6726825d.pth"
    torch.save(_random_inception_state_dict(), path)
    return path


def _faces(n: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    """Smooth grey blobs (structured, not white noise) at 32 px; `shift` brightens and adds stripes."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 32), indexing="ij")
    cx, cy = (torch.rand(2, n, 1, 1, generator=g) - 0.5) * 0.6
    r = 0.4 + 0.2 * torch.rand(n, 1, 1, generator=g)
    img = torch.sigmoid((r - ((xx - cx) ** 2 + (yy - cy) ** 2).sqrt()) * 12)
    img = 0.2 + 0.6 * img + 0.05 * torch.rand(n, 32, 32, generator=g)
    if shift:
        img = img + shift * (0.5 + 0.5 * torch.sin(xx * 12))
    return img.clamp(0, 1).unsqueeze(1)


def test_uint8_conversion_repeats_grey():
    x = torch.tensor([0.0, 0.5, 1.0, 1.2]).view(1, 1, 2, 2)
    out = to_uint8_rgb(x)
    assert out.dtype == torch.uint8 and out.shape == (1, 3, 2, 2)
    assert out[0, :, 0, 0].tolist() == [0, 0, 0] and out[0, 2, 0, 1] == 128 and out[0, 1, 1, 1] == 255
    with pytest.raises(GenfwError, match="channels"):
        to_uint8_rgb(torch.rand(1, 4, 2, 2))


def test_fid_kid_self_near_zero_and_grow_with_shift(inception_file):
    torch.set_num_threads(1)
    real = _faces(10, seed=1)
    metric = FidelityMetric(FidelityConfig(metrics=["fid", "kid"], weights=str(inception_file),
                                           kid_subsets=20, batch_size=10))
    same = metric.compute(real, real)
    shifted = metric.compute(_faces(10, seed=2, shift=0.3), real)
    fid_same, fid_shift = same["metrics"]["fid"]["value"], shifted["metrics"]["fid"]["value"]
    kid_same, kid_shift = same["metrics"]["kid"]["mean"], shifted["metrics"]["kid"]["mean"]
    assert abs(fid_same) < 1e-3 * fid_shift and fid_shift > 0
    assert abs(kid_same) < 0.05 * kid_shift and kid_shift > 0

    p = shifted["provenance"]
    assert p["feature_extractor"] == "inception-v3-compat" and p["feature_layers"] == {"fid": "2048", "kid": "2048"}
    assert p["weights_sha256"] == hashlib.sha256(inception_file.read_bytes()).hexdigest()
    assert p["weights_source"] == "explicit" and p["weights_file"] == str(inception_file)
    assert p["num_samples"] == {"generated": 10, "real": 10}
    assert p["image_size"] == [32, 32] and p["inception_input_size"] == 299
    assert p["kid_subset_size"] == 10  # capped at the sample count
    table = format_table(shifted)
    assert "FID" in table and "KID" in table and p["weights_sha256"] in table


def test_isc_and_prc_from_cache_imported_weights(inception_file, monkeypatch):
    """`genfw weights import inception-fid FILE` (safetensors in the cache) feeds the same code."""
    from genfw.core import weights

    cached = weights.import_file("inception-fid", inception_file)
    torch.set_num_threads(1)
    real = _faces(8, seed=3)
    res = FidelityMetric(FidelityConfig(metrics=["isc", "prc"], batch_size=8)).compute(_faces(8, seed=4), real)
    m, p = res["metrics"], res["provenance"]
    assert m["isc"]["mean"] >= 1.0 - 1e-6  # IS = exp(E KL) >= 1
    assert 0.0 <= m["prc"]["precision"] <= 1.0 and 0.0 <= m["prc"]["recall"] <= 1.0
    assert p["weights_source"] == "cache" and p["weights_file"] == str(cached)
    assert p["weights_origin_sha256"] == hashlib.sha256(inception_file.read_bytes()).hexdigest()
    assert p["isc_splits"] == 8 and p["feature_layers"]["isc"] == "logits_unbiased"


def test_missing_weights_says_how_to_provide(tmp_path):
    with pytest.raises(MissingWeightsError) as info:
        FidelityMetric(FidelityConfig(metrics=["fid"])).compute(torch.rand(4, 3, 8, 8), torch.rand(4, 3, 8, 8))
    msg = str(info.value)
    assert "\n" not in msg
    assert "genfw weights import inception-fid PATH" in msg and "--weights PATH" in msg
    with pytest.raises(MissingWeightsError, match="not found"):
        FidelityMetric(FidelityConfig(weights=str(tmp_path / "nope.pth"))).compute(torch.rand(4, 3, 8, 8),
                                                                                    torch.rand(4, 3, 8, 8))


def test_wrong_weights_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, bad)
    with pytest.raises(GenfwError, match="not torch-fidelity's Inception weights"):
        FidelityMetric(FidelityConfig(weights=str(bad))).compute(torch.rand(4, 3, 8, 8), torch.rand(4, 3, 8, 8))


def test_config_and_registry():
    from genfw.registry import get_registry

    with pytest.raises(ValueError, match="available: fid, kid, isc, prc"):
        FidelityConfig(metrics=["fid", "is"])
    metric = get_registry().build({"type": "core.fidelity", "metrics": ["kid"]}, kind="metric")
    assert isinstance(metric, FidelityMetric) and metric.cfg.metrics == ["kid"]


def _tiny_gan_run(tmp_path):
    from genfw.core.config import resolve_run
    from genfw.core.trainer import train
    from genfw.registry import get_registry

    reg = get_registry()
    raw = {"seed": 0, "device": "cpu", "out": str(tmp_path / "run"),
           "algorithm": {"type": "core.gan",
                         "generator": {"type": "core.dcgan-generator", "latent_dim": 8, "base_channels": 4,
                                       "max_channels": 8},
                         "discriminator": {"type": "core.dcgan-discriminator", "base_channels": 4,
                                           "max_channels": 8}},
           "data": {"type": "core.lfw-subset", "image_size": 16, "channels": 1},
           "train": {"steps": 2, "batch_size": 4, "log_every": 1, "sample_every": 0, "checkpoint_every": 2}}
    cfg, resolved = resolve_run(raw, reg)
    train(cfg, resolved, reg, progress=False)
    return tmp_path / "run"


def test_eval_cli_prints_fid_kid_table(inception_file, tmp_path):
    from click.testing import CliRunner

    from genfw.cli import cli

    torch.set_num_threads(1)
    run = _tiny_gan_run(tmp_path)
    runner = CliRunner()
    res = runner.invoke(cli, ["eval", str(run), "--metrics", "fid,kid", "--weights", str(inception_file),
                              "-n", "10", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "FID" in res.output and "KID" in res.output and "inception-v3-compat" in res.output
    assert "10 generated vs 10 real" in res.output
    res = runner.invoke(cli, ["eval", str(run), "--metrics", "fid", "-n", "4"])
    assert res.exit_code == 2 and "genfw weights import inception-fid PATH" in res.output
    assert "Traceback" not in res.output


@pytest.mark.slow
def test_eval_cli_json_is_reproducible(inception_file, tmp_path):
    from click.testing import CliRunner

    from genfw.cli import cli

    run = _tiny_gan_run(tmp_path)
    args = ["eval", str(run), "--metrics", "fid,kid,isc,prc", "--weights", str(inception_file), "-n", "20",
            "--json", "--seed", "3", "--device", "cpu"]
    first, second = CliRunner().invoke(cli, args), CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    a, b = json.loads(first.output)["fidelity"], json.loads(second.output)["fidelity"]
    assert a["metrics"] == b["metrics"]
    assert a["provenance"]["num_samples"] == {"generated": 20, "real": 20}
    assert a["provenance"]["image_size"] == [16, 16] and a["provenance"]["seed"] == 3
