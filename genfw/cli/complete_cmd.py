"""`genfw complete`: test-time completion for landmark / attribute conditioned models (FOAM).

The paper gets test-time landmarks in one of two ways, both offered here, plus a file:
  --landmarks-from SOURCE  detected on a "source actor" image (the structure is transferred),
  --coarse COARSE_RUN      detected on a coarse completion of the same image by another
                           inpainting run (e.g. a `csa` run),
  --landmarks FILE.json    given directly (68 x 2, unit or pixel coordinates of IMAGE).
Any image size, as `genfw inpaint`: the model runs at its training size and only hole pixels are
pasted back, so the known region of the result is the input, bit for bit.
"""
from __future__ import annotations

import inspect
import json

import click

from genfw.core.errors import GenfwError
from genfw.core.precision import precision_option, prepare_inference


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


def add_commands(group: click.Group) -> None:
    @group.command("complete")
    @click.argument("run", metavar="RUN_OR_CHECKPOINT")
    @click.argument("image")
    @click.argument("mask")
    @click.option("-o", "--out", "out", required=True, help="Output image (PNG).")
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
    @click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N")
    @precision_option
    def complete(run, image, mask, out, source, lm_file, coarse, backend, detector_weights, attributes,
                 landmarks_out, device, precision):
        """Complete the holes of IMAGE (white in MASK) with structure from landmarks and chosen attributes."""
        from genfw.cli.inpaint_cmd import inpaint_image
        from genfw.cli.landmarks_cmd import build_detector, detect_one, landmarks_record
        from genfw.core.checkpoint import load_run
        from genfw.core.images import read_image, save_image
        from genfw.core.landmarks import read_landmarks_json
        from genfw.core.masks import load_mask

        given = [n for n, v in (("--landmarks-from", source), ("--landmarks", lm_file), ("--coarse", coarse)) if v]
        if len(given) > 1:
            raise GenfwError(f"give one landmark source, not {' and '.join(given)}")
        algo, _ = load_run(run, device=device)
        prepare_inference(algo, precision)
        if "inpaint" not in algo.capabilities():
            raise GenfwError(f"{type(algo).__name__} cannot inpaint; `genfw complete` needs an inpainting run")
        img = read_image(image, channels=algo.ctx.channels)
        m = load_mask(mask, img.shape)
        h, w = img.shape[-2:]
        conditions = {}

        needs_lm = algo.ctx.has_landmarks and bool(getattr(algo.cfg, "use_landmarks", True)) and _takes_landmarks(algo)
        if given and not _takes_landmarks(algo):
            raise GenfwError(f"{type(algo).__name__} is not conditioned on landmarks; use `genfw inpaint`")
        if not given and needs_lm:
            raise GenfwError("this model is conditioned on landmarks: give --landmarks-from SOURCE_IMAGE, "
                             "--landmarks FILE.json or --coarse COARSE_RUN")
        lm = None
        if lm_file:
            lm = read_landmarks_json(lm_file, w, h)[:1]
        elif source or coarse:
            detector = build_detector(backend, detector_weights, device)
            if source:
                lm = detect_one(detector, read_image(source, channels=3), source)[None]
            else:
                coarse_algo, _ = load_run(coarse, device=device)
                prepare_inference(coarse_algo, precision)
                if "inpaint" not in coarse_algo.capabilities():
                    raise GenfwError(f"--coarse {coarse}: {type(coarse_algo).__name__} cannot inpaint")
                if coarse_algo.ctx.channels != algo.ctx.channels:
                    raise GenfwError(f"--coarse {coarse} works on {coarse_algo.ctx.channels}-channel images, "
                                     f"{run} on {algo.ctx.channels}")
                rough, _ = inpaint_image(coarse_algo, img, m)
                lm = detect_one(detector, rough, f"the coarse completion by {coarse}")[None]
        if lm is not None:
            conditions["landmarks"] = lm

        count = int(algo.ctx.num_attributes) if getattr(algo.cfg, "use_attributes", True) else 0
        if attributes and not count:
            raise GenfwError("this model is not conditioned on attributes; drop --attributes")
        if count:
            if not attributes:
                names = ", ".join(algo.ctx.attribute_names) or f"{count} attributes"
                raise GenfwError(f"this model is conditioned on attributes ({names}): give --attributes NAME=0|1,...")
            conditions["attributes"] = parse_attributes(attributes, list(algo.ctx.attribute_names), count)

        result, _ = inpaint_image(Conditioned(algo, **conditions), img, m)
        path = save_image(result, out)
        click.echo(f"wrote {path}")
        if landmarks_out and lm is not None:
            from pathlib import Path

            Path(landmarks_out).write_text(json.dumps(landmarks_record(image, lm[0], w, h)))
            click.echo(f"wrote landmarks to {landmarks_out}")
