"""The real-data path: --data means the user's data, CelebA label mismatches are reported, masks are
a function of (seed, index), FOAM's VGG weights resolve, and `genfw eval` scores FOAM models."""
from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parents[1]))
import realdata  # noqa: E402

from genfw.cli import cli  # noqa: E402


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _dry_data(*args) -> dict:
    import tomllib

    res = invoke("run", *args, "--dry-run")
    assert res.exit_code == 0, res.output
    text = res.output[res.output.index("plugin ="):] if "plugin =" in res.output else res.output
    return tomllib.loads("\n".join(ln for ln in text.splitlines() if not ln.startswith("note:")))["data"]


# --- point 1: --data ------------------------------------------------------------------------------
def test_data_path_is_the_users_data_whatever_the_preset(tmp_path):
    celeba = realdata.write_celeba(tmp_path / "celeba", n=4)
    hq = realdata.write_celeba_hq(tmp_path / "hq", n=3, size=64)
    photos = realdata.write_folder(tmp_path / "photos", n=3)
    # an embedded preset dataset is replaced by the folder's detected kind, keeping size and flips
    d = _dry_data("--plugin", "csa", "--data", photos)
    assert d["type"] == "core.image-folder" and d["root"] == str(photos) and d["image_size"] == 64 and d["flip"]
    d = _dry_data("--plugin", "introvae", "--data", celeba)
    assert d["type"] == "core.celeba" and d["root"] == str(celeba) and d["channels"] == 1 and d["image_size"] == 32
    d = _dry_data("--plugin", "introvae", "--data", hq)
    assert d["type"] == "core.celeba-hq" and d["attribute_file"] == "CelebAMask-HQ-attribute-anno.txt"
    assert d["landmarks68"] == "landmarks68.txt"
    # a preset of the same kind keeps its own options (split, flips, size); a plain folder there
    # switches to image-folder rather than failing on a missing img_align_celeba/
    d = _dry_data("--plugin", "csa", "--preset", "paper-256", "--data", celeba)
    assert d["type"] == "core.celeba" and d["split"] == "train" and d["image_size"] == 256
    d = _dry_data("--plugin", "csa", "--preset", "paper-256", "--data", photos)
    assert d["type"] == "core.image-folder" and d["image_size"] == 256 and "split" not in d
    # a config table, inline or from a file
    d = _dry_data("--plugin", "csa", "--data", f'{{type = "core.celeba", root = "{celeba}", split = "all"}}')
    assert d["type"] == "core.celeba" and d["split"] == "all"
    (tmp_path / "data.toml").write_text(f'[data]\ntype = "core.image-folder"\nroot = "{photos}"\nimage_size = 48\n')
    d = _dry_data("--plugin", "csa", "--data", tmp_path / "data.toml")
    assert d["type"] == "core.image-folder" and d["image_size"] == 48


def test_data_errors_are_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("no images here")
    hq = realdata.write_celeba_hq(tmp_path / "hq", n=2, size=32, landmarks=False)
    for data, msg in ((tmp_path / "empty", "no images under"), (tmp_path / "notes", "no images under"),
                      (tmp_path / "missing", "no such file or directory")):
        res = invoke("run", "--plugin", "csa", "--data", data, "--out", tmp_path / "r", "--no-progress")
        assert res.exit_code == 2 and msg in res.output and "Traceback" not in res.output, res.output
        assert not (tmp_path / "r" / "checkpoints").exists()
    # a preset conditioned on attributes refuses a plain folder instead of silently dropping them
    res = invoke("run", "--plugin", "foam", "--preset", "paper-512-attributes", "--data", tmp_path / "notes",
                 "--dry-run")
    assert res.exit_code == 2 and "asks for attributes ['Male', 'Smiling']" in res.output
    # ... and a landmark-conditioned one names the missing landmarks
    res = invoke("run", "--plugin", "foam", "--preset", "paper-128", "--data", hq, "--out", tmp_path / "f",
                 "--steps", "1", "--no-progress", "--set", "algorithm.use_feature_loss=false")
    assert res.exit_code == 2 and "landmarks" in res.output and "Traceback" not in res.output, res.output


