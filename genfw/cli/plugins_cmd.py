"""`genfw plugins`, `genfw components [KIND | show NAME]`, `genfw config show`."""
from __future__ import annotations

import json

import click

from genfw.core.errors import ConfigError, suggest


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*header).rstrip(), fmt.format(*["-" * w for w in widths])]
    lines += [fmt.format(*[str(c) for c in r]).rstrip() for r in rows]
    return "\n".join(lines)


def _problems(state) -> list[str]:
    """What `genfw plugins --check` reports: failures, shadowed names, ambiguous short names."""
    out = [f"plugin {p.name} ({p.dist or '?'}): {p.status}: {p.error}"
           for p in state.plugins if p.failed or p.status == "shadowed"]
    reg = state.registry
    third_party = {e.name for e in reg.entries() if e.plugin not in reg.builtin_plugins}
    for short, kind, names, chosen in reg.ambiguities():
        if kind in ("preset", "benchmark") or not third_party.intersection(names):
            continue  # presets/benchmarks are named with their plugin; built-ins' shared names are by design
        where = (f"resolves to the built-in {chosen} (a note is printed)" if chosen
                 else "ambiguous: configs must write the full name")
        out.append(f"{kind} name {short!r} is provided by {', '.join(names)}: {where}")
    out += [w.removeprefix("warning: ") for w in state.warnings]
    return out


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--check", is_flag=True,
              help="Also list problems (failed, incompatible or shadowed plugins, short names a plugin made "
                   "ambiguous); exit 1 when there are any.")
def plugins_command(as_json: bool, check: bool) -> None:
    """List plugins: name, distribution, version, API range, status, components, hooks, error.

    Exit code 1 when GENFW_STRICT_PLUGINS is set and a plugin failed (or with --check and any problem).
    """
    from genfw.registry import loaded
    from genfw.registry.manager import strict_mode

    state = loaded(allow_failures=True)
    infos = state.plugins
    problems = _problems(state) if check else []
    if as_json:
        click.echo(json.dumps([
            {"name": p.name, "dist": p.dist, "version": p.version, "api": p.api, "builtin": p.builtin,
             "status": p.status, "error": p.error, "warnings": p.warnings, "licence": p.licence,
             "hooks": p.hooks, "components": p.components} for p in infos], indent=2))
    else:
        rows = [[p.name, p.dist or "-", p.version, p.api or ("built-in" if p.builtin else "?"), p.status, sum(map(len, p.components.values())),
                 ", ".join(p.hooks), "; ".join(filter(None, [p.error, *p.warnings]))] for p in infos]
        click.echo(_table(rows, ["plugin", "dist", "version", "api", "status", "components", "hooks", "error"]))
        if check:
            for line in problems:
                click.echo(f"problem: {line}")
            click.echo(f"{len(problems)} problem(s)" if problems else "no problems")
    if (strict_mode() and state.failures) or (check and problems):
        raise click.exceptions.Exit(1)


@click.command("components", context_settings={"ignore_unknown_options": False})
@click.argument("args", nargs=-1, metavar="[KIND | show NAME]")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--slots", "slots", is_flag=True, help="Slots of algorithms/networks: the role each takes, what fits.")
def components_command(args: tuple[str, ...], as_json: bool, slots: bool = False) -> None:
    """List registered components (optionally of one KIND), or `show NAME`: roles, licence,
    options with types, defaults, constraints and help, and a TOML snippet; `--slots` lists slots."""
    from genfw.registry import get_registry

    reg = get_registry()
    if slots:
        from genfw.cli.slots_view import render_slots

        click.echo(render_slots(reg, as_json))
        return
    if args and args[0] == "show":
        if len(args) != 2:
            raise ConfigError("usage: genfw components show NAME (e.g. genfw components show csa.layer)")
        _show(reg, args[1], as_json)
        return
    if len(args) > 1:
        raise ConfigError(f"expected at most one KIND, got {' '.join(args)}; to describe one: genfw components show NAME")
    kind = args[0] if args else None
    if kind is not None and kind not in reg.kinds:
        hint = "; to describe a component: genfw components show NAME" if kind in reg else ""
        raise ConfigError(f"unknown kind {kind!r}{suggest(kind, reg.kinds)}; kinds: {', '.join(sorted(reg.kinds))}{hint}")
    entries = reg.entries(kind)
    if as_json:
        click.echo(json.dumps([{"name": e.name, "kind": e.kind, "plugin": e.plugin, "licence": e.licence,
                                "help": e.help} for e in entries], indent=2))
        return
    rows = [[e.name, e.kind, e.plugin, e.licence or "-", e.help] for e in entries]
    click.echo(_table(rows, ["name", "kind", "plugin", "licence", "help"]) if rows else "no components")


