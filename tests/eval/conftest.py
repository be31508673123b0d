"""Shared fixtures: pretrained-weight files with random values in their real formats, tiny trained runs."""
import math
from unittest import mock

import pytest
import torch

from genfw.core import weights as W


def random_inception_state_dict(seed: int = 0) -> dict:
    """torch-fidelity's FeatureExtractorInceptionV3 keys and shapes, He-scaled so features stay finite."""
    import torch_fidelity.feature_extractor_inceptionv3 as fe

    with mock.patch.object(fe, "load_state_dict_from_url", lambda *a, **k: {}), \
            mock.patch.object(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd, *a, **k: None):
        module = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    gen = torch.Generator().manual_seed(seed)
    sd = {}
    for k, t in module.state_dict().items():
        if k.endswith("conv.weight"):
            t = torch.randn(t.shape, generator=gen) * math.sqrt(2.0 / t[0].numel())
        elif k.endswith("bn.bias"):
            t = torch.randn(t.shape, generator=gen) * 0.1
        elif k == "fc.weight":
            t = torch.randn(t.shape, generator=gen) * math.sqrt(1.0 / t.shape[1])
        sd[k] = t.clone()
    return sd


@pytest.fixture(scope="session")
def weight_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("weights")
    inception = d / "weights-inception-2015-12-05-6726825d.pth"
    torch.save(random_inception_state_dict(), inception)
    g = torch.Generator().manual_seed(0)
    vgg = {}
    for i, (o, c) in zip(W.VGG16_CONV_INDICES, W.VGG16_CONV_SHAPES):
        vgg[f"features.{i}.weight"] = torch.randn(o, c, 3, 3, generator=g) * (2.0 / (9 * c)) ** 0.5
        vgg[f"features.{i}.bias"] = torch.zeros(o)
    torch.save(vgg, d / "vgg16-397923af.pth")
    heads = {f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1, generator=g) * 0.1
             for k, c in enumerate(W.LPIPS_VGG_CHANNELS)}
    torch.save(heads, d / "vgg.pth")
    return {"inception": str(inception), "vgg": str(d / "vgg16-397923af.pth"), "heads": str(d / "vgg.pth")}


def _train(tmp_path_factory, name, args):
    from click.testing import CliRunner

    from genfw.cli import cli

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp(name) / "run"
    res = CliRunner().invoke(cli, ["run", "--out", str(out), "--no-progress", *args])
    assert res.exit_code == 0, res.output
    return out


@pytest.fixture(scope="session")
def csa_run(tmp_path_factory):
    return _train(tmp_path_factory, "csa", ["--plugin", "csa", "--steps", "2", "--set", "data.image_size=32",
                                            "--set", "algorithm.refine.csa_level=2", "--set", "train.batch_size=2",
                                            "--set", "train.checkpoint_every=2"])


@pytest.fixture(scope="session")
def introvae_run(tmp_path_factory):
    return _train(tmp_path_factory, "introvae", ["--plugin", "introvae", "--steps", "2", "--set", "train.batch_size=4",
                                                 "--set", "train.checkpoint_every=2", "--set", "train.sample_every=0"])


@pytest.fixture(scope="session")
def lis_run(tmp_path_factory):
    return _train(tmp_path_factory, "lis", ["--plugin", "lis", "--steps", "2", "--set", "train.batch_size=4",
                                            "--set", "train.checkpoint_every=2", "--set", "train.sample_every=0"])


@pytest.fixture(scope="session")
def foam_run(tmp_path_factory):
    return _train(tmp_path_factory, "foam", ["--plugin", "foam", "--steps", "2", "--set", "train.batch_size=2",
                                             "--set", "train.checkpoint_every=2", "--set", "train.sample_every=0"])
