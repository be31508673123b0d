"""`genfw run`: resolve a run config (preset <- file <- --set <- --data <- flags), validate, train.

`--resume` reads OUT/config.toml, so `genfw run --resume --out DIR` needs nothing else; a plugin,
preset or config that does not match the saved run is refused, naming the run's own.
"""
from __future__ import annotations

from pathlib import Path

import click

from genfw.core.errors import GenfwError


def _positive(ctx, param, value):
    if value is not None and value <= 0:
        raise click.BadParameter("must be > 0")
    return value


def default_out(plugin: str | None, preset: str | None) -> str:
    return f"runs/{plugin or 'run'}-{preset or 'custom'}"


def _saved_config(out: str | None, plugin: str | None, preset: str | None, config_file: str | None) -> Path | None:
    """OUT/config.toml of the run to resume (OUT from --out, or the default for --plugin/--preset)."""
    if out is None and not plugin and not config_file:
        raise GenfwError("--resume needs the run: --out DIR (or --plugin NAME for runs/NAME-default)")
    if out is None and plugin:
        out = default_out(plugin, preset or "default")
    if out is None:
        return None
    path = Path(out).expanduser() / "config.toml"
    if not path.is_file() and not plugin and not config_file:
        raise GenfwError(f"{out} has no config.toml, so it is not a genfw run to resume; check --out, "
                         "or start it with --plugin NAME / --config FILE")
    return path if path.is_file() else None


def _check_resume_matches(saved: dict, saved_path: Path, plugin, preset, file_data: dict) -> None:
    """A --plugin / --preset / --config that names another experiment than the saved run: one line."""
    from genfw.core.trainer import resume_command

    out = saved_path.parent
    want_type = str((file_data.get("algorithm") or {}).get("type", ""))
    have_type = str((saved.get("algorithm") or {}).get("type", ""))
    bad = (plugin and saved.get("plugin") and plugin != saved["plugin"]) \
        or (preset and saved.get("preset") and preset != saved["preset"]) \
        or (want_type and have_type and want_type not in (have_type, have_type.split(".", 1)[-1]))
    if bad:
        who = f"plugin {saved.get('plugin')!r}, preset {saved.get('preset')!r}" if saved.get("plugin") \
            else f"algorithm {have_type!r}"
        raise GenfwError(f"{out} is a run of {who}; resume it with `{resume_command(out)}` "
                         f"(its config: {saved_path})")


def build_raw(reg, plugin, preset, config_file, overrides, data, out, resume) -> tuple[dict, str]:
    """The raw run mapping and a note about --data (empty when nothing needs saying)."""
    from genfw.core.config import apply_overrides, deep_merge, load_toml, preset_config

    file_data = load_toml(config_file) if config_file else {}
    saved_path = _saved_config(out, plugin, preset, config_file) if resume else None
    if saved_path is not None:
        raw = load_toml(saved_path)
        _check_resume_matches(raw, saved_path, plugin, preset, file_data)
        raw = deep_merge(raw, {k: v for k, v in file_data.items() if k not in ("plugin", "preset")})
    else:
        plugin = plugin or file_data.get("plugin")
        if plugin:
            raw = preset_config(reg, plugin, preset or file_data.get("preset") or "default")
        elif not config_file:
            raise GenfwError("say what to run: --plugin NAME (see `genfw plugins`) or --config FILE")
        else:
            raw = {}
        raw = deep_merge(raw, file_data)
    raw = apply_overrides(raw, list(overrides))
    note = ""
    if data:
        from genfw.core.data.detect import data_spec

        raw["data"], note = data_spec(data, raw.get("data"), reg)
    return raw, note


@click.command("run")
@click.option("--plugin", metavar="NAME", help="Plugin whose preset to run (see `genfw plugins`).")
@click.option("--preset", metavar="P", help="Preset of that plugin (default: default).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="TOML run config, merged over the preset.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override any key, e.g. train.steps=50.")
@click.option("--data", help="Your data: an image folder, a CelebA / CelebA-HQ root (detected by its files), "
              "a .toml file with a [data] table or an inline table '{type = ..., root = ...}'.")
@click.option("--out", type=click.Path(file_okay=False), help="Output directory (default runs/<plugin>-<preset>).")
@click.option("--steps", type=int, callback=_positive, help="Total training steps.")
@click.option("--device", help="auto | cpu | cuda | cuda:N.")
@click.option("--resume", is_flag=True, help="Continue OUT from its checkpoints/latest with OUT/config.toml.")
@click.option("--dry-run", is_flag=True, help="Resolve and validate, print the config, train nothing.")
@click.option("--no-progress", is_flag=True, help="No progress bar (logs still written).")
def run_command(plugin, preset, config_file, overrides, data, out, steps, device, resume, dry_run, no_progress):
    """Train: `genfw run --plugin introvae` runs the plugin's default experiment."""
    from genfw.core.config import RunConfig, deep_merge, dump_toml, resolve_run, structure
    from genfw.registry import get_registry

    reg = get_registry()
    raw, note = build_raw(reg, plugin, preset, config_file, overrides, data, out, resume)
    extra: dict = {}
    if steps is not None:
        extra.setdefault("train", {})["steps"] = steps
    if device:
        extra["device"] = device
    if out:
        extra["out"] = out
    raw = deep_merge(raw, extra)
    cfg, resolved = resolve_run(raw, reg)
    if not resolved.get("out"):
        resolved["out"] = default_out(resolved.get("plugin"), resolved.get("preset"))
    cfg = structure(resolved, RunConfig)
    if note:
        click.echo(f"note: {note}", err=True)
    if dry_run:
        click.echo(dump_toml(resolved), nl=False)
        return
    from genfw.core.trainer import TrainingInterrupted, train

    try:
        train(cfg, resolved, reg, resume=resume, progress=not no_progress)
    except TrainingInterrupted as exc:  # the trainer saved and printed the resume command
        raise SystemExit(exc.exit_code) from None


def add_commands(group: click.Group) -> None:
    group.add_command(run_command)
