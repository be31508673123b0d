"""`genfw landmarks`: detect 68 face landmarks, draw them, print or write them as JSON."""
from __future__ import annotations

import json
from pathlib import Path

import click

from genfw.core.errors import GenfwError

BACKENDS = ("dlib", "fan")
# iBUG parts, coloured so a swapped order is visible at a glance
PARTS = ((range(0, 17), (1.0, 1.0, 0.0)), (range(17, 27), (1.0, 0.5, 0.0)), (range(27, 36), (0.0, 1.0, 1.0)),
         (range(36, 48), (0.0, 1.0, 0.0)), (range(48, 68), (1.0, 0.0, 1.0)))


def build_detector(backend: str, weights: str = "", device: str = "cpu"):
    """A `landmarks` component by backend name, with an explicit weights path when given."""
    from genfw.registry import get_registry

    if backend not in BACKENDS:
        raise GenfwError(f"unknown landmark backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    spec = {"type": f"core.{backend}", "weights": weights}
    if backend == "fan":
        from genfw.core.trainer import resolve_device

        spec["device"] = str(resolve_device(device))
    return get_registry().build(spec, kind="landmarks", path="landmarks")


def detect_one(detector, image, name: str):
    """(68 x 2 in [0, 1]) for one C x H x W image; GenfwError when no face is found."""
    lm, found = detector(image.unsqueeze(0))
    if not bool(found[0]):
        raise GenfwError(f"no face found in {name} (try the other --backend, a larger or more frontal face)")
    return lm[0]


def draw_landmarks(image, landmarks, radius: int = 0):
    """Copy of C x H x W `image` (as RGB) with coloured squares on the 68 points."""
    import torch

    out = image.expand(3, -1, -1).clone() if image.shape[0] == 1 else image[:3].clone()
    h, w = out.shape[-2:]
    r = radius or max(1, min(h, w) // 256)
    for idx, colour in PARTS:
        c = torch.tensor(colour).view(3, 1, 1)
        for i in idx:
            x = int(landmarks[i, 0] * w)
            y = int(landmarks[i, 1] * h)
            t, b, left, right = max(0, y - r), min(h, y + r + 1), max(0, x - r), min(w, x + r + 1)
            if t < b and left < right:
                out[:, t:b, left:right] = c
    return out


def landmarks_record(path: str, landmarks, width: int, height: int) -> dict:
    from genfw.core.landmarks import unit_to_pixels

    unit = landmarks.double().numpy()
    return {"image": str(path), "width": width, "height": height,
            "landmarks": [[round(float(x), 6), round(float(y), 6)] for x, y in unit],
            "pixels": [[round(float(x), 2), round(float(y), 2)] for x, y in unit_to_pixels(unit, width, height)]}


def write_table(detector, inputs, table: str) -> str:
    """68-point rows `name x0 y0 ... x67 y67` (pixels) for images and folders (recursive), the file
    `landmarks68` of core.image-folder / core.celeba / core.celeba-hq reads; names are relative to
    the folder given. Images without a detected face are left out and counted."""
    from genfw.core.data.files import find_images
    from genfw.core.images import read_image
    from genfw.core.landmarks import unit_to_pixels

    from tqdm import tqdm

    items = []
    for name in inputs:
        p = Path(name).expanduser()
        items += [(f, f.relative_to(p)) for f in find_images(p)] if p.is_dir() else [(p, Path(p.name))]
    if not items:
        raise GenfwError(f"no images in {', '.join(inputs)}")
    rows, missed = [], []
    for path, rel in tqdm(items, desc="landmarks", unit="img", disable=None, leave=False):
        img = read_image(path, channels=3)
        lm, found = detector(img.unsqueeze(0))
        if not bool(found[0]):
            missed.append(str(rel))
            continue
        h, w = img.shape[-2:]
        pts = unit_to_pixels(lm[0].double().numpy(), w, h)
        rows.append(f"{rel} " + " ".join(f"{v:.2f}" for v in pts.ravel()))
    target = Path(table).expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("\n".join(rows) + ("\n" if rows else ""))
    note = f"; {len(missed)} without a face left out ({', '.join(missed[:5])}{' ...' if len(missed) > 5 else ''})" \
        if missed else ""
    return f"wrote {len(rows)} landmark rows to {target}{note}"


def add_commands(group: click.Group) -> None:
    @group.command("landmarks")
    @click.argument("images", nargs=-1, required=True)
    @click.option("--backend", type=click.Choice(BACKENDS), default="dlib", show_default=True,
                  help="dlib (offline, face-recognition-models) or fan (face-alignment).")
    @click.option("--weights", default="", help="Explicit landmark model file (dlib .dat or 2DFAN4).")
    @click.option("-o", "--out", default=None, help="Overlay PNG (several images: OUT-<image>.png).")
    @click.option("--json", "as_json", is_flag=True, help="Print the coordinates as JSON.")
    @click.option("--device", default="auto", show_default=True, help="fan only: auto | cpu | cuda | cuda:N")
    @click.option("--table", default=None, metavar="FILE",
                  help="Write a 68-point file (name x0 y0 ... x67 y67) for IMAGES and folders, e.g. "
                       "DATA/landmarks68.txt for training landmark-conditioned models on your data.")
    def landmarks(images, backend, weights, out, as_json, device, table):
        """Detect the 68 iBUG face landmarks of each IMAGE ((x, y) in [0, 1] and in pixels)."""
        from genfw.core.images import read_image, save_image

        detector = build_detector(backend, weights, device)
        if table:
            click.echo(write_table(detector, images, table))
            return
        records = []
        for name in images:
            img = read_image(name, channels=3)
            lm = detect_one(detector, img, name)
            h, w = img.shape[-2:]
            records.append(landmarks_record(name, lm, w, h))
            if out:
                target = Path(out)
                if len(images) > 1:
                    target = target.with_name(f"{target.stem}-{Path(name).stem}{target.suffix or '.png'}")
                path = save_image(draw_landmarks(img, lm), target)
                if not as_json:
                    click.echo(f"wrote {path}")
            if not as_json:
                pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in records[-1]["pixels"])
                click.echo(f"{name}: 68 points (pixels x,y): {pts}")
        if as_json:
            click.echo(json.dumps(records[0] if len(records) == 1 else records))
