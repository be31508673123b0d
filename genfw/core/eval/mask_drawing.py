"""How the generated evaluation masks are drawn: LaMa's stroke and box procedures (its
gen_mask_dataset generators, drawn with PIL), strokes hitting a hole-ratio bin, FOAM's centre
square and rectangles. Every function takes its numpy Generator, so a mask is a function of it."""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw

from genfw.core.errors import GenfwError

MAX_TAMPER_AREA = 0.5       # LaMa's gen_mask_dataset drops masks covering more than half the image


def _stroke_segments(draw: ImageDraw.ImageDraw, rng: np.random.Generator, size: int, i: int,
                     max_angle: int, max_len: float, max_width: float, scale: float) -> None:
    """One LaMa brush stroke: 1-5 straight segments from a random start, round joints."""
    x, y = int(rng.integers(size)), int(rng.integers(size))
    for _ in range(1 + int(rng.integers(5))):
        angle = 0.01 + int(rng.integers(max_angle))
        if i % 2 == 0:
            angle = 2 * math.pi - angle
        length = (10 + int(rng.integers(max(1, int(max_len))))) * scale
        width = max(1, int(round((5 + int(rng.integers(max(1, int(max_width))))) * scale)))
        ex = int(np.clip(x + length * math.sin(angle), 0, size))
        ey = int(np.clip(y + length * math.cos(angle), 0, size))
        draw.line([(x, y), (ex, ey)], fill=255, width=width)
        r = width / 2
        for px, py in ((x, y), (ex, ey)):  # cv2's thick lines have round ends
            draw.ellipse((px - r, py - r, px + r, py + r), fill=255)
        x, y = ex, ey


def lama_irregular(rng, size: int, *, min_times: int, max_times: int, max_width: int, max_angle: int,
                   max_len: int) -> np.ndarray:
    scale = size / 256
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    for i in range(int(rng.integers(min_times, max_times + 1))):
        _stroke_segments(draw, rng, size, i, max_angle, max_len, max_width, scale)
    return np.asarray(canvas) > 0


def lama_boxes(rng, size: int, *, margin: int, bbox_min_size: int, bbox_max_size: int, min_times: int,
               max_times: int) -> np.ndarray:
    s = size / 256
    margin = int(round(margin * s))
    lo, hi = max(1, int(round(bbox_min_size * s))), max(2, int(round(bbox_max_size * s)))
    hi = min(hi, size - 2 * margin)
    lo = min(lo, hi - 1)
    m = np.zeros((size, size), dtype=bool)
    for _ in range(int(rng.integers(min_times, max_times + 1))):
        bw, bh = int(rng.integers(lo, hi)), int(rng.integers(lo, hi))
        x = int(rng.integers(margin, size - margin - bw + 1))
        y = int(rng.integers(margin, size - margin - bh + 1))
        m[y:y + bh, x:x + bw] = True
    return m


_LAMA = {  # LaMa configs/data_gen/random_*_256.yaml
    "thin": ((1.0, dict(min_times=4, max_times=50, max_width=10, max_angle=4, max_len=40)), None),
    "medium": ((1.0, dict(min_times=4, max_times=5, max_width=50, max_angle=4, max_len=100)),
               (0.3, dict(margin=0, bbox_min_size=10, bbox_max_size=50, min_times=1, max_times=5))),
    "thick": ((1.0, dict(min_times=1, max_times=5, max_width=100, max_angle=4, max_len=200)),
              (0.3, dict(margin=10, bbox_min_size=30, bbox_max_size=150, min_times=1, max_times=3))),
}


def lama_mask(kind: str) -> Callable[[np.random.Generator, int], np.ndarray]:
    strokes, boxes = _LAMA[kind]

    def draw(rng, size):
        probs = np.array([strokes[0]] + ([boxes[0]] if boxes else []))
        probs = probs / probs.sum()
        for _ in range(1000):  # LaMa drops masks over max_tamper_area; redraw from the same stream
            pick = int(rng.choice(len(probs), p=probs)) if len(probs) > 1 else 0
            m = lama_irregular(rng, size, **strokes[1]) if pick == 0 else lama_boxes(rng, size, **boxes[1])
            if 0 < m.mean() <= MAX_TAMPER_AREA:
                return m
        raise GenfwError(f"cannot draw a {kind} mask at {size} px under {MAX_TAMPER_AREA:.0%} area")

    return draw


def binned_strokes(rng, size: int, lo: float, hi: float) -> np.ndarray:
    """Free-form strokes added until the hole ratio lies in [lo, hi); a stroke that would pass `hi`
    is undone and retried thinner and shorter, then single pixels next to the hole close any gap."""
    canvas = Image.new("L", (size, size), 0)
    total = size * size
    target = rng.uniform(lo, hi)
    ratio = 0.0
    for stroke in range(400):
        if ratio >= max(lo, target - 0.5 / total):
            break
        scale = size / 256
        for _attempt in range(10):
            trial = canvas.copy()
            _stroke_segments(ImageDraw.Draw(trial), rng, size, stroke, 4, 60, 30, scale)
            r = float((np.asarray(trial) > 0).mean())
            if r < hi:
                canvas, ratio = trial, r
                break
            scale *= 0.5
    m = np.asarray(canvas) > 0
    need = int(math.ceil(lo * total)) - int(m.sum())
    while need > 0:  # tiny canvases: grow the hole by neighbours until the bin's lower edge
        nb = np.zeros_like(m)
        nb[1:] |= m[:-1]; nb[:-1] |= m[1:]; nb[:, 1:] |= m[:, :-1]; nb[:, :-1] |= m[:, 1:]  # noqa: E702
        cand = np.flatnonzero(nb & ~m) if m.any() else np.flatnonzero(~m)
        pick = rng.choice(cand, size=min(need, cand.size), replace=False)
        m.flat[pick] = True
        need -= pick.size
    return m


def center_square(rng, size: int, fraction: float = 0.5) -> np.ndarray:
    s = max(1, round(size * fraction))
    top = (size - s) // 2
    m = np.zeros((size, size), dtype=bool)
    m[top:top + s, top:top + s] = True
    return m


def foam_rect(rng, size: int, area: tuple[float, float] = (0.05, 0.25), aspect: tuple[float, float] = (0.5, 2.0)):
    """One rectangle: area fraction uniform in `area`, aspect (w / h) log-uniform, uniform position."""
    target = rng.uniform(*area) * size * size
    ar = math.exp(rng.uniform(math.log(aspect[0]), math.log(aspect[1])))
    rh = min(size, max(1, round(math.sqrt(target / ar))))
    rw = min(size, max(1, round(target / rh)))
    top, left = int(rng.integers(0, size - rh + 1)), int(rng.integers(0, size - rw + 1))
    m = np.zeros((size, size), dtype=bool)
    m[top:top + rh, left:left + rw] = True
    return m
