"""`genfw inpaint`: complete the holes of an image, or of a folder of images, with a trained model.

Any image size: the image and mask are resized to the model's training size, inpainted there, and
the completion is resized back; only hole pixels are pasted into the original image, so the known
region of the result is the input, bit for bit. Non-square images are squashed to the square model
size and un-squashed on the way back.

Batch use: IMAGE may be a folder; MASK is then a folder (masks matched to images by name: the same
stem, or the stem plus `_mask` / `-mask`) or one mask file for every image (resized to each), and OUT is a folder
that receives `<stem>.png` per image. Every pair is checked before the first image is processed.
"""
from __future__ import annotations

import click

from genfw.core.errors import GenfwError


def _point(value: str | None):
    if value is None:
        return None
    try:
        x, y = (int(p) for p in value.split(","))
    except ValueError:
        raise click.BadParameter(f"expected X,Y pixel coordinates like 120,96, got {value!r}") from None
    return x, y


def attention_overlay(image, attention, point, box: int = 3):
    """Heat map (blue = low, red = high attention) over a grey copy of `image`; the pixel in a red box."""
    import torch

    grey = image.mean(0, keepdim=True).expand(3, -1, -1)
    a = attention / attention.max().clamp_min(1e-12)
    heat = torch.stack([a, 0.2 * (1 - a), 1 - a])
    out = 0.45 * grey + 0.55 * heat
    x, y = point
    h, w = image.shape[-2:]
    t, b, l, r = max(0, y - box), min(h - 1, y + box), max(0, x - box), min(w - 1, x + box)
    red = torch.tensor([1.0, 0.0, 0.0]).view(3, 1)
    out[:, t, l:r + 1] = red
    out[:, b, l:r + 1] = red
    out[:, t:b + 1, l] = red
    out[:, t:b + 1, r] = red
    return out


MASK_SUFFIXES = ("", "_mask", "-mask", ".mask")


def _images_in(folder):
    from pathlib import Path

    from genfw.core.images import IMAGE_SUFFIXES

    return sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def batch_pairs(image: str, mask: str, out: str) -> list[tuple]:
    """[(image, mask, output)] for a file (one triple) or a folder of images (one per image)."""
    from pathlib import Path

    img_p, mask_p, out_p = Path(image).expanduser(), Path(mask).expanduser(), Path(out).expanduser()
    if not img_p.exists():
        raise GenfwError(f"image not found: {img_p}")
    if not mask_p.exists():
        raise GenfwError(f"mask not found: {mask_p}")
    if img_p.is_file():
        if mask_p.is_dir():
            raise GenfwError(f"MASK {mask_p} is a folder but IMAGE {img_p} is one file; give one mask file")
        return [(img_p, mask_p, out_p)]
    images = _images_in(img_p)
    if not images:
        raise GenfwError(f"no images in {img_p}")
    if out_p.exists() and not out_p.is_dir():
        raise GenfwError(f"-o {out_p} is a file; with a folder of images, -o must be a folder")
    if out_p.resolve() == img_p.resolve():
        raise GenfwError(f"-o {out_p} is the input folder; choose another folder so no input is overwritten")
    if mask_p.is_file():
        return [(p, mask_p, out_p / f"{p.stem}.png") for p in images]
    by_stem = {}
    for m in _images_in(mask_p):
        by_stem.setdefault(m.stem, m)
    pairs, missing = [], []
    for p in images:
        found = next((by_stem[p.stem + sfx] for sfx in MASK_SUFFIXES if p.stem + sfx in by_stem), None)
        if found is None:
            missing.append(p.name)
        pairs.append((p, found, out_p / f"{p.stem}.png"))
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise GenfwError(f"{len(missing)} image(s) in {img_p} have no mask in {mask_p} (looked for the same "
                         f"name, or NAME_mask / NAME-mask): {shown}")
    return pairs


def batch_mask(mask_path, image, shared: bool, polarity: str = "auto"):
    """The validated mask of one image of a batch; one mask shared by a folder of images of several
    sizes is resized to each (nearest), then checked like any mask."""
    import torch.nn.functional as F

    from genfw.core.masks import load_mask, read_mask, validate_mask

    if not shared:
        return load_mask(mask_path, image.shape, polarity)
    m = read_mask(mask_path)
    if tuple(m.shape[-2:]) != tuple(image.shape[-2:]):
        m = F.interpolate(m, size=tuple(image.shape[-2:]), mode="nearest")
    return validate_mask(m, image.shape, name=f"mask {mask_path}", polarity=polarity)


