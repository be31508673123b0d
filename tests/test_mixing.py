"""Components mix across papers by configuration alone (the configs in examples/mixing/)."""
import json
from pathlib import Path

import pytest

from genfw.core.config import build_run_config
from genfw.core.trainer import train
from genfw.registry import get_registry

MIXING = Path(__file__).resolve().parents[1] / "examples" / "mixing"
TINY = ["train.steps=3", "train.batch_size=4", "train.log_every=1", "train.sample_every=0",
        "train.checkpoint_every=3", "device=cpu"]


def _run(config: Path, out: Path, extra=()) -> list[dict]:
    reg = get_registry()
    cfg, resolved = build_run_config(reg, None, None, str(config), [*TINY, *extra, f"out={out}"])
    train(cfg, resolved, reg, progress=False)
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("name", sorted(p.name for p in MIXING.glob("*.toml")))
def test_mixing_config_trains(name, tmp_path):
    logs = _run(MIXING / name, tmp_path / "run")
    assert logs[-1]["step"] == 3
    assert all(v == v for rec in logs for v in rec.values() if isinstance(v, float))  # no NaN
    assert (tmp_path / "run" / "checkpoints" / "latest").exists()


def test_lis_similarity_loss_joins_the_introvae_decoder_phase(tmp_path):
    logs = _run(MIXING / "introvae-with-lis.toml", tmp_path / "run")
    sim = [k for k in logs[-1] if k.startswith("G/") and "sim" in k]
    assert sim, f"no LIS similarity term in the decoder phase: {sorted(logs[-1])}"
    assert not any(k.startswith("E/") and "sim" in k for k in logs[-1])  # the encoder never sees it


def test_swapping_the_adversarial_loss_of_csa(tmp_path):
    reg = get_registry()
    cfg, resolved = build_run_config(reg, "csa", "default", None,
                                     [*TINY, "algorithm.gan_loss.type=core.hinge", f"out={tmp_path / 'r'}"])
    assert resolved["algorithm"]["gan_loss"] == {"type": "core.hinge"}
    train(cfg, resolved, reg, progress=False)
    assert (tmp_path / "r" / "checkpoints" / "latest").exists()


def test_lis_as_a_latent_transform_of_a_core_gan_generator(tmp_path):
    logs = _run(MIXING / "gan-with-lis-transform.toml", tmp_path / "run")
    assert any(k.startswith("G/") and "sim" in k for k in logs[-1]), sorted(logs[-1])
    assert not any(k.startswith("D/") and "sim" in k for k in logs[-1])


def test_introspective_loss_with_the_core_dcgan_pair(tmp_path):
    logs = _run(MIXING / "introspective-dcgan.toml", tmp_path / "run")
    for key in ("E/kl_real", "E/kl_rec", "E/kl_fake", "G/kl_rec", "G/kl_fake", "E/l_ae"):
        assert key in logs[-1], sorted(logs[-1])
    import tomllib

    saved = tomllib.loads((tmp_path / "run" / "config.toml").read_text())
    assert saved["algorithm"]["encoder"]["type"] == "core.dcgan-encoder"
    assert saved["algorithm"]["decoder"]["generator"]["type"] == "core.dcgan-generator"


def _genfw(*args):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "genfw", *args], capture_output=True, text=True)


def test_sample_lis_steps_works_for_any_model_with_lis_modules(tmp_path):
    from PIL import Image

    run = tmp_path / "run"
    _run(MIXING / "introvae-with-lis.toml", run)  # IntroVAE decoder + LIS transform, 32 px grey
    strip = tmp_path / "strip.png"
    res = _genfw("sample", str(run), "-n", "1", "--lis-steps", "all", "-o", str(strip))
    assert res.returncode == 0, res.stderr
    w, h = Image.open(strip).size
    assert 3.5 * h < w < 4.5 * h  # one 32 px sample after 0..3 modules: K + 1 = 4 images side by side
    a, b = tmp_path / "k0.png", tmp_path / "k3.png"
    assert _genfw("sample", str(run), "-n", "2", "--lis-steps", "0", "-o", str(a)).returncode == 0
    assert _genfw("sample", str(run), "-n", "2", "--lis-steps", "3", "-o", str(b)).returncode == 0
    assert Image.open(a).tobytes() != Image.open(b).tobytes()  # the modules move the noise
    bad = _genfw("sample", str(run), "--lis-steps", "4", "-o", str(tmp_path / "x.png"))
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "--lis-steps 4 is out of range" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_sample_lis_steps_on_a_model_without_lis_is_one_line(tmp_path):
    run = tmp_path / "run"
    _run(MIXING / "introvae-decoder-as-gan.toml", run)
    bad = _genfw("sample", str(run), "--lis-steps", "1", "-o", str(tmp_path / "x.png"))
    assert bad.returncode == 2 and "has no LIS modules" in bad.stderr and "Traceback" not in bad.stderr


def test_foam_filter_trains_in_place_of_the_csa_layer(tmp_path):
    logs = _run(MIXING / "csa-with-foam-filter.toml", tmp_path / "run")
    assert "G/rec" in logs[-1] and logs[-1]["G/rec"] > 0
    import tomllib

    saved = tomllib.loads((tmp_path / "run" / "config.toml").read_text())
    assert saved["algorithm"]["refine"]["attention"]["type"] == "foam.filter"
