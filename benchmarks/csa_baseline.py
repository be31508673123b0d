"""Two straightforward CSA layers, the benchmark's baseline and the tests' per-position oracle.

`csa_reference_style` (what `genfw bench csa.layer` times genfw's layer against) computes what the
public reference code computes, the way it computes it: per sample, the search is a convolution of
the feature map with the L2-normalised known patches as 1x1 filters followed by a max over those
filters; then a raster scan over the map builds, hole by hole, the generated patch (Dad as a 1x1
convolution of the previous patch with the current hole's unit feature) and its attention row;
the output is the attention matrix recombined with all patches by a transposed convolution.
Written from the paper and that description (no code copied); it leaves out the reference's
Python-object overhead (a new nn.Conv2d per hole, a tensor comparison per position), so it is a
lean version of that computation, not a straw man. Plain autograd gives its true gradient (the
reference's own backward is a straight-through approximation).

`csa_loop`: the paper's Algorithm 1 written position by position (the tests' oracle).

For each sample, for each hole position in raster order: search every known patch for the most
similar one (Dmax, mbar), compute Dad against the previously generated patch, form the attention
row A_i = Dmax/(Dad+Dmax) onehot(mbar) + Dad/(Dad+Dmax) A_{i-1}, and rebuild the patch from the
known patches with that row (the paper's deconvolution, one position at a time). Plain autograd
does the backward. It uses the same safety rule as genfw's layer (similarities clamped at 0,
eps added to Dmax), so the two must agree to float rounding.
"""
from __future__ import annotations

import torch

_TINY = 1e-12


def csa_loop(x: torch.Tensor, mask: torch.Tensor, similarity: str = "cosine", eps: float = 1e-8) -> torch.Tensor:
    """x: N x C x H x W features, mask: N x 1 x H x W (1 = hole) -> N x C x H x W."""
    cosine = similarity == "cosine"
    n, c, h, w = x.shape
    outs = []
    for b in range(n):
        feats = x[b].reshape(c, h * w)
        hole = mask[b].reshape(-1) > 0.5
        known = (~hole).nonzero().flatten()
        holes = hole.nonzero().flatten().tolist()
        if not holes or known.numel() == 0:
            outs.append(x[b])
            continue
        keys = feats[:, known]
        keys_unit = keys / keys.norm(dim=0, keepdim=True).clamp_min(_TINY)
        cols = [feats[:, j] for j in range(h * w)]
        prev = prev_row = None
        for i in holes:
            f = feats[:, i]
            f_unit = f / f.norm().clamp_min(_TINY)
            sims = (f_unit if cosine else f) @ keys_unit
            j = int(torch.argmax(sims))
            dmax = sims[j].clamp_min(0) + eps
            onehot = torch.zeros(known.numel(), dtype=x.dtype, device=x.device)
            onehot[j] = 1
            if prev is None:
                row = onehot
            else:
                dad = prev @ f_unit
                if cosine:
                    dad = dad / prev.norm().clamp_min(_TINY)
                dad = dad.clamp_min(0)
                row = dmax / (dad + dmax) * onehot + dad / (dad + dmax) * prev_row
            m = keys @ row
            cols[i] = m
            prev, prev_row = m, row
        outs.append(torch.stack(cols, 1).reshape(c, h, w))
    return torch.stack(outs)


def csa_reference_style(x: torch.Tensor, mask: torch.Tensor, similarity: str = "cosine",
                        eps: float = 1e-8) -> torch.Tensor:
    """x: N x C x H x W features, mask: N x 1 x H x W (1 = hole) -> N x C x H x W."""
    import torch.nn.functional as F

    cosine = similarity == "cosine"
    n, c, h, w = x.shape
    hw = h * w
    outs = []
    for b in range(n):
        feat = x[b:b + 1]                                   # 1 x C x H x W
        patches = feat.reshape(c, hw).t()                   # HW x C: every 1x1 patch
        hole = (mask[b].reshape(-1) > 0.5).tolist()
        known = [p for p in range(hw) if not hole[p]]
        if len(known) in (0, hw):
            outs.append(x[b])
            continue
        keys = patches[known]                               # K x C
        filters = (keys / keys.norm(dim=1, keepdim=True).clamp_min(_TINY)).reshape(len(known), c, 1, 1)
        unit = feat / feat.norm(dim=1, keepdim=True).clamp_min(_TINY)
        scores = F.conv2d(unit if cosine else feat, filters)[0].reshape(len(known), hw)  # K x HW
        vmax, ind = scores.max(0)
        ind = ind.tolist()
        eye = torch.eye(hw, dtype=x.dtype, device=x.device)   # its rows are views: one-hot rows for free
        rows = []
        prev = prev_row = None
        for p in range(hw):                                 # raster order
            if not hole[p]:
                rows.append(eye[p])                         # a known patch attends to itself
                continue
            onehot = eye[known[ind[p]]]
            dmax = vmax[p].clamp_min(0) + eps
            if prev is None:
                row, m = onehot, keys[ind[p]]
            else:
                fh = unit[0, :, p // w, p % w]
                dad = F.conv2d(prev.reshape(1, c, 1, 1), fh.reshape(1, c, 1, 1)).reshape(())
                if cosine:
                    dad = dad / prev.norm().clamp_min(_TINY)
                dad = dad.clamp_min(0)
                a_new, a_ori = dad / (dad + dmax), dmax / (dad + dmax)
                m = a_new * prev + a_ori * keys[ind[p]]
                row = a_new * prev_row + a_ori * onehot
            rows.append(row)
            prev, prev_row = m, row
        att = torch.stack(rows, 1).reshape(1, hw, h, w)    # channel j at (y, x): weight of patch j
        outs.append(F.conv_transpose2d(att, patches.reshape(hw, c, 1, 1))[0])
    return torch.stack(outs)
