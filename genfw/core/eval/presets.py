"""The papers' tables as presets of `genfw eval --report`: which task, metrics, mask set, size and
sample count, and the published numbers to print next to ours (papers/*.md, the source PDFs).

Each preset's `count` is the paper's evaluation size; `-n` overrides it (small on CPU). A table
evaluated at another resolution, on other data or with fewer images is printed with a warning line:
its numbers are only comparable with the paper's when all three match.
"""
from __future__ import annotations

import attrs

from genfw.core.errors import GenfwError


@attrs.frozen
class TablePreset:
    name: str
    title: str
    task: str                        # inpaint | generation
    metrics: tuple[str, ...]
    size: int                        # the paper's resolution
    data: str                        # what the paper evaluated on
    count: int                       # the paper's number of images / samples (0: not stated)
    mask_set: str = ""
    per_bin: bool = False            # columns are hole-ratio bins (else one "overall" column)
    paper: tuple = ()                # rows: (label, {column: {metric: value}})
    sweep_lis_steps: bool = False    # one row per number of LIS modules executed (0..K)
    notes: str = ""


_CSA2 = {"10-20%": dict(l1=0.72, l2=0.04, psnr=34.69, ssim=0.989),
         "20-30%": dict(l1=0.94, l2=0.07, psnr=32.58, ssim=0.982),
         "30-40%": dict(l1=2.18, l2=0.37, psnr=25.32, ssim=0.926),
         "40-50%": dict(l1=2.85, l2=0.44, psnr=24.14, ssim=0.883)}

PRESETS: dict[str, TablePreset] = {p.name: p for p in (
    TablePreset("csa-table2", "CSA table 2: CelebA, irregular holes by hole ratio", "inpaint",
                ("l1", "l2", "psnr", "ssim"), 256, "CelebA validation images", 0, mask_set="irregular",
                per_bin=True, paper=(("CSA (paper)", _CSA2),),
                notes="CSA used PConv's released irregular masks; `--mask-set DIR` scores on those files."),
    TablePreset("csa-table1", "CSA table 1: CelebA, 128 x 128 centre hole", "inpaint",
                ("l1", "l2", "ssim", "psnr"), 256, "CelebA validation images", 0, mask_set="center",
                paper=(("CSA (paper)", {"overall": dict(l1=1.83, l2=0.27, ssim=0.931, psnr=26.54)}),
                       ("CA (paper)", {"overall": dict(l1=2.64, l2=0.47, ssim=0.882, psnr=23.93)}),
                       ("Shift-Net (paper)", {"overall": dict(l1=1.97, l2=0.28, ssim=0.926, psnr=26.38)}))),
    TablePreset("foam-table1", "FOAM table 1: CelebA-HQ test set, centre masks", "inpaint",
                ("l1", "l2", "psnr"), 256, "CelebA-HQ test split", 3009, mask_set="center",
                paper=(("FOAM 128 px (paper)", {"overall": dict(l1=7.8, l2=1.42, psnr=19.15)}),
                       ("GL 128 px (paper)", {"overall": dict(l1=9.3, l2=1.75, psnr=18.22)}),
                       ("FOAM 256 px (paper)", {"overall": dict(l1=7.05, l2=1.21, psnr=19.97)}),
                       ("CTX 256 px (paper)", {"overall": dict(l1=8.33, l2=1.75, psnr=18.41)})),
                notes="the paper evaluates at 128 and 256 px: train (or grow) the model to that size."),
    TablePreset("introvae-table2", "IntroVAE table 2: FID (CelebA-HQ 1024 px, 50k) and MS-SSIM (CelebA 128 px, 10k pairs)",
                "generation", ("fid", "msssim"), 1024, "CelebA-HQ (FID) / CelebA (MS-SSIM)", 50000,
                paper=(("IntroVAE (paper)", {"overall": dict(fid=5.19, msssim=0.2719)}),
                       ("PGGAN (paper)", {"overall": dict(fid=7.30)})),
                notes="FID from 50k samples at 1024 px; MS-SSIM over 10k pairs at 128 px (use --pairs 10000)."),
    TablePreset("lis-is", "LIS appendix D: Inception Score with 0..K of K LIS modules executed", "generation",
                ("isc",), 32, "CIFAR-10 (and CelebA 80 px)", 50000, sweep_lis_steps=True,
                paper=(("CIFAR-10 real (paper)", {"overall": dict(isc=11.41)}),
                       ("G-LIS 0 of 3 (paper)", {"overall": dict(isc=4.59)}),
                       ("G-LIS 1 of 3 (paper)", {"overall": dict(isc=5.13)}),
                       ("G-LIS 2 of 3 (paper)", {"overall": dict(isc=4.88)}),
                       ("G-LIS 3 of 3 (paper)", {"overall": dict(isc=5.02)}),
                       ("CelebA real, centre crops (paper)", {"overall": dict(isc=3.29)}),
                       ("CelebA G-LIS 0 of 3 (paper)", {"overall": dict(isc=2.58)}),
                       ("CelebA G-LIS 1 of 3 (paper)", {"overall": dict(isc=1.86)}),
                       ("CelebA G-LIS 2 of 3 (paper)", {"overall": dict(isc=1.77)}),
                       ("CelebA G-LIS 3 of 3 (paper)", {"overall": dict(isc=1.83)})),
                notes="the paper does not state its sample count; 50k is the usual IS protocol."),
)}


def get_preset(name: str) -> TablePreset:
    from genfw.core.errors import suggest

    if name not in PRESETS:
        raise GenfwError(f"unknown table {name!r}{suggest(name, PRESETS)}; tables: {', '.join(PRESETS)}")
    return PRESETS[name]
