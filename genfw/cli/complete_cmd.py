"""`genfw complete`: test-time completion for landmark / attribute conditioned models (FOAM).

The paper gets test-time landmarks in one of two ways, both offered here, plus a file:
  --landmarks-from SOURCE  detected on a "source actor" image (the structure is transferred),
  --coarse COARSE_RUN      detected on a coarse completion of the same image by another
                           inpainting run (e.g. a `csa` run),
  --landmarks FILE.json    given directly (68 x 2, unit or pixel coordinates of IMAGE).
Any image size, as `genfw inpaint`: the model runs at its training size and only hole pixels are
pasted back, so the known region of the result is the input, bit for bit. Attributes not named in
--attributes are 0 (so the option may be left out).

Batch use as `genfw inpaint`: IMAGE a folder, MASK a folder (matched by name) or one file, OUT a
folder. --landmarks-from SOURCE then gives every image the source's structure; --coarse detects
per image; --landmarks takes a `genfw landmarks --json` list (records matched by image name).
"""
from __future__ import annotations

import inspect
import json

import click

from genfw.core.errors import GenfwError


def parse_attributes(text: str, names: list[str], count: int):
    """"Smiling=1,Male=0" -> 1 x count tensor in {0, 1}; attributes not named are 0."""
    import torch

    values = torch.zeros(1, count)
    for item in (p.strip() for p in text.split(",") if p.strip()):
        key, sep, val = item.partition("=")
        key, val = key.strip(), val.strip()
        if not sep or val not in ("0", "1"):
            raise GenfwError(f"--attributes expects NAME=0|1 pairs like Smiling=1,Male=0, got {item!r}")
        if key in names:
            idx = names.index(key)
        elif key.isdigit() and int(key) < count:
            idx = int(key)
        else:
            known = ", ".join(names) if names else f"indices 0..{count - 1}"
            raise GenfwError(f"unknown attribute {key!r}; this model's attributes: {known}")
        values[0, idx] = float(val)
    return values


def _takes_landmarks(algo) -> bool:
    return "landmarks" in inspect.signature(algo.inpaint).parameters


class Conditioned:
    """The algorithm with fixed landmarks / attributes, as `inpaint_image` calls it."""

    def __init__(self, algo, **conditions) -> None:
        self.algo, self.ctx, self.conditions = algo, algo.ctx, conditions

    def inpaint(self, images, masks, **options):
        return self.algo.inpaint(images, masks, **self.conditions, **options)


def _landmarks_for(records, image_path, w: int, h: int):
    """The landmark record of one image from `genfw landmarks --json` output (one record or a list)."""
    import torch

    from genfw.core.landmarks import pixels_to_unit

    if isinstance(records, dict):
        records = [records]
    from pathlib import Path

    for rec in records:
        name = Path(str(rec.get("image", ""))).name
        if len(records) == 1 or name in (image_path.name,) or Path(name).stem == image_path.stem:
            pts = rec.get("landmarks")
            if pts is not None:
                return torch.tensor(pts, dtype=torch.float32)[None]
            return torch.from_numpy(pixels_to_unit(rec["pixels"], w, h)).float()[None]
    raise GenfwError(f"--landmarks has no record for {image_path.name}")


