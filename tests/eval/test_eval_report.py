"""`genfw eval --report`: results folders, FID on completions equal to torch-fidelity called
directly, reference features reused by content hash, batch-size invariance, paper tables."""
import json
import os
import tempfile

import pytest
import torch
from click.testing import CliRunner

from genfw.cli import cli


def _eval(run, out, *args):
    res = CliRunner().invoke(cli, ["eval", str(run), "--report", str(out), "--device", "cpu", "--no-progress", *args])
    assert res.exit_code == 0, res.output
    return res.output, json.loads((out / "scores.json").read_text())


def test_inpaint_report_folder_fid_equals_torch_fidelity(csa_run, weight_files, tmp_path):
    import torch_fidelity

    from genfw.core.checkpoint import load_run
    from genfw.core.eval.mask_sets import GeneratedMaskSet
    from genfw.core.fidelity import to_uint8_rgb
    from genfw.registry import get_registry

    torch.set_num_threads(1)
    w = weight_files
    out, scores = _eval(csa_run, tmp_path / "rep", "-n", "4", "--batch-size", "3", "--mask-set", "center",
                        "--metrics", "inpaint,lpips,fid,kid,ids", "--weights", w["inception"],
                        "--vgg-weights", w["vgg"], "--lpips-weights", w["heads"])
    files = sorted(p.name for p in (tmp_path / "rep").iterdir())
    assert files == ["completions.png", "per_bin.png", "per_image.csv", "scores.json", "scores.md"]
    p = scores["provenance"]
    ms = GeneratedMaskSet("center", 32, 4)
    assert p["mask_set"]["name"] == "center" and p["mask_set"]["sha256"] == ms.sha256() and ms.sha256() in out
    assert p["fid_on"] == "composited" and p["images"] == 4 and p["resolution"] == 32
    assert p["fidelity"]["weights_sha256"] and p["lpips"]["heads_file"] == w["heads"]
    assert p["fidelity"]["reference"]["reused"] is False
    assert p["known_region_kept_by_model"] is True and p["torch_fidelity"] == torch_fidelity.__version__
    assert set(scores["overall"]) >= {"l1", "l2", "psnr", "ssim", "lpips", "fid", "kid", "pids", "uids"}
    assert 0 <= scores["overall"]["pids"] <= 1 and 0 <= scores["overall"]["uids"] <= 1
    assert scores["bins"]["20-30%"]["count"] == 4 and scores["bins"]["20-30%"]["fid"] == scores["overall"]["fid"]

    # the same composited completions, made here, scored by torch-fidelity directly
    algo, cfg = load_run(str(csa_run), device="cpu")
    reg = get_registry()
    spec = {**cfg.data, "split": "test", "flip": False, "image_size": 32, "channels": 3}
    entry = reg.get(spec["type"], kind="dataset")
    import attrs
    if "split" not in attrs.fields_dict(entry.config):
        spec.pop("split")
    data = reg.build(spec, kind="dataset")
    real = torch.stack([data[i]["image"] for i in range(4)])
    masks = ms.masks(0, 4)
    comp = real * (1 - masks) + algo.inpaint(real, masks)["output"].cpu() * masks

    class D(torch.utils.data.Dataset):
        def __init__(self, x):
            self.x = to_uint8_rgb(x)

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            return self.x[i]

    raw = torch_fidelity.calculate_metrics(input1=D(comp), input2=D(real), fid=True, kid=True, cuda=False,
                                           feature_extractor="inception-v3-compat", kid_subset_size=4,
                                           feature_extractor_weights_path=w["inception"], rng_seed=0,
                                           verbose=False, batch_size=4, save_cpu_ram=True)
    assert scores["overall"]["fid"] == pytest.approx(raw["frechet_inception_distance"], rel=1e-4)
    assert scores["overall"]["kid"] == pytest.approx(raw["kernel_inception_distance_mean"], rel=1e-3, abs=1e-7)
    md = (tmp_path / "rep" / "scores.md").read_text()
    assert "| LPIPS |" in md and "completions.png" in md and ms.sha256() in md


def test_batch_size_never_changes_pixel_and_lpips_scores(csa_run, weight_files, tmp_path):
    torch.set_num_threads(1)
    w = weight_files
    common = ["-n", "6", "--mask-set", "irregular", "--metrics", "inpaint,lpips", "--vgg-weights", w["vgg"],
              "--lpips-weights", w["heads"]]
    _, a = _eval(csa_run, tmp_path / "a", *common, "--batch-size", "1")
    _, b = _eval(csa_run, tmp_path / "b", *common, "--batch-size", "4")
    for key in ("l1", "l2", "psnr", "ssim", "lpips"):
        assert a["overall"][key] == pytest.approx(b["overall"][key], rel=1e-5, abs=1e-6), key
        for k in a["bins"]:
            assert a["bins"][k][key] == pytest.approx(b["bins"][k][key], rel=1e-5, abs=1e-6), (k, key)
    assert {k: v["count"] for k, v in a["bins"].items()} == {k: v["count"] for k, v in b["bins"].items()} \
        == {"10-20%": 2, "20-30%": 2, "30-40%": 1, "40-50%": 1}


