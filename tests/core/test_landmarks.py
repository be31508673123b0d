"""Landmark backends (core.dlib, core.fan), `genfw landmarks` and `genfw complete`."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from genfw import GenfwError
from genfw.registry import get_registry


def _has(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def _dlib_ready() -> bool:
    from genfw.core.weights import locate

    return _has("dlib") and locate("dlib-68")[0] is not None


needs_dlib = pytest.mark.skipif(not _dlib_ready(), reason="dlib / face-recognition-models not installed "
                                                          "(pip install 'genfw[landmarks]')")
needs_fa = pytest.mark.skipif(not _has("face_alignment"), reason="face-alignment not installed")


@pytest.fixture(scope="module")
def astronaut(tmp_path_factory):
    skimage_data = pytest.importorskip("skimage.data")
    from genfw.core.images import save_image

    img = torch.from_numpy(skimage_data.astronaut()).permute(2, 0, 1).float() / 255
    path = tmp_path_factory.mktemp("img") / "astronaut.png"
    save_image(img, path)
    return img, path


@pytest.fixture(scope="module")
def dlib_detector():
    if not _dlib_ready():
        pytest.skip("dlib / face-recognition-models not installed")
    return get_registry().build({"type": "core.dlib"}, kind="landmarks")


# --- dlib on a real face --------------------------------------------------------------------------
@needs_dlib
def test_dlib_finds_68_ibug_points_on_a_real_face(astronaut, dlib_detector):
    img, _ = astronaut
    lm, found = dlib_detector(torch.stack([img, torch.full_like(img, 0.5)]))
    assert lm.shape == (2, 68, 2) and found.tolist() == [True, False]
    p = lm[0] * 512
    # the astronaut's face lies roughly in x 170..280, y 90..190 of the 512 x 512 image
    assert (p[:, 0] > 160).all() and (p[:, 0] < 290).all() and (p[:, 1] > 70).all() and (p[:, 1] < 200).all()
    jaw, brows, nose, eye_r, eye_l, mouth = p[0:17], p[17:27], p[27:36], p[36:42], p[42:48], p[48:68]
    assert jaw[8, 1] > mouth[:, 1].max() > nose[:, 1].mean() > eye_r[:, 1].mean() > brows[:, 1].mean()
    # iBUG: 36-41 is the eye on the image's left, 42-47 on its right; the jaw runs left to right
    assert eye_r[:, 0].mean() < nose[:, 0].mean() < eye_l[:, 0].mean()
    assert jaw[0, 0] < jaw[8, 0] < jaw[16, 0]
    assert mouth[0, 0] < mouth[6, 0]   # mouth corners 48 (left) and 54 (right)


@needs_dlib
def test_dlib_is_consistent_across_scales(astronaut, dlib_detector):
    from genfw.core.images import resize

    img, _ = astronaut
    big, _ = dlib_detector(img[None])
    small, found = dlib_detector(resize(img, 256)[None])
    assert found[0]
    assert (big - small).abs().mean() < 0.01   # unit coordinates do not depend on resolution


def test_missing_dlib_weights_is_one_line(monkeypatch, tmp_path):
    import genfw.core.weights as w

    monkeypatch.setattr(w, "package_source", lambda name: (None, False))
    if not _has("dlib"):
        with pytest.raises(GenfwError, match="needs dlib"):
            get_registry().build({"type": "core.dlib"}, kind="landmarks")
        return
    with pytest.raises(GenfwError) as exc:
        get_registry().build({"type": "core.dlib"}, kind="landmarks")
    msg = str(exc.value)
    assert "dlib-68" in msg and "genfw weights import" in msg and "\n" not in msg
    with pytest.raises(GenfwError, match="explicit path not found"):
        get_registry().build({"type": "core.dlib", "weights": str(tmp_path / "nope.dat")}, kind="landmarks")


@needs_dlib
def test_dlib_rejects_a_file_that_is_no_shape_predictor(tmp_path):
    bad = tmp_path / "bad.dat"
    bad.write_bytes(b"\0" * 4096)
    with pytest.raises(GenfwError, match="not a dlib shape predictor"):
        get_registry().build({"type": "core.dlib", "weights": str(bad)}, kind="landmarks")


# --- FAN with random weights in face-alignment's file formats -------------------------------------
def _random_fan_files(tmp_path):
    from face_alignment.detection.sfd.net_s3fd import s3fd
    from face_alignment.models import FAN

    torch.manual_seed(0)
    fan, det = tmp_path / "2DFAN4-11f355bf06.pth.tar", tmp_path / "s3fd-619a316812.pth"
    torch.save(FAN(4).state_dict(), fan)      # the released files are plain state dicts
    torch.save(s3fd().state_dict(), det)
    return fan, det


@needs_fa
@pytest.mark.slow
def test_fan_random_weights_through_the_hub_cache(tmp_path, monkeypatch):
    fan, det = _random_fan_files(tmp_path)
    hub = tmp_path / "torch-home" / "hub" / "checkpoints"   # conftest points TORCH_HOME there
    hub.mkdir(parents=True)
    fan.rename(hub / fan.name)
    det.rename(hub / det.name)
    d = get_registry().build({"type": "core.fan", "flip_input": False}, kind="landmarks")
    lm, found = d(torch.rand(2, 3, 64, 48))
    assert lm.shape == (2, 68, 2) and found.dtype == torch.bool
    assert torch.isfinite(lm).all() and lm.min() >= 0 and lm.max() <= 1
    assert (lm[~found] == 0).all()
    u8 = (torch.rand(64, 48, 3) * 255).to(torch.uint8).numpy()
    pts = d.landmarks_in_box(u8, (8, 8, 40, 56))
    assert pts.shape == (68, 2) and np.isfinite(pts).all()

    # the library's own pipeline on the same files (found in the hub cache, so it downloads
    # nothing) gives the same points for the same face box
    import inspect

    import face_alignment

    from genfw.core.landmarks import landmarks_type_2d

    kw = {"compile": False} if "compile" in inspect.signature(face_alignment.FaceAlignment).parameters else {}
    fa = face_alignment.FaceAlignment(landmarks_type_2d(face_alignment), device="cpu", flip_input=False,
                                      face_detector_kwargs={"path_to_detector": str(hub / det.name)}, **kw)
    ref = fa.get_landmarks_from_image(u8, detected_faces=[np.array([8, 8, 40, 56, 1.0])])[0]
    assert np.allclose(ref[:, :2], pts, atol=1e-4)


@needs_fa
def test_fan_missing_and_wrong_weights(tmp_path):
    with pytest.raises(GenfwError) as exc:
        get_registry().build({"type": "core.fan"}, kind="landmarks")
    assert "fan-2d" in str(exc.value) and "\n" not in str(exc.value)
    _, det = _random_fan_files(tmp_path)
    # the detector's file where FAN's is expected: same format, wrong network
    with pytest.raises(GenfwError, match="do not fit face-alignment's network"):
        get_registry().build({"type": "core.fan", "weights": str(det), "detector_weights": str(det)},
                             kind="landmarks")


def test_landmarks_type_naming_across_face_alignment_versions():
    from types import SimpleNamespace

    from genfw.core.landmarks import landmarks_type_2d

    new = SimpleNamespace(LandmarksType=SimpleNamespace(TWO_D=1, THREE_D=3))      # >= 1.4
    old = SimpleNamespace(LandmarksType=SimpleNamespace(_2D=1, _3D=3))            # < 1.4
    assert landmarks_type_2d(new) == 1 and landmarks_type_2d(old) == 1
    with pytest.raises(GenfwError, match="unsupported face-alignment"):
        landmarks_type_2d(SimpleNamespace(LandmarksType=SimpleNamespace(TWO=1)))


# --- landmark files -------------------------------------------------------------------------------
def test_read_landmarks_json_unit_pixels_and_errors(tmp_path):
    from genfw.core.landmarks import read_landmarks_json

    unit = np.random.default_rng(0).uniform(0.1, 0.9, (68, 2))
    (tmp_path / "u.json").write_text(json.dumps(unit.tolist()))
    assert torch.allclose(read_landmarks_json(tmp_path / "u.json", 40, 20)[0], torch.tensor(unit).float())
    px = unit * [40, 20] - 0.5          # pixel index coordinates of the same points
    px[0] = [30.0, 15.0]                 # one value above 1 marks the file as pixels
    (tmp_path / "p.json").write_text(json.dumps({"landmarks": px.tolist()}))
    got = read_landmarks_json(tmp_path / "p.json", 40, 20)[0]
    assert torch.allclose(got[1:], torch.tensor(unit[1:]).float(), atol=1e-6)
    assert torch.allclose(got[0], torch.tensor([30.5 / 40, 15.5 / 20]))
    (tmp_path / "bad.json").write_text(json.dumps([[0.1, 0.2]] * 67))
    with pytest.raises(GenfwError, match="68 x 2"):
        read_landmarks_json(tmp_path / "bad.json", 40, 20)
    with pytest.raises(GenfwError, match="not found"):
        read_landmarks_json(tmp_path / "none.json", 40, 20)


# --- CLI ------------------------------------------------------------------------------------------
@needs_dlib
def test_landmarks_cli_json_and_overlay(astronaut, tmp_path):
    from genfw.cli import cli
    from genfw.core.images import read_image

    _, path = astronaut
    out = tmp_path / "overlay.png"
    res = CliRunner().invoke(cli, ["landmarks", str(path), "-o", str(out), "--json"])
    assert res.exit_code == 0, res.output
    rec = json.loads(res.output)
    assert rec["width"] == 512 and len(rec["landmarks"]) == 68 and len(rec["pixels"]) == 68
    x, y = rec["pixels"][30]
    assert rec["landmarks"][30] == pytest.approx([(x + 0.5) / 512, (y + 0.5) / 512], abs=1e-4)
    over = read_image(out)
    orig = read_image(path)
    assert over.shape == orig.shape and (over != orig).any()
    # the nose tip pixel is painted in the nose colour (cyan)
    assert over[:, int(rec["landmarks"][30][1] * 512), int(rec["landmarks"][30][0] * 512)].tolist() == [0, 1, 1]


@needs_dlib
def test_landmarks_cli_no_face_is_a_clear_error(tmp_path):
    from genfw.cli import cli
    from genfw.core.images import save_image

    save_image(torch.full((3, 64, 64), 0.5), tmp_path / "grey.png")
    res = CliRunner().invoke(cli, ["landmarks", str(tmp_path / "grey.png")])
    assert res.exit_code == 2 and "no face found" in res.output and "Traceback" not in res.output


# --- genfw complete on a tiny FOAM run ------------------------------------------------------------
def _tiny_foam(root, **algorithm):
    from genfw.core.config import deep_merge, resolve_run
    from genfw.core.trainer import train
    from genfw.plugins.foam.presets import PRESETS

    registry = get_registry()
    raw = deep_merge(PRESETS["default"][0], {
        "out": str(root / "run"), "device": "cpu",
        "algorithm": {**algorithm, "generator": {"base_channels": 4, "max_channels": 8, "latent_channels": 8},
                      "discriminator": {"base_channels": 4, "max_channels": 8},
                      "first_images": 4, "grow_images": [4], "stabilise_images": 4, "pool_size": 4},
        "data": {"image_size": 16, "length": 16},
        "train": {"steps": 3, "batch_size": 4, "log_every": 1, "sample_every": 0, "checkpoint_every": 3}})
    cfg, resolved = resolve_run(raw, registry)
    train(cfg, resolved, registry, progress=False)
    return root / "run"


@pytest.fixture(scope="module")
def foam_run(tmp_path_factory):
    return _tiny_foam(tmp_path_factory.mktemp("foam"))


@pytest.fixture(scope="module")
def coarse_run(tmp_path_factory):
    # an unconditioned inpainting run, standing in for the paper's coarse model
    return _tiny_foam(tmp_path_factory.mktemp("coarse"), use_landmarks=False, use_attributes=False)


def _image_and_mask(tmp_path, h=40, w=56):
    from genfw.core.images import save_image
    from genfw.core.synthetic_faces import render_face

    img, lm, _ = render_face(64, np.random.default_rng(3))
    img = torch.nn.functional.interpolate(torch.from_numpy(img).permute(2, 0, 1)[None], size=(h, w),
                                          mode="bilinear", align_corners=False)[0].clamp(0, 1)
    mask = torch.zeros(1, h, w)
    mask[:, 10:26, 15:40] = 1
    save_image(img, tmp_path / "face.png")
    save_image(mask, tmp_path / "mask.png")
    return tmp_path / "face.png", tmp_path / "mask.png", lm


def test_complete_with_landmarks_file_keeps_known_pixels(foam_run, tmp_path):
    from genfw.cli import cli
    from genfw.core.images import read_image

    img, mask, lm = _image_and_mask(tmp_path)
    (tmp_path / "lm.json").write_text(json.dumps(lm.tolist()))
    out = tmp_path / "out.png"
    res = CliRunner().invoke(cli, ["complete", str(foam_run), str(img), str(mask), "-o", str(out),
                                   "--landmarks", str(tmp_path / "lm.json"), "--attributes", "Smiling=1,Male=0",
                                   "--device", "cpu"])
    assert res.exit_code == 0, res.output
    a, b, m = read_image(img), read_image(out), read_image(mask, channels=1) > 0.5
    assert b.shape == a.shape
    assert torch.equal(a[:, ~m[0]], b[:, ~m[0]])           # known region bit for bit
    assert not torch.equal(a[:, m[0]], b[:, m[0]])         # the hole was filled

    # a different structure gives a different completion: the landmarks reach the generator
    shifted = np.clip(lm + [0.15, 0.1], 0, 1)
    (tmp_path / "lm2.json").write_text(json.dumps({"landmarks": shifted.tolist()}))
    res = CliRunner().invoke(cli, ["complete", str(foam_run), str(img), str(mask), "-o", str(tmp_path / "o2.png"),
                                   "--landmarks", str(tmp_path / "lm2.json"), "--attributes", "Smiling=1",
                                   "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert not torch.equal(read_image(tmp_path / "o2.png")[:, m[0]], b[:, m[0]])


def test_complete_errors_are_one_line(foam_run, tmp_path):
    from genfw.cli import cli

    img, mask, lm = _image_and_mask(tmp_path)
    (tmp_path / "lm.json").write_text(json.dumps(lm.tolist()))
    base = ["complete", str(foam_run), str(img), str(mask), "-o", str(tmp_path / "o.png"), "--device", "cpu"]
    cases = [([], "conditioned on landmarks"),
             (["--landmarks", str(tmp_path / "lm.json"), "--attributes", "Bald=1"], "unknown attribute 'Bald'"),
             (["--landmarks", str(tmp_path / "lm.json"), "--landmarks-from", str(img)], "one landmark source")]
    for extra, msg in cases:
        res = CliRunner().invoke(cli, base + extra)
        assert res.exit_code == 2 and msg in res.output and "Traceback" not in res.output, (extra, res.output)
    # attributes left out are 0 (as documented), not an error
    res = CliRunner().invoke(cli, base + ["--landmarks", str(tmp_path / "lm.json")])
    assert res.exit_code == 0, res.output


def test_complete_detects_on_the_coarse_completion(foam_run, coarse_run, tmp_path, monkeypatch):
    # the detector is replaced by one that records what it is shown: the coarse run's completion of
    # IMAGE (known pixels = IMAGE) must be what the landmarks come from
    import genfw.cli.landmarks_cmd as lc
    from genfw.cli import cli
    from genfw.core.images import read_image

    img, mask, lm = _image_and_mask(tmp_path)
    seen = []

    def fake(images):
        seen.append(images[0].clone())
        return torch.from_numpy(lm).float()[None], torch.tensor([True])

    monkeypatch.setattr(lc, "build_detector", lambda *a, **k: fake)
    res = CliRunner().invoke(cli, ["complete", str(foam_run), str(img), str(mask), "-o", str(tmp_path / "o.png"),
                                   "--coarse", str(coarse_run), "--attributes", "Male=1", "--device", "cpu",
                                   "--landmarks-out", str(tmp_path / "used.json")])
    assert res.exit_code == 0, res.output
    a, m = read_image(img), read_image(mask, channels=1) > 0.5
    assert len(seen) == 1 and seen[0].shape == a.shape
    assert torch.equal(seen[0][:, ~m[0]], a[:, ~m[0]]) and not torch.equal(seen[0][:, m[0]], a[:, m[0]])
    used = json.loads((tmp_path / "used.json").read_text())
    assert np.allclose(used["landmarks"], lm, atol=1e-5)


@needs_dlib
def test_complete_with_landmarks_from_a_source_actor(foam_run, astronaut, tmp_path):
    from genfw.cli import cli
    from genfw.core.images import read_image

    img, mask, _ = _image_and_mask(tmp_path)
    _, source = astronaut
    res = CliRunner().invoke(cli, ["complete", str(foam_run), str(img), str(mask), "-o", str(tmp_path / "o.png"),
                                   "--landmarks-from", str(source), "--attributes", "Smiling=0",
                                   "--landmarks-out", str(tmp_path / "used.json"), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    a, b, m = read_image(img), read_image(tmp_path / "o.png"), read_image(mask, channels=1) > 0.5
    assert torch.equal(a[:, ~m[0]], b[:, ~m[0]])
    used = np.array(json.loads((tmp_path / "used.json").read_text())["landmarks"])
    assert used.shape == (68, 2) and 0.3 < used[30, 0] < 0.55   # the astronaut's nose, in unit coordinates


@needs_fa
def test_landmarks_cli_fan_without_weights_is_one_line(astronaut):
    from genfw.cli import cli

    _, path = astronaut
    res = CliRunner().invoke(cli, ["landmarks", str(path), "--backend", "fan", "--device", "cpu"])
    assert res.exit_code == 2 and "fan-2d" in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1
