"""Sample-quality metrics through torch-fidelity: FID, KID, IS (`isc`) and precision/recall (`prc`).

Every score comes with its provenance (feature extractor and layer, the weights file's sha256,
sample counts, image size), because an FID is only comparable to another FID computed the same way.

All four metrics use torch-fidelity's `inception-v3-compat` extractor (the TF 2015-12-05 Inception
port every published FID uses), so one weights asset, `inception-fid`, serves them all. Precision/
recall therefore runs in Inception's 2048-d pool space (torch-fidelity's `feature_layer_prc="2048"`),
not in the VGG-16 fc2 space of Kynkäänniemi et al.; the provenance records the layer per metric.

The weights are resolved offline-first by `genfw.core.weights` and read with the safe loader
(safetensors or `torch.load(weights_only=True)`); torch-fidelity itself unpickles its weights file
with `weights_only=False`, so it only ever sees a copy genfw wrote from verified plain tensors.

There is no offline fallback feature space: without the Inception weights these metrics refuse to
run (with the one-line how-to) rather than report a number that looks like an FID and is not one.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from attrs import define, field, validators as v
from torch.utils.data import Dataset

from genfw.core.errors import GenfwError, MissingWeightsError

METRICS = ("fid", "kid", "isc", "prc")
WEIGHTS_ASSET = "inception-fid"
FEATURE_EXTRACTOR = "inception-v3-compat"
INCEPTION_INPUT_SIZE = 299  # torch-fidelity resizes every input to this (TF1-compatible bilinear)
_UNARY = ("isc",)  # metrics of the generated set alone


# --- inputs -------------------------------------------------------------------------------------
def to_uint8_rgb(images: torch.Tensor) -> torch.Tensor:
    """N x C x H x W floats in [0, 1] -> N x 3 x H x W uint8 (grey repeated to RGB), as Inception wants."""
    if images.dim() != 4:
        raise GenfwError(f"expected images N x C x H x W, got shape {tuple(images.shape)}")
    c = images.shape[1]
    if c == 1:
        images = images.expand(-1, 3, -1, -1)
    elif c != 3:
        raise GenfwError(f"FID/KID/IS need grey or RGB images; these have {c} channels")
    return (images.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8).contiguous()


class BatchedImages(Dataset):
    """`count` images produced `batch_size` at a time by `make_batch(start, stop)` (floats in [0, 1]).

    torch-fidelity reads items one by one in order; producing whole batches lazily keeps memory at
    one batch, so 50k samples at 256 px never sit in RAM.
    """

    def __init__(self, count: int, batch_size: int, make_batch: Callable[[int, int], torch.Tensor]) -> None:
        self.count, self.batch_size, self.make_batch = int(count), int(batch_size), make_batch
        self._chunk: tuple[int, torch.Tensor] | None = None
        self.image_size: tuple[int, int] | None = None

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> torch.Tensor:
        if not 0 <= index < self.count:
            raise IndexError(index)
        k = index // self.batch_size
        if self._chunk is None or self._chunk[0] != k:
            start = k * self.batch_size
            batch = to_uint8_rgb(self.make_batch(start, min(self.count, start + self.batch_size)))
            self.image_size = (int(batch.shape[-2]), int(batch.shape[-1]))
            self._chunk = (k, batch)
        return self._chunk[1][index - k * self.batch_size]


def tensor_images(images: torch.Tensor, batch_size: int = 64) -> BatchedImages:
    """A fixed N x C x H x W tensor in [0, 1] as a torch-fidelity input."""
    return BatchedImages(len(images), batch_size, lambda a, b: images[a:b])


def sampled_images(algo, count: int, batch_size: int, seed: int) -> BatchedImages:
    """`count` samples of an algorithm with the `sample` capability; batch k uses its own seeded
    generator, so the set depends only on (seed, batch_size), not on the order batches are drawn."""

    def make(start: int, stop: int) -> torch.Tensor:
        state = np.random.SeedSequence([seed, start // batch_size]).generate_state(1)[0]
        gen = torch.Generator().manual_seed(int(state))
        with torch.no_grad():
            return algo.sample(stop - start, generator=gen)

    return BatchedImages(count, batch_size, make)


def dataset_images(dataset, count: int, batch_size: int) -> BatchedImages:
    """The first `count` images of a genfw dataset (items are mappings with `image`)."""
    n = min(count, len(dataset))
    if n == 0:
        raise GenfwError("the real-image dataset is empty")
    return BatchedImages(n, batch_size, lambda a, b: torch.stack([dataset[i]["image"] for i in range(a, b)]))


# --- weights ------------------------------------------------------------------------------------
def resolve_weights(path: str | Path = "") -> tuple[Path, str]:
    """(file, source label) of the Inception weights; MissingWeightsError with the how-to when absent."""
    from genfw.core import weights

    found, source = weights.locate(WEIGHTS_ASSET, path)
    if found is not None:
        return found, source
    try:
        return weights.resolve(WEIGHTS_ASSET, path), "download"
    except MissingWeightsError as exc:
        if path:
            raise
        raise MissingWeightsError(f"{exc}; or pass `--weights PATH` to `genfw eval`") from None


def _origin_sha256(p: Path) -> str:
    """sha256 of the original .pth a cached safetensors file was converted from ('' if unknown)."""
    if p.suffix != ".safetensors":
        return ""
    from safetensors import safe_open

    try:
        with safe_open(str(p), framework="pt") as fh:
            return (fh.metadata() or {}).get("sha256", "")
    except Exception:  # noqa: BLE001 - unreadable metadata only loses this provenance detail
        return ""


# --- the metric ---------------------------------------------------------------------------------
def _metric_list(value) -> list[str]:
    items = [m.strip() for m in (value.split(",") if isinstance(value, str) else value) if m.strip()]
    return items


def _check_metrics(inst, attribute, value) -> None:
    bad = [m for m in value if m not in METRICS]
    if bad or not value:
        raise ValueError(f"unknown fidelity metric {', '.join(bad) or '(none)'}; available: {', '.join(METRICS)}")


@define(kw_only=True)
class FidelityConfig:
    metrics: list[str] = field(factory=lambda: ["fid", "kid"], converter=_metric_list, validator=_check_metrics)
    weights: str = ""              # explicit Inception weights file; "" = genfw cache, then torch hub cache
    batch_size: int = field(default=32, validator=v.gt(0))
    kid_subsets: int = field(default=100, validator=v.gt(0))
    kid_subset_size: int = field(default=1000, validator=v.gt(1))  # capped at the sample counts
    isc_splits: int = field(default=10, validator=v.gt(0))         # capped at the sample count
    prc_neighborhood: int = field(default=3, validator=v.gt(0))
    seed: int = 0                  # KID subsets and IS shuffling
    device: str = "cpu"            # cpu | cuda (torch-fidelity runs on the current CUDA device)


class FidelityMetric:
    """`compute(generated, real)` -> {"metrics": {...}, "provenance": {...}} via torch_fidelity.calculate_metrics."""

    def __init__(self, cfg: FidelityConfig | None = None) -> None:
        self.cfg = cfg or FidelityConfig()

    def compute(self, generated: Dataset | torch.Tensor, real: Dataset | torch.Tensor | None = None) -> dict:
        import torch_fidelity

        c = self.cfg
        generated = tensor_images(generated, c.batch_size) if isinstance(generated, torch.Tensor) else generated
        if isinstance(real, torch.Tensor):
            real = tensor_images(real, c.batch_size)
        wanted = list(dict.fromkeys(c.metrics))
        binary = [m for m in wanted if m not in _UNARY]
        if binary and real is None:
            raise GenfwError(f"{', '.join(binary)} compare against real images, but none were given")
        n_gen, n_real = len(generated), (len(real) if real is not None else 0)
        if n_gen < 2 or (binary and n_real < 2):
            raise GenfwError(f"need at least 2 images per set (generated: {n_gen}, real: {n_real})")
        subset = min(c.kid_subset_size, n_gen, n_real) if "kid" in wanted else 0
        splits = min(c.isc_splits, n_gen) if "isc" in wanted else 0
        path, source = resolve_weights(c.weights)
        from genfw.core import weights as weights_mod

        sd = weights_mod.read_tensor_file(path)
        cuda = str(c.device).startswith("cuda")
        if cuda and not torch.cuda.is_available():
            raise GenfwError("--device cuda asked for, but CUDA is not available")
        with tempfile.TemporaryDirectory() as td:
            plain = os.path.join(td, "inception.pth")
            torch.save(sd, plain)  # plain tensors only: safe for torch-fidelity's weights_only=False load
            del sd
            kwargs = dict(
                input1=generated, input2=real if binary else None, cuda=cuda, batch_size=c.batch_size,
                fid="fid" in wanted, kid="kid" in wanted, isc="isc" in wanted, prc="prc" in wanted,
                feature_extractor=FEATURE_EXTRACTOR, feature_extractor_weights_path=plain,
                kid_subsets=c.kid_subsets, kid_subset_size=max(subset, 2), isc_splits=max(splits, 1),
                prc_neighborhood=min(c.prc_neighborhood, max(1, min(n_gen, n_real or n_gen) - 1)),
                rng_seed=c.seed, cache=False, save_cpu_ram=True, verbose=False,
            )
            try:
                raw = torch_fidelity.calculate_metrics(**kwargs)
            except RuntimeError as exc:
                if "state_dict" in str(exc):
                    raise GenfwError(f"{path} is not torch-fidelity's Inception weights "
                                     f"({str(exc).splitlines()[0]})") from None
                raise
            except ValueError as exc:  # torch-fidelity's own argument checks (vassert)
                raise GenfwError(f"torch-fidelity: {exc}") from None
        scores = _scores(raw, wanted)
        size = getattr(generated, "image_size", None)
        real_size = getattr(real, "image_size", None) if real is not None else None
        extractor_cls = torch_fidelity.registry.FEATURE_EXTRACTORS_REGISTRY[FEATURE_EXTRACTOR]
        provenance = {
            "feature_extractor": FEATURE_EXTRACTOR,
            "feature_layers": {m: extractor_cls.get_default_feature_layer_for_metric(m) for m in wanted},
            "torch_fidelity": torch_fidelity.__version__,
            "weights": WEIGHTS_ASSET,
            "weights_file": str(path),
            "weights_source": source,
            "weights_sha256": weights_mod.sha256(path),
            "num_samples": {"generated": n_gen, "real": n_real if binary else 0},
            "image_size": list(size) if size else [],
            "real_image_size": list(real_size) if real_size else [],
            "inception_input_size": INCEPTION_INPUT_SIZE,
        }
        origin = _origin_sha256(path)
        if origin:
            provenance["weights_origin_sha256"] = origin
        if "kid" in wanted:
            provenance["kid_subsets"], provenance["kid_subset_size"] = c.kid_subsets, subset
        if "isc" in wanted:
            provenance["isc_splits"] = splits
        if "prc" in wanted:
            provenance["prc_neighborhood"] = kwargs["prc_neighborhood"]
        return {"metrics": scores, "provenance": provenance}


def _scores(raw: dict, wanted: list[str]) -> dict:
    out = {}
    if "fid" in wanted:
        out["fid"] = {"value": raw["frechet_inception_distance"]}
    if "kid" in wanted:
        out["kid"] = {"mean": raw["kernel_inception_distance_mean"], "std": raw["kernel_inception_distance_std"]}
    if "isc" in wanted:
        out["isc"] = {"mean": raw["inception_score_mean"], "std": raw["inception_score_std"]}
    if "prc" in wanted:
        out["prc"] = {"precision": raw["precision"], "recall": raw["recall"], "f_score": raw["f_score"]}
    return out


def format_table(result: dict) -> str:
    """Scores, then the provenance lines that make them comparable."""
    lines = [f"{'metric':<10}{'value':>14}{'':>14}"]
    for name, s in result["metrics"].items():
        if name == "fid":
            lines.append(f"{'FID':<10}{s['value']:>14.4f}")
        elif name == "kid":
            lines.append(f"{'KID':<10}{s['mean']:>14.6f}{'± ' + format(s['std'], '.6f'):>14}")
        elif name == "isc":
            lines.append(f"{'IS':<10}{s['mean']:>14.4f}{'± ' + format(s['std'], '.4f'):>14}")
        elif name == "prc":
            lines.append(f"{'precision':<10}{s['precision']:>14.4f}")
            lines.append(f"{'recall':<10}{s['recall']:>14.4f}")
            lines.append(f"{'f_score':<10}{s['f_score']:>14.4f}")
    p = result["provenance"]
    layers = ", ".join(f"{m}:{layer}" for m, layer in p["feature_layers"].items())
    size = "x".join(map(str, p["image_size"])) or "?"
    lines += [
        f"features: {p['feature_extractor']} (torch-fidelity {p['torch_fidelity']}; layers {layers}; "
        f"inputs resized {size} -> {p['inception_input_size']})",
        f"weights:  {p['weights']} sha256 {p['weights_sha256']} ({p['weights_source']}: {p['weights_file']})",
        f"samples:  {p['num_samples']['generated']} generated vs {p['num_samples']['real']} real",
    ]
    return "\n".join(lines)


def _build(cfg: FidelityConfig) -> FidelityMetric:
    return FidelityMetric(cfg)


def register(registry) -> None:
    registry.register("metric", "fidelity", _build, config=FidelityConfig,
                      help="FID / KID / IS / precision-recall via torch-fidelity (Inception weights "
                           "`inception-fid`), with provenance")
