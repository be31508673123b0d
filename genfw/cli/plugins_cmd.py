"""`genfw plugins`, `genfw components`, `genfw config show`."""
from __future__ import annotations

import json

import click

from genfw.core.errors import ConfigError, suggest


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*header), fmt.format(*["-" * w for w in widths])]
    lines += [fmt.format(*[str(c) for c in r]) for r in rows]
    return "\n".join(lines)


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins_command(as_json: bool) -> None:
    """List plugins: name, version, status, error, hooks, components."""
    from genfw.registry import loaded

    infos = loaded().plugins
    if as_json:
        click.echo(json.dumps([
            {"name": p.name, "version": p.version, "status": p.status, "error": p.error,
             "hooks": p.hooks, "components": p.components} for p in infos], indent=2))
        return
    rows = [[p.name, p.version, p.status, sum(map(len, p.components.values())), ", ".join(p.hooks), p.error] for p in infos]
    click.echo(_table(rows, ["plugin", "version", "status", "components", "hooks", "error"]))


@click.command("components")
@click.argument("kind", required=False)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--slots", "slots", is_flag=True, help="Slots of algorithms/networks: the role each takes, what fits.")
def components_command(kind: str | None, as_json: bool, slots: bool = False) -> None:
    """List registered components, optionally of one KIND (generator, layer, preset, ...)."""
    from genfw.registry import get_registry

    reg = get_registry()
    if slots:
        from genfw.cli.slots_view import render_slots

        click.echo(render_slots(reg, as_json))
        return
    if kind is not None and kind not in reg.kinds:
        raise ConfigError(f"unknown kind {kind!r}{suggest(kind, reg.kinds)}; kinds: {', '.join(sorted(reg.kinds))}")
    entries = reg.entries(kind)
    if as_json:
        click.echo(json.dumps([{"name": e.name, "kind": e.kind, "plugin": e.plugin, "help": e.help}
                               for e in entries], indent=2))
        return
    rows = [[e.name, e.kind, e.plugin, e.help] for e in entries]
    click.echo(_table(rows, ["name", "kind", "plugin", "help"]) if rows else "no components")


@click.group("config")
def config_group() -> None:
    """Inspect run configurations."""


@config_group.command("show")
@click.option("--plugin", "plugin", metavar="NAME", help="Plugin whose preset to start from.")
@click.option("--preset", metavar="P", help="Preset name (default: default).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="TOML run config.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a key (repeatable).")
def config_show(plugin, preset, config_file, overrides) -> None:
    """Print the fully resolved run config as TOML (it loads back to the same config)."""
    from genfw.core.config import build_run_config, dump_toml
    from genfw.registry import get_registry

    _, resolved = build_run_config(get_registry(), plugin, preset, config_file, overrides)
    click.echo(dump_toml(resolved), nl=False)


def add_commands(group: click.Group) -> None:
    group.add_command(plugins_command)
    group.add_command(components_command)
    group.add_command(config_group)
