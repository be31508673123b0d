"""The component registry: kinds, namespaced names, build-from-mapping with validated attrs configs."""
from __future__ import annotations

import typing
from typing import Any, Callable, Iterator, Mapping

import attrs

from genfw.core.errors import DuplicateComponentError, UnknownComponentError, suggest

# Kinds known out of the box; plugins may add more with Registry.add_kind.
BUILTIN_KINDS = {
    "generator": "networks that produce images (decoders included)",
    "discriminator": "networks that judge images or features",
    "encoder": "networks that map images to latents",
    "layer": "drop-in modules (CSA layer, LIS stack, WN layers, ...)",
    "loss": "loss modules",
    "scheduler": "learning-rate and training-progress schedules",
    "algorithm": "training algorithms (networks, optimizers, phases)",
    "dataset": "datasets yielding batch-contract mappings",
    "mask": "hole-mask generators (1 = hole)",
    "metric": "evaluation metrics",
    "landmarks": "68-point facial landmark detectors",
    "preset": "complete run configurations",
    "benchmark": "performance benchmarks run by `genfw bench`",
}

NETWORK_KINDS = ("generator", "discriminator", "encoder", "layer")
SECONDARY_KINDS = ("preset", "benchmark")  # looked up only by kind or as a last resort


@attrs.define
class Entry:
    """One registered component."""

    kind: str
    name: str  # fully qualified: "plugin.short"
    factory: Callable[..., Any]
    plugin: str
    config: type | None = None  # attrs class; factory(config_instance) when set
    help: str = ""
    example: Callable[[Any], Any] | None = None  # module -> tiny forward inputs (contract tests)
    tiny: Mapping[str, Any] = attrs.field(factory=dict)  # config overrides for contract tests
    value: Any = None  # presets: the run-config mapping
    roles: tuple = ()  # roles it provides (genfw.core.roles); derived from kind/class when not given
    traits: Mapping[str, Any] = attrs.field(factory=dict)  # static traits (output range, ...) for listings
    slots: tuple = ()  # genfw.core.roles.Slot declarations of an algorithm or network

    @property
    def short(self) -> str:
        return self.name.split(".", 1)[1]

    def default_config(self) -> Any:
        return self.config() if self.config is not None else None


