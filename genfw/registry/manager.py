"""Plugin discovery and loading: entry points in group `genfw`, each loaded in isolation.

A plugin that fails to import, raises (even SystemExit or KeyboardInterrupt) in a hook, misspells a
hook, registers outside its namespace or needs another plugin API is reported and rolled back; the
rest load. Two distributions claiming one plugin name never take a built-in down: the built-in
loads, the other is reported `shadowed`, and either can be picked with ``GENFW_PLUGINS=NAME@DIST``.
"""
from __future__ import annotations

import importlib.metadata as md
import os
import re
import sys
import traceback
import warnings
from typing import Any, Callable, Mapping

import attrs
import pluggy

from genfw.core.errors import GenfwError, suggest
from genfw.registry import hookspecs
from genfw.registry.hookspecs import API_VERSION
from genfw.registry.registry import Entry, Registry

GROUP = "genfw"
ALWAYS = ("core",)  # the core's datasets, masks and losses cannot be switched off
BUILTIN_DIST = "genfw"  # plugins shipped in this distribution are the built-ins

# `-p no:NAME` on the CLI adds here; the env vars are read at load time.
cli_disabled: set[str] = set()


class PluginLoadError(GenfwError):
    """Raised in strict mode when any plugin fails to load (the message lists every failure)."""


@attrs.define
class PluginInfo:
    name: str
    version: str = ""
    status: str = "ok"  # ok | failed | disabled | incompatible | shadowed
    error: str = ""
    hooks: list[str] = attrs.field(factory=list)
    components: dict[str, list[str]] = attrs.field(factory=dict)  # kind -> names
    module: str = ""
    dist: str = ""          # the distribution that provides the entry point
    api: str = ""           # the GENFW_API range the plugin declared ("" = undeclared)
    builtin: bool = False
    licence: str = ""       # the distribution's licence: the default of its components
    warnings: list[str] = attrs.field(factory=list)

    @property
    def failed(self) -> bool:
        return self.status in ("failed", "incompatible")


class Registrar:
    """What a plugin's `register_components` hook receives: registration scoped to one plugin."""

    def __init__(self, registry: Registry, plugin: str, licence: str = "") -> None:
        self._registry = registry
        self.plugin = plugin
        self.licence = licence

    def _qualify(self, name: str) -> str:
        short = name[len(self.plugin) + 1:] if name.startswith(self.plugin + ".") else name
        if not short or "." in short:
            raise ValueError(
                f"plugin {self.plugin!r} cannot register {name!r}: a plugin registers only under its own "
                f"prefix, as '<name>' or '{self.plugin}.<name>' with no dot in <name> "
                f"(e.g. {self.plugin}.{short.replace('.', '-') or 'thing'})")
        return f"{self.plugin}.{short}"

    def add_kind(self, kind: str, help: str = "") -> None:
        """Declare a new component kind."""
        self._registry.add_kind(kind, help)

    def register(self, kind: str, name: str, factory: Callable[..., Any], *, config: type | None = None,
                 help: str = "", example: Callable[[Any], Any] | None = None,
                 tiny: Mapping[str, Any] | None = None, roles: tuple[str, ...] | None = None,
                 traits: Mapping[str, Any] | None = None, slots: tuple = (), licence: str = "",
                 cases: Callable[[Any], Any] | None = None,
                 tiny_data: Mapping[str, Any] | None = None) -> Entry:
        """Register `factory` as `<plugin>.<name>`; it is called as factory(config_instance).

        `roles`: what it provides (genfw.core.roles.ROLES); derived from the kind and the class's
        `roles` attribute when omitted. `traits`: static traits shown in listings. `slots`: the
        nested component tables it builds (Slot declarations; else the factory's `slots`).
        `licence`: defaults to the distribution's. `cases` (losses) and `tiny_data` (algorithms)
        feed the contract tests."""
        from genfw.core.roles import ROLES, derive_roles, derive_traits

        _check_callable(self.plugin, name, factory)
        roles = tuple(roles) if roles is not None else derive_roles(kind, factory)
        unknown = [r for r in roles if r not in ROLES]
        if unknown:
            raise ValueError(f"{self._qualify(name)}: unknown role(s) {unknown}; known: {', '.join(ROLES)}")
        return self._registry.add(Entry(kind=kind, name=self._qualify(name), factory=factory,
                                        plugin=self.plugin, config=config, help=help or _doc(factory),
                                        example=example, tiny=dict(tiny or {}), roles=roles,
                                        traits={**derive_traits(factory), **(traits or {})},
                                        slots=tuple(slots or getattr(factory, "slots", ()) or ()),
                                        licence=licence or self.licence, cases=cases,
                                        tiny_data=dict(tiny_data or {})))

    def preset(self, name: str, value: Mapping[str, Any], help: str = "") -> Entry:
        """Register a complete run configuration (a nested mapping, as in a TOML run file)."""
        return self._registry.add(Entry(kind="preset", name=self._qualify(name), factory=dict,
                                        plugin=self.plugin, help=help, value=dict(value),
                                        licence=self.licence))

    def benchmark(self, name: str, fn: Callable[..., Any], help: str = "") -> Entry:
        """Register a benchmark: fn(machine: dict, quick: bool) -> iterable of JSON-able dicts."""
        _check_callable(self.plugin, name, fn)
        return self._registry.add(Entry(kind="benchmark", name=self._qualify(name), factory=fn,
                                        plugin=self.plugin, help=help or _doc(fn), licence=self.licence))


