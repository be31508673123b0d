"""`genfw run`: resolve a run config (preset <- file <- --set <- flags), validate, train."""
from __future__ import annotations

import click

from genfw.core.errors import GenfwError


def _positive(ctx, param, value):
    if value is not None and value <= 0:
        raise click.BadParameter("must be > 0")
    return value


@click.command("run")
@click.option("--plugin", metavar="NAME", help="Plugin whose preset to run (see `genfw plugins`).")
@click.option("--preset", metavar="P", help="Preset of that plugin (default: default).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="TOML run config, merged over the preset.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override any key, e.g. train.steps=50.")
@click.option("--data", type=click.Path(), help="Dataset root (image folder unless the dataset takes a root).")
@click.option("--out", type=click.Path(file_okay=False), help="Output directory (default runs/<plugin>-<preset>).")
@click.option("--steps", type=int, callback=_positive, help="Total training steps.")
@click.option("--device", help="auto | cpu | cuda | cuda:N.")
@click.option("--resume", is_flag=True, help="Continue from OUT/checkpoints/latest.")
@click.option("--dry-run", is_flag=True, help="Resolve and validate, print the config, train nothing.")
@click.option("--no-progress", is_flag=True, help="No progress bar (logs still written).")
def run_command(plugin, preset, config_file, overrides, data, out, steps, device, resume, dry_run, no_progress):
    """Train: `genfw run --plugin introvae` runs the plugin's default experiment."""
    from genfw.core.config import build_run_config, dump_toml
    from genfw.registry import get_registry

    reg = get_registry()
    extra: dict = {}
    if steps is not None:
        extra.setdefault("train", {})["steps"] = steps
    if device:
        extra["device"] = device
    cfg, resolved = build_run_config(reg, plugin, preset, config_file, overrides, extra)
    if data:
        from pathlib import Path

        if not Path(data).expanduser().exists():
            raise GenfwError(f"--data: no such file or directory: {data}")
        entry = reg.get(resolved["data"]["type"], kind="dataset")
        if getattr(entry.factory, "embedded", False) or "root" not in resolved["data"]:
            # an embedded dataset reads no files: a path means "train on this folder instead"
            resolved["data"] = {"type": "core.image-folder", "root": data,
                                "image_size": resolved["data"].get("image_size", 64),
                                "channels": resolved["data"].get("channels", 3)}
        else:
            resolved["data"]["root"] = data
        from genfw.core.config import resolve_run

        cfg, resolved = resolve_run(resolved, reg)
    if out:
        resolved["out"] = out
    if not resolved.get("out"):
        resolved["out"] = f"runs/{resolved.get('plugin') or 'run'}-{resolved.get('preset') or 'custom'}"
    from genfw.core.config import RunConfig, structure

    cfg = structure(resolved, RunConfig)
    if dry_run:
        click.echo(dump_toml(resolved), nl=False)
        return
    from genfw.core.trainer import train

    train(cfg, resolved, reg, resume=resume, progress=not no_progress)


def add_commands(group: click.Group) -> None:
    group.add_command(run_command)
