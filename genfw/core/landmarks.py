"""68-point face landmark detectors (kind `landmarks`): `core.dlib` and `core.fan`.

Both are called as `detector(images)` with images N x C x H x W in [0, 1] and return
`(landmarks N x 68 x 2 in [0, 1] as (x, y) in iBUG order, found N bool)`. Coordinates use the
pixel-centre convention of genfw's landmark data: pixel index p maps to (p + 0.5) / size. An image
with no face gets found False (its landmarks are zeros); with several faces the largest is kept.

Weights come from named assets (`genfw.core.weights`), never from a library's own downloader:
`dlib-68` (ships in face-recognition-models), `fan-2d` and `s3fd` (face-alignment's files).
"""
from __future__ import annotations

import abc

import json
from pathlib import Path

import numpy as np
import torch
from attrs import define, field, validators as v

from genfw.core.errors import GenfwError

NUM_POINTS = 68
# face-alignment's network code, crop and heat-map decoding are used as they are; these are the
# versions they were tested with (their LandmarksType and detector modules move between releases)
FACE_ALIGNMENT_RANGE = ">=1.4,<1.6"


def to_uint8_hwc(image: torch.Tensor) -> np.ndarray:
    """C x H x W in [0, 1] (1 or 3 channels) -> H x W x 3 uint8 RGB, as both libraries expect."""
    if image.ndim != 3 or image.shape[0] not in (1, 3):
        raise GenfwError(f"landmark detection needs C x H x W images with 1 or 3 channels, got {tuple(image.shape)}")
    x = image.detach().float().cpu().clamp(0, 1)
    if x.shape[0] == 1:
        x = x.expand(3, -1, -1)
    return np.ascontiguousarray((x.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8))


def pixels_to_unit(points: np.ndarray, width: int, height: int) -> np.ndarray:
    return (np.asarray(points, dtype=np.float64) + 0.5) / np.array([width, height], dtype=np.float64)


def unit_to_pixels(points: np.ndarray, width: int, height: int) -> np.ndarray:
    return np.asarray(points, dtype=np.float64) * np.array([width, height], dtype=np.float64) - 0.5


def _check_batch(images: torch.Tensor) -> torch.Tensor:
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise GenfwError(f"landmark detectors take N x C x H x W image tensors, got "
                         f"{tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__}")
    return images


# --- dlib ----------------------------------------------------------------------------------------
class _Detector(abc.ABC):
    """Batch interface shared by the backends: subclasses find one face's 68 pixel points."""

    clamp = False  # keep points inside the image (decoders that can overshoot the border)

    @abc.abstractmethod
    def detect_one(self, image: torch.Tensor) -> np.ndarray | None:
        """68 x 2 pixel points of the largest face in one C x H x W image, or None."""

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N x 68 x 2 landmarks in [0, 1], N found flags); zeros where no face was found."""
        images = _check_batch(images)
        h, w = images.shape[-2:]
        out = torch.zeros(len(images), NUM_POINTS, 2)
        found = torch.zeros(len(images), dtype=torch.bool)
        for i, img in enumerate(images):
            pts = self.detect_one(img)
            if pts is not None:
                unit = torch.from_numpy(pixels_to_unit(pts, w, h)).float()
                out[i] = unit.clamp(0, 1) if self.clamp else unit
                found[i] = True
        return out, found


@define(kw_only=True)
class DlibConfig:
    weights: str = ""                 # explicit shape_predictor_68_face_landmarks.dat ("" = the dlib-68 asset)
    upsample: int = field(default=1, validator=v.ge(0))   # detector up-sampling passes (finds smaller faces)


class DlibLandmarks(_Detector):
    """dlib's HOG frontal face detector + 68-point shape predictor (Kazemi & Sullivan)."""

    def __init__(self, cfg: DlibConfig | None = None) -> None:
        self.cfg = cfg or DlibConfig()
        try:
            import dlib
        except ImportError:
            raise GenfwError("the dlib landmark backend needs dlib: pip install 'genfw[landmarks]' "
                             "(dlib-bin and face-recognition-models)") from None
        from genfw.core.weights import resolve

        path = resolve("dlib-68", self.cfg.weights)
        try:
            self.predictor = dlib.shape_predictor(str(path))
        except RuntimeError as exc:
            raise GenfwError(f"{path} is not a dlib shape predictor: {exc}") from None
        self.path = path
        self.face_detector = dlib.get_frontal_face_detector()
        self.rect = dlib.rectangle

    def detect_one(self, image: torch.Tensor) -> np.ndarray | None:
        """68 x 2 pixel coordinates of the largest face, or None."""
        img = to_uint8_hwc(image)
        rects = list(self.face_detector(img, self.cfg.upsample))
        if not rects:
            return None
        r = max(rects, key=lambda r: r.width() * r.height())
        shape = self.predictor(img, r)
        if shape.num_parts != NUM_POINTS:
            raise GenfwError(f"{self.path} predicts {shape.num_parts} points, not 68")
        return np.array([[shape.part(i).x, shape.part(i).y] for i in range(NUM_POINTS)], dtype=np.float64)