def add_commands(group: click.Group) -> None:
    @group.command("complete")
    @click.argument("run", metavar="RUN_OR_CHECKPOINT")
    @click.argument("image")
    @click.argument("mask")
    @click.option("-o", "--out", "out", required=True, help="Output image (PNG); a folder when IMAGE is a folder.")
    @click.option("--landmarks-from", "source", default=None, help="Source actor image to take landmarks from.")
    @click.option("--landmarks", "lm_file", default=None, help="Landmarks JSON (68 x 2; unit or IMAGE pixels).")
    @click.option("--coarse", default=None, metavar="COARSE_RUN",
                  help="Inpainting run whose completion of IMAGE the landmarks are detected on.")
    @click.option("--backend", type=click.Choice(("dlib", "fan")), default="dlib", show_default=True,
                  help="Landmark detector for --landmarks-from / --coarse.")
    @click.option("--detector-weights", default="", help="Explicit landmark model file for the backend.")
    @click.option("--attributes", "attributes", default="",
                  help="Attributes like Smiling=1,Male=0 (conditional models; unnamed ones are 0).")
    @click.option("--landmarks-out", default=None, help="Also write the landmarks used as JSON.")
    @click.option("--mask-polarity", type=click.Choice(("auto", "white-hole", "black-hole")), default="auto",
                  show_default=True,
                  help="auto: white = hole, over 50 % hole refused as inverted; white-hole / black-hole: trust it.")
    @click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N")
    def complete(run, image, mask, out, source, lm_file, coarse, backend, detector_weights, attributes,
                 landmarks_out, mask_polarity, device):
        """Complete the holes of IMAGE (white in MASK) with structure from landmarks and chosen attributes."""
        from pathlib import Path

        from genfw.cli.inpaint_cmd import batch_mask, batch_pairs, inpaint_image, progress
        from genfw.cli.landmarks_cmd import build_detector, detect_one, landmarks_record
        from genfw.core.checkpoint import load_run
        from genfw.core.images import read_image, save_image
        from genfw.core.masks import load_mask

        given = [n for n, v in (("--landmarks-from", source), ("--landmarks", lm_file), ("--coarse", coarse)) if v]
        if len(given) > 1:
            raise GenfwError(f"give one landmark source, not {' and '.join(given)}")
        pairs = batch_pairs(image, mask, out)
        batch = Path(image).expanduser().is_dir()
        algo, _ = load_run(run, device=device)
        if "inpaint" not in algo.capabilities():
            raise GenfwError(f"{type(algo).__name__} cannot inpaint; `genfw complete` needs an inpainting run")

        needs_lm = algo.ctx.has_landmarks and bool(getattr(algo.cfg, "use_landmarks", True)) and _takes_landmarks(algo)
        if given and not _takes_landmarks(algo):
            raise GenfwError(f"{type(algo).__name__} is not conditioned on landmarks; use `genfw inpaint`")
        if not given and needs_lm:
            raise GenfwError("this model is conditioned on landmarks: give --landmarks-from SOURCE_IMAGE, "
                             "--landmarks FILE.json or --coarse COARSE_RUN")
        count = int(algo.ctx.num_attributes) if getattr(algo.cfg, "use_attributes", True) else 0
        if attributes and not count:
            raise GenfwError("this model is not conditioned on attributes; drop --attributes")
        attr = parse_attributes(attributes, list(algo.ctx.attribute_names), count) if count else None

        detector = build_detector(backend, detector_weights, device) if (source or coarse) else None
        records = None
        if lm_file:
            p = Path(lm_file).expanduser()
            if not p.is_file():
                raise GenfwError(f"landmarks file not found: {p}")
            try:
                records = json.loads(p.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise GenfwError(f"{p} is not JSON: {exc}") from None
        source_lm = detect_one(detector, read_image(source, channels=3), source)[None] if source else None
        coarse_algo = None
        if coarse:
            coarse_algo, _ = load_run(coarse, device=device)
            if "inpaint" not in coarse_algo.capabilities():
                raise GenfwError(f"--coarse {coarse}: {type(coarse_algo).__name__} cannot inpaint")
            if coarse_algo.ctx.channels != algo.ctx.channels:
                raise GenfwError(f"--coarse {coarse} works on {coarse_algo.ctx.channels}-channel images, "
                                 f"{run} on {algo.ctx.channels}")

        used = []
        for img_p, mask_p, out_p in (progress(pairs, "complete") if batch else pairs):
            img = read_image(img_p, channels=algo.ctx.channels)
            m = batch_mask(mask_p, img, batch and Path(mask).expanduser().is_file(), mask_polarity) if batch \
                else load_mask(mask_p, img.shape, mask_polarity)
            h, w = img.shape[-2:]
            lm = None
            if lm_file:
                if not batch:
                    from genfw.core.landmarks import read_landmarks_json

                    lm = read_landmarks_json(lm_file, w, h)[:1]
                else:
                    lm = _landmarks_for(records, img_p, w, h)
            elif source_lm is not None:
                lm = source_lm
            elif coarse_algo is not None:
                rough, _ = inpaint_image(coarse_algo, img, m)
                lm = detect_one(detector, rough, f"the coarse completion of {img_p.name} by {coarse}")[None]
            conditions = {}
            if lm is not None:
                conditions["landmarks"] = lm
                used.append(landmarks_record(str(img_p), lm[0], w, h))
            if attr is not None:
                conditions["attributes"] = attr
            result, _ = inpaint_image(Conditioned(algo, **conditions), img, m)
            path = save_image(result, out_p)
            if not batch:
                click.echo(f"wrote {path}")
        if batch:
            click.echo(f"wrote {len(pairs)} images to {Path(out).expanduser()}")
        if landmarks_out and used:
            Path(landmarks_out).write_text(json.dumps(used[0] if len(used) == 1 and not batch else used))
            click.echo(f"wrote landmarks to {landmarks_out}")
