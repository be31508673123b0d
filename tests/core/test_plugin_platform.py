"""The plugin platform (issue 12 and the plugin parts of 14): owned namespaces, clashes by
distribution, API versions, isolation of BaseException, commands that cannot be replaced,
strict mode, introspection, licences and the contract tests - through real entry points."""
import json
import os
import subprocess
import sys
import textwrap

import pytest
import tomli_w
from click.testing import CliRunner

from genfw.core.config import tomllib
from genfw.core.errors import ConfigError, UnknownComponentError
from genfw.registry import load_plugins, manager


def _make_dist(root, name, eps, modules, version="0.3"):
    """A fake installed distribution on sys.path: dist-info with entry_points.txt + modules."""
    root.mkdir(parents=True, exist_ok=True)
    dist = root / f"{name.replace('-', '_')}-{version}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nLicense: MIT\n")
    lines = "\n".join(f"{k} = {v}" for k, v in eps.items())
    (dist / "entry_points.txt").write_text(f"[genfw]\n{lines}\n")
    for mod, src in modules.items():
        (root / f"{mod}.py").write_text(textwrap.dedent(src))


LAYER = """
    import torch
    from attrs import define, field, validators as v
    from genfw import hookimpl

    @define(kw_only=True)
    class Cfg:
        width: int = field(default=4, validator=v.ge(1))  # features in and out
        mode: str = field(default="a", validator=v.in_(("a", "b")))  # which path

    class Thing(torch.nn.Module):
        def __init__(self, cfg):
            super().__init__()
            if cfg.width == 3:
                raise RuntimeError("width 3 is unsupported\\nsecond line")
            self.lin = torch.nn.Linear(cfg.width, cfg.width)
        def forward(self, x):
            return self.lin(x)

    @hookimpl
    def register_components(registry):
        registry.register("layer", "{name}", Thing, config=Cfg, licence="{licence}",
                          example=lambda m: (torch.randn(2, m.lin.in_features),))
"""

HINGE = """
    from genfw import hookimpl
    from genfw.core.losses import HingeLoss, NoConfig

    @hookimpl
    def register_components(registry):
        registry.register("loss", "hinge", HingeLoss, config=NoConfig)
"""

FOREIGN = """
    from genfw import hookimpl

    @hookimpl
    def register_components(registry):
        registry.register("layer", "csa.layer", object)
"""

NOT_CALLABLE = """
    from genfw import hookimpl

    @hookimpl
    def register_components(registry):
        registry.register("layer", "thing", 42)
"""

EXIT_AT_IMPORT = """
    import sys
    sys.exit(3)
"""

INTERRUPT_IN_HOOK = """
    from genfw import hookimpl

    @hookimpl
    def register_components(registry):
        raise KeyboardInterrupt
"""

NEEDS_API_2 = """
    from genfw import hookimpl
    GENFW_API = ">=2.0,<3"

    @hookimpl
    def register_components(registry):
        registry.register("layer", "thing", object)
"""

BAD_API = """
    GENFW_API = "two please"
"""

COMMANDS = """
    import click
    from genfw import hookimpl

    @hookimpl
    def register_commands(cli):
        @cli.command("run")
        def run():
            click.echo("hijacked")

        @cli.command("mine-hello")
        def hello():
            click.echo("hello")
"""

BOOM_GENERATOR = """
    from attrs import define
    from genfw import hookimpl

    @define(kw_only=True)
    class Cfg:
        latent_dim: int = 7

    class Gen:
        roles = ("latent-generator",)

        def __init__(self, cfg):
            raise ValueError(f"latent_dim must be even, got {cfg.latent_dim}")

    @hookimpl
    def register_components(registry):
        registry.register("generator", "gen", Gen, config=Cfg)
"""

EXIT_IN_COMMANDS = """
    import sys
    from genfw import hookimpl

    @hookimpl
    def register_commands(cli):
        sys.exit(4)
"""


def _layer(name="thing", licence=""):
    return LAYER.replace("{name}", name).replace("{licence}", licence)