@pytest.mark.slow
def test_batch_size_never_changes_fid_and_reference_is_reused(csa_run, weight_files, tmp_path):
    torch.set_num_threads(1)
    w = weight_files
    common = ["-n", "6", "--mask-set", "irregular", "--metrics", "inpaint,fid,kid", "--weights", w["inception"]]
    _, a = _eval(csa_run, tmp_path / "a", *common, "--batch-size", "1")
    _, b = _eval(csa_run, tmp_path / "b", *common, "--batch-size", "4")
    # Inception features round differently per batch size where the conv library picks another
    # algorithm (seen on an AVX2-only CPU: 7.5e-5 relative on FID), and the matrix square root of a
    # rank-5 covariance (6 samples) amplifies that; a real batch dependence moves FID far more
    assert a["overall"]["l1"] == pytest.approx(b["overall"]["l1"], rel=1e-5, abs=1e-7)
    for key in ("fid", "kid"):
        assert a["overall"][key] == pytest.approx(b["overall"][key], rel=1e-3, abs=1e-6), key
    assert a["bins"]["10-20%"]["fid"] == pytest.approx(b["bins"]["10-20%"]["fid"], rel=1e-3)
    ra, rb = a["provenance"]["fidelity"]["reference"], b["provenance"]["fidelity"]["reference"]
    assert ra["reused"] is False and rb["reused"] is True and ra["sha256"] == rb["sha256"]
    assert os.path.isfile(rb["cache_file"])


def test_csa_table2_preset_runs_offline(csa_run, tmp_path):
    torch.set_num_threads(1)
    out, scores = _eval(csa_run, tmp_path / "t2", "--table", "csa-table2", "-n", "8")
    assert scores["table"] == "csa-table2" and scores["metrics"] == ["l1", "l2", "psnr", "ssim"]
    assert list(scores["bins"]) == ["10-20%", "20-30%", "30-40%", "40-50%"]
    assert "| CSA (paper) | 0.72 | 0.94 | 2.18 | 2.85 | - |" in out
    assert "evaluated at 32 px; the paper's table is at 256 px" in out
    _, center = _eval(csa_run, tmp_path / "t1", "--table", "csa-table1", "-n", "4")
    assert center["provenance"]["mask_set"]["name"] == "center" and center["overall"]["hole_ratio"] == 0.25


def test_generation_report_pictures_and_batch_invariance(introvae_run, tmp_path):
    torch.set_num_threads(1)
    common = ["-n", "12", "--metrics", "msssim", "--pairs", "30"]
    out, a = _eval(introvae_run, tmp_path / "g1", *common, "--batch-size", "3")
    _, b = _eval(introvae_run, tmp_path / "g2", *common, "--batch-size", "7")
    assert sorted(p.name for p in (tmp_path / "g1").iterdir()) == ["neighbours.png", "samples.png", "scores.json",
                                                                   "scores.md"]
    for key in ("msssim", "msssim_real"):
        assert a["overall"][key] == pytest.approx(b["overall"][key], rel=1e-6), key
    assert 0 < a["overall"]["msssim_real"] < 1
    p = a["provenance"]
    assert p["task"] == "generation" and p["msssim"]["pairs"] == 30 and p["num_samples"] == 12
    assert "| MS-SSIM |" in out and "| real images (12) |" in out
    assert p["neighbours"]["data"] == "evaluation images"
    # scored against another folder: the neighbours still come from the training data
    import numpy as np
    from PIL import Image

    folder = tmp_path / "other"
    folder.mkdir()
    for i in range(4):
        Image.fromarray((np.random.default_rng(i).random((40, 40)) * 255).astype(np.uint8)).save(folder / f"{i}.png")
    _, c = _eval(introvae_run, tmp_path / "g3", "-n", "4", "--metrics", "msssim", "--pairs", "5", "--data", str(folder))
    assert c["provenance"]["neighbours"]["data"] == "training data"
    assert c["provenance"]["data"]["root"] == str(folder)


@pytest.mark.slow
def test_generation_fid_batch_invariance(introvae_run, weight_files, tmp_path):
    torch.set_num_threads(1)
    common = ["-n", "8", "--metrics", "fid,kid", "--weights", weight_files["inception"]]
    _, a = _eval(introvae_run, tmp_path / "g1", *common, "--batch-size", "3")
    _, b = _eval(introvae_run, tmp_path / "g2", *common, "--batch-size", "8")
    assert a["overall"]["fid"] == pytest.approx(b["overall"]["fid"], rel=1e-5)
    assert a["provenance"]["fidelity"]["num_samples"] == {"generated": 8, "real": 8}
    assert b["provenance"]["fidelity"]["reference"]["reused"] is True


