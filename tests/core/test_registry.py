"""Registry lookups, short names, building with validated configs."""
import pytest
from attrs import define, field, validators as v

from genfw.core.errors import ConfigError, UnknownComponentError
from genfw.registry import Entry, Registry


@define(kw_only=True)
class Cfg:
    size: int = field(default=3, validator=v.ge(1))


def _reg():
    r = Registry()
    r.add(Entry(kind="layer", name="a.block", factory=lambda c: ("built", c.size), plugin="a", config=Cfg))
    r.add(Entry(kind="layer", name="b.block", factory=lambda c: ("b", c.size), plugin="b", config=Cfg))
    r.add(Entry(kind="loss", name="a.l1", factory=lambda: "l1", plugin="a"))
    return r


def test_build_from_mapping_with_defaults_and_validation():
    r = _reg()
    assert r.build({"type": "a.block", "size": 5}) == ("built", 5)
    assert r.build({"type": "a.block"}, defaults={"size": 7}) == ("built", 7)
    assert r.build({"type": "a.block", "size": 2}, defaults={"size": 7}) == ("built", 2)  # user wins
    assert r.build("l1") == "l1"  # unique short name
    with pytest.raises(ConfigError, match="size"):
        r.build({"type": "a.block", "size": 0})
    with pytest.raises(ConfigError, match="sise"):
        r.build({"type": "a.block", "sise": 2})


def test_ambiguous_short_name_and_kind_filter():
    r = _reg()
    with pytest.raises(UnknownComponentError, match="ambiguous"):
        r.get("block")
    with pytest.raises(UnknownComponentError, match="known losss|known loss"):
        r.get("block", kind="loss")


def test_listing_by_kind_and_kinds_are_extendable():
    r = _reg()
    assert r.names("layer") == ["a.block", "b.block"]
    with pytest.raises(ValueError, match="unknown component kind"):
        r.add(Entry(kind="sampler", name="a.s", factory=object, plugin="a"))
    r.add_kind("sampler", "latent samplers")
    r.add(Entry(kind="sampler", name="a.s", factory=object, plugin="a"))
    assert r.names("sampler") == ["a.s"]


def test_names_must_be_namespaced():
    with pytest.raises(ValueError, match="namespaced"):
        Registry().add(Entry(kind="layer", name="flat", factory=object, plugin="x"))


def test_unknown_suggests_close_names():
    with pytest.raises(UnknownComponentError, match="a.block"):
        _reg().get("a.blok")


def test_kinds_are_separate_namespaces():
    r = _reg()
    r.add(Entry(kind="preset", name="a.block", factory=dict, plugin="a", value={}))
    assert r.get("a.block").kind == "layer"  # building blocks first
    assert r.get("a.block", kind="preset").kind == "preset"
    from genfw.core.errors import DuplicateComponentError

    with pytest.raises(DuplicateComponentError):
        r.add(Entry(kind="preset", name="a.block", factory=dict, plugin="a", value={}))


def test_default_hints_apply_only_where_they_fit():
    @define(kw_only=True)
    class Widths:
        channels: list = field(factory=lambda: [8, 16])   # widths, not image channels
        image_size: int = 32

    r = Registry()
    r.add(Entry(kind="generator", name="w.net", factory=lambda c: c, plugin="w", config=Widths))
    built = r.build({"type": "w.net"}, defaults={"channels": 3, "image_size": 64, "unknown": 1})
    assert built.channels == [8, 16] and built.image_size == 64