@pytest.fixture
def site(tmp_path, monkeypatch):
    """Install fake distributions: site(dist, {entry: module}, {module: source})."""
    monkeypatch.setattr(manager, "cli_disabled", set())
    monkeypatch.setattr(manager, "_LOADED", None)
    added = []

    def install(dist, eps, modules, version="0.3"):
        root = tmp_path / dist
        _make_dist(root, dist, eps, modules, version)
        monkeypatch.syspath_prepend(str(root))
        for m in modules:
            sys.modules.pop(m, None)
            added.append(m)
        return root

    yield install
    for m in added:
        sys.modules.pop(m, None)
    manager._LOADED = None


def _infos(state):
    return {(p.name, p.dist): p for p in state.plugins}


def _cli(args, monkeypatch, env=None):
    import genfw.cli as cli_mod

    monkeypatch.setattr(cli_mod, "_plugin_commands_added", True)  # keep test plugins' commands off the group
    monkeypatch.setattr(manager, "_LOADED", None)
    for k, v in (env or {}).items():
        monkeypatch.setenv(k, v)
    return CliRunner().invoke(cli_mod.cli, args)


# --- 1. namespaces -------------------------------------------------------------------------------
def test_foreign_prefix_is_rejected_naming_the_plugin(site):
    site("squatter", {"squat": "fake_foreign"}, {"fake_foreign": FOREIGN})
    info = _infos(load_plugins())[("squat", "squatter")]
    assert info.status == "failed"
    assert "plugin 'squat' cannot register 'csa.layer'" in info.error and "own prefix" in info.error


def test_dotted_name_never_resolves_to_another_plugin(site, monkeypatch):
    reg = load_plugins().registry
    assert reg.get("csa.layer").plugin == "csa"
    monkeypatch.setenv("GENFW_DISABLE_PLUGINS", "csa")
    reg = load_plugins().registry
    with pytest.raises(UnknownComponentError, match="plugin 'csa' is disabled"):
        reg.build({"type": "csa.layer"}, kind="layer")


def test_builtin_wins_a_short_name_a_plugin_made_ambiguous(site, monkeypatch, capsys):
    site("acme-gan", {"acme": "fake_hinge"}, {"fake_hinge": HINGE})
    state = load_plugins()
    reg = state.registry
    assert reg.get("hinge", kind="loss").name == "core.hinge"
    assert "acme.hinge" in reg.notes["hinge"] and "core.hinge" in reg.notes["hinge"]
    assert reg.get("acme.hinge").plugin == "acme"
    # `genfw plugins --check` reports it; `config show` says what the name means
    res = _cli(["plugins", "--check"], monkeypatch)
    assert res.exit_code == 1
    assert "problem: loss name 'hinge' is provided by acme.hinge, core.hinge: resolves to the built-in core.hinge" \
        in res.output
    res = _cli(["config", "show", "--plugin", "example", "--set", "algorithm.loss.type=hinge"], monkeypatch)
    assert res.exit_code == 0, res.output
    assert "# note: 'hinge' means the built-in core.hinge; acme.hinge also exists" in res.output
    assert tomllib.loads(res.stdout)["algorithm"]["loss"]["type"] == "core.hinge"


def test_two_third_party_plugins_sharing_a_short_name_are_ambiguous(site):
    site("one", {"one": "fake_one"}, {"fake_one": _layer("block")})
    site("two", {"two": "fake_two"}, {"fake_two": _layer("block")})
    reg = load_plugins().registry
    with pytest.raises(UnknownComponentError, match="ambiguous: one.block .layer., two.block .layer."):
        reg.get("block", kind="layer")


# --- 2. entry-point clashes ----------------------------------------------------------------------
def test_third_party_claiming_a_builtin_name_cannot_take_it_down(site, monkeypatch):
    site("evil-dist", {"csa": "fake_evil", "core": "fake_evil"}, {"fake_evil": _layer("thing")})
    state = load_plugins()
    infos = _infos(state)
    assert infos[("csa", "genfw")].status == "ok" and "csa.layer" in state.registry.names("layer")
    shadow = infos[("csa", "evil-dist")]
    assert shadow.status == "shadowed"
    assert "genfw" in shadow.error and "evil-dist" in shadow.error and "GENFW_PLUGINS='*,csa@evil-dist'" in shadow.error
    assert infos[("core", "genfw")].status == "ok"
    # the user picks the other distribution; everything else still loads with '*'
    monkeypatch.setenv("GENFW_PLUGINS", "*,csa@evil_dist")  # names compare like pip's
    state = load_plugins()
    infos = _infos(state)
    assert infos[("csa", "evil-dist")].status == "ok" and state.registry.names("layer").count("csa.thing") == 1
    assert "csa.layer" not in state.registry.names("layer")
    assert infos[("csa", "genfw")].status == "disabled" and infos[("lis", "genfw")].status == "ok"
    # disabling one distribution of a name leaves the other
    monkeypatch.delenv("GENFW_PLUGINS")
    monkeypatch.setenv("GENFW_DISABLE_PLUGINS", "csa@evil-dist")
    infos = _infos(load_plugins())
    assert infos[("csa", "genfw")].status == "ok" and infos[("csa", "evil-dist")].status == "disabled"


