"""Inception features through torch-fidelity, computed once per image set, and the scores on them.

`genfw.core.fidelity.FidelityMetric` hands whole image sets to `torch_fidelity.calculate_metrics`.
A results folder needs more from one pass: FID / KID of every hole-ratio bin (LaMa reports them per
mask-area bin), nearest training neighbours, and the real set's features reused across runs. So
here torch-fidelity's own pieces are called directly: its `inception-v3-compat` extractor
(`create_feature_extractor`, `get_featuresdict_from_dataset`) and its metric functions
(`fid_features_to_statistics` / `fid_statistics_to_metric`, `kid_features_to_metric`,
`isc_features_to_metric`, `prc_features_to_metric`); the numbers equal `calculate_metrics` on the
same images (tested).

Reference (real-set) features are cached as safetensors in ``<genfw cache>/reference-features/``,
keyed by the sha256 of the real images as fed to Inception (uint8 RGB, in order) and of the
weights file, so another run, task or checkpoint on the same images reuses them.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from genfw.core.errors import GenfwError
from genfw.core.fidelity import FEATURE_EXTRACTOR, INCEPTION_INPUT_SIZE, WEIGHTS_ASSET, resolve_weights, to_uint8_rgb

LAYERS = ("2048", "logits_unbiased")   # pool features (FID, KID, PRC) and logits (IS)
_LAYER_OF = {"fid": "2048", "kid": "2048", "prc": "2048", "isc": "logits_unbiased"}


def images_sha256(batches) -> str:
    """sha256 over uint8 RGB images (N x 3 x H x W batches), each prefixed with its H and W."""
    h = hashlib.sha256()
    for b in batches:
        for img in b:
            h.update(np.array(img.shape[-2:], dtype="<u4").tobytes())
            h.update(img.contiguous().numpy().tobytes())
    return h.hexdigest()


class Uint8Images(Dataset):
    """A list of uint8 3 x H x W tensors as torch-fidelity input."""

    def __init__(self, images: list[torch.Tensor]) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]


class PngImages(Dataset):
    """uint8 3 x H x W tensors read back from PNG files (lossless: the exact bytes written)."""

    def __init__(self, files: list[Path]) -> None:
        self.files = list(files)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        from PIL import Image

        with Image.open(self.files[i]) as im:
            arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
        return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def save_uint8_png(img: torch.Tensor, path: Path) -> None:
    from PIL import Image

    Image.fromarray(img.permute(1, 2, 0).numpy()).save(path)


def reference_cache_dir() -> Path:
    from genfw.core.weights import cache_dir

    return cache_dir().parent / "reference-features"


class InceptionFeatures:
    """torch-fidelity's `inception-v3-compat` on genfw's safely loaded `inception-fid` weights."""

    def __init__(self, weights: str = "", batch_size: int = 32, device: str = "cpu", progress: bool = True) -> None:
        import torch_fidelity
        from torch_fidelity.utils import create_feature_extractor

        from genfw.core import weights as weights_mod

        self.cuda = str(device).startswith("cuda")
        if self.cuda and not torch.cuda.is_available():
            raise GenfwError("--device cuda asked for, but CUDA is not available")
        self.batch_size, self.progress = int(batch_size), progress
        path, source = resolve_weights(weights)
        sd = weights_mod.read_tensor_file(path)
        with tempfile.TemporaryDirectory() as td:
            plain = os.path.join(td, "inception.pth")
            torch.save(sd, plain)  # plain tensors only: safe for torch-fidelity's weights_only=False load
            del sd
            try:
                self.extractor = create_feature_extractor(FEATURE_EXTRACTOR, list(LAYERS), cuda=self.cuda,
                                                          feature_extractor_weights_path=plain, verbose=False)
            except RuntimeError as exc:
                if "state_dict" in str(exc):
                    raise GenfwError(f"{path} is not torch-fidelity's Inception weights "
                                     f"({str(exc).splitlines()[0]})") from None
                raise
        self.weights_sha256 = weights_mod.sha256(path)
        self.provenance = {
            "feature_extractor": FEATURE_EXTRACTOR, "torch_fidelity": torch_fidelity.__version__,
            "weights": WEIGHTS_ASSET, "weights_file": str(path), "weights_source": source,
            "weights_sha256": self.weights_sha256, "inception_input_size": INCEPTION_INPUT_SIZE,
        }

    def extract(self, images: Dataset, desc: str = "Inception features") -> dict[str, torch.Tensor]:
        from torch_fidelity.utils import get_featuresdict_from_dataset

        if len(images) == 0:
            raise GenfwError("no images to extract Inception features from")
        if self.progress:
            import sys

            print(desc, file=sys.stderr)  # torch-fidelity's bar below it is unlabeled
        feats = get_featuresdict_from_dataset(images, self.extractor, self.batch_size, self.cuda,
                                              save_cpu_ram=True, verbose=self.progress)
        return {k: v.float().cpu() for k, v in feats.items()}

    def reference(self, images: Dataset, content_sha256: str) -> tuple[dict[str, torch.Tensor], dict]:
        """Features of a real set, from the cache when this set (by content hash) was seen before."""
        from safetensors.torch import load_file, save_file

        root = reference_cache_dir()
        path = root / f"{content_sha256[:32]}-{self.weights_sha256[:16]}.safetensors"
        info = {"sha256": content_sha256, "cache_file": str(path), "reused": False, "count": len(images)}
        if path.is_file():
            try:
                feats = load_file(str(path))
                if all(k in feats for k in LAYERS) and len(feats[LAYERS[0]]) == len(images):
                    info["reused"] = True
                    return feats, info
            except Exception:  # noqa: BLE001 - a damaged cache file is recomputed, not trusted
                pass
        feats = self.extract(images, desc="Inception features (real)")
        root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=root, suffix=".safetensors")
        os.close(fd)
        try:
            save_file({k: v.contiguous() for k, v in feats.items()}, tmp,
                      metadata={"images_sha256": content_sha256, "weights_sha256": self.weights_sha256})
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        return feats, info


def scores(gen: dict[str, torch.Tensor], real: dict[str, torch.Tensor] | None, metrics: list[str], *,
           kid_subsets: int = 100, kid_subset_size: int = 1000, isc_splits: int = 10, prc_neighborhood: int = 3,
           seed: int = 0) -> tuple[dict, dict]:
    """(scores like `genfw.core.fidelity`, settings used) from features, with torch-fidelity's functions and
    the same caps `FidelityMetric` applies for small sets."""
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
    from torch_fidelity.metric_isc import isc_features_to_metric
    from torch_fidelity.metric_kid import kid_features_to_metric
    from torch_fidelity.metric_prc import prc_features_to_metric

    n_gen = len(gen[LAYERS[0]])
    n_real = len(real[LAYERS[0]]) if real is not None else 0
    out, used = {}, {"feature_layers": {m: _LAYER_OF[m] for m in metrics}}
    if "fid" in metrics:
        fid = fid_statistics_to_metric(fid_features_to_statistics(gen["2048"]),
                                       fid_features_to_statistics(real["2048"]), verbose=False)
        out["fid"] = {"value": fid["frechet_inception_distance"]}
    if "kid" in metrics:
        subset = max(2, min(kid_subset_size, n_gen, n_real))
        k = kid_features_to_metric(gen["2048"], real["2048"], kid_subsets=kid_subsets, kid_subset_size=subset,
                                   rng_seed=seed, verbose=False)
        out["kid"] = {"mean": k["kernel_inception_distance_mean"], "std": k["kernel_inception_distance_std"]}
        used.update(kid_subsets=kid_subsets, kid_subset_size=subset)
    if "isc" in metrics:
        splits = max(1, min(isc_splits, n_gen))
        i = isc_features_to_metric(gen["logits_unbiased"], splits, True, seed)
        out["isc"] = {"mean": i["inception_score_mean"], "std": i["inception_score_std"]}
        used["isc_splits"] = splits
    if "prc" in metrics:
        k = min(prc_neighborhood, max(1, min(n_gen, n_real) - 1))
        p = prc_features_to_metric(gen["2048"], real["2048"], prc_neighborhood=k, save_cpu_ram=True, verbose=False)
        out["prc"] = {"precision": p["precision"], "recall": p["recall"], "f_score": p["f_score"]}
        used["prc_neighborhood"] = k
    used["num_samples"] = {"generated": n_gen, "real": n_real}
    return out, used


def subset(feats: dict[str, torch.Tensor], index: list[int]) -> dict[str, torch.Tensor]:
    idx = torch.as_tensor(index, dtype=torch.long)
    return {k: v[idx] for k, v in feats.items()}


__all__ = ["InceptionFeatures", "scores", "subset", "images_sha256", "Uint8Images", "PngImages", "to_uint8_rgb"]
