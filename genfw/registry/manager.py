"""Plugin discovery and loading: entry points in group `genfw`, each loaded in isolation."""
from __future__ import annotations

import importlib.metadata as md
import os
import traceback
from typing import Any, Callable, Mapping

import attrs
import pluggy

from genfw.core.errors import GenfwError
from genfw.registry import hookspecs
from genfw.registry.registry import Entry, Registry

GROUP = "genfw"
ALWAYS = ("core",)  # the core's datasets, masks and losses cannot be switched off

# `-p no:NAME` on the CLI adds here; the env vars are read at load time.
cli_disabled: set[str] = set()


class PluginLoadError(GenfwError):
    """Raised in strict mode when a plugin fails to load."""


@attrs.define
class PluginInfo:
    name: str
    version: str = ""
    status: str = "ok"  # ok | failed | disabled
    error: str = ""
    hooks: list[str] = attrs.field(factory=list)
    components: dict[str, list[str]] = attrs.field(factory=dict)  # kind -> names
    module: str = ""


class Registrar:
    """What a plugin's `register_components` hook receives: registration scoped to one plugin."""

    def __init__(self, registry: Registry, plugin: str) -> None:
        self._registry = registry
        self.plugin = plugin

    def _qualify(self, name: str) -> str:
        return name if name.startswith(self.plugin + ".") else f"{self.plugin}.{name}"

    def add_kind(self, kind: str, help: str = "") -> None:
        """Declare a new component kind."""
        self._registry.add_kind(kind, help)

    def register(self, kind: str, name: str, factory: Callable[..., Any], *, config: type | None = None,
                 help: str = "", example: Callable[[Any], Any] | None = None,
                 tiny: Mapping[str, Any] | None = None, roles: tuple[str, ...] | None = None,
                 traits: Mapping[str, Any] | None = None, slots: tuple = ()) -> Entry:
        """Register `factory` as `<plugin>.<name>`; it is called as factory(config_instance).

        `roles`: what it provides (genfw.core.roles.ROLES); derived from the kind and the class's
        `roles` attribute when omitted. `traits`: static traits shown in listings. `slots`: the
        nested component tables it builds (Slot declarations; else the factory's `slots`)."""
        from genfw.core.roles import ROLES, derive_roles, derive_traits

        roles = tuple(roles) if roles is not None else derive_roles(kind, factory)
        unknown = [r for r in roles if r not in ROLES]
        if unknown:
            raise ValueError(f"{self._qualify(name)}: unknown role(s) {unknown}; known: {', '.join(ROLES)}")
        return self._registry.add(Entry(kind=kind, name=self._qualify(name), factory=factory,
                                        plugin=self.plugin, config=config, help=help or _doc(factory),
                                        example=example, tiny=dict(tiny or {}), roles=roles,
                                        traits={**derive_traits(factory), **(traits or {})},
                                        slots=tuple(slots or getattr(factory, "slots", ()) or ())))

    def preset(self, name: str, value: Mapping[str, Any], help: str = "") -> Entry:
        """Register a complete run configuration (a nested mapping, as in a TOML run file)."""
        return self._registry.add(Entry(kind="preset", name=self._qualify(name), factory=dict,
                                        plugin=self.plugin, help=help, value=dict(value)))

    def benchmark(self, name: str, fn: Callable[..., Any], help: str = "") -> Entry:
        """Register a benchmark: fn(machine: dict, quick: bool) -> iterable of JSON-able dicts."""
        return self._registry.add(Entry(kind="benchmark", name=self._qualify(name), factory=fn,
                                        plugin=self.plugin, help=help or _doc(fn)))


def _doc(obj: Any) -> str:
    doc = (getattr(obj, "__doc__", None) or "").strip()
    return doc.splitlines()[0] if doc else ""


def _names(value: str | None) -> set[str]:
    return {v.strip() for v in (value or "").split(",") if v.strip()}


@attrs.define
class Loaded:
    registry: Registry
    plugins: list[PluginInfo]
    pm: pluggy.PluginManager


