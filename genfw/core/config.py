"""Typed configuration: attrs classes, cattrs structuring, TOML files and `--set` overrides."""
from __future__ import annotations

import copy
import math
import sys
from pathlib import Path
from typing import Any, Mapping

import attrs
import cattrs
import tomli_w
from attrs import define, field, validators as v

from genfw.core.errors import ConfigError, suggest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

_converter = cattrs.Converter(forbid_extra_keys=True)


# --- strict scalars: cattrs' defaults coerce (bool("no") is True, int(2.9) is 2); these refuse --------
class StrictValueError(ValueError):
    """A config value of the wrong type; the message names the value and the expected type."""


def _show(val: Any) -> str:
    """A value as the user wrote it in TOML (true, "no", 2.9), not as Python prints it."""
    import json

    try:
        return json.dumps(val) if isinstance(val, (bool, int, float, str)) else repr(val)
    except (TypeError, ValueError):
        return repr(val)


def _kind(val: Any) -> str:
    if isinstance(val, bool):
        return "a boolean"
    if isinstance(val, int):
        return "an integer"
    if isinstance(val, float):
        return "a float"
    if isinstance(val, str):
        return "a string"
    if isinstance(val, Mapping):
        return "a table"
    if isinstance(val, (list, tuple)):
        return "a list"
    return f"a {type(val).__name__}"


def _strict_bool(val: Any, _t) -> bool:
    if isinstance(val, bool):
        return val
    raise StrictValueError(f"expected true or false, got {_show(val)} ({_kind(val)})")


def _strict_int(val: Any, _t) -> int:
    if isinstance(val, int) and not isinstance(val, bool):
        return val
    raise StrictValueError(f"expected an integer, got {_show(val)} ({_kind(val)})")


def _strict_float(val: Any, _t) -> float:
    if isinstance(val, (int, float)) and not isinstance(val, bool):
        out = float(val)
        if not math.isfinite(out):
            raise StrictValueError(f"expected a finite number, got {_show(val)}")
        return out
    raise StrictValueError(f"expected a number, got {_show(val)} ({_kind(val)})")


def _strict_str(val: Any, _t) -> str:
    if isinstance(val, str):
        return val
    raise StrictValueError(f"expected a string, got {_show(val)} ({_kind(val)})")


_converter.register_structure_hook(bool, _strict_bool)
_converter.register_structure_hook(int, _strict_int)
_converter.register_structure_hook(float, _strict_float)
_converter.register_structure_hook(str, _strict_str)


def _check_keys(data: Mapping[str, Any], cls: type, path: str) -> None:
    """Unknown keys anywhere in a nested attrs tree -> one ConfigError with close matches."""
    attrs.resolve_types(cls)  # string annotations (postponed evaluation) -> real types
    names = {f.alias or f.name: f for f in attrs.fields(cls)}
    for key, value in data.items():
        if key not in names:
            raise ConfigError(
                f"unknown key '{path}.{key}'{suggest(key, names)}; valid keys: {', '.join(sorted(names))}"
            )
        ftype = names[key].type
        if isinstance(ftype, type) and attrs.has(ftype) and isinstance(value, Mapping):
            _check_keys(value, ftype, f"{path}.{key}")


