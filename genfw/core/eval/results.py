"""A results folder: what a reviewer opens after `genfw eval RUN --report DIR`.

- ``scores.json``: every metric overall and per bin, the paper's numbers when a table preset was used,
  and the provenance (genfw / torch / torch-fidelity versions, checkpoint, data, image count,
  resolution, resize mode, mask set name and sha256, extractor and weights hashes, seed).
- ``scores.md``: the paper-style table (ours next to the paper's rows) and the provenance.
- ``per_image.csv`` (inpainting): index, hole ratio, bin and every per-image score.
- ``per_bin.png`` (inpainting): one bar chart per metric over the hole-ratio bins.
- ``completions.png`` (inpainting): best / median / worst completions (input, mask, output, truth).
- ``samples.png`` and ``neighbours.png`` (generation): a sample grid, and samples next to their
  nearest real images (memorisation check).
"""
from __future__ import annotations

import csv
import json
import math
import os
import tempfile
from pathlib import Path

import torch

from genfw.core.eval.plots import NAMES, bar_chart, labelled_grid, rank_groups

FORMATS = {"l1": "{:.2f}", "l2": "{:.2f}", "psnr": "{:.2f}", "ssim": "{:.3f}", "lpips": "{:.4f}", "fid": "{:.2f}",
           "kid": "{:.4f}", "isc": "{:.2f}", "msssim": "{:.4f}", "msssim_real": "{:.4f}", "pids": "{:.3f}",
           "uids": "{:.3f}"}
LABELS = {**NAMES, "isc": "IS", "msssim": "MS-SSIM", "msssim_real": "MS-SSIM (real)", "pids": "P-IDS",
          "uids": "U-IDS"}


def _atomic_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=path.suffix)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a results folder is meant to be shared
    os.replace(tmp, path)


def _clean(obj):
    """JSON-safe: NaN -> null, tuples -> lists, tensors -> lists."""
    if isinstance(obj, float):
        return None if math.isnan(obj) or math.isinf(obj) else obj
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items() if not str(k).startswith("_")}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return _clean(obj.tolist())
    return obj


def cell(metric: str, v) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "-"
    return FORMATS.get(metric, "{:.4g}").format(v)


def markdown_table(columns: list[str], metrics: list[str], rows: list[tuple[str, dict]], per_bin: bool) -> str:
    """per_bin: rows = (source, metric), columns = bins + overall (CSA table 2's layout);
    else rows = sources, columns = metrics (FOAM table 1's)."""
    out = []
    if per_bin:
        out.append("| metric | source | " + " | ".join(columns) + " |")
        out.append("|---|---|" + "---|" * len(columns))
        for m in metrics:
            for label, by_col in rows:
                if not any(m in by_col.get(c, {}) for c in columns):
                    continue
                out.append(f"| {LABELS.get(m, m)} | {label} | "
                           + " | ".join(cell(m, by_col.get(c, {}).get(m)) for c in columns) + " |")
        for label, by_col in rows:  # how many images each of our cells averages
            if any("count" in by_col.get(c, {}) for c in columns):
                out.append(f"| images | {label} | " + " | ".join(str(by_col.get(c, {}).get("count", "-"))
                                                             for c in columns) + " |")
    else:
        out.append("| source | " + " | ".join(LABELS.get(m, m) for m in metrics) + " |")
        out.append("|---|" + "---|" * len(metrics))
        for label, by_col in rows:
            row = by_col.get("overall", {})
            out.append(f"| {label} | " + " | ".join(cell(m, row.get(m)) for m in metrics) + " |")
    return "\n".join(out)


def _provenance_lines(prov: dict, indent: str = "") -> list[str]:
    lines = []
    for k, v in prov.items():
        if isinstance(v, dict):
            lines.append(f"{indent}- {k}:")
            lines += _provenance_lines(v, indent + "  ")
        else:
            lines.append(f"{indent}- {k}: {json.dumps(_clean(v)) if isinstance(v, (list, dict)) else v}")
    return lines


def write(out_dir: Path, scores: dict, table_md: str, title: str, warnings: list[str], pictures: list[str]) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    _atomic_text(out_dir / "scores.json", json.dumps(_clean(scores), indent=1))
    md = [f"# {title}", ""]
    md += [f"> {w}" for w in warnings] + ([""] if warnings else [])
    md += [table_md, "", "## Pictures", ""] + [f"- [{p}]({p})" for p in pictures]
    md += ["", "## Provenance", ""] + _provenance_lines(scores["provenance"])
    _atomic_text(out_dir / "scores.md", "\n".join(md) + "\n")
    return [out_dir / "scores.json", out_dir / "scores.md"] + [out_dir / p for p in pictures]


# --- inpainting -----------------------------------------------------------------------------------
def inpaint_pictures(out_dir: Path, result: dict, mask_set, metrics: list[str], k: int = 3) -> list[str]:
    from genfw.core.eval.features import PngImages
    from genfw.core.eval.inpaint_eval import LOWER_IS_BETTER

    per = result["per_image"]
    with open(out_dir / "per_image.csv", "w", newline="") as fh:
        cols = ["index", "hole_ratio", "bin"] + [m for m in ("l1", "l2", "psnr", "ssim", "lpips") if m in per]
        w = csv.writer(fh)
        w.writerow(cols)
        for i in range(len(per["index"])):
            w.writerow([per[c][i] for c in cols])
    bin_metrics = [m for m in metrics if any(m in row for row in result["bins"].values())]
    bar_chart(result["bins"], bin_metrics, out_dir / "per_bin.png",
              title=f"per hole-ratio bin, mask set {mask_set.name} ({mask_set.size} px)")
    rank_by = "lpips" if "lpips" in per else "l1"
    groups = rank_groups(per[rank_by], k, LOWER_IS_BETTER[rank_by])
    comps, reals = PngImages(result["_files"]), PngImages(result["_real_files"])
    rows = []
    for name, idx in groups.items():
        for r, pos in enumerate(idx):  # pos: place among the scored images; i: index in the data
            i = per["index"][pos]
            truth = reals[pos].float() / 255
            comp = comps[pos].float() / 255
            m = mask_set.masks(i, i + 1)[0]
            masked = truth * (1 - m) + m  # white = hole, as in the mask files
            rows.append((f"{name} {r + 1}: image {i}\n{LABELS.get(rank_by, rank_by)} {cell(rank_by, per[rank_by][pos])}"
                         f"\nhole {per['hole_ratio'][pos]:.1%}", [masked, m.expand(3, -1, -1), comp, truth]))
    labelled_grid(rows, ["input", "mask", "completion", "ground truth"], out_dir / "completions.png")
    return ["per_bin.png", "completions.png", "per_image.csv"]


# --- generation -----------------------------------------------------------------------------------
def generation_pictures(out_dir: Path, result: dict) -> list[str]:
    from genfw.core.images import save_grid

    grid = result["_grid"]
    save_grid(torch.stack(grid), out_dir / "samples.png", nrow=8)
    pics = ["samples.png"]
    nb = result.get("_neighbours") or {}
    if nb.get("rows"):
        rows = []
        for s_i, x, near in nb["rows"]:
            rows.append((f"sample {s_i}\nnearest real: {', '.join(str(r) for r, _, _ in near)}",
                         [x] + [img for _, img, _ in near]))
        labelled_grid(rows, ["sample"] + [f"nearest {j + 1}" for j in range(len(nb["rows"][0][2]))],
                      out_dir / "neighbours.png")
        pics.append("neighbours.png")
    return pics