def test_clash_between_two_third_parties_reports_both_and_can_be_picked(site, monkeypatch):
    site("alpha-dist", {"twin": "fake_alpha"}, {"fake_alpha": _layer("a")})
    site("beta-dist", {"twin": "fake_beta"}, {"fake_beta": _layer("b")})
    infos = _infos(load_plugins())
    for d in ("alpha-dist", "beta-dist"):
        assert infos[("twin", d)].status == "failed"
        assert "alpha-dist" in infos[("twin", d)].error and "beta-dist" in infos[("twin", d)].error
    monkeypatch.setenv("GENFW_PLUGINS", "*,twin@beta-dist")
    state = load_plugins()
    assert "twin.b" in state.registry.names("layer") and "twin.a" not in state.registry.names("layer")


# --- 6. plugin API versions ----------------------------------------------------------------------
def test_incompatible_api_is_reported_and_skipped(site, monkeypatch):
    site("future", {"future": "fake_future", "badapi": "fake_badapi"},
         {"fake_future": NEEDS_API_2, "fake_badapi": BAD_API})
    state = load_plugins()
    infos = _infos(state)
    fut = infos[("future", "future")]
    assert fut.status == "incompatible" and fut.error == "needs genfw plugin API >=2.0,<3; this genfw provides 1.1"
    assert "future.thing" not in state.registry.names()
    assert "is not a version range" in infos[("badapi", "future")].error
    assert infos[("lis", "genfw")].status == "ok"
    res = _cli(["plugins"], monkeypatch)
    assert res.exit_code == 0
    row = next(line for line in res.output.splitlines() if line.startswith("future "))
    assert row.split()[:5] == ["future", "future", "0.3", ">=2.0,<3", "incompatible"]
    assert row.endswith("needs genfw plugin API >=2.0,<3; this genfw provides 1.1")


def test_deprecated_hook_warns_through_warn_on_impl(site, monkeypatch):
    import types

    import pluggy

    from genfw.registry import hookspecs

    spec = pluggy.HookspecMarker("genfw")
    fake = types.ModuleType("fake_specs")
    for name in ("register_components", "register_commands"):
        setattr(fake, name, getattr(hookspecs, name))

    @spec(warn_on_impl=DeprecationWarning("old_hook is deprecated; use register_components"))
    def old_hook(registry):
        """Deprecated."""

    fake.old_hook = old_hook
    monkeypatch.setattr(manager, "hookspecs", fake)
    site("oldie", {"oldie": "fake_oldie"}, {"fake_oldie": """
        from genfw import hookimpl

        @hookimpl
        def old_hook(registry):
            pass
    """})
    info = _infos(load_plugins())[("oldie", "oldie")]
    assert info.status == "ok"
    assert info.warnings == ["DeprecationWarning: old_hook is deprecated; use register_components"]


# --- isolation (issue 14.9) ----------------------------------------------------------------------
def test_system_exit_and_keyboard_interrupt_are_contained(site):
    site("rude", {"exiter": "fake_exit", "interrupter": "fake_interrupt"},
         {"fake_exit": EXIT_AT_IMPORT, "fake_interrupt": INTERRUPT_IN_HOOK})
    state = load_plugins()
    infos = _infos(state)
    assert infos[("exiter", "rude")].error == "SystemExit raised while importing plugin 'exiter': 3"
    assert infos[("interrupter", "rude")].error == \
        "KeyboardInterrupt raised in the register_components hook of plugin 'interrupter'"
    assert infos[("csa", "genfw")].status == "ok"