def test_run_on_a_folder_trains_on_that_folder(tmp_path):
    photos = realdata.write_folder(tmp_path / "photos", n=3)
    out = tmp_path / "run"
    res = invoke("run", "--plugin", "lis", "--data", photos, "--out", out, "--steps", "2", "--no-progress",
                 "--set", "train.batch_size=2", "--set", "train.sample_every=100")
    assert res.exit_code == 0, res.output
    from genfw.core.config import load_toml

    saved = load_toml(out / "config.toml")
    assert saved["data"]["type"] == "core.image-folder" and saved["data"]["root"] == str(photos)
    # the final step writes samples and a checkpoint although 2 is no multiple of sample_every
    assert (out / "checkpoints" / "latest").read_text().strip() == "00000002"
    assert [p.name for p in (out / "samples").iterdir() if p.name.endswith("_00000002.png")]
    from genfw.core.data import ImageFolder, ImageFolderConfig

    assert len(ImageFolder(ImageFolderConfig(root=saved["data"]["root"]))) == 3


# --- point 6: resume ------------------------------------------------------------------------------
def test_resume_needs_only_out_and_names_the_runs_plugin(tmp_path):
    out = tmp_path / "run"
    res = invoke("run", "--plugin", "lis", "--out", out, "--steps", "2", "--no-progress")
    assert res.exit_code == 0, res.output
    res = invoke("run", "--resume", "--out", out, "--steps", "3", "--no-progress")
    assert res.exit_code == 0 and "resumed from" in res.output and "done: 3 steps" in res.output, res.output
    for args, msg in ((["--out", tmp_path / "nothing"], "has no config.toml"), ([], "--resume needs the run")):
        res = invoke("run", "--resume", *args)
        assert res.exit_code == 2 and msg in res.output, res.output
    res = invoke("run", "--resume", "--out", out, "--plugin", "csa")
    assert res.exit_code == 2 and "plugin 'lis', preset 'default'" in res.output
    assert f"genfw run --resume --out {out}" in res.output and str(out / "config.toml") in res.output
    # through the API too: the trainer compares the checkpoint's algorithm before loading weights
    from genfw.core.config import build_run_config
    from genfw.core.errors import GenfwError
    from genfw.core.trainer import train
    from genfw.registry import get_registry

    cfg, resolved = build_run_config(get_registry(), "csa", None, None, [f"out={out}"])
    with pytest.raises(GenfwError, match=r"trained by plugin 'lis'.*genfw run --resume --out"):
        train(cfg, resolved, get_registry(), resume=True, progress=False)