def structure(data: Mapping[str, Any], cls: type, path: str = "config") -> Any:
    """Mapping -> attrs instance, with every validator run; errors name the key path."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: expected a table of options, got {data!r}")
    _check_keys(data, cls, path)
    try:
        return _converter.structure(dict(data), cls)
    except cattrs.BaseValidationError as exc:
        msgs = cattrs.transform_error(exc, path=path, format_exception=_format_exception)
        raise ConfigError("; ".join(_key_first(m) for m in msgs)) from None
    except (ValueError, TypeError) as exc:  # attrs validators raise these from __init__
        raise ConfigError(f"{path}: {exc}") from None


def _key_first(msg: str) -> str:
    """cattrs says 'problem @ config.train.steps'; the key reads better first."""
    problem, sep, where = msg.rpartition(" @ ")
    return f"{where}: {problem}" if sep else msg


def _format_exception(exc: BaseException, type_: Any) -> str:
    from cattrs.v import format_exception

    if isinstance(exc, StrictValueError):
        return str(exc)
    base = format_exception(exc, type_)
    if base != "invalid value":
        return base
    # attrs validators explain themselves (their first argument); cattrs would only say "invalid value"
    detail = exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)
    return f"{base}: {detail}" if detail else base


def unstructure(obj: Any) -> Any:
    """attrs instance -> plain TOML-able data (None values dropped: TOML has no null)."""
    return _drop_none(_converter.unstructure(obj))


def _drop_none(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _drop_none(v) for k, v in x.items() if v is not None}
    if isinstance(x, (list, tuple)):
        return [_drop_none(v) for v in x]
    return x


# --- the run configuration ---------------------------------------------------------------------
PRECISIONS = ("auto", "fp32", "bf16", "fp16")




@define(kw_only=True)
class TrainConfig:
    """Engine options shared by every algorithm."""

    steps: int = field(default=1000, validator=v.gt(0))              # optimisation steps in all
    batch_size: int = field(default=16, validator=v.gt(0))           # per process
    log_every: int = field(default=10, validator=v.gt(0))            # steps between log.jsonl lines
    sample_every: int = field(default=200, validator=v.ge(0))    # steps between sample grids (0: off)
    checkpoint_every: int = field(default=500, validator=v.ge(0))  # steps between checkpoints (0: off)
    checkpoint_minutes: float = field(default=0.0, validator=v.ge(0))  # also every N minutes (0: off)
    keep_last: int = field(default=3, validator=v.gt(0))             # checkpoints kept on disk
    grad_clip: float = field(default=0.0, validator=v.ge(0))     # max grad norm per phase (0: off)
    precision: str = field(default="auto", validator=v.in_(PRECISIONS))  # auto (per device) | fp32 | bf16 | fp16
    channels_last: bool = False                                        # memory format for conv nets (auto decides it too)
    num_workers: int = field(default=0, validator=v.ge(0))       # DataLoader workers
    tensorboard: bool = False                                          # also write TensorBoard events
    sample_count: int = field(default=16, validator=v.gt(0))         # images per sample grid
    deterministic: bool = False                                        # torch deterministic algorithms
    sync_batchnorm: bool = False                                       # BatchNorm statistics over all processes' batches


MAX_SEED = 2**62  # derived seeds (seed * 2 + 1 + 7919 * rank + ...) must stay inside torch's 64-bit range


def _seed_range(inst, attribute, value) -> None:
    if not 0 <= value < MAX_SEED:
        raise ValueError(f"seed must be an integer in [0, 2**62), got {value}")


@define(kw_only=True)
class RunConfig:
    """A whole run: which algorithm on which data, and how to train it."""

    plugin: str = ""                      # the plugin whose preset this came from
    preset: str = ""                      # the preset's short name
    seed: int = field(default=0, validator=_seed_range)  # seeds torch, numpy, python and the data order
    device: str = "auto"                  # auto | cpu | cuda | cuda:N
    out: str = ""                         # output directory ("" -> runs/<plugin>-<preset>)
    algorithm: dict = field(factory=dict)  # component spec {type = "...", ...}
    data: dict = field(factory=dict)       # dataset spec
    mask: dict = field(factory=dict)       # mask spec; empty for methods without holes
    train: TrainConfig = field(factory=TrainConfig)


# --- files, overrides, presets -----------------------------------------------------------------
def load_toml(path: str | Path) -> dict:
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        return tomllib.loads(p.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p} is not UTF-8 text (byte {exc.start} is 0x{exc.object[exc.start]:02x}); "
                          "TOML files must be UTF-8: re-save it as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p} is not valid TOML: {exc}") from None


def dump_toml(data: Mapping[str, Any]) -> str:
    return tomli_w.dumps(_drop_none(_order(dict(data))))


def _order(d: dict) -> dict:
    """Scalars before tables so the TOML reads top-down."""
    scalars = {k: v for k, v in d.items() if not isinstance(v, dict)}
    tables = {k: _order(v) for k, v in d.items() if isinstance(v, dict)}
    return {**scalars, **tables}


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict:
    """Tables merge key by key; a new `type` replaces the whole component table."""
    out = copy.deepcopy(dict(base))
    for k, val in over.items():
        if isinstance(val, Mapping) and isinstance(out.get(k), Mapping):
            if "type" in val and val.get("type") != out[k].get("type"):
                out[k] = copy.deepcopy(dict(val))
            else:
                out[k] = deep_merge(out[k], val)
        else:
            out[k] = copy.deepcopy(val)
    return out


def parse_value(text: str) -> Any:
    """`--set` values: TOML literals (1, 0.5, true, [1, 2], "s") or else a bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(data: Mapping[str, Any], overrides: list[str]) -> dict:
    """Apply `--set key.path=value` items in order.

    Setting a component's `type` to a different component replaces its table, as a config file
    with a new `type` does: the old component's options do not leak into the new one. Keys set by
    earlier `--set` items in that table are kept.
    """
    out = copy.deepcopy(dict(data))
    written: set[tuple[str, ...]] = set()
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value (e.g. train.steps=100), got {item!r}")
        key, text = item.split("=", 1)
        parts = [p for p in key.strip().split(".") if p]
        if not parts:
            raise ConfigError(f"--set has an empty key in {item!r}")
        node = out
        for i, p in enumerate(parts[:-1]):
            nxt = node.get(p)
            if nxt is None:
                nxt = node[p] = {}
            elif not isinstance(nxt, dict):
                raise ConfigError(f"--set {key}: '{'.'.join(parts[:i + 1])}' is a value, not a table")
            node = nxt
        value = parse_value(text.strip())
        if parts[-1] == "type" and "type" in node and node["type"] != value:
            prefix = tuple(parts[:-1])
            for k in list(node):
                if not any(w[:len(prefix) + 1] == prefix + (k,) for w in written):
                    del node[k]
        node[parts[-1]] = value
        written.add(tuple(parts))
    return out


