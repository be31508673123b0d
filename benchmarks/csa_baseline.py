"""Straightforward CSA layer: the paper's Algorithm 1 written position by position (benchmark baseline).

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
