"""`genfw eval`: score a trained run. `--metrics inpaint`: L1 %, L2 %, PSNR, SSIM per hole-ratio bin."""
from __future__ import annotations

import json

import click

from genfw.core.errors import GenfwError

METRIC_GROUPS = ("inpaint",)
MASK_PRESETS = {
    # five 10 %-wide bins from 10 to 60 %, cycled so every bin gets the same number of images
    "irregular": {"type": "core.irregular", "ratio": [0.1, 0.6], "bins": 5},
    "center": {"type": "core.center", "fraction": 0.5},
}


def _dataset(registry, cfg, data_path: str | None, size: int, channels: int):
    if data_path:
        spec = {"type": "core.image-folder", "root": data_path}
    else:
        spec = dict(cfg.data)
        entry = registry.get(str(spec.get("type", "")), kind="dataset")
        import attrs

        if entry.config is not None and "split" in attrs.fields_dict(entry.config):
            spec["split"] = "test"  # score held-out images when the dataset has splits
        spec["flip"] = False
    spec.update({"image_size": size, "channels": channels})
    return registry.build(spec, kind="dataset", path="data")


def evaluate_inpainting(algo, dataset, mask_gen, count: int, batch_size: int, seed: int):
    """InpaintScores over the first `count` items of `dataset`, masks drawn from `mask_gen` (seeded)."""
    import torch

    from genfw.core.inpaint_metrics import InpaintScores

    n_total = min(count, len(dataset))
    if n_total == 0:
        raise GenfwError("the evaluation dataset is empty")
    generator = torch.Generator().manual_seed(seed)
    scores = InpaintScores()
    size = algo.ctx.image_size
    for start in range(0, n_total, batch_size):
        items = [dataset[i] for i in range(start, min(n_total, start + batch_size))]
        images = torch.stack([it["image"] for it in items])
        masks = mask_gen(len(items), size, size, generator)
        out = algo.inpaint(images, masks)["output"].cpu()
        scores.update(out, images, masks)
    return scores


def add_commands(group: click.Group) -> None:
    @group.command("eval")
    @click.argument("run", metavar="RUN_OR_CHECKPOINT")
    @click.option("--metrics", default="inpaint", show_default=True, help="Comma-separated: inpaint.")
    @click.option("--data", "data_path", default=None, help="Image folder to score on (default: the run's data).")
    @click.option("--masks", default=None, metavar="irregular|center|COMPONENT",
                  help="Hole masks (default: irregular, five bins 10-60 %).")
    @click.option("-n", "count", default=200, show_default=True, type=click.IntRange(1), help="Images to score.")
    @click.option("--batch-size", default=8, show_default=True, type=click.IntRange(1))
    @click.option("--seed", default=0, show_default=True, type=int, help="Seed of the masks.")
    @click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
    def eval_command(run, metrics, data_path, masks, count, batch_size, seed, device, as_json):
        """Score RUN_OR_CHECKPOINT; inpaint: per hole-ratio bin, like the CSA paper's table 2."""
        from genfw.core.checkpoint import load_run
        from genfw.core.inpaint_metrics import format_table
        from genfw.registry import get_registry

        wanted = [m.strip() for m in metrics.split(",") if m.strip()]
        unknown = [m for m in wanted if m not in METRIC_GROUPS]
        if unknown or not wanted:
            raise GenfwError(f"unknown metric {', '.join(unknown) or metrics!r}; available: {', '.join(METRIC_GROUPS)}")
        algo, cfg = load_run(run, device=device)
        if "inpaint" not in algo.capabilities():
            raise GenfwError(f"{type(algo).__name__} cannot inpaint, so --metrics inpaint does not apply")
        registry = get_registry()
        dataset = _dataset(registry, cfg, data_path, algo.ctx.image_size, algo.ctx.channels)
        mask_spec = MASK_PRESETS.get(masks or "irregular") or {"type": masks}
        mask_gen = registry.build(mask_spec, kind="mask", path="masks")
        summary = evaluate_inpainting(algo, dataset, mask_gen, count, batch_size, seed).summary()
        summary["masks"] = mask_spec
        summary["images"] = summary["overall"]["count"]
        if as_json:
            click.echo(json.dumps({"inpaint": summary}, indent=2))
        else:
            click.echo(format_table(summary))