def _check_callable(plugin: str, name: str, factory: Any) -> None:
    if not callable(factory):
        raise TypeError(f"plugin {plugin!r}: the factory of {name!r} is not callable "
                        f"({type(factory).__name__}); pass a class or function")


def _doc(obj: Any) -> str:
    doc = (getattr(obj, "__doc__", None) or "").strip()
    return doc.splitlines()[0] if doc else ""


def _names(value: str | None) -> set[str]:
    return {v.strip() for v in (value or "").split(",") if v.strip()}


def _norm(dist: str) -> str:
    """Distribution names compare as PEP 503 does (case, '-', '_' and '.' are equivalent)."""
    return re.sub(r"[-_.]+", "-", dist).lower()


@attrs.define
class Loaded:
    registry: Registry
    plugins: list[PluginInfo]
    pm: pluggy.PluginManager
    warnings: list[str] = attrs.field(factory=list)  # bad -p / env names, rejected commands

    @property
    def failures(self) -> list[PluginInfo]:
        return [p for p in self.plugins if p.failed]

    def strict_error(self) -> PluginLoadError | None:
        bad = self.failures
        if not bad:
            return None
        listed = "; ".join(f"{p.name} ({p.status}): {p.error}" for p in bad)
        return PluginLoadError(f"{len(bad)} plugin(s) failed to load (GENFW_STRICT_PLUGINS is set): {listed}; "
                               "`genfw plugins` shows them")


@attrs.define
class _Source:
    name: str
    load: Callable[[], Any]
    version: str = ""
    dist: str = ""
    value: str = ""  # the entry point's target, for messages
    licence: str = ""

    @property
    def builtin(self) -> bool:
        return _norm(self.dist) == BUILTIN_DIST


def _dist_meta(ep: md.EntryPoint) -> tuple[str, str, str]:
    if ep.dist is None:
        return "?", "", ""
    meta = ep.dist.metadata
    licence = meta.get("License-Expression") or meta.get("License") or ""
    return meta["Name"], ep.dist.version, licence if len(licence) <= 60 else ""


def _entry_point_sources() -> dict[str, list[_Source]]:
    """Sources by plugin name; the same distribution twice (editable + site) counts once."""
    out: dict[str, list[_Source]] = {}
    for ep in md.entry_points(group=GROUP):
        dist, version, licence = _dist_meta(ep)
        same = [s for s in out.get(ep.name, []) if _norm(s.dist) == _norm(dist)]
        if same:
            continue
        out.setdefault(ep.name, []).append(_Source(ep.name, ep.load, version, dist, ep.value, licence))
    return out


def _selector(items: set[str]) -> tuple[set[str], dict[str, str]]:
    """'name' and 'name@dist' items -> (names, {name: dist})."""
    names, picks = set(), {}
    for item in items:
        name, _, dist = item.partition("@")
        names.add(name)
        if dist:
            picks[name] = dist
    return names, picks


def _matches(src: _Source, dist: str) -> bool:
    return _norm(src.dist) == _norm(dist)


