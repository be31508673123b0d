"""Generation evaluation: N seeded samples against the first N real images.

Samples are drawn `CHUNK` at a time, chunk k from a generator seeded with SeedSequence([seed, k]),
so sample i depends on (seed, i) only, never on --batch-size (which sets the Inception batch).
FID / KID / IS / precision-recall come from torch-fidelity on the samples' and the real images'
Inception features (the real ones cached by content hash, see `features`). MS-SSIM diversity (IntroVAE
table 2): the mean MS-SSIM of `pairs` random pairs of distinct images, the pairs drawn up front from
the seed so only the images in them are kept in memory.
"""
from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path

import attrs
import numpy as np
import torch

from genfw.core.errors import GenfwError

CHUNK = 8
FIDELITY = ("fid", "kid", "isc", "prc")
METRICS = (*FIDELITY, "msssim")
GRID_SAMPLES = 64
NEIGHBOURS = 8      # samples shown with their nearest real images
NEIGHBOURS_K = 3


@attrs.define(kw_only=True)
class GenerationEvalOptions:
    count: int = 1000
    batch_size: int = 32
    metrics: list[str] = attrs.field(factory=lambda: ["fid", "kid", "msssim"])
    weights: str = ""
    seed: int = 0
    device: str = "cpu"
    progress: bool = True
    pairs: int = 1000
    sample_options: dict = attrs.field(factory=dict)   # e.g. {"lis_steps": 0}


def pair_indices(n: int, pairs: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    if n < 2:
        raise GenfwError("MS-SSIM diversity needs at least two images")
    g = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, 7]).generate_state(1)[0]))
    i = torch.randint(0, n, (pairs,), generator=g)
    j = (i + torch.randint(1, n, (pairs,), generator=g)) % n  # never the same image
    return i, j


def _pairs_msssim(keep: dict[int, torch.Tensor], i: torch.Tensor, j: torch.Tensor, desc: str = "MS-SSIM pairs",
                  progress: bool = False) -> float:
    from tqdm import tqdm

    from genfw.core.msssim import ms_ssim

    total = 0.0
    for s in tqdm(range(0, len(i), 64), desc=desc, unit="batch", disable=not progress, leave=False):
        a = torch.stack([keep[int(k)] for k in i[s:s + 64]])
        b = torch.stack([keep[int(k)] for k in j[s:s + 64]])
        total += float(ms_ssim(a, b).sum())
    return total / len(i)


def sample_chunk(algo, seed: int, k: int, n: int, options: dict) -> torch.Tensor:
    state = np.random.SeedSequence([seed, k]).generate_state(1)[0]
    g = torch.Generator().manual_seed(int(state))
    with torch.no_grad():
        return algo.sample(n, generator=g, **options).detach().float().cpu().clamp(0, 1)


