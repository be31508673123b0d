"""The CLI bad-input matrix: every case exits 2 with one `error:` line, never a traceback, never 0."""
import errno
import os

import numpy as np
import pytest
import tomli_w
from click.testing import CliRunner
from PIL import Image

import engine_toy
import harness
from genfw.cli import cli
from genfw.core import checkpoint as ck


def _invoke(args, env=None):
    return CliRunner().invoke(cli, args, env=env)


@pytest.fixture
def toy(use_registry, tmp_path):
    """A finished toy run and its config file."""
    cfg = tmp_path / "toy.toml"
    cfg.write_text(tomli_w.dumps(engine_toy.tiny_run(str(tmp_path / "run"), steps=2)))
    res = _invoke(["run", "--config", str(cfg), "--no-progress"])
    assert res.exit_code == 0, res.output
    return tmp_path / "run", cfg


def test_run_input_matrix(toy, tmp_path):
    run, cfg = toy
    (tmp_path / "latin1.toml").write_bytes(b'seed = 1\n# caf\xe9\n')
    (tmp_path / "bad.toml").write_text("seed = = 1\n")
    (tmp_path / "afile").write_text("x")
    fresh = str(tmp_path / "fresh")
    cases = {
        "non-UTF-8 TOML": (["run", "--config", str(tmp_path / "latin1.toml")], "UTF-8"),
        "invalid TOML": (["run", "--config", str(tmp_path / "bad.toml")], "TOML"),
        "missing config": (["run", "--config", str(tmp_path / "nope.toml")], "not found"),
        "steps=2.9": (["run", "--config", str(cfg), "--out", fresh, "--set", "train.steps=2.9"], "train.steps"),
        "deterministic=no": (["run", "--config", str(cfg), "--out", fresh, "--set", "train.deterministic=no"],
                             "deterministic"),
        "seed=1.5": (["run", "--config", str(cfg), "--out", fresh, "--set", "seed=1.5"], "seed"),
        "seed=2**63": (["run", "--config", str(cfg), "--out", fresh, "--set", f"seed={2**63}"], "seed"),
        "checkpoint_minutes=true": (["run", "--config", str(cfg), "--out", fresh, "--set",
                                     "train.checkpoint_minutes=true"], "checkpoint_minutes"),
        "lr_g=inf": (["run", "--config", str(cfg), "--out", fresh, "--set", "algorithm.lr_g=inf"], "lr_g"),
        "lr_d=nan": (["run", "--config", str(cfg), "--out", fresh, "--set", "algorithm.lr_d=nan"], "lr_d"),
        "lr_g=0": (["run", "--config", str(cfg), "--out", fresh, "--set", "algorithm.lr_g=0"], "lr_g"),
        "lr_g=-1": (["run", "--config", str(cfg), "--out", fresh, "--set", "algorithm.lr_g=-1"], "lr_g"),
        "unknown key": (["run", "--config", str(cfg), "--out", fresh, "--set", "train.stepz=3"], "stepz"),
        "set without =": (["run", "--config", str(cfg), "--set", "train.steps"], "key=value"),
        "out under a file": (["run", "--config", str(cfg), "--out", str(tmp_path / "afile" / "sub")], "afile"),
        "existing run without --resume": (["run", "--config", str(cfg)], "--resume"),
        "steps 0": (["run", "--config", str(cfg), "--steps", "0"], "steps"),
        "unknown plugin": (["run", "--plugin", "nosuch"], "nosuch"),
        "bad device": (["run", "--config", str(cfg), "--out", fresh, "--device", "tpu"], "device"),
    }
    outcomes = [harness.expect_cli_error(name, _invoke(args), match) for name, (args, match) in cases.items()]
    assert not (tmp_path / "fresh").exists() or not any((tmp_path / "fresh").iterdir())
    harness.assert_clean(outcomes)


def test_read_command_matrix(toy, tmp_path):
    run, _ = toy
    (tmp_path / "afile").write_text("x")
    (tmp_path / "img.png").write_bytes(b"")
    cases = {
        "sample missing run": (["sample", str(tmp_path / "nothing"), "-o", str(tmp_path / "g.png")], "no such run"),
        "sample dir without checkpoint": (["sample", str(tmp_path), "-o", str(tmp_path / "g.png")], "no checkpoint"),
        "sample -o under a file": (["sample", str(run), "-o", str(tmp_path / "afile" / "g.png")], "afile"),
        "sample -n 0": (["sample", str(run), "-n", "0"], "0"),
        "sample --seed 2**64": (["sample", str(run), "--seed", str(2**64), "-o", str(tmp_path / "g.png")], "seed"),
        "inpaint with a GAN": (["inpaint", str(run), str(tmp_path / "img.png"), str(tmp_path / "img.png"),
                                "-o", str(tmp_path / "o.png")], "cannot inpaint"),
        "weights import 0-byte": (["weights", "import", "fan-2d", str(tmp_path / "img.png")], "empty"),
        "weights import unknown asset": (["weights", "import", "nosuch", str(tmp_path / "afile")], "nosuch"),
        "-p without no:": (["-p", "lis", "plugins"], "no:"),
    }
    outcomes = [harness.expect_cli_error(name, _invoke(args), match) for name, (args, match) in cases.items()]
    harness.assert_clean(outcomes)


@pytest.mark.parametrize("code,word", [(errno.ENOSPC, "disk is full"), (errno.EROFS, "read-only"),
                                       (errno.EFBIG, "size limit"), (errno.EIO, "I/O")])
