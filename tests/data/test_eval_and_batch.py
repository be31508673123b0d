"""`genfw eval` on inpainting runs (bins and scores independent of --batch-size, FOAM conditions, valid
JSON, per-image outputs) and batch `genfw inpaint` / `genfw complete` over folders."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

sys.path.insert(0, str(Path(__file__).parents[1]))
import realdata  # noqa: E402

from genfw.cli import cli  # noqa: E402


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def strict_json(text: str):
    def refuse(name):
        raise ValueError(f"invalid JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    common = ["--steps", "1", "--no-progress", "--device", "cpu", "--set", "train.batch_size=2"]
    res = invoke("run", "--plugin", "csa", "--out", root / "csa", *common)
    assert res.exit_code == 0, res.output
    res = invoke("run", "--plugin", "foam", "--out", root / "foam", *common, "--set", "data.length=16")
    assert res.exit_code == 0, res.output
    return root


def _eval(run, *extra):
    res = invoke("eval", run, "--metrics", "inpaint", "--device", "cpu", "--json", *extra)
    assert res.exit_code == 0, res.output
    assert "NaN" not in res.output and "Infinity" not in res.output
    return strict_json(res.output[res.output.index("{"):])["inpaint"]


def test_bins_and_scores_do_not_depend_on_batch_size(runs):
    results = [_eval(runs / "csa", "-n", "10", "--batch-size", b) for b in (1, 7, 10)]
    counts = [{k: v["count"] for k, v in r["bins"].items()} for r in results]
    assert counts[0] == counts[1] == counts[2]
    assert list(counts[0].values()) == [2, 2, 2, 2, 2]  # 10 images over 5 bins, by mask index
    for r in results[1:]:
        for m in ("l1", "l2", "psnr", "ssim"):
            assert r["overall"][m] == pytest.approx(results[0]["overall"][m], rel=1e-5)
            for k in r["bins"]:
                assert r["bins"][k][m] == pytest.approx(results[0]["bins"][k][m], rel=1e-5)


def test_empty_bins_are_null_in_json(runs, tmp_path):
    r = _eval(runs / "csa", "-n", "3", "--outputs", tmp_path / "per-image")
    empty = [v for v in r["bins"].values() if v["count"] == 0]
    assert empty and all(v["l1"] is None and v["ssim"] is None for v in empty)
    names = sorted(p.name for p in (tmp_path / "per-image").iterdir())
    assert names == ["00000-mask.png", "00000.png", "00001-mask.png", "00001.png", "00002-mask.png", "00002.png"]
    with Image.open(tmp_path / "per-image" / "00000.png") as im:
        assert im.size == (64, 64)


def test_eval_scores_foam_with_the_datas_landmarks_and_attributes(runs, tmp_path):
    r = _eval(runs / "foam", "-n", "6", "--batch-size", "4")
    assert r["overall"]["count"] == 6 and r["landmarks"] == "data" and r["attributes"] == "data"
    # a CelebA-HQ root: landmarks from its 68-point file, attributes by name from its attribute file
    hq = realdata.write_celeba_hq(tmp_path / "hq", n=4, size=64)
    r = _eval(runs / "foam", "--data", hq, "-n", "4")
    assert r["overall"]["count"] == 4 and r["landmarks"] == "data" and r["attributes"] == "data"
    # a plain folder without landmarks: refused with the fix, or detected by a named backend
    photos = tmp_path / "photos"
    photos.mkdir()
    import skimage.data

    face = skimage.data.astronaut()[0:256, 100:356]
    Image.fromarray(face).save(photos / "face.png")
    Image.fromarray(np.ascontiguousarray(face[:, ::-1])).save(photos / "mirrored.png")
    res = invoke("eval", runs / "foam", "--metrics", "inpaint", "--data", photos, "--device", "cpu")
    assert res.exit_code == 2 and "--landmarks-backend" in res.output
    r = _eval(runs / "foam", "--data", photos, "--landmarks-backend", "dlib")
    assert r["overall"]["count"] == 2 and r["landmarks"] == "detected (dlib)" and r["no_face"] == 0
    assert r["attributes"] == "0"


# --- batch inpaint / complete -------------------------------------------------------------------
def _folder(tmp_path, sizes=((80, 60), (64, 64), (50, 70))):
    imgs, masks = tmp_path / "imgs", tmp_path / "masks"
    imgs.mkdir()
    masks.mkdir()
    for i, (w, h) in enumerate(sizes):
        realdata.photo(i, w, h).save(imgs / f"p{i}.png")
        m = np.zeros((h, w), np.uint8)
        m[h // 4: h // 2, w // 4: w // 2] = 255
        Image.fromarray(m).save(masks / (f"p{i}_mask.png" if i else f"p{i}.png"))
    return imgs, masks


def test_inpaint_a_folder_writes_one_output_per_image(runs, tmp_path):
    from genfw.core.images import read_image

    imgs, masks = _folder(tmp_path)
    res = invoke("inpaint", runs / "csa", imgs, masks, "-o", tmp_path / "out", "--device", "cpu")
    assert res.exit_code == 0 and "wrote 3 images" in res.output, res.output
    for i in range(3):
        a, b = read_image(imgs / f"p{i}.png"), read_image(tmp_path / "out" / f"p{i}.png")
        assert a.shape == b.shape
        known = read_image(masks / (f"p{i}_mask.png" if i else f"p{i}.png"), 1)[0] < 0.5
        assert torch.equal(a[:, known], b[:, known])  # the known region is the input, bit for bit
    # one mask for all images, resized to each image's size
    res = invoke("inpaint", runs / "csa", imgs, masks / "p1_mask.png", "-o", tmp_path / "o2")
    assert res.exit_code == 0 and sorted(p.name for p in (tmp_path / "o2").iterdir()) == ["p0.png", "p1.png", "p2.png"]
    a, b = read_image(imgs / "p2.png"), read_image(tmp_path / "o2" / "p2.png")
    assert a.shape == b.shape == (3, 70, 50) and not torch.equal(a, b)
    # unmatched names: one line naming them, before any output
    (masks / "p2_mask.png").unlink()
    res = invoke("inpaint", runs / "csa", imgs, masks, "-o", tmp_path / "o3")
    assert res.exit_code == 2 and "1 image(s)" in res.output and "p2.png" in res.output
    assert not (tmp_path / "o3").exists()


def test_complete_a_folder_with_one_source_and_default_attributes(runs, tmp_path, monkeypatch):
    import genfw.cli.landmarks_cmd as lc

    imgs, masks = _folder(tmp_path, sizes=((64, 64), (48, 48)))
    lm = torch.from_numpy(realdata.landmarks68(1, 1)).float() + 0.5  # unit coordinates
    monkeypatch.setattr(lc, "detect_one", lambda det, image, name: lm.clamp(0, 1))
    monkeypatch.setattr(lc, "build_detector", lambda *a, **k: None)
    res = invoke("complete", runs / "foam", imgs, masks, "-o", tmp_path / "out", "--landmarks-from",
                 imgs / "p0.png", "--landmarks-out", tmp_path / "lm.json", "--device", "cpu")
    assert res.exit_code == 0 and "wrote 2 images" in res.output, res.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["p0.png", "p1.png"]
    used = json.loads((tmp_path / "lm.json").read_text())
    assert [Path(r["image"]).name for r in used] == ["p0.png", "p1.png"]
