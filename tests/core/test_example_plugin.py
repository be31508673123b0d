"""The third-party template in examples/ (pip-installed by CI) behaves like any plugin."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from genfw.registry import get_registry
from genfw.testing import check_network

pytestmark = pytest.mark.skipif(
    "example" not in {e.plugin for e in get_registry().entries()},
    reason="install it first: pip install -e examples/genfw-example-plugin",
)


# The template's own tests (examples/genfw-example-plugin/tests) run here too, so CI keeps them green.
_spec = importlib.util.spec_from_file_location(
    "genfw_example_template_tests",
    Path(__file__).resolve().parents[2] / "examples" / "genfw-example-plugin" / "tests" / "test_example_plugin.py")
_template = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_template)
test_template_short_run_samples_span_the_data_range = _template.test_short_run_samples_span_the_data_range
test_template_span_check_catches_grey_samples = _template.test_the_span_check_catches_grey_samples
test_template_range_mismatch_is_refused = _template.test_range_mismatch_is_refused


def test_discovered_and_listed():
    res = subprocess.run([sys.executable, "-m", "genfw", "plugins", "--json"], capture_output=True, text=True)
    info = {p["name"]: p for p in json.loads(res.stdout)}["example"]
    assert info["status"] == "ok" and info["version"] == "0.1.0" and info["api"] == ">=1.0,<2"
    assert info["components"] == {"generator": ["example.mlp-generator"], "layer": ["example.pixel-norm"],
                                  "preset": ["example.default"]}
    assert info["hooks"] == ["register_commands", "register_components"]


def test_components_pass_the_contract():
    reg = get_registry()
    for name in ("example.mlp-generator", "example.pixel-norm"):
        check_network(reg, reg.get(name))


def test_plugin_command_is_added():
    res = subprocess.run([sys.executable, "-m", "genfw", "example-hello"], capture_output=True, text=True)
    assert res.returncode == 0 and "hello from genfw-example-plugin" in res.stdout


def test_usable_by_name_next_to_builtin_components(tmp_path):
    """A run config mixing the plugin's generator with the core's algorithm, D, data and loss."""
    cfg = tmp_path / "mix.toml"
    cfg.write_text(
        '[algorithm]\ntype = "core.gan"\nimage_range = "unit"\n'
        '[algorithm.generator]\ntype = "example.mlp-generator"\nlatent_dim = 16\nhidden = 32\n'
        '[algorithm.discriminator]\ntype = "core.dcgan-discriminator"\n'
        '[algorithm.loss]\ntype = "core.hinge"\n'
        '[data]\ntype = "core.lfw-subset"\nimage_size = 16\nchannels = 1\n'
        '[train]\nbatch_size = 4\nlog_every = 1\nsample_every = 0\ncheckpoint_every = 2\n'
    )
    out = tmp_path / "run"
    res = subprocess.run([sys.executable, "-m", "genfw", "run", "--config", str(cfg), "--steps", "2",
                          "--out", str(out), "--no-progress"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    lines = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert lines[-1]["step"] == 2 and "G/loss" in lines[-1] and "D/loss" in lines[-1]
    assert (out / "checkpoints" / "latest").exists()
