"""Procedural faces with exact 68-point iBUG landmarks, rendered from the landmark geometry itself.

The face is built in a canonical frame (x right, y down, face half-height 1), posed in 3-D (yaw,
pitch), rolled, scaled and placed, and only then drawn: the jaw polygon is the face outline, the
eye polygons are the eyes, the lip polygons are the lips, so the landmarks are exact by
construction. Attributes change the geometry and the drawing: Smiling lifts the mouth corners and
widens the mouth, Male widens and squares the jaw, thickens the brows and shortens the hair,
Mouth_Slightly_Open separates the inner lips.
"""
from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

ATTRIBUTES = ("Smiling", "Male", "Mouth_Slightly_Open")

# iBUG 68 mirror permutation: index i of a flipped face is point FLIP_68[i] of the original.
FLIP_68 = (
    list(range(16, -1, -1))                      # jaw 0-16
    + list(range(26, 21, -1)) + list(range(21, 16, -1))  # brows 17-26
    + [27, 28, 29, 30]                           # nose bridge
    + [35, 34, 33, 32, 31]                       # nose base
    + [45, 44, 43, 42, 47, 46]                   # eye 36-41 <- right eye
    + [39, 38, 37, 36, 41, 40]                   # eye 42-47 <- left eye
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]  # outer lips 48-59
    + [64, 63, 62, 61, 60, 67, 66, 65]           # inner lips 60-67
)


def canonical_landmarks(smiling: float, male: float, mouth_open: float, rng: np.random.Generator) -> np.ndarray:
    """68 x 3 points (x, y, depth z toward the viewer) of a frontal face, with per-face variation."""
    pts = np.zeros((68, 3))
    jitter = lambda s: rng.normal(0.0, s)  # noqa: E731 - small individual differences
    a = 0.70 + 0.07 * male + jitter(0.02)        # jaw half-width
    b = 1.00 + jitter(0.02)                      # chin depth below the centre
    top = -0.05 + jitter(0.02)                   # ear level where the jaw starts
    square = 0.75 if male else 1.0               # exponent < 1 squares the jaw
    for i in range(17):
        phi = math.pi * (1 - i / 16)             # pi (left) .. 0 (right) through pi/2 (chin)
        c, s = math.cos(phi), math.sin(phi)
        x = a * math.copysign(abs(c) ** square, c)
        y = top + (b - top) * s ** (1.15 if male else 1.0)
        pts[i] = (x, y, 0.35 * s)
    eye_y = -0.22 + jitter(0.015)
    eye_gap = 0.17 + jitter(0.01)
    eye_w = 0.33 + jitter(0.015)
    eye_h = 0.075 + jitter(0.008)
    brow_y = eye_y - 0.2 - jitter(0.01)
    brow_arch = 0.06 + jitter(0.01) - 0.02 * male
    for side, sign in ((0, -1), (1, 1)):         # side 0 = image left (iBUG 17-21, 36-41)
        xs = np.linspace(0.64, 0.12, 5) if side == 0 else np.linspace(0.12, 0.64, 5)
        for k, xv in enumerate(xs):
            u = (xv - 0.12) / 0.52
            pts[17 + 5 * side + k] = (sign * xv, brow_y - brow_arch * math.sin(math.pi * (0.25 + 0.75 * (1 - u))), 0.5)
        inner, outer = sign * eye_gap, sign * (eye_gap + eye_w)
        third = lambda t: inner + (outer - inner) * t  # noqa: E731
        if side == 0:   # 36 outer, 37-38 upper lid, 39 inner, 40-41 lower lid
            order = [(1.0, 0), (2 / 3, -1), (1 / 3, -1), (0.0, 0), (1 / 3, 1), (2 / 3, 1)]
        else:           # 42 inner, 43-44 upper lid, 45 outer, 46-47 lower lid
            order = [(0.0, 0), (1 / 3, -1), (2 / 3, -1), (1.0, 0), (2 / 3, 1), (1 / 3, 1)]
        for k, (t, lid) in enumerate(order):
            lid_h = eye_h if lid < 0 else 0.8 * eye_h
            pts[36 + 6 * side + k] = (third(t), eye_y + lid * lid_h, 0.42)
    nose_tip = 0.12 + jitter(0.015)
    for k in range(4):                           # bridge 27-30 comes toward the viewer
        pts[27 + k] = (0.0, eye_y - 0.05 + (nose_tip - eye_y + 0.05) * k / 3, 0.55 + 0.13 * k)
    nose_w = 0.15 + 0.02 * male + jitter(0.01)
    for k, (fx, dy) in enumerate([(-1, 0), (-0.5, 0.03), (0, 0.05), (0.5, 0.03), (1, 0)]):
        pts[31 + k] = (fx * nose_w, nose_tip + 0.06 + dy, 0.6 + 0.05 * (1 - abs(fx)))
    cy = 0.5 + jitter(0.015)
    half = 0.27 + 0.06 * smiling + jitter(0.01)
    lift = 0.09 * smiling - 0.015 + jitter(0.005)   # corners up when smiling, slightly down otherwise
    gap = 0.09 * mouth_open + 0.04 * smiling * mouth_open
    up_t, lo_t = 0.055 + jitter(0.005), 0.07 + jitter(0.005)

    def centre_y(u: float) -> float:
        return cy - lift * u * u

    outer_u = [-1, -0.6, -0.22, 0, 0.22, 0.6, 1, 0.6, 0.22, 0, -0.22, -0.6]
    for k, u in enumerate(outer_u):
        bulge = 1 - u * u
        if k <= 6:   # 48-54 upper lip outline, cupid's bow dips at the centre
            bow = 0.02 if k == 3 else 0.0
            y = centre_y(u) - gap / 2 * bulge - up_t * bulge ** 0.5 + bow
        else:        # 55-59 lower lip outline
            y = centre_y(u) + gap / 2 * bulge + lo_t * bulge ** 0.5
        pts[48 + k] = (u * half, y, 0.55 - 0.1 * abs(u))
    inner_u = [-0.82, -0.4, 0, 0.4, 0.82, 0.4, 0, -0.4]
    for k, u in enumerate(inner_u):
        bulge = 1 - u * u
        y = centre_y(u) + (-1 if 0 < k < 4 else 1 if k > 4 else 0) * gap / 2 * bulge
        pts[60 + k] = (u * half, y, 0.56 - 0.1 * abs(u))
    return pts


