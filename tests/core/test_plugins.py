"""Plugin discovery through real entry points: isolation, strict mode, disable/allow-lists."""
import json
import sys
import textwrap

import pytest
from click.testing import CliRunner

from genfw.registry import load_plugins
from genfw.registry.manager import PluginLoadError


def _make_dist(tmp_path, name, eps, modules):
    """A fake installed distribution on sys.path: dist-info with entry_points.txt + modules."""
    dist = tmp_path / f"{name}-0.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.3\n")
    lines = "\n".join(f"{k} = {v}" for k, v in eps.items())
    (dist / "entry_points.txt").write_text(f"[genfw]\n{lines}\n")
    for mod, src in modules.items():
        (tmp_path / f"{mod}.py").write_text(textwrap.dedent(src))


GOOD = """
    import torch
    from attrs import define
    from genfw import hookimpl

    @define(kw_only=True)
    class Cfg:
        width: int = 4

    class Thing(torch.nn.Module):
        def __init__(self, cfg):
            super().__init__()
            self.lin = torch.nn.Linear(cfg.width, cfg.width)
        def forward(self, x):
            return self.lin(x)

    @hookimpl
    def register_components(registry):
        registry.register("layer", "thing", Thing, config=Cfg,
                          example=lambda m: (torch.randn(2, m.lin.in_features),))
"""

RAISES = """
    from genfw import hookimpl

    @hookimpl
    def register_components(registry):
        registry.register("layer", "half", object)
        raise RuntimeError("boom in hook")
"""

MISSPELLED = """
    from genfw import hookimpl

    @hookimpl
    def register_componets(registry):
        pass
"""

DUPLICATE = """
    from genfw import hookimpl

    @hookimpl
    def register_components(registry):
        registry.register("layer", "goodplug.thing", object)
"""


@pytest.fixture
def fake_plugins(tmp_path, monkeypatch):
    _make_dist(tmp_path, "fakeplugins", {
        "goodplug": "fake_good",
        "importfail": "fake_missing_module_xyz",
        "hookfail": "fake_raises",
        "typo": "fake_typo",
    }, {"fake_good": GOOD, "fake_raises": RAISES, "fake_typo": MISSPELLED})
    monkeypatch.syspath_prepend(str(tmp_path))
    for m in ("fake_good", "fake_raises", "fake_typo"):
        sys.modules.pop(m, None)
    return tmp_path


def _by_name(loaded):
    return {p.name: p for p in loaded.plugins}


def test_failing_entry_points_are_isolated(fake_plugins):
    loaded = load_plugins()
    infos = _by_name(loaded)
    assert infos["goodplug"].status == "ok" and infos["goodplug"].version == "0.3"
    assert "goodplug.thing" in loaded.registry.names("layer")
    assert infos["importfail"].status == "failed"
    assert "fake_missing_module_xyz" in infos["importfail"].error
    assert infos["hookfail"].status == "failed" and "boom in hook" in infos["hookfail"].error
    # what the failing hook registered before raising is rolled back
    assert "hookfail.half" not in loaded.registry.names()
    assert infos["core"].status == "ok"


def test_misspelled_hook_is_reported(fake_plugins):
    infos = _by_name(load_plugins())
    assert infos["typo"].status == "failed"
    assert "register_componets" in infos["typo"].error


def test_strict_mode_makes_failures_fatal(fake_plugins, monkeypatch):
    monkeypatch.setenv("GENFW_STRICT_PLUGINS", "1")
    monkeypatch.setenv("GENFW_PLUGINS", "goodplug,importfail")
    with pytest.raises(PluginLoadError, match="importfail"):
        load_plugins()
    monkeypatch.setenv("GENFW_PLUGINS", "goodplug")  # the failing one is not allowed, so none fails
    assert load_plugins().registry.get("goodplug.thing")


def test_disable_env_and_allow_list(fake_plugins, monkeypatch):
    monkeypatch.setenv("GENFW_DISABLE_PLUGINS", "importfail, hookfail,typo")
    infos = _by_name(load_plugins())
    assert infos["importfail"].status == "disabled" and infos["goodplug"].status == "ok"
    monkeypatch.delenv("GENFW_DISABLE_PLUGINS")
    monkeypatch.setenv("GENFW_PLUGINS", "goodplug")
    infos = _by_name(load_plugins(strict=True))
    assert infos["goodplug"].status == "ok"
    assert infos["core"].status == "ok"  # the core cannot be switched off
    assert {infos[n].status for n in ("importfail", "hookfail", "typo")} == {"disabled"}


def test_cli_disable_flag(fake_plugins, monkeypatch):
    from genfw.registry import manager

    monkeypatch.setattr(manager, "cli_disabled", set())
    monkeypatch.setattr(manager, "_LOADED", None)
    from genfw.cli import cli

    res = CliRunner().invoke(cli, ["-p", "no:goodplug", "plugins", "--json"])
    assert res.exit_code == 0, res.output
    data = {p["name"]: p for p in json.loads(res.output)}
    assert data["goodplug"]["status"] == "disabled"
    assert data["importfail"]["status"] == "failed" and data["importfail"]["error"]
    monkeypatch.setattr(manager, "_LOADED", None)


def test_duplicate_component_names_are_rejected():
    from genfw.core.errors import DuplicateComponentError
    from genfw.registry import Entry, Registry

    reg = Registry()
    reg.add(Entry(kind="layer", name="alpha.attn", factory=object, plugin="alpha"))
    with pytest.raises(DuplicateComponentError) as exc:
        reg.add(Entry(kind="layer", name="alpha.attn", factory=object, plugin="alpha"))
    assert "'alpha'" in str(exc.value) and "alpha.attn" in str(exc.value)


def test_plugin_name_claimed_by_two_distributions(fake_plugins, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    _make_dist(other, "otherdist", {"goodplug": "fake_good"}, {})
    sys.path.insert(0, str(other))
    try:
        infos = _by_name(load_plugins())
    finally:
        sys.path.remove(str(other))
    err = infos["goodplug"].error
    assert infos["goodplug"].status == "failed"
    assert "fakeplugins" in err and "otherdist" in err


def test_unknown_name_suggests_and_lists_failed(fake_plugins):
    from genfw.core.errors import UnknownComponentError

    reg = load_plugins().registry
    with pytest.raises(UnknownComponentError) as exc:
        reg.get("goodplug.thnig")
    msg = str(exc.value)
    assert "goodplug.thing" in msg and "importfail" in msg and "hookfail" in msg