def test_non_callable_factory_is_rejected_at_registration(site):
    site("broken", {"broken": "fake_nc"}, {"fake_nc": NOT_CALLABLE})
    info = _infos(load_plugins())[("broken", "broken")]
    assert info.status == "failed" and "the factory of 'thing' is not callable (int)" in info.error


def test_plugin_cannot_replace_a_command(site, capsys):
    import click

    site("cmds", {"cmds": "fake_cmds", "exitcmds": "fake_exitcmds"},
         {"fake_cmds": COMMANDS, "fake_exitcmds": EXIT_IN_COMMANDS})
    state = load_plugins()

    @click.group()
    def group():
        pass

    @group.command("run")
    def run():
        click.echo("the real run")

    manager.add_plugin_commands(group, state)
    err = capsys.readouterr().err
    assert "warning: plugin 'cmds' tried to replace the command 'run'; rejected" in err
    assert "warning: plugin 'exitcmds' failed to add commands: SystemExit raised in register_commands: 4" in err
    assert CliRunner().invoke(group, ["run"]).output == "the real run\n"
    assert CliRunner().invoke(group, ["mine-hello"]).output == "hello\n"
    assert any("tried to replace" in w for w in _infos(state)[("cmds", "cmds")].warnings)


def test_disabling_an_unknown_plugin_warns(site, monkeypatch):
    res = _cli(["-p", "no:csaa", "plugins", "--json"], monkeypatch)
    assert res.exit_code == 0
    assert "warning: -p no:/GENFW_DISABLE_PLUGINS names 'csaa', but no plugin has that name (did you mean: csa?)" \
        in res.output


# --- 9. strict mode ------------------------------------------------------------------------------
def test_strict_mode_lists_every_failure_and_plugins_still_works(site, monkeypatch):
    site("rude", {"exiter": "fake_exit", "nc": "fake_nc"}, {"fake_exit": EXIT_AT_IMPORT, "fake_nc": NOT_CALLABLE})
    monkeypatch.setenv("GENFW_STRICT_PLUGINS", "1")
    with pytest.raises(manager.PluginLoadError) as exc:
        load_plugins()
    assert "2 plugin(s) failed" in str(exc.value) and "exiter (failed)" in str(exc.value) and "nc (failed)" in str(exc.value)
    res = _cli(["plugins"], monkeypatch)
    assert res.exit_code == 1 and "exiter" in res.output and "csa" in res.output
    res = _cli(["components", "layer"], monkeypatch)
    assert res.exit_code == 2
    line = res.output.strip().splitlines()[-1]
    assert line.startswith("error: 2 plugin(s) failed to load") and "exiter" in line and "nc" in line


def test_error_spelling_and_suggestions_without_duplicates(monkeypatch):
    res = _cli(["run", "--bogus"], monkeypatch)
    assert res.exit_code == 2 and "error: No such option '--bogus'" in res.output and "Error:" not in res.output
    from genfw.registry import get_registry

    with pytest.raises(UnknownComponentError) as exc:
        get_registry().get("algorithmm")
    msg = str(exc.value)
    hint = msg[msg.index("(did you mean: "):msg.index("?)")]
    names = hint.removeprefix("(did you mean: ").split(", ")
    assert len(names) == len(set(names)) and "algorithm" in names


# --- 5. constructor errors, --set type -----------------------------------------------------------
def test_constructor_error_is_one_line_naming_slot_and_component(site, monkeypatch, tmp_path):
    site("boom", {"boom": "fake_boom", "boomgen": "fake_boomgen"},
         {"fake_boom": _layer("thing"), "fake_boomgen": BOOM_GENERATOR})
    reg = load_plugins().registry
    with pytest.raises(ConfigError) as exc:
        reg.build({"type": "boom.thing", "width": 3}, kind="layer", path="algorithm.generator.attn")
    assert str(exc.value) == "algorithm.generator.attn (boom.thing): width 3 is unsupported"
    cfg = tmp_path / "run.toml"
    cfg.write_text(tomli_w.dumps({
        "algorithm": {"type": "core.gan", "generator": {"type": "boomgen.gen"}},
        "data": {"type": "core.synthetic-faces", "image_size": 16, "length": 4},
        "train": {"batch_size": 2}}))
    res = _cli(["run", "--config", str(cfg), "--steps", "1", "--out", str(tmp_path / "o"), "--no-progress"], monkeypatch)
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert res.stderr.strip().splitlines()[-1] == "error: algorithm.generator (boomgen.gen): latent_dim must be even, got 7"


