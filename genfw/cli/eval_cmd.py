"""`genfw eval`: score a trained run.

`--metrics inpaint`: L1 %, L2 %, PSNR, SSIM per hole-ratio bin. `--metrics fid,kid,isc,prc`: seeded
samples against real images through torch-fidelity, with provenance (`genfw.core.fidelity`).
`--metrics msssim`: sample diversity, mean MS-SSIM of random pairs of samples and of real images.
"""
from __future__ import annotations

import json

import click

from genfw.core.errors import GenfwError
from genfw.core.precision import precision_option, prepare_inference

FIDELITY_METRICS = ("fid", "kid", "isc", "prc")
METRIC_GROUPS = ("inpaint", "msssim", *FIDELITY_METRICS)
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


def evaluate_fidelity(algo, dataset, metrics: list[str], count: int, batch_size: int, seed: int,
                      weights: str, device: str) -> dict:
    """torch-fidelity scores of `count` seeded samples of `algo` against the first `count` images of `dataset`."""
    from genfw.core.fidelity import FidelityConfig, FidelityMetric, dataset_images, sampled_images

    cfg = FidelityConfig(metrics=metrics, weights=weights, batch_size=batch_size, seed=seed,
                         device="cuda" if device.startswith("cuda") else "cpu")
    generated = sampled_images(algo, count, batch_size, seed)
    real = dataset_images(dataset, count, batch_size) if any(m != "isc" for m in metrics) else None
    result = FidelityMetric(cfg).compute(generated, real)
    result["provenance"].update({"seed": seed, "checkpoint": getattr(algo, "checkpoint_dir", ""),
                                 "checkpoint_step": getattr(algo, "checkpoint_step", 0)})
    return result


def evaluate_diversity(algo, dataset, count: int, batch_size: int, seed: int, pairs: int = 1000) -> dict:
    """Mean MS-SSIM over random pairs of `count` seeded samples, and of `count` real images."""
    import torch

    from genfw.core.fidelity import dataset_images, sampled_images
    from genfw.core.msssim import diversity, num_scales

    def collect(b) -> torch.Tensor:  # whole batches in [0, 1], channels as the model has them
        return torch.cat([b.make_batch(s, min(b.count, s + b.batch_size)).float().cpu()
                          for s in range(0, b.count, b.batch_size)])

    fake = collect(sampled_images(algo, count, batch_size, seed))
    real = collect(dataset_images(dataset, count, batch_size))
    g = torch.Generator().manual_seed(seed)
    return {"samples": diversity(fake, pairs, g), "real": diversity(real, pairs, g), "pairs": pairs,
            "images": int(fake.shape[0]), "image_size": int(fake.shape[-1]),
            "scales": num_scales(int(fake.shape[-1]))}


def add_commands(group: click.Group) -> None:
    @group.command("eval")
    @click.argument("run", metavar="RUN_OR_CHECKPOINT")
    @click.option("--metrics", default="inpaint", show_default=True,
                  help="Comma-separated: inpaint, msssim, fid, kid, isc, prc.")
    @click.option("--data", "data_path", default=None, help="Image folder to score on (default: the run's data).")
    @click.option("--masks", default=None, metavar="irregular|center|COMPONENT",
                  help="Hole masks (default: irregular, five bins 10-60 %).")
    @click.option("-n", "count", default=200, show_default=True, type=click.IntRange(1), help="Images to score.")
    @click.option("--batch-size", default=8, show_default=True, type=click.IntRange(1))
    @click.option("--seed", default=0, show_default=True, type=int, help="Seed of the masks and samples.")
    @click.option("--weights", default="", metavar="PATH",
                  help="Inception weights for fid/kid/isc/prc (torch-fidelity's .pth; default: genfw's cache, "
                       "then the torch hub cache).")
    @click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
    @precision_option
    def eval_command(run, metrics, data_path, masks, count, batch_size, seed, weights, device, as_json, precision):
        """Score RUN_OR_CHECKPOINT; inpaint: per hole-ratio bin, like the CSA paper's table 2;
        fid, kid, isc, prc: N seeded samples against N real images (the run's data or --data)."""
        from genfw.core.checkpoint import load_run
        from genfw.core.inpaint_metrics import format_table
        from genfw.registry import get_registry

        wanted = [m.strip() for m in metrics.split(",") if m.strip()]
        unknown = [m for m in wanted if m not in METRIC_GROUPS]
        if unknown or not wanted:
            raise GenfwError(f"unknown metric {', '.join(unknown) or metrics!r}; available: {', '.join(METRIC_GROUPS)}")
        fidelity = [m for m in wanted if m in FIDELITY_METRICS]
        if fidelity:  # fail on missing weights before loading the run and drawing samples
            from genfw.core.fidelity import resolve_weights

            resolve_weights(weights)
        algo, cfg = load_run(run, device=device)
        prepare_inference(algo, precision)
        caps = algo.capabilities()
        if "inpaint" in wanted and "inpaint" not in caps:
            raise GenfwError(f"{type(algo).__name__} cannot inpaint, so --metrics inpaint does not apply")
        sampling = fidelity + (["msssim"] if "msssim" in wanted else [])
        if sampling and "sample" not in caps:
            raise GenfwError(f"{type(algo).__name__} cannot sample, so --metrics {','.join(sampling)} does not apply")
        registry = get_registry()
        dataset = _dataset(registry, cfg, data_path, algo.ctx.image_size, algo.ctx.channels)
        out, tables = {}, []
        if "inpaint" in wanted:
            mask_spec = MASK_PRESETS.get(masks or "irregular") or {"type": masks}
            mask_gen = registry.build(mask_spec, kind="mask", path="masks")
            summary = evaluate_inpainting(algo, dataset, mask_gen, count, batch_size, seed).summary()
            summary["masks"] = mask_spec
            summary["images"] = summary["overall"]["count"]
            out["inpaint"] = summary
            tables.append(format_table(summary))
        if fidelity:
            from genfw.core.fidelity import format_table as fidelity_table

            result = evaluate_fidelity(algo, dataset, fidelity, count, batch_size, seed, weights,
                                       str(algo.ctx.device))
            result["provenance"]["data"] = {"type": "core.image-folder", "root": data_path} if data_path \
                else dict(cfg.data)
            out["fidelity"] = result
            tables.append(fidelity_table(result))
        if "msssim" in wanted:
            div = evaluate_diversity(algo, dataset, count, batch_size, seed)
            out["msssim"] = div
            tables.append(f"MS-SSIM of random pairs (lower = more diverse; {div['pairs']} pairs of "
                          f"{div['images']} images, {div['image_size']} px, {div['scales']} scales)\n"
                          f"samples {div['samples']:.4f}\nreal    {div['real']:.4f}")
        if as_json:
            click.echo(json.dumps(out, indent=2, default=str))
        else:
            click.echo("\n\n".join(tables))