# --- face-alignment (FAN) ------------------------------------------------------------------------
def landmarks_type_2d(module):
    """face-alignment's 2D landmarks enum member: `TWO_D` since 1.4, `_2D` before."""
    lt = getattr(module, "LandmarksType", None)
    for name in ("TWO_D", "_2D"):
        if lt is not None and hasattr(lt, name):
            return getattr(lt, name)
    raise GenfwError(f"unsupported face-alignment version {getattr(module, '__version__', '?')}: no "
                     f"LandmarksType.TWO_D or _2D; install face-alignment{FACE_ALIGNMENT_RANGE}")


@define(kw_only=True)
class FANConfig:
    weights: str = ""                 # explicit 2DFAN4 file ("" = the fan-2d asset)
    detector_weights: str = ""        # explicit S3FD file ("" = the s3fd asset)
    device: str = "cpu"               # cpu | cuda | cuda:N
    flip_input: bool = True           # average with the mirrored crop, as face-alignment does by default
    threshold: float = field(default=0.5, validator=[v.ge(0.0), v.le(1.0)])   # S3FD face score
    nms: float = field(default=0.3, validator=[v.gt(0.0), v.le(1.0)])


class FANLandmarks(_Detector):
    """face-alignment's S3FD face detector and 2D-FAN-4, with weights from genfw's assets.

    The library's own `FaceAlignment` class would download its weights; here the same networks,
    crop and heat-map decoding are driven directly, and the weights are loaded with the safe
    loader from the resolved files (torch hub cache, genfw cache or an explicit path)."""

    clamp = True  # FAN decodes from a 64 x 64 heat map; points may fall just outside the image

    def __init__(self, cfg: FANConfig | None = None) -> None:
        self.cfg = cfg or FANConfig()
        try:
            import face_alignment
            from face_alignment import utils as fa_utils
            from face_alignment.detection.sfd.bbox import nms
            from face_alignment.detection.sfd.detect import batch_detect
            from face_alignment.detection.sfd.net_s3fd import s3fd
            from face_alignment.models import FAN
        except ImportError as exc:
            raise GenfwError(f"the fan landmark backend needs face-alignment{FACE_ALIGNMENT_RANGE} "
                             f"(pip install 'face-alignment{FACE_ALIGNMENT_RANGE}'): {exc}") from None
        landmarks_type_2d(face_alignment)
        from genfw.core.weights import load_tensors

        self.utils, self.nms, self.batch_detect = fa_utils, nms, batch_detect
        self.device = self.cfg.device
        self.fan = self._load(FAN(4), load_tensors("fan-2d", self.cfg.weights), "fan-2d")
        self.s3fd = self._load(s3fd(), load_tensors("s3fd", self.cfg.detector_weights), "s3fd")
        try:
            from face_alignment.detection.core import REFERENCE_SCALE as ref  # noqa: N811
        except ImportError:
            ref = 195.0
        self.reference_scale = float(ref)
        self.center_offset = float(getattr(fa_utils, "CENTER_Y_OFFSET", 0.12))

    def _load(self, net: torch.nn.Module, sd: dict, name: str) -> torch.nn.Module:
        try:
            net.load_state_dict(sd)
        except RuntimeError as exc:
            first = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
            raise GenfwError(f"{name} weights do not fit face-alignment's network: {first}") from None
        return net.to(self.device).eval()

    def face_boxes(self, image_u8: np.ndarray) -> np.ndarray:
        """K x 5 (x1, y1, x2, y2, score) S3FD boxes over the threshold, after NMS."""
        t = torch.from_numpy(image_u8.transpose(2, 0, 1).copy()).unsqueeze(0).float()
        boxes = self.batch_detect(self.s3fd, t, device=self.device)[0]
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 5)
        if len(boxes) == 0:
            return boxes
        boxes = boxes[self.nms(boxes, self.cfg.nms)].reshape(-1, 5)
        return boxes[boxes[:, 4] > self.cfg.threshold]

    @torch.no_grad()
    def landmarks_in_box(self, image_u8: np.ndarray, box) -> np.ndarray:
        """68 x 2 pixel coordinates of the face in `box` (x1, y1, x2, y2)."""
        u = self.utils
        x1, y1, x2, y2 = (float(c) for c in box[:4])
        center = np.array([x2 - (x2 - x1) / 2.0, y2 - (y2 - y1) / 2.0])
        center[1] -= (y2 - y1) * self.center_offset
        scale = (x2 - x1 + y2 - y1) / self.reference_scale
        crop = u.crop(image_u8, center, scale).transpose((2, 0, 1)).astype(np.float32) / 255.0
        inp = torch.from_numpy(crop).unsqueeze(0).to(self.device)
        hm = self.fan(inp)
        hm = (hm[-1] if isinstance(hm, (list, tuple)) else hm).detach()
        if self.cfg.flip_input:
            fl = self.fan(u.flip(inp))
            hm = hm + u.flip((fl[-1] if isinstance(fl, (list, tuple)) else fl).detach(), is_label=True)
        res = u.get_preds_fromhm(hm.cpu().float().numpy(), center, scale)
        pts_img = res[1]
        return np.asarray(pts_img, dtype=np.float64).reshape(NUM_POINTS, 2)

    def detect_one(self, image: torch.Tensor) -> np.ndarray | None:
        img = to_uint8_hwc(image)
        boxes = self.face_boxes(img)
        if len(boxes) == 0:
            return None
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        return self.landmarks_in_box(img, boxes[int(np.argmax(area))])