def progress(items, what: str):
    """A progress bar for batches of more than one image (stderr; off when not a terminal)."""
    from tqdm import tqdm

    return tqdm(items, desc=what, unit="img", disable=None if len(items) > 1 else True, leave=False)


def inpaint_image(algo, image, mask, attention_at=None):
    """image C x H x W, mask 1 x 1 x H x W (validated) -> (result C x H x W, attention H x W or None)."""
    import torch

    from genfw.core.images import paste_holes, resize

    size = algo.ctx.image_size
    h, w = image.shape[-2:]
    small = resize(image, size)
    hole = mask.float()
    # a hole pixel must stay a hole after down-sizing: any coverage counts
    small_mask = (torch.nn.functional.interpolate(hole, size=(size, size), mode="area") > 1e-3).float() \
        if h >= size and w >= size else torch.nn.functional.interpolate(hole, size=(size, size), mode="nearest")
    at = None
    if attention_at is not None:
        x, y = attention_at
        if not (0 <= x < w and 0 <= y < h):
            raise GenfwError(f"--attention {x},{y} is outside the {w}x{h} image")
        at = (min(size - 1, x * size // w), min(size - 1, y * size // h))
    res = algo.inpaint(small.unsqueeze(0), small_mask, attention_at=at) if at else \
        algo.inpaint(small.unsqueeze(0), small_mask)
    result = paste_holes(image, hole[0], res["output"][0])  # banded: bounded memory at any size
    attention = None
    if at is not None:
        att = res["attention"][0].cpu().unsqueeze(0).unsqueeze(0)
        attention = torch.nn.functional.interpolate(att, size=(h, w), mode="nearest")[0, 0]
    return result, attention


def add_commands(group: click.Group) -> None:
    @group.command("inpaint")
    @click.argument("run", metavar="RUN_OR_CHECKPOINT")
    @click.argument("image")
    @click.argument("mask")
    @click.option("-o", "--out", "out", required=True,
                  help="Output image (PNG); a folder when IMAGE is a folder.")
    @click.option("--attention", default=None, metavar="X,Y", help="Also render this pixel's attention map.")
    @click.option("--attention-out", default=None, help="Where to write it (default: OUT with -attention).")
    @click.option("--mask-polarity", type=click.Choice(("auto", "white-hole", "black-hole")), default="auto",
                  show_default=True,
                  help="auto: white = hole, over 50 % hole refused as inverted; white-hole / black-hole: trust it.")
    @click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N")
    def inpaint(run, image, mask, out, attention, attention_out, mask_polarity, device):
        """Fill the holes of IMAGE marked white in MASK (same size; white = hole, black = known).
        IMAGE may be a folder (MASK: a folder matched by name, or one mask for all; OUT: a folder)."""
        from pathlib import Path

        from genfw.core.checkpoint import load_run
        from genfw.core.images import read_image, save_image
        from genfw.core.masks import load_mask

        point = _point(attention)
        pairs = batch_pairs(image, mask, out)
        if point is not None and Path(image).expanduser().is_dir():
            raise GenfwError("--attention renders one pixel of one image; give a single IMAGE")
        algo, _ = load_run(run, device=device)
        if "inpaint" not in algo.capabilities():
            raise GenfwError(f"{type(algo).__name__} cannot inpaint (it has: "
                             f"{', '.join(sorted(algo.capabilities())) or 'no inpainting capability'})")
        if Path(image).expanduser().is_dir():
            for img_p, mask_p, out_p in progress(pairs, "inpaint"):
                img = read_image(img_p, channels=algo.ctx.channels)
                result, _ = inpaint_image(algo, img, batch_mask(mask_p, img, Path(mask).expanduser().is_file(),
                                                                mask_polarity))
                save_image(result, out_p)
            click.echo(f"wrote {len(pairs)} images to {Path(out).expanduser()}")
            return
        img = read_image(image, channels=algo.ctx.channels)
        m = load_mask(mask, img.shape, mask_polarity)
        result, att = inpaint_image(algo, img, m, point)
        path = save_image(result, out)
        click.echo(f"wrote {path}")
        if att is not None:
            target = attention_out or str(Path(out).with_name(Path(out).stem + "-attention.png"))
            save_image(attention_overlay(result, att, point), target)
            click.echo(f"wrote attention map of pixel {point[0]},{point[1]} to {target}")