def _pick(name: str, sources: list[_Source], picks: dict[str, str],
          infos: list[PluginInfo]) -> _Source | None:
    """The one source to load for `name`; the others get an info row saying why not."""
    def row(src: _Source, status: str, error: str) -> None:
        infos.append(PluginInfo(name=name, version=src.version, status=status, error=error, dist=src.dist,
                                builtin=src.builtin, module=src.value, licence=src.licence))

    if len(sources) == 1 and name not in picks:
        return sources[0]
    claimed = ", ".join(f"{s.dist} ({s.value})" for s in sources)
    if name in picks:
        chosen = [s for s in sources if _matches(s, picks[name])]
        if not chosen:
            for s in sources:
                row(s, "failed", f"GENFW_PLUGINS picks {name}@{picks[name]} but {name!r} is provided by {claimed}")
            return None
        for s in sources:
            if s is not chosen[0]:
                row(s, "disabled", f"GENFW_PLUGINS picks {name}@{chosen[0].dist}")
        return chosen[0]
    builtin = [s for s in sources if s.builtin]
    if builtin:
        for s in sources:
            if s is not builtin[0]:
                row(s, "shadowed", f"plugin name {name!r} is claimed by {claimed}; the built-in one is "
                                   f"loaded; to load this one instead: GENFW_PLUGINS='*,{name}@{s.dist}'")
        return builtin[0]
    for s in sources:
        row(s, "failed", f"plugin name {name!r} is claimed by {len(sources)} distributions: {claimed}; "
                         f"pick one with GENFW_PLUGINS='*,{name}@{s.dist}' or uninstall one")
    return None


def _api_check(module: Any) -> str:
    """The declared GENFW_API range, or raises _Incompatible."""
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    declared = getattr(module, "GENFW_API", None)
    if declared is None:
        return ""
    try:
        spec = SpecifierSet(str(declared))
    except InvalidSpecifier:
        raise ValueError(f"GENFW_API = {declared!r} is not a version range (write e.g. '>=1.0,<2')") from None
    if API_VERSION not in spec:
        raise _Incompatible(str(declared), f"needs genfw plugin API {declared}; this genfw provides {API_VERSION}")
    return str(declared)


class _Incompatible(Exception):
    def __init__(self, declared: str, message: str) -> None:
        super().__init__(message)
        self.declared = declared


def _describe(exc: BaseException, where: str) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    kind = type(exc).__name__
    if isinstance(exc, (SystemExit, KeyboardInterrupt)):
        return f"{kind} raised {where}" + (f": {text}" if text else "")
    return f"{kind}: {text}" if text else kind


def load_plugins(extra: Mapping[str, Any] | None = None, strict: bool | None = None) -> Loaded:
    """Load every `genfw` entry point (plus `extra` name -> module objects, used by tests).

    With ``strict`` (default: env GENFW_STRICT_PLUGINS) every plugin is still tried, then one
    PluginLoadError lists all that failed.
    """
    if strict is None:
        strict = strict_mode()
    disabled_items = _names(os.environ.get("GENFW_DISABLE_PLUGINS")) | cli_disabled
    allowed_items = _names(os.environ.get("GENFW_PLUGINS"))  # allow-list; empty or '*' means all
    disabled = {n for n in disabled_items if "@" not in n}
    disabled_dists = _selector(disabled_items - disabled)[1]  # no:NAME@DIST disables one distribution
    allowed, picks = _selector(allowed_items - {"*"})
    allow_all = not allowed_items or "*" in allowed_items

    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    registry = Registry()
    infos: list[PluginInfo] = []
    notes: list[str] = []

    by_name = _entry_point_sources()
    for name, obj in (extra or {}).items():
        by_name.setdefault(name, []).append(
            _Source(name, (lambda o=obj: o), str(getattr(obj, "__version__", "")), "", getattr(obj, "__name__", "")))
    known = set(by_name)
    for item, why in [(n, "-p no:/GENFW_DISABLE_PLUGINS") for n in sorted(disabled_items)] + \
                     [(n, "GENFW_PLUGINS") for n in sorted(allowed_items - {"*"})]:
        if item.partition("@")[0] not in known:
            notes.append(f"warning: {why} names {item!r}, but no plugin has that name"
                         f"{suggest(item.partition('@')[0], known)}; installed: {', '.join(sorted(known))}")

    chosen: list[_Source] = []
    for name in sorted(by_name, key=lambda n: (n not in ALWAYS, n)):
        sources = [s for s in by_name[name] if not (name in disabled_dists and _matches(s, disabled_dists[name]))]
        for s in by_name[name]:
            if s not in sources:
                infos.append(PluginInfo(name=name, version=s.version, status="disabled", dist=s.dist,
                                        builtin=s.builtin, module=s.value, licence=s.licence))
        if not sources:
            continue
        if name in ALWAYS:  # the core is never shadowed, picked away or disabled
            sources = [s for s in sources if s.builtin] or sources
        src = _pick(name, sources, {} if name in ALWAYS else picks, infos)
        if src is None:
            registry.failed_plugins[name] = next(p.error for p in infos if p.name == name)
            continue
        chosen.append(src)

    for src in chosen:
        name = src.name
        info = PluginInfo(name=name, version=src.version, dist=src.dist, builtin=src.builtin,
                          module=src.value, licence=src.licence)
        infos.append(info)
        if name not in ALWAYS and (name in disabled or not (allow_all or name in allowed)):
            info.status = "disabled"
            registry.disabled_plugins.add(name)
            continue
        _load_one(src, info, pm, registry)
        if info.failed:
            registry.failed_plugins[name] = info.error
        elif src.builtin:
            registry.builtin_plugins.add(name)

    order = {n: i for i, n in enumerate(sorted(by_name, key=lambda n: (n not in ALWAYS, n)))}
    infos.sort(key=lambda p: (order.get(p.name, 0), p.status != "ok" and p.status != "failed"))
    state = Loaded(registry=registry, plugins=infos, pm=pm, warnings=notes)
    if strict:
        err = state.strict_error()
        if err is not None:
            raise err
    return state


