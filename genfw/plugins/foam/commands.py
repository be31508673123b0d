"""`genfw foam ...` commands (added through the plugin's register_commands hook).

`genfw foam filters RUN -o DIR`: the learned read / write filters of every grown level on samples of
the run's own data and masks, as one image grid (the paper's Fig. 1), and each level's mean
spectral frequency, so one can check the paper's claim that attention moves from low to high
frequencies as the resolution grows.
"""
from __future__ import annotations

import json
from pathlib import Path

import click

from genfw import GenfwError


def _samples(cfg, registry, n: int, seed: int):
    import torch

    if not cfg.mask:
        raise GenfwError("the run has no [mask] table; FOAM filters need holes")
    ds = registry.build(cfg.data, kind="dataset", path="data")
    if len(ds) == 0:
        raise GenfwError("the run's dataset is empty here")
    items = [ds[i % len(ds)] for i in range(n)]
    batch = {k: torch.stack([it[k] for it in items]) for k in items[0] if torch.is_tensor(items[0][k])}
    h, w = batch["image"].shape[-2:]
    batch["mask"] = registry.build(cfg.mask, kind="mask", path="mask")(n, h, w, generator=torch.Generator().manual_seed(seed))
    return batch


def filter_report(algo, batch: dict) -> tuple[list[dict], "torch.Tensor"]:  # noqa: F821
    """Per-level frequency records and the grid rows (input, output, then F_read / F_write per level)."""
    import torch
    import torch.nn.functional as F

    from genfw.plugins.foam.filters import mean_frequency

    dev = algo.ctx.device
    images = batch["image"].to(dev)
    hole = (batch["mask"].to(dev) > 0.5).to(images.dtype)
    lm, at = batch.get("landmarks"), batch.get("attributes")
    filters = algo.native_filters(images, hole, lm, at)
    if not filters:
        raise GenfwError("this run has not grown past 4x4 yet: FOAM filters exist from the 8x8 level on")
    records, rows = [], []
    res = algo.inpaint(images, hole, lm, at)
    rows += [images * (1 - hole) + 0.5 * hole, res["output"]]
    for level, (fr, fw) in sorted(filters.items()):
        size = fr.shape[-1]
        records.append({"level": level, "size": size,
                        "read_mean_frequency": round(mean_frequency(fr), 4),
                        "write_mean_frequency": round(mean_frequency(fw), 4),
                        "read_mean": round(float(fr.mean()), 4), "write_mean": round(float(fw.mean()), 4)})
        for f in (fr, fw):
            rows.append(F.interpolate(f, size=images.shape[-2:], mode="nearest").expand(-1, images.shape[1], -1, -1))
    return records, torch.cat([r.float().cpu() for r in rows])


@click.group("foam")
def foam_group() -> None:
    """FOAM tools: look at the learned read / write filters."""


@foam_group.command("filters")
@click.argument("run", metavar="RUN_OR_CHECKPOINT")
@click.option("-o", "--out", "out", required=True, help="Output directory (filters.png, filters.json).")
@click.option("-n", "count", default=8, show_default=True, type=click.IntRange(1, 64), help="Samples.")
@click.option("--seed", default=0, show_default=True, help="Seed of the masks.")
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N")
def filters_cmd(run, out, count, seed, device):
    """Write each grown level's F_read / F_write as an image grid and log their mean spectral frequency.

    Grid rows: masked input, completion, then per level (8 px up) F_read and F_write, nearest
    up-sampled to the image size; white = 1 (high branch / new content)."""
    from genfw.core.checkpoint import load_run
    from genfw.core.images import save_grid
    from genfw.plugins.foam.algorithm import FOAMAlgorithm
    from genfw.registry import get_registry

    registry = get_registry()
    algo, cfg = load_run(run, device=device, registry=registry)
    if not isinstance(algo, FOAMAlgorithm):
        raise GenfwError(f"{run} is a {type(algo).__name__} run; `genfw foam filters` needs a foam.algorithm run")
    records, grid = filter_report(algo, _samples(cfg, registry, count, seed))
    dest = Path(out).expanduser()
    dest.mkdir(parents=True, exist_ok=True)
    save_grid(grid, dest / "filters.png", nrow=count)
    tmp = dest / "filters.json.tmp"
    tmp.write_text(json.dumps({"run": str(run), "samples": count, "levels": records}, indent=1))
    tmp.replace(dest / "filters.json")
    for rec in records:
        click.echo(json.dumps(rec))
    click.echo(f"wrote {dest / 'filters.png'} and {dest / 'filters.json'}")
