"""`genfw eval`: score a trained run.

`--metrics inpaint`: L1 %, L2 %, PSNR, SSIM per hole-ratio bin. `--metrics fid,kid,isc,prc`: seeded
samples against real images through torch-fidelity, with provenance (`genfw.core.fidelity`).
`--metrics msssim`: sample diversity, mean MS-SSIM of random pairs of samples and of real images.
"""
from __future__ import annotations

import json

import click

from genfw.cli.eval_report import report_options, run_report
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
    from genfw.cli.eval_report import eval_dataset

    return eval_dataset(registry, cfg, data_path, size, channels)[0]


def _takes(algo, name: str) -> bool:
    import inspect

    return name in inspect.signature(algo.inpaint).parameters


DETECT_SIZE = 256  # landmark detectors miss faces much under ~80 px; unit coordinates do not care


def _for_detector(images):
    import torch.nn.functional as F

    x = images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images
    if max(x.shape[-2:]) < DETECT_SIZE:
        x = F.interpolate(x, scale_factor=DETECT_SIZE / max(x.shape[-2:]), mode="bilinear", align_corners=False)
    return x.clamp(0, 1)


class Conditions:
    """The landmarks / attributes a conditioned inpainting model (FOAM) is scored with.

    Landmarks come from the data when it has them, else from a named detector backend (images
    without a detected face are left out and counted); attributes come from the data, matched by
    name (the model's attributes the data lacks are 0), else all 0.
    """

    def __init__(self, algo, dataset, backend: str | None = None, detector_weights: str = "",
                 device: str = "cpu") -> None:
        cfg = getattr(algo, "cfg", None)
        self.landmarks = bool(algo.ctx.has_landmarks and getattr(cfg, "use_landmarks", True)
                              and _takes(algo, "landmarks"))
        self.count = int(algo.ctx.num_attributes) if getattr(cfg, "use_attributes", True) and _takes(algo, "attributes") else 0
        self.names = list(algo.ctx.attribute_names)
        self.data_names = list(getattr(dataset, "attribute_names", ()) or ())
        self.detector = None
        self.no_face = 0
        self.landmark_source = ""
        if self.landmarks:
            if getattr(dataset, "has_landmarks", False):
                self.landmark_source = "data"
            elif backend:
                from genfw.cli.landmarks_cmd import build_detector

                self.detector = build_detector(backend, detector_weights, device)
                self.landmark_source = f"detected ({backend})"
            else:
                raise GenfwError("this model is conditioned on 68-point landmarks and the evaluation data has none: "
                                 "add --landmarks-backend dlib (or fan), or use data with landmarks "
                                 "(a landmarks68.txt in the data root, core.synthetic-faces)")
        from_data = bool(set(self.names) & set(self.data_names)) or (
            not self.data_names and int(getattr(dataset, "num_attributes", 0) or 0) == self.count)
        self.attribute_source = ("data" if from_data else "0") if self.count else ""

    def _attributes(self, items, n: int):
        import torch

        out = torch.zeros(n, self.count)
        if not items or "attributes" not in items[0]:
            return out
        have = torch.stack([it["attributes"] for it in items]).float()
        if self.data_names and self.names:
            for j, name in enumerate(self.names):
                if name in self.data_names:
                    out[:, j] = have[:, self.data_names.index(name)]
        elif have.shape[1] == self.count:
            out = have
        return out

    def __call__(self, items: list, images):
        """(kept item positions, keyword arguments for algo.inpaint)."""
        import torch

        kwargs, keep = {}, list(range(len(items)))
        if self.landmarks:
            if self.detector is None:
                lm = torch.stack([it["landmarks"] for it in items])
            else:
                lm, found = self.detector(_for_detector(images))
                keep = [i for i in keep if bool(found[i])]
                self.no_face += len(items) - len(keep)
                lm = lm[keep]
            kwargs["landmarks"] = lm
        if self.count:
            kwargs["attributes"] = self._attributes([items[i] for i in keep], len(keep))
        return keep, kwargs

    def provenance(self) -> dict:
        out = {}
        if self.landmarks:
            out["landmarks"] = self.landmark_source
            if self.detector is not None:
                out["no_face"] = self.no_face
        if self.count:
            out["attributes"] = self.attribute_source
        return out