def resolve_component(spec: Mapping[str, Any] | str, registry, kind: str | None = None,
                      path: str = "", expand: bool = True) -> dict:
    """Validate a component spec; returns it with the full type name (and every default if expand).

    Nested component specs are validated all the way down but keep only the keys the user wrote:
    their remaining defaults are filled when the parent builds them, with the parent's
    context (the data's image size and channels, ...) taking precedence over code defaults.
    """
    from genfw.core.roles import slot_keys

    keys = slot_keys(registry, spec)  # e.g. latent_transform: the slot's, not the component's
    slot_extra = {k: spec[k] for k in keys if isinstance(spec, Mapping) and k in spec}
    if slot_extra:
        spec = {k: v for k, v in spec.items() if k not in slot_extra}
    entry, cfg = registry.resolve(spec, kind=kind, path=path)
    if not expand:
        body = {"type": entry.name} if isinstance(spec, str) else {**spec, "type": entry.name}
        out = {"type": entry.name, **{k: v for k, v in body.items() if k != "type"}}
    else:
        out = {"type": entry.name, **(unstructure(cfg) if cfg is not None else {})}
    for k, val in list(out.items()):
        if isinstance(val, dict) and isinstance(val.get("type"), str) and val["type"] in registry:
            out[k] = resolve_component(val, registry, path=f"{path}.{k}", expand=False)
    for k, val in slot_extra.items():
        out[k] = resolve_component(val, registry, path=f"{path}.{k}", expand=False)
    return out


def resolve_run(raw: Mapping[str, Any], registry) -> tuple[RunConfig, dict]:
    """Validate a raw run mapping; returns the typed config and the fully resolved mapping."""
    cfg = structure(raw, RunConfig, path="config")
    if not cfg.algorithm:
        raise ConfigError("config has no [algorithm] table; pick a preset with --plugin/--preset or write one")
    if not cfg.data:
        raise ConfigError("config has no [data] table; set data.type (e.g. lfw-subset) or pass --data")
    resolved = unstructure(cfg)
    resolved["algorithm"] = resolve_component(cfg.algorithm, registry, "algorithm", "algorithm")
    resolved["data"] = resolve_component(cfg.data, registry, "dataset", "data")
    if cfg.mask:
        resolved["mask"] = resolve_component(cfg.mask, registry, "mask", "mask")
    cfg = structure(resolved, RunConfig, path="config")
    return cfg, resolved


def preset_config(registry, plugin: str, preset: str = "default") -> dict:
    """The raw run mapping of a plugin's preset, with plugin/preset filled in."""
    from genfw.core.errors import UnknownComponentError

    plugins = {e.plugin for e in registry.entries()}
    if plugin not in plugins:
        failed = registry.failed_plugins
        extra = f"; plugins that failed to load: {', '.join(sorted(failed))}" if failed else ""
        raise ConfigError(f"unknown plugin {plugin!r}{suggest(plugin, plugins)}{extra}; see `genfw plugins`")
    try:
        entry = registry.get(f"{plugin}.{preset}", kind="preset")
    except UnknownComponentError:
        names = [e.short for e in registry.entries("preset") if e.plugin == plugin]
        raise ConfigError(
            f"plugin {plugin!r} has no preset {preset!r}{suggest(preset, names)}; presets: {', '.join(names) or 'none'}"
        ) from None
    return deep_merge({"plugin": plugin, "preset": preset}, entry.value)


def raw_run_config(registry, plugin: str | None = None, preset: str | None = None,
                   config_file: str | None = None, overrides: list[str] | tuple[str, ...] = (),
                   extra: Mapping[str, Any] | None = None) -> dict:
    """preset <- config file <- --set overrides <- CLI flags: what the sources wrote, unvalidated."""
    raw: dict = {}
    file_data = load_toml(config_file) if config_file else {}
    plugin = plugin or file_data.get("plugin")
    if plugin:
        raw = preset_config(registry, plugin, preset or file_data.get("preset") or "default")
    elif not config_file:
        raise ConfigError("say what to run: --plugin NAME (see `genfw plugins`) or --config FILE")
    raw = deep_merge(raw, file_data)
    raw = apply_overrides(raw, list(overrides))
    if extra:
        raw = deep_merge(raw, extra)
    return raw


def build_run_config(registry, plugin: str | None = None, preset: str | None = None,
                     config_file: str | None = None, overrides: list[str] | tuple[str, ...] = (),
                     extra: Mapping[str, Any] | None = None) -> tuple[RunConfig, dict]:
    """preset <- config file <- --set overrides <- CLI flags, then validated."""
    return resolve_run(raw_run_config(registry, plugin, preset, config_file, overrides, extra), registry)