# --- landmark files ------------------------------------------------------------------------------
def read_landmarks_json(path: str | Path, width: int, height: int) -> torch.Tensor:
    """N x 68 x 2 in [0, 1] from JSON: a 68 x 2 list, a list of them, or {"landmarks": ...} (as
    `genfw landmarks --json` writes). Values all within [0, 1] are taken as unit coordinates,
    anything larger as pixels of a width x height image."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise GenfwError(f"landmarks file not found: {p}")
    try:
        obj = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise GenfwError(f"{p} is not JSON: {exc}") from None
    if isinstance(obj, dict):
        if "landmarks" not in obj:
            raise GenfwError(f"{p}: expected a 'landmarks' key or a 68 x 2 list")
        obj = obj["landmarks"]
    if isinstance(obj, list) and obj and isinstance(obj[0], dict):
        obj = [o.get("landmarks") for o in obj]
    try:
        arr = np.asarray(obj, dtype=np.float64)
    except (TypeError, ValueError):
        raise GenfwError(f"{p}: landmarks must be numbers shaped 68 x 2 (x, y)") from None
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[1:] != (NUM_POINTS, 2) or not np.isfinite(arr).all():
        raise GenfwError(f"{p}: landmarks must be 68 x 2 (x, y) finite numbers, got shape {arr.shape}")
    if arr.min() < 0:
        raise GenfwError(f"{p}: negative landmark coordinates")
    if arr.max() > 1.0:
        arr = pixels_to_unit(arr, width, height)
        if arr.max() > 1.0 + 1e-6:
            raise GenfwError(f"{p}: pixel landmarks fall outside the {width}x{height} image")
    return torch.from_numpy(arr).float().clamp(0, 1)


def register(registry) -> None:
    registry.register("landmarks", "dlib", DlibLandmarks, config=DlibConfig,
                      help="dlib HOG face detector + 68-point shape predictor (weights: dlib-68 asset, "
                           "ships in face-recognition-models; works offline)")
    registry.register("landmarks", "fan", FANLandmarks, config=FANConfig,
                      help="face-alignment S3FD + 2D-FAN-4, 68 points (weights: fan-2d and s3fd assets); "
                           "the FOAM paper's choice")