def evaluate_inpainting(algo, dataset, mask_gen, count: int, batch_size: int, seed: int,
                        conditions: Conditions | None = None, outputs: str | None = None):
    """InpaintScores over the first `count` items of `dataset`; mask i is drawn from (seed, i), so the
    masks, bins and scores do not depend on `batch_size`. `outputs`: a folder for per-image files."""
    import torch
    from tqdm import tqdm

    from genfw.core.inpaint_metrics import InpaintScores
    from genfw.core.masks import draw

    n_total = min(count, len(dataset))
    if n_total == 0:
        raise GenfwError("the evaluation dataset is empty")
    scores = InpaintScores()
    size = algo.ctx.image_size
    with tqdm(total=n_total, unit="img", desc="inpaint", disable=None, leave=False) as bar:
        for start in range(0, n_total, batch_size):
            items = [dataset[i] for i in range(start, min(n_total, start + batch_size))]
            images = torch.stack([it["image"] for it in items])
            masks = draw(mask_gen, len(items), size, size, seed=seed, start=start)
            keep, kwargs = conditions(items, images) if conditions is not None else (list(range(len(items))), {})
            bar.update(len(items))
            if not keep:
                continue
            images, masks = images[keep], masks[keep]
            out = algo.inpaint(images, masks, **kwargs)["output"].cpu()
            scores.update(out, images, masks)
            if outputs:
                save_outputs(outputs, [start + i for i in keep], out, masks)
    return scores


def save_outputs(folder: str, indices: list[int], outputs, masks) -> None:
    """<index>.png (the completion, known pixels pasted back) and <index>-mask.png per image."""
    from pathlib import Path

    from genfw.core.images import save_image

    root = Path(folder).expanduser()
    for i, out, m in zip(indices, outputs, masks):
        save_image(out, root / f"{i:05d}.png")
        save_image(m, root / f"{i:05d}-mask.png")


def json_safe(obj):
    """NaN / inf -> null (JSON has neither), recursively."""
    import math

    if getattr(obj, "ndim", None) == 0 and hasattr(obj, "item"):  # numpy / torch scalars
        obj = obj.item()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


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
    @click.option("--seed", default=0, show_default=True, type=click.IntRange(0, 2**62 - 1),
                  help="Seed of the masks and samples.")
    @click.option("--weights", default="", metavar="PATH",
                  help="Inception weights for fid/kid/isc/prc (torch-fidelity's .pth; default: genfw's cache, "
                       "then the torch hub cache).")
    @click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N")
    @click.option("--landmarks-backend", type=click.Choice(("dlib", "fan")), default=None,
                  help="Landmark-conditioned models on data without landmarks: detect them with this backend.")
    @click.option("--detector-weights", default="", help="Explicit landmark model file for the backend.")
    @click.option("--outputs", "outputs_dir", default=None, metavar="DIR",
                  help="inpaint: also write each completion and its mask to DIR (00000.png, 00000-mask.png, ...).")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
    @report_options
    @precision_option
    def eval_command(run, metrics, data_path, masks, count, batch_size, seed, weights, device, landmarks_backend,
                     detector_weights, outputs_dir, as_json, precision, **report):
        """Score RUN_OR_CHECKPOINT; inpaint: per hole-ratio bin, like the CSA paper's table 2;
        fid, kid, isc, prc: N seeded samples against N real images (the run's data or --data).
        --report DIR: a results folder on a fixed mask set, optionally as a paper table (--table)."""
        if report["report"] or report["task"] or report["mask_set"] or report["table"]:
            defaulted = click.get_current_context().get_parameter_source("metrics").name == "DEFAULT"
            return run_report(run=run, metrics=metrics, metrics_defaulted=defaulted, data_path=data_path,
                              masks=masks, count=count, batch_size=batch_size, seed=seed, weights=weights,
                              device=device, as_json=as_json, landmarks_backend=landmarks_backend,
                              detector_weights=detector_weights, outputs_dir=outputs_dir, precision=precision,
                              **report)
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
            conditions = Conditions(algo, dataset, landmarks_backend, detector_weights, str(algo.ctx.device))
            summary = evaluate_inpainting(algo, dataset, mask_gen, count, batch_size, seed, conditions,
                                          outputs_dir).summary()
            summary["masks"] = mask_spec
            summary["images"] = summary["overall"]["count"]
            summary.update(conditions.provenance())
            if outputs_dir:
                summary["outputs"] = outputs_dir
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
            click.echo(json.dumps(json_safe(out), indent=2, default=str, allow_nan=False))
        else:
            click.echo("\n\n".join(tables))