def _fits(value: Any, ftype: Any) -> bool:
    """Whether a default hint is shaped like the field (scalar vs list vs table)."""
    origin = typing.get_origin(ftype) or ftype
    if origin in (list, tuple):
        return isinstance(value, (list, tuple))
    if origin is dict:
        return isinstance(value, Mapping)
    if origin in (int, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if origin is bool:
        return isinstance(value, bool)
    if origin is str:
        return isinstance(value, str)
    return True


class Registry:
    """All components from all plugins, keyed by fully qualified name."""

    def __init__(self) -> None:
        self.kinds: dict[str, str] = dict(BUILTIN_KINDS)
        # Keyed by (kind, name): a plugin may call a preset like its algorithm ("lis.r-separate").
        self._entries: dict[tuple[str, str], Entry] = {}
        self.failed_plugins: dict[str, str] = {}  # filled by the plugin manager

    # --- registration ----------------------------------------------------------------------
    def add_kind(self, kind: str, help: str = "") -> None:
        self.kinds.setdefault(kind, help)

    def add(self, entry: Entry) -> Entry:
        if entry.kind not in self.kinds:
            raise ValueError(
                f"unknown component kind {entry.kind!r}{suggest(entry.kind, self.kinds)}; "
                "add it first with registry.add_kind()"
            )
        if "." not in entry.name:
            raise ValueError(f"component names are namespaced 'plugin.name', got {entry.name!r}")
        old = self._entries.get((entry.kind, entry.name))
        if old is not None:
            raise DuplicateComponentError(
                f"component {entry.name!r} is registered twice: by plugin {old.plugin!r} and by "
                f"plugin {entry.plugin!r}; disable one of them (GENFW_DISABLE_PLUGINS) or rename"
            )
        if entry.config is not None and not attrs.has(entry.config):
            raise TypeError(f"{entry.name}: config must be an attrs class, got {entry.config!r}")
        self._entries[(entry.kind, entry.name)] = entry
        return entry

    def remove_plugin(self, plugin: str) -> None:
        """Drop everything a plugin registered (used when its hook fails half-way)."""
        for key in [k for k, e in self._entries.items() if e.plugin == plugin]:
            del self._entries[key]

    # --- lookup ------------------------------------------------------------------------------
    def entries(self, kind: str | None = None) -> list[Entry]:
        return sorted(
            (e for e in self._entries.values() if kind is None or e.kind == kind),
            key=lambda e: e.name,
        )

    def names(self, kind: str | None = None) -> list[str]:
        return [e.name for e in self.entries(kind)]

    def __contains__(self, name: str) -> bool:
        try:
            self.get(name)
            return True
        except UnknownComponentError:
            return False

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.entries())

    def get(self, name: str, kind: str | None = None) -> Entry:
        """Look up by full name, or by short name when exactly one plugin provides it.

        Without a kind, building blocks are searched before presets and benchmarks, which may
        share a name with the algorithm they configure or measure.
        """
        pools = [self.entries(kind)] if kind is not None else [
            [e for e in self.entries() if e.kind not in SECONDARY_KINDS],
            [e for e in self.entries() if e.kind in SECONDARY_KINDS]]
        for pool in pools:
            found = self._find(name, pool, kind)
            if found is not None:
                return found
        pool = self.entries(kind)
        what = f"{kind} " if kind else ""
        candidates = [e.name for e in pool] + [e.short for e in pool]
        msg = f"unknown {what}component {name!r}{suggest(name, candidates)}"
        if kind is not None and pool:
            msg += f"; known {kind}s: {', '.join(e.name for e in pool)}"
        if self.failed_plugins:
            msg += f"; plugins that failed to load: {', '.join(sorted(self.failed_plugins))}"
        raise UnknownComponentError(msg)

    @staticmethod
    def _find(name: str, pool: list[Entry], kind: str | None) -> Entry | None:
        for match in ([e for e in pool if e.name == name], [e for e in pool if e.short == name]):
            if len(match) == 1:
                return match[0]
            if len(match) > 1:
                what = f"{kind} " if kind else ""
                listed = ", ".join(f"{e.name} ({e.kind})" for e in match)
                raise UnknownComponentError(
                    f"{what}name {name!r} is ambiguous: {listed}; use the full name"
                    + ("" if kind else " in a table of that kind"))
        return None

    # --- building ----------------------------------------------------------------------------
    def build(self, spec: Mapping[str, Any] | str, kind: str | None = None,
              defaults: Mapping[str, Any] | None = None, path: str = "") -> Any:
        """Build a component from ``{"type": name, **config}`` (or a bare name).

        ``defaults`` fill config fields the spec leaves out (e.g. the data's image size); keys the
        user wrote always win. Unknown keys are ConfigErrors naming the path and close matches.
        """
        entry, cfg = self.resolve(spec, kind=kind, defaults=defaults, path=path)
        if entry.config is None:
            return entry.factory()
        return entry.factory(cfg)

    def resolve(self, spec: Mapping[str, Any] | str, kind: str | None = None,
                defaults: Mapping[str, Any] | None = None, path: str = "") -> tuple[Entry, Any]:
        """(entry, validated config instance) for a spec, without building."""
        from genfw.core.config import structure
        from genfw.core.errors import ConfigError

        if isinstance(spec, str):
            spec = {"type": spec}
        if not isinstance(spec, Mapping) or "type" not in spec:
            raise ConfigError(f"{path or 'component'}: expected a table with a 'type' key, got {spec!r}")
        entry = self.get(str(spec["type"]), kind)
        body = {k: v for k, v in spec.items() if k != "type"}
        if entry.config is None:
            if body:
                raise ConfigError(f"{path or entry.name}: {entry.name} takes no options, got {sorted(body)}")
            return entry, None
        attrs.resolve_types(entry.config)
        fields = {f.name: f for f in attrs.fields(entry.config)}
        # `defaults` are hints from the parent (the data's size and channels): one applies only to a
        # field of that name whose type it fits ("channels" may be a width list in one network)
        hints = {k: v for k, v in (defaults or {}).items() if k in fields and _fits(v, fields[k].type)}
        merged = {**hints, **body}
        return entry, structure(merged, entry.config, path=path or entry.name)