def evaluate_generation(algo, dataset, opts: GenerationEvalOptions, workdir: Path, train_data=None) -> dict:
    """`train_data`: where to look for the samples' nearest neighbours when it is not `dataset` itself
    (a held-out evaluation split); None = `dataset` is the training data."""
    from tqdm import tqdm

    from genfw.core.eval import features as F
    from genfw.core.msssim import num_scales

    wanted = [m for m in FIDELITY if m in opts.metrics]
    # real images always: the reference for every metric (IS of real images too) and the neighbours
    n = opts.count
    n_real = min(n, len(dataset))
    if n_real < 2:
        raise GenfwError("the real-image dataset has fewer than 2 images")
    extractor = F.InceptionFeatures(opts.weights, opts.batch_size, opts.device, opts.progress) if wanted else None
    tmp = Path(tempfile.mkdtemp(prefix="genfw-eval-"))
    try:
        (tmp / "samples").mkdir()
        (tmp / "real").mkdir()
        pi, pj = pair_indices(n, opts.pairs, opts.seed) if "msssim" in opts.metrics else (torch.zeros(0), torch.zeros(0))
        keep_idx = set(pi.tolist()) | set(pj.tolist())
        kept: dict[int, torch.Tensor] = {}
        grid: list[torch.Tensor] = []
        files: list[Path] = []
        bar = tqdm(total=n, desc="samples", unit="img", disable=not opts.progress, leave=False)
        for k in range(0, (n + CHUNK - 1) // CHUNK):
            start = k * CHUNK
            x = sample_chunk(algo, opts.seed, k, min(CHUNK, n - start), opts.sample_options)
            for j, img in enumerate(x):
                i = start + j
                if i in keep_idx:
                    kept[i] = img
                if len(grid) < GRID_SAMPLES:
                    grid.append(img)
                p = tmp / "samples" / f"{i:05d}.png"
                F.save_uint8_png(F.to_uint8_rgb(img[None])[0], p)
                files.append(p)
            bar.update(len(x))
        bar.close()
        out: dict = {"overall": {}, "provenance_extra": {"sample_chunk": CHUNK, "sample_options": opts.sample_options,
                                                         "num_samples": n, "image_size": list(grid[0].shape[-2:])}}
        real_files: list[Path] = []
        real_hash = hashlib.sha256()
        ri, rj = pair_indices(n_real, opts.pairs, opts.seed + 1) if "msssim" in opts.metrics else (torch.zeros(0),) * 2
        rkeep = set(ri.tolist()) | set(rj.tolist())
        rkept: dict[int, torch.Tensor] = {}
        bar = tqdm(total=n_real, desc="real images", unit="img", disable=not opts.progress, leave=False)
        for i in range(n_real):
            img = dataset[i]["image"].float()
            if i in rkeep:
                rkept[i] = img
            u8 = F.to_uint8_rgb(img[None])[0]
            real_hash.update(np.array(u8.shape[-2:], dtype="<u4").tobytes())
            real_hash.update(u8.contiguous().numpy().tobytes())
            p = tmp / "real" / f"{i:05d}.png"
            F.save_uint8_png(u8, p)
            real_files.append(p)
            bar.update(1)
        bar.close()
        if "msssim" in opts.metrics:
            out["overall"]["msssim"] = _pairs_msssim(kept, pi, pj, "MS-SSIM pairs (samples)", opts.progress)
            out["overall"]["msssim_real"] = _pairs_msssim(rkept, ri, rj, "MS-SSIM pairs (real)", opts.progress)
            out["provenance_extra"]["msssim"] = {"pairs": opts.pairs, "scales": num_scales(int(grid[0].shape[-1])),
                                                 "real_images": n_real}
        fake_feats = real_feats = None
        if wanted:
            fake_feats = extractor.extract(F.PngImages(files), desc="Inception features (samples)")
            real_feats, ref = (extractor.reference(F.PngImages(real_files), real_hash.hexdigest())
                               if n_real else (None, None))
            s, used = F.scores(fake_feats, real_feats, wanted, seed=opts.seed)
            if "isc" in wanted:  # the real images' IS: the paper's reference row
                s_real, _ = F.scores(real_feats, None, ["isc"], seed=opts.seed)
                out["overall"]["isc_real"] = s_real["isc"]["mean"]
            for name, v in s.items():
                out["overall"].update({name: v["value"]} if name == "fid" else
                                      {name: v["mean"], f"{name}_std": v["std"]} if name in ("kid", "isc") else v)
            out["fidelity_provenance"] = {**extractor.provenance, **used, "reference": ref}
        out["_grid"] = grid
        if train_data is None:
            out["_neighbours"] = _neighbours(grid[:NEIGHBOURS], fake_feats, real_feats, real_files)
        else:
            out["_neighbours"] = _train_neighbours(grid[:NEIGHBOURS], train_data, n, opts.progress)
        out["provenance_extra"]["neighbours"] = {"data": "evaluation images" if train_data is None else
                                                 "training data", "space": out["_neighbours"]["space"]}
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _neighbours(samples: list[torch.Tensor], fake_feats, real_feats, real_files: list[Path]) -> dict:
    """For the first samples, the NEIGHBOURS_K nearest real images: in Inception pool space when the
    features exist (what FID sees), else by mean squared pixel difference (streamed over the set)."""
    from genfw.core.eval.features import PngImages

    reals = PngImages(real_files)
    channels = samples[0].shape[0]

    def real_image(i: int) -> torch.Tensor:
        x = reals[i].float() / 255
        return x[:1] if channels == 1 else x

    if fake_feats is not None and real_feats is not None:
        space = "inception-2048 (euclidean)"
        d = torch.cdist(fake_feats["2048"][:len(samples)].double(), real_feats["2048"].double())
    else:
        space = "pixels (mean squared difference)"
        x = torch.stack(samples)
        d = torch.stack([((x - real_image(i)[None]) ** 2).flatten(1).mean(1) for i in range(len(reals))], dim=1)
    rows = []
    for s_i, x in enumerate(samples):
        near = torch.argsort(d[s_i])[:NEIGHBOURS_K].tolist()
        rows.append((s_i, x, [(int(r), real_image(int(r)), float(d[s_i, r])) for r in near]))
    return {"space": space, "rows": rows}


def _train_neighbours(samples: list[torch.Tensor], train_data, count: int, progress: bool) -> dict:
    """Nearest images among the first `count` training images, by mean squared pixel difference,
    streamed (the training split has no cached Inception features)."""
    from tqdm import tqdm

    x = torch.stack(samples)
    n = min(count, len(train_data))
    best: list[list[tuple[float, int]]] = [[] for _ in samples]
    for i in tqdm(range(n), desc="nearest training images", disable=not progress, leave=False):
        img = train_data[i]["image"].float()
        d = ((x - img[None]) ** 2).flatten(1).mean(1)
        for s_i in range(len(samples)):
            best[s_i] = sorted(best[s_i] + [(float(d[s_i]), i)])[:NEIGHBOURS_K]
    rows = [(s_i, samples[s_i], [(i, train_data[i]["image"].float(), dist) for dist, i in best[s_i]])
            for s_i in range(len(samples))]
    return {"space": f"pixels (mean squared difference), first {n} training images", "rows": rows}