def _load_one(src: _Source, info: PluginInfo, pm: pluggy.PluginManager, registry: Registry) -> None:
    """Import, API check, register hooks, run register_components; on any failure roll back."""
    name = src.name
    stage = f"while importing plugin {name!r}"
    module = None
    try:
        module = src.load()
        info.module = getattr(module, "__name__", repr(module))
        if not info.version:
            info.version = str(getattr(module, "__version__", ""))
        stage = f"in plugin {name!r}"
        info.api = _api_check(module)
        if pm.is_registered(module) or pm.has_plugin(name):
            raise GenfwError(f"plugin {name!r} is registered twice (two entry points for {info.module})")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pm.register(module, name=name)
        info.warnings += [f"{w.category.__name__}: {w.message}" for w in caught]
        pm.check_pending()  # earlier plugins passed, so a failure here is this plugin's
        info.hooks = sorted(h.name for h in pm.get_hookcallers(module) or [])
        stage = f"in the register_components hook of plugin {name!r}"
        for impl in pm.hook.register_components.get_hookimpls():
            if impl.plugin is module:
                impl.function(registry=Registrar(registry, name, src.licence))
        for e in registry.entries():
            if e.plugin == name:  # by kind: a preset may share its algorithm's name
                info.components.setdefault(e.kind, []).append(e.name)
    except _Incompatible as exc:
        info.status, info.error, info.api = "incompatible", str(exc), exc.declared
    except BaseException as exc:  # noqa: BLE001 - one broken plugin (even one calling sys.exit) must not break the rest
        info.status = "failed"
        info.error = _describe(exc, stage)
        if os.environ.get("GENFW_DEBUG"):
            traceback.print_exception(exc)
    if info.status != "ok":
        registry.remove_plugin(name)
        if module is not None and pm.is_registered(module):
            pm.unregister(module)
        info.components, info.hooks = {}, []


def add_plugin_commands(group: Any, state: Loaded) -> None:
    """Call every register_commands hook; a plugin cannot replace or remove an existing command."""
    for impl in state.pm.hook.register_commands.get_hookimpls():
        before = dict(group.commands)
        problem = ""
        try:
            impl.function(cli=group)
        except BaseException as exc:  # noqa: BLE001 - a broken plugin must not break the CLI
            problem = f"warning: plugin {impl.plugin_name!r} failed to add commands: {_describe(exc, 'in register_commands')}"
            for added in set(group.commands) - set(before):
                del group.commands[added]
        for cmd_name, cmd in before.items():
            if group.commands.get(cmd_name) is not cmd:
                group.commands[cmd_name] = cmd
                problem = (f"warning: plugin {impl.plugin_name!r} tried to replace the command {cmd_name!r}; "
                           f"rejected (name it e.g. '{impl.plugin_name}-{cmd_name}')")
        if problem:
            state.warnings.append(problem)
            for info in state.plugins:
                if info.name == impl.plugin_name and info.status == "ok":
                    info.warnings.append(problem.removeprefix("warning: "))
            print(problem, file=sys.stderr)


def strict_mode() -> bool:
    return os.environ.get("GENFW_STRICT_PLUGINS", "") not in ("", "0", "false")


_LOADED: Loaded | None = None


def loaded(reload: bool = False, allow_failures: bool = False) -> Loaded:
    """The process-wide plugin state (loads on first call).

    In strict mode this raises one PluginLoadError listing every failure, unless ``allow_failures``
    (used by `genfw plugins`, which must work to show what failed).
    """
    global _LOADED
    if _LOADED is None or reload:
        _LOADED = load_plugins(strict=False)
        _LOADED.registry.echo_notes = True
        for line in _LOADED.warnings:
            print(line, file=sys.stderr)
    if strict_mode() and not allow_failures:
        err = _LOADED.strict_error()
        if err is not None:
            raise err
    return _LOADED
