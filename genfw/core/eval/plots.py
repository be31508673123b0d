"""The pictures of a results folder, drawn with PIL alone (matplotlib is not a dependency):
per-bin bar charts, labelled image grids (best / median / worst completions, samples, neighbours)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

BG, INK, GRID, BAR = (255, 255, 255), (20, 20, 20), (210, 210, 210), (70, 110, 180)
NAMES = {"l1": "L1 %", "l2": "L2 %", "psnr": "PSNR dB", "ssim": "SSIM", "lpips": "LPIPS", "fid": "FID",
         "kid": "KID"}


def _font():
    return ImageFont.load_default()


def _fmt(v: float) -> str:
    if v != v:  # nan
        return "-"
    a = abs(v)
    return f"{v:.0f}" if a >= 100 else f"{v:.2f}" if a >= 1 else f"{v:.3f}" if a >= 0.01 else f"{v:.1e}"


def bar_chart(rows: dict[str, dict], metrics: Sequence[str], path: str | Path, title: str = "") -> Path:
    """One panel per metric: a bar per bin (x = bin label), its mean written above it."""
    labels = list(rows)
    font = _font()
    bw, gap, ph, top, left = 56, 14, 170, 28, 12
    pw = left + len(labels) * (bw + gap) + gap
    cols = min(3, len(metrics))
    nrows = math.ceil(len(metrics) / cols)
    W, H = cols * pw + 20, nrows * (ph + top + 40) + (30 if title else 10)
    img = Image.new("RGB", (W, H), BG)
    d = ImageDraw.Draw(img)
    if title:
        d.text((10, 8), title, fill=INK, font=font)
    y0 = 30 if title else 10
    for k, m in enumerate(metrics):
        r, c = divmod(k, cols)
        ox, oy = 10 + c * pw, y0 + r * (ph + top + 40)
        vals = [rows[b].get(m, float("nan")) for b in labels]
        finite = [v for v in vals if v == v and math.isfinite(v)]
        hi = max(finite) if finite else 1.0
        lo = min(0.0, min(finite)) if finite else 0.0
        span = (hi - lo) or 1.0
        d.text((ox, oy), NAMES.get(m, m), fill=INK, font=font)
        base = oy + top + ph
        d.line([(ox, base), (ox + pw - 10, base)], fill=GRID)
        for j, (b, v) in enumerate(zip(labels, vals)):
            x = ox + left + j * (bw + gap)
            if v == v and math.isfinite(v):
                h = int((v - lo) / span * (ph - 20))
                d.rectangle([x, base - h, x + bw, base], fill=BAR)
                d.text((x + 2, base - h - 12), _fmt(v), fill=INK, font=font)
            else:
                d.text((x + 2, base - 12), "n/a", fill=INK, font=font)
            d.text((x, base + 4), b, fill=INK, font=font)
    path = Path(path)
    img.save(path)
    return path


def _tile(x: torch.Tensor, side: int) -> Image.Image:
    """C x H x W in [0, 1] -> RGB tile, scaled up with nearest so small images stay readable."""
    arr = (x.detach().float().cpu().clamp(0, 1) * 255 + 0.5).to(torch.uint8)
    if arr.shape[0] == 1:
        arr = arr.expand(3, -1, -1)
    im = Image.fromarray(arr.permute(1, 2, 0).numpy())
    return im.resize((side, side), Image.NEAREST) if im.width != side else im


def labelled_grid(rows: list[tuple[str, list[torch.Tensor]]], header: Sequence[str], path: str | Path,
                  min_side: int = 96) -> Path:
    """Rows of images with a text label on the left and column titles on top."""
    font = _font()
    h0 = rows[0][1][0].shape[-1]
    side = max(h0, min_side) if h0 >= min_side else h0 * math.ceil(min_side / h0)
    label_w, pad, head = 190, 4, 18
    ncol = max(len(r[1]) for r in rows)
    W = label_w + ncol * (side + pad) + pad
    H = head + len(rows) * (side + pad) + pad
    img = Image.new("RGB", (W, H), BG)
    d = ImageDraw.Draw(img)
    for j, t in enumerate(header):
        d.text((label_w + pad + j * (side + pad), 3), t, fill=INK, font=font)
    for i, (label, tiles) in enumerate(rows):
        y = head + pad + i * (side + pad)
        for line, text in enumerate(label.split("\n")):
            d.text((6, y + 4 + 12 * line), text, fill=INK, font=font)
        for j, t in enumerate(tiles):
            img.paste(_tile(t, side), (label_w + pad + j * (side + pad), y))
    path = Path(path)
    img.save(path)
    return path


def rank_groups(values: Sequence[float], k: int, lower_is_better: bool) -> dict[str, list[int]]:
    """Indices of the k best, k around the median and k worst images by one per-image score."""
    order = list(np.argsort(np.asarray(values, dtype=np.float64), kind="stable"))
    if not lower_is_better:
        order = order[::-1]
    n = len(order)
    k = max(1, min(k, n // 3 or 1))
    mid = max(0, n // 2 - k // 2)
    return {"best": [int(i) for i in order[:k]], "median": [int(i) for i in order[mid:mid + k]],
            "worst": [int(i) for i in order[n - k:][::-1]]}