# --- point 7: CelebA rows -------------------------------------------------------------------------
def test_celeba_missing_files_and_rows_one_warning(tmp_path):
    from genfw.core.data import CelebA, CelebAConfig

    root = realdata.write_celeba(tmp_path / "celeba", n=8)
    (root / "img_align_celeba" / "000002.jpg").unlink()  # listed in every file, gone from disk
    attr = (root / "list_attr_celeba.txt").read_text().splitlines()
    (root / "list_attr_celeba.txt").write_text("\n".join(a for a in attr if not a.startswith("000003.jpg")) + "\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = CelebA(CelebAConfig(root=str(root), split="train"))
    msgs = [str(w.message) for w in caught if "celeba" in str(w.message)]
    assert len(msgs) == 1, msgs
    assert "1 file(s) listed for split 'train' in list_eval_partition.txt but missing" in msgs[0]
    assert "000002.jpg" in msgs[0] and "1 image(s) without a row in list_attr_celeba.txt (000003.jpg)" in msgs[0]
    assert len(ds) == 4  # 6 train files, one gone, one unlabelled


def test_celeba_hq_and_folder_read_68_point_files(tmp_path):
    from genfw.core.data import CelebAHQ, CelebAHQConfig, ImageFolder, ImageFolderConfig

    root = realdata.write_celeba_hq(tmp_path / "hq", n=3, size=64)
    ds = CelebAHQ(CelebAHQConfig(root=str(root), attribute_file="CelebAMask-HQ-attribute-anno.txt",
                                 attributes=["Smiling", "Male"], landmarks68="landmarks68.txt", image_size=32))
    item = ds[1]
    assert ds.has_landmarks and item["landmarks"].shape == (68, 2) and item["attributes"].shape == (2,)
    # pixel x in the file -> (x + 0.5) / width, the batch contract's convention
    expected = (torch.tensor(realdata.landmarks68(64, 64, 1), dtype=torch.float32) + 0.5) / 64
    assert torch.allclose(item["landmarks"], expected.clamp(0, 1), atol=1e-3)  # the file holds 0.1 px
    lines = (root / "landmarks68.txt").read_text().splitlines()
    (root / "landmarks68.txt").write_text("\n".join(lines[1:]) + "\n")
    with pytest.warns(UserWarning, match=r"1 image\(s\) without a row in landmarks68.txt \(0.jpg\)"):
        folder = ImageFolder(ImageFolderConfig(root=str(root / "CelebA-HQ-img"), landmarks68="../landmarks68.txt"))
    assert len(folder) == 2 and folder.has_landmarks


# --- FOAM's VGG weights ---------------------------------------------------------------------------
def test_vgg_weights_by_asset_or_file(tmp_path, monkeypatch):
    from genfw.core.errors import MissingWeightsError
    from genfw.core.vgg import VGG16Features

    pth = realdata.write_vgg16_hub(tmp_path / "th")
    net = VGG16Features(("relu1_2",), weights=str(pth))  # a file given where the asset name goes
    assert net.pretrained
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    assert VGG16Features(("relu1_2",)).pretrained  # the asset, found in the torch hub cache
    with pytest.raises(MissingWeightsError, match="explicit path not found: .*nope.pth"):
        VGG16Features(("relu1_2",), weights=str(tmp_path / "nope.pth"))


def test_foam_feature_loss_resolves_vgg_weights(tmp_path, monkeypatch):
    pth = realdata.write_vgg16_hub(tmp_path / "th")
    common = ["run", "--plugin", "foam", "--steps", "1", "--no-progress", "--set", "algorithm.use_feature_loss=true",
              "--set", "data.length=8", "--set", "train.batch_size=2"]
    res = invoke(*common, "--out", tmp_path / "a", "--set", f"algorithm.vgg_weights={pth}")
    assert res.exit_code == 0 and "G/feat" in res.output, res.output
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    res = invoke(*common, "--out", tmp_path / "b")
    assert res.exit_code == 0 and "G/feat" in res.output, res.output
    res = invoke(*common, "--out", tmp_path / "c", "--set", f"algorithm.vgg_weights={tmp_path / 'gone.pth'}")
    assert res.exit_code == 2 and "gone.pth" in res.output and "algorithm.vgg_weights" not in res.output


# --- point 3: masks per (seed, index) -------------------------------------------------------------
@pytest.mark.parametrize("spec", [{"type": "core.irregular", "ratio": [0.1, 0.5], "bins": 4},
                                  {"type": "core.random-rect"}, {"type": "core.center"}])
def test_masks_depend_on_seed_and_index_only(spec):
    from genfw.core.masks import draw
    from genfw.registry import get_registry

    gen = get_registry().build(spec, kind="mask")
    whole = draw(gen, 10, 24, 32, seed=5)
    parts = torch.cat([draw(gen, k, 24, 32, seed=5, start=s) for s, k in ((0, 3), (3, 1), (4, 6))])
    assert torch.equal(whole, parts)
    if spec["type"] != "core.center":
        assert not torch.equal(whole, draw(gen, 10, 24, 32, seed=6))


def test_irregular_bins_balanced_at_any_batch_size():
    from genfw.core.masks import bin_index, draw, hole_ratio, ratio_bins
    from genfw.registry import get_registry

    gen = get_registry().build({"type": "core.irregular", "ratio": [0.1, 0.5], "bins": 4}, kind="mask")
    edges = ratio_bins(0.1, 0.5, 4)
    for batch in (1, 3, 8):  # batch-1 training used to see only the first bin
        masks = torch.cat([draw(gen, batch, 32, 32, seed=0, start=s) for s in range(0, 8, batch)])[:8]
        bins = [bin_index(float(r), edges) for r in hole_ratio(masks)]
        assert bins == [0, 1, 2, 3, 0, 1, 2, 3], (batch, bins)


def test_genfw_masks_sizes_and_files(tmp_path):
    from PIL import Image

    res = invoke("masks", "-n", "1", "--size", "300x451", "-o", tmp_path / "m.png")
    assert res.exit_code == 0 and "300x451" in res.output
    assert Image.open(tmp_path / "m.png").size == (300, 451)
    img = tmp_path / "photo.png"
    realdata.photo(0, 90, 70).save(img)
    res = invoke("masks", "-n", "3", "--like", img, "-o", tmp_path / "set")
    assert res.exit_code == 0, res.output
    files = sorted((tmp_path / "set").iterdir())
    assert [f.name for f in files] == ["mask-0000.png", "mask-0001.png", "mask-0002.png"]
    assert all(Image.open(f).size == (90, 70) for f in files)
    # the folder is a valid core.folder mask set
    from genfw.registry import get_registry

    gen = get_registry().build({"type": "core.folder", "root": str(tmp_path / "set")}, kind="mask")
    assert len(gen) == 3
    res = invoke("masks", "--size", "3x5")
    assert res.exit_code == 2 and "error: --size" in res.output
