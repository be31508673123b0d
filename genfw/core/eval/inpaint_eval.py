"""Inpainting evaluation on a fixed mask set: image i of the data gets mask i of the set.

Per image: L1 %, L2 %, PSNR, SSIM (`genfw.core.inpaint_metrics`, on the composited completion:
known pixels from the input, hole pixels from the model, as every inpainting table uses) and
LPIPS; per set and per hole-ratio bin: their means and FID / KID of the completions against the
ground truths of the same images (LaMa's protocol; torch-fidelity features, see `features`).

`fid_on`: "composited" (default) scores images * (1 - M) + output * M; "raw" scores the model's
`output` as returned. The provenance records which, and whether the model's own output already
kept the known pixels (then both are the same images).

Nothing depends on --batch-size: masks come by index from the set, the model runs in eval mode,
and every score is a function of per-image values or of the whole set.
"""
from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path

import attrs
import numpy as np
import torch

from genfw.core.errors import GenfwError
from genfw.core.eval.mask_sets import MaskSet, bin_label, bin_of

PIXEL_METRICS = ("l1", "l2", "psnr", "ssim")
METRICS = (*PIXEL_METRICS, "lpips", "fid", "kid", "ids")   # ids: P-IDS and U-IDS (overall only)
LOWER_IS_BETTER = {"l1": True, "l2": True, "psnr": False, "ssim": False, "lpips": True, "fid": True, "kid": True,
                   "pids": False, "uids": False}


@attrs.define(kw_only=True)
class InpaintEvalOptions:
    count: int = 200
    batch_size: int = 8
    metrics: list[str] = attrs.field(factory=lambda: list(PIXEL_METRICS))
    fid_on: str = attrs.field(default="composited", validator=attrs.validators.in_(("composited", "raw")))
    weights: str = ""           # Inception weights (fid, kid)
    vgg_weights: str = ""       # LPIPS trunk (vgg16-imagenet) and heads (lpips-vgg), "" = asset resolution
    lpips_weights: str = ""
    seed: int = 0               # KID subsets
    device: str = "cpu"
    progress: bool = True
    keep_completions: bool = False


def data_conditions(items: list[dict], images: torch.Tensor) -> tuple[list[int], dict]:
    """Default conditions: every item kept; landmarks / attributes passed when the data has them."""
    out = {}
    for key in ("landmarks", "attributes"):
        if all(key in it for it in items):
            out[key] = torch.stack([torch.as_tensor(it[key]) for it in items])
    return list(range(len(items))), out