def pose(pts3: np.ndarray, yaw: float, pitch: float, roll: float, scale: float, cx: float, cy: float) -> np.ndarray:
    """Rotate in 3-D, project orthographically, roll, scale, place: 68 x 2 in image fractions."""
    x, y, z = pts3[:, 0], pts3[:, 1], pts3[:, 2]
    x, z = x * math.cos(yaw) + z * math.sin(yaw), -x * math.sin(yaw) + z * math.cos(yaw)
    y, z = y * math.cos(pitch) - z * math.sin(pitch), y * math.sin(pitch) + z * math.cos(pitch)
    cr, sr = math.cos(roll), math.sin(roll)
    x, y = x * cr - y * sr, x * sr + y * cr
    return np.stack([cx + scale * x, cy + scale * y], axis=1)


class _Canvas:
    """Float RGB canvas composited from anti-aliased masks drawn at a supersampled size."""

    def __init__(self, size: int, ss: int, background: np.ndarray) -> None:
        self.size, self.ss = size, ss
        self.big = size * ss
        self.rgb = np.broadcast_to(background, (self.big, self.big, 3)).astype(np.float32).copy()

    def px(self, pts: np.ndarray) -> list[tuple[float, float]]:
        return [(float(px * self.big), float(py * self.big)) for px, py in pts]

    def mask(self, draw_fn) -> np.ndarray:
        im = Image.new("L", (self.big, self.big), 0)
        draw_fn(ImageDraw.Draw(im))
        return np.asarray(im, dtype=np.float32) / 255.0

    def paint(self, m: np.ndarray, colour, alpha: float = 1.0) -> None:
        a = (m * alpha)[..., None]
        self.rgb = self.rgb * (1 - a) + np.asarray(colour, dtype=np.float32) * a

    def result(self) -> np.ndarray:
        rgb = np.clip(self.rgb, 0.0, 1.0)
        if self.ss == 1:
            return rgb
        # box downsampling = exact area coverage: anti-aliased edges at the requested size
        return rgb.reshape(self.size, self.ss, self.size, self.ss, 3).mean(axis=(1, 3))


def _ellipse_arc(centre, rx, ry, start, end, n=24):
    t = np.linspace(start, end, n)
    return np.stack([centre[0] + rx * np.cos(t), centre[1] + ry * np.sin(t)], 1)


