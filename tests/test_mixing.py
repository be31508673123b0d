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