def test_filesystem_errors_during_a_checkpoint(code, word, use_registry, tmp_path, monkeypatch):
    """The disk fails while a checkpoint is written: one line naming the path and what to do, no
    partial checkpoint, `latest` still names a complete one."""
    import genfw.core.atomic as atomic

    cfg = tmp_path / "toy.toml"
    cfg.write_text(tomli_w.dumps(engine_toy.tiny_run(str(tmp_path / "run"), steps=4)))
    real = atomic.write_new
    calls = {"n": 0}

    def failing(path, data):
        calls["n"] += 1
        if calls["n"] > 6:  # the first checkpoint (5 files) goes through, the second fails
            raise OSError(code, os.strerror(code), str(path))
        return real(path, data)

    monkeypatch.setattr(atomic, "write_new", failing)
    monkeypatch.setattr(ck, "write_new", failing)
    res = _invoke(["run", "--config", str(cfg), "--no-progress"])
    outcome = harness.expect_cli_error(f"{errno.errorcode[code]} during checkpoint", res, word)
    root = tmp_path / "run" / "checkpoints"
    left = sorted(p.name for p in root.iterdir())
    tidy = left == ["00000002", "latest"] and ck.verify_checkpoint(root / "00000002")
    harness.assert_clean([outcome, harness.record(f"{errno.errorcode[code]} leaves no partial checkpoint",
                                                  "clean" if tidy else "silent", str(left))])


def test_image_input_matrix(tmp_path, monkeypatch):
    from genfw.core.images import read_image
    from genfw.core.masks import load_mask

    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "big.png")
    (tmp_path / "trunc.png").write_bytes((tmp_path / "big.png").read_bytes()[:40])
    f = np.full((8, 8), 3.5, np.float32)
    Image.fromarray(f).save(tmp_path / "hdr.tiff")
    Image.fromarray(np.full((8, 8), np.nan, np.float32)).save(tmp_path / "nan.tiff")
    m = np.zeros((8, 8), np.uint8)
    m[:6] = 255  # 75 % hole: what an inverted 25 % mask looks like
    Image.fromarray(m).save(tmp_path / "inverted.png")
    Image.fromarray(np.full((8, 8), 255, np.uint8)).save(tmp_path / "allhole.png")
    outcomes = []
    monkeypatch.setenv("GENFW_MAX_IMAGE_PIXELS", "1000")
    outcomes.append(harness.expect_error("image over pixel limit", lambda: read_image(tmp_path / "big.png"),
                                         "GENFW_MAX_IMAGE_PIXELS"))
    outcomes.append(harness.expect_error("mask over pixel limit", lambda: load_mask(tmp_path / "big.png", (64, 64)),
                                         "GENFW_MAX_IMAGE_PIXELS"))
    monkeypatch.setenv("GENFW_MAX_IMAGE_PIXELS", "lots")
    outcomes.append(harness.expect_error("bad pixel limit", lambda: read_image(tmp_path / "big.png"),
                                         "positive integer"))
    monkeypatch.delenv("GENFW_MAX_IMAGE_PIXELS")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # PIL's own bomb limit does not get in first
    assert read_image(tmp_path / "big.png").shape == (3, 64, 64)
    for name, fn, match in [
        ("truncated PNG", lambda: read_image(tmp_path / "trunc.png"), "trunc.png"),
        ("float image outside [0, 1]", lambda: read_image(tmp_path / "hdr.tiff"), "[0, 1]"),
        ("float image of NaN", lambda: read_image(tmp_path / "nan.tiff"), "NaN"),
        ("75 % hole mask", lambda: load_mask(tmp_path / "inverted.png", (8, 8)), "--mask-polarity"),
        ("all-hole mask, polarity given", lambda: load_mask(tmp_path / "allhole.png", (8, 8), "white-hole"),
         "all hole"),
        ("bad polarity", lambda: load_mask(tmp_path / "inverted.png", (8, 8), "sideways"), "polarity"),
    ]:
        outcomes.append(harness.expect_error(name, fn, match))
    harness.assert_clean(outcomes)


def test_csa_at_32_px_is_one_line(tmp_path, monkeypatch):
    """The real csa plugin at an image size its default CSA level does not fit (real registry)."""
    monkeypatch.setenv("GENFW_ALLOW_RANDOM_WEIGHTS", "1")
    res = _invoke(["run", "--plugin", "csa", "--set", "data.image_size=32", "--steps", "1", "--device", "cpu",
                   "--out", str(tmp_path / "csa"), "--no-progress"])
    harness.assert_clean([harness.expect_cli_error("csa at 32 px", res, "csa_level = 2")])


def test_os_error_lines_name_path_and_remedy():
    from genfw.cli import os_error_line

    cases = {errno.ENOSPC: "disk is full", errno.EROFS: "read-only", errno.EFBIG: "ulimit",
             errno.ENOTDIR: "not a directory", errno.EDQUOT: "quota", errno.EIO: "I/O"}
    outcomes = []
    for code, word in cases.items():
        line = os_error_line(OSError(code, os.strerror(code), "/data/run/x.safetensors"))
        ok = "/data/run/x.safetensors" in line and word.lower() in line.lower() and "\n" not in line
        outcomes.append(harness.record(f"os error {errno.errorcode[code]}", "clean" if ok else "silent", line))
    two = os_error_line(OSError(errno.EXDEV, os.strerror(errno.EXDEV), "/a", None, "/b"))
    assert "/a -> /b" in two
    harness.assert_clean(outcomes)
