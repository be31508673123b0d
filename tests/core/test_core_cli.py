"""CLI surface: one-line errors with exit code 2 and no traceback; listing commands."""
import json
import subprocess
import sys

import pytest
import tomllib

from genfw.registry import get_registry


def genfw(*args, env=None):
    return subprocess.run([sys.executable, "-m", "genfw", *args], capture_output=True, text=True, env=env)


def _one_line_error(res, *needles):
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr
    lines = [ln for ln in res.stderr.strip().splitlines() if not ln.startswith("warning:")]
    assert len(lines) == 1, res.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def test_unknown_plugin_is_one_line():
    _one_line_error(genfw("run", "--plugin", "introvea"), "unknown plugin", "introvae")


def test_bad_set_key_is_one_line():
    _one_line_error(genfw("config", "show", "--plugin", "example", "--set", "train.stesp=3"),
                    "train.stesp", "steps")


def test_bad_config_path_is_one_line(tmp_path):
    _one_line_error(genfw("run", "--config", str(tmp_path / "nope.toml")), "not found")


def test_unknown_component_in_config_is_one_line(tmp_path):
    f = tmp_path / "run.toml"
    f.write_text('[algorithm]\ntype = "core.gann"\n[data]\ntype = "core.lfw-subset"\n')
    _one_line_error(genfw("run", "--config", str(f), "--dry-run"), "core.gann")


def test_components_unknown_kind():
    _one_line_error(genfw("components", "generatr"), "generator")


def test_plugins_json_lists_everything():
    res = genfw("plugins", "--json")
    assert res.returncode == 0, res.stderr
    data = {p["name"]: p for p in json.loads(res.stdout)}
    assert data["core"]["status"] == "ok"
    assert "register_components" in data["core"]["hooks"]
    assert all({"name", "version", "status", "error", "hooks", "components"} <= set(p) for p in data.values())


def _presets():
    return [e.name for e in get_registry().entries("preset")]


@pytest.mark.parametrize("preset", _presets() or ["none"])
def test_config_show_round_trips(preset):
    if preset == "none":
        pytest.skip("no presets registered")
    from genfw.core.config import resolve_run

    from click.testing import CliRunner

    from genfw.cli import cli

    plugin, name = preset.split(".", 1)
    res = CliRunner().invoke(cli, ["config", "show", "--plugin", plugin, "--preset", name])
    assert res.exit_code == 0, res.output
    shown = tomllib.loads(res.output)
    _, again = resolve_run(shown, get_registry())
    assert again == shown
