"""Typed config: structuring, unknown keys, overrides, presets, resolution of nested specs."""
import pytest
from attrs import define, field, validators as v

from genfw.core.config import (
    RunConfig, apply_overrides, build_run_config, deep_merge, dump_toml, parse_value, resolve_run,
    structure, tomllib,
)
from genfw.core.errors import ConfigError
from genfw.registry import Entry, Registry


@define(kw_only=True)
class NetCfg:
    width: int = field(default=8, validator=v.ge(1))
    act: str = "relu"


@define(kw_only=True)
class AlgoCfg:
    lr: float = 2e-4
    betas: list[float] = field(factory=lambda: [0.9, 0.999])
    net: dict = field(factory=lambda: {"type": "t.net"})


@define(kw_only=True)
class DataCfg:
    root: str = ""
    image_size: int = 32


@pytest.fixture
def reg():
    r = Registry()
    r.add(Entry(kind="generator", name="t.net", factory=lambda c: c, plugin="t", config=NetCfg))
    r.add(Entry(kind="algorithm", name="t.algo", factory=lambda c: c, plugin="t", config=AlgoCfg))
    r.add(Entry(kind="dataset", name="t.data", factory=lambda c: c, plugin="t", config=DataCfg))
    r.add(Entry(kind="preset", name="t.default", factory=dict, plugin="t", value={
        "algorithm": {"type": "t.algo", "net": {"type": "t.net", "width": 4}},
        "data": {"type": "t.data"},
        "train": {"steps": 10},
    }))
    return r


def test_parse_value_types():
    assert parse_value("3") == 3 and isinstance(parse_value("3"), int)
    assert parse_value("0.5") == 0.5
    assert parse_value("true") is True
    assert parse_value("[1, 2]") == [1, 2]
    assert parse_value('"x y"') == "x y"
    assert parse_value("lfw-subset") == "lfw-subset"  # bare words stay strings


def test_apply_overrides_nested_and_errors():
    out = apply_overrides({"train": {"steps": 1}}, ["train.steps=50", "algorithm.net.width=16", "seed=3"])
    assert out == {"train": {"steps": 50}, "algorithm": {"net": {"width": 16}}, "seed": 3}
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides({}, ["train.steps"])
    with pytest.raises(ConfigError, match="is a value, not a table"):
        apply_overrides({"seed": 1}, ["seed.x=2"])


def test_unknown_top_level_key_suggests():
    with pytest.raises(ConfigError) as exc:
        structure({"trian": {"steps": 3}}, RunConfig)
    assert "config.trian" in str(exc.value) and "train" in str(exc.value)


def test_unknown_nested_key_in_component_names_path(reg):
    raw = {"algorithm": {"type": "t.algo", "net": {"type": "t.net", "widht": 3}}, "data": {"type": "t.data"}}
    with pytest.raises(ConfigError) as exc:
        resolve_run(raw, reg)
    msg = str(exc.value)
    assert "algorithm.net.widht" in msg and "width" in msg


def test_validator_errors_are_config_errors(reg):
    with pytest.raises(ConfigError, match="steps"):
        structure({"train": {"steps": 0}}, RunConfig)
    with pytest.raises(ConfigError, match="precision"):
        structure({"train": {"precision": "fp8"}}, RunConfig)
    with pytest.raises(ConfigError):
        structure({"train": {"steps": "many"}}, RunConfig)


def test_resolution_fills_defaults_and_validates_nested(reg):
    cfg, resolved = build_run_config(reg, "t", None, None, ["algorithm.lr=0.001"])
    assert resolved["algorithm"]["lr"] == 0.001
    # nested specs are validated but keep only what was written: the parent fills the rest
    assert resolved["algorithm"]["net"] == {"type": "t.net", "width": 4}
    assert reg.build(resolved["algorithm"]["net"], defaults={"width": 9, "act": "gelu"}).act == "gelu"
    assert resolved["data"] == {"type": "t.data", "root": "", "image_size": 32}
    assert cfg.train.steps == 10 and resolved["plugin"] == "t" and resolved["preset"] == "default"


def test_dump_and_reload_round_trip(reg):
    _, resolved = build_run_config(reg, "t", "default", None, ["train.batch_size=4"])
    again = tomllib.loads(dump_toml(resolved))
    cfg2, resolved2 = resolve_run(again, reg)
    assert resolved2 == resolved
    assert cfg2.train.batch_size == 4


def test_config_file_merges_over_preset(reg, tmp_path):
    f = tmp_path / "run.toml"
    f.write_text('plugin = "t"\n[algorithm.net]\nwidth = 12\n[train]\nbatch_size = 2\n')
    cfg, resolved = build_run_config(reg, None, None, str(f), ["train.batch_size=3"])
    assert resolved["algorithm"]["net"]["width"] == 12
    assert cfg.train.batch_size == 3  # --set wins over the file


def test_unknown_preset_and_plugin(reg):
    with pytest.raises(ConfigError, match="did you mean: default"):
        build_run_config(reg, "t", "defualt")
    with pytest.raises(ConfigError, match="unknown plugin"):
        build_run_config(reg, "zzz")


def test_bad_toml_file(tmp_path, reg):
    f = tmp_path / "bad.toml"
    f.write_text("this is = = not toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        build_run_config(reg, None, None, str(f))
    with pytest.raises(ConfigError, match="not found"):
        build_run_config(reg, None, None, str(tmp_path / "missing.toml"))


def test_changing_component_type_replaces_its_table():
    base = {"algorithm": {"type": "a", "x": 1}}
    assert deep_merge(base, {"algorithm": {"type": "b"}}) == {"algorithm": {"type": "b"}}
    assert deep_merge(base, {"algorithm": {"x": 2}}) == {"algorithm": {"type": "a", "x": 2}}