@pytest.mark.slow
def test_introvae_table_and_lis_sweep(introvae_run, lis_run, weight_files, tmp_path):
    torch.set_num_threads(1)
    w = weight_files
    out, s = _eval(introvae_run, tmp_path / "iv", "--table", "introvae-table2", "-n", "3", "--weights",
                   w["inception"], "--pairs", "10")
    assert "| IntroVAE (paper) | 5.19 | 0.2719 |" in out and s["table"] == "introvae-table2"
    res = CliRunner().invoke(cli, ["eval", str(introvae_run), "--report", str(tmp_path / "x"), "--table", "lis-is",
                                   "--weights", w["inception"], "-n", "4", "--no-progress"])
    assert res.exit_code == 2 and "needs a generator with LIS modules" in res.output
    out, s = _eval(lis_run, tmp_path / "lis", "--table", "lis-is", "-n", "4", "--weights", w["inception"])
    assert [r["sample_options"] for r in s["rows"]] == [{"lis_steps": k} for k in range(4)]
    assert all(r["overall"]["isc"] >= 1 - 1e-6 for r in s["rows"]) and "| G-LIS 1 of 3 (paper) | 5.13 |" in out
    assert "| real images (4) |" in out


def test_report_option_errors(csa_run, tmp_path):
    runner = CliRunner()
    cases = [(["--table", "csa-table2"], "need --report DIR"),
             (["--report", str(tmp_path / "r"), "--table", "csa-tabel2"], "did you mean: csa-table2"),
             (["--report", str(tmp_path / "r"), "--table", "csa-table2", "--metrics", "l1"], "fixes its metrics"),
             (["--report", str(tmp_path / "r"), "--masks", "center"], "use --mask-set"),
             (["--report", str(tmp_path / "r"), "--metrics", "fid,msssim"], "not available for --task inpaint"),
             (["--report", str(tmp_path / "r"), "--task", "generation"], "cannot sample"),
             (["--report", str(tmp_path / "r"), "--mask-set", "thik"], "did you mean: thick")]
    for args, msg in cases:
        res = runner.invoke(cli, ["eval", str(csa_run), "--no-progress", *args])
        assert res.exit_code == 2 and msg in res.output and "Traceback" not in res.output, (args, res.output)


def test_missing_weights_fail_before_any_work(csa_run, tmp_path, monkeypatch):
    from genfw.core import weights as W

    monkeypatch.setattr(W, "_package_files", lambda dist, suffixes: [])  # no lpips package either
    res = CliRunner().invoke(cli, ["eval", str(csa_run), "--report", str(tmp_path / "r"), "--no-progress"])
    assert res.exit_code == 2 and "genfw weights import inception-fid PATH" in res.output
    res = CliRunner().invoke(cli, ["eval", str(csa_run), "--report", str(tmp_path / "r"), "--metrics", "inpaint,lpips"])
    assert res.exit_code == 2 and "LPIPS:" in res.output and "--vgg-weights PATH" in res.output
    assert not (tmp_path / "r").exists()


def test_progress_bars_on_the_evaluation_loops(csa_run, introvae_run, tmp_path):
    res = CliRunner().invoke(cli, ["eval", str(csa_run), "--report", str(tmp_path / "p"), "--metrics", "inpaint",
                                   "-n", "3", "--batch-size", "2"])
    assert res.exit_code == 0 and "inpaint irregular" in res.output and "/3 " in res.output
    res = CliRunner().invoke(cli, ["eval", str(introvae_run), "--report", str(tmp_path / "q"), "--metrics", "msssim",
                                   "-n", "3", "--pairs", "4"])
    assert res.exit_code == 0 and "samples" in res.output and "real images" in res.output
    assert "MS-SSIM pairs (samples)" in res.output


def test_foam_table1_with_the_datas_landmarks(foam_run, tmp_path):
    torch.set_num_threads(1)
    out, s = _eval(foam_run, tmp_path / "foam", "--table", "foam-table1", "-n", "4", "--batch-size", "3")
    assert s["provenance"]["mask_set"]["name"] == "center" and s["provenance"]["conditions"]["landmarks"] == "data"
    assert s["overall"]["count"] == 4 and "| FOAM 256 px (paper) | 7.05 | 1.21 | 19.97 |" in out
    res = CliRunner().invoke(cli, ["eval", str(foam_run), "--report", str(tmp_path / "x"), "--metrics", "inpaint",
                                   "--outputs", str(tmp_path / "o"), "--no-progress"])
    assert res.exit_code == 2 and "--keep-completions" in res.output
