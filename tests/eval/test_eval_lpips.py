"""LPIPS-VGG: hand-built cases, the asset resolution, and (where the lpips package is installed) the
reference implementation on the same random weights written in the real file formats."""
import pytest
import torch
import torch.nn.functional as F

from genfw.core import weights as W
from genfw.core.errors import GenfwError, MissingWeightsError
from genfw.core.eval.lpips import LAYERS, LPIPS, distance_from_features
from genfw.core.vgg import IMAGENET_MEAN, IMAGENET_STD


def random_vgg_state(seed=0):
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for i, (o, c) in zip(W.VGG16_CONV_INDICES, W.VGG16_CONV_SHAPES):
        sd[f"features.{i}.weight"] = torch.randn(o, c, 3, 3, generator=g) * (2.0 / (9 * c)) ** 0.5
        sd[f"features.{i}.bias"] = torch.randn(o, generator=g) * 0.01
    sd["classifier.0.weight"] = torch.zeros(4, 4)  # torchvision's file also holds the classifier
    return sd


def random_heads(seed=1, only_first=False):
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, c in enumerate(W.LPIPS_VGG_CHANNELS):
        w = torch.rand(1, c, 1, 1, generator=g) * 0.1
        out[f"lin{k}.model.1.weight"] = w if not only_first or k == 0 else torch.zeros_like(w)
    return out


@pytest.fixture
def files(tmp_path):
    vgg, heads = tmp_path / "vgg16-397923af.pth", tmp_path / "vgg.pth"
    torch.save(random_vgg_state(), vgg)
    torch.save(random_heads(), heads)
    return vgg, heads


def test_hand_built_features():
    # one pixel, two channels: a = (3, 4) -> (0.6, 0.8), b = (0, 2) -> (0, 1); diff^2 = (0.36, 0.04)
    a = torch.tensor([3.0, 4.0]).view(1, 2, 1, 1)
    b = torch.tensor([0.0, 2.0]).view(1, 2, 1, 1)
    w = torch.tensor([1.0, 2.0]).view(1, 2, 1, 1)
    assert distance_from_features([a], [b], [w]).item() == pytest.approx(0.36 + 2 * 0.04, abs=1e-6)
    # two layers add; a 2x1 map averages its pixels: pixel 2 identical -> half of pixel 1's value
    a2 = torch.cat([a, b], dim=-1)
    b2 = torch.cat([b, b], dim=-1)
    d = distance_from_features([a, a2], [b, b2], [w, w])
    assert d.item() == pytest.approx(0.44 + 0.22, abs=1e-6)


def test_first_layer_only_matches_direct_convs(files):
    vgg, _ = files
    sd = random_vgg_state()
    heads = random_heads(only_first=True)
    net = LPIPS(vgg="vgg16-imagenet", vgg_path=str(vgg), heads=heads)
    g = torch.Generator().manual_seed(3)
    x, y = torch.rand(2, 3, 16, 16, generator=g), torch.rand(2, 3, 16, 16, generator=g)

    def relu1_2(img):
        h = (img - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        h = F.relu(F.conv2d(h, sd["features.0.weight"], sd["features.0.bias"], padding=1))
        return F.relu(F.conv2d(h, sd["features.2.weight"], sd["features.2.bias"], padding=1))

    fa, fb = relu1_2(x), relu1_2(y)
    na = fa / (fa.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
    nb = fb / (fb.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
    ref = ((na - nb) ** 2 * heads["lin0.model.1.weight"]).sum(1).mean((-2, -1))
    assert torch.allclose(net(x, y), ref, atol=1e-5)
    assert torch.allclose(net(x, x), torch.zeros(2), atol=1e-7)


def test_heads_resolve_through_the_asset_system(files, monkeypatch):
    vgg, heads = files
    monkeypatch.setattr(W, "_package_files", lambda dist, suffixes: [])  # no lpips package here
    with pytest.raises(MissingWeightsError, match="genfw weights import lpips-vgg PATH"):
        LPIPS(vgg_path=str(vgg))
    cached = W.import_file("lpips-vgg", heads)
    assert cached.name == "lpips-vgg.safetensors"
    net = LPIPS(vgg_path=str(vgg))
    p = net.provenance()
    assert p["heads_file"] == str(cached) and p["vgg_sha256"] == W.sha256(vgg) and p["version"] == "0.1"
    x = torch.rand(1, 3, 16, 16)
    assert net(x, 1 - x).item() > 0
    bad = vgg.parent / "bad.pth"
    torch.save({"lin0.model.1.weight": torch.ones(1, 3, 1, 1)}, bad)
    with pytest.raises(GenfwError, match="lin0.model.1.weight is"):
        W.import_file("lpips-vgg", bad)


def test_matches_the_lpips_package(files):
    lpips = pytest.importorskip("lpips")
    vgg, heads = files
    ref = lpips.LPIPS(net="vgg", pnet_rand=True, model_path=str(heads), verbose=False).eval()
    # the reference's five slices are torchvision's features; load our random trunk into them
    sd = random_vgg_state()
    own = {}
    for name, t in ref.net.state_dict().items():  # slice{k}.{idx}.weight -> features.{idx}.weight
        own[name] = sd[f"features.{name.split('.', 1)[1]}"]
    ref.net.load_state_dict(own)
    net = LPIPS(vgg_path=str(vgg), heads_path=str(heads))
    g = torch.Generator().manual_seed(5)
    x, y = torch.rand(3, 3, 32, 32, generator=g), torch.rand(3, 3, 32, 32, generator=g)
    with torch.no_grad():
        expected = ref(x * 2 - 1, y * 2 - 1).flatten()
    assert torch.allclose(net(x, y), expected, rtol=1e-4, atol=1e-6)


def test_package_heads_are_found_when_lpips_is_installed(files):
    lpips = pytest.importorskip("lpips")
    path, source = W.locate("lpips-vgg")
    assert source == "package" and path.as_posix().endswith("weights/v0.1/vgg.pth")
    sd = W.load_tensors("lpips-vgg")
    assert sorted(sd) == [f"lin{k}.model.1.weight" for k in range(5)] and len(LAYERS) == 5
    # the released heads (through the asset system) agree with the package using its own file
    vgg, _ = files
    ref = lpips.LPIPS(net="vgg", pnet_rand=True, verbose=False).eval()
    trunk = random_vgg_state()
    ref.net.load_state_dict({k: trunk[f"features.{k.split('.', 1)[1]}"] for k in ref.net.state_dict()})
    net = LPIPS(vgg_path=str(vgg))
    assert net.heads_file == str(path)
    g = torch.Generator().manual_seed(7)
    x, y = torch.rand(2, 3, 32, 32, generator=g), torch.rand(2, 3, 32, 32, generator=g)
    with torch.no_grad():
        expected = ref(x * 2 - 1, y * 2 - 1).flatten()
    assert torch.allclose(net(x, y), expected, rtol=1e-4, atol=1e-6)