def evaluate_inpainting(algo, dataset, mask_set: MaskSet, opts: InpaintEvalOptions, workdir: Path,
                        conditions=None) -> dict:
    """`conditions(items, images) -> (kept positions, inpaint kwargs)`: what a conditioned model
    (FOAM: landmarks, attributes) gets; images it drops (no face detected) are left out and counted.
    Image i of the data always gets mask i of the set, whatever is dropped around it."""
    from tqdm import tqdm

    from genfw.core.eval.features import PngImages, save_uint8_png, to_uint8_rgb
    from genfw.core.inpaint_metrics import per_image

    n = min(opts.count, len(dataset))
    if n == 0:
        raise GenfwError("the evaluation dataset is empty")
    size = int(algo.ctx.image_size)
    if mask_set.size != size:
        raise GenfwError(f"mask set {mask_set.name} is {mask_set.size} px but the model works at {size} px")
    lpips_net = None
    if "lpips" in opts.metrics:
        from genfw.core.eval.lpips import LPIPS

        lpips_net = LPIPS(vgg_path=opts.vgg_weights, heads_path=opts.lpips_weights).to(algo.ctx.device)
    want_fid = [m for m in ("fid", "kid") if m in opts.metrics]
    features = None
    if want_fid or "ids" in opts.metrics:  # fail on missing Inception weights before the long loop
        from genfw.core.eval.features import InceptionFeatures

        features = InceptionFeatures(opts.weights, batch_size=opts.batch_size, device=opts.device,
                                     progress=opts.progress)
    workdir = Path(workdir)
    tmp = Path(tempfile.mkdtemp(prefix="genfw-eval-"))  # real images as PNG (and completions unless kept)
    comp_dir = workdir / "completions" if opts.keep_completions else tmp / "completions"
    comp_dir.mkdir(parents=True, exist_ok=True)
    (tmp / "real").mkdir()
    values: dict[str, list[float]] = {m: [] for m in PIXEL_METRICS}
    if lpips_net is not None:
        values["lpips"] = []
    ratios: list[float] = []
    indices: list[int] = []
    conditions = conditions or data_conditions
    real_hash = hashlib.sha256()  # same bytes as features.images_sha256, built as the images stream by
    files: list[Path] = []
    real_files: list[Path] = []
    known_kept, known_err = True, 0.0
    try:
        bar = tqdm(total=n, desc=f"inpaint {mask_set.name}", unit="img", disable=not opts.progress, leave=False)
        for start in range(0, n, opts.batch_size):
            stop = min(n, start + opts.batch_size)
            items = [dataset[i] for i in range(start, stop)]
            images = torch.stack([it["image"] for it in items]).float()
            masks = mask_set.masks(start, stop)
            keep, kwargs = conditions(items, images)
            bar.update(stop - start)
            if not keep:
                continue
            kept = [start + k for k in keep]
            images, masks = images[keep], masks[keep]
            indices.extend(kept)
            res = algo.inpaint(images, masks, **kwargs)
            out = res["output"].detach().float().cpu().clamp(0, 1)
            composite = images * (1 - masks) + out * masks
            err = float(((out - images).abs() * (1 - masks)).max())
            known_err = max(known_err, err)
            known_kept = known_kept and err <= 1e-6
            scored = composite
            for m, v in per_image(scored, images).items():
                values[m].extend(v.tolist())
            if lpips_net is not None:
                dev = algo.ctx.device
                with torch.no_grad():
                    values["lpips"].extend(lpips_net(scored.to(dev), images.to(dev)).float().cpu().tolist())
            ratios.extend(masks.flatten(1).mean(1).tolist())
            fid_images = to_uint8_rgb(composite if opts.fid_on == "composited" else out)
            for j, img in zip(kept, fid_images):
                p = comp_dir / f"{j:05d}.png"
                save_uint8_png(img, p)
                files.append(p)
            for j, img in zip(kept, to_uint8_rgb(images)):
                real_hash.update(np.array(img.shape[-2:], dtype="<u4").tobytes())
                real_hash.update(img.contiguous().numpy().tobytes())
                p = tmp / "real" / f"{j:05d}.png"
                save_uint8_png(img, p)
                real_files.append(p)
        bar.close()
        if not indices:
            raise GenfwError("no image was scored (every image was left out by the conditioning)")
        bins = [bin_of(r, mask_set.bins) for r in ratios]
        result = _summary(values, ratios, bins, mask_set, indices)
        result["provenance_extra"] = {"known_region_kept_by_model": known_kept,
                                      "known_region_max_abs_change": known_err}
        if lpips_net is not None:
            result["lpips_provenance"] = lpips_net.provenance()
        if features is not None:
            from genfw.core.eval import features as F

            real_sha = real_hash.hexdigest()
            fake = features.extract(PngImages(files), desc=f"Inception features ({opts.fid_on} completions)")
            real, ref_info = features.reference(PngImages(real_files), real_sha)
            overall, used = F.scores(fake, real, want_fid, seed=opts.seed) if want_fid else ({}, {})
            _merge_fid(result["overall"], overall)
            if "ids" in opts.metrics:
                from genfw.core.eval.ids import pids_uids

                result["overall"].update(pids_uids(real["2048"], fake["2048"]))
            for b, (lo, hi) in enumerate(mask_set.bins):
                idx = [i for i, k in enumerate(bins) if k == b]
                if not want_fid:
                    break
                if len(idx) == len(bins):  # every image in this bin: the overall scores are its scores
                    _merge_fid(result["bins"][bin_label(lo, hi)], overall)
                elif len(idx) >= 2:
                    s, _ = F.scores(F.subset(fake, idx), F.subset(real, idx), want_fid, seed=opts.seed)
                    _merge_fid(result["bins"][bin_label(lo, hi)], s)
            result["fidelity_provenance"] = {**features.provenance, **used, "reference": ref_info,
                                             "fid_on": opts.fid_on}
        result["completions"] = [str(p) for p in files] if opts.keep_completions else []
        result["_files"], result["_real_files"] = files, real_files  # for the pictures; not written to JSON
        result["_tmp"] = tmp
        return result
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def cleanup(result: dict) -> None:
    """Remove the temporary PNGs (real images, unkept completions) once the pictures are drawn."""
    shutil.rmtree(result["_tmp"], ignore_errors=True)


def _merge_fid(row: dict, s: dict) -> None:
    if "fid" in s:
        row["fid"] = s["fid"]["value"]
    if "kid" in s:
        row["kid"], row["kid_std"] = s["kid"]["mean"], s["kid"]["std"]


def _summary(values: dict[str, list[float]], ratios: list[float], bins: list[int], mask_set: MaskSet,
             indices: list[int]) -> dict:
    def mean_of(keep: list[int]) -> dict:
        row: dict = {"count": len(keep)}
        for m, vals in values.items():
            row[m] = float(np.mean([vals[i] for i in keep])) if keep else float("nan")
        row["hole_ratio"] = float(np.mean([ratios[i] for i in keep])) if keep else float("nan")
        return row

    everything = list(range(len(ratios)))
    per_bin = {bin_label(lo, hi): mean_of([i for i in everything if bins[i] == b])
               for b, (lo, hi) in enumerate(mask_set.bins)}
    outside = [i for i in everything if bins[i] < 0]
    out = {"overall": mean_of(everything), "bins": per_bin,
           "per_image": {"index": indices, "hole_ratio": ratios,
                         "bin": [bin_label(*mask_set.bins[b]) if b >= 0 else "" for b in bins], **values}}
    if outside:
        out["outside_bins"] = len(outside)
    return out