def test_set_type_keeps_keys_set_earlier_in_that_table():
    from genfw.core.config import apply_overrides

    base = {"g": {"type": "a", "x": 1, "sub": {"k": 1}}, "other": 5}
    out = apply_overrides(base, ["g.y=2", "g.sub.j=3", "g.type=b", "g.z=4"])
    assert out == {"g": {"type": "b", "y": 2, "sub": {"k": 1, "j": 3}, "z": 4}, "other": 5}
    assert apply_overrides(base, ["g.type=a"]) == base  # same type: nothing dropped


def test_set_type_replaces_the_table(monkeypatch):
    base = ["--plugin", "example", "--plain"]
    res = _cli(["config", "show", *base, "--set", "algorithm.generator.type=core.dcgan-generator",
                "--set", "algorithm.generator.base_channels=8"], monkeypatch)
    assert res.exit_code == 0, res.output
    gen = tomllib.loads(res.stdout)["algorithm"]["generator"]
    assert gen == {"type": "core.dcgan-generator", "base_channels": 8}  # no `hidden` from the preset's MLP
    res = _cli(["config", "show", *base, "--set", "algorithm.generator.hidden=32"], monkeypatch)
    assert tomllib.loads(res.stdout)["algorithm"]["generator"]["hidden"] == 32  # same type: merged


# --- 4. introspection ----------------------------------------------------------------------------
def test_components_show_options_roles_licence_and_snippet(site, monkeypatch):
    site("shown", {"shown": "fake_shown"}, {"fake_shown": _layer("thing", licence="CC-BY-NC-4.0")})
    res = _cli(["components", "show", "shown.thing"], monkeypatch)
    assert res.exit_code == 0, res.output
    out = res.output
    assert "roles:   none declared" in out and "licence: CC-BY-NC-4.0" in out
    row = next(line for line in out.splitlines() if line.startswith("width"))
    assert row.split()[:4] == ["width", "int", "4", ">="] and row.rstrip().endswith("features in and out")
    row = next(line for line in out.splitlines() if line.startswith("mode"))
    assert "one of a, b" in row and row.rstrip().endswith("which path")
    snippet = tomllib.loads(res.stdout.split("TOML:\n", 1)[1])
    spec = snippet["algorithm"]["layer"]
    assert spec == {"type": "shown.thing", "width": 4, "mode": "a"}
    assert load_plugins().registry.build(spec, kind="layer").lin.in_features == 4
    res = _cli(["components", "show", "shown.thing", "--json"], monkeypatch)
    data = json.loads(res.output)
    assert data["options"][0] == {"name": "width", "type": "int", "default": 4, "constraint": ">= 1",
                                  "help": "features in and out"}
    res = _cli(["components", "show", "csa.layer"], monkeypatch)
    assert "roles:   feature-attention" in res.stdout and "plugin:  csa (built-in)" in res.stdout
    assert "similarity  str    \"cosine\"  one of cosine, key-only" in res.stdout
    snippet = tomllib.loads(res.stdout.split("TOML:\n", 1)[1])
    assert snippet["algorithm"]["refine"]["attention"] == {"type": "csa.layer", "similarity": "cosine", "eps": 1e-08,
                                                           "threads": 0}
    res = _cli(["components", "show", "csa.layr"], monkeypatch)
    assert res.exit_code == 2 and "did you mean: csa.layer" in res.output


def test_config_show_marks_defaults_and_shows_nested_defaults(monkeypatch, tmp_path):
    res = _cli(["config", "show", "--plugin", "introvae", "--set", "train.keep_last=5"], monkeypatch)
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert "keep_last = 5" in lines                                # written by --set: no mark
    assert any(line.startswith("grad_clip = 0.0") and line.endswith("# default") for line in lines)
    assert "steps = 1000" in lines                                 # written by the preset
    enc = lines[lines.index("[algorithm.encoder]"):]
    assert "# image_size = 0  # default, filled when built" in enc[:8]
    # loads back to the same config as the plain output
    plain = _cli(["config", "show", "--plugin", "introvae", "--set", "train.keep_last=5", "--plain"], monkeypatch)
    assert tomllib.loads(res.stdout) == tomllib.loads(plain.stdout)