def render_face(size: int, rng: np.random.Generator, attributes: dict[str, float] | None = None):
    """One face: (H x W x 3 float32 in [0, 1], 68 x 2 landmarks in [0, 1], attribute vector)."""
    attrs = {name: float(rng.random() < 0.5) for name in ATTRIBUTES}
    attrs.update(attributes or {})
    smiling, male, mouth_open = attrs["Smiling"], attrs["Male"], attrs["Mouth_Slightly_Open"]
    pts3 = canonical_landmarks(smiling, male, mouth_open, rng)
    yaw, pitch, roll = rng.normal(0, 0.18), rng.normal(0, 0.08), rng.normal(0, 0.08)
    scale = rng.uniform(0.27, 0.33)
    cx, cy = 0.5 + rng.normal(0, 0.02), 0.5 + rng.normal(0, 0.02)
    lm = pose(pts3, yaw, pitch, roll, scale, cx, cy)

    # Forehead: an ellipse through the jaw's end points over the brows, posed like the landmarks.
    a = abs(pts3[16, 0] - pts3[0, 0]) / 2
    ytop = pts3[0, 1]
    fore = np.array([(a * math.cos(t), ytop - 0.95 * math.sin(t), 0.3 * math.sin(t))
                     for t in np.linspace(0.0, math.pi, 21)])
    fore_2d = pose(fore, yaw, pitch, roll, scale, cx, cy)
    outline = np.concatenate([lm[0:17], fore_2d[1:-1]], 0)   # jaw left->right, then over the top
    centre = lm[27:31].mean(0)

    skin = np.clip(np.array([0.85, 0.66, 0.53]) * rng.uniform(0.55, 1.1) + rng.normal(0, 0.03, 3), 0.1, 1.0)
    hair = np.clip(np.array([0.25, 0.17, 0.1]) * rng.uniform(0.2, 2.8) + rng.normal(0, 0.02, 3), 0.02, 0.95)
    bg_a, bg_b = rng.uniform(0.15, 0.95, 3), rng.uniform(0.15, 0.95, 3)
    iris = np.clip(rng.choice([[0.35, 0.22, 0.1], [0.25, 0.45, 0.6], [0.3, 0.45, 0.25]]) + rng.normal(0, 0.03, 3), 0, 1)
    lips = np.clip(skin * np.array([0.85, 0.55, 0.55]) + np.array([0.08, 0.0, 0.02]) * (1 - male), 0, 1)

    ss = 4 if size <= 64 else (2 if size <= 256 else 1)  # supersampling only where edges need it
    cv = _Canvas(size, ss, bg_a)
    yy = np.linspace(0, 1, cv.big, dtype=np.float32)[:, None, None]
    cv.rgb = cv.rgb * (1 - yy) + bg_b.astype(np.float32) * yy      # vertical background gradient

    u = scale * np.array([math.cos(roll), math.sin(roll)])           # face "right" axis in the image
    dn = scale * np.array([-math.sin(roll), math.cos(roll)])         # face "down" axis

    def ellipse_pts(c_face, rx, ry, t0=0.0, t1=2 * math.pi, n=40):
        t = np.linspace(t0, t1, n)
        c = np.array([cx, cy]) + c_face[0] * u + c_face[1] * dn
        return c + np.outer(rx * np.cos(t), u) + np.outer(ry * np.sin(t), dn)

    # hair behind the head (long for female faces) and the neck
    if male < 0.5:
        back = np.concatenate([ellipse_pts((yaw * 0.3, -0.15), a + 0.32, 1.25, math.pi, 2 * math.pi),
                               ellipse_pts((yaw * 0.3, 0.55), a + 0.3, 0.55, 0, math.pi)], 0)
        cv.paint(cv.mask(lambda d: d.polygon(cv.px(back), fill=255)), hair)
    neck = np.array([lm[5], lm[11], lm[11] + 0.8 * dn, lm[5] + 0.8 * dn])
    cv.paint(cv.mask(lambda d: d.polygon(cv.px(neck), fill=255)), skin * 0.8)

    face_m = cv.mask(lambda d: d.polygon(cv.px(outline), fill=255))
    cv.paint(face_m, skin)
    # soft shading: darker toward the outline, so the face reads as round
    gy, gx = np.mgrid[0:cv.big, 0:cv.big].astype(np.float32) / cv.big
    rel = np.stack([gx - centre[0], gy - centre[1]], -1)
    r = np.sqrt((rel @ u / scale / a) ** 2 + (rel @ dn / scale) ** 2)
    cv.paint(face_m * np.clip(r - 0.45, 0, 1), skin * 0.6, 0.6)
    cheek = 0.15 + 0.15 * smiling
    for side in (-1, 1):  # cheeks, rosier when smiling
        cm = cv.mask(lambda d: d.polygon(cv.px(ellipse_pts((side * 0.42, 0.22), 0.14, 0.09)), fill=255))
        cv.paint(cm * face_m, np.clip(skin * np.array([1.05, 0.8, 0.8]), 0, 1), cheek)

    # hair on top: a cap over the head down to an arched hairline (lower at the temples)
    side_y, arch = (ytop - 0.2, 0.47) if male >= 0.5 else (ytop - 0.1, 0.45)
    cap = np.concatenate([
        ellipse_pts((yaw * 0.2, ytop - 0.05), a + 0.06, 1.05, math.pi, 2 * math.pi, 32),
        ellipse_pts((yaw * 0.2, side_y), a + 0.02, arch, 2 * math.pi, math.pi, 32),
    ], 0)
    cv.paint(cv.mask(lambda d: d.polygon(cv.px(cap), fill=255)), hair)

    # brows: thick lines along 17-21 / 22-26
    brow_w = max(1, int(cv.big * scale * (0.05 + 0.035 * male)))
    for s0 in (17, 22):
        bm = cv.mask(lambda d: d.line(cv.px(lm[s0:s0 + 5]), fill=255, width=brow_w, joint="curve"))
        cv.paint(bm, hair * 0.9)

    # eyes: white polygon, iris clipped to it, pupil, upper lash line
    for s0 in (36, 42):
        eye = lm[s0:s0 + 6]
        em = cv.mask(lambda d: d.polygon(cv.px(eye), fill=255))
        cv.paint(em, [0.95, 0.95, 0.93])
        c = eye.mean(0) + 0.02 * yaw * u
        ir = 0.55 * np.linalg.norm(eye[1] - eye[5]) + 0.002
        irm = cv.mask(lambda d: d.ellipse(cv.px([c - ir, c + ir]), fill=255))
        cv.paint(irm * em, iris)
        pr = ir * 0.45
        cv.paint(cv.mask(lambda d: d.ellipse(cv.px([c - pr, c + pr]), fill=255)) * em, [0.05, 0.05, 0.05])
        lash = max(1, int(cv.big * scale * 0.02))
        upper = [eye[0], eye[1], eye[2], eye[3]]
        cv.paint(cv.mask(lambda d: d.line(cv.px(upper), fill=255, width=lash, joint="curve")), hair * 0.5)

    # nose: a faint bridge shadow, the base curve and nostrils
    nose_line = max(1, int(cv.big * scale * 0.025))
    cv.paint(cv.mask(lambda d: d.line(cv.px(lm[27:31]), fill=255, width=nose_line)), skin * 0.7, 0.35)
    cv.paint(cv.mask(lambda d: d.line(cv.px(lm[31:36]), fill=255, width=nose_line, joint="curve")), skin * 0.55, 0.8)
    for k in (32, 34):
        nr = 0.022 * scale
        cv.paint(cv.mask(lambda d: d.ellipse(cv.px([lm[k] - nr, lm[k] + nr]), fill=255)), skin * 0.35, 0.8)

    # mouth: lips are the outer polygon, the opening is the inner polygon
    cv.paint(cv.mask(lambda d: d.polygon(cv.px(lm[48:60]), fill=255)), lips)
    inner = lm[60:68]
    if np.linalg.norm(inner[2] - inner[6]) > 0.25 / (size * ss):
        im = cv.mask(lambda d: d.polygon(cv.px(inner), fill=255))
        cv.paint(im, [0.25, 0.05, 0.06])
        if smiling >= 0.5:  # teeth along the upper half of the opening
            teeth = np.concatenate([inner[0:5], (inner[[4, 3, 2, 1, 0]] * 0.55 + inner[[4, 5, 6, 7, 0]] * 0.45)], 0)
            cv.paint(cv.mask(lambda d: d.polygon(cv.px(teeth), fill=255)) * im, [0.95, 0.93, 0.88])
    mouth_line = max(1, int(cv.big * scale * 0.012))
    cv.paint(cv.mask(lambda d: d.line(cv.px(np.concatenate([inner[0:5], inner[[5, 6, 7, 0]]])), fill=255,
                                      width=mouth_line, joint="curve")), lips * 0.45, 0.7)

    img = cv.result().astype(np.float32)
    vec = np.array([attrs[n] for n in ATTRIBUTES], dtype=np.float32)
    return img, np.clip(lm, 0.0, 1.0).astype(np.float32), vec


__all__ = ["ATTRIBUTES", "FLIP_68", "canonical_landmarks", "pose", "render_face"]
