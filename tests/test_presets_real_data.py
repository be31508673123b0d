"""Every registered preset of every plugin builds and trains 2 steps through `genfw run` on tiny data
in its real on-disk format (CelebA, CelebA-HQ, a plain folder; embedded data as shipped), with the
pretrained assets it needs present as random weights in their real file formats, found by the real
weight resolution (torch hub cache), never through `allow_random_weights`.

Sizes are shrunk with --set where the networks follow the data (`data.image_size`); presets whose
networks fix the resolution (IntroVAE's channel lists) run at their paper size and, above 32 px, are
marked slow. CSA's paper / reference presets (paper widths, VGG-16 consistency loss and feature
discriminator) take 20-60 s and 3 GB even at 64 px on a 2-core CPU, and CSA needs 64 px for its
attention level: those are marked slow too.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
import realdata  # noqa: E402

from genfw.core.config import preset_config  # noqa: E402
from genfw.registry import get_registry  # noqa: E402

FAST_SIZE = 64
HEAVY_AT_FAST_SIZE = {"csa.paper-256", "csa.paper-256-irregular", "csa.ref-256", "csa.ref-256-irregular"}
FILE_DATA = ("core.celeba", "core.celeba-hq", "core.image-folder")


def _presets():
    reg = get_registry()
    out = []
    for entry in reg.entries("preset"):
        raw = preset_config(reg, entry.plugin, entry.short)
        heavy = (_fixed_size(raw) and _size(raw) > 32) or entry.name in HEAVY_AT_FAST_SIZE
        marks = [pytest.mark.slow] if heavy else []
        if heavy and _size(raw) >= 512:  # IntroVAE at 1024 px: minutes per step on a 2-core CPU
            marks.append(pytest.mark.timeout(2400))
        out.append(pytest.param(entry.plugin, entry.short, id=entry.name, marks=marks))
    return out


def _size(raw: dict) -> int:
    return int(raw.get("data", {}).get("image_size", 64))


def _fixed_size(raw: dict) -> bool:
    """The networks' resolution is set by the preset (a channel list per level), not by the data."""
    algo = raw.get("algorithm", {})
    return any(isinstance(v, dict) and "channels" in v for v in algo.values())


@pytest.fixture(scope="module")
def real_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("real-data")
    return {"core.celeba": realdata.write_celeba(root / "celeba", n=6, landmarks68_file=True),
            "core.celeba-hq": realdata.write_celeba_hq(root / "celeba-hq", n=6, size=96),
            "core.image-folder": realdata.write_folder(root / "photos", n=5),
            "torch_home": root / "torch-home"}


@pytest.mark.parametrize("plugin,preset", _presets())
def test_preset_trains_two_steps_on_real_format_data(plugin, preset, real_data, tmp_path, monkeypatch):
    from genfw.cli import cli

    realdata.write_vgg16_hub(real_data["torch_home"])
    monkeypatch.setenv("TORCH_HOME", str(real_data["torch_home"]))
    monkeypatch.delenv("GENFW_ALLOW_RANDOM_WEIGHTS", raising=False)
    reg = get_registry()
    raw = preset_config(reg, plugin, preset)
    dtype = raw["data"]["type"]
    out = tmp_path / "run"
    args = ["run", "--plugin", plugin, "--preset", preset, "--out", str(out), "--steps", "2", "--no-progress",
            "--device", "cpu", "--set", "train.batch_size=2", "--set", "train.sample_count=2",
            "--set", "train.log_every=1", "--set", "train.num_workers=0"]
    if dtype in FILE_DATA:
        args += ["--data", str(real_data[dtype])]
    if not _fixed_size(raw) and _size(raw) > FAST_SIZE:
        args += ["--set", f"data.image_size={FAST_SIZE}"]
    res = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "allow_random" not in res.output and "RANDOM weights" not in res.output
    saved = (out / "config.toml").read_text()
    if dtype in FILE_DATA:  # the run recorded the user's data, in the preset's format
        assert f'type = "{dtype}"' in saved and str(real_data[dtype]) in saved
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2]
    assert all(v == v for r in log for v in r.values() if isinstance(v, float))  # no NaN loss
    assert (out / "checkpoints" / "latest").read_text().strip() == "00000002"
    assert any(p.name.endswith("_00000002.png") for p in (out / "samples").iterdir())