def _dist_name(ep: md.EntryPoint) -> str:
    return ep.dist.metadata["Name"] if ep.dist is not None else "?"


def _entry_points() -> tuple[list[md.EntryPoint], dict[str, str]]:
    """Entry points by plugin name, and errors for names claimed by two distributions."""
    seen: dict[str, md.EntryPoint] = {}
    clashes: dict[str, str] = {}
    for ep in md.entry_points(group=GROUP):
        first = seen.get(ep.name)
        if first is None:
            seen[ep.name] = ep
        elif _dist_name(first) != _dist_name(ep):  # same dist twice (editable + site) is harmless
            clashes[ep.name] = (f"plugin name {ep.name!r} is claimed by two distributions: "
                                f"{_dist_name(first)} ({first.value}) and {_dist_name(ep)} ({ep.value}); "
                                "uninstall one or disable it")
    eps = sorted(seen.values(), key=lambda ep: (ep.name not in ALWAYS, ep.name))
    return eps, clashes


def load_plugins(extra: Mapping[str, Any] | None = None, strict: bool | None = None) -> Loaded:
    """Load every `genfw` entry point (plus `extra` name -> module objects, used by tests)."""
    if strict is None:
        strict = os.environ.get("GENFW_STRICT_PLUGINS", "") not in ("", "0", "false")
    disabled = _names(os.environ.get("GENFW_DISABLE_PLUGINS")) | cli_disabled
    allowed = _names(os.environ.get("GENFW_PLUGINS"))  # allow-list; empty means all

    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    registry = Registry()
    infos: list[PluginInfo] = []

    sources: list[tuple[str, Callable[[], Any], str]] = []
    eps, clashes = _entry_points()
    for ep in eps:
        version = ep.dist.version if ep.dist is not None else ""
        load = ep.load
        if ep.name in clashes:
            def load(msg=clashes[ep.name]):
                raise PluginLoadError(msg)
        sources.append((ep.name, load, version))
    for name, obj in (extra or {}).items():
        sources.append((name, (lambda o=obj: o), getattr(obj, "__version__", "")))

    for name, load, version in sources:
        info = PluginInfo(name=name, version=version)
        infos.append(info)
        if name not in ALWAYS and (name in disabled or (allowed and name not in allowed)):
            info.status = "disabled"
            continue
        try:
            module = load()
            info.module = getattr(module, "__name__", repr(module))
            if not version:
                info.version = str(getattr(module, "__version__", ""))
            if pm.is_registered(module) or pm.has_plugin(name):
                raise PluginLoadError(f"plugin {name!r} is registered twice (two entry points for {info.module})")
            pm.register(module, name=name)
            try:
                pm.check_pending()  # earlier plugins passed, so a failure here is this plugin's
            except Exception:
                pm.unregister(name=name)
                raise
            info.hooks = sorted(h.name for h in pm.get_hookcallers(module) or [])
            for impl in pm.hook.register_components.get_hookimpls():
                if impl.plugin is module:
                    try:
                        impl.function(registry=Registrar(registry, name))
                    except Exception:
                        registry.remove_plugin(name)
                        pm.unregister(name=name)
                        raise
            for e in registry.entries():
                if e.plugin == name:  # by kind: a preset may share its algorithm's name
                    info.components.setdefault(e.kind, []).append(e.name)
        except Exception as exc:  # noqa: BLE001 - one broken plugin must not break the rest
            info.status = "failed"
            info.error = f"{type(exc).__name__}: {exc}"
            registry.failed_plugins[name] = info.error
            if strict:
                raise PluginLoadError(
                    f"plugin {name!r} failed to load (GENFW_STRICT_PLUGINS is set): {info.error}"
                ) from exc
            if os.environ.get("GENFW_DEBUG"):
                traceback.print_exc()
    return Loaded(registry=registry, plugins=infos, pm=pm)


_LOADED: Loaded | None = None


def loaded(reload: bool = False) -> Loaded:
    """The process-wide plugin state (loads on first call)."""
    global _LOADED
    if _LOADED is None or reload:
        _LOADED = load_plugins()
    return _LOADED