# --- 7. licences ---------------------------------------------------------------------------------
def test_run_records_licences_of_components_and_assets(tmp_path, monkeypatch):
    from genfw.core import weights
    from genfw.registry import get_registry
    from genfw.registry.licences import licences_used

    reg = get_registry()
    data = licences_used({"algorithm": {"type": "core.gan", "loss": {"type": "hinge"}}, "data": {"type": "lfw-subset"}},
                         reg, assets=["dlib-68"])
    assert data["components"] == {"core.gan": "Apache-2.0", "core.hinge": "Apache-2.0", "core.lfw-subset": "Apache-2.0"}
    assert "non-commercial" in data["assets"]["dlib-68"]
    monkeypatch.setattr(weights, "USED", set())
    from genfw.core.config import resolve_run
    from genfw.core.trainer import Trainer
    from genfw.testing.checks import contract_run_config

    cfg, resolved = resolve_run(contract_run_config(reg, reg.get("core.gan"), str(tmp_path / "r"), 1), reg)
    Trainer(cfg, resolved, reg, progress=False).run()
    recorded = json.loads((tmp_path / "r" / "licences.json").read_text())
    assert recorded["components"]["core.gan"] == "Apache-2.0" and recorded["assets"] == {}


def test_weights_list_shows_licences(monkeypatch):
    res = _cli(["weights", "list"], monkeypatch)
    assert res.exit_code == 0
    assert "licence: non-commercial: trained on iBUG 300-W" in res.output


# --- 3. contract tests ---------------------------------------------------------------------------
def _contract(site_root, plugin, *extra):
    env = dict(os.environ)
    env.update(GENFW_CONTRACT_PLUGINS=plugin, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(site_root), env.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--pyargs",
                           "genfw.testing.contract", *extra], capture_output=True, text=True, env=env, cwd=site_root)


def test_contract_fails_on_broken_or_mistyped_plugin(site):
    root = site("contracted", {"broken": "fake_exit", "fine": "fake_fine"},
                {"fake_exit": EXIT_AT_IMPORT, "fake_fine": _layer("thing")})
    res = _contract(root, "broken,fien")
    assert res.returncode == 1, res.stdout
    assert "plugin 'broken' from contracted failed to load: SystemExit raised while importing plugin 'broken': 3" in res.stdout
    assert "plugin 'fien' is not installed (did you mean: fine?)" in res.stdout
    assert "2 failed" in res.stdout


@pytest.mark.slow
def test_contract_passes_on_a_working_plugin(site):
    root = site("contracted", {"fine": "fake_fine"}, {"fake_fine": _layer("thing")})
    res = _contract(root, "fine")
    assert res.returncode == 0, res.stdout[-2000:]
    assert "test_network_contract[fine.thing] PASSED" in res.stdout or " passed" in res.stdout


def test_loss_contract_catches_a_flipped_sign():
    import torch

    from genfw.core.losses import HingeLoss, NoConfig
    from genfw.registry import Entry, Registry
    from genfw.testing import check_loss

    class Flipped(HingeLoss):
        def d(self, real, fake):
            return super().d(fake, real)

    reg = Registry()
    reg.add(Entry(kind="loss", name="t.hinge", factory=HingeLoss, plugin="t", config=NoConfig))
    reg.add(Entry(kind="loss", name="t.flipped", factory=Flipped, plugin="t", config=NoConfig))
    reg.add(Entry(kind="loss", name="t.l1", factory=lambda c: torch.nn.L1Loss(), plugin="t", config=NoConfig))
    check_loss(reg, reg.get("t.hinge"))
    with pytest.raises(AssertionError, match="sign is flipped"):
        check_loss(reg, reg.get("t.flipped"))
    with pytest.raises(AssertionError, match="register it with cases="):
        check_loss(reg, reg.get("t.l1"))


def test_documented_components_show_output_is_current(monkeypatch):
    """docs/registry-and-config.md shows `genfw components show csa.layer` verbatim."""
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "registry-and-config.md").read_text()
    block = doc.split("```\n$ genfw components show csa.layer\n", 1)[1].split("\n```", 1)[0]
    res = _cli(["components", "show", "csa.layer"], monkeypatch)
    assert res.exit_code == 0
    assert res.stdout.rstrip() == block