def _show(reg, name: str, as_json: bool) -> None:
    from genfw.core.roles import describe_roles, slots_of
    from genfw.registry import introspect

    matches = [e for e in reg.entries() if e.name == name]
    entry = matches[0] if len(matches) == 1 else None
    if entry is None and len(matches) > 1:  # one name in two kinds (an algorithm and its preset)
        entry = next((e for e in matches if e.kind not in ("preset", "benchmark")), matches[0])
    if entry is None:
        entry = reg.get(name)
    opts = introspect.options(entry)
    if as_json:
        click.echo(json.dumps({
            "name": entry.name, "kind": entry.kind, "plugin": entry.plugin, "roles": list(introspect.roles(entry)),
            "slots": [{"key": sl.key, "role": sl.role, "help": sl.help} for sl in slots_of(entry)],
            "licence": entry.licence, "help": entry.help,
            "options": [{"name": o.name, "type": o.type, "default": o.default, "constraint": o.constraint,
                         "help": o.help} for o in opts],
            "toml": introspect.toml_snippet(entry, reg)}, indent=2, default=str))
        return
    click.echo(f"{entry.name}: {entry.help or '(no help)'}")
    click.echo(f"  kind:    {entry.kind}")
    role_help = {r["role"]: r["help"] for r in describe_roles(introspect.roles(entry))}
    names = introspect.roles(entry)
    click.echo(f"  roles:   {', '.join(names) if names else 'none declared'}")
    for r in names:
        if role_help.get(r):
            click.echo(f"           {r}: {role_help[r]}")
    if getattr(entry, "traits", None):
        click.echo(f"  traits:  {', '.join(f'{k} = {v}' for k, v in entry.traits.items())}")
    for slot in slots_of(entry):
        click.echo(f"  slot:    {slot.key} takes a {slot.role}" + (f" ({slot.help})" if slot.help else ""))
    click.echo(f"  plugin:  {entry.plugin}{' (built-in)' if entry.plugin in reg.builtin_plugins else ''}")
    click.echo(f"  licence: {entry.licence or 'not stated'}")
    if entry.kind == "preset":
        from genfw.core.config import dump_toml

        click.echo("\nrun configuration:\n" + dump_toml(entry.value).rstrip())
        return
    if opts:
        rows = [[o.name, o.type, introspect.fmt_value(o.default), o.constraint or "-", o.help] for o in opts]
        click.echo("\noptions:\n" + _table(rows, ["option", "type", "default", "constraint", "help"]))
    else:
        click.echo("\noptions: none")
    click.echo("\nTOML:\n" + introspect.toml_snippet(entry, reg))


@click.group("config")
def config_group() -> None:
    """Inspect run configurations."""


@config_group.command("show")
@click.option("--plugin", "plugin", metavar="NAME", help="Plugin whose preset to start from.")
@click.option("--preset", metavar="P", help="Preset name (default: default).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="TOML run config.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a key (repeatable).")
@click.option("--plain", is_flag=True, help="No `# default` marks and no nested defaults (plain TOML).")
def config_show(plugin, preset, config_file, overrides, plain) -> None:
    """Print the resolved run config as TOML (it loads back to the same config).

    Values no source wrote are marked `# default`; a nested component's remaining defaults are
    shown as comments (they are filled when it is built, from the data first).
    """
    from genfw.core.config import dump_toml, raw_run_config, resolve_run
    from genfw.registry import get_registry
    from genfw.registry.introspect import annotated_toml

    reg = get_registry()
    raw = raw_run_config(reg, plugin, preset, config_file, overrides)
    _, resolved = resolve_run(raw, reg)
    if plain:
        click.echo(dump_toml(resolved), nl=False)
        return
    notes = [f"# {n}" for n in reg.notes.values()]  # short names a plugin made ambiguous
    text = annotated_toml(resolved, raw, reg)
    click.echo("\n".join(notes + [text]) if notes else text, nl=False)


def add_commands(group: click.Group) -> None:
    group.add_command(plugins_command)
    group.add_command(components_command)
    group.add_command(config_group)
