"""The component registry: kinds, namespaced names, build-from-mapping with validated attrs configs."""
from __future__ import annotations

import typing
from typing import Any, Callable, Iterator, Mapping

import attrs

from genfw.core.errors import ConfigError, DuplicateComponentError, GenfwError, UnknownComponentError, suggest

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
    licence: str = ""  # SPDX id or a short statement ("non-commercial research"); shown and recorded per run
    cases: Callable[[Any], Any] | None = None  # losses: module -> (good inputs, bad inputs), good scores lower
    tiny_data: Mapping[str, Any] = attrs.field(factory=dict)  # algorithms: dataset overrides for contract runs

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


class NamespaceError(GenfwError):
    """A component registered outside its plugin's namespace."""


class ComponentBuildError(ConfigError):
    """A component's factory raised: `<slot path> (<component>): <message>`."""


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class Registry:
    """All components from all plugins, keyed by fully qualified name.

    Namespace rule: every name is `<plugin>.<short>`, registered only by that plugin; each kind is
    its own namespace (a preset may share its algorithm's name). A short name resolves when one
    component of the wanted kind has it; when several do and exactly one is built in (shipped with
    genfw), the built-in wins and a one-line note says what else exists.
    """

    def __init__(self) -> None:
        self.kinds: dict[str, str] = dict(BUILTIN_KINDS)
        # Keyed by (kind, name): a plugin may call a preset like its algorithm ("lis.r-separate").
        self._entries: dict[tuple[str, str], Entry] = {}
        self.failed_plugins: dict[str, str] = {}  # filled by the plugin manager
        self.disabled_plugins: set[str] = set()  # filled by the plugin manager
        self.builtin_plugins: set[str] = set()   # plugins shipped with genfw: they win short-name ties
        self.notes: dict[str, str] = {}           # short name -> note, once per name
        self.echo_notes = False                   # the process-wide registry prints notes to stderr

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
        prefix, _, short = entry.name.partition(".")
        if prefix != entry.plugin or not short or "." in short:
            raise NamespaceError(
                f"plugin {entry.plugin!r} cannot register {entry.name!r}: a plugin registers only "
                f"'{entry.plugin}.<name>' with no dot in <name>")
        if not callable(entry.factory):
            raise TypeError(f"plugin {entry.plugin!r}: the factory of {entry.name!r} is not callable "
                            f"({type(entry.factory).__name__}); pass a class or function")
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
        prefix = name.partition(".")[0] if "." in name else ""
        if prefix in self.disabled_plugins:
            msg += f"; plugin {prefix!r} is disabled (GENFW_DISABLE_PLUGINS, GENFW_PLUGINS or -p no:{prefix})"
        elif prefix in self.failed_plugins:
            msg += f"; plugin {prefix!r} failed to load: {self.failed_plugins[prefix]}"
        elif kind is not None and pool:
            msg += f"; known {kind}s: {', '.join(e.name for e in pool)}"
        if self.failed_plugins and prefix not in self.failed_plugins:
            msg += f"; plugins that failed to load: {', '.join(sorted(self.failed_plugins))}"
        raise UnknownComponentError(msg)

    def _find(self, name: str, pool: list[Entry], kind: str | None) -> Entry | None:
        what = f"{kind} " if kind else ""
        exact = [e for e in pool if e.name == name]
        if len(exact) == 1:
            return exact[0]
        if len(exact) > 1:  # one full name in several kinds, looked up without a kind
            listed = ", ".join(f"{e.name} ({e.kind})" for e in exact)
            raise UnknownComponentError(f"name {name!r} is ambiguous: {listed}; use it in a table of one kind")
        if "." in name:
            return None  # `plugin.name` never resolves to another plugin's component
        short = [e for e in pool if e.short == name]
        if len(short) == 1:
            return short[0]
        if len(short) > 1:
            builtin = [e for e in short if e.plugin in self.builtin_plugins]
            if len(builtin) == 1:
                self._note(name, builtin[0], [e for e in short if e is not builtin[0]])
                return builtin[0]
            listed = ", ".join(f"{e.name} ({e.kind})" for e in short)
            raise UnknownComponentError(
                f"{what}name {name!r} is ambiguous: {listed}; use the full name"
                + ("" if kind else " in a table of that kind"))
        return None

    def _note(self, name: str, chosen: Entry, others: list[Entry]) -> None:
        if name in self.notes:
            return
        also = ", ".join(e.name for e in others)
        self.notes[name] = (f"note: {name!r} means the built-in {chosen.name}; {also} also exists "
                            f"(write the full name to use it)")
        if self.echo_notes:
            import sys

            print(self.notes[name], file=sys.stderr)

    def ambiguities(self) -> list[tuple[str, str, list[str], str]]:
        """(short name, kind, full names, what it resolves to or '') for every shared short name."""
        out = []
        for kind in sorted({e.kind for e in self._entries.values()}):
            by_short: dict[str, list[Entry]] = {}
            for e in self.entries(kind):
                by_short.setdefault(e.short, []).append(e)
            for short, found in sorted(by_short.items()):
                if len(found) > 1:
                    builtin = [e.name for e in found if e.plugin in self.builtin_plugins]
                    out.append((short, kind, [e.name for e in found], builtin[0] if len(builtin) == 1 else ""))
        return out

    # --- building ----------------------------------------------------------------------------
    def build(self, spec: Mapping[str, Any] | str, kind: str | None = None,
              defaults: Mapping[str, Any] | None = None, path: str = "") -> Any:
        """Build a component from ``{"type": name, **config}`` (or a bare name).

        ``defaults`` fill config fields the spec leaves out (e.g. the data's image size); keys the
        user wrote always win. Unknown keys are ConfigErrors naming the path and close matches.
        """
        entry, cfg = self.resolve(spec, kind=kind, defaults=defaults, path=path)
        try:
            return entry.factory() if entry.config is None else entry.factory(cfg)
        except GenfwError:
            raise  # already says what is wrong (a nested build names its own slot)
        except Exception as exc:  # noqa: BLE001 - a constructor's failure becomes one line naming the slot
            raise ComponentBuildError(f"{path or kind or entry.kind} ({entry.name}): {_one_line(exc)}") from exc

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
